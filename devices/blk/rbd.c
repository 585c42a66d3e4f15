/* SPDX-License-Identifier: MIT */
/*
 * The RBD back-end: an image in a Ceph cluster through librbd
 * (--blk-file rbd:POOL/IMAGE[@SNAP][:conf=FILE][:id=NAME], rbd-uri.c).
 *
 * librbd runs the I/O on its own threads and calls back there.  The
 * callback only puts the finished request on its queue's lock-free list
 * (many producers, one consumer) and, when the list was empty, writes the
 * queue's eventfd; the queue's thread, which watches that eventfd, takes
 * the whole list at once and completes the requests (backend.h).
 *
 * A writer holds the image's exclusive lock (RBD's exclusive-lock
 * feature) while the guest's queues run: taken when the first queue
 * starts, released (after a flush) when the last one stops, so a
 * migration's destination can take it once the source stopped.  Taken in
 * librbd's exclusive mode, it is not handed to another client that asks
 * for it, whose writes then fail.  Writes without the lock fail here too.
 *
 * A change of the image header by anyone (`rbd resize`...) arrives on
 * librbd's watch; it wakes blk->change_fd, and the daemon's control
 * thread re-reads the size (vhu_blk_refresh_size) and tells the guest.
 */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

#include "backend.h"
#include "blk-int.h"
#include "rbd.h"

enum lock_state {
	LOCK_NONE,          /* read-only: never taken */
	LOCK_UNSUPPORTED,   /* no exclusive-lock feature: writes go unguarded */
	LOCK_RELEASED,      /* not held: no queue runs */
	LOCK_HELD,
	LOCK_REFUSED,       /* another client holds it */
};

struct img {
	rados_t cluster;
	rados_ioctx_t io;
	rbd_image_t rbd;
	bool cluster_ok, io_ok, rbd_ok;
	_Atomic int lock;           /* enum lock_state; read by the queues */
	uint64_t watch;
	bool watching;
	char name[256];             /* pool/image[@snap], for messages */
};

struct rq;

/* One librbd request in flight. */
struct op {
	struct rq *q;
	struct op *next;            /* free list, or the finished list */
	struct op *all;             /* every op of the queue, to free */
	rbd_completion_t c;
	ssize_t res;                /* set by the callback */
	struct vhu__blk_io *io;
};

struct rq {
	struct vhu__blk_worker *w;
	struct img *im;
	int efd;
	_Atomic(struct op *) finished;  /* pushed by librbd's threads */
	_Atomic unsigned pending;       /* callbacks not yet returned */
	struct op *free;
	struct op *all;
	unsigned failures;          /* since the last warning */
	time_t warned;
};

/* io's back-end state: io->done is the DISCARD / WRITE_ZEROES segment
 * under way; io->retries != 0 once the flush that makes a write-through
 * request durable runs. */

static struct img *img_of(const struct vhu_blk *blk)
{
	return blk->be_data;
}

/* ---- the image (control thread) ---- */

/* librbd's thread: the image header changed (size, snapshots, lock
 * owner...), by this client or another. */
static void on_update(void *arg)
{
	struct vhu_blk *blk = arg;
	uint64_t one = 1;

	(void)!write(blk->change_fd, &one, sizeof(one));
}

static void rbd_close_image(struct vhu_blk *blk)
{
	struct img *im = img_of(blk);

	if (!im)
		return;
	if (im->watching)
		rbd_update_unwatch(im->rbd, im->watch);
	if (im->rbd_ok)
		rbd_close(im->rbd);  /* flushes what librbd's cache holds */
	if (im->io_ok)
		rados_ioctx_destroy(im->io);
	if (im->cluster_ok)
		rados_shutdown(im->cluster);
	if (blk->change_fd >= 0)
		close(blk->change_fd);
	blk->change_fd = -1;
	free(im);
	blk->be_data = NULL;
}

