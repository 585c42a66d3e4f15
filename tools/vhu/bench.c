/* SPDX-License-Identifier: MIT */
/*
 * vhu bench: a virtio-blk load generator (the only device it loads;
 * --device names another to be told so) driving the back-end's queues
 * directly (no VM).  One thread per queue; every request slot (header,
 * data, status) is preallocated in guest memory, so the hot loop does no
 * allocation: fill slots, add chains, one kick per batch, reap.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

/* The histogram bucket of a latency (bench.h). */
static unsigned h_index(uint64_t ns)
{
	if (ns < 64)
		return (unsigned)ns;
	unsigned msb = 63 - (unsigned)__builtin_clzll(ns);
	if (msb >= 40)
		return H_BUCKETS - 1;
	return 64 + (msb - 6) * H_SUB + (unsigned)((ns >> (msb - 5)) & (H_SUB - 1));
}

static volatile int stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64* */
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Verify pattern: each 8-byte word depends on the seed and its byte
 * offset on the disk, so any write of a block writes the same bytes and a
 * read can be checked without knowing which write it saw. */
static void fill_pattern(uint8_t *p, uint64_t disk_off, uint64_t len, uint64_t seed)
{
	for (uint64_t i = 0; i + 8 <= len; i += 8) {
		uint64_t v = mix64(seed ^ (disk_off + i));
		memcpy(p + i, &v, 8);
	}
}

static bool check_pattern(const uint8_t *p, uint64_t disk_off, uint64_t len,
			  uint64_t seed)
{
	for (uint64_t i = 0; i + 8 <= len; i += 8) {
		uint64_t v = mix64(seed ^ (disk_off + i)), g;
		memcpy(&g, p + i, 8);
		if (g != v)
			return false;
	}
	return true;
}

static bool is_write(struct worker *w)
{
	switch (w->o->pattern) {
	case P_WRITE: case P_RANDWRITE: return true;
	case P_READ: case P_RANDREAD: return false;
	default: return (rng_next(&w->rng) % 100) >= w->o->rwmix_read;
	}
}

static uint64_t pick_block(struct worker *w)
{
	switch (w->o->pattern) {
	case P_READ: case P_WRITE: case P_RW: {
		uint64_t b = w->next_seq;
		w->next_seq = (w->next_seq + 1) % w->nblocks;
		return w->first_block + b;
	}
	default:
		return w->first_block + rng_next(&w->rng) % w->nblocks;
	}
}

static bool bit_get(const uint8_t *bm, uint64_t i) { return bm[i / 8] & (1u << (i % 8)); }
static void bit_set(uint8_t *bm, uint64_t i) { bm[i / 8] |= (uint8_t)(1u << (i % 8)); }

static int submit_one(struct worker *w, struct slot *s)
{
	const struct opts *o = w->o;
	s->write = is_write(w);
	s->block = pick_block(w);
	uint64_t off = s->block * o->bs;
	s->hdr->type = s->write ? BLK_T_OUT : BLK_T_IN;
	s->hdr->ioprio = 0;
	s->hdr->sector = off / SECTOR;
	*s->status = 0xff;  /* the device must overwrite it */
	s->check = false;
	if (o->verify) {
		if (s->write)
			fill_pattern(s->data, off, o->bs, o->seed);
		else
			s->check = !w->written ||
				   bit_get(w->written, s->block - w->first_block);
	}
	struct vhu_fe_buf out[2], in[2];
	unsigned n_out = 0, n_in = 0;
	out[n_out++] = (struct vhu_fe_buf){ s->hdr_gpa, sizeof(struct blk_hdr) };
	if (s->write)
		out[n_out++] = (struct vhu_fe_buf){ s->data_gpa, (uint32_t)o->bs };
	else
		in[n_in++] = (struct vhu_fe_buf){ s->data_gpa, (uint32_t)o->bs };
	in[n_in++] = (struct vhu_fe_buf){ s->status_gpa, 1 };
	s->t_submit = now_ns();
	int r = vhu_fe_vq_add(w->vq, out, n_out, in, n_in, s);
	return r < 0 ? r : 0;
}

