/* SPDX-License-Identifier: MIT */
/*
 * The I/O engine of one started queue.  Its io_uring watches the queue's
 * kick eventfd and a stop eventfd through polls; requests are popped into a
 * fixed pool of slots, their I/O submitted to the ring, and on completion
 * the status byte is written, the element pushed, and the driver notified
 * once per round.  thread.c decides which thread runs it.
 *
 * Without io_uring (--aio threads, or a kernel / seccomp filter that
 * refuses it) the same engine runs synchronously: the queue's thread
 * waits in epoll on the kick and stop eventfds and does each request's
 * I/O with blocking preadv2 / pwritev2 / fdatasync before the next.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <vhu/iov.h>

#include "blk-int.h"

/* io_uring user_data tags that are not slots (slots are aligned). */
#define TAG_KICK 1u
#define TAG_STOP 2u
#define TAG_TICK 3u
#define TAG_MORE 4u  /* a no-op that wakes the next wait at once */

#define DEFAULT_DEPTH 128u
#define MAX_RETRIES 16u
#define DIO_ALIGN 4096u
/* Bounce buffers carry a request in chunks of at most this much. */
#define BOUNCE_CHUNK (256u << 10)

struct slot {
	struct vhu_vq_elem elem;
	struct vhu_blk_req req;
	size_t done;        /* bytes transferred so far */
	unsigned retries;
	bool through;       /* write-through: durable before completion */
	void *bounce;       /* aligned copy for O_DIRECT, or NULL */
	size_t bounce_len;  /* its size: at most BOUNCE_CHUNK */
	struct slot *next_free;
	struct slot *next_wait; /* waiting for bounce memory */
	struct iovec iov[VHU_BLK_IOV_CAP];
	struct iovec data[VHU_BLK_IOV_CAP];
	struct iovec cur[VHU_BLK_IOV_CAP];
};

struct vhu__blk_worker {
	struct vhu_blk *blk;
	struct vhu_vq *vq;
	struct vhu__blk_stats *stats;
	int stop_fd;
	int kick_fd;
	struct io_uring ring;
	struct slot *slots;
	struct slot *free;
	unsigned nslots;
	unsigned in_flight;
	bool stopping;
	bool broken;
	bool pushed;
	bool ring_ok;
	bool sync;          /* no io_uring: blocking I/O on this thread */
	bool more;          /* sync: requests left for the next round */
	int epfd;           /* sync: kick and stop eventfds */
	bool no_nowait;     /* the image refused RWF_NOWAIT: always queue */
	bool polling;       /* polls before sleeping (poll.c) */
	unsigned pop_flags; /* VHU_VQ_POP_*: NO_REARM while polling */
	bool kicks_off;     /* polling: kicks disabled since the last sleep */
	struct vhu__blk_poll poll;
	void *zeroes;       /* VHU__BLK_ZERO_BUF aligned zero bytes */
	/* Bounce memory of this queue: never more than VHU_BLK_BOUNCE_BUDGET;
	 * requests that would exceed it wait in FIFO order. */
	size_t bounce_used;
	struct slot *wait_head, *wait_tail;
	struct vhu__blk_ratelimit seg_rl; /* discard / zeroes failures */
	struct __kernel_timespec tick;
};

static struct io_uring_sqe *get_sqe(struct vhu__blk_worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	if (!sqe) {
		/* The ring has room for every slot plus the polls; a full
		 * SQ only means earlier entries were not submitted yet. */
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	return sqe;
}

static int arm_poll(struct vhu__blk_worker *w, int fd, uintptr_t tag)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_add(sqe, fd, POLLIN);
	io_uring_sqe_set_data(sqe, (void *)tag);
	return 0;
}

static int arm_tick(struct vhu__blk_worker *w)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_timeout(sqe, &w->tick, 0, 0);
	io_uring_sqe_set_data(sqe, (void *)(uintptr_t)TAG_TICK);
	return 0;
}

