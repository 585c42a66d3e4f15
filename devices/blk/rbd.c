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
 * for it, whose writes then fail.  A thread of the image does the taking
 * and releasing (rbd-lock.c); writes wait while it takes the lock and fail
 * without it.
 *
 * A queue asked to stop waits STOP_GIVE_UP_MS for the cluster, then fails
 * what is still out (IOERR) so the stop returns.  librbd keeps those
 * requests: a read's data goes to a buffer of the op, never straight to
 * guest memory, and ops (with their queue, when it closes meanwhile) stay
 * allocated until the callback came.
 *
 * A change of the image header by anyone (`rbd resize`...) arrives on
 * librbd's watch; it wakes blk->change_fd, and the daemon's control
 * thread re-reads the size (vhu_blk_refresh_size) and tells the guest.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <rados/librados.h>
#include <rbd/librbd.h>
#include <vhu/iov.h>

#include "backend.h"
#include "blk-int.h"
#include "rbd-int.h"
#include "rbd.h"

/* A queue asked to stop gives up on the requests the cluster has not
 * answered after this long (IOERR), so a stop returns (docs/vhu-blk.md). */
#define STOP_GIVE_UP_MS 5000
#define TICK_MS 20          /* held writes and a stop's deadline: checked */
#define CLOSE_WAIT_MS 1000  /* q_close: callbacks still returning */

struct rq;

/* One librbd request in flight. */
struct op {
	struct rq *q;
	struct op *next;            /* free list, or the finished list */
	struct op *all;             /* every op of the queue, to free */
	rbd_completion_t c;
	ssize_t res;                /* set by the callback */
	struct vhu__blk_io *io;     /* NULL: free, or given up on */
	bool abandoned;             /* given up on; the callback is still due */
	/* A read lands here, not in guest memory, and is copied on the
	 * queue's thread: a read given up on may complete after the guest's
	 * memory is gone. */
	void *buf;
	size_t cap;
};

struct rq {
	struct vhu__blk_worker *w;
	struct img *im;
	int efd;
	_Atomic(struct op *) finished;  /* pushed by librbd's threads */
	_Atomic unsigned pending;       /* callbacks not yet returned */
	struct op *free;
	struct op *all;
	unsigned busy;              /* ops with an io */
	unsigned abandoned;         /* ops given up on, not yet returned */
	struct vhu__blk_io *held, **held_tail;  /* writes waiting for the lock */
	bool ticking;               /* the queue's timer is armed */
	uint64_t deadline;          /* ms: a stop gives up then; 0: not set */
	unsigned failures;          /* since the last warning */
	time_t warned;
};

/* io's back-end state: io->done is the DISCARD / WRITE_ZEROES segment
 * under way; io->retries != 0 once the flush that makes a write-through
 * request durable runs. */

/* ---- the image (control thread) ---- */

/* librbd's thread: the image header changed (size, snapshots, lock
 * owner...), by this client or another. */
static void on_update(void *arg)
{
	struct img *im = arg;
	uint64_t one = 1;

	(void)!write(im->change_fd, &one, sizeof(one));
}