static int connect_cluster(struct vhu_blk *blk, struct img *im,
			   const struct vhu__blk_rbd_spec *s)
{
	int e = rados_create(&im->cluster, s->id);

	if (e < 0) {
		vhu__blk_open_error(blk, "rbd: cannot set up a Ceph client (id "
				    "%s): %s", s->id ? s->id : "admin", strerror(-e));
		return e;
	}
	im->cluster_ok = true;
	/* A cluster that is not there fails the open in bounded time;
	 * requests to a connected cluster wait as long as it takes.  (Set
	 * here, it wins over the file and CEPH_ARGS.) */
	rados_conf_set(im->cluster, "client_mount_timeout", "30");
	/* Defaults for a block server, set before the file and CEPH_ARGS are
	 * read so the operator's settings win.  One thread runs librados'
	 * completions (default 2): with two, every reply woke both in turn
	 * and a 4 KiB random read cost a third more CPU (docs/vhu-blk.md). */
	rados_conf_set(im->cluster, "librados_thread_count", "1");
	e = rados_conf_read_file(im->cluster, s->conf);
	if (e < 0 && s->conf) {
		vhu__blk_open_error(blk, "rbd: cannot read the Ceph configuration "
				    "'%s': %s", s->conf, strerror(-e));
		return e;
	}
	rados_conf_parse_env(im->cluster, NULL);
	/* --cache none: no write-back cache in librbd either. */
	if (blk->cache == VHU_BLK_CACHE_NONE)
		rados_conf_set(im->cluster, "rbd_cache", "false");
	e = rados_connect(im->cluster);
	if (e < 0) {
		vhu__blk_open_error(blk, "rbd: cannot connect to the Ceph cluster "
				    "(configuration %s): %s",
				    s->conf ? s->conf : "from CEPH_CONF or "
				    "/etc/ceph/ceph.conf; add :conf=FILE",
				    strerror(-e));
		return e;
	}
	return 0;
}

static int open_image(struct vhu_blk *blk, struct img *im,
		      const struct vhu__blk_rbd_spec *s)
{
	rbd_image_info_t info;
	uint64_t features = 0;
	int e = rados_ioctx_create(im->cluster, s->pool, &im->io);

	if (e < 0) {
		vhu__blk_open_error(blk, "rbd: pool '%s': %s", s->pool,
				    e == -ENOENT ? "no such pool" : strerror(-e));
		return e;
	}
	im->io_ok = true;
	if (blk->read_only)
		e = rbd_open_read_only(im->io, s->image, &im->rbd, s->snap);
	else
		e = rbd_open(im->io, s->image, &im->rbd, NULL);
	if (e < 0) {
		vhu__blk_open_error(blk, "rbd: cannot open '%s': %s", im->name,
				    e == -ENOENT ? (s->snap ? "no such image or "
						    "snapshot" : "no such image")
						 : strerror(-e));
		return e;
	}
	im->rbd_ok = true;
	e = rbd_get_features(im->rbd, &features);
	if (e == 0)
		e = rbd_stat(im->rbd, &info, sizeof(info));
	if (e < 0) {
		vhu__blk_open_error(blk, "rbd: '%s': %s", im->name, strerror(-e));
		return e;
	}
	atomic_init(&im->lock, blk->read_only ? LOCK_NONE :
			       (features & RBD_FEATURE_EXCLUSIVE_LOCK) ?
			       LOCK_RELEASED : LOCK_UNSUPPORTED);
	if (!blk->read_only && !(features & RBD_FEATURE_EXCLUSIVE_LOCK))
		vhu__blk_log(VHU_LOG_WARN, "rbd: '%s' has no exclusive-lock "
			     "feature: another writer would go unnoticed "
			     "(rbd feature enable %s exclusive-lock)", im->name,
			     im->name);
	/* Byte-addressed storage: 512-byte blocks, no memory alignment;
	 * a discard frees whole objects only. */
	blk->geo = (struct vhu_blk_geometry){
		.logical = 512, .dio_offset = 512, .dio_mem = 1,
		.discard = info.obj_size >= 512 && info.obj_size <= (1u << 26)
			   ? (unsigned)info.obj_size : 4096,
	};
	vhu__blk_set_size(blk, info.size);
	e = rbd_update_watch(im->rbd, &im->watch, on_update, blk);
	if (e < 0) {
		vhu__blk_open_error(blk, "rbd: '%s': cannot watch the image: %s",
				    im->name, strerror(-e));
		return e;
	}
	im->watching = true;
	return 0;
}

