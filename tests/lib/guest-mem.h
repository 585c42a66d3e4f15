/* SPDX-License-Identifier: MIT */
/*
 * Fake guest memory for the ring tests: one memfd the test (the "driver")
 * maps whole, handed to the device side as one or two vhu__mem regions,
 * each through its own fd and mapping, as a back-end would receive it.
 * Guest-physical address GMEM_GPA_BASE + off is front-end virtual address
 * GMEM_UVA_BASE + off.
 */
#ifndef VHU_TEST_GUEST_MEM_H
#define VHU_TEST_GUEST_MEM_H

#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

#define GMEM_GPA_BASE 0x40000000ull
#define GMEM_UVA_BASE 0x7f5500000000ull

struct gmem {
	int fd;                /* memfd backing guest memory, -1 none */
	uint8_t *host;         /* the driver's mapping of all of it */
	uint64_t size;
	struct vhu__mem mem;   /* the device's view */
	uint64_t next;         /* bump allocator (gpa) */
};

/* size bytes (0: 4 MiB); split_at != 0: two regions, the boundary at that
 * offset.  Returns 0 or -errno; gmem_fini() undoes a failed one too. */
int gmem_init(struct gmem *g, uint64_t size, uint64_t split_at,
	      const char *name);
void gmem_fini(struct gmem *g);

/* len bytes at the allocator's position rounded up to align (a power of
 * two); returns the gpa.  No bound check: tests size their memory. */
uint64_t gmem_alloc(struct gmem *g, uint64_t len, uint64_t align);
/* A 16-aligned buffer of len bytes. */
uint64_t gmem_buf(struct gmem *g, uint64_t len);
/* The driver's pointer to gpa. */
void *gmem_ptr(struct gmem *g, uint64_t gpa);
/* The front-end virtual address of gpa (what SET_VRING_ADDR carries). */
uint64_t gmem_uva(uint64_t gpa);
/* Configure vq as the control path would: its size, its three ring areas
 * at these gpas (front-end addresses, as SET_VRING_ADDR carries them),
 * the ring features. */
void gmem_vq_rings(struct vhu_vq *vq, uint16_t size, uint64_t desc_gpa,
		   uint64_t avail_gpa, uint64_t used_gpa, bool event_idx,
		   bool indirect);
/* Give vq a call eventfd (with_call_fd) and map its rings: 0 or -errno. */
int gmem_vq_map(struct vhu_vq *vq, bool with_call_fd);
/* Calls signalled on vq's call eventfd since the last look (it is read
 * empty); 0 without one. */
uint64_t gmem_vq_calls(struct vhu_vq *vq);
/* A fresh 16-aligned buffer of len bytes holding s (zero padded). */
uint64_t gmem_buf_with(struct gmem *g, const char *s, uint32_t len);

#endif
