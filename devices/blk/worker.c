/* SPDX-License-Identifier: MIT */
/*
 * The I/O engine of one started queue.  Its io_uring watches the queue's
 * kick eventfd, a stop eventfd and the back-end's events through polls;
 * requests are popped into a fixed pool of slots, checked, and handed to
 * the image back-end (backend.h: the file back-end submits to this ring);
 * on completion the status byte is written, the element pushed, and the
 * driver notified once per round.  thread.c decides which thread runs it.
 *
 * Without io_uring (--aio threads, or a kernel / seccomp filter that
 * refuses it) the same engine runs synchronously: the queue's thread
 * waits in epoll on the kick and stop eventfds (and the back-end's
 * events), and the file back-end does each request's I/O with blocking
 * preadv2 / pwritev2 / fdatasync before the next.
 */
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "backend.h"
#include "blk-int.h"

/* io_uring user_data tags that are not requests (those are aligned). */
#define TAG_KICK 1u
#define TAG_STOP 2u
#define TAG_TICK 3u
#define TAG_MORE 4u  /* a no-op that wakes the next wait at once */
#define TAG_BE 5u    /* the back-end's epoll fd (watch and timer) */
#define TAG_THR 6u   /* I/O limits: held requests may go (throttle.c) */

#define DEFAULT_DEPTH 128u

struct slot {
	struct vhu_vq_elem elem;
	struct vhu__blk_io io;
	struct slot *next_free;
	struct iovec iov[VHU_BLK_IOV_CAP];
	struct iovec data[VHU_BLK_IOV_CAP];
};

struct vhu__blk_worker {
	struct vhu_blk *blk;
	struct vhu_vq *vq;
	struct vhu__blk_stats *stats;
	void *be_ctx;       /* the back-end's queue context */
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
	int epfd;           /* sync: kick and stop eventfds (and be_epfd) */
	/* The back-end's watch and timer (vhu__blk_q_watch / _timer): an
	 * epoll fd of their own, polled by the ring (or nested in epfd), so
	 * their events can change at any time without cancelling polls. */
	int be_epfd;        /* -1 until the back-end watches something */
	int be_fd;          /* the watched fd, or -1 */
	uint32_t be_events; /* its EPOLL* events */
	int timer_fd;       /* -1 until a timer is asked for */
	bool timer_armed;   /* it runs: be_epfd may hold its expiry */
	bool be_armed;      /* a ring poll on be_epfd is in flight */
	bool polling;       /* polls before sleeping (poll.c) */
	unsigned pop_flags; /* VHU_VQ_POP_*: NO_REARM while polling */
	/* Kicks disabled by this queue: polling, since the last sleep; not
	 * polling, while busy (quiet_wait). */
	bool kicks_off;
	struct vhu__blk_poll poll;
	struct __kernel_timespec tick;
	/* I/O limits: the requests this queue holds, and their timer. */
	struct vhu__blk_thq thq;
	struct __kernel_timespec thr_ts;
	int thr_fd;         /* sync: a timerfd in epfd, or -1 */
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

/* ---- services for the back-end (backend.h) ---- */

struct io_uring_sqe *vhu__blk_q_sqe(struct vhu__blk_worker *w,
				    struct vhu__blk_io *io)
{
	struct io_uring_sqe *sqe;

	if (w->sync)
		return NULL;
	sqe = get_sqe(w);
	if (sqe)
		io_uring_sqe_set_data(sqe, io);
	return sqe;
}

bool vhu__blk_q_sync(const struct vhu__blk_worker *w)
{
	return w->sync;
}

unsigned vhu__blk_q_index(const struct vhu__blk_worker *w)
{
	return vhu_vq_index(w->vq);
}

bool vhu__blk_q_stopping(const struct vhu__blk_worker *w)
{
	return w->stopping;
}

struct vhu__blk_stats *vhu__blk_q_stats(struct vhu__blk_worker *w)
{
	return w->stats;
}

/* The back-end's epoll fd, made on first use and watched by the loop. */
static int be_epoll(struct vhu__blk_worker *w)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_BE };

	if (w->be_epfd >= 0)
		return 0;
	w->be_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->be_epfd < 0)
		return -errno;
	if (w->sync && epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->be_epfd, &ev) < 0)
		return -errno;
	return 0;
}

static void be_arm(struct vhu__blk_worker *w)
{
	if (!w->sync && w->be_epfd >= 0 && !w->be_armed &&
	    arm_poll(w, w->be_epfd, TAG_BE) == 0)
		w->be_armed = true;
}