static void rbd_close_image(struct vhu_blk *blk)
{
	struct img *im = img_of(blk);

	if (!im)
		return;
	/* librbd waits for its requests at close: with the cluster silent
	 * that is forever.  Leave it all as it is instead (we exit). */
	if (!vhu__blk_rbd_locker_stop(im) || atomic_load(&im->stranded) ||
	    atomic_load(&im->resizing)) {
		vhu__blk_log(VHU_LOG_WARN, "rbd: '%s': the cluster does not answer "
			     "(%u queue%s with requests out%s); the image is left "
			     "open", im->name, atomic_load(&im->stranded),
			     atomic_load(&im->stranded) == 1 ? "" : "s",
			     atomic_load(&im->resizing) ? ", a resize under way"
							: "");
		/* The watch stays too (unwatching waits for librbd): its
		 * callback may still come, and writes the image's eventfd,
		 * left open with it, never the device's memory. */
		blk->change_fd = -1;
		blk->be_data = NULL;
		return;
	}
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
	pthread_cond_destroy(&im->cv);
	pthread_mutex_destroy(&im->mu);
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
	/* The messenger reads a socket through a buffer of this size; a
	 * reply carrying 4 KiB of data did not fit the default 4 KiB and
	 * took three reads instead of one or less (1.43 read calls per 4 KiB
	 * random read, 0.55 with 64 KiB; docs/vhu-blk.md). */
	rados_conf_set(im->cluster, "ms_tcp_prefetch_max_size", "65536");
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

/* A writer, at open: another client holding the exclusive lock is a
 * VM's librbd (QEMU, in its automatic mode), or the source of a migration
 * (a vhu-blk, which recorded itself).  librbd would hand the lock from the
 * former to this vhu-blk when its queues start, and the VM's writes would
 * fail after: refused (unless --lock off), as a file written by QEMU is. */
static int refuse_owned(struct vhu_blk *blk, struct img *im)
{
	char who[128];
	int e;

	if (atomic_load(&im->lock) != LOCK_RELEASED || blk->no_lock)
		return 0;
	e = vhu__blk_rbd_other_owner(im, who, sizeof(who));
	if (e < 0) {
		vhu__blk_open_error(blk, "rbd: '%s': cannot ask who holds its "
				    "exclusive lock: %s", im->name, strerror(-e));
		return e;
	}
	if (e == 0)
		return 0;
	if (!vhu__blk_rbd_owner_watches(im, who)) {
		vhu__blk_log(VHU_LOG_WARN, "rbd: '%s': its exclusive lock is held "
			     "by a client that is gone (%s, no longer watching "
			     "the image): librbd breaks that lock when the queues "
			     "start", im->name, who);
		return 0;
	}
	if (!vhu__blk_rbd_owner_is_vhu_blk(im, who)) {
		vhu__blk_open_error(blk, "rbd: '%s' is locked: another client (%s) "
			"holds its exclusive lock and writes the image (a running "
			"VM: QEMU's librbd, rbd-nbd...); serving it would take the "
			"lock away and fail that client's writes.  Stop it, or pass "
			"--lock off if you are sure", im->name, who);
		return -EBUSY;
	}
	vhu__blk_log(VHU_LOG_WARN, "rbd: '%s' is being written by another "
		     "vhu-blk (%s, serving a running guest): this one takes the "
		     "exclusive lock when its front-end starts the queues (as "
		     "the destination of a migration does, once the source "
		     "stopped) and its writes fail while the other writes",
		     im->name, who);
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
	im->force = blk->no_lock;
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
	e = refuse_owned(blk, im);
	if (e < 0)
		return e;
	im->change_fd = blk->change_fd;
	e = rbd_update_watch(im->rbd, &im->watch, on_update, im);
	if (e < 0) {
		vhu__blk_open_error(blk, "rbd: '%s': cannot watch the image: %s",
				    im->name, strerror(-e));
		return e;
	}
	im->watching = true;
	if (atomic_load(&im->lock) == LOCK_RELEASED) {
		e = vhu__blk_rbd_locker_start(im);
		if (e < 0) {
			vhu__blk_open_error(blk, "rbd: '%s': cannot start the lock "
					    "thread: %s", im->name, strerror(-e));
			return e;
		}
	}
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
	pthread_mutex_init(&im->mu, NULL);
	pthread_cond_init(&im->cv, NULL);
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

/* The control thread waits this long for a resize (the question to the
 * cluster who holds the lock, then rbd_resize), below `vhu ctl`'s default
 * 10 s; a cluster that does not answer, or an owner that does not run a
 * forwarded resize, would otherwise hold the control thread for ever. */
#define RESIZE_WAIT_MS 8000

struct resize_job {
	struct img *im;
	uint64_t size;
	bool check;                 /* ask who holds the exclusive lock */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done, abandoned;       /* guarded by mu */
	int rc;                     /* 1: another client holds the lock */
	char who[128];
};

static void job_free(struct resize_job *j)
{
	pthread_cond_destroy(&j->cv);
	pthread_mutex_destroy(&j->mu);
	free(j);
}

static void *resize_main(void *arg)
{
	struct resize_job *j = arg;
	struct img *im = j->im;
	int e = j->check ? vhu__blk_rbd_other_owner(im, j->who, sizeof(j->who))
			 : 0;
	bool abandoned;

	if (e == 0)
		e = rbd_resize(im->rbd, j->size);
	pthread_mutex_lock(&j->mu);
	j->rc = e;
	j->done = true;
	abandoned = j->abandoned;
	pthread_cond_signal(&j->cv);
	pthread_mutex_unlock(&j->mu);
	if (abandoned) {
		if (e < 0)
			vhu__blk_log(VHU_LOG_ERROR, "rbd: '%s': the resize given up "
				     "on ended: %s", im->name, strerror(-e));
		else if (e == 0)
			vhu__blk_log(VHU_LOG_INFO, "rbd: '%s': the resize given up "
				     "on ended: done", im->name);
		/* The last touch of the image: it may be closed after. */
		atomic_fetch_sub(&im->resizing, 1);
		job_free(j);
	}
	return NULL;
}

/* librbd forwards a resize to the holder of the exclusive lock, which
 * runs it: another client's guest would see its disk change under it.
 * Refused then; the owner asked first, so a client that takes the lock
 * between the question and the resize still gets it run (librbd offers
 * no resize that fails instead).  Both run on a thread of their own,
 * waited for RESIZE_WAIT_MS. */
static int rbd_set_size(struct vhu_blk *blk, uint64_t size)
{
	struct img *im = img_of(blk);
	struct resize_job *j = calloc(1, sizeof(*j));
	struct timespec until;
	pthread_attr_t attr;
	pthread_t t;
	int e;

	if (!j)
		return -ENOMEM;
	j->im = im;
	j->size = size;
	j->check = atomic_load(&im->lock) != LOCK_NONE &&
		   atomic_load(&im->lock) != LOCK_UNSUPPORTED;
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->cv, NULL);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	e = -pthread_create(&t, &attr, resize_main, j);
	pthread_attr_destroy(&attr);
	if (e < 0) {
		job_free(j);
		return e;
	}
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += RESIZE_WAIT_MS / 1000;
	until.tv_nsec += (RESIZE_WAIT_MS % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&j->mu);
	while (!j->done &&
	       pthread_cond_timedwait(&j->cv, &j->mu, &until) != ETIMEDOUT)
		;
	if (!j->done) {
		/* Counted before mu goes: the job's decrement comes after. */
		atomic_fetch_add(&im->resizing, 1);
		j->abandoned = true;
		pthread_mutex_unlock(&j->mu);
		snprintf(blk->resize_why, sizeof(blk->resize_why), "rbd: '%s': "
			 "the cluster has not finished the resize after %u s (it "
			 "does not answer, or the exclusive lock's owner does not); "
			 "it goes on in the background, and the guest sees the new "
			 "size once it is done", im->name, RESIZE_WAIT_MS / 1000);
		return -ETIMEDOUT;
	}
	pthread_mutex_unlock(&j->mu);
	e = j->rc;
	if (e > 0)
		snprintf(blk->resize_why, sizeof(blk->resize_why), "rbd: '%s' "
			 "is locked: another client (%s) holds its exclusive "
			 "lock (it serves a running guest); resize it there, or "
			 "once it stopped", im->name, j->who);
	job_free(j);
	return e > 0 ? -EBUSY : e;
}

/* ---- queues ---- */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int rbd_q_open(struct vhu_blk *blk, struct vhu__blk_worker *w,
		      void **ctx)
{
	struct rq *q = calloc(1, sizeof(*q));
	int e;

	if (!q)
		return -ENOMEM;
	q->w = w;
	q->im = img_of(blk);
	q->held_tail = &q->held;
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

/* Every io completed (or given up on); callbacks may still be due: for a
 * moment (returning), or until the cluster answers the requests given up
 * on.  Then the queue's memory and its eventfd stay, for them to use. */
static void rbd_q_close(void *ctx)
{
	struct rq *q = ctx;
	unsigned waited = 0;

	while (atomic_load(&q->pending) && waited < CLOSE_WAIT_MS * 20) {
		usleep(50);
		waited++;
	}
	if (atomic_load(&q->pending)) {
		atomic_fetch_add(&q->im->stranded, 1);
		vhu__blk_log(VHU_LOG_WARN, "rbd: '%s': queue closed with %u librbd "
			     "request%s unanswered; their memory is kept",
			     q->im->name, atomic_load(&q->pending),
			     atomic_load(&q->pending) == 1 ? "" : "s");
		return;
	}
	while (q->all) {
		struct op *op = q->all;

		q->all = op->all;
		free(op->buf);
		free(op);
	}
	close(q->efd);
	free(q);
}

/* librbd's thread.  Touches only the op and its queue's list, eventfd
 * and counter: memory a queue closed early keeps. */
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
	op->io = NULL;
	/* A large read's buffer is not kept for the next one. */
	if (op->cap > (256u << 10)) {
		free(op->buf);
		op->buf = NULL;
		op->cap = 0;
	}
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
	if (req->type == VHU_BLK_T_IN && !io->retries && op->cap < req->data_len) {
		void *b = realloc(op->buf, req->data_len);

		if (!b) {
			put_op(q, op);
			return -ENOMEM;
		}
		op->buf = b;
		op->cap = req->data_len;
	}
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
		e = rbd_aio_read(img, off, req->data_len, op->buf, op->c);
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
		return e;
	}
	q->busy++;
	return 0;
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

/* Writes go to librbd once the lock is ours (or needs none); they wait
 * while the locker takes it, and fail when another client has it. */
static int lock_for(const struct img *im, uint32_t type)
{
	int l = atomic_load_explicit(&im->lock, memory_order_relaxed);

	if (type == VHU_BLK_T_IN || type == VHU_BLK_T_FLUSH ||
	    l == LOCK_HELD || l == LOCK_UNSUPPORTED)
		return 0;
	return l == LOCK_TAKING ? -EAGAIN : -EROFS;
}

static void start(struct rq *q, struct vhu__blk_io *io)
{
	int e = lock_for(q->im, io->req.type);

	if (e == 0)
		e = issue(q, io);
	if (e == -EAGAIN) {
		io->next = NULL;
		*q->held_tail = io;
		q->held_tail = &io->next;
		return;
	}
	if (e < 0)
		fail(q, io, e);
}

static void rbd_submit(void *ctx, struct vhu__blk_io *io)
{
	struct rq *q = ctx;
	uint32_t t = io->req.type;

	io->done = 0;
	io->retries = 0;
	/* Nothing to transfer or no range: done at once (as for files). */
	if (((t == VHU_BLK_T_IN || t == VHU_BLK_T_OUT) && io->req.data_len == 0) ||
	    ((t == VHU_BLK_T_DISCARD || t == VHU_BLK_T_WRITE_ZEROES) &&
	     io->req.n_segs == 0)) {
		vhu__blk_io_done(q->w, io, VHU_BLK_S_OK, 0);
		return;
	}
	start(q, io);
}

/* Take what librbd finished (newest first on the list, so turned round)
 * and move each request on. */
static void take_finished(struct rq *q)
{
	struct op *op, *rev = NULL;

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
		if (rev->abandoned) {
			rev->abandoned = false;
			q->abandoned--;
		} else {
			q->busy--;
			if (io->req.type == VHU_BLK_T_IN && !io->retries && res >= 0)
				vhu_iov_from_buf(io->req.data, io->req.n_data, 0,
						 rev->buf, io->req.data_len);
		}
		put_op(q, rev);
		if (io)
			step(q, io, res);
		rev = next;
	}
}

