/* SPDX-License-Identifier: MIT */
/*
 * Per-disk I/O limits: leaky buckets with QEMU's throttle semantics
 * (docs/throttle.txt and util/throttle.c in QEMU), computed in integers.
 *
 * A bucket of avg units per second fills by what each request costs and
 * leaks avg units per second.  A request may go while the bucket is not
 * over its size (it is then counted, and may take the level above the
 * size: one large request is never refused outright); otherwise it waits
 * until enough has leaked.  The size is a tenth of a second's worth of
 * avg when no burst is set, max * max_length with one: the disk may then
 * run faster than avg until that much is used, at most at max per second
 * when max_length > 1 (a second bucket, of max/10, leaking at max).
 *
 * Where this differs from QEMU, and why:
 *   - integer arithmetic: levels in units * 10^9 leak exactly avg per
 *     nanosecond (QEMU uses doubles, which lose the units of a large
 *     level to rounding);
 *   - a change of limits keeps each bucket's level (clamped to its new
 *     size) where QEMU empties every bucket: applying the same limits
 *     again must not hand out a fresh burst;
 *   - a bucket without a limit counts nothing (QEMU counts into it and
 *     empties it when a limit is set);
 *   - flushes are neither counted nor held (QEMU's throttle filter does
 *     not hold them either): a flush covers the writes completed before
 *     it (virtio 1.2, 5.2.6), and a held write has not completed;
 *   - DISCARD and WRITE_ZEROES count as writes of the bytes they cover,
 *     as QEMU counts them.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "blk-int.h"
#include "throttle.h"

#define NS 1000000000ull

/* ---- configuration ---- */

static const char *const bucket_names[VHU_BLK_THR_BUCKETS] = {
	"bps-total", "bps-read", "bps-write",
	"iops-total", "iops-read", "iops-write",
};

/* Per bucket: the average, the burst level, the burst length. */
#define KEYS_PER_BUCKET 3
#define NUM_KEYS (VHU_BLK_THR_BUCKETS * KEYS_PER_BUCKET + 1)
static const char *const key_names[NUM_KEYS] = {
	"bps-total", "bps-total-max", "bps-total-max-length",
	"bps-read", "bps-read-max", "bps-read-max-length",
	"bps-write", "bps-write-max", "bps-write-max-length",
	"iops-total", "iops-total-max", "iops-total-max-length",
	"iops-read", "iops-read-max", "iops-read-max-length",
	"iops-write", "iops-write-max", "iops-write-max-length",
	"iops-size",
};

const char *vhu_blk_throttle_key(const struct vhu_blk_throttle *t, unsigned i,
				 uint64_t *value)
{
	unsigned b = i / KEYS_PER_BUCKET;

	if (i >= NUM_KEYS)
		return NULL;
	if (b == VHU_BLK_THR_BUCKETS)
		*value = t->iops_size;
	else if (i % 3 == 0)
		*value = t->b[b].avg;
	else if (i % 3 == 1)
		*value = t->b[b].max;
	else
		*value = t->b[b].max_length;
	return key_names[i];
}

int vhu_blk_throttle_set(struct vhu_blk_throttle *t, const char *key,
			 uint64_t value)
{
	for (unsigned i = 0; i < NUM_KEYS; i++) {
		unsigned b = i / KEYS_PER_BUCKET;

		if (strcmp(key_names[i], key) != 0)
			continue;
		if (b == VHU_BLK_THR_BUCKETS) {
			t->iops_size = value;
		} else if (i % 3 == 0) {
			t->b[b].avg = value;
			/* "0 removes a limit": its burst goes with it. */
			if (value == 0)
				t->b[b].max = t->b[b].max_length = 0;
		} else if (i % 3 == 1) {
			t->b[b].max = value;
		} else {
			t->b[b].max_length = value;
		}
		return 0;
	}
	return -ENOENT;
}

