/* SPDX-License-Identifier: MIT */
/*
 * A test-side packed-ring driver (virtio 1.2, 2.8): fake guest memory (a
 * memfd shared with the device side through vhu__mem regions of their own
 * mappings), a descriptor ring it fills with its own wrap counter, event
 * suppression areas, and the used descriptors read back as a guest would.
 */
#ifndef VHU_TEST_RING_DRIVER_PACKED_H
#define VHU_TEST_RING_DRIVER_PACKED_H

#include <stdbool.h>
#include <stdint.h>

#include "guest-mem.h"
#include "internal.h"

#define PD_GPA_BASE GMEM_GPA_BASE
#define PD_UVA_BASE GMEM_UVA_BASE
#define PD_MAX_SIZE 1024

struct pd {
	struct gmem g;         /* guest memory; g.mem is the device's view */
	struct vhu_vq vq;      /* the device's queue */

	uint16_t size;
	uint64_t ring_gpa, drv_gpa, dev_gpa;
	uint16_t avail_pos;    /* next position the driver fills */
	bool avail_wrap;       /* Driver Ring Wrap Counter */
	uint16_t used_pos;     /* next position a used descriptor appears */
	bool used_wrap;
	uint16_t chain_len[PD_MAX_SIZE]; /* positions per buffer id */
};

struct pd_opts {
	uint16_t size;         /* <= PD_MAX_SIZE, any value */
	uint64_t mem_size;     /* 0: 4 MiB */
	uint64_t split_at;     /* != 0: two regions, boundary at this offset */
	uint16_t start_pos;    /* initial position of both sides */
	bool start_wrap0;      /* start with wrap counters 0 instead of 1 */
	bool event_idx, indirect;
};

int pd_init(struct pd *pd, const struct pd_opts *o);
void pd_fini(struct pd *pd);

/* Buffers and the driver's pointers into guest memory: gmem_buf() and
 * gmem_ptr() on &pd->g. */

/* AVAIL/USED bits of a descriptor made available with wrap counter w. */
uint16_t pd_avail_bits(bool w);
/* Write one descriptor exactly as given (flags last, with release). */
void pd_raw(struct pd *pd, uint16_t pos, uint64_t addr, uint32_t len,
	    uint16_t id, uint16_t flags);
/* Write one entry of an indirect table. */
void pd_table_entry(struct pd *pd, uint64_t table, unsigned i, uint64_t addr,
		    uint32_t len, uint16_t flags);

struct pd_buf {
	uint64_t gpa;
	uint32_t len;
	bool write;
};
/* Make a buffer of n descriptors available under buffer id (head flags
 * written last); returns id. */
uint16_t pd_add(struct pd *pd, const struct pd_buf *b, unsigned n,
		uint16_t id);
/* Same through an indirect table (one ring position). */
uint16_t pd_add_indirect(struct pd *pd, const struct pd_buf *b, unsigned n,
			 uint16_t id);
/* Advance the driver's position by n without writing (after raw writes). */
void pd_skip(struct pd *pd, unsigned n);

/* Next used descriptor: 1 with id, len and its flags, 0 when none, -1
 * when the id is unknown. */
int pd_get_used(struct pd *pd, uint16_t *id, uint32_t *len);

/* Driver event suppression (what the device reads). */
void pd_set_driver_event(struct pd *pd, uint16_t flags, uint16_t off,
			 bool wrap);
/* Device event suppression flags (what the device wrote). */
uint16_t pd_device_flags(struct pd *pd);

/* Interrupts signalled on the call eventfd since the last call. */
uint64_t pd_calls(struct pd *pd);

#endif