static void complete_one(struct worker *w, struct slot *s, uint32_t len, uint64_t t)
{
	const struct opts *o = w->o;
	uint64_t lat = t > s->t_submit ? t - s->t_submit : 0;
	w->hist[h_index(lat)]++;
	w->lat_sum += lat;
	if (lat > w->lat_max)
		w->lat_max = lat;
	uint8_t st = *s->status;
	uint32_t want = s->write ? 1 : (uint32_t)o->bs + 1;
	if (st != BLK_S_OK || len < 1) {
		w->errors++;
		if (w->errors <= 3)
			fprintf(stderr, "vhu bench: queue %u: %s block %" PRIu64
				" failed: status %u, len %u\n", w->index,
				s->write ? "write" : "read", s->block, st, len);
	} else if (len != want && w->errors++ < 3) {
		fprintf(stderr, "vhu bench: queue %u: device wrote %u bytes, expected %u\n",
			w->index, len, want);
	} else if (o->verify) {
		if (s->write) {
			if (w->written)
				bit_set(w->written, s->block - w->first_block);
		} else if (s->check) {
			w->verified++;
			if (!check_pattern(s->data, s->block * o->bs, o->bs, o->seed)) {
				if (w->mismatches++ < 3)
					fprintf(stderr, "vhu bench: verify: block %" PRIu64
						" (offset %" PRIu64 ") has wrong data\n",
						s->block, s->block * o->bs);
			}
		}
	}
	if (s->write)
		w->writes++;
	else
		w->reads++;
	__atomic_store_n(&w->done, w->done + 1, __ATOMIC_RELAXED);
	w->free_slots[w->nfree++] = s;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	const struct opts *o = w->o;
	uint64_t stall_ns = (uint64_t)(o->stall_s * 1e9);
	uint64_t last_progress = now_ns();
	for (;;) {
		bool stopping = __atomic_load_n(&stop_flag, __ATOMIC_RELAXED) ||
				w->submitted >= w->quota;
		if (!stopping) {
			while (w->nfree && w->submitted < w->quota) {
				struct slot *s = w->free_slots[--w->nfree];
				int r = submit_one(w, s);
				if (r < 0) {
					w->fail = r;
					return NULL;
				}
				w->submitted++;
			}
			int r = vhu_fe_vq_kick(w->vq);
			if (r < 0) {
				w->fail = r;
				return NULL;
			}
			w->kicks += (unsigned)r;
		}
		if (vhu_fe_vq_inflight(w->vq) == 0 && stopping)
			return NULL;

		unsigned got = 0;
		uint64_t t = 0;
		for (;;) {
			void *data;
			uint32_t len;
			int r = vhu_fe_vq_get_used(w->vq, &data, &len);
			if (r < 0) {
				w->fail = r;
				return NULL;
			}
			if (r == 0)
				break;
			if (!got)
				t = now_ns();
			complete_one(w, data, len, t);
			got++;
		}
		if (got) {
			last_progress = t;
			continue;
		}
		/* --poll: look again at once; a call is never asked for
		 * (with EVENT_IDX the back-end then does not signal). */
		int r = o->poll ? 0 : vhu_fe_vq_wait(w->vq, 100);
		if (r < 0) {
			w->fail = r;
			return NULL;
		}
		if (r == 0 && now_ns() - last_progress > stall_ns) {
			fprintf(stderr, "vhu bench: queue %u: no completion for %.1f s "
				"(%u in flight); giving up\n", w->index, o->stall_s,
				vhu_fe_vq_inflight(w->vq));
			w->fail = -ETIMEDOUT;
			return NULL;
		}
	}
}

/* utime + stime of a process in seconds, or -1. */
static double proc_cpu(int pid)
{
	char buf[1024];
	/* utime and stime are fields 14 and 15. */
	const char *p = vhu_tool_proc_stat(pid, buf, sizeof(buf));
	if (!p)
		return -1;
	unsigned long long ut, stt;
	if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
		   &ut, &stt) != 2)
		return -1;
	long hz = sysconf(_SC_CLK_TCK);
	return (double)(ut + stt) / (double)(hz > 0 ? hz : 100);
}