int vhu_blk_throttle_parse(struct vhu_blk_throttle *t, const char *list,
			   char *err, size_t err_len)
{
	struct vhu_blk_throttle n = *t;
	const char *p = list;

	if (!*p) {
		snprintf(err, err_len, "no KEY=VALUE given");
		return -EINVAL;
	}
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		char key[64], val[32], *end;
		unsigned long long v;

		if (!eq || eq == p || (size_t)(eq - p) >= sizeof(key) ||
		    len - (size_t)(eq - p) - 1 >= sizeof(val) ||
		    len == (size_t)(eq - p) + 1) {
			snprintf(err, err_len, "'%.*s' is not KEY=VALUE", (int)len, p);
			return -EINVAL;
		}
		memcpy(key, p, (size_t)(eq - p));
		key[eq - p] = '\0';
		memcpy(val, eq + 1, len - (size_t)(eq - p) - 1);
		val[len - (size_t)(eq - p) - 1] = '\0';
		errno = 0;
		v = strtoull(val, &end, 10);
		if (*end || errno || val[0] < '0' || val[0] > '9') {
			snprintf(err, err_len, "%s: '%s' is not a number", key, val);
			return -EINVAL;
		}
		if (vhu_blk_throttle_set(&n, key, v) < 0) {
			snprintf(err, err_len, "unknown key '%s' (iops-total, "
				 "iops-read, iops-write, bps-total, bps-read, "
				 "bps-write, each also with -max and -max-length; "
				 "iops-size)", key);
			return -EINVAL;
		}
		p += len;
		if (*p == ',' && !*++p) {
			snprintf(err, err_len, "a trailing ','");
			return -EINVAL;
		}
	}
	*t = n;
	return 0;
}

int vhu_blk_throttle_check(const struct vhu_blk_throttle *t, char *err,
			   size_t err_len)
{
	for (unsigned k = 0; k < 2; k++) {
		const struct vhu_blk_thr_limit *b = &t->b[k * 3];
		const char *what = k ? "iops" : "bps";

		if ((b[0].avg && (b[1].avg || b[2].avg)) ||
		    (b[0].max && (b[1].max || b[2].max))) {
			snprintf(err, err_len, "%s-total cannot be combined with "
				 "%s-read or %s-write", what, what, what);
			return -EINVAL;
		}
	}
	if (t->iops_size > VHU_BLK_THR_VALUE_MAX) {
		snprintf(err, err_len, "iops-size is larger than %llu",
			 VHU_BLK_THR_VALUE_MAX);
		return -EINVAL;
	}
	for (unsigned i = 0; i < VHU_BLK_THR_BUCKETS; i++) {
		const struct vhu_blk_thr_limit *b = &t->b[i];
		const char *n = bucket_names[i];

		if (b->avg > VHU_BLK_THR_VALUE_MAX || b->max > VHU_BLK_THR_VALUE_MAX) {
			snprintf(err, err_len, "%s: values are at most %llu", n,
				 VHU_BLK_THR_VALUE_MAX);
			return -EINVAL;
		}
		if (b->max && !b->avg) {
			snprintf(err, err_len, "%s-max needs %s", n, n);
			return -EINVAL;
		}
		if (b->max && b->max < b->avg) {
			snprintf(err, err_len, "%s-max cannot be lower than %s", n, n);
			return -EINVAL;
		}
		if (b->max_length > 1 && !b->max) {
			snprintf(err, err_len, "%s-max-length needs %s-max", n, n);
			return -EINVAL;
		}
		if (b->max && b->max_length > VHU_BLK_THR_VALUE_MAX / b->max) {
			snprintf(err, err_len, "%s-max-length is too long for "
				 "%s-max (their product is at most %llu)", n, n,
				 VHU_BLK_THR_VALUE_MAX);
			return -EINVAL;
		}
	}
	return 0;
}

bool vhu_blk_throttle_any(const struct vhu_blk_throttle *t)
{
	for (unsigned i = 0; i < VHU_BLK_THR_BUCKETS; i++)
		if (t->b[i].avg)
			return true;
	return false;
}

/* ---- the buckets ---- */

/* Does bucket i count requests of direction dir? */
static bool applies(unsigned i, int dir)
{
	unsigned kind = i % 3;

	return kind == 0 || (dir == VHU__THR_READ ? kind == 1 : kind == 2);
}

/* The main bucket's size, and the burst bucket's, in units * 10^9. */
static vhu__u128 main_size(const struct vhu__thr_bucket *b)
{
	if (!b->max)
		return (vhu__u128)b->avg * (NS / 10);
	return (vhu__u128)b->max * (b->len > 1 ? b->len : 1) * NS;
}

static vhu__u128 burst_size(const struct vhu__thr_bucket *b)
{
	return (vhu__u128)b->max * (NS / 10);
}

