/* SPDX-License-Identifier: MIT */
/*
 * The NBD back-end: an export served by an NBD server, reached through
 * libnbd with a URI (nbd://host[:port]/export, nbd+unix:///export?socket=
 * PATH, nbds://... for TLS: libnbd's syntax, parsed by libnbd).
 *
 * Each queue has a connection of its own, driven asynchronously
 * (nbd_aio_*) on the queue's thread: the worker watches the handle's fd in
 * the direction libnbd asks for and calls back here.  Several connections
 * are only consistent when the server says so (NBD_FLAG_CAN_MULTI_CONN: a
 * flush on one connection covers writes completed on any); without it
 * the device must have a single queue, and opening refuses more.
 *
 * Mapping: IN -> NBD_CMD_READ, OUT -> NBD_CMD_WRITE (with FUA when the
 * guest wants write-through, as DISCARD and WRITE_ZEROES then; a server
 * without FUA gets a FLUSH after them), FLUSH ->
 * NBD_CMD_FLUSH (nothing to do when the server has no write cache to
 * flush), DISCARD -> NBD_CMD_TRIM (a hint: nothing when the server cannot
 * trim), WRITE_ZEROES -> NBD_CMD_WRITE_ZEROES (NO_HOLE unless the guest
 * allows unmapping; FAST_ZERO first when offered, plain if the server
 * says fast zeroing is not possible).  Data segments of a request become
 * one command each.
 *
 * The connections ask for simple replies, not structured ones:
 * half the recv() calls per read reply (the back-end's CPU per request
 * at QD32 is mostly system calls).  Nothing here needs them: no block
 * status, no DF reads.  What they would add: a sparse region read from
 * a server that sends holes (qemu-nbd) comes as zero bytes on the socket
 * instead of a short hole chunk, and a server's error text (only logged
 * by libnbd's debug output) is not sent; a read error is still an error.
 *
 * A lost connection loses no request: what was on it waits, with what
 * arrives meanwhile, while the queue reconnects (backing off from 50 ms
 * to 1 s); after the reconnect timeout the waiting requests fail with
 * IOERR (and new ones at once) while reconnection goes on in the
 * background.  Server errors (EIO from the export) fail the request.
 *
 * What counts as lost is the connection's state, never an errno: libnbd
 * calls a command back with ENOTCONN (or the socket's error) when the
 * connection dies, but a server may also answer ESHUTDOWN (it is shutting
 * down) on a connection that lives on.  Such an error reply is judged
 * after libnbd returns (settle()): on a dead connection the request waits
 * for the next one; on a live one it is sent again at most RETRY_MAX
 * times, RETRY_MS apart and doubling, then fails (IOERR), while the rest
 * of the queue goes on.
 *
 * FLUSH after a lost connection: writes a server acknowledged and had not
 * flushed may have died with it (a server killed with them in a volatile
 * cache).  A FLUSH sent on the new connection would succeed and tell the
 * guest they are durable; so when a queue loses a connection with writes
 * acknowledged since its last successful flush, the next FLUSH on every
 * queue (a virtio-blk FLUSH covers what completed on any queue) fails
 * once with IOERR, the one that was in flight included, unless the
 * operator says the server's cache survives it (persistent_cache).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libnbd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "blk-int.h"

#define BACKOFF_MIN_MS 50u
#define BACKOFF_MAX_MS 1000u
#define CONNECT_MAX_MS 5000u   /* one attempt, before it counts as failed */
/* A queue asked to stop waits this long for the server's answers, then
 * closes its connection and fails what is unanswered (IOERR). */
#define STOP_GIVE_UP_MS 5000u
/* Replies read in one wake-up, at most, before the ring gets a turn. */
#define READ_AHEAD_MAX 64
/* Commands out from which a reply is trusted to come soon (may_read). */
#define TRUST_IN_FLIGHT 8
/* An error reply on a live connection that looks like a connection's
 * (ESHUTDOWN): resent this many times, the first after RETRY_MS, the next
 * twice as late (100 + 200 + 400 ms), then IOERR. */
#define RETRY_MAX 3u
#define RETRY_MS 100u

struct nbd_img {
	char *uri;
	bool can_flush, can_fua, can_trim, can_zero, can_fast_zero;
	bool persistent_cache;     /* acknowledged writes survive the server */
	uint64_t timeout_ns;
	/* Connections lost with writes acknowledged and not flushed; a queue
	 * whose seen[] differs fails its next FLUSH.  seen[i] belongs to
	 * queue i's thread (and to the control thread around it). */
	_Atomic unsigned losses;
	unsigned seen[VHU_BACKEND_MAX_QUEUES];
	_Atomic unsigned down;     /* queues without a connection */
	_Atomic unsigned failed;   /* of those, past the timeout */
	/* The last change any queue saw (for when none runs). */
	_Atomic(const char *) last;
};

enum nq_state { NQ_CONNECTING, NQ_READY, NQ_DOWN };

