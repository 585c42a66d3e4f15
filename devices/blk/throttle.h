/* SPDX-License-Identifier: MIT */
/*
 * Per-disk I/O limits (docs/vhu-blk.md, "I/O limits"): leaky buckets with
 * the semantics of QEMU's throttle options, so an operator's numbers carry
 * over.  Six buckets (bytes and operations per second; total, read,
 * write), each with an average rate, a burst level (-max) and a burst
 * length in seconds (-max-length); iops-size makes a large request count
 * as several operations.
 *
 * Three layers:
 *   - the configuration (struct vhu_blk_throttle) with its KEY=VALUE
 *     parser and its check, used by the daemon and the control socket;
 *   - the buckets (struct vhu__thr): pure arithmetic on an explicit
 *     clock, unit-tested without threads or time;
 *   - the device's use of them: one set of buckets per disk, shared by
 *     its queues under a short lock, and per queue a FIFO of the requests
 *     it holds (struct vhu__blk_thq), which worker.c releases from a
 *     timer.
 */
#ifndef VHU_BLK_THROTTLE_H
#define VHU_BLK_THROTTLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- configuration ---- */

/* QEMU's order (BUCKETS_COUNT): bytes then operations; total, read, write. */
enum vhu_blk_thr_bucket {
	VHU_BLK_THR_BPS_TOTAL,
	VHU_BLK_THR_BPS_READ,
	VHU_BLK_THR_BPS_WRITE,
	VHU_BLK_THR_IOPS_TOTAL,
	VHU_BLK_THR_IOPS_READ,
	VHU_BLK_THR_IOPS_WRITE,
	VHU_BLK_THR_BUCKETS,
};

/* One limit: avg units per second (0: none); max: the burst level (0:
 * a tenth of a second's worth, as QEMU); max_length: seconds the burst
 * may last at the max rate (0 or 1: one). */
struct vhu_blk_thr_limit {
	uint64_t avg;
	uint64_t max;
	uint64_t max_length;
};

struct vhu_blk_throttle {
	struct vhu_blk_thr_limit b[VHU_BLK_THR_BUCKETS];
	uint64_t iops_size;     /* bytes that count as one operation (0: any size is one) */
};

/* QEMU's THROTTLE_VALUE_MAX: no rate, level or max * max_length above it. */
#define VHU_BLK_THR_VALUE_MAX 1000000000000000ull

/* Set one key ("iops-total", "bps-read-max", "iops-write-max-length",
 * "iops-size"...).  A 0 average removes that limit with its burst
 * settings (a later key of the same call may set them again).  -ENOENT
 * for an unknown key. */
int vhu_blk_throttle_set(struct vhu_blk_throttle *t, const char *key,
			 uint64_t value);
/* Apply "KEY=VALUE[,KEY=VALUE...]" over t (keys not named keep their
 * value).  0, or -EINVAL with a sentence in err. */
int vhu_blk_throttle_parse(struct vhu_blk_throttle *t, const char *list,
			   char *err, size_t err_len);
/* QEMU's rules (throttle_is_valid): 0, or -EINVAL with a sentence. */
int vhu_blk_throttle_check(const struct vhu_blk_throttle *t, char *err,
			   size_t err_len);
/* Any limit set? */
bool vhu_blk_throttle_any(const struct vhu_blk_throttle *t);
/* The keys, in order, for listing: key i's name and value; NULL past the
 * last. */
const char *vhu_blk_throttle_key(const struct vhu_blk_throttle *t, unsigned i,
				 uint64_t *value);

/* ---- the device ---- */

struct vhu_blk;

/* Replace the disk's limits while the queues run (checked first: -EINVAL
 * with a sentence in err).  Held requests are looked at again within
 * VHU__THR_RECHECK_NS; requests not held yet meet the new limits at once. */
int vhu_blk_set_throttle(struct vhu_blk *blk, const struct vhu_blk_throttle *t,
			 char *err, size_t err_len);
void vhu_blk_get_throttle(struct vhu_blk *blk, struct vhu_blk_throttle *t);

/*
 * Groups: several vhu-blk processes (or devices) share one set of
 * buckets, so a tenant is capped, not only a disk.  The group NAME is a
 * shared memory segment (/dev/shm/vhu-blk-throttle-NAME, mode 0600: the
 * members run as one user) holding the buckets and their limits under a
 * process-shared robust mutex.  Join before the queues start (-EBUSY
 * otherwise); NULL leaves the group.  Limits set afterwards are the
 * group's (the last member to set them wins); a member that sets none
 * takes the group's.  NAME: 1 to 64 of [A-Za-z0-9_.-].
 */
int vhu_blk_throttle_group(struct vhu_blk *blk, const char *name,
			   char *err, size_t err_len);
