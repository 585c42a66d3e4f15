/* SPDX-License-Identifier: MIT */
/*
 * The driver side of a virtqueue, the front-end's half of the ring layer:
 * driver.c dispatches the public vhu_fe_vq_* calls to the split
 * (driver-split.c) or packed (driver-packed.c) driver.  Like the device
 * side it sees only the rings in guest memory and the queue's eventfds;
 * the session (frontend*.c) allocates the rings and fills in the fields.
 */
#ifndef VHU_DRIVER_H
#define VHU_DRIVER_H

#include <stdbool.h>
#include <stdint.h>

#include <vhu/frontend.h>

#include "internal.h"

struct vhu_fe_vq {
	struct vhu_fe *fe;
	unsigned index;
	uint16_t size;
	bool event_idx;
	bool broken;

	/* the shared ring, in guest memory */
	struct vhu_vring_desc *desc;
	volatile uint16_t *avail;  /* flags, idx, ring[size], used_event */
	volatile uint16_t *used;   /* flags, idx, elems, avail_event */
	uint64_t desc_gpa, avail_gpa, used_gpa;

	/* driver state, private (the device cannot corrupt it) */
	uint16_t free_head;
	uint16_t num_free;
	uint16_t avail_idx;        /* next avail entry to fill */
	uint16_t kicked_idx;       /* avail->idx as last published */
	uint16_t last_used;        /* next used entry to read */
	unsigned inflight;
	uint16_t *next;            /* chain links, by descriptor */
	uint16_t *chain_len;       /* descriptors per head; 0 = not in flight */
	uint64_t *in_bytes;        /* writable bytes per head */
	void **data;               /* caller's token per head */

	int kick_fd;
	int call_fd;

	/* packed ring (virtio 1.2, 2.8; driver-packed.c), when packed is
	 * set: chain_len counts ring positions per buffer id. */
	bool packed;
	struct vhu__pdesc *pring;
	volatile uint16_t *drv_area; /* driver event suppression (ours) */
	volatile uint16_t *dev_area; /* device event suppression */
	uint64_t pring_gpa, drv_area_gpa, dev_area_gpa;
	uint16_t p_avail_pos;        /* next position to fill */
	uint16_t p_used_pos;         /* next position a used one appears */
	bool p_avail_wrap, p_used_wrap;
	uint32_t p_added;            /* positions filled since the last kick */
	uint16_t *p_free_ids;        /* stack of buffer ids not in flight */
	uint16_t p_nfree_ids;
};

/* driver.c: set up driver state over rings already in guest memory
 * (split: desc, avail, used zeroed; packed: pring, drv_area, dev_area
 * zeroed), by vq->packed; free it again.  Mark the queue broken (logged,
 * -EIO), for both drivers. */
int vhu__drv_init(struct vhu_fe_vq *vq, unsigned size);
void vhu__drv_free(struct vhu_fe_vq *vq);
int vhu__drv_broken(struct vhu_fe_vq *vq, const char *why, unsigned v);

/* driver-split.c (vhu__sdrv_*) and driver-packed.c (vhu__pdrv_*): one
 * driver each, behind driver.c.
 * init/free: the layout's own state (driver.c has allocated chain_len,
 * in_bytes and data for size buffers);
 * add: after the shared checks (not broken, 1 <= n, no overflow);
 * get_used: on a queue not broken; has_used: a used buffer is waiting;
 * arm: ask the device for a call at the next used buffer. */
#define VHU__DRIVER(p)                                                        \
	int vhu__##p##_init(struct vhu_fe_vq *vq, unsigned size);             \
	void vhu__##p##_free(struct vhu_fe_vq *vq);                           \
	int vhu__##p##_add(struct vhu_fe_vq *vq, const struct vhu_fe_buf *out, \
			   unsigned n_out, const struct vhu_fe_buf *in,       \
			   unsigned n_in, void *data);                        \
	int vhu__##p##_kick(struct vhu_fe_vq *vq);                            \
	int vhu__##p##_get_used(struct vhu_fe_vq *vq, void **data,            \
				uint32_t *len);                               \
	bool vhu__##p##_has_used(struct vhu_fe_vq *vq);                       \
	void vhu__##p##_arm(struct vhu_fe_vq *vq)

VHU__DRIVER(sdrv);
VHU__DRIVER(pdrv);

#endif
