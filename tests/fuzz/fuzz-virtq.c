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
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <vhu/iov.h>
#include <vhu/virtq.h>

#include "internal.h"
#include "fuzz-common.h"

#define FZ_REGION_SIZE 0x8000u
#define FZ_GPA_A       0x10000u
#define FZ_GPA_B       (FZ_GPA_A + FZ_REGION_SIZE)
#define FZ_GPA_END     (FZ_GPA_B + FZ_REGION_SIZE)
#define FZ_GPA_RINGS   0x40000u   /* layout 1: desc, avail, used 64 KiB apart */
#define FZ_MAX_REGIONS 5u
#define FZ_UVA_OFF     0x7f0000000000ull   /* uva = gpa + this */
#define FZ_MAX_OPS     64u

/* The packed ring is exercised when the library has it. */
#ifdef FZ_HAVE_PACKED
#define FZ_PACKED(c) ((c)->vq.packed)
#else
#define FZ_PACKED(c) false
#endif
#define FZ_MAX_HELD    256u

struct fz_held {
	struct vhu_vq_elem e;
	uint32_t written;
};

struct fz_ctx {
	struct vhu__mem mem;
	struct vhu_vq vq;
	struct {
		uint64_t gpa, size;
		uint8_t *host;
	} r[FZ_MAX_REGIONS];        /* sorted by gpa */
	unsigned n_r;
	uint64_t used_gpa;
	uint64_t desc_gpa;
	unsigned cap;
	struct iovec *iov;             /* exactly cap entries */
	struct fz_held held[FZ_MAX_HELD];
	unsigned n_held;
	uint16_t base;
	uint32_t completions;          /* pushes + E2BIG */
	bool broken;
};

static uint8_t *fz_gpa(struct fz_ctx *c, uint64_t gpa)
{
	for (unsigned i = 0; i < c->n_r; i++)
		if (gpa >= c->r[i].gpa && gpa - c->r[i].gpa < c->r[i].size)
			return c->r[i].host + (gpa - c->r[i].gpa);
	FZ_ASSERT(0, "harness touched unmapped gpa 0x%llx", (unsigned long long)gpa);
	return NULL;
}

static void fz_add_region(struct fz_ctx *c, uint64_t gpa, uint64_t size)
{
	unsigned i = c->n_r++;

	c->r[i].gpa = gpa;
	c->r[i].size = size;
	c->r[i].host = calloc(1, size);
	FZ_ASSERT(c->r[i].host != NULL, "calloc");
	FZ_ASSERT(vhu__mem_add_host(&c->mem, gpa, size, gpa + FZ_UVA_OFF,
				    c->r[i].host) == 0, "add region %u", i);
}

/* Copy input bytes into guest memory from gpa on, region by region. */
static void fz_fill(struct fz_ctx *c, struct fz_in *in, uint64_t from,
		    uint64_t to)
{
	for (unsigned i = 0; i < c->n_r && fz_left(in); i++) {
		uint64_t lo = c->r[i].gpa, hi = lo + c->r[i].size;

		if (hi <= from || lo >= to)
			continue;
		lo = lo < from ? from : lo;
		hi = hi > to ? to : hi;
		fz_take(in, c->r[i].host + (lo - c->r[i].gpa),
			(size_t)(hi - lo) < fz_left(in) ? (size_t)(hi - lo) : fz_left(in));
	}
}