/* A stop waited STOP_GIVE_UP_MS for the cluster: every request still
 * out fails (IOERR), so the stop returns.  librbd keeps its requests;
 * their ops (and a read's buffer) stay until the callback returns them. */
static void give_up(struct rq *q)
{
	unsigned n = 0;

	take_finished(q);
	for (struct op *op = q->all; op; op = op->all) {
		struct vhu__blk_io *io = op->io;

		if (!io || op->abandoned)
			continue;
		op->abandoned = true;
		op->io = NULL;
		q->busy--;
		q->abandoned++;
		n++;
		fail(q, io, -ETIMEDOUT);
	}
	while (q->held) {
		struct vhu__blk_io *io = q->held;

		q->held = io->next;
		n++;
		fail(q, io, -ETIMEDOUT);
	}
	q->held_tail = &q->held;
	vhu__blk_log(VHU_LOG_WARN, "rbd: '%s': queue %u stops: %u request%s "
		     "unanswered after %u s failed (IOERR)", q->im->name,
		     vhu__blk_q_index(q->w), n, n == 1 ? "" : "s",
		     STOP_GIVE_UP_MS / 1000);
}

/* The timer: held writes move on once the locker is done; a stopping
 * queue gives up at its deadline. */
static void tick(struct rq *q)
{
	struct vhu__blk_io *io = q->held;

	q->ticking = false;
	if (io && lock_for(q->im, VHU_BLK_T_OUT) != -EAGAIN) {
		q->held = NULL;
		q->held_tail = &q->held;
		while (io) {
			struct vhu__blk_io *next = io->next;

			start(q, io);
			io = next;
		}
	}
	if (vhu__blk_q_stopping(q->w) && (q->busy || q->held)) {
		uint64_t now = now_ms();

		if (!q->deadline)
			q->deadline = now + STOP_GIVE_UP_MS;
		else if (now >= q->deadline)
			give_up(q);
	}
}