struct nq {
	struct vhu__blk_worker *w;
	struct vhu_blk *blk;
	struct nbd_img *img;
	struct nbd_handle *h;
	struct starter *starter;    /* h's connect_uri, running (h NULL) */
	enum nq_state st;
	bool counted_down, counted_failed;
	bool closing;               /* callbacks of a closed handle: ignored */
	bool tls;                   /* the connection is encrypted */
	uint64_t down_since, attempt_at;
	unsigned backoff_ms;
	struct vhu__blk_io *wait_head, *wait_tail; /* need a connection */
	struct vhu__blk_io *sent;   /* on the connection (prev/next) */
	/* Answered with a connection's errno, judged by settle() (next). */
	struct vhu__blk_io *suspect;
	/* Error replies on a live connection, resent when their mark (ns)
	 * comes (next). */
	struct vhu__blk_io *held;
	bool told_retry;            /* the log said so for this connection */
	/* Writes acknowledged (not durable by themselves) on the connection,
	 * and how many of them the last successful flush covered. */
	uint64_t acked, durable;
	uint64_t stop_deadline;     /* ns: a stop gives up then; 0: not set */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* libnbd's last error, copied (the next call may free it). */
static void save_error(char *why, size_t len)
{
	const char *e = nbd_get_error();

	snprintf(why, len, "%s", e ? e : "failed");
}

/*
 * nbd_aio_connect_uri() of a TCP URI resolves the host name first, with
 * getaddrinfo(), which blocks as long as the resolver takes (its timeout
 * times its attempts and servers: half a minute and more when a DNS
 * server does not answer): the control thread (open, refresh) or a
 * queue's thread, and every queue sharing it (reconnecting), would hang
 * that long.  Such a URI is started on a thread of its own (a starter)
 * and awaited no longer than the connection's bound (CONNECT_MAX_MS, the
 * name resolution included); a starter given up on closes its handle
 * when getaddrinfo returns.  Unix sockets and numeric addresses resolve
 * nothing and are started at once.
 */
struct starter {
	pthread_mutex_t lock;
	pthread_cond_t cond;        /* done (CLOCK_MONOTONIC) */
	struct nbd_handle *h;
	char *uri;
	int efd;                    /* written when done; -1: none */
	int r;                      /* nbd_aio_connect_uri's */
	bool done, abandoned;
	char why[256];
};

/* Does connecting to uri resolve a host name? */
static bool by_name(const char *uri)
{
	const char *p, *end;
	char host[256];
	unsigned char a[16];
	size_t n;

	if (!strncmp(uri, "nbd://", 6))
		p = uri + 6;
	else if (!strncmp(uri, "nbds://", 7))
		p = uri + 7;
	else
		return false;
	end = p + strcspn(p, "/?#");
	for (const char *c = p; c < end; c++)
		if (*c == '@')
			p = c + 1;      /* past user information */
	if (*p == '[')
		return false;           /* an IPv6 address */
	n = strcspn(p, ":/?#");
	if (n == 0 || n >= sizeof(host))
		return true;            /* libnbd's default host, or odd */
	memcpy(host, p, n);
	host[n] = '\0';
	return inet_pton(AF_INET, host, a) != 1;
}

static void starter_free(struct starter *st)
{
	if (st->efd >= 0)
		close(st->efd);
	pthread_cond_destroy(&st->cond);
	pthread_mutex_destroy(&st->lock);
	free(st->uri);
	free(st);
}

static void *starter_main(void *arg)
{
	struct starter *st = arg;
	char why[256] = "";
	int r = nbd_aio_connect_uri(st->h, st->uri);
	bool gone;

	if (r < 0)
		save_error(why, sizeof(why));   /* libnbd's error is per thread */
	pthread_mutex_lock(&st->lock);
	st->r = r;
	memcpy(st->why, why, sizeof(why));
	st->done = true;
	gone = st->abandoned;
	if (!gone) {
		uint64_t one = 1;

		pthread_cond_signal(&st->cond);
		if (st->efd >= 0) {
			/* 8 bytes to an eventfd at 0: it cannot fail. */
			ssize_t n = write(st->efd, &one, sizeof(one));

			(void)n;
		}
	}
	pthread_mutex_unlock(&st->lock);
	if (gone) {
		nbd_close(st->h);
		starter_free(st);
	}
	return NULL;
}

/* nbd_aio_connect_uri(h, uri) on a starter thread; efd: an eventfd it
 * writes when done, or -1.  NULL when no thread could be started. */
static struct starter *starter_start(struct nbd_handle *h, const char *uri,
				     int efd)
{
	struct starter *st = calloc(1, sizeof(*st));
	pthread_condattr_t ca;
	pthread_attr_t ta;
	pthread_t t;
	bool ok;

	if (!st || !(st->uri = strdup(uri))) {
		free(st);
		return NULL;
	}
	st->h = h;
	st->efd = efd;
	pthread_mutex_init(&st->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&st->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_attr_init(&ta);
	pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
	ok = pthread_create(&t, &ta, starter_main, st) == 0;
	pthread_attr_destroy(&ta);
	if (!ok) {
		st->efd = -1;           /* the caller's still */
		starter_free(st);
		return NULL;
	}
	return st;
}

/* Done with st: its handle to *h (NULL: none) and its result, or, while
 * it still runs, left to close the handle itself. */
static bool starter_end(struct starter *st, struct nbd_handle **h, int *r,
			char *why, size_t len)
{
	bool done;

	pthread_mutex_lock(&st->lock);
	done = st->done;
	if (!done)
		st->abandoned = true;
	pthread_mutex_unlock(&st->lock);
	if (!done)
		return false;
	*h = st->h;
	*r = st->r;
	if (why)
		snprintf(why, len, "%s", st->why);
	starter_free(st);
	return true;
}

/* nbd_aio_connect_uri(h, uri), by end (ns): 0, or -errno with why.  On
 * -ETIMEDOUT h belongs to a starter that still resolves the name. */
static int connect_uri_by(struct nbd_handle *h, const char *uri,
			  uint64_t end, char *why, size_t len)
{
	struct starter *st;
	struct nbd_handle *got;
	int r = 0;

	if (!by_name(uri)) {
		if (nbd_aio_connect_uri(h, uri) < 0) {
			save_error(why, len);
			return -ENOTCONN;
		}
		return 0;
	}
	st = starter_start(h, uri, -1);
	if (!st) {
		snprintf(why, len, "no thread to resolve the host name");
		return -EAGAIN;
	}
	pthread_mutex_lock(&st->lock);
	while (!st->done) {
		struct timespec ts = { .tv_sec = (time_t)(end / 1000000000u),
				       .tv_nsec = (long)(end % 1000000000u) };

		if (pthread_cond_timedwait(&st->cond, &st->lock, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&st->lock);
	if (!starter_end(st, &got, &r, why, len)) {
		snprintf(why, len, "the host name did not resolve in %u s",
			 CONNECT_MAX_MS / 1000);
		return -ETIMEDOUT;
	}
	return r < 0 ? -ENOTCONN : 0;
}

static bool conn_error(int e)
{
	return e == ENOTCONN || e == ECONNRESET || e == EPIPE || e == ESHUTDOWN ||
	       e == ECONNREFUSED || e == ECONNABORTED || e == ETIMEDOUT;
}

static void set_down(struct nq *q, bool down)
{
	if (down && !q->counted_down) {
		q->counted_down = true;
		q->down_since = now_ns();
		atomic_fetch_add(&q->img->down, 1);
		atomic_store(&q->img->last, "reconnecting");
	} else if (!down && q->counted_down) {
		q->counted_down = false;
		atomic_fetch_sub(&q->img->down, 1);
		if (q->counted_failed) {
			q->counted_failed = false;
			atomic_fetch_sub(&q->img->failed, 1);
		}
	}
}

static void wait_push(struct nq *q, struct vhu__blk_io *io)
{
	io->next = NULL;
	if (q->wait_tail)
		q->wait_tail->next = io;
	else
		q->wait_head = io;
	q->wait_tail = io;
}

static void sent_add(struct nq *q, struct vhu__blk_io *io)
{
	io->prev = NULL;
	io->next = q->sent;
	if (q->sent)
		q->sent->prev = io;
	q->sent = io;
}

static void sent_del(struct nq *q, struct vhu__blk_io *io)
{
	if (io->prev)
		io->prev->next = io->next;
	else
		q->sent = io->next;
	if (io->next)
		io->next->prev = io->prev;
}

static void issue(struct nq *q, struct vhu__blk_io *io);

/* Must this FLUSH fail?  A connection was lost (on any queue) with writes
 * acknowledged and not flushed since this queue last failed one: it
 * fails, once (see the top). */
static bool flush_after_loss(struct nq *q)
{
	unsigned i = vhu__blk_q_index(q->w), n = atomic_load(&q->img->losses);

	if (n == q->img->seen[i])
		return false;
	q->img->seen[i] = n;
	vhu__blk_log(VHU_LOG_WARN, "queue %u: nbd: FLUSH fails (IOERR): writes "
		     "acknowledged by %s before a connection was lost may not be "
		     "durable", i, q->img->uri);
	return true;
}

/* The request's virtio-blk status: an export that cannot write zeroes
 * answers UNSUPP (the guest then writes them itself), never OK and
 * never an I/O error that would look like a failing disk. */
static uint8_t nbd_status(uint32_t type, int e)
{
	if (!e)
		return VHU_BLK_S_OK;
	if ((e == ENOTSUP || e == EOPNOTSUPP) && type == VHU_BLK_T_WRITE_ZEROES)
		return VHU_BLK_S_UNSUPP;
	return VHU_BLK_S_IOERR;
}

/* io is done with: its status to the guest. */
static void complete(struct nq *q, struct vhu__blk_io *io)
{
	uint32_t type = io->req.type;
	int e = io->error;
	bool flushed = type == VHU_BLK_T_FLUSH || io->phase == 1;

	if (e)
		vhu__blk_log(VHU_LOG_DEBUG, "queue %u: nbd: request type %u at "
			     "sector %llu: %s", vhu__blk_q_index(q->w), type,
			     (unsigned long long)io->req.sector, strerror(e));
	io->through = !e && io->write_through && type != VHU_BLK_T_IN &&
		      type != VHU_BLK_T_FLUSH;
	/* What a lost connection may take with it (see the top); a flush
	 * covers what was acknowledged when it was sent (mark). */
	if (!e && flushed && io->mark > q->durable)
		q->durable = io->mark;
	else if (!e && type != VHU_BLK_T_IN && !flushed && !io->through &&
		 q->img->can_flush)
		q->acked++;
	vhu__blk_io_done(q->w, io, nbd_status(type, e),
			 e || type != VHU_BLK_T_IN ? 0 : io->req.data_len);
}

/* Every command of io has been answered. */
static void finish(struct nq *q, struct vhu__blk_io *io)
{
	uint32_t type = io->req.type;
	int e = io->error;

	sent_del(q, io);
	if (e && conn_error(e)) {
		/* The connection went, or the server answered with such an
		 * errno on a live one: settle() tells which, once libnbd
		 * returned. */
		io->next = q->suspect;
		q->suspect = io;
		return;
	}
	if (!e && type != VHU_BLK_T_IN && type != VHU_BLK_T_FLUSH &&
	    io->write_through && !q->img->can_fua && q->img->can_flush &&
	    io->phase != 1) {
		io->phase = 1;          /* the flush that makes it durable */
		wait_push(q, io);       /* sent by settle() */
		return;
	}
	if ((e == ENOTSUP || e == EOPNOTSUPP) && type == VHU_BLK_T_WRITE_ZEROES &&
	    io->phase == 0 && q->img->can_fast_zero) {
		io->phase = 2;          /* not fast: let the server write them */
		wait_push(q, io);
		return;
	}
	complete(q, io);
}

static int cmd_done(void *user_data, int *error)
{
	struct vhu__blk_io *io = user_data;
	struct nq *q = io->owner;

	if (q->closing)
		return 1;
	if (*error && !io->error)
		io->error = *error;
	if (--io->pending == 0)
		finish(q, io);
	return 1;
}

/* Send io's commands on the ready connection.  Never from a libnbd
 * callback (the handle is locked there): finish() defers to settle(). */
static void issue(struct nq *q, struct vhu__blk_io *io)
{
	struct vhu_blk_req *req = &io->req;
	uint64_t off = req->sector << VHU_BLK_SECTOR_SHIFT;
	nbd_completion_callback cb = { .callback = cmd_done, .user_data = io };
	uint32_t fua = io->write_through && q->img->can_fua ? LIBNBD_CMD_FLAG_FUA : 0;
	bool flush = req->type == VHU_BLK_T_FLUSH || io->phase == 1;
	bool rw = !flush && (req->type == VHU_BLK_T_IN || req->type == VHU_BLK_T_OUT);
	bool zero = !flush && req->type == VHU_BLK_T_WRITE_ZEROES;
	unsigned total, n = 0;

	if (flush)
		total = q->img->can_flush ? 1 : 0;
	else if (rw)
		total = req->n_data;
	else if (zero ? q->img->can_zero : q->img->can_trim)
		total = req->n_segs;
	else
		total = 0;
	io->owner = q;
	io->error = zero && !q->img->can_zero ? EOPNOTSUPP : 0;
	if (flush)
		io->mark = q->acked;
	if (req->type == VHU_BLK_T_FLUSH && flush_after_loss(q)) {
		io->error = EIO;
		total = 0;
	}
	io->pending = 1 + total;    /* one held while issuing */
	sent_add(q, io);
	for (; n < total; n++) {
		int64_t c;

		if (flush) {
			c = nbd_aio_flush(q->h, cb, 0);
		} else if (rw) {
			struct iovec *v = &req->data[n];

			c = req->type == VHU_BLK_T_IN
				? nbd_aio_pread(q->h, v->iov_base, v->iov_len, off, cb, 0)
				: nbd_aio_pwrite(q->h, v->iov_base, v->iov_len, off, cb, fua);
			off += v->iov_len;
		} else {
			const struct vhu_blk_seg *sg = &req->segs[n];
			uint64_t o = sg->sector << VHU_BLK_SECTOR_SHIFT;
			uint64_t len = (uint64_t)sg->num_sectors << VHU_BLK_SECTOR_SHIFT;
			uint32_t f = fua;

			if (zero && !(sg->flags & VHU_BLK_SEG_F_UNMAP))
				f |= LIBNBD_CMD_FLAG_NO_HOLE;
			if (zero && io->phase == 0 && q->img->can_fast_zero)
				f |= LIBNBD_CMD_FLAG_FAST_ZERO;
			c = zero ? nbd_aio_zero(q->h, len, o, cb, f)
				 : nbd_aio_trim(q->h, len, o, cb, f);
		}
		if (c < 0)
			break;
	}
	if (n < total) {
		/* Commands not sent count as answered with the error. */
		int e = nbd_get_errno();

		if (!nbd_aio_is_ready(q->h) && !nbd_aio_is_processing(q->h))
			e = ENOTCONN;
		if (!io->error)
			io->error = e ? e : EIO;
		io->pending -= total - n;
	}
	if (--io->pending == 0)
		finish(q, io);
}

/* Requests the queue holds, whatever their state. */
static bool busy(const struct nq *q)
{
	return q->sent || q->wait_head || q->suspect || q->held;
}

static void fail_waiting(struct nq *q)
{
	while (q->wait_head) {
		struct vhu__blk_io *io = q->wait_head;

		q->wait_head = io->next;
		vhu__blk_io_done(q->w, io, VHU_BLK_S_IOERR, 0);
	}
	q->wait_tail = NULL;
}

/* Past the reconnect timeout: what waits fails, and so does what comes. */
static void check_timeout(struct nq *q)
{
	if (q->st == NQ_READY || now_ns() - q->down_since < q->img->timeout_ns)
		return;
	if (!q->counted_failed) {
		q->counted_failed = true;
		atomic_fetch_add(&q->img->failed, 1);
		atomic_store(&q->img->last, "failed");
		vhu__blk_log(VHU_LOG_ERROR, "queue %u: nbd: no connection to %s "
			     "for the reconnect timeout; failing requests until it "
			     "is back", vhu__blk_q_index(q->w), q->img->uri);
	}
	fail_waiting(q);
}

static void lost(struct nq *q, const char *why);
static void settle(struct nq *q);

/* Before a handle connects.  The URI is the operator's (the command
 * line), so its TLS parameters may name local files (tls-psk-file,
 * tls-certificates), which libnbd refuses unless allowed. */
static void prepare(struct nbd_handle *h)
{
	nbd_set_request_structured_replies(h, false);
	/* Reads land in the guest's own buffers, whose old contents are
	 * nobody else's: libnbd need not clear them first (4 KiB of memset
	 * per 4 KiB read).  A read that fails is IOERR either way. */
	nbd_set_pread_initialize(h, false);
	nbd_set_uri_allow_local_file(h, true);
}

static void start_connect(struct nq *q)
{
	q->attempt_at = now_ns();
	q->st = NQ_CONNECTING;
	q->h = nbd_create();
	/* Simple replies: libnbd reads a structured read reply in four
	 * recv() calls (header, rest of the header, chunk offset, data), a
	 * simple one in two; nothing here needs structured replies (see the
	 * top of the file). */
	if (q->h)
		prepare(q->h);
	if (q->h && by_name(q->img->uri)) {
		/* The name resolves on a starter; its eventfd wakes the queue
		 * (nbd_event), the timer bounds the attempt. */
		int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

		q->starter = efd >= 0 ? starter_start(q->h, q->img->uri, efd) : NULL;
		if (!q->starter) {
			if (efd >= 0)
				close(efd);
			lost(q, "no thread to resolve the host name");
			return;
		}
		q->h = NULL;
		vhu__blk_q_watch(q->w, efd, POLLIN);
		return;
	}
	if (!q->h || nbd_aio_connect_uri(q->h, q->img->uri) < 0) {
		lost(q, nbd_get_error());
		return;
	}
}

/* The starter's eventfd was readable: its handle, connecting, or the
 * reason it is not. */
static void starter_done(struct nq *q)
{
	struct starter *st = q->starter;
	struct nbd_handle *h = NULL;
	char why[256];
	int r = -1;

	pthread_mutex_lock(&st->lock);
	if (!st->done) {
		pthread_mutex_unlock(&st->lock);
		vhu__blk_q_watch(q->w, st->efd, POLLIN);  /* a stale wake-up */
		return;
	}
	pthread_mutex_unlock(&st->lock);
	/* The eventfd goes with the starter: out of the watch first. */
	vhu__blk_q_watch(q->w, -1, 0);
	q->starter = NULL;
	starter_end(st, &h, &r, why, sizeof(why));
	q->h = h;
	if (r < 0)
		lost(q, why);
	else
		settle(q);
}

/* Every request of list (singly linked) to the waiting ones. */
static void to_wait(struct nq *q, struct vhu__blk_io **list)
{
	while (*list) {
		struct vhu__blk_io *io = *list;

		*list = io->next;
		wait_push(q, io);
	}
}

/* Close the queue's connection (libnbd then calls back no more and
 * touches none of our buffers) and put what was on it back to wait,
 * each request from its start: a write-through write whose flush waits
 * is written again, its first acknowledgement may be lost with the
 * connection. */
static void drop_connection(struct nq *q)
{
	if (q->starter) {
		struct nbd_handle *h = NULL;
		int r;

		vhu__blk_q_watch(q->w, -1, 0);
		if (starter_end(q->starter, &h, &r, NULL, 0) && h)
			nbd_close(h);
		q->starter = NULL;
	}
	if (q->h) {
		q->closing = true;
		nbd_close(q->h);
		q->closing = false;
		q->h = NULL;
	}
	vhu__blk_q_watch(q->w, -1, 0);
	while (q->sent) {
		struct vhu__blk_io *io = q->sent;

		sent_del(q, io);
		wait_push(q, io);
	}
	to_wait(q, &q->suspect);
	to_wait(q, &q->held);
	for (struct vhu__blk_io *io = q->wait_head; io; io = io->next)
		io->phase = 0;
	q->told_retry = false;
	if (q->acked != q->durable) {
		if (!q->img->persistent_cache) {
			atomic_fetch_add(&q->img->losses, 1);
			vhu__blk_log(VHU_LOG_WARN, "queue %u: nbd: %llu write%s "
				     "acknowledged and not flushed when the "
				     "connection went: the next FLUSH fails",
				     vhu__blk_q_index(q->w),
				     (unsigned long long)(q->acked - q->durable),
				     q->acked - q->durable == 1 ? "" : "s");
		}
		q->durable = q->acked;
	}
}

/* The connection is gone or could not be made: keep what was on it. */
static void lost(struct nq *q, const char *why)
{
	bool was_ready = q->st == NQ_READY;

	drop_connection(q);
	if (was_ready) {
		vhu__blk_log(VHU_LOG_WARN, "queue %u: nbd: connection to %s lost "
			     "(%s); reconnecting", vhu__blk_q_index(q->w),
			     q->img->uri, why ? why : "closed");
		q->backoff_ms = BACKOFF_MIN_MS;
	} else {
		q->backoff_ms = q->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
								    : q->backoff_ms * 2;
	}
	q->st = NQ_DOWN;
	set_down(q, true);
	check_timeout(q);
	vhu__blk_q_timer(q->w, q->backoff_ms);
}

/* A ready queue's timer: for its first held request or its stop's
 * deadline, whichever comes first; off without either. */
static void arm_timer(struct nq *q)
{
	uint64_t now = now_ns(), at = q->stop_deadline;

	for (struct vhu__blk_io *io = q->held; io; io = io->next)
		if (!at || io->mark < at)
			at = io->mark;
	if (!at)
		vhu__blk_q_timer_off(q->w);
	else
		vhu__blk_q_timer(q->w, at > now ? (unsigned)((at - now + 999999) / 1000000) : 0);
}

/* The connection lives (settle() looked): what was answered with a
 * connection's errno was the server's reply (ESHUTDOWN...).  Sent again
 * later, a few times (RETRY_MAX), then failed: resending at once on
 * the same connection only gets the same answer, as fast as the server
 * can give it. */
static void judge(struct nq *q)
{
	struct vhu__blk_io *io;
	bool held = false;

	while ((io = q->suspect)) {
		q->suspect = io->next;
		if (io->retries >= RETRY_MAX) {
			complete(q, io);
			continue;
		}
		if (!q->told_retry) {
			q->told_retry = true;
			vhu__blk_log(VHU_LOG_WARN, "queue %u: nbd: %s answered %s on "
				     "a live connection: sending such requests again "
				     "up to %u times, then failing them (IOERR)",
				     vhu__blk_q_index(q->w), q->img->uri,
				     strerror(io->error), RETRY_MAX);
		}
		io->mark = now_ns() + ((uint64_t)RETRY_MS << io->retries) * 1000000ull;
		io->retries++;
		io->next = q->held;
		q->held = io;
		held = true;
	}
	if (held)
		arm_timer(q);
}

/* The held requests whose time came, to the waiting ones. */
static void release_held(struct nq *q)
{
	uint64_t now = now_ns();

	for (struct vhu__blk_io **l = &q->held; *l;) {
		struct vhu__blk_io *io = *l;

		if (io->mark > now) {
			l = &io->next;
			continue;
		}
		*l = io->next;
		wait_push(q, io);
	}
}

/* After libnbd ran: a new state, what waits sent, the direction to
 * watch. */
static void settle(struct nq *q)
{
	unsigned dir, ev = 0;

	if (!q->h)
		return;
	if (nbd_aio_is_dead(q->h) || nbd_aio_is_closed(q->h)) {
		lost(q, nbd_get_error());
		return;
	}
	if (q->suspect && q->st == NQ_READY)
		judge(q);
	if (q->st == NQ_CONNECTING && nbd_aio_is_ready(q->h)) {
		if (q->counted_down)
			vhu__blk_log(VHU_LOG_INFO, "queue %u: nbd: reconnected to %s",
				     vhu__blk_q_index(q->w), q->img->uri);
		q->st = NQ_READY;
		q->tls = nbd_get_tls_negotiated(q->h) == 1;
		/* The connect timeout is over: without a timer, the watch's
		 * wake-ups need no epoll_wait (worker.c be_events); a
		 * stopping queue keeps it for its deadline. */
		if (q->stop_deadline)
			vhu__blk_q_timer(q->w, STOP_GIVE_UP_MS);
		else
			vhu__blk_q_timer_off(q->w);
		set_down(q, false);
		atomic_store(&q->img->last, "connected");
		q->backoff_ms = BACKOFF_MIN_MS;
	}
	if (q->st == NQ_READY && q->wait_head) {
		/* One pass over what waits now (a request that comes back
		 * meanwhile waits for the next). */
		struct vhu__blk_io *io = q->wait_head;

		q->wait_head = q->wait_tail = NULL;
		while (io) {
			struct vhu__blk_io *next = io->next;

			issue(q, io);
			io = next;
		}
		if (nbd_aio_is_dead(q->h) || nbd_aio_is_closed(q->h)) {
			lost(q, nbd_get_error());
			return;
		}
		if (q->suspect)
			judge(q);
	}
	dir = nbd_aio_get_direction(q->h);
	if (dir & LIBNBD_AIO_DIRECTION_READ)
		ev |= POLLIN;
	if (dir & LIBNBD_AIO_DIRECTION_WRITE)
		ev |= POLLOUT;
	vhu__blk_q_watch(q->w, nbd_aio_get_fd(q->h), ev);
}

/* A stop waited STOP_GIVE_UP_MS for a server that holds the connection
 * and does not answer: close it (libnbd then writes into no buffer of
 * ours again, so a read's guest memory is safe to give back) and fail
 * every request of the queue, so the stop ends. */
static void give_up(struct nq *q)
{
	unsigned n = 0;

	drop_connection(q);
	for (struct vhu__blk_io *io = q->wait_head; io; io = io->next)
		n++;
	fail_waiting(q);
	q->st = NQ_DOWN;
	vhu__blk_log(VHU_LOG_WARN, "queue %u: nbd: queue stops: %u request%s "
		     "unanswered by %s after %u s failed (IOERR)",
		     vhu__blk_q_index(q->w), n, n == 1 ? "" : "s", q->img->uri,
		     STOP_GIVE_UP_MS / 1000);
}

/* May libnbd be told to read now?  Between replies (is_ready), telling
 * libnbd 1.14 to read when the socket has nothing leaves it in its reply
 * state, where commands issued meanwhile are queued until a reply comes.
 *   - With nothing owed, none ever comes: the queue hangs.  So with fewer
 *     than TRUST_IN_FLIGHT commands out, libnbd reads only when poll()
 *     says the socket has bytes.  A wake-up can say readable when nothing
 *     is (seen about once in 80,000 at queue depth 1 against nbdkit), so
 *     even the first read is checked.
 *   - With TRUST_IN_FLIGHT or more out, a reply is due soon and the
 *     commands held meanwhile go out with it, a few microseconds later,
 *     while the server still has plenty to do: libnbd reads without the
 *     poll() (a recv() that finds nothing costs what the poll() would).
 *     At depth 4 holding commands cost throughput; from 8 on it saves
 *     more CPU than the wait costs (docs/vhu-blk.md).
 * In the middle of sending (not ready), the watch asked epoll, which
 * looked.  After the first reply, reading on (next) is what saves a
 * wake-up per reply: a queue at depth 32 against a fast server otherwise
 * pays a wake-up and an interrupt for each, and most of its CPU goes
 * there.  Not with TLS, where bytes may be less than a record. */
static bool may_read(struct nq *q, bool next)
{
	struct pollfd p = { .fd = -1, .events = POLLIN };
	int64_t out;

	if (!q->h)
		return false;
	if (!nbd_aio_is_ready(q->h))
		return !next;
	out = nbd_aio_in_flight(q->h);
	if (next && (q->tls || out <= 0))
		return false;
	if (!q->tls && out >= TRUST_IN_FLIGHT)
		return true;
	p.fd = nbd_aio_get_fd(q->h);
	return p.fd >= 0 && poll(&p, 1, 0) == 1 && p.revents;
}

static void nbd_event(void *ctx, unsigned revents)
{
	struct nq *q = ctx;

	if (revents == 0 && q->stop_deadline && now_ns() >= q->stop_deadline) {
		if (busy(q))
			give_up(q);
		return;
	}
	if (revents == 0 && q->st == NQ_READY) {
		/* A held request's time (or an early stop timer). */
		release_held(q);
		settle(q);
		if (q->st == NQ_READY)
			arm_timer(q);
		return;
	}
	if (revents == 0) {
		/* The timer: retry, or give up on a slow attempt. */
		check_timeout(q);
		if (q->st == NQ_DOWN)
			start_connect(q);
		else if (q->st == NQ_CONNECTING &&
			 now_ns() - q->attempt_at > CONNECT_MAX_MS * 1000000ull)
			lost(q, q->starter ? "the host name did not resolve in time"
					   : "connecting timed out");
		if (q->st != NQ_READY)
			vhu__blk_q_timer(q->w, q->backoff_ms);
		settle(q);
		return;
	}
	if (q->starter) {
		starter_done(q);
		return;
	}
	for (int n = 0; (revents & POLLIN) && n < READ_AHEAD_MAX &&
			may_read(q, n > 0); n++) {
		if (nbd_aio_notify_read(q->h) < 0 && nbd_aio_is_dead(q->h)) {
			lost(q, nbd_get_error());
			return;
		}
	}
	if (q->h && (revents & POLLOUT) && nbd_aio_notify_write(q->h) < 0 &&
	    q->h && nbd_aio_is_dead(q->h)) {
		lost(q, nbd_get_error());
		return;
	}
	settle(q);
}

static void nbd_submit(void *ctx, struct vhu__blk_io *io)
{
	struct nq *q = ctx;

	io->phase = 0;
	io->retries = 0;
	if (q->st == NQ_READY) {
		issue(q, io);
		return;
	}
	if (q->counted_failed) {
		vhu__blk_io_done(q->w, io, VHU_BLK_S_IOERR, 0);
		return;
	}
	wait_push(q, io);
}

/* Once per loop turn; a stop that finds requests unanswered sets the
 * time it gives up on them. */
static void nbd_round(void *ctx)
{
	struct nq *q = ctx;

	settle(q);
	if (!q->stop_deadline && vhu__blk_q_stopping(q->w) && busy(q)) {
		q->stop_deadline = now_ns() + STOP_GIVE_UP_MS * 1000000ull;
		if (q->st == NQ_READY)
			arm_timer(q);   /* held requests keep their time */
		else
			vhu__blk_q_timer(q->w, STOP_GIVE_UP_MS);
	}
}

static int nbd_q_open(struct vhu_blk *blk, struct vhu__blk_worker *w,
		      void **ctx)
{
	struct nq *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	q->w = w;
	q->blk = blk;
	q->img = blk->be_data;
	q->backoff_ms = BACKOFF_MIN_MS;
	q->down_since = now_ns();
	start_connect(q);
	if (q->st == NQ_CONNECTING)
		vhu__blk_q_timer(w, CONNECT_MAX_MS);
	settle(q);
	*ctx = q;
	return 0;
}

static void nbd_q_close(void *ctx)
{
	struct nq *q = ctx;

	if (!q)
		return;
	/* The queue finished: nothing waits and nothing is on the wire. */
	if (q->starter) {
		struct nbd_handle *h = NULL;
		int r;

		if (starter_end(q->starter, &h, &r, NULL, 0) && h)
			nbd_close(h);
	}
	if (q->h) {
		q->closing = true;
		nbd_close(q->h);
	}
	set_down(q, false);
	free(q);
}

/* ---- image-wide ---- */

/* Drive h's connection until it is ready, by end (ns): 0, or a negative
 * errno with why the reason. */
static int connect_wait(struct nbd_handle *h, uint64_t end, char *why,
			size_t len)
{
	while (!nbd_aio_is_ready(h)) {
		unsigned dir = nbd_aio_get_direction(h);
		struct pollfd p = { .fd = nbd_aio_get_fd(h), .events = 0 };
		uint64_t now = now_ns();
		int r;

		if (nbd_aio_is_dead(h) || nbd_aio_is_closed(h) || p.fd < 0) {
			if (!why[0])
				save_error(why, len);
			return -ENOTCONN;
		}
		if (now >= end) {
			snprintf(why, len, "no answer to the handshake in time");
			return -ETIMEDOUT;
		}
		if (dir & LIBNBD_AIO_DIRECTION_READ)
			p.events |= POLLIN;
		if (dir & LIBNBD_AIO_DIRECTION_WRITE)
			p.events |= POLLOUT;
		r = poll(&p, 1, (int)((end - now + 999999) / 1000000));
		if (r < 0 && errno != EINTR) {
			r = -errno;
			snprintf(why, len, "poll: %s", strerror(-r));
			return r;
		}
		if (r <= 0)
			continue;
		if (p.revents & (POLLIN | POLLHUP | POLLERR))
			r = nbd_aio_notify_read(h);
		else if (p.revents & POLLOUT)
			r = nbd_aio_notify_write(h);
		if (r < 0)
			save_error(why, len);
	}
	return 0;
}

/* A connection for the facts (size, flags): open and refresh, on the
 * control thread, so bounded in time (a server that takes the
 * connection and never answers, or serves one client at a time, must not
 * hold the control thread): -ETIMEDOUT after CONNECT_MAX_MS. */
static struct nbd_handle *connect_now(struct vhu_blk *blk, const char *uri,
				      int *err, char *why, size_t len)
{
	struct nbd_handle *h = nbd_create();
	uint64_t end = now_ns() + CONNECT_MAX_MS * 1000000ull;

	why[0] = '\0';
	*err = -ENOMEM;
	if (!h) {
		vhu__blk_open_error(blk, "libnbd: %s", nbd_get_error());
		return NULL;
	}
	prepare(h);
	*err = connect_uri_by(h, uri, end, why, len);
	if (*err == -ETIMEDOUT)
		h = NULL;               /* the starter's */
	else if (*err == 0)
		*err = connect_wait(h, end, why, len);
	if (*err < 0) {
		vhu__blk_open_error(blk, "cannot connect to %s: %s", uri, why);
		if (h)
			nbd_close(h);
		return NULL;
	}
	return h;
}

static int nbd_size(struct vhu_blk *blk, uint64_t *size)
{
	struct nbd_img *img = blk->be_data;
	char why[256];
	int err;
	struct nbd_handle *h = connect_now(blk, img->uri, &err, why, sizeof(why));
	int64_t s;

	if (!h) {
		vhu__blk_log(VHU_LOG_WARN, "nbd: the size of %s: cannot connect "
			     "(%s)", img->uri, why);
		return err;
	}
	s = nbd_get_size(h);
	nbd_close(h);
	if (s < 0)
		return -EIO;
	*size = (uint64_t)s;
	return 0;
}

static const char *nbd_no_resize(const struct vhu_blk *blk)
{
	(void)blk;
	return "an NBD export's size is the server's: NBD has no resize "
	       "command (only an extension libnbd does not offer); resize the "
	       "export on the server, then call \"refresh\"";
}

static void nbd_img_close(struct vhu_blk *blk)
{
	struct nbd_img *img = blk->be_data;

	if (!img)
		return;
	free(img->uri);
	free(img);
	blk->be_data = NULL;
}

static const char *nbd_state(const struct vhu_blk *blk)
{
	struct nbd_img *img = blk->be_data;

	if (atomic_load(&img->failed))
		return "failed";
	if (atomic_load(&img->down))
		return "reconnecting";
	return atomic_load(&img->last);
}

int vhu__blk_nbd_open(struct vhu_blk *blk, const char *uri)
{
	struct nbd_img *img = calloc(1, sizeof(*img));
	struct nbd_handle *h;
	int64_t size;
	char why[256];
	int err;

	if (!img || !(img->uri = strdup(uri))) {
		free(img);
		return -ENOMEM;
	}
	blk->be_data = img;
	blk->fd = -1;
	img->timeout_ns = (uint64_t)blk->reconnect_timeout * 1000000000u;
	img->persistent_cache = blk->nbd_persistent_cache;
	if (img->persistent_cache)
		vhu__blk_log(VHU_LOG_INFO, "%s: the server's cache is persistent: "
			     "a lost connection does not fail the next FLUSH", uri);
	atomic_init(&img->last, "connected");
	h = connect_now(blk, uri, &err, why, sizeof(why));
	if (!h)
		return err;
	size = nbd_get_size(h);
	if (blk->num_queues > 1 && nbd_can_multi_conn(h) != 1) {
		vhu__blk_open_error(blk, "%s does not allow several connections "
				    "(no multi-conn flag), which several queues "
				    "need: serve it with --num-queues 1", uri);
		nbd_close(h);
		return -EINVAL;
	}
	if (nbd_is_read_only(h) == 1 && !blk->read_only) {
		vhu__blk_log(VHU_LOG_INFO, "%s: the export is read-only: serving "
			     "it read-only", uri);
		blk->read_only = true;
	}
	img->can_flush = nbd_can_flush(h) == 1;
	img->can_fua = nbd_can_fua(h) == 1;
	img->can_trim = nbd_can_trim(h) == 1;
	img->can_zero = nbd_can_zero(h) == 1;
	blk->no_write_zeroes = !img->can_zero;
	img->can_fast_zero = nbd_can_fast_zero(h) == 1;
	nbd_close(h);
	if (size < 0) {
		vhu__blk_open_error(blk, "%s: no size from the server", uri);
		return -EIO;
	}
	blk->geo = (struct vhu_blk_geometry){ .logical = 512, .dio_offset = 512,
					      .dio_mem = 512, .discard = 4096 };
	vhu__blk_set_size(blk, (uint64_t)size);
	return 0;
}

const struct vhu__blk_backend_ops vhu__blk_nbd_ops = {
	.kind = "nbd",
	.remote = true,
	.size = nbd_size,
	.no_resize = nbd_no_resize,
	.close = nbd_img_close,
	.state = nbd_state,
	.q_open = nbd_q_open,
	.q_close = nbd_q_close,
	.submit = nbd_submit,
	.event = nbd_event,
	.round = nbd_round,
};