static int setup_workers(struct vhu_fe *fe, const struct opts *o,
			 struct worker *ws, uint64_t disk_blocks)
{
	for (unsigned q = 0; q < o->queues; q++) {
		struct worker *w = &ws[q];
		w->index = q;
		w->o = o;
		w->first_block = disk_blocks * q / o->queues;
		w->nblocks = disk_blocks * (q + 1) / o->queues - w->first_block;
		w->rng = mix64(o->seed * 1000003 + q + 1) | 1;
		if (o->count) {
			w->quota = o->count / o->queues + (q < o->count % o->queues);
		} else {
			w->quota = UINT64_MAX;
		}
		int r = vhu_fe_vq_setup(fe, q, o->queue_size, &w->vq);
		if (r < 0) {
			fprintf(stderr, "vhu bench: queue %u setup: %s\n", q, strerror(-r));
			return r;
		}
		w->slots = calloc(o->iodepth, sizeof(*w->slots));
		w->free_slots = calloc(o->iodepth, sizeof(*w->free_slots));
		if (!w->slots || !w->free_slots)
			return -ENOMEM;
		bool mixed = o->pattern == P_RW || o->pattern == P_RANDRW;
		if (o->verify && mixed) {
			w->written = calloc(w->nblocks / 8 + 1, 1);
			if (!w->written)
				return -ENOMEM;
		}
		for (unsigned i = 0; i < o->iodepth; i++) {
			struct slot *s = &w->slots[i];
			s->hdr = vhu_fe_alloc(fe, 64, 64, &s->hdr_gpa);
			s->data = vhu_fe_alloc(fe, o->bs, 4096, &s->data_gpa);
			if (!s->hdr || !s->data)
				return -ENOMEM;
			/* The status byte sits after the header, in its own
			 * descriptor. */
			s->status = (uint8_t *)s->hdr + 32;
			s->status_gpa = s->hdr_gpa + 32;
			w->free_slots[w->nfree++] = s;
		}
	}
	return 0;
}

/* Features, config space and the checks that need them: 0, or -1 after
 * saying why.  *f: the features set; *disk_blocks: blocks of o->bs. */
static int bench_negotiate(struct vhu_fe *fe, const struct opts *o,
			   uint64_t *f, uint64_t *disk_blocks)
{
	uint64_t want = VHU_BIT(VHU_F_VERSION_1) | VHU_BIT(VHU_F_EVENT_IDX) |
			VHU_BIT(BLK_F_SEG_MAX) | VHU_BIT(BLK_F_BLK_SIZE) |
			VHU_BIT(BLK_F_FLUSH) | VHU_BIT(BLK_F_MQ) |
			VHU_BIT(BLK_F_CONFIG_WCE) | VHU_BIT(BLK_F_TOPOLOGY) |
			VHU_BIT(BLK_F_SIZE_MAX) | VHU_BIT(BLK_F_RO);
	if (o->no_event_idx)
		want &= ~VHU_BIT(VHU_F_EVENT_IDX);
	if (o->packed) {
		if (!(vhu_fe_features_offered(fe) & VHU_BIT(VHU_F_RING_PACKED))) {
			fprintf(stderr, "vhu bench: the back-end does not offer "
				"VIRTIO_F_RING_PACKED\n");
			return -1;
		}
		want |= VHU_BIT(VHU_F_RING_PACKED);
	}
	int r = vhu_fe_set_features(fe, want);
	if (r < 0) {
		fprintf(stderr, "vhu bench: SET_FEATURES: %s\n", strerror(-r));
		return -1;
	}
	*f = vhu_fe_features(fe);
	uint8_t cfg[96];
	int clen = tool_read_config(fe, &vhu_tool_dev_blk, cfg, sizeof(cfg));
	if (clen < 0) {
		/* No config space at all is what another device (virtio-rng)
		 * looks like: say that, not only the errno. */
		if (clen == -EIO || clen == -EOPNOTSUPP)
			fprintf(stderr, "vhu bench: the back-end has no virtio-blk "
				"config space (%s); vhu bench loads virtio-blk only "
				"(vhu probe --device NAME shows what it serves)\n",
				clen == -EIO ? "GET_CONFIG refused"
					     : "no CONFIG protocol feature");
		else
			fprintf(stderr, "vhu bench: cannot read the config space: %s\n",
				strerror(-clen));
		return -1;
	}
	uint64_t cap_bytes = le64_at(cfg, 0) * SECTOR;
	if (o->size && o->size < cap_bytes)
		cap_bytes = o->size;
	*disk_blocks = cap_bytes / o->bs;
	if (*disk_blocks < o->queues) {
		fprintf(stderr, "vhu bench: disk of %" PRIu64 " bytes too small for "
			"--bs %" PRIu64 " on %u queues\n", cap_bytes, o->bs, o->queues);
		return -1;
	}
	bool writes = o->pattern != P_READ && o->pattern != P_RANDREAD;
	if (writes && (*f & VHU_BIT(BLK_F_RO))) {
		fprintf(stderr, "vhu bench: the device is read-only\n");
		return -1;
	}
	if (o->queues > 1) {
		unsigned maxq = vhu_fe_queue_num(fe);
		unsigned nq = (*f & VHU_BIT(BLK_F_MQ)) && clen >= 36 ? le16_at(cfg, 34) : 1;
		if (!(*f & VHU_BIT(BLK_F_MQ)) || o->queues > nq || (maxq && o->queues > maxq)) {
			fprintf(stderr, "vhu bench: the back-end serves %u queue(s); "
				"--queues %u\n", nq, o->queues);
			return -1;
		}
	}
	return 0;
}

