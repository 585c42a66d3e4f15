/* SPDX-License-Identifier: MIT */
/*
 * A test-side split-ring driver (virtio 1.2, 2.7): it owns fake guest
 * memory (a memfd, shared with the device side through vhu__mem regions
 * of their own mappings), writes descriptor tables and the available ring,
 * and reads the used ring back, like a guest driver would.
 */
#ifndef VHU_TEST_RING_DRIVER_H
#define VHU_TEST_RING_DRIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "guest-mem.h"
#include "internal.h"

#define RD_GPA_BASE GMEM_GPA_BASE
#define RD_UVA_BASE GMEM_UVA_BASE

struct rd {
	struct gmem g;         /* guest memory; g.mem is the device's view */
	struct vhu_vq vq;      /* the device's queue */

	uint16_t size;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint16_t avail_idx;    /* next available entry the driver fills */
	uint16_t used_seen;    /* used entries the driver has consumed */
	uint16_t next_desc;    /* next descriptor handed out (round robin) */
};

struct rd_opts {
	uint16_t size;         /* queue size */
	uint64_t mem_size;     /* 0: 4 MiB */
	uint64_t split_at;     /* != 0: two regions, boundary at this offset */
	uint16_t start_idx;    /* initial avail/used index (wraparound) */
	bool event_idx, indirect;
	bool no_call_fd;
};

/* Build memory, rings and a mapped vq.  Returns 0 or -errno. */
int rd_init(struct rd *rd, const struct rd_opts *o);
void rd_fini(struct rd *rd);

/* Buffers and the driver's pointers into guest memory: gmem_buf() and
 * gmem_ptr() on &rd->g. */

/* Write one descriptor of a table at table_gpa (the ring's own table:
 * rd->desc_gpa). */
void rd_desc(struct rd *rd, uint64_t table_gpa, unsigned idx, uint64_t addr,
	     uint32_t len, uint16_t flags, uint16_t next);

/* Put head in the next available slot and publish avail->idx. */
void rd_publish(struct rd *rd, uint16_t head);
/* Write avail->idx directly (hostile index jumps). */
void rd_set_avail_idx(struct rd *rd, uint16_t idx);

struct rd_buf {
	uint64_t gpa;
	uint32_t len;
	bool write;
};
/* Chain n buffers through fresh descriptors and publish; returns head. */
uint16_t rd_add_chain(struct rd *rd, const struct rd_buf *b, unsigned n);
/* Same, through an indirect table (one ring descriptor). */
uint16_t rd_add_indirect(struct rd *rd, const struct rd_buf *b, unsigned n);

/* Next used element: 1 and its id and len, or 0 when none is new. */
int rd_get_used(struct rd *rd, uint32_t *id, uint32_t *len);
uint16_t rd_used_idx(struct rd *rd);
uint16_t rd_used_flags(struct rd *rd);
uint16_t rd_avail_event(struct rd *rd);
void rd_set_avail_flags(struct rd *rd, uint16_t flags);
void rd_set_used_event(struct rd *rd, uint16_t v);

/* Driver side of notification suppression (virtio 1.2, 2.7.10 and
 * 2.7.13.4): after publishing entries that moved avail->idx from old,
 * should the device be kicked? */
bool rd_need_kick(struct rd *rd, uint16_t old);
/* Ask for an interrupt at the next used entry (used_event, or clearing
 * NO_INTERRUPT); then, per 2.7.7.2, the caller re-checks the used ring. */
void rd_want_interrupt(struct rd *rd);

/* Interrupts signalled on the call eventfd since the last call. */
uint64_t rd_calls(struct rd *rd);

#endif
