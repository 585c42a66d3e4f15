/* SPDX-License-Identifier: MIT */
/*
 * State shared by the front-end's modules: the session (frontend.c),
 * its guest memory and queue setup (frontend-vq.c) and the driver side
 * of a split ring (driver-split.c) or a packed ring (driver-packed.c).
 */
#ifndef VHU_FRONTEND_PRIV_H
#define VHU_FRONTEND_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <vhu/frontend.h>

#include "internal.h"

/* Regions one session may create (SET_MEM_TABLE carries at most 8). */
#define VHU__FE_MAX_REGIONS VHU_MAX_REGIONS

struct vhu__fe_region {
	uint8_t *host;
	size_t size;
	size_t used;     /* bump allocator */
	uint64_t gpa;
	int fd;
};

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

struct vhu_fe {
	pthread_mutex_t lock;      /* serialises control requests */
	int fd;
	int backend_fd;            /* our end of the back-end channel, -1 */
	int timeout_ms;
	bool broken;
	struct vhu_fe_opts opts;

	uint64_t features_offered;
	uint64_t protocol_offered;
	uint64_t protocol;
	uint64_t features;
	bool features_set;
	unsigned queue_num;
	unsigned max_mem_slots;

	struct vhu__fe_region regions[VHU__FE_MAX_REGIONS];
	unsigned nregions;

	struct vhu_fe_vq *vqs[VHU_MAX_QUEUES];

	vhu_fe_config_change_fn cc_fn;
	void *cc_opaque;
};

/* frontend.c: one request without a reply body (acknowledged with
 * REPLY_ACK when negotiated), and one with a reply of exactly reply_size
 * payload bytes.  Both take the session lock. */
int vhu__fe_cmd(struct vhu_fe *fe, uint32_t req, const void *payload,
		uint32_t size, const int *fds, unsigned nfds);
int vhu__fe_call(struct vhu_fe *fe, uint32_t req, const void *payload,
		 uint32_t size, void *reply, uint32_t reply_size);

/* frontend-vq.c */
void vhu__fe_mem_free(struct vhu_fe *fe);
void vhu__fe_vqs_free(struct vhu_fe *fe);

/* driver-split.c: set up driver state over rings already in guest memory
 * (desc, avail, used zeroed); frees with vhu__drv_free(). */
int vhu__drv_init(struct vhu_fe_vq *vq, unsigned size);
void vhu__drv_free(struct vhu_fe_vq *vq);
/* Shared by both layouts: mark the queue broken (logged, -EIO), and wait
 * on the call eventfd until ready(vq) or timeout_ms (-1 forever): 1 ready,
 * 0 timed out, -errno. */
int vhu__drv_broken(struct vhu_fe_vq *vq, const char *why, unsigned v);
int vhu__drv_wait_call(struct vhu_fe_vq *vq, int timeout_ms,
		       bool (*ready)(struct vhu_fe_vq *vq));

/* driver-packed.c: the same for a packed ring (pring, drv_area, dev_area
 * zeroed), and the data-path calls the vhu_fe_vq_* entry points hand a
 * packed queue to. */
int vhu__pdrv_init(struct vhu_fe_vq *vq, unsigned size);
void vhu__pdrv_free(struct vhu_fe_vq *vq);
int vhu__pdrv_add(struct vhu_fe_vq *vq, const struct vhu_fe_buf *out,
		  unsigned n_out, const struct vhu_fe_buf *in, unsigned n_in,
		  void *data);
int vhu__pdrv_kick(struct vhu_fe_vq *vq);
int vhu__pdrv_get_used(struct vhu_fe_vq *vq, void **data, uint32_t *len);
int vhu__pdrv_wait(struct vhu_fe_vq *vq, int timeout_ms);

#endif