int vhu__blk_rbd_open(struct vhu_blk *blk, const char *uri)
{
	struct vhu__blk_rbd_spec s;
	struct img *im;
	char why[256];
	int e = vhu__blk_rbd_parse(uri, &s, why, sizeof(why));

	if (e < 0) {
		vhu__blk_open_error(blk, "%s", why);
		return e;
	}
	blk->fd = -1;
	im = calloc(1, sizeof(*im));
	blk->change_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!im || blk->change_fd < 0) {
		e = im ? -errno : -ENOMEM;
		free(im);
		if (blk->change_fd >= 0)
			close(blk->change_fd);
		blk->change_fd = -1;
		vhu__blk_rbd_spec_free(&s);
		return e;
	}
	blk->be_data = im;
	snprintf(im->name, sizeof(im->name), "%s/%s%s%s", s.pool, s.image,
		 s.snap ? "@" : "", s.snap ? s.snap : "");
	if (s.snap)
		blk->read_only = true;  /* a snapshot never changes */
	e = connect_cluster(blk, im, &s);
	if (e == 0)
		e = open_image(blk, im, &s);
	vhu__blk_rbd_spec_free(&s);
	if (e < 0)
		rbd_close_image(blk);
	return e;
}

static int rbd_size(struct vhu_blk *blk, uint64_t *size)
{
	uint64_t v;

	/* Cleared first: a change after this read wakes the next one. */
	(void)!read(blk->change_fd, &v, sizeof(v));
	return rbd_get_size(img_of(blk)->rbd, size);
}

static int rbd_set_size(struct vhu_blk *blk, uint64_t size)
{
	return rbd_resize(img_of(blk)->rbd, size);
}

static const char *rbd_state(const struct vhu_blk *blk)
{
	switch (atomic_load(&img_of(blk)->lock)) {
	case LOCK_HELD: return "locked";
	case LOCK_RELEASED: return "unlocked";
	case LOCK_REFUSED: return "lock-refused";
	default: return "connected";
	}
}

/* The guest's first queue starts (queues_on; a restart at the same
 * positions keeps the lock): take the exclusive lock.  Exclusive
 * mode: librbd keeps it against other clients until released here (in
 * its automatic mode it would hand it to any writer that asks). */
static void lock_take(struct img *im)
{
	int e, l = atomic_load(&im->lock);

	if (l != LOCK_RELEASED && l != LOCK_REFUSED)
		return;
	e = rbd_lock_acquire(im->rbd, RBD_LOCK_MODE_EXCLUSIVE);
	atomic_store(&im->lock, e == 0 ? LOCK_HELD : LOCK_REFUSED);
	if (e == 0)
		vhu__blk_log(VHU_LOG_INFO, "rbd: '%s': exclusive lock taken",
			     im->name);
	else
		vhu__blk_log(VHU_LOG_ERROR, "rbd: '%s': cannot take the exclusive "
			     "lock (%s): another client writes the image; the "
			     "guest's writes fail until the queues restart",
			     im->name, e == -EROFS || e == -EBUSY
				       ? "held by another client" : strerror(-e));
}

/* The last queue stopped for real (queues_off): what librbd's cache
 * holds reaches the cluster, then the lock goes, for the next writer (a
 * migration's destination) to take. */
static void lock_give(struct img *im)
{
	int e, l = atomic_load(&im->lock);

	if (l == LOCK_REFUSED)
		atomic_store(&im->lock, LOCK_RELEASED);
	if (l != LOCK_HELD)
		return;
	e = rbd_flush(im->rbd);
	if (e < 0)
		vhu__blk_log(VHU_LOG_ERROR, "rbd: '%s': flush before releasing the "
			     "lock: %s", im->name, strerror(-e));
	e = rbd_lock_release(im->rbd);
	if (e < 0)
		vhu__blk_log(VHU_LOG_WARN, "rbd: '%s': releasing the exclusive "
			     "lock: %s", im->name, strerror(-e));
	else
		vhu__blk_log(VHU_LOG_INFO, "rbd: '%s': exclusive lock released",
			     im->name);
	atomic_store(&im->lock, LOCK_RELEASED);
}

static void rbd_queues_on(struct vhu_blk *blk)
{
	lock_take(img_of(blk));
}

static void rbd_queues_off(struct vhu_blk *blk)
{
	lock_give(img_of(blk));
}

/* ---- queues ---- */