static void complete(struct vhu__blk_worker *w, struct slot *s, int st,
		     size_t data_done)
{
	struct vhu_blk_req *req = &s->req;

	if (req->status) {
		*req->status = (uint8_t)st;
		vhu_vq_push(w->vq, &s->elem,
			    vhu_blk_req_written(req, st, data_done));
	} else {
		vhu_vq_push(w->vq, &s->elem, 0);
	}
	w->pushed = true;

	vhu__blk_stat_add(&w->stats->requests, 1);
	if (st != VHU_BLK_S_OK)
		vhu__blk_stat_add(&w->stats->errors, 1);
	else if (req->type == VHU_BLK_T_IN)
		vhu__blk_stat_add(&w->stats->bytes_read, data_done);
	else if (req->type == VHU_BLK_T_OUT)
		vhu__blk_stat_add(&w->stats->bytes_written, data_done);
	if (st == VHU_BLK_S_OK && s->through)
		vhu__blk_stat_add(&w->stats->writes_through, 1);
	else if (req->type == VHU_BLK_T_FLUSH)
		vhu__blk_stat_add(&w->stats->flushes, 1);
	else if (req->type == VHU_BLK_T_DISCARD ||
		 req->type == VHU_BLK_T_WRITE_ZEROES)
		vhu__blk_stat_add(&w->stats->discards, 1);
	vhu__blk_stat_add(&w->stats->in_flight, (uint64_t)-1);

	if (s->bounce) {
		free(s->bounce);
		s->bounce = NULL;
		w->bounce_used -= s->bounce_len;
		vhu__blk_stat_add(&w->stats->bounce_bytes, -(uint64_t)s->bounce_len);
		s->bounce_len = 0;
	}
	s->next_free = w->free;
	w->free = s;
	w->in_flight--;
}

/* O_DIRECT takes guest memory as it is when every buffer starts on the
 * host's memory alignment and is whole blocks of its offset alignment. */
static bool aligned_iov(const struct vhu_blk_geometry *g,
			const struct iovec *iov, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if ((uintptr_t)iov[i].iov_base % g->dio_mem ||
		    iov[i].iov_len % g->dio_offset)
			return false;
	return true;
}

static void on_io_done(struct vhu__blk_worker *w, struct slot *s, int res);

/* The synchronous engine's read or write: done here, then handled as an
 * io_uring completion would be (which may submit the rest). */
static void sync_rw(struct vhu__blk_worker *w, struct slot *s,
		    const struct iovec *iov, unsigned n, off_t off, int flags)
{
	ssize_t r;

	if (s->req.type == VHU_BLK_T_IN)
		r = preadv2(w->blk->fd, iov, (int)n, off, 0);
	else
		r = pwritev2(w->blk->fd, iov, (int)n, off, flags);
	on_io_done(w, s, r < 0 ? -errno : (int)(r > INT_MAX ? INT_MAX : r));
}

/* Submit the rest of a read or write, from s->done on. */
static int submit_rw(struct vhu__blk_worker *w, struct slot *s)
{
	struct vhu_blk_req *req = &s->req;
	uint64_t off = (req->sector << VHU_BLK_SECTOR_SHIFT) + s->done;
	size_t left = req->data_len - s->done;
	struct io_uring_sqe *sqe;
	struct iovec *iov;
	unsigned n;

	if (s->bounce) {
		/* One chunk at a time through the bounce buffer. */
		if (left > s->bounce_len)
			left = s->bounce_len;
		if (req->type == VHU_BLK_T_OUT)
			vhu_iov_to_buf(req->data, req->n_data, s->done, s->bounce,
				       left);
		s->cur[0].iov_base = s->bounce;
		s->cur[0].iov_len = left;
		iov = s->cur;
		n = 1;
	} else if (s->done == 0) {
		iov = req->data;
		n = req->n_data;
	} else {
		int r = vhu_iov_slice(req->data, req->n_data, s->done, left,
				      s->cur, VHU_BLK_IOV_CAP);
		if (r < 0)
			return r;
		iov = s->cur;
		n = (unsigned)r;
	}

	if (w->sync) {
		sync_rw(w, s, iov, n, (off_t)off, s->through ? RWF_DSYNC : 0);
		return 0;
	}
	sqe = get_sqe(w);
	if (!sqe)
		return -EBUSY;
	if (req->type == VHU_BLK_T_IN) {
		io_uring_prep_readv(sqe, w->blk->fd, iov, n, off);
	} else {
		/* Write-through (wce = 0, 5.2.5): each write is durable on
		 * completion, as if followed by a flush. */
		int flags = s->through ? RWF_DSYNC : 0;

		io_uring_prep_writev2(sqe, w->blk->fd, iov, n, off, flags);
	}
	io_uring_sqe_set_data(sqe, s);
	return 0;
}

