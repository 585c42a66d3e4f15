/* SPDX-License-Identifier: MIT */
/*
 * A ring of either layout behind one small interface, for the ring-layer
 * tests whose bodies run over both (tap.h TEST_LAYOUTS): the split driver
 * (ring-driver.h) or the packed one (ring-driver-packed.h) underneath,
 * chosen at ra_init.  What only one layout has (hostile indices, wrap
 * counters, event areas) stays with that driver.
 */
#ifndef VHU_TEST_RING_ANY_H
#define VHU_TEST_RING_ANY_H

#include <stdbool.h>
#include <stdint.h>

#include "ring-driver-packed.h"
#include "ring-driver.h"

struct ra {
	bool packed;
	struct rd rd;
	struct pd pd;
	struct gmem *g;        /* the guest memory of the driver in use */
	struct vhu_vq *vq;     /* the device's queue */
	uint16_t next_id;      /* packed: buffer ids handed out in turn */
};

struct ra_opts {
	uint16_t size;
	uint64_t split_at;     /* != 0: two memory regions, boundary here */
	bool event_idx, indirect;
};

struct ra_buf {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

/* Memory, ring and a mapped vq of the layout asked for; 0 or -errno. */
int ra_init(struct ra *r, bool packed, const struct ra_opts *o);
void ra_fini(struct ra *r);

/* Make a chain of n buffers available (at most 64); returns the id the
 * device sees in its element (split: the head descriptor). */
uint16_t ra_add(struct ra *r, const struct ra_buf *b, unsigned n);
/* Same through an indirect table. */
uint16_t ra_add_indirect(struct ra *r, const struct ra_buf *b, unsigned n);

/* Next used element: 1 with its id and len, 0 when none is new. */
int ra_get_used(struct ra *r, uint32_t *id, uint32_t *len);
/* Interrupts signalled since the last call. */
uint64_t ra_calls(struct ra *r);

#endif
