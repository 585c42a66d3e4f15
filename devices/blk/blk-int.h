/* SPDX-License-Identifier: MIT */
/* Internals shared by the files of the vhu-blk device. */
#ifndef VHU_BLK_INT_H
#define VHU_BLK_INT_H

#include <stdatomic.h>
#include <time.h>

#include "blk.h"
#include "throttle.h"

struct vhu__blk_worker;
struct vhu__blk_backend_ops;

/* Per-queue counters: updated by that queue's worker, read by anyone. */
struct vhu__blk_stats {
	_Atomic uint64_t requests;
	_Atomic uint64_t bytes_read;
	_Atomic uint64_t bytes_written;
	_Atomic uint64_t errors;
	_Atomic uint64_t in_flight;
	_Atomic uint64_t flushes;
	_Atomic uint64_t discards;     /* DISCARD and WRITE_ZEROES */
	_Atomic uint64_t writes_through; /* writes made durable before done */
	_Atomic uint64_t bounce_bytes;   /* bounce memory held now */
	_Atomic uint64_t bounce_peak;    /* its high-water mark */
};

/* One writer per counter (the queue's worker): a relaxed load and store
 * instead of a locked read-modify-write keeps the I/O path cheap, and
 * readers still see whole values. */
static inline void vhu__blk_stat_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

struct vhu_blk {
	int fd;
	struct vhu_blk_geometry geo;
	bool blockdev;
	bool mem_backed;            /* tmpfs/ramfs image: I/O is a memory copy */
	/* The mapping of a mem_backed image (imgmap.c), or NULL: map_len
	 * bytes from map may be copied directly (reads only while
	 * map_reads: the image has no holes). */
	void *map;
	_Atomic uint64_t map_len;
	_Atomic bool map_reads;
	uint64_t map_mapped;        /* control thread: bytes mapped */
	size_t map_reserve;         /* address space reserved at map */
	int map_prot;
	_Atomic bool map_populated;        /* page tables filled once */
	/* A copy faulted in the image mapping (the file changed under it):
	 * the mapping is no longer used, every request takes the file
	 * calls until the image is closed. */
	_Atomic bool map_dropped;
	bool read_only;
	/* The storage cannot write zeroes (an NBD export without
	 * WRITE_ZEROES): VIRTIO_BLK_F_WRITE_ZEROES is not offered. */
	bool no_write_zeroes;
	enum vhu_blk_cache cache;
	enum vhu_blk_aio aio;       /* IO_URING or THREADS after the probe */
	bool aio_strict;            /* --aio io_uring: never fall back */
	unsigned blk_size;
	unsigned num_queues;
	unsigned queue_depth;
	unsigned poll_us;           /* polling cap (own-thread io_uring queues) */
	bool poll_always;           /* --poll always: never sleep */
	/* The image's back-end (backend.h) and its image-wide state. */
	const struct vhu__blk_backend_ops *be;
	void *be_data;
	/* Readable when the image changed outside (RBD's header watch), or
	 * -1: vhu_blk_change_fd(). */
	int change_fd;
	char serial[VHU_BLK_ID_BYTES + 1];
	bool no_lock;               /* --lock off */
	/* Image locking (lock.c): the state (vhu_blk_lock_state; the
	 * workers read it for every request), the image's path, the
	 * descriptor that holds the locks (fd is the same, except for a
	 * block device while the write lock is held: then fd is its
	 * exclusive claim), and the requests refused for want of it. */
	_Atomic int lock_state;
	char *path;
	int lock_fd;                /* the open-time descriptor: the locks */
	int open_flags;             /* how it was opened */
	_Atomic uint64_t lock_denied;
	_Atomic int64_t lock_denied_at;
	bool format_raw;            /* --format raw: no format probe */
	/* Why the last vhu_blk_resize() was refused -EBUSY (another user
	 * of the image holds what a resize needs): vhu_blk_resize_error(). */
	char resize_why[512];
	unsigned reconnect_timeout; /* seconds (remote back-ends) */
	bool nbd_persistent_cache;  /* vhu_blk_opts' */
	/* While vhu_blk_new() runs: where a one-line reason for a failure
	 * goes (opts->err), or NULL. */
	char *err;
	size_t err_len;

	/* Read by the workers for every request; written by the control
	 * thread on resize and by config writes. */
	_Atomic uint64_t capacity;  /* 512-byte sectors */
	_Atomic uint64_t size;      /* bytes */
	_Atomic bool wce;           /* in force: true = write-back */
	/* Control thread only.  The guest's writeback choice (config
	 * write) outlives SET_FEATURES and reconnects; only a device reset
	 * returns it to write-back.  wce = guest_wce && flush_ok. */
	bool guest_wce;
	bool flush_ok;              /* FLUSH negotiated (or not yet asked) */

