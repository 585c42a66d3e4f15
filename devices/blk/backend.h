/* SPDX-License-Identifier: MIT */
/*
 * Image back-ends: where a vhu-blk device's data lives.
 *
 * The device (dev.c) and the queue engines (worker.c) know nothing of
 * files, sockets or clusters; they talk to one back-end through the
 * operations below.  Three kinds exist or are planned: "file" (a regular
 * file or block device through the queue's io_uring, backend-file.c),
 * "null" (no image, backend-null.c), and remote ones ("nbd" over libnbd,
 * "rbd" over librbd) selected by the --blk-file URI.
 *
 * Threads.  Image-wide operations (open, size, resize, close, describe)
 * run on the control thread.  Per-queue operations run on the thread that
 * serves that queue, never on two threads at once for one queue; each
 * queue has a context of its own (q_open / q_close), e.g. a connection.
 *
 * A request.  The worker pops and checks the request (range, alignment,
 * read-only, segments), answers GET_ID itself, and hands IN, OUT, FLUSH,
 * DISCARD and WRITE_ZEROES to submit() in a struct vhu__blk_io.  The
 * back-end completes each io exactly once with vhu__blk_io_done(), on the
 * queue's thread, either inside submit() or later from one of the events
 * below.  Nothing may be dropped: a back-end that cannot reach its
 * storage keeps the io (and the queue cannot finish stopping) until it
 * completes it, with VHU_BLK_S_IOERR when it gives up.
 *
 * Events of the queue's loop.  Every queue waits in one place (its
 * io_uring, or epoll for the blocking engine), so a back-end never blocks
 * and never owns a thread; it asks the worker to wake it:
 *   - vhu__blk_q_sqe(): an io_uring SQE whose completion comes back to
 *     uring_done() (io_uring engine only; the file back-end's path);
 *   - vhu__blk_q_watch(fd, events): a one-shot poll of fd (POLLIN and/or
 *     POLLOUT); when it fires, event(ctx, revents) runs.  Re-arm it from
 *     event() or round() for as long as the fd matters (libnbd: the
 *     handle's fd with the direction nbd_aio_get_direction() asks for);
 *   - vhu__blk_q_timer(ms): event(ctx, 0) after ms milliseconds (retry a
 *     connection, give up after a timeout);
 *   - round(ctx): once per loop turn, after new requests were submitted
 *     (flush what was queued, re-arm the watch in the wanted direction).
 *
 * Back-ends whose library completes requests on threads of its own (RBD:
 * librbd's callbacks) plug in the same way: q_open creates an eventfd
 * and watches it (POLLIN); the library's callback records the io and its
 * status on a list guarded by a mutex (or lock-free) and writes the
 * eventfd; event() on the queue's thread reads the eventfd, takes the
 * list and calls vhu__blk_io_done() for each, then re-arms the watch.
 * vhu__blk_io_done() itself is never called from a foreign thread.
 */
#ifndef VHU_BLK_BACKEND_H
#define VHU_BLK_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "blk.h"

struct vhu_blk;
struct vhu__blk_worker;

/* One request in flight, owned by the worker (a slot); the back-end
 * may use the fields from "back-end state" on as it likes between
 * submit() and vhu__blk_io_done(). */
struct vhu__blk_io {
	struct vhu_blk_req req;     /* parsed and checked */
	/* Write-through (the guest turned write-back off, 5.2.5): an OUT,
	 * DISCARD or WRITE_ZEROES must be durable when it completes (as if
	 * followed by a flush: RWF_DSYNC, NBD_CMD_FLAG_FUA...).  The back-end
	 * sets through = true when it made it so (counted in the stats). */
	bool write_through;
	bool through;
	/* ---- back-end state ---- */
	size_t done;                /* bytes transferred so far */
	unsigned retries;
	void *bounce;               /* file: aligned copy for O_DIRECT */
	size_t bounce_len;
	struct vhu__blk_io *next;   /* a back-end's own lists */
	struct vhu__blk_io *prev;
	void *owner;                /* remote: the queue context */
	unsigned pending;           /* remote: commands not yet answered */
	int error;                  /* remote: the first error (errno) */
	unsigned phase;             /* remote: a request in several steps */
	uint64_t mark;              /* remote: a time or a count of its own */
	struct iovec cur[VHU_BLK_IOV_CAP];
};