/*
 * Page-cache fast path for buffered I/O: a preadv2/pwritev2 with
 * RWF_NOWAIT completes inline when it needs no blocking (cached data,
 * writable page cache), which costs far less than a round trip through
 * io_uring and, for files whose reads io_uring would hand to a kernel
 * worker thread, saves that thread's CPU too.  Whatever it leaves undone
 * (EAGAIN, a short transfer) goes through io_uring as usual.  Images on
 * tmpfs/ramfs refuse RWF_NOWAIT, but their I/O is a memory copy that never
 * waits for a device: those are copied inline without the flag.
 * Returns the bytes done inline (0 when none).
 */
static size_t try_inline(struct vhu__blk_worker *w, struct slot *s)
{
	struct vhu_blk_req *req = &s->req;
	off_t off = (off_t)(req->sector << VHU_BLK_SECTOR_SHIFT);
	int nowait = w->blk->mem_backed ? 0 : RWF_NOWAIT;
	ssize_t r;

	if (w->no_nowait || w->blk->cache == VHU_BLK_CACHE_NONE ||
	    req->n_data > IOV_MAX)
		return 0;
	if (req->type == VHU_BLK_T_IN) {
		r = preadv2(w->blk->fd, req->data, (int)req->n_data, off,
			    nowait);
	} else {
		/* Write-through wants each write durable: leave it to
		 * io_uring with RWF_DSYNC. */
		if (s->through)
			return 0;
		r = pwritev2(w->blk->fd, req->data, (int)req->n_data, off,
			     nowait);
	}
	if (r < 0) {
		if (errno == EOPNOTSUPP || errno == EINVAL)
			w->no_nowait = true;
		return 0;
	}
	return (size_t)r;
}

/* Give s a bounce buffer: one chunk of the request (at most BOUNCE_CHUNK,
 * a multiple of the direct-I/O alignment) within the queue's budget.
 * Returns 1 when s has one, 0 when s now waits for memory (it is started
 * when another request frees some; FIFO, so none starves), -errno. */
static int take_bounce(struct vhu__blk_worker *w, struct slot *s)
{
	size_t len = s->req.data_len - s->done;
	size_t align = w->blk->geo.dio_mem > DIO_ALIGN ? w->blk->geo.dio_mem
						       : DIO_ALIGN;

	if (len > BOUNCE_CHUNK)
		len = BOUNCE_CHUNK;
	if (w->bounce_used + len > VHU_BLK_BOUNCE_BUDGET ||
	    (w->wait_head && w->wait_head != s)) {
		if (w->wait_head != s) {
			s->next_wait = NULL;
			if (w->wait_tail)
				w->wait_tail->next_wait = s;
			else
				w->wait_head = s;
			w->wait_tail = s;
		}
		return 0;
	}
	if (posix_memalign(&s->bounce, align, len)) {
		s->bounce = NULL;
		return -ENOMEM;
	}
	s->bounce_len = len;
	w->bounce_used += len;
	vhu__blk_stat_add(&w->stats->bounce_bytes, len);
	if (atomic_load_explicit(&w->stats->bounce_bytes, memory_order_relaxed) >
	    atomic_load_explicit(&w->stats->bounce_peak, memory_order_relaxed))
		atomic_store_explicit(&w->stats->bounce_peak,
				      atomic_load_explicit(&w->stats->bounce_bytes,
							   memory_order_relaxed),
				      memory_order_relaxed);
	return 1;
}