	struct vhu__blk_stats *stats;            /* [num_queues] */
	struct vhu__blk_runner **runners;        /* [num_queues], NULL = stopped */
	struct vhu_vq **vqs;                     /* [num_queues], the started ones */
	/* Shared threads (--threads N < num_queues): queue i runs on
	 * groups[i % num_groups].  num_groups == 0: a thread per queue. */
	unsigned num_groups;
	struct vhu__blk_group **groups;
	/* I/O limits (throttle.c): all zero (calloc) is "none". */
	struct vhu__blk_thr_disk thr;
};

/*
 * Images in memory served by memory copies (imgmap.c).
 *   open: map a mem_backed image (no mapping is not an error);
 *   size: follow a size change (control thread, after the file's);
 *   copy: a read or write done through the mapping: its bytes, or 0
 *         when the file calls must do it;
 *   holes: the image may have holes now (discard, write-zeroes);
 *   dense_check: reads may use the mapping again if it has none.
 */
int vhu__blk_map_open(struct vhu_blk *blk);
void vhu__blk_map_size(struct vhu_blk *blk, uint64_t size);
void vhu__blk_map_close(struct vhu_blk *blk);
size_t vhu__blk_map_copy(struct vhu_blk *blk, const struct vhu_blk_req *req);
void vhu__blk_map_holes(struct vhu_blk *blk);
void vhu__blk_map_dense_check(struct vhu_blk *blk);

/*
 * One queue's I/O engine (worker.c).  Not thread-safe: one thread runs a
 * queue's begin/step/wait at a time.
 *   new: allocate the slots and the io_uring (nothing runs yet);
 *   begin: arm the kick and stop polls, serve what is already available;
 *   step: handle the completions there are, pop more, notify, submit;
 *   wait: submit and block until at least one completion;
 *   finished: a stop was requested and nothing is in flight any more;
 *   request_stop: from any thread, ask the queue to stop.
 */
int vhu__blk_q_new(struct vhu_blk *blk, struct vhu_vq *vq,
		   struct vhu__blk_worker **out);
void vhu__blk_q_free(struct vhu__blk_worker *w);
void vhu__blk_q_begin(struct vhu__blk_worker *w);
void vhu__blk_q_step(struct vhu__blk_worker *w);
int vhu__blk_q_wait(struct vhu__blk_worker *w);
bool vhu__blk_q_finished(const struct vhu__blk_worker *w);
int vhu__blk_q_ring_fd(const struct vhu__blk_worker *w);
void vhu__blk_q_request_stop(struct vhu__blk_worker *w);
/* Poll before sleeping (io_uring engine, a thread of its own: the one
 * that calls wait); a no-op when polling is off or the engine is
 * synchronous. */
void vhu__blk_q_set_polling(struct vhu__blk_worker *w);

/*
 * Threads (thread.c).  A runner serves one queue, either on a thread of
 * its own (group == NULL) or on a shared group thread that serves several
 * queues.  Stopping is synchronous: on return every request the queue
 * popped has been pushed and the engine is freed.  stop_begin only asks
 * (no wait; run_stop must follow): stopping several queues, ask them all
 * first, so their waits (a back-end's give-up time) overlap.
 */
struct vhu__blk_group;
struct vhu__blk_runner;

int vhu__blk_group_new(struct vhu__blk_group **out);
/* Every runner of the group must have been stopped. */
void vhu__blk_group_free(struct vhu__blk_group *g);
int vhu__blk_run_start(struct vhu_blk *blk, struct vhu_vq *vq,
		       struct vhu__blk_group *g, struct vhu__blk_runner **out);
void vhu__blk_run_stop_begin(struct vhu__blk_runner *r);
void vhu__blk_run_stop(struct vhu__blk_runner *r);

/*
 * Adaptive polling (poll.c): how long a queue keeps looking for work
 * before it re-enables kicks and sleeps.
 *   init: cap in microseconds (0: off), or always (never sleep);
 *   spin: call ready(arg) until it is true (returns true) or the budget
 *         is spent (false); a hit keeps the budget;
 *   sleeping / woke: around the sleep that follows a miss, so the budget
 *         grows when work came soon after and shrinks when it did not;
 *   fini: the queue's thread is done (it no longer counts as active).
 * Adaptive spinning happens only while the process's active polling queues
 * (awake, or asleep for less than a millisecond) number at most max_active
 * (half the usable CPUs).
 */