static int rbd_q_open(struct vhu_blk *blk, struct vhu__blk_worker *w,
		      void **ctx)
{
	struct rq *q = calloc(1, sizeof(*q));
	int e;

	if (!q)
		return -ENOMEM;
	q->w = w;
	q->im = img_of(blk);
	atomic_init(&q->finished, NULL);
	atomic_init(&q->pending, 0);
	q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (q->efd < 0) {
		e = -errno;
		free(q);
		return e;
	}
	e = vhu__blk_q_watch(w, q->efd, POLLIN);
	if (e < 0) {
		close(q->efd);
		free(q);
		return e;
	}
	*ctx = q;
	return 0;
}

static void rbd_q_close(void *ctx)
{
	struct rq *q = ctx;

	/* Every request completed; a callback may still be returning. */
	while (atomic_load(&q->pending))
		usleep(50);
	while (q->all) {
		struct op *op = q->all;

		q->all = op->all;
		free(op);
	}
	close(q->efd);
	free(q);
}

/* librbd's thread. */
static void on_complete(rbd_completion_t c, void *arg)
{
	struct op *op = arg;
	struct rq *q = op->q;
	struct op *head = atomic_load_explicit(&q->finished, memory_order_relaxed);

	op->res = rbd_aio_get_return_value(c);
	do {
		op->next = head;
	} while (!atomic_compare_exchange_weak_explicit(&q->finished, &head, op,
							memory_order_release,
							memory_order_relaxed));
	/* The queue reads the eventfd before it takes the list: a push
	 * onto an empty list is taken by a round under way or wakes the
	 * next. */
	if (!head) {
		uint64_t one = 1;

		(void)!write(q->efd, &one, sizeof(one));
	}
	atomic_fetch_sub_explicit(&q->pending, 1, memory_order_release);
}

static struct op *get_op(struct rq *q)
{
	struct op *op = q->free;

	if (op) {
		q->free = op->next;
		return op;
	}
	op = calloc(1, sizeof(*op));
	if (op) {
		op->q = q;
		op->all = q->all;
		q->all = op;
	}
	return op;
}

static void put_op(struct rq *q, struct op *op)
{
	op->next = q->free;
	q->free = op;
}

/* Start io's next librbd request: its read or write, the segment
 * io->done of a DISCARD / WRITE_ZEROES, or (io->retries) its flush. */
static int issue(struct rq *q, struct vhu__blk_io *io)
{
	const struct vhu_blk_req *req = &io->req;
	const struct vhu_blk_seg *seg = req->segs + (io->done < req->n_segs ? io->done : 0);
	uint64_t off = req->sector << VHU_BLK_SECTOR_SHIFT;
	rbd_image_t img = q->im->rbd;
	struct op *op = get_op(q);
	int e;

	if (!op)
		return -ENOMEM;
	op->io = io;
	e = rbd_aio_create_completion(op, on_complete, &op->c);
	if (e < 0) {
		put_op(q, op);
		return e;
	}
	atomic_fetch_add_explicit(&q->pending, 1, memory_order_relaxed);
	if (io->retries || req->type == VHU_BLK_T_FLUSH)
		e = rbd_aio_flush(img, op->c);
	else if (req->type == VHU_BLK_T_IN)
		e = rbd_aio_readv(img, req->data, (int)req->n_data, off, op->c);
	else if (req->type == VHU_BLK_T_OUT)
		e = rbd_aio_writev(img, req->data, (int)req->n_data, off, op->c);
	else if (req->type == VHU_BLK_T_DISCARD)
		e = rbd_aio_discard(img, seg->sector << VHU_BLK_SECTOR_SHIFT,
				    (uint64_t)seg->num_sectors << VHU_BLK_SECTOR_SHIFT,
				    op->c);
	else
		e = rbd_aio_write_zeroes(img, seg->sector << VHU_BLK_SECTOR_SHIFT,
					 (uint64_t)seg->num_sectors <<
					 VHU_BLK_SECTOR_SHIFT, op->c, 0, 0);
	if (e < 0) {
		/* Not started: no callback comes. */
		atomic_fetch_sub_explicit(&q->pending, 1, memory_order_relaxed);
		rbd_aio_release(op->c);
		put_op(q, op);
	}
	return e;
}