static void leak(struct vhu__thr *t, uint64_t now)
{
	/* The clock is monotonic, but callers on several threads read it
	 * before taking the lock: a time before the last leak leaks
	 * nothing. */
	uint64_t delta = now > t->last_ns ? now - t->last_ns : 0;

	if (!delta)
		return;
	t->last_ns = now;
	for (unsigned i = 0; i < VHU_BLK_THR_BUCKETS; i++) {
		struct vhu__thr_bucket *b = &t->b[i];
		/* avg <= 10^15 and delta < 2^64: below 2^114. */
		vhu__u128 l = (vhu__u128)b->avg * delta;

		if (!b->avg)
			continue;
		b->level = b->level > l ? b->level - l : 0;
		if (b->len > 1) {
			l = (vhu__u128)b->max * delta;
			b->burst = b->burst > l ? b->burst - l : 0;
		}
	}
}

void vhu__thr_config(struct vhu__thr *t, const struct vhu_blk_throttle *cfg,
		     uint64_t now)
{
	leak(t, now);
	t->last_ns = now;
	t->op_size = cfg->iops_size;
	t->on = vhu_blk_throttle_any(cfg);
	for (unsigned i = 0; i < VHU_BLK_THR_BUCKETS; i++) {
		struct vhu__thr_bucket *b = &t->b[i];
		vhu__u128 s;

		b->avg = cfg->b[i].avg;
		b->max = b->avg ? cfg->b[i].max : 0;
		b->len = b->max ? cfg->b[i].max_length : 0;
		if (!b->avg) {
			b->level = b->burst = 0;
			continue;
		}
		s = main_size(b);
		if (b->level > s)
			b->level = s;
		s = burst_size(b);
		if (b->len <= 1)
			b->burst = 0;
		else if (b->burst > s)
			b->burst = s;
	}
}

/* ceil(extra / rate) nanoseconds, at most UINT64_MAX.  (A group's
 * buckets are in memory other processes write: a rate of 0 there must
 * not divide by zero.) */
static uint64_t wait_for(vhu__u128 extra, uint64_t rate)
{
	vhu__u128 w;

	if (!rate)
		return UINT64_MAX;
	w = extra / rate + (extra % rate != 0);

	return w > UINT64_MAX ? UINT64_MAX : (uint64_t)w;
}

uint64_t vhu__thr_wait(struct vhu__thr *t, int dir, uint64_t now)
{
	uint64_t wait = 0;

	if (!t->on)
		return 0;
	leak(t, now);
	for (unsigned i = 0; i < VHU_BLK_THR_BUCKETS; i++) {
		const struct vhu__thr_bucket *b = &t->b[i];
		vhu__u128 s;
		uint64_t w = 0;

		if (!b->avg || !applies(i, dir))
			continue;
		s = main_size(b);
		if (b->level > s) {
			w = wait_for(b->level - s, b->avg);
		} else if (b->len > 1) {
			s = burst_size(b);
			if (b->burst > s)
				w = wait_for(b->burst - s, b->max);
		}
		if (w > wait)
			wait = w;
	}
	return wait;
}

void vhu__thr_account(struct vhu__thr *t, int dir, uint64_t bytes)
{
	vhu__u128 units = NS;

	if (!t->on)
		return;
	/* iops-size: a request larger than it counts as bytes / iops-size
	 * operations (fractions kept), one smaller as one. */
	if (t->op_size && bytes > t->op_size)
		units = (vhu__u128)bytes * NS / t->op_size;
	for (unsigned i = 0; i < VHU_BLK_THR_BUCKETS; i++) {
		struct vhu__thr_bucket *b = &t->b[i];
		vhu__u128 add = i < 3 ? (vhu__u128)bytes * NS : units;

		if (!b->avg || !applies(i, dir))
			continue;
		b->level += add;
		if (b->len > 1)
			b->burst += add;
	}
}

/* ---- the device ---- */

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

/* Held for a few arithmetic operations only; queues of one disk rarely
 * meet here (one takes it per request it starts). */
static void spin_lock(struct vhu__blk_thr_disk *d)
{
	unsigned spins = 0;

	while (atomic_exchange_explicit(&d->lock, 1, memory_order_acquire)) {
		/* The holder may have been preempted: let it run. */
		if (++spins % 64 == 0)
			sched_yield();
	}
}

static void spin_unlock(struct vhu__blk_thr_disk *d)
{
	atomic_store_explicit(&d->lock, 0, memory_order_release);
}

/* ---- groups ---- */

#define GRP_MAGIC 0x7668752d74687231ull   /* "vhu-thr1" */
#define GRP_LOCK_NS 1000000000ull         /* then the request goes unlimited */