#define POLL_UNCLAIMED (-1)
#define POLL_NO_SLOT (-2)
struct vhu__blk_poll {
	uint64_t cap_ns;
	uint64_t cur_ns;
	uint64_t slept_at;
	unsigned max_active;
	int slot;                   /* in poll.c's table, or POLL_UNCLAIMED/NO_SLOT */
	bool always;
};
void vhu__blk_poll_init(struct vhu__blk_poll *p, unsigned cap_us, bool always);
void vhu__blk_poll_fini(struct vhu__blk_poll *p);
/* How many polling queues are active now (for tests). */
unsigned vhu__blk_poll_active(void);
bool vhu__blk_poll_on(const struct vhu__blk_poll *p);
bool vhu__blk_poll_spin(struct vhu__blk_poll *p,
			bool (*ready)(void *arg), void *arg);
void vhu__blk_poll_sleeping(struct vhu__blk_poll *p);
/* Before a queue sleeps: submit what is queued, disable kicks (once:
 * *kicks_off), poll the ring and the completion queue.  True: work is
 * there, serve it; false: kicks are enabled again and the ring was seen
 * empty after that, so sleeping loses nothing. */
struct io_uring;
bool vhu__blk_poll_wait(struct vhu__blk_poll *p, struct vhu_vq *vq,
			struct io_uring *ring, bool *kicks_off);
void vhu__blk_poll_woke(struct vhu__blk_poll *p);

struct stat;
/* Query the host's block size, direct-I/O alignment, discard granularity. */
void vhu__blk_image_geometry(int fd, const struct stat *st,
			     struct vhu_blk_geometry *g);

/* Open-path checks (safety.c): record the reason of a failure. */
void vhu__blk_open_error(struct vhu_blk *blk, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Image locking (lock.c), on the control thread.
 *   image_lock: at open, the permissions held while no queue runs
 *       (-EBUSY on a conflict that must refuse the open);
 *   lock_take: when queues start, the write permission (wait: retry for
 *       about half a second, for the first queue); a failure leaves the
 *       state CONFLICT and every request is then refused;
 *   lock_release: when the last queue stops for real.
 */
int vhu__blk_image_lock(struct vhu_blk *blk, int fd, const char *path);
void vhu__blk_lock_take(struct vhu_blk *blk, bool wait);
void vhu__blk_lock_release(struct vhu_blk *blk);
/* A resize: the resize permission, from before the size is read until
 * the new one is set (0; -EBUSY with the reason in blk->resize_why when
 * another process does not share it), then given back (unless the
 * write lock holds it). */
int vhu__blk_lock_resize(struct vhu_blk *blk);
void vhu__blk_unlock_resize(struct vhu_blk *blk);
/* A request refused for want of the write lock: counted, reported at
 * most every 10 s (any thread). */
void vhu__blk_lock_denied(struct vhu_blk *blk, unsigned queue);
static inline bool vhu__blk_lock_denies(struct vhu_blk *blk, unsigned queue)
{
	if (atomic_load_explicit(&blk->lock_state, memory_order_relaxed) !=
	    VHU_BLK_LOCK_CONFLICT)
		return false;
	vhu__blk_lock_denied(blk, queue);
	return true;
}
/* -EMEDIUMTYPE when the image starts with a container format's header. */
int vhu__blk_image_probe(struct vhu_blk *blk, int fd, const char *path);

/* Open the image (a file or block device) and read its size. */
int vhu__blk_image_open(struct vhu_blk *blk, const char *path);
/* The null device (null:SIZE, image.c): answer a checked request without
 * I/O (zeros for a read); returns the data bytes written for it. */
size_t vhu__blk_null_req(const struct vhu_blk_req *req);
/* Current size of the open file or block device in bytes. */
int vhu__blk_image_size(const struct vhu_blk *blk, uint64_t *size);
/* Set capacity from a byte size (whole logical blocks only). */
void vhu__blk_set_size(struct vhu_blk *blk, uint64_t size);

/* DISCARD / WRITE_ZEROES (segments.c), run on the queue's thread.
 * zeroes: VHU__BLK_ZERO_BUF zero bytes aligned for O_DIRECT.  Sets
 * *through when it made the result durable (write-through).  Returns 0,
 * -EOPNOTSUPP when the host cannot zero a range, or another -errno. */
#define VHU__BLK_ZERO_BUF 65536u
int vhu__blk_segments(struct vhu_blk *blk, const void *zeroes,
		      const struct vhu_blk_req *req, bool *through);

/* A failure report at most every 10 s, with the count it stands for. */
struct vhu__blk_ratelimit {
	unsigned count;
	bool logged;
	time_t last;
};
void vhu__blk_seg_failed(struct vhu__blk_ratelimit *rl, unsigned queue,
			 uint32_t type, int err);

/* Log through the library's sink (vhu_logv: level, vhu_set_log_fn). */
void vhu__blk_log(enum vhu_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