struct vhu__blk_backend_ops {
	const char *kind;           /* "file", "null", "nbd", "rbd" */
	/* Completions come from a server (NBD, RBD): queues do not poll
	 * their rings by default (VHU_BLK_POLL_US_AUTO). */
	bool remote;
	/* ---- image-wide, control thread ---- */
	/* Current size in bytes (from the storage: refresh asks again). */
	int (*size)(struct vhu_blk *blk, uint64_t *size);
	/* Why this image cannot be resized (a sentence for the operator),
	 * or NULL when resize() can; NULL hook: it can. */
	const char *(*no_resize)(const struct vhu_blk *blk);
	/* Set the size (bytes, checked by the caller; the queues are
	 * quiesced for a shrink). */
	int (*resize)(struct vhu_blk *blk, uint64_t size);
	void (*close)(struct vhu_blk *blk);
	/* The guest's queues start (the first one; not a restart at the same
	 * positions, vhu_vq_is_restarting) / stop for real (the last one;
	 * reset, disconnect): a back-end with a writer lock of its own (RBD's
	 * exclusive lock) takes it / gives it back here, as lock.c does for
	 * files.  NULL: nothing to do. */
	void (*queues_on)(struct vhu_blk *blk);
	void (*queues_off)(struct vhu_blk *blk);
	/* State for `ctl info` / `stats`: a short word ("open",
	 * "connected", "reconnecting"...).  NULL: "open". */
	const char *(*state)(const struct vhu_blk *blk);
	/* ---- per queue, the queue's thread (q_open/q_close: control
	 * thread, before the queue runs / after it stopped) ---- */
	int (*q_open)(struct vhu_blk *blk, struct vhu__blk_worker *w,
		      void **ctx);
	void (*q_close)(void *ctx);
	/* IN, OUT, FLUSH, DISCARD or WRITE_ZEROES. */
	void (*submit)(void *ctx, struct vhu__blk_io *io);
	/* An io_uring completion of an SQE from vhu__blk_q_sqe(). */
	void (*uring_done)(void *ctx, struct vhu__blk_io *io, int res);
	/* A watched fd is ready (revents) or a timer expired (0).  With one
	 * direction watched and no timer, the worker hands the event over
	 * without asking epoll, and it may be stale: a back-end must not
	 * act on it in a way that needs it to be true (NBD asks the socket
	 * before libnbd reads between replies). */
	void (*event)(void *ctx, unsigned revents);
	/* Once per loop turn after submissions; may be NULL. */
	void (*round)(void *ctx);
};

/* ---- what the worker offers a back-end (worker.c) ---- */

/* Complete io with a virtio-blk status and the data bytes transferred. */
void vhu__blk_io_done(struct vhu__blk_worker *w, struct vhu__blk_io *io,
		      int status, size_t data_done);
/* An SQE whose completion goes to uring_done(io); NULL when the ring is
 * full or the queue runs the blocking engine (vhu__blk_q_sync()). */
struct io_uring_sqe;
struct io_uring_sqe *vhu__blk_q_sqe(struct vhu__blk_worker *w,
				    struct vhu__blk_io *io);
bool vhu__blk_q_sync(const struct vhu__blk_worker *w);
/* One-shot poll of fd for events (POLLIN / POLLOUT); one watch per
 * queue: arming again while one is armed replaces its events once it
 * fired (call it from event() or round()).  fd < 0 ends the watch. */
int vhu__blk_q_watch(struct vhu__blk_worker *w, int fd, unsigned events);
/* event(ctx, 0) after ms milliseconds (one timer per queue). */
int vhu__blk_q_timer(struct vhu__blk_worker *w, unsigned ms);
/* The timer no longer runs (nothing when it does not).  While a timer
 * runs, every wake-up of the watch costs an epoll_wait to tell the two
 * apart: a back-end stops a timer it no longer needs. */
int vhu__blk_q_timer_off(struct vhu__blk_worker *w);
unsigned vhu__blk_q_index(const struct vhu__blk_worker *w);
/* The queue was asked to stop: it waits for the requests in flight
 * (a back-end may give up on those its storage does not answer). */
bool vhu__blk_q_stopping(const struct vhu__blk_worker *w);
struct vhu__blk_stats *vhu__blk_q_stats(struct vhu__blk_worker *w);

/* ---- the back-ends ---- */

/* Open what spec names (a path, "null:SIZE", a URI) into blk: sets
 * blk->be, the size, the geometry, read_only when the storage is,
 * no_write_zeroes when it cannot write zeroes (the device then does not
 * offer VIRTIO_BLK_F_WRITE_ZEROES). */
int vhu__blk_backend_open(struct vhu_blk *blk, const char *spec);
/* The kinds compiled in, space-separated ("file null nbd"). */
const char *vhu__blk_backend_kinds(void);

extern const struct vhu__blk_backend_ops vhu__blk_file_ops;
extern const struct vhu__blk_backend_ops vhu__blk_null_ops;
int vhu__blk_file_open(struct vhu_blk *blk, const char *path);
int vhu__blk_null_open(struct vhu_blk *blk, const char *spec);
#ifdef VHU_HAVE_LIBNBD
extern const struct vhu__blk_backend_ops vhu__blk_nbd_ops;
int vhu__blk_nbd_open(struct vhu_blk *blk, const char *uri);
#endif
#ifdef VHU_HAVE_LIBRBD
extern const struct vhu__blk_backend_ops vhu__blk_rbd_ops;
int vhu__blk_rbd_open(struct vhu_blk *blk, const char *uri);
#endif

#endif