/* Start the requests waiting for bounce memory while it lasts. */
static void run_bounce_waiters(struct vhu__blk_worker *w)
{
	while (w->wait_head) {
		struct slot *s = w->wait_head;
		int r = take_bounce(w, s);

		if (r == 0)
			return;
		w->wait_head = s->next_wait;
		if (!w->wait_head)
			w->wait_tail = NULL;
		if (r > 0)
			r = submit_rw(w, s);
		if (r < 0)
			complete(w, s, VHU_BLK_S_IOERR, 0);
	}
}

/* 1: nothing to transfer; 2: done inline; 0: queued; -errno. */
static int start_rw(struct vhu__blk_worker *w, struct slot *s)
{
	struct vhu_blk_req *req = &s->req;

	s->done = 0;
	s->retries = 0;
	/* Decided once per request, so a retry or the rest of a short
	 * transfer is as durable as its start. */
	s->through = req->type == VHU_BLK_T_OUT && !atomic_load(&w->blk->wce);
	if (req->data_len == 0)
		return 1;
	s->done = try_inline(w, s);
	if (s->done >= req->data_len)
		return 2;
	/* O_DIRECT needs aligned memory; guest buffers usually are, the
	 * rest go through a bounce buffer (bounded: see take_bounce). */
	if (w->blk->cache == VHU_BLK_CACHE_NONE &&
	    !aligned_iov(&w->blk->geo, req->data, req->n_data)) {
		int r = take_bounce(w, s);

		if (r <= 0)
			return r;  /* waits for memory, or failed */
	}
	return submit_rw(w, s);
}