int vhu__blk_q_watch(struct vhu__blk_worker *w, int fd, unsigned events)
{
	struct epoll_event ev = { .events = 0, .data.u64 = 0 };
	int r = be_epoll(w);

	if (r < 0)
		return r;
	if (w->be_fd >= 0 && w->be_fd != fd) {
		epoll_ctl(w->be_epfd, EPOLL_CTL_DEL, w->be_fd, NULL);
		w->be_fd = -1;
	}
	if (fd < 0)
		return 0;
	if (events & POLLIN)
		ev.events |= EPOLLIN;
	if (events & POLLOUT)
		ev.events |= EPOLLOUT;
	/* Level-triggered: the same fd and events need no new call. */
	if (w->be_fd != fd || w->be_events != ev.events) {
		if (epoll_ctl(w->be_epfd, w->be_fd == fd ? EPOLL_CTL_MOD
							 : EPOLL_CTL_ADD, fd, &ev) < 0)
			return -errno;
		w->be_fd = fd;
		w->be_events = ev.events;
	}
	be_arm(w);
	return 0;
}

int vhu__blk_q_timer(struct vhu__blk_worker *w, unsigned ms)
{
	struct itimerspec its = {
		.it_value = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 },
	};
	int r = be_epoll(w);

	if (r < 0)
		return r;
	if (w->timer_fd < 0) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 1 };

		w->timer_fd = timerfd_create(CLOCK_MONOTONIC,
					     TFD_CLOEXEC | TFD_NONBLOCK);
		if (w->timer_fd < 0)
			return -errno;
		if (epoll_ctl(w->be_epfd, EPOLL_CTL_ADD, w->timer_fd, &ev) < 0)
			return -errno;
	}
	if (ms == 0)
		its.it_value.tv_nsec = 1;
	if (timerfd_settime(w->timer_fd, 0, &its, NULL) < 0)
		return -errno;
	w->timer_armed = true;
	be_arm(w);
	return 0;
}

int vhu__blk_q_timer_off(struct vhu__blk_worker *w)
{
	struct itimerspec its = { .it_value = { 0, 0 } };

	if (!w->timer_armed)
		return 0;
	/* Disarming also clears an expiry not read yet, so be_epfd does not
	 * report it. */
	if (timerfd_settime(w->timer_fd, 0, &its, NULL) < 0)
		return -errno;
	w->timer_armed = false;
	return 0;
}

/* The back-end's epoll fd is readable: hand its events over. */
static void be_events(struct vhu__blk_worker *w)
{
	struct epoll_event ev[2];
	int n;

	if (!w->sync && !w->timer_armed && w->be_fd >= 0 &&
	    (w->be_events == EPOLLIN || w->be_events == EPOLLOUT)) {
		/* Only the fd can have fired, in the one direction watched:
		 * hand it over without asking epoll (a spurious one costs
		 * the back-end an EAGAIN, never a lost event: the watch is
		 * level-triggered).  With both directions watched, epoll
		 * says which: a readable event that is not there makes
		 * libnbd stop sending a write's payload to wait for a reply
		 * that cannot come before the payload is whole. */
		w->blk->be->event(w->be_ctx,
				  (w->be_events & EPOLLIN ? POLLIN : 0) |
				  (w->be_events & EPOLLOUT ? POLLOUT : 0));
		return;
	}
	n = epoll_wait(w->be_epfd, ev, 2, 0);

	for (int i = 0; i < n; i++) {
		if (ev[i].data.u64 == 1) {
			uint64_t v;

			if (read(w->timer_fd, &v, sizeof(v)) == sizeof(v)) {
				w->timer_armed = false;
				w->blk->be->event(w->be_ctx, 0);
			}
			continue;
		}
		w->blk->be->event(w->be_ctx,
				  (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR) ? POLLIN : 0) |
				  (ev[i].events & EPOLLOUT ? POLLOUT : 0));
	}
}

void vhu__blk_io_done(struct vhu__blk_worker *w, struct vhu__blk_io *io,
		      int st, size_t data_done)
{
	struct slot *s = (struct slot *)((char *)io - offsetof(struct slot, io));
	struct vhu_blk_req *req = &io->req;

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
	if (st == VHU_BLK_S_OK && io->through)
		vhu__blk_stat_add(&w->stats->writes_through, 1);
	else if (req->type == VHU_BLK_T_FLUSH)
		vhu__blk_stat_add(&w->stats->flushes, 1);
	else if (req->type == VHU_BLK_T_DISCARD ||
		 req->type == VHU_BLK_T_WRITE_ZEROES)
		vhu__blk_stat_add(&w->stats->discards, 1);
	vhu__blk_stat_add(&w->stats->in_flight, (uint64_t)-1);

	s->next_free = w->free;
	w->free = s;
	w->in_flight--;
}

static void complete(struct vhu__blk_worker *w, struct slot *s, int st,
		     size_t data_done)
{
	vhu__blk_io_done(w, &s->io, st, data_done);
}

/* Start a freshly popped request: checked here, GET_ID answered here,
 * the rest handed to the back-end (it may complete at once). */
