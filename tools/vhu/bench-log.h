/* SPDX-License-Identifier: MIT */
/* vhu bench --dirty-log: the back-end logs dirty pages as during a live
 * migration while the benchmark runs (bench-log.c). */
#ifndef VHU_BENCH_LOG_H
#define VHU_BENCH_LOG_H

#include <stddef.h>
#include <stdint.h>

#include <vhu/frontend.h>

struct bench_dirty {
	uint8_t *bits;      /* copy of the bitmap read at each sync */
	size_t len;
	uint64_t marked;    /* bits found set, summed over the syncs */
	uint64_t syncs;
};

/* Start logging on every queue set up so far; 0 or -errno (reported). */
int bench_dirty_start(struct vhu_fe *fe, struct bench_dirty *d);
/* Read and clear the bitmap, as a migrating front-end does between
 * passes; safe while the queues run. */
void bench_dirty_sync(struct vhu_fe *fe, struct bench_dirty *d);
/* A last sync, then stop logging and free; 0 or -errno (reported). */
int bench_dirty_stop(struct vhu_fe *fe, struct bench_dirty *d);

#endif
