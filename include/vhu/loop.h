/* SPDX-License-Identifier: MIT */
/*
 * A small ready-made epoll event loop, optional: the back-end and
 * front-end sessions only expose fds and "process" calls, so they nest in
 * any loop.  This one serves daemons and tests.
 *
 * A loop belongs to one thread: every call but vhu_loop_stop() is made
 * from the thread that runs it; callbacks run on that thread.
 */
#ifndef VHU_LOOP_H
#define VHU_LOOP_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vhu_loop;

/* events: EPOLLIN / EPOLLOUT ... as in <sys/epoll.h> */
typedef void (*vhu_loop_cb)(struct vhu_loop *loop, int fd, uint32_t events,
			    void *opaque);

/* Create a loop (0, or -ENOMEM / -errno from epoll_create1). */
int vhu_loop_new(struct vhu_loop **out);
/* Free the loop and its registrations; the watched fds stay open (they
 * are the caller's).  NULL is allowed. */
void vhu_loop_free(struct vhu_loop *loop);

/* Watch fd (not taken over).  One registration per fd: -EEXIST for a
 * second one, -EINVAL for fd < 0 or no callback, -errno from epoll. */
int vhu_loop_add(struct vhu_loop *loop, int fd, uint32_t events,
		 vhu_loop_cb cb, void *opaque);
/* Change the events of a watched fd (-ENOENT when not watched). */
int vhu_loop_mod(struct vhu_loop *loop, int fd, uint32_t events);
/* Stop watching fd; safe from inside a callback (even the fd's own). */
int vhu_loop_del(struct vhu_loop *loop, int fd);

/* Run one round: wait up to timeout_ms (-1 forever) and dispatch.
 * Returns the number of callbacks run, or -errno. */
int vhu_loop_run_once(struct vhu_loop *loop, int timeout_ms);

/* Run until vhu_loop_stop().  Returns 0, or -errno on failure. */
int vhu_loop_run(struct vhu_loop *loop);

/* Make vhu_loop_run() return.  Async-signal-safe and thread-safe. */
void vhu_loop_stop(struct vhu_loop *loop);

#ifdef __cplusplus
}
#endif
#endif
