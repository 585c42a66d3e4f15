/* SPDX-License-Identifier: MIT */
/*
 * Fuzz the packed-ring device side (virtio 1.2, 2.8): the descriptor ring
 * and both event suppression areas live in fake guest memory filled from
 * the input; then the input drives pops, pushes, driver-side rewrites and
 * notification calls.  Guest memory is two 32 KiB data regions adjacent
 * in guest-physical space but apart in host memory, plus (layout 1) one
 * region of exactly the right size per ring area, each its own heap block
 * so AddressSanitizer sees any access past one.
 *
 * Input (little-endian):
 *   u8  flags   bit 0 INDIRECT_DESC, bit 1 EVENT_IDX, bits 2-3 layout:
 *               0 rings at the start of the first data region, 1 each
 *               area in its own exact-size region, 2 rings at the end of
 *               the second data region
 *   u8  size    queue size = 1 + size (any, not only powers of two)
 *   u8  cap     iovec capacity per pop = 1 + cap % 64
 *   u8  nops    number of 4-byte operations that follow (% 65)
 *   u32 base    SET_VRING_BASE value (positions taken modulo the size)
 *   ops[nops]   see fz_op()
 *   the rest    guest memory image from the descriptor ring on, then
 *               from the start of the first data region
 * After the operations, requests are popped until the ring is empty or
 * broken (bounded), and everything held is pushed.
 *
 * Invariants: every iovec lies inside one region; n_out + n_in <= cap;
 * the buffer id is below the queue size; a broken queue stays broken;
 * each push writes a used descriptor with the id, the length and both
 * AVAIL and USED equal to the used wrap counter at the used position;
 * once every popped buffer is pushed, the used position and wrap counter
 * have caught up exactly with the available ones.
 */
/* Every queue here is packed: positions stay below the size. */
#define FZ_CHECK_POSITIONS 1
#include "fuzz-ring.h"

static struct vhu__pdesc fz_desc(struct fz_ctx *c, unsigned pos)
{
	struct vhu__pdesc d;

	memcpy(&d, fz_gpa(c, c->desc_gpa + 16ull * pos), sizeof(d));
	return d;
}

static void fz_push(struct fz_ctx *c, const struct vhu_vq_elem *e,
		    uint32_t written)
{
	unsigned pos = c->vq.used_idx;
	bool wrap = c->vq.pk_used_wrap;
	unsigned inflight = c->vq.inflight;

	vhu_vq_push(&c->vq, e, written);
	if (c->broken || vhu_vq_is_broken(&c->vq))
		return;
	struct vhu__pdesc d = fz_desc(c, pos);
	uint16_t f = d.flags;
	bool a = f & VHU__PDESC_F_AVAIL, u = f & VHU__PDESC_F_USED;

	FZ_ASSERT(d.id == e->id && d.len == written,
		  "used descriptor {%u, %u}, pushed {%u, %u}", d.id, d.len,
		  e->id, written);
	FZ_ASSERT(a == wrap && u == wrap, "used flags 0x%x, wrap %d", f, wrap);
	FZ_ASSERT(c->vq.inflight + 1 == inflight, "inflight %u -> %u", inflight,
		  c->vq.inflight);
	FZ_ASSERT(c->vq.used_idx < c->vq.size, "used position %u", c->vq.used_idx);
}

/* Operation 2: the driver makes a position available for a wrap. */
static void fz_op_avail(struct fz_ctx *c, const uint8_t op[4])
{
	unsigned pos = (unsigned)(op[1] | op[2] << 8) % c->vq.size;
	uint8_t *f = fz_gpa(c, c->desc_gpa + 16ull * pos + 14);
	uint16_t v = (uint16_t)(f[0] | f[1] << 8);

	v &= (uint16_t)~(VHU__PDESC_F_AVAIL | VHU__PDESC_F_USED);
	v |= (op[3] & 1) ? VHU__PDESC_F_AVAIL : VHU__PDESC_F_USED;
	if (op[3] & 2)
		v ^= VHU__PDESC_F_USED;
	f[0] = (uint8_t)v;
	f[1] = (uint8_t)(v >> 8);
}

static void fz_run(struct fz_ctx *c, const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size };
	uint8_t flags = fz_u8(&in);
	unsigned qsize = 1u + fz_u8(&in);
	uint8_t ops[FZ_MAX_OPS][4];
	unsigned nops;

	c->db = vhu__packed_ring_bytes(qsize);
	c->ab = c->ub = VHU__PEVENT_BYTES;
	nops = fz_head(c, &in);
	uint32_t base = fz_u32(&in);
	fz_take(&in, ops, (size_t)nops * 4);

	FZ_ASSERT(c->db == 16u * qsize, "ring bytes %zu for %u", c->db, qsize);
	fz_place_rings(c, flags >> 2);

	fz_image(c, &in);

	fz_vq_setup(c, qsize, flags);
	c->vq.packed = true;
	/* Both sides at the same position (nothing in flight). */
	uint32_t pos = (base & 0xffff) % qsize;
	uint32_t w = (base >> 16) & 1;
	uint32_t half = pos | w << 15;
	vhu__packed_set_base(&c->vq, half | half << 16);
	fz_start(c, ops, nops);
	if (!c->broken)
		FZ_ASSERT(c->vq.used_idx == c->vq.last_avail_idx &&
			  c->vq.pk_used_wrap == c->vq.pk_avail_wrap,
			  "used %u/%d behind avail %u/%d", c->vq.used_idx,
			  c->vq.pk_used_wrap, c->vq.last_avail_idx,
			  c->vq.pk_avail_wrap);
	fz_teardown(c);
}