static void start_req(struct vhu__blk_worker *w, struct slot *s)
{
	struct vhu_blk_req *req = &s->io.req;
	struct vhu_blk *blk = w->blk;
	int st;

	s->io.through = false;
	s->io.write_through = false;
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

	switch (req->type) {
	case VHU_BLK_T_GET_ID:
		complete(w, s, VHU_BLK_S_OK, vhu_blk_req_get_id(req, blk->serial));
		return;
	case VHU_BLK_T_OUT:
	case VHU_BLK_T_DISCARD:
	case VHU_BLK_T_WRITE_ZEROES:
		s->io.write_through = !atomic_load(&blk->wce);
		/* fall through */
	case VHU_BLK_T_IN:
	case VHU_BLK_T_FLUSH:
		/* I/O limits: the request path's only cost when none is set. */
		if (atomic_load_explicit(&blk->thr.on, memory_order_relaxed) &&
		    !vhu__blk_thr_admit(blk, &w->thq, &s->io))
			return;   /* held: thr_round() submits it */
		blk->be->submit(w->be_ctx, &s->io);
		return;
	default:
		complete(w, s, VHU_BLK_S_UNSUPP, 0);
		return;
	}
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

/* The synchronous engine's timer: a timerfd in its epoll set (a group
 * thread waits on that set too). */
static int thr_sync_timer(struct vhu__blk_worker *w, uint64_t ns)
{
	struct itimerspec its = {
		.it_value = { .tv_sec = (time_t)(ns / 1000000000u),
			      .tv_nsec = (long)(ns % 1000000000u) },
	};
	struct epoll_event ev = { .events = EPOLLIN };

	if (w->thr_fd < 0) {
		w->thr_fd = timerfd_create(CLOCK_MONOTONIC,
					   TFD_CLOEXEC | TFD_NONBLOCK);
		if (w->thr_fd < 0)
			return -errno;
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->thr_fd, &ev) < 0) {
			close(w->thr_fd);
			w->thr_fd = -1;
			return -errno;
		}
	}
	if (timerfd_settime(w->thr_fd, 0, &its, NULL) < 0)
		return -errno;
	w->thq.armed = true;
	return 0;
}

/* I/O limits: submit the held requests that may go now (all of them
 * when the queue stops: they were popped, and a stop waits for every
 * popped request), and wake the queue when the next may go. */
static void thr_round(struct vhu__blk_worker *w)
{
	struct vhu__blk_io *io;
	struct io_uring_sqe *sqe;
	uint64_t ns;

	while ((io = vhu__blk_thr_next(w->blk, &w->thq, w->stopping)))
		w->blk->be->submit(w->be_ctx, io);
	if (!w->thq.held || w->thq.armed)
		return;
	ns = vhu__blk_thr_wait_ns(w->blk, &w->thq);
	if (w->sync) {
		/* Without a timer the held requests would wait for the
		 * next kick: look again at once instead (a busy wait, only
		 * when no timerfd can be had). */
		if (thr_sync_timer(w, ns) < 0)
			w->more = true;
		return;
	}
	sqe = get_sqe(w);
	if (!sqe)
		return;   /* the next round tries again */
	w->thr_ts.tv_sec = (long long)(ns / 1000000000u);
	w->thr_ts.tv_nsec = (long long)(ns % 1000000000u);
	io_uring_prep_timeout(sqe, &w->thr_ts, 0, 0);
	io_uring_sqe_set_data(sqe, (void *)(uintptr_t)TAG_THR);
	w->thq.armed = true;
}

/* A loop turn's end: pop what the ring has, let the back-end send what
 * it queued, one interrupt for everything this turn completed.  (The
 * io_uring engine then submits.) */