static uint16_t fz_rd16(struct fz_ctx *c, uint64_t gpa)
{
	uint8_t *p = fz_gpa(c, gpa);

	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t fz_rd32(struct fz_ctx *c, uint64_t gpa)
{
	uint8_t *p = fz_gpa(c, gpa);

	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void fz_wr16(struct fz_ctx *c, uint64_t gpa, uint16_t v)
{
	uint8_t *p = fz_gpa(c, gpa);

	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static bool fz_inside(const struct fz_ctx *c, const struct iovec *v)
{
	for (unsigned r = 0; r < c->n_r; r++) {
		uintptr_t lo = (uintptr_t)c->r[r].host;
		uintptr_t p = (uintptr_t)v->iov_base;

		if (p >= lo && p <= lo + c->r[r].size &&
		    v->iov_len <= lo + c->r[r].size - p)
			return true;
	}
	return false;
}

static uint32_t fz_in_bytes(const struct vhu_vq_elem *e)
{
	size_t n = vhu_iov_size(e->iov + e->n_out, e->n_in);

	return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

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

/* Pop one request; returns the pop result. */
static int fz_pop(struct fz_ctx *c, bool hold, uint16_t want_written)
{
	struct vhu_vq_elem e;
	struct iovec *iov = c->iov;
	int r;

	if (hold && c->n_held < FZ_MAX_HELD) {
		iov = calloc(c->cap, sizeof(*iov));
		FZ_ASSERT(iov != NULL, "calloc");
	}
	memset(&e, 0, sizeof(e));
	r = vhu_vq_pop(&c->vq, &e, iov, c->cap);
	if (r != 1 && iov != c->iov)
		free(iov);
	FZ_TRACE("pop -> %d (id %u, %u out, %u in)\n", r, e.id, e.n_out, e.n_in);
	if (r == -E2BIG) {
		c->completions++;
		return r;
	}
	if (r == -EIO) {
		FZ_ASSERT(vhu_vq_is_broken(&c->vq), "-EIO without broken");
		FZ_ASSERT(vhu_vq_pop(&c->vq, &e, c->iov, c->cap) == -EIO,
			  "broken queue popped again");
		c->broken = true;
		return r;
	}
	FZ_ASSERT(r == 0 || r == 1, "pop returned %d", r);
	if (r == 0)
		return 0;
	FZ_ASSERT(e.iov == iov, "elem iov not the caller's storage");
	FZ_ASSERT((unsigned)e.n_out + e.n_in <= c->cap, "%u + %u iovecs, cap %u",
		  e.n_out, e.n_in, c->cap);
	FZ_ASSERT(e.id < c->vq.size, "head id %u, size %u", e.id, c->vq.size);
	for (unsigned i = 0; i < (unsigned)e.n_out + e.n_in; i++) {
		FZ_ASSERT(fz_inside(c, &iov[i]), "iovec %u (%p, %zu) outside guest memory",
			  i, iov[i].iov_base, iov[i].iov_len);
		/* Read the first and last byte: ASan checks the mapping too. */
		if (iov[i].iov_len) {
			(void)((volatile uint8_t *)iov[i].iov_base)[0];
			(void)((volatile uint8_t *)iov[i].iov_base)[iov[i].iov_len - 1];
		}
	}
	uint32_t in = fz_in_bytes(&e);
	uint32_t written = want_written < in ? want_written : in;

	if (iov != c->iov) {
		c->held[c->n_held].e = e;
		c->held[c->n_held].written = written;
		c->n_held++;
	} else {
		fz_push(c, &e, written);
	}
	return 1;
}

static void fz_push_held(struct fz_ctx *c, unsigned i)
{
	struct fz_held h = c->held[i];

	memmove(&c->held[i], &c->held[i + 1],
		(c->n_held - i - 1) * sizeof(c->held[0]));
	c->n_held--;
	fz_push(c, &h.e, h.written);
	free(h.e.iov);
}

/* One 4-byte operation. */
static void fz_op(struct fz_ctx *c, const uint8_t op[4], uint64_t avail_gpa,
		  uint64_t desc_gpa, size_t db, size_t ab)
{
	switch (op[0] % 6) {
	case 0:
		if (!c->broken)
			fz_pop(c, op[1] & 1, (uint16_t)(op[2] | op[3] << 8));
		break;
	case 1:
		if (c->n_held)
			fz_push_held(c, op[1] % c->n_held);
		break;
	case 2: /* the driver makes more entries available */
		if (FZ_PACKED(c)) {
			/* Packed: set a descriptor's AVAIL/USED bits. */
			uint64_t d = desc_gpa + 16ull * (op[1] % c->vq.size) + 14;
			uint16_t fl = fz_rd16(c, d) & 0x7f7f;

			fz_wr16(c, d, (uint16_t)(fl | (op[2] & 1) << 7 |
						 (op[2] & 2) << 14));
		} else {
			fz_wr16(c, avail_gpa + 2,
				(uint16_t)(fz_rd16(c, avail_gpa + 2) + op[1]));
		}
		break;
	case 3: { /* the driver rewrites a byte of the table or avail ring */
		uint64_t off = (uint64_t)(op[1] | (op[3] >> 1) << 8);

		if (op[3] & 1)
			*fz_gpa(c, avail_gpa + off % ab) = op[2];
		else
			*fz_gpa(c, desc_gpa + off % db) = op[2];
		break;
	}
	case 4:
		switch (op[1] % 4) {
		case 0:
			vhu_vq_notify(&c->vq);
			break;
		case 1:
			vhu_vq_disable_notify(&c->vq);
			break;
		case 2:
			(void)vhu_vq_enable_notify(&c->vq);
			break;
		default:
			(void)vhu_vq_has_work(&c->vq);
		}
		break;
	default:
		(void)vhu_vq_drain_kick(&c->vq);
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
	uint64_t desc_gpa, avail_gpa;
	size_t db, ab, ub;

#ifdef FZ_HAVE_PACKED
	packed = (flags & 16) != 0;
	if (packed && (log & 0x80))
		qsize = 1 + (log & 0x7f);
#endif
	if (packed) {
#ifdef FZ_HAVE_PACKED
		db = vhu__packed_ring_bytes(qsize);
		ab = ub = VHU__PEVENT_BYTES;
#endif
	} else {
		db = vhu__vring_desc_bytes(qsize);
		ab = vhu__vring_avail_bytes(qsize);
		ub = vhu__vring_used_bytes(qsize);
	}

	c->cap = 1 + fz_u8(&in) % 64;
	c->iov = calloc(c->cap, sizeof(*c->iov));
	FZ_ASSERT(c->iov != NULL, "calloc");
	nops = fz_u8(&in) % (FZ_MAX_OPS + 1);
	c->base = fz_u16(&in);
	fz_take(&in, ops, (size_t)nops * 4);

	/* Ring placement (virtio 1.2, 2.7: alignments 16, 2, 4). */
	FZ_ASSERT(db == 16u * qsize && (packed || (ab >= 4 + 2u * qsize &&
						   ub >= 4 + 8u * qsize)),
		  "ring sizes %zu %zu %zu for %u", db, ab, ub, qsize);
	vhu__mem_init(&c->mem);
	fz_add_region(c, FZ_GPA_A, FZ_REGION_SIZE);
	fz_add_region(c, FZ_GPA_B, FZ_REGION_SIZE);
	switch ((flags >> 2) % 3) {
	case 0:
		desc_gpa = FZ_GPA_A;
		avail_gpa = desc_gpa + db;
		c->used_gpa = (avail_gpa + ab + 3) & ~3ull;
		break;
	case 1:
		desc_gpa = FZ_GPA_RINGS;
		avail_gpa = FZ_GPA_RINGS + 0x10000;
		c->used_gpa = FZ_GPA_RINGS + 0x20000;
		fz_add_region(c, desc_gpa, db);
		fz_add_region(c, avail_gpa, ab);
		fz_add_region(c, c->used_gpa, ub);
		break;
	default:
		c->used_gpa = (FZ_GPA_END - ub) & ~3ull;
		avail_gpa = (c->used_gpa - ab) & ~1ull;
		desc_gpa = (avail_gpa - db) & ~15ull;
	}

	/* Guest memory: the image from the descriptor table on, wrapping. */
	fz_fill(c, &in, desc_gpa, UINT64_MAX);
	fz_fill(c, &in, 0, desc_gpa);
	if (!packed)
		fz_wr16(c, c->used_gpa + 2, c->base);
	c->desc_gpa = desc_gpa;

	vhu__vq_init(&c->vq, 0, &c->mem);
	c->vq.size = (uint16_t)qsize;
	c->vq.indirect = flags & 1;
	c->vq.event_idx = (flags & 2) != 0;
	c->vq.desc_uva = desc_gpa + FZ_UVA_OFF;
	c->vq.avail_uva = avail_gpa + FZ_UVA_OFF;
	c->vq.used_uva = c->used_gpa + FZ_UVA_OFF;
	c->vq.addr_set = true;
	c->vq.enabled = true;
	c->vq.kick_set = true;
	c->vq.kick_fd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
	c->vq.call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
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
	FZ_ASSERT(vhu__vq_map(&c->vq) == 0, "vq_map");
	c->vq.started = true;

	for (unsigned i = 0; i < nops; i++)
		fz_op(c, ops[i], avail_gpa, desc_gpa, db, ab);

	/* Drain: at most one pass over the ring plus what was held. */
	for (unsigned k = 0; k < 2 * qsize + 8 && !c->broken; k++) {
		int r = fz_pop(c, false, 0xffff);

		if (r == 0 || r == -EIO)
			break;
	}
	while (c->n_held)
		fz_push_held(c, c->n_held - 1);
	vhu_vq_notify(&c->vq);
	if (!c->broken)
		FZ_ASSERT(c->vq.inflight == 0, "inflight %u after all pushes",
			  c->vq.inflight);

	c->vq.started = false;
	vhu__vq_reset(&c->vq);
	vhu__mem_clear(&c->mem);
	for (unsigned i = 0; i < c->n_r; i++)
		free(c->r[i].host);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_quiet_logs();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fz_ctx c;
	int before = fz_count_fds();

	memset(&c, 0, sizeof(c));
	fz_run(&c, data, size);
	free(c.iov);
	FZ_ASSERT(fz_count_fds() <= before, "fd leak in queue reset");
	return 0;
}