/* The group's name, or NULL. */
const char *vhu_blk_throttle_group_name(const struct vhu_blk *blk);

struct vhu_blk_thr_stats {
	uint64_t held;          /* requests that had to wait, since start */
	uint64_t holding;       /* requests waiting now */
	uint64_t wait_ns;       /* their waits, summed */
	uint64_t wait_max_ns;   /* the longest wait */
};
void vhu_blk_throttle_stats(struct vhu_blk *blk, struct vhu_blk_thr_stats *st);

/* ---- the buckets (internal) ---- */

__extension__ typedef unsigned __int128 vhu__u128;

/* Levels are in units times 10^9 ("unit-nanoseconds"): a bucket of avg
 * units per second then leaks exactly avg per nanosecond, and every
 * step is an integer operation.  128 bits: a level reaches
 * VHU_BLK_THR_VALUE_MAX * 10^9 plus a request (10^24 and more), beyond
 * 64 bits. */
struct vhu__thr_bucket {
	uint64_t avg, max, len;
	vhu__u128 level;        /* the main bucket */
	vhu__u128 burst;        /* the burst bucket (len > 1) */
};

struct vhu__thr {
	struct vhu__thr_bucket b[VHU_BLK_THR_BUCKETS];
	uint64_t op_size;
	uint64_t last_ns;       /* when the buckets last leaked */
	bool on;
};

enum { VHU__THR_READ, VHU__THR_WRITE };

/* Take a checked configuration at time now.  Fill levels are kept (a
 * change cannot hand out a fresh burst); a bucket without a limit is
 * empty. */
void vhu__thr_config(struct vhu__thr *t, const struct vhu_blk_throttle *cfg,
		     uint64_t now);
/* Leak up to now and say how long a request in direction dir must still
 * wait (ns; 0: it may go now). */
uint64_t vhu__thr_wait(struct vhu__thr *t, int dir, uint64_t now);
/* Count a request that goes: bytes, and operations (iops_size). */
void vhu__thr_account(struct vhu__thr *t, int dir, uint64_t bytes);

/* ---- the disk's and the queues' state (internal) ---- */

/* A held request is looked at again at least this often, so a limit
 * raised or removed at run time frees it soon. */
#define VHU__THR_RECHECK_NS 50000000ull
/* ... and at most this often (a wake-up per request would cost more CPU
 * than the request at high rates). */
#define VHU__THR_MIN_NS 1000000ull

struct vhu__thr_shared;

struct vhu__blk_thr_disk {
	_Atomic bool on;        /* the request path's one test */
	_Atomic int lock;       /* spin lock over t and cfg */
	struct vhu__thr t;
	struct vhu_blk_throttle cfg;
	_Atomic uint64_t held, holding, wait_ns, wait_max_ns;
	/* A group's shared buckets (used instead of t and cfg), or NULL. */
	struct vhu__thr_shared *grp;
	char grp_name[65];
	_Atomic bool grp_warned; /* its lock failed once: logged */
};

struct vhu__blk_io;

struct vhu__blk_thq_ent {
	struct vhu__blk_io *io;
	uint64_t since;         /* held at (ns) */
};

/* The requests a queue holds: a FIFO per direction (reads never wait
 * behind writes that are over a write limit, as in QEMU), each a ring of
 * cap entries (the queue's slots). */
struct vhu__blk_thq {
	unsigned held;          /* both FIFOs: worker.c looks at this */
	bool armed;             /* worker.c: the timer is in the ring */
	unsigned cap;
	unsigned head[2], n[2];
	struct vhu__blk_thq_ent *q[2];
};

/* The device is freed (its queues stopped): unmap its group. */
void vhu__blk_thr_fini(struct vhu_blk *blk);

int vhu__blk_thq_init(struct vhu__blk_thq *q, unsigned cap);
void vhu__blk_thq_fini(struct vhu__blk_thq *q);
/* A checked request about to go to the back-end, limits on: true when it
 * may go (counted), false when it is held (the queue then owns it). */
bool vhu__blk_thr_admit(struct vhu_blk *blk, struct vhu__blk_thq *q,
			struct vhu__blk_io *io);
/* The next held request that may go now (counted and no longer held), or
 * NULL; all: every held request goes (the queue stops). */
struct vhu__blk_io *vhu__blk_thr_next(struct vhu_blk *blk,
				      struct vhu__blk_thq *q, bool all);
/* How long until a held request may go (ns, at least VHU__THR_MIN_NS,
 * at most VHU__THR_RECHECK_NS); 0 when none is held. */
uint64_t vhu__blk_thr_wait_ns(struct vhu_blk *blk, struct vhu__blk_thq *q);

#endif