/* Once per loop turn: keep the timer running while writes wait for the
 * lock or a stop waits for the cluster. */
static void rbd_round(void *ctx)
{
	struct rq *q = ctx;

	if (!q->ticking && (q->held || (q->busy && vhu__blk_q_stopping(q->w)))) {
		if (vhu__blk_q_timer(q->w, TICK_MS) == 0)
			q->ticking = true;
	}
}

/* The eventfd (revents) or the timer (0). */
static void rbd_event(void *ctx, unsigned revents)
{
	struct rq *q = ctx;
	uint64_t v;

	if (!revents) {
		tick(q);
		return;
	}
	(void)!read(q->efd, &v, sizeof(v));
	take_finished(q);
	vhu__blk_q_watch(q->w, q->efd, POLLIN);
}

const struct vhu__blk_backend_ops vhu__blk_rbd_ops = {
	.kind = "rbd",
	.remote = true,
	.size = rbd_size,
	.resize = rbd_set_size,
	.close = rbd_close_image,
	.queues_on = vhu__blk_rbd_queues_on,
	.queues_off = vhu__blk_rbd_queues_off,
	.state = vhu__blk_rbd_state,
	.q_open = rbd_q_open,
	.q_close = rbd_q_close,
	.submit = rbd_submit,
	.event = rbd_event,
	.round = rbd_round,
};