static int submit_flush(struct vhu__blk_worker *w, struct slot *s)
{
	struct io_uring_sqe *sqe;

	if (w->sync) {
		int r = fdatasync(w->blk->fd);

		complete(w, s, r < 0 ? VHU_BLK_S_IOERR : VHU_BLK_S_OK, 0);
		return 0;
	}
	sqe = get_sqe(w);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_fsync(sqe, w->blk->fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data(sqe, s);
	return 0;
}

/* Start a freshly popped request; it may complete at once. */
static void start_req(struct vhu__blk_worker *w, struct slot *s)
{
	struct vhu_blk_req *req = &s->req;
	struct vhu_blk *blk = w->blk;
	int st, r;

	s->through = false;
	if (s->elem.flags & VHU_VQ_ELEM_F_TRUNCATED) {
		/* Beyond seg_max: answered IOERR in the status byte (the
		 * parse below finds it as the only writable byte). */
		vhu__blk_log(VHU_LOG_DEBUG, "queue %u: request beyond seg_max",
			     vhu_vq_index(w->vq));
	}
	st = vhu_blk_req_parse(s->elem.iov, s->elem.n_out, s->elem.n_in, req,
			       s->data, VHU_BLK_IOV_CAP);
	if (st < 0) {
		vhu__blk_log(VHU_LOG_DEBUG, "queue %u: request without status byte",
			     vhu_vq_index(w->vq));
		complete(w, s, VHU_BLK_S_IOERR, 0);
		return;
	}
	if (st == VHU_BLK_S_OK) {
		struct vhu_blk_limits lim = {
			.capacity = atomic_load(&blk->capacity),
			.blk_size = blk->blk_size,
			.read_only = blk->read_only,
			.max_discard_seg = VHU_BLK_MAX_DISCARD_SEG,
			.max_discard_sectors = VHU_BLK_MAX_DISCARD_SECTORS,
			.max_write_zeroes_seg = VHU_BLK_MAX_DISCARD_SEG,
			.max_write_zeroes_sectors = VHU_BLK_MAX_DISCARD_SECTORS,
		};
		st = vhu_blk_req_check(req, &lim);
	}
	/* No write lock (another process writes the image): nothing is
	 * served, every request fails (lock.c). */
	if (st == VHU_BLK_S_OK && vhu__blk_lock_denies(blk, vhu_vq_index(w->vq)))
		st = VHU_BLK_S_IOERR;
	if (st != VHU_BLK_S_OK) {
		complete(w, s, st, 0);
		return;
	}

	if (blk->null_dev && req->type != VHU_BLK_T_GET_ID) {
		complete(w, s, VHU_BLK_S_OK, vhu__blk_null_req(req));
		return;
	}
	switch (req->type) {
	case VHU_BLK_T_IN:
	case VHU_BLK_T_OUT:
		r = start_rw(w, s);
		if (r == 1)
			complete(w, s, VHU_BLK_S_OK, 0);
		else if (r == 2)
			complete(w, s, VHU_BLK_S_OK, req->data_len);
		else if (r < 0)
			complete(w, s, VHU_BLK_S_IOERR, 0);
		return;
	case VHU_BLK_T_FLUSH:
		if (submit_flush(w, s) < 0)
			complete(w, s, VHU_BLK_S_IOERR, 0);
		return;
	case VHU_BLK_T_GET_ID:
		complete(w, s, VHU_BLK_S_OK, vhu_blk_req_get_id(req, blk->serial));
		return;
	case VHU_BLK_T_DISCARD:
	case VHU_BLK_T_WRITE_ZEROES:
		r = vhu__blk_segments(blk, w->zeroes, req, &s->through);
		if (r < 0)
			vhu__blk_seg_failed(&w->seg_rl, vhu_vq_index(w->vq),
					    req->type, r);
		/* A write-zeroes the host cannot do is UNSUPP: never OK
		 * for zeroes that were not written. */
		complete(w, s, r == 0 ? VHU_BLK_S_OK :
			       r == -EOPNOTSUPP || r == -ENOSYS ? VHU_BLK_S_UNSUPP :
			       VHU_BLK_S_IOERR, 0);
		return;
	default:
		complete(w, s, VHU_BLK_S_UNSUPP, 0);
		return;
	}
}

static void on_io_done(struct vhu__blk_worker *w, struct slot *s, int res)
{
	struct vhu_blk_req *req = &s->req;

	if (req->type == VHU_BLK_T_FLUSH) {
		complete(w, s, res < 0 ? VHU_BLK_S_IOERR : VHU_BLK_S_OK, 0);
		return;
	}
	if ((res == -EINTR || res == -EAGAIN) && s->retries++ < MAX_RETRIES) {
		if (submit_rw(w, s) < 0)
			complete(w, s, VHU_BLK_S_IOERR, 0);
		return;
	}
	if (res <= 0) {
		/* 0: end of file, i.e. the image shrank under the request. */
		vhu__blk_log(VHU_LOG_DEBUG, "queue %u: %s at sector %llu: %s",
			     vhu_vq_index(w->vq),
			     req->type == VHU_BLK_T_IN ? "read" : "write",
			     (unsigned long long)req->sector,
			     res < 0 ? strerror(-res) : "end of image");
		complete(w, s, VHU_BLK_S_IOERR, 0);
		return;
	}
	if (s->bounce && req->type == VHU_BLK_T_IN)
		vhu_iov_from_buf(req->data, req->n_data, s->done, s->bounce,
				 (size_t)res);
	s->done += (size_t)res;
	if (s->done < req->data_len) {
		/* Short transfer: continue where it stopped. */
		if (submit_rw(w, s) < 0)
			complete(w, s, VHU_BLK_S_IOERR, 0);
		return;
	}
	complete(w, s, VHU_BLK_S_OK, req->data_len);
}

/* Pop and start requests while slots are free (bounded by the ring size
 * per round so one busy queue cannot starve its completions).  When the
 * bound cuts a round short, requests may still be waiting with no kick to
 * come (the driver kicked once for all of them): a no-op completion then
 * wakes the next round at once. */
static void pop_requests(struct vhu__blk_worker *w)
{
	unsigned budget = vhu_vq_size(w->vq);

	if (budget == 0 || budget > 65536)
		budget = 65536;
	while (!w->stopping && !w->broken && w->free) {
		if (budget-- == 0) {
			struct io_uring_sqe *sqe = w->sync ? NULL : get_sqe(w);

			w->more = true;
			if (sqe) {
				io_uring_prep_nop(sqe);
				io_uring_sqe_set_data(sqe, (void *)(uintptr_t)TAG_MORE);
			}
			break;
		}
		struct slot *s = w->free;
		/* A chain longer than VHU_BLK_IOV_CAP (more than seg_max data
		 * segments, even with every one split across two memory
		 * regions) comes back truncated to its status byte. */
		int r = vhu_vq_pop_flags(w->vq, &s->elem, s->iov,
					 VHU_BLK_IOV_CAP, w->pop_flags);

		if (r == 0)
			break;
		if (r < 0) {
			w->broken = true;
			break;
		}
		w->free = s->next_free;
		w->in_flight++;
		vhu__blk_stat_add(&w->stats->in_flight, 1);
		start_req(w, s);
	}
}

/* The synchronous engine's round: see a stop, take the kicks, serve. */
static void sync_step(struct vhu__blk_worker *w)
{
	uint64_t v;

	if (read(w->stop_fd, &v, sizeof(v)) == sizeof(v))
		w->stopping = true;
	if (w->kick_fd >= 0)
		vhu_vq_drain_kick(w->vq);
	w->more = false;
	pop_requests(w);
	if (w->pushed) {
		vhu_vq_notify(w->vq);
		w->pushed = false;
	}
}

void vhu__blk_q_begin(struct vhu__blk_worker *w)
{
	if (w->sync) {
		sync_step(w);
		return;
	}
	if (w->kick_fd >= 0)
		arm_poll(w, w->kick_fd, TAG_KICK);
	else
		arm_tick(w);
	arm_poll(w, w->stop_fd, TAG_STOP);
	pop_requests(w);
	if (w->pushed) {
		vhu_vq_notify(w->vq);
		w->pushed = false;
	}
	io_uring_submit(&w->ring);
}

bool vhu__blk_q_finished(const struct vhu__blk_worker *w)
{
	return w->stopping && w->in_flight == 0;
}

void vhu__blk_q_set_polling(struct vhu__blk_worker *w)
{
	if (w->sync || !vhu__blk_poll_on(&w->poll))
		return;
	w->polling = true;
	w->pop_flags |= VHU_VQ_POP_NO_REARM;
}

int vhu__blk_q_wait(struct vhu__blk_worker *w)
{
	int r;

	if (w->sync) {
		struct epoll_event ev[2];
		/* Polling queues (no kick fd) look again every millisecond. */
		int timeout = w->more ? 0 : w->kick_fd < 0 ? 1 : -1;

		if (epoll_wait(w->epfd, ev, 2, timeout) < 0 && errno != EINTR) {
			vhu__blk_log(VHU_LOG_ERROR, "queue %u: epoll: %s",
				     vhu_vq_index(w->vq), strerror(errno));
			return -errno;
		}
		return 0;
	}
	if (w->polling && !w->stopping &&
	    vhu__blk_poll_wait(&w->poll, w->vq, &w->ring, &w->kicks_off))
		return 0;
	r = io_uring_submit_and_wait(&w->ring, 1);
	if (w->polling)
		vhu__blk_poll_woke(&w->poll);
	if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
		vhu__blk_log(VHU_LOG_ERROR, "queue %u: io_uring: %s",
			     vhu_vq_index(w->vq), strerror(-r));
		return r;
	}
	return 0;
}