static void serve_round(struct vhu__blk_worker *w)
{
	pop_requests(w);
	if (w->thq.held)
		thr_round(w);
	if (w->blk->be->round)
		w->blk->be->round(w->be_ctx);
	if (w->pushed) {
		vhu_vq_notify(w->vq);
		w->pushed = false;
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
	if (w->be_epfd >= 0)
		be_events(w);
	if (w->thr_fd >= 0 && read(w->thr_fd, &v, sizeof(v)) == sizeof(v))
		w->thq.armed = false;   /* I/O limits: thr_round() looks again */
	w->more = false;
	serve_round(w);
}

void vhu__blk_q_begin(struct vhu__blk_worker *w)
{
	/* Kicks on, whatever an engine that served this ring before left
	 * (one stopped for a quiesce while it had them off, polling or busy:
	 * without EVENT_IDX a pop does not turn them back on). */
	vhu_vq_enable_notify(w->vq);
	if (w->sync) {
		sync_step(w);
		return;
	}
	if (w->kick_fd >= 0)
		arm_poll(w, w->kick_fd, TAG_KICK);
	else
		arm_tick(w);
	arm_poll(w, w->stop_fd, TAG_STOP);
	be_arm(w);
	serve_round(w);
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

/* A queue that does not poll sleeps until something wakes it.  While
 * BUSY_QUIET_MIN or more requests are out, a completion is due soon and
 * will wake it anyway; the driver's kicks are then turned off (as
 * polling does) and the requests it adds meanwhile are popped when the
 * next completion comes: one wake-up instead of two, and fewer kicks
 * (VM exits) for the guest.  The wait is bounded by BUSY_QUIET_NS: when
 * nothing completes that soon (slow storage), kicks come back on before
 * the queue sleeps again, so a new request waits at most that long for
 * a slow one.  Needs a ring that takes a wait timeout (5.11). */
#define BUSY_QUIET_MIN 8u
#define BUSY_QUIET_NS 200000

static bool quiet_off(struct vhu__blk_worker *w)
{
	if (!w->kicks_off)
		return false;
	w->kicks_off = false;
	w->pop_flags &= ~VHU_VQ_POP_NO_REARM;
	return vhu_vq_enable_notify(w->vq);
}

static int quiet_wait(struct vhu__blk_worker *w)
{
	struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = BUSY_QUIET_NS };
	struct io_uring_cqe *cqe;
	int r;

	if (!w->kicks_off) {
		vhu_vq_disable_notify(w->vq);
		w->kicks_off = true;
		w->pop_flags |= VHU_VQ_POP_NO_REARM;
	}
	r = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
	if (r != -ETIME)
		return r;
	/* Nothing completed in time: kicks on, then sleep as usual. */
	if (quiet_off(w))
		return 0;
	return io_uring_submit_and_wait(&w->ring, 1);
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
	if (w->polling) {
		r = io_uring_submit_and_wait(&w->ring, 1);
		vhu__blk_poll_woke(&w->poll);
	} else if (w->in_flight >= BUSY_QUIET_MIN && !w->stopping &&
		   w->kick_fd >= 0 && (w->ring.features & IORING_FEAT_EXT_ARG)) {
		r = quiet_wait(w);
	} else if (quiet_off(w)) {
		return 0;
	} else {
		r = io_uring_submit_and_wait(&w->ring, 1);
	}
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
	bool kicked = false, be = false;

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
		} else if (tag == TAG_BE) {
			be = true;
		} else if (tag == TAG_THR) {
			w->thq.armed = false;   /* serve_round() looks again */
		} else if (tag) {
			w->blk->be->uring_done(w->be_ctx,
					       (struct vhu__blk_io *)tag, cqe->res);
		}
	}
	io_uring_cq_advance(&w->ring, seen);
	if (be) {
		w->be_armed = false;
		be_events(w);
		be_arm(w);
	}

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
	serve_round(w);
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
	vhu__blk_thq_fini(&w->thq);
	if (w->be_ctx)
		w->blk->be->q_close(w->be_ctx);
	if (w->ring_ok)
		io_uring_queue_exit(&w->ring);
	if (w->timer_fd >= 0)
		close(w->timer_fd);
	if (w->thr_fd >= 0)
		close(w->thr_fd);
	if (w->be_epfd >= 0)
		close(w->be_epfd);
	if (w->stop_fd >= 0)
		close(w->stop_fd);
	if (w->epfd >= 0)
		close(w->epfd);
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
	/* Room for every slot's one SQE plus the kick, stop and back-end
	 * polls. */
	while (entries < depth + 4 && entries < 4096)
		entries <<= 1;

	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->blk = blk;
	w->vq = vq;
	w->epfd = -1;
	w->be_epfd = -1;
	w->be_fd = -1;
	w->timer_fd = -1;
	w->thr_fd = -1;
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
	if (!w->slots) {
		r = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < depth; i++) {
		w->slots[i].next_free = w->free;
		w->free = &w->slots[i];
	}
	r = vhu__blk_thq_init(&w->thq, depth);
	if (r < 0)
		goto fail;
	if (blk->aio != VHU_BLK_AIO_THREADS) {
		r = io_uring_queue_init(entries, &w->ring, 0);
		if (r == 0)
			w->ring_ok = true;
		else if (blk->aio_strict)
			goto fail;
		else
			vhu__blk_log(VHU_LOG_WARN, "queue %u: io_uring: %s; serving "
				     "it with blocking I/O", idx, strerror(-r));
	}
	if (!w->ring_ok) {
		r = sync_init(w);
		if (r < 0)
			goto fail;
	}
	r = blk->be->q_open(blk, w, &w->be_ctx);
	if (r < 0) {
		w->be_ctx = NULL;
		goto fail;
	}
	*out = w;
	return 0;
fail:
	vhu__blk_q_free(w);
	return r;
}