/* A failed request: IOERR for the guest, a warning at most every 10 s. */
static void fail(struct rq *q, struct vhu__blk_io *io, int err)
{
	static const char *const names[] = {
		[VHU_BLK_T_IN] = "read", [VHU_BLK_T_OUT] = "write",
		[VHU_BLK_T_FLUSH] = "flush", [VHU_BLK_T_DISCARD] = "discard",
		[VHU_BLK_T_WRITE_ZEROES] = "write zeroes",
	};
	time_t now = time(NULL);

	q->failures++;
	if (!q->warned || now - q->warned >= 10) {
		vhu__blk_log(VHU_LOG_WARN, "rbd: '%s': queue %u: %s failed: %s "
			     "(%u failure%s since the last report)", q->im->name,
			     vhu__blk_q_index(q->w), names[io->req.type],
			     err == -EROFS ? "the image is locked by another "
			     "client" : strerror(-err), q->failures,
			     q->failures == 1 ? "" : "s");
		q->failures = 0;
		q->warned = now;
	}
	vhu__blk_io_done(q->w, io, VHU_BLK_S_IOERR, 0);
}

/* The next step of io after one of its librbd requests finished. */
static void step(struct rq *q, struct vhu__blk_io *io, ssize_t res)
{
	const struct vhu_blk_req *req = &io->req;
	int e;

	if (res < 0) {
		fail(q, io, (int)res);
		return;
	}
	if (req->type == VHU_BLK_T_IN || req->type == VHU_BLK_T_FLUSH) {
		vhu__blk_io_done(q->w, io, VHU_BLK_S_OK,
				 req->type == VHU_BLK_T_IN ? req->data_len : 0);
		return;
	}
	if (!io->retries && req->type != VHU_BLK_T_OUT && ++io->done < req->n_segs) {
		e = issue(q, io);         /* the next segment */
	} else if (!io->retries && io->write_through) {
		io->retries = 1;          /* durable before done: flush */
		e = issue(q, io);
	} else {
		io->through = io->retries != 0;
		vhu__blk_io_done(q->w, io, VHU_BLK_S_OK,
				 req->type == VHU_BLK_T_OUT ? req->data_len : 0);
		return;
	}
	if (e < 0)
		fail(q, io, e);
}

static bool writable(const struct img *im)
{
	int l = atomic_load_explicit(&im->lock, memory_order_relaxed);

	return l == LOCK_HELD || l == LOCK_UNSUPPORTED;
}

static void rbd_submit(void *ctx, struct vhu__blk_io *io)
{
	struct rq *q = ctx;
	uint32_t t = io->req.type;
	int e;

	io->done = 0;
	io->retries = 0;
	if (t != VHU_BLK_T_IN && t != VHU_BLK_T_FLUSH && !writable(q->im)) {
		fail(q, io, -EROFS);
		return;
	}
	/* Nothing to transfer or no range: done at once (as for files). */
	if (((t == VHU_BLK_T_IN || t == VHU_BLK_T_OUT) && io->req.data_len == 0) ||
	    ((t == VHU_BLK_T_DISCARD || t == VHU_BLK_T_WRITE_ZEROES) &&
	     io->req.n_segs == 0)) {
		vhu__blk_io_done(q->w, io, VHU_BLK_S_OK, 0);
		return;
	}
	e = issue(q, io);
	if (e < 0)
		fail(q, io, e);
}

/* The eventfd: take what librbd finished (newest first on the list, so
 * turned round) and move each request on. */
static void rbd_event(void *ctx, unsigned revents)
{
	struct rq *q = ctx;
	struct op *op, *rev = NULL;
	uint64_t v;

	(void)revents;
	(void)!read(q->efd, &v, sizeof(v));
	op = atomic_exchange_explicit(&q->finished, NULL, memory_order_acquire);
	while (op) {
		struct op *next = op->next;

		op->next = rev;
		rev = op;
		op = next;
	}
	while (rev) {
		struct op *next = rev->next;
		struct vhu__blk_io *io = rev->io;
		ssize_t res = rev->res;

		rbd_aio_release(rev->c);
		put_op(q, rev);
		step(q, io, res);
		rev = next;
	}
	vhu__blk_q_watch(q->w, q->efd, POLLIN);
}

const struct vhu__blk_backend_ops vhu__blk_rbd_ops = {
	.kind = "rbd",
	.size = rbd_size,
	.resize = rbd_set_size,
	.close = rbd_close_image,
	.queues_on = rbd_queues_on,
	.queues_off = rbd_queues_off,
	.state = rbd_state,
	.q_open = rbd_q_open,
	.q_close = rbd_q_close,
	.submit = rbd_submit,
	.event = rbd_event,
};