void vhu__blk_q_step(struct vhu__blk_worker *w)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	bool kicked = false;

	if (w->sync) {
		sync_step(w);
		return;
	}
	io_uring_for_each_cqe(&w->ring, head, cqe) {
		uintptr_t tag = (uintptr_t)io_uring_cqe_get_data(cqe);

		seen++;
		if (tag == TAG_KICK || tag == TAG_TICK) {
			kicked = true;
		} else if (tag == TAG_MORE) {
			/* pop_requests() below carries on */
		} else if (tag == TAG_STOP) {
			w->stopping = true;
		} else if (tag) {
			on_io_done(w, (struct slot *)tag, cqe->res);
		}
	}
	io_uring_cq_advance(&w->ring, seen);
	run_bounce_waiters(w);

	if (kicked && !w->stopping) {
		/* Re-arm before popping so a kick that arrives meanwhile is
		 * not lost. */
		if (w->kick_fd >= 0) {
			vhu_vq_drain_kick(w->vq);
			arm_poll(w, w->kick_fd, TAG_KICK);
		} else {
			arm_tick(w);
		}
	}
	pop_requests(w);
	/* One interrupt for everything this round completed. */
	if (w->pushed) {
		vhu_vq_notify(w->vq);
		w->pushed = false;
	}
	io_uring_submit(&w->ring);
}

