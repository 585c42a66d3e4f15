/* SPDX-License-Identifier: MIT */
/*
 * Fuzz the split-ring device side (virtio 1.2, 2.7): descriptor table,
 * avail ring and used ring live in fake guest memory filled from the
 * input; then the input drives pops, pushes, driver-side ring updates and
 * notification calls.  Guest memory is two 32 KiB data regions adjacent
 * in guest-physical space but apart in host memory, plus (layout 1) one
 * region of exactly the right size per ring.  Every region is its own
 * heap block, so AddressSanitizer sees any access past one: a ring index
 * off by one, a buffer that runs over a region's end.
 *
 * Input (little-endian):
 *   u8  flags   bit 0 INDIRECT_DESC, bit 1 EVENT_IDX, bits 2-3 layout:
 *               0 rings at the start of the first data region, 1 each
 *               ring in its own exact-size region, 2 rings at the end of
 *               the second data region; bit 4 packed ring (virtio 1.2,
 *               2.8: descriptor ring, driver and device event areas in
 *               place of desc, avail and used)
 *   u8  log     queue size = 8 << (log % 6)   (8 .. 256); for a packed
 *               ring with bit 7 set: 1 + (log & 0x7f), any size
 *   u8  cap     iovec capacity per pop = 1 + cap % 64
 *   u8  nops    number of 4-byte operations that follow (% 65)
 *   u16 base    SET_VRING_BASE value (split: next avail index and used
 *               index; packed: bit 15 wrap counter, position base % size
 *               for both the avail and the used side)
 *   ops[nops]   see fz_op()
 *   the rest    guest memory image: from the descriptor table to the
 *               end of guest memory (regions in guest-physical order),
 *               then from the start of the first data region
 * After the operations, requests are popped and pushed until the ring is
 * empty or broken (bounded).
 *
 * Invariants: every iovec lies inside one region; n_out + n_in <= cap;
 * the head id is below the queue size; a broken queue stays broken; each
 * push lands in the used ring with its id and length, and the used index
 * counts every completion (E2BIG requests included); for a packed ring the
 * used descriptor carries the id, the length and both flag bits equal to
 * the used wrap counter (2.8.1, 2.8.7).
 */
#include "fuzz-ring.h"

/* The packed ring is exercised when the library has it. */
#ifdef FZ_HAVE_PACKED
#define FZ_PACKED(c) ((c)->vq.packed)
#else
#define FZ_PACKED(c) false
#endif

static void fz_push(struct fz_ctx *c, const struct vhu_vq_elem *e,
		    uint32_t written)
{
#ifdef FZ_HAVE_PACKED
	uint16_t pos = c->vq.used_idx;
	bool wrap = c->vq.pk_used_wrap;
#endif

	vhu_vq_push(&c->vq, e, written);
	c->completions++;
	if (c->broken || vhu_vq_is_broken(&c->vq))
		return;
#ifdef FZ_HAVE_PACKED
	if (c->vq.packed) {
		uint64_t d = c->desc_gpa + 16ull * pos;
		uint16_t fl = fz_rd16(c, d + 14);

		FZ_ASSERT(fz_rd32(c, d + 8) == written && fz_rd16(c, d + 12) == e->id,
			  "used descriptor {id %u, len %u}, pushed {%u, %u}",
			  fz_rd16(c, d + 12), fz_rd32(c, d + 8), e->id, written);
		FZ_ASSERT(!!(fl & VHU__PDESC_F_AVAIL) == wrap &&
			  !!(fl & VHU__PDESC_F_USED) == wrap,
			  "used descriptor flags 0x%x, used wrap %d", fl, wrap);
		return;
	}
#endif
	/* The entry just written: used ring = flags, idx, ring[size]. */
	uint16_t idx = fz_rd16(c, c->used_gpa + 2);
	uint64_t ent = c->used_gpa + 4 +
		       8ull * ((uint16_t)(idx - 1) % c->vq.size);

	FZ_ASSERT(idx == (uint16_t)(c->base + c->completions),
		  "used idx %u, expected %u", idx,
		  (uint16_t)(c->base + c->completions));
	FZ_ASSERT(fz_rd32(c, ent) == e->id && fz_rd32(c, ent + 4) == written,
		  "used entry {%u, %u}, pushed {%u, %u}", fz_rd32(c, ent),
		  fz_rd32(c, ent + 4), e->id, written);
}

/* Operation 2: the driver makes more entries available. */
static void fz_op_avail(struct fz_ctx *c, const uint8_t op[4])
{
	if (FZ_PACKED(c)) {
		/* Packed: set a descriptor's AVAIL/USED bits. */
		uint64_t d = c->desc_gpa + 16ull * (op[1] % c->vq.size) + 14;
		uint16_t fl = fz_rd16(c, d) & 0x7f7f;

		fz_wr16(c, d, (uint16_t)(fl | (op[2] & 1) << 7 |
					 (op[2] & 2) << 14));
	} else {
		fz_wr16(c, c->avail_gpa + 2,
			(uint16_t)(fz_rd16(c, c->avail_gpa + 2) + op[1]));
	}
}

static void fz_run(struct fz_ctx *c, const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size };
	uint8_t flags = fz_u8(&in);
	uint8_t log = fz_u8(&in);
	unsigned qsize = 8u << (log % 6);
	bool packed = false;
	uint8_t ops[FZ_MAX_OPS][4];
	unsigned nops;

#ifdef FZ_HAVE_PACKED
	packed = (flags & 16) != 0;
	if (packed && (log & 0x80))
		qsize = 1 + (log & 0x7f);
#endif
	if (packed) {
#ifdef FZ_HAVE_PACKED
		c->db = vhu__packed_ring_bytes(qsize);
		c->ab = c->ub = VHU__PEVENT_BYTES;
#endif
	} else {
		c->db = vhu__vring_desc_bytes(qsize);
		c->ab = vhu__vring_avail_bytes(qsize);
		c->ub = vhu__vring_used_bytes(qsize);
	}

	nops = fz_head(c, &in);
	c->base = fz_u16(&in);
	fz_take(&in, ops, (size_t)nops * 4);

	/* Ring placement (virtio 1.2, 2.7: alignments 16, 2, 4). */
	FZ_ASSERT(c->db == 16u * qsize && (packed || (c->ab >= 4 + 2u * qsize &&
						      c->ub >= 4 + 8u * qsize)),
		  "ring sizes %zu %zu %zu for %u", c->db, c->ab, c->ub, qsize);
	fz_place_rings(c, flags >> 2);

	/* Guest memory: the image from the descriptor table on, wrapping. */
	fz_image(c, &in);
	if (!packed)
		fz_wr16(c, c->used_gpa + 2, c->base);

	fz_vq_setup(c, qsize, flags);
	if (packed) {
#ifdef FZ_HAVE_PACKED
		uint32_t half = (c->base & 0x8000u) | (c->base & 0x7fffu) % qsize;

		c->vq.packed = true;
		vhu__packed_set_base(&c->vq, half | half << 16);
#endif
	} else {
		c->vq.last_avail_idx = c->base;
		c->vq.shadow_avail_idx = c->base;
		c->vq.used_idx = c->base;
	}
	fz_start(c, ops, nops);
	fz_teardown(c);
}