/* Start one thread per queue and watch them until the time or count is
 * reached, a queue fails or a signal came; returns the threads started
 * (all joined).  *t0, *t1: start and end (ns).  With dirty (--dirty-log)
 * the log is read and cleared at every tick. */
static unsigned bench_run(const struct opts *o, struct worker *ws,
			  struct vhu_fe *fe, struct bench_dirty *dirty,
			  uint64_t *t0, uint64_t *t1)
{
	*t0 = now_ns();
	unsigned started = 0;
	for (; started < o->queues; started++) {
		if (pthread_create(&ws[started].thread, NULL, worker_main, &ws[started])) {
			stop_flag = 1;
			break;
		}
	}
	uint64_t end = o->count ? UINT64_MAX : *t0 + (uint64_t)(o->time_s * 1e9);
	uint64_t last_done = 0, last_t = *t0;
	for (;;) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		uint64_t t = now_ns(), done = 0;
		bool any_fail = false;
		for (unsigned q = 0; q < started; q++) {
			done += __atomic_load_n(&ws[q].done, __ATOMIC_RELAXED);
			any_fail |= __atomic_load_n(&ws[q].fail, __ATOMIC_RELAXED) != 0;
		}
		if (t >= end || any_fail)
			stop_flag = 1;
		if (dirty)
			bench_dirty_sync(fe, dirty);
		/* Count mode: over when every quota completed. */
		bool all_done = o->count && done >= o->count;
		if (o->progress && t - last_t >= 1000000000ull) {
			double dt = (double)(t - last_t) / 1e9;
			double iops = (double)(done - last_done) / dt;
			fprintf(stderr, "[%5.1fs] %10.0f IOPS %9.1f MB/s\n",
				(double)(t - *t0) / 1e9, iops, iops * (double)o->bs / 1e6);
			last_done = done;
			last_t = t;
		}
		if (stop_flag || all_done)
			break;
	}
	for (unsigned q = 0; q < started; q++)
		pthread_join(ws[q].thread, NULL);
	*t1 = now_ns();
	return started;
}

/* Stop the rings as a driver would (GET_VRING_BASE): the back-end's next
 * avail index must equal what was submitted.  Returns the mismatches. */
static unsigned bench_check_bases(struct vhu_fe *fe, const struct opts *o,
				  const struct worker *ws, unsigned started)
{
	unsigned base_errors = 0;
	for (unsigned q = 0; q < started; q++) {
		if (ws[q].fail)
			continue;
		uint32_t base;
		int r = vhu_fe_vq_stop(fe, q, &base);
		uint32_t want_base = (uint16_t)ws[q].submitted;
		if (o->packed) {
			/* vhost-user.rst: positions and wrap counters (from 1)
			 * of the avail and used sides, 3 descriptors a request. */
			uint64_t d = 3 * ws[q].submitted;
			uint32_t pos = (uint32_t)(d % o->queue_size);
			uint32_t wrap = ((d / o->queue_size) & 1) ? 0 : 1;
			uint32_t half = pos | wrap << 15;
			want_base = half | half << 16;
		}
		if (r < 0 || base != want_base) {
			base_errors++;
			fprintf(stderr, "vhu bench: queue %u: GET_VRING_BASE %s (base %u, "
				"submitted %" PRIu64 ")\n", q, r < 0 ? strerror(-r) : "mismatch",
				r < 0 ? 0 : base, ws[q].submitted);
		}
	}
	return base_errors;
}