struct vhu__thr_shared {
	uint64_t magic;                 /* set last, once initialised */
	uint64_t size;                  /* sizeof(struct vhu__thr_shared) */
	pthread_mutex_t lock;           /* process-shared, robust */
	struct vhu__thr t;
	struct vhu_blk_throttle cfg;
};

/* The buckets to use, locked; NULL when the group's lock cannot be had
 * (then the request goes as if unlimited, rather than hang a queue on
 * a lock another process broke).  A member that died holding it may
 * have left the buckets half-updated: they start empty again. */
static struct vhu__thr *thr_begin(struct vhu__blk_thr_disk *d, uint64_t now)
{
	struct vhu__thr_shared *g = d->grp;
	struct timespec until;
	int r;

	if (!g) {
		spin_lock(d);
		return &d->t;
	}
	now += GRP_LOCK_NS;
	until.tv_sec = (time_t)(now / NS);
	until.tv_nsec = (long)(now % NS);
	r = pthread_mutex_clocklock(&g->lock, CLOCK_MONOTONIC, &until);
	if (r == EOWNERDEAD) {
		for (unsigned i = 0; i < VHU_BLK_THR_BUCKETS; i++)
			g->t.b[i].level = g->t.b[i].burst = 0;
		pthread_mutex_consistent(&g->lock);
		r = 0;
	}
	if (r) {
		if (!d->grp_warned)
			vhu__blk_log(VHU_LOG_ERROR, "throttle group %s: lock: %s; "
				     "requests go unlimited meanwhile",
				     d->grp_name, strerror(r));
		d->grp_warned = true;
		return NULL;
	}
	return &g->t;
}

static void thr_end(struct vhu__blk_thr_disk *d)
{
	if (d->grp)
		pthread_mutex_unlock(&d->grp->lock);
	else
		spin_unlock(d);
}

static bool grp_name_ok(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len > 64 || n[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= 'A' && n[i] <= 'Z') ||
		      (n[i] >= '0' && n[i] <= '9') || n[i] == '_' || n[i] == '.' ||
		      n[i] == '-'))
			return false;
	return true;
}

/* Map the group's segment, creating and initialising it when needed
 * (under flock, so two members starting at once initialise it once). */
static int grp_map(const char *name, struct vhu__thr_shared **out,
		   char *err, size_t err_len)
{
	char path[96];
	struct vhu__thr_shared *g;
	pthread_mutexattr_t a;
	struct stat st;
	int fd, r = 0;

	snprintf(path, sizeof(path), "/vhu-blk-throttle-%s", name);
	fd = shm_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
		snprintf(err, err_len, "throttle group %s: /dev/shm%s: %s", name,
			 path, strerror(errno));
		return r;
	}
	if (flock(fd, LOCK_EX) < 0 || fstat(fd, &st) < 0) {
		r = -errno;
		goto fail;
	}
	if (st.st_size == 0 && ftruncate(fd, sizeof(*g)) < 0) {
		r = -errno;
		goto fail;
	}
	if (st.st_size != 0 && (size_t)st.st_size != sizeof(*g)) {
		r = -EINVAL;
		snprintf(err, err_len, "throttle group %s: /dev/shm%s is not a "
			 "throttle group of this vhu-blk version", name, path);
		goto out;
	}
	g = mmap(NULL, sizeof(*g), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (g == MAP_FAILED) {
		r = -errno;
		goto fail;
	}
	if (atomic_load((_Atomic uint64_t *)&g->magic) != GRP_MAGIC) {
		memset(g, 0, sizeof(*g));
		g->size = sizeof(*g);
		pthread_mutexattr_init(&a);
		pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
		pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
		pthread_mutex_init(&g->lock, &a);
		pthread_mutexattr_destroy(&a);
		atomic_store((_Atomic uint64_t *)&g->magic, GRP_MAGIC);
	} else if (g->size != sizeof(*g)) {
		munmap(g, sizeof(*g));
		r = -EINVAL;
		snprintf(err, err_len, "throttle group %s: /dev/shm%s is not a "
			 "throttle group of this vhu-blk version", name, path);
		goto out;
	}
	*out = g;
	goto out;
fail:
	snprintf(err, err_len, "throttle group %s: /dev/shm%s: %s", name, path,
		 strerror(-r));
out:
	/* Unlocked explicitly: the mapping keeps the open file description,
	 * and with it the flock, alive past close(). */
	flock(fd, LOCK_UN);
	close(fd);
	return r;
}

