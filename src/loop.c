/* SPDX-License-Identifier: MIT */
/*
 * The optional ready-made event loop: epoll, plus an eventfd that
 * vhu_loop_stop() writes so a stop from a signal handler or another
 * thread wakes the waiting thread.
 *
 * Watches are kept in a list; removing one (even from inside its own
 * callback) only marks it dead, and dead entries are freed once no
 * dispatch round can still refer to them.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <vhu/loop.h>

#include "internal.h"

struct watch {
	struct watch *next;
	int fd;
	bool dead;
	vhu_loop_cb cb;
	void *opaque;
};

struct vhu_loop {
	int epfd;
	int stopfd;
	atomic_int stop;          /* a stop was requested */
	unsigned depth;           /* dispatch rounds in progress */
	struct watch *watches;
};

/* The eventfd's epoll tag: no watch has this address. */
static char stop_tag;

int vhu_loop_new(struct vhu_loop **out)
{
	struct vhu_loop *l = calloc(1, sizeof(*l));
	int r;

	if (!l)
		return -ENOMEM;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->epfd < 0 || l->stopfd < 0) {
		r = -errno;
		goto fail;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &stop_tag };
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->stopfd, &ev) < 0) {
		r = -errno;
		goto fail;
	}
	atomic_init(&l->stop, 0);
	*out = l;
	return 0;
fail:
	if (l->epfd >= 0)
		close(l->epfd);
	if (l->stopfd >= 0)
		close(l->stopfd);
	free(l);
	return r;
}

static void reap(struct vhu_loop *l)
{
	struct watch **pp = &l->watches;
	while (*pp) {
		struct watch *w = *pp;
		if (w->dead) {
			*pp = w->next;
			free(w);
		} else {
			pp = &w->next;
		}
	}
}

void vhu_loop_free(struct vhu_loop *loop)
{
	if (!loop)
		return;
	for (struct watch *w = loop->watches; w; w = w->next)
		w->dead = true;
	reap(loop);
	close(loop->epfd);
	close(loop->stopfd);
	free(loop);
}

static struct watch *find(struct vhu_loop *l, int fd)
{
	for (struct watch *w = l->watches; w; w = w->next)
		if (!w->dead && w->fd == fd)
			return w;
	return NULL;
}

int vhu_loop_add(struct vhu_loop *loop, int fd, uint32_t events,
		 vhu_loop_cb cb, void *opaque)
{
	if (fd < 0 || !cb)
		return -EINVAL;
	if (find(loop, fd))
		return -EEXIST;
	struct watch *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fd = fd;
	w->cb = cb;
	w->opaque = opaque;
	struct epoll_event ev = { .events = events, .data.ptr = w };
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int r = -errno;
		free(w);
		return r;
	}
	w->next = loop->watches;
	loop->watches = w;
	return 0;
}

int vhu_loop_mod(struct vhu_loop *loop, int fd, uint32_t events)
{
	struct watch *w = find(loop, fd);
	if (!w)
		return -ENOENT;
	struct epoll_event ev = { .events = events, .data.ptr = w };
	if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
		return -errno;
	return 0;
}

int vhu_loop_del(struct vhu_loop *loop, int fd)
{
	struct watch *w = find(loop, fd);
	if (!w)
		return -ENOENT;
	/* The fd may already be closed by its owner: that removed it from
	 * the epoll set already, so ignore the error. */
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
	w->dead = true;
	if (loop->depth == 0)
		reap(loop);
	return 0;
}

int vhu_loop_run_once(struct vhu_loop *loop, int timeout_ms)
{
	struct epoll_event ev[32];
	int n, ran = 0;

	n = epoll_wait(loop->epfd, ev, (int)VHU__ARRAY_SIZE(ev), timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;

	loop->depth++;
	for (int i = 0; i < n; i++) {
		if (ev[i].data.ptr == &stop_tag) {
			uint64_t v;
			/* Consume the wake-up; the stop flag stays set. */
			if (read(loop->stopfd, &v, sizeof(v)) < 0) {
				/* EAGAIN: already consumed */
			}
			continue;
		}
		struct watch *w = ev[i].data.ptr;
		/* Deleted by an earlier callback of this round: skip. */
		if (w->dead)
			continue;
		w->cb(loop, w->fd, ev[i].events, w->opaque);
		ran++;
	}
	loop->depth--;
	if (loop->depth == 0)
		reap(loop);
	return ran;
}

int vhu_loop_run(struct vhu_loop *loop)
{
	while (!atomic_exchange(&loop->stop, 0)) {
		int r = vhu_loop_run_once(loop, -1);
		if (r < 0)
			return r;
	}
	return 0;
}

void vhu_loop_stop(struct vhu_loop *loop)
{
	uint64_t one = 1;
	atomic_store(&loop->stop, 1);
	/* write() is async-signal-safe; a full counter still wakes. */
	if (write(loop->stopfd, &one, sizeof(one)) < 0) {
		/* EAGAIN: a wake-up is already pending */
	}
}
