/* SPDX-License-Identifier: MIT */
/*
 * Which thread runs a queue's I/O engine.
 *
 * By default each started queue gets a thread of its own that blocks in
 * io_uring_enter() on the queue's ring, after polling it for a while when
 * polling is on (poll.c; group threads never poll).  With fewer threads than queues, a
 * group thread serves several queues: it waits in epoll on their ring fds
 * (an io_uring fd is readable while completions are pending) and on a
 * command eventfd through which the control thread hands it queues.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "blk-int.h"

struct vhu__blk_group {
	pthread_t thread;
	int epfd;
	int cmd_fd;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct vhu__blk_runner *adds;   /* handed over, not yet running */
	bool exit;
};

struct vhu__blk_runner {
	struct vhu__blk_worker *q;
	struct vhu__blk_group *group;   /* NULL: own thread */
	pthread_t thread;
	bool done;                      /* group: finished (under lock) */
	bool stop_asked;                /* control thread: stop requested */
	struct vhu__blk_runner *next;
};

/* ---- a thread per queue ---- */

static void *own_main(void *arg)
{
	struct vhu__blk_runner *r = arg;

	vhu__blk_q_begin(r->q);
	while (!vhu__blk_q_finished(r->q)) {
		if (vhu__blk_q_wait(r->q) < 0)
			break;
		vhu__blk_q_step(r->q);
	}
	return NULL;
}

/* ---- group threads ---- */

static void group_finish(struct vhu__blk_group *g, struct vhu__blk_runner *r)
{
	epoll_ctl(g->epfd, EPOLL_CTL_DEL, vhu__blk_q_ring_fd(r->q), NULL);
	pthread_mutex_lock(&g->lock);
	r->done = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

/* Take the queues handed over; returns true when the group must end. */
static bool group_commands(struct vhu__blk_group *g)
{
	struct vhu__blk_runner *adds;
	uint64_t v;
	bool ex;

	if (read(g->cmd_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		vhu__blk_log(VHU_LOG_WARN, "thread: command read: %s",
			     strerror(errno));
	pthread_mutex_lock(&g->lock);
	adds = g->adds;
	g->adds = NULL;
	ex = g->exit;
	pthread_mutex_unlock(&g->lock);

	while (adds) {
		struct vhu__blk_runner *r = adds;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = r };

		adds = r->next;
		if (epoll_ctl(g->epfd, EPOLL_CTL_ADD, vhu__blk_q_ring_fd(r->q),
			      &ev) < 0) {
			vhu__blk_log(VHU_LOG_ERROR, "thread: cannot watch a queue: %s",
				     strerror(errno));
			group_finish(g, r);
			continue;
		}
		vhu__blk_q_begin(r->q);
		if (vhu__blk_q_finished(r->q))
			group_finish(g, r);
	}
	return ex;
}

static void *group_main(void *arg)
{
	struct vhu__blk_group *g = arg;
	struct epoll_event evs[32];

	for (;;) {
		int n = epoll_wait(g->epfd, evs, 32, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			vhu__blk_log(VHU_LOG_ERROR, "thread: epoll: %s",
				     strerror(errno));
			return NULL;
		}
		/* Each fd appears at most once per batch, so a runner
		 * finished here is not touched again in this batch. */
		for (int i = 0; i < n; i++) {
			struct vhu__blk_runner *r = evs[i].data.ptr;

			if (!r) {
				if (group_commands(g))
					return NULL;
				continue;
			}
			vhu__blk_q_step(r->q);
			if (vhu__blk_q_finished(r->q))
				group_finish(g, r);
		}
	}
}

static void kick_fd(int fd)
{
	uint64_t one = 1;

	while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

int vhu__blk_group_new(struct vhu__blk_group **out)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	struct vhu__blk_group *g = calloc(1, sizeof(*g));
	int r;

	if (!g)
		return -ENOMEM;
	g->epfd = epoll_create1(EPOLL_CLOEXEC);
	g->cmd_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (g->epfd < 0 || g->cmd_fd < 0 ||
	    epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->cmd_fd, &ev) < 0) {
		r = -errno;
		goto fail;
	}
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	r = -pthread_create(&g->thread, NULL, group_main, g);
	if (r < 0) {
		pthread_cond_destroy(&g->cond);
		pthread_mutex_destroy(&g->lock);
		goto fail;
	}
	*out = g;
	return 0;
fail:
	if (g->epfd >= 0)
		close(g->epfd);
	if (g->cmd_fd >= 0)
		close(g->cmd_fd);
	free(g);
	return r;
}

void vhu__blk_group_free(struct vhu__blk_group *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	g->exit = true;
	pthread_mutex_unlock(&g->lock);
	kick_fd(g->cmd_fd);
	pthread_join(g->thread, NULL);
	pthread_cond_destroy(&g->cond);
	pthread_mutex_destroy(&g->lock);
	close(g->epfd);
	close(g->cmd_fd);
	free(g);
}

/* ---- runners ---- */

int vhu__blk_run_start(struct vhu_blk *blk, struct vhu_vq *vq,
		       struct vhu__blk_group *g, struct vhu__blk_runner **out)
{
	struct vhu__blk_runner *r = calloc(1, sizeof(*r));
	int err;

	if (!r)
		return -ENOMEM;
	err = vhu__blk_q_new(blk, vq, &r->q);
	if (err < 0) {
		free(r);
		return err;
	}
	r->group = g;
	if (g) {
		pthread_mutex_lock(&g->lock);
		r->next = g->adds;
		g->adds = r;
		pthread_mutex_unlock(&g->lock);
		kick_fd(g->cmd_fd);
	} else {
		vhu__blk_q_set_polling(r->q);
		err = -pthread_create(&r->thread, NULL, own_main, r);
		if (err < 0) {
			vhu__blk_q_free(r->q);
			free(r);
			return err;
		}
	}
	*out = r;
	return 0;
}

void vhu__blk_run_stop_begin(struct vhu__blk_runner *r)
{
	if (!r || r->stop_asked)
		return;
	/* The engine stops popping and its back-end's give-up time (NBD,
	 * RBD) runs from now, whatever queue the control thread waits for
	 * first. */
	vhu__blk_q_request_stop(r->q);
	r->stop_asked = true;
}

void vhu__blk_run_stop(struct vhu__blk_runner *r)
{
	if (!r)
		return;
	/* The engine stops popping, lets every in-flight request complete
	 * and be pushed, then reports finished; waiting for that makes the
	 * stop synchronous (queue_stopped's contract). */
	vhu__blk_run_stop_begin(r);
	if (r->group) {
		struct vhu__blk_group *g = r->group;

		pthread_mutex_lock(&g->lock);
		while (!r->done)
			pthread_cond_wait(&g->cond, &g->lock);
		pthread_mutex_unlock(&g->lock);
	} else {
		pthread_join(r->thread, NULL);
	}
	vhu__blk_q_free(r->q);
	free(r);
}