int vhu_blk_throttle_group(struct vhu_blk *blk, const char *name,
			   char *err, size_t err_len)
{
	struct vhu__blk_thr_disk *d = &blk->thr;
	struct vhu__thr_shared *g = NULL;
	int r;

	for (unsigned i = 0; i < blk->num_queues; i++) {
		if (blk->runners && blk->runners[i]) {
			snprintf(err, err_len, "a throttle group is joined or "
				 "left while no queue runs");
			return -EBUSY;
		}
	}
	if (name && !grp_name_ok(name)) {
		snprintf(err, err_len, "throttle group '%s': a name is 1 to 64 of "
			 "A-Z a-z 0-9 _ . - (not starting with .)", name);
		return -EINVAL;
	}
	if (name) {
		r = grp_map(name, &g, err, err_len);
		if (r < 0)
			return r;
	}
	if (d->grp)
		munmap(d->grp, sizeof(*d->grp));
	d->grp = g;
	d->grp_warned = false;
	snprintf(d->grp_name, sizeof(d->grp_name), "%s", name ? name : "");
	/* Another member may set limits at any time: a member always
	 * looks (under the group's lock). */
	atomic_store_explicit(&d->on, g ? true : vhu_blk_throttle_any(&d->cfg),
			      memory_order_release);
	return 0;
}

void vhu__blk_thr_fini(struct vhu_blk *blk)
{
	if (blk->thr.grp)
		munmap(blk->thr.grp, sizeof(*blk->thr.grp));
	blk->thr.grp = NULL;
}

const char *vhu_blk_throttle_group_name(const struct vhu_blk *blk)
{
	return blk->thr.grp ? blk->thr.grp_name : NULL;
}

int vhu_blk_set_throttle(struct vhu_blk *blk, const struct vhu_blk_throttle *t,
			 char *err, size_t err_len)
{
	struct vhu__blk_thr_disk *d = &blk->thr;
	int r = vhu_blk_throttle_check(t, err, err_len);

	if (r < 0)
		return r;
	uint64_t now = mono_ns();
	struct vhu__thr *b = thr_begin(d, now);

	if (!b) {
		snprintf(err, err_len, "the throttle group's lock cannot be taken");
		return -EDEADLK;
	}
	vhu__thr_config(b, t, now);
	if (d->grp)
		d->grp->cfg = *t;
	else
		d->cfg = *t;
	thr_end(d);
	atomic_store_explicit(&d->on, d->grp || vhu_blk_throttle_any(t),
			      memory_order_release);
	return 0;
}

void vhu_blk_get_throttle(struct vhu_blk *blk, struct vhu_blk_throttle *t)
{
	struct vhu__blk_thr_disk *d = &blk->thr;

	if (!thr_begin(d, mono_ns())) {
		memset(t, 0, sizeof(*t));
		return;
	}
	*t = d->grp ? d->grp->cfg : d->cfg;
	thr_end(d);
}

void vhu_blk_throttle_stats(struct vhu_blk *blk, struct vhu_blk_thr_stats *st)
{
	struct vhu__blk_thr_disk *d = &blk->thr;

	st->held = atomic_load(&d->held);
	st->holding = atomic_load(&d->holding);
	st->wait_ns = atomic_load(&d->wait_ns);
	st->wait_max_ns = atomic_load(&d->wait_max_ns);
}

int vhu__blk_thq_init(struct vhu__blk_thq *q, unsigned cap)
{
	memset(q, 0, sizeof(*q));
	q->cap = cap;
	for (int i = 0; i < 2; i++) {
		q->q[i] = calloc(cap ? cap : 1, sizeof(*q->q[i]));
		if (!q->q[i]) {
			vhu__blk_thq_fini(q);
			return -ENOMEM;
		}
	}
	return 0;
}

void vhu__blk_thq_fini(struct vhu__blk_thq *q)
{
	free(q->q[0]);
	free(q->q[1]);
	q->q[0] = q->q[1] = NULL;
}

/* The direction a request counts in, or -1 when it is not limited. */
static int req_dir(const struct vhu_blk_req *req, uint64_t *bytes)
{
	uint64_t n = 0;

	switch (req->type) {
	case VHU_BLK_T_IN:
		*bytes = req->data_len;
		return VHU__THR_READ;
	case VHU_BLK_T_OUT:
		*bytes = req->data_len;
		return VHU__THR_WRITE;
	case VHU_BLK_T_DISCARD:
	case VHU_BLK_T_WRITE_ZEROES:
		for (unsigned i = 0; i < req->n_segs; i++)
			n += (uint64_t)req->segs[i].num_sectors << VHU_BLK_SECTOR_SHIFT;
		*bytes = n;
		return VHU__THR_WRITE;
	default:
		return -1;
	}
}