int cmd_bench(int argc, char **argv)
{
	struct opts o;
	const char *path;
	int pr = bench_parse_opts(argc, argv, &o, &path);
	if (pr)
		return pr > 0 ? 0 : EXIT_USAGE;

	struct vhu_fe *fe;
	if (tool_connect(path, 5000, &fe) < 0)
		return 1;
	int rc = 1;
	struct worker *ws = calloc(o.queues, sizeof(*ws));
	if (!ws)
		goto out;

	uint64_t f, disk_blocks;
	if (bench_negotiate(fe, &o, &f, &disk_blocks) < 0)
		goto out;

	/* Guest memory: rings, then per slot a header line and a data block. */
	uint64_t ring = 16ull * o.queue_size + 8192 + 8ull * o.queue_size;
	uint64_t per_q = ring + (uint64_t)o.iodepth * (o.bs + 4096 + 64);
	int r = vhu_fe_add_memory(fe, (size_t)(per_q * o.queues + (1 << 20)));
	if (r < 0) {
		fprintf(stderr, "vhu bench: registering guest memory: %s\n", strerror(-r));
		goto out;
	}
	r = setup_workers(fe, &o, ws, disk_blocks);
	if (r < 0) {
		if (r == -ENOMEM)
			fprintf(stderr, "vhu bench: out of memory\n");
		goto out;
	}

	struct bench_dirty dirty;
	if (o.dirty_log && bench_dirty_start(fe, &dirty) < 0)
		goto out;

	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	double cpu0 = o.pid > 0 ? proc_cpu(o.pid) : -1;
	if (o.pid > 0 && cpu0 < 0)
		fprintf(stderr, "vhu bench: cannot read /proc/%d/stat; no CPU figures\n",
			o.pid);
	uint64_t t0, t1;
	double fe0 = proc_cpu(getpid());
	unsigned started = bench_run(&o, ws, fe, o.dirty_log ? &dirty : NULL, &t0, &t1);
	int dirty_rc = o.dirty_log ? bench_dirty_stop(fe, &dirty) : 0;
	double cpu1 = o.pid > 0 && cpu0 >= 0 ? proc_cpu(o.pid) : -1;
	double fe1 = proc_cpu(getpid());
	if (o.hold_s > 0) {
		/* Queues started, nothing in flight: what an idle guest is. */
		fprintf(stderr, "vhu bench: run done, holding the queues %.1f s\n",
			o.hold_s);
		struct timespec ts = { (time_t)o.hold_s,
				       (long)((o.hold_s - (double)(time_t)o.hold_s) * 1e9) };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !stop_flag)
			;
	}
	unsigned base_errors = bench_check_bases(fe, &o, ws, started);

	static struct bench_totals m;
	bench_merge(&o, ws, started, &m);
	double secs = (double)(t1 - t0) / 1e9;
	bench_report(&o, &m, secs, cpu1 >= 0 ? cpu1 - cpu0 : -1,
		     fe0 >= 0 && fe1 >= 0 ? fe1 - fe0 : 0, f,
		     o.dirty_log ? &dirty : NULL);
	if (m.fail == 0 && m.errors == 0 && m.mismatches == 0 && base_errors == 0 &&
	    dirty_rc == 0 &&
	    (!o.count || m.done == o.count))
		rc = 0;
	else if (m.fail == 0 && o.count && m.done != o.count)
		fprintf(stderr, "vhu bench: interrupted after %" PRIu64 " of %" PRIu64
			" requests\n", m.done, o.count);
out:
	if (ws) {
		for (unsigned q = 0; q < o.queues; q++) {
			free(ws[q].slots);
			free(ws[q].free_slots);
			free(ws[q].written);
		}
	}
	free(ws);
	vhu_fe_close(fe);
	return rc;
}