int vhu__blk_q_ring_fd(const struct vhu__blk_worker *w)
{
	return w->sync ? w->epfd : w->ring.ring_fd;
}

void vhu__blk_q_request_stop(struct vhu__blk_worker *w)
{
	uint64_t one = 1;

	while (write(w->stop_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

void vhu__blk_q_free(struct vhu__blk_worker *w)
{
	if (!w)
		return;
	vhu__blk_poll_fini(&w->poll);
	if (w->ring_ok)
		io_uring_queue_exit(&w->ring);
	if (w->stop_fd >= 0)
		close(w->stop_fd);
	if (w->epfd >= 0)
		close(w->epfd);
	free(w->zeroes);
	free(w->slots);
	free(w);
}

static int sync_init(struct vhu__blk_worker *w)
{
	struct epoll_event ev = { .events = EPOLLIN };

	w->sync = true;
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0)
		return -errno;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->stop_fd, &ev) < 0)
		return -errno;
	if (w->kick_fd >= 0 &&
	    epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->kick_fd, &ev) < 0)
		return -errno;
	return 0;
}

int vhu__blk_q_new(struct vhu_blk *blk, struct vhu_vq *vq,
		   struct vhu__blk_worker **out)
{
	unsigned idx = vhu_vq_index(vq);
	unsigned depth = blk->queue_depth ? blk->queue_depth : DEFAULT_DEPTH;
	unsigned qsize = vhu_vq_size(vq), entries = 8;
	struct vhu__blk_worker *w;
	int r;

	if (idx >= blk->num_queues)
		return -EINVAL;
	if (qsize && depth > qsize)
		depth = qsize;
	/* Room for every slot's one SQE plus the kick and stop polls. */
	while (entries < depth + 4 && entries < 4096)
		entries <<= 1;

	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->blk = blk;
	w->vq = vq;
	w->epfd = -1;
	w->stats = &blk->stats[idx];
	w->kick_fd = vhu_vq_kick_fd(vq);
	w->tick.tv_nsec = 1000000; /* 1 ms, only when the queue polls */
	w->pop_flags = VHU_VQ_POP_TRUNCATED;
	vhu__blk_poll_init(&w->poll, blk->poll_us, blk->poll_always);
	w->nslots = depth;
	w->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->stop_fd < 0) {
		r = -errno;
		goto fail;
	}
	w->slots = calloc(depth, sizeof(*w->slots));
	if (!w->slots || posix_memalign(&w->zeroes, DIO_ALIGN, VHU__BLK_ZERO_BUF)) {
		w->zeroes = NULL;
		r = -ENOMEM;
		goto fail;
	}
	memset(w->zeroes, 0, VHU__BLK_ZERO_BUF);
	for (unsigned i = 0; i < depth; i++) {
		w->slots[i].next_free = w->free;
		w->free = &w->slots[i];
	}
	if (blk->aio != VHU_BLK_AIO_THREADS) {
		r = io_uring_queue_init(entries, &w->ring, 0);
		if (r == 0) {
			w->ring_ok = true;
			*out = w;
			return 0;
		}
		if (blk->aio_strict)
			goto fail;
		vhu__blk_log(VHU_LOG_WARN, "queue %u: io_uring: %s; serving it "
			     "with blocking I/O", idx, strerror(-r));
	}
	r = sync_init(w);
	if (r < 0)
		goto fail;
	*out = w;
	return 0;
fail:
	vhu__blk_q_free(w);
	return r;
}
