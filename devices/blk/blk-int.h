/* SPDX-License-Identifier: MIT */
/* Internals shared by the files of the vhu-blk device. */
#ifndef VHU_BLK_INT_H
#define VHU_BLK_INT_H

#include <stdatomic.h>

#include "blk.h"

struct vhu__blk_worker;

/* Per-queue counters: updated by that queue's worker, read by anyone. */
struct vhu__blk_stats {
	_Atomic uint64_t requests;
	_Atomic uint64_t bytes_read;
	_Atomic uint64_t bytes_written;
	_Atomic uint64_t errors;
	_Atomic uint64_t in_flight;
};

struct vhu_blk {
	int fd;
	bool blockdev;
	bool read_only;
	enum vhu_blk_cache cache;
	unsigned blk_size;
	unsigned num_queues;
	unsigned queue_depth;
	char serial[VHU_BLK_ID_BYTES + 1];

	/* Read by the workers for every request; written by the control
	 * thread on resize and by config writes. */
	_Atomic uint64_t capacity;  /* 512-byte sectors */
	_Atomic uint64_t size;      /* bytes */
	_Atomic bool wce;           /* true: write-back */

	struct vhu__blk_stats *stats;            /* [num_queues] */
	struct vhu__blk_worker **workers;        /* [num_queues], NULL = stopped */
};

/* Start serving vq on a new thread; stop it (synchronously: on return
 * every popped request has been pushed and the thread has ended). */
int vhu__blk_worker_start(struct vhu_blk *blk, struct vhu_vq *vq,
			  struct vhu__blk_worker **out);
void vhu__blk_worker_stop(struct vhu__blk_worker *w);

/* Open the image and read its size. */
int vhu__blk_image_open(struct vhu_blk *blk, const char *path);
/* Current size of the open image in bytes. */
int vhu__blk_image_size(const struct vhu_blk *blk, uint64_t *size);
/* Set capacity from a byte size (whole logical blocks only). */
void vhu__blk_set_size(struct vhu_blk *blk, uint64_t size);

/* Log through stderr, honouring the library's log level. */
void vhu__blk_log(enum vhu_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
