/* SPDX-License-Identifier: MIT */
/*
 * vhu bench --dirty-log: measure what dirty logging costs the back-end.
 * Logging is started before the workers run (vhu_fe_log_start(): the log,
 * LOG_ALL, the rings' LOG flag) and the bitmap is read and cleared every
 * progress tick, as QEMU does between migration passes, so the back-end
 * keeps setting bits in words that were just cleared.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-log.h"

int bench_dirty_start(struct vhu_fe *fe, struct bench_dirty *d)
{
	memset(d, 0, sizeof(*d));
	int r = vhu_fe_log_start(fe);
	if (r < 0) {
		fprintf(stderr, "vhu bench: --dirty-log: %s\n", r == -EOPNOTSUPP ?
			"the back-end offers no LOG_SHMFD / VHOST_F_LOG_ALL" :
			strerror(-r));
		return r;
	}
	d->len = vhu_fe_log_size(fe) & ~(size_t)7;
	d->bits = malloc(d->len ? d->len : 8);
	return d->bits ? 0 : -ENOMEM;
}

void bench_dirty_sync(struct vhu_fe *fe, struct bench_dirty *d)
{
	long n = vhu_fe_log_read(fe, d->bits, d->len);
	if (n > 0)
		d->marked += (uint64_t)n;
	d->syncs++;
}

int bench_dirty_stop(struct vhu_fe *fe, struct bench_dirty *d)
{
	bench_dirty_sync(fe, d);
	int r = vhu_fe_log_stop(fe);
	if (r < 0)
		fprintf(stderr, "vhu bench: stopping the dirty log: %s\n",
			strerror(-r));
	free(d->bits);
	d->bits = NULL;
	return r;
}