bool vhu__blk_thr_admit(struct vhu_blk *blk, struct vhu__blk_thq *q,
			struct vhu__blk_io *io)
{
	struct vhu__blk_thr_disk *d = &blk->thr;
	uint64_t bytes, now;
	int dir = req_dir(&io->req, &bytes);
	unsigned tail;

	if (dir < 0)
		return true;
	now = mono_ns();
	/* Behind a held request of the same direction: in order. */
	if (!q->n[dir]) {
		struct vhu__thr *t = thr_begin(d, now);

		if (!t)
			return true;
		if (vhu__thr_wait(t, dir, now) == 0) {
			vhu__thr_account(t, dir, bytes);
			thr_end(d);
			return true;
		}
		thr_end(d);
	}
	/* Room is certain: a queue holds at most its slots. */
	tail = (q->head[dir] + q->n[dir]) % q->cap;
	q->q[dir][tail] = (struct vhu__blk_thq_ent){ io, now };
	q->n[dir]++;
	q->held++;
	atomic_fetch_add_explicit(&d->held, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&d->holding, 1, memory_order_relaxed);
	return false;
}

static struct vhu__blk_io *thq_pop(struct vhu__blk_thr_disk *d,
				   struct vhu__blk_thq *q, int dir, uint64_t now)
{
	struct vhu__blk_thq_ent *e = &q->q[dir][q->head[dir]];
	uint64_t w = now > e->since ? now - e->since : 0;
	uint64_t max = atomic_load_explicit(&d->wait_max_ns, memory_order_relaxed);

	q->head[dir] = (q->head[dir] + 1) % q->cap;
	q->n[dir]--;
	q->held--;
	atomic_fetch_sub_explicit(&d->holding, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&d->wait_ns, w, memory_order_relaxed);
	while (w > max && !atomic_compare_exchange_weak_explicit(
			&d->wait_max_ns, &max, w, memory_order_relaxed,
			memory_order_relaxed))
		;
	return e->io;
}

struct vhu__blk_io *vhu__blk_thr_next(struct vhu_blk *blk,
				      struct vhu__blk_thq *q, bool all)
{
	struct vhu__blk_thr_disk *d = &blk->thr;
	struct vhu__blk_io *io = NULL;
	uint64_t now, bytes;
	int order[2] = { VHU__THR_READ, VHU__THR_WRITE };

	if (!q->held)
		return NULL;
	now = mono_ns();
	/* The direction held longer first. */
	if (q->n[0] && q->n[1] &&
	    q->q[1][q->head[1]].since < q->q[0][q->head[0]].since) {
		order[0] = VHU__THR_WRITE;
		order[1] = VHU__THR_READ;
	}
	struct vhu__thr *t = thr_begin(d, now);

	for (int k = 0; k < 2 && !io; k++) {
		int dir = order[k];

		if (!q->n[dir])
			continue;
		/* A stopping queue lets its held requests go (counted, so
		 * the budget after a restart reflects them): they were
		 * popped, and the stop waits for every popped request.
		 * Without the group's lock they go too. */
		if (t && !all && vhu__thr_wait(t, dir, now) != 0)
			continue;
		io = q->q[dir][q->head[dir]].io;
		req_dir(&io->req, &bytes);
		if (t)
			vhu__thr_account(t, dir, bytes);
		thq_pop(d, q, dir, now);
	}
	if (t)
		thr_end(d);
	return io;
}

uint64_t vhu__blk_thr_wait_ns(struct vhu_blk *blk, struct vhu__blk_thq *q)
{
	struct vhu__blk_thr_disk *d = &blk->thr;
	uint64_t now = mono_ns(), wait = VHU__THR_RECHECK_NS;

	if (!q->held)
		return 0;
	struct vhu__thr *t = thr_begin(d, now);

	if (!t)
		return 1;
	for (int dir = 0; dir < 2; dir++) {
		uint64_t w;

		if (!q->n[dir])
			continue;
		w = vhu__thr_wait(t, dir, now);
		if (w < wait)
			wait = w;
	}
	thr_end(d);
	/* Not sooner than VHU__THR_MIN_NS: at high rates several requests
	 * go per wake-up (the bucket keeps what leaked meanwhile, so the
	 * rate is the same; a held request waits at most that much more). */
	return wait < VHU__THR_MIN_NS ? VHU__THR_MIN_NS : wait;
}
