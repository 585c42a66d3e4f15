/* SPDX-License-Identifier: MIT */
/*
 * The harness both ring fuzz targets share (fuzz-virtq.c, split with an
 * optional packed mode; fuzz-virtq-packed.c, packed only): fake guest
 * memory of separate heap blocks, ring placement, queue setup, popping and
 * holding requests, the common operations, the final drain and the
 * libFuzzer entry points.  A target defines, before including this:
 *
 *   static void fz_push(struct fz_ctx *c, const struct vhu_vq_elem *e,
 *                       uint32_t written);    push and check the used side
 *   static void fz_op_avail(struct fz_ctx *c, const uint8_t op[4]);
 *                                             operation 2: the driver makes
 *                                             buffers available
 *   static void fz_run(struct fz_ctx *c, const uint8_t *data, size_t size);
 *
 * and FZ_CHECK_POSITIONS when the queue is always packed (the avail
 * position is then a ring position, below the size, after every pop).
 */
#ifndef VHU_FUZZ_RING_H
#define VHU_FUZZ_RING_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>

#include <vhu/iov.h>
#include <vhu/virtq.h>

#include "internal.h"
#include "fuzz-common.h"

#define FZ_REGION_SIZE 0x8000u
#define FZ_GPA_A       0x10000u
#define FZ_GPA_B       (FZ_GPA_A + FZ_REGION_SIZE)
#define FZ_GPA_END     (FZ_GPA_B + FZ_REGION_SIZE)
#define FZ_GPA_RINGS   0x40000u   /* layout 1: the three areas 64 KiB apart */
#define FZ_MAX_REGIONS 5u
#define FZ_UVA_OFF     0x7f0000000000ull   /* uva = gpa + this */
#define FZ_MAX_OPS     64u
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
	/* the three ring areas (split: desc, avail, used; packed: descriptor
	 * ring, driver and device event areas) and their sizes */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	size_t db, ab, ub;
	unsigned cap;
	struct iovec *iov;             /* exactly cap entries */
	struct fz_held held[FZ_MAX_HELD];
	unsigned n_held;
	uint16_t base;
	uint32_t completions;          /* pushes + E2BIG */
	bool broken;
};

static void fz_push(struct fz_ctx *c, const struct vhu_vq_elem *e,
		    uint32_t written);
static void fz_op_avail(struct fz_ctx *c, const uint8_t op[4]);
static void fz_run(struct fz_ctx *c, const uint8_t *data, size_t size);

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

static inline uint16_t fz_rd16(struct fz_ctx *c, uint64_t gpa)
{
	uint8_t *p = fz_gpa(c, gpa);

	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t fz_rd32(struct fz_ctx *c, uint64_t gpa)
{
	uint8_t *p = fz_gpa(c, gpa);

	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline void fz_wr16(struct fz_ctx *c, uint64_t gpa, uint16_t v)
{
	uint8_t *p = fz_gpa(c, gpa);

	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

/*
 * Two 32 KiB data regions, then the ring areas (sizes c->db, c->ab,
 * c->ub) by layout: 0 at the start of the first data region, 1 each in
 * its own exact-size region, 2 at the end of the second data region.
 * Alignments of virtio 1.2, 2.7 (16, 2, 4), which hold for 2.8 too.
 */
static void fz_place_rings(struct fz_ctx *c, unsigned layout)
{
	vhu__mem_init(&c->mem);
	fz_add_region(c, FZ_GPA_A, FZ_REGION_SIZE);
	fz_add_region(c, FZ_GPA_B, FZ_REGION_SIZE);
	switch (layout % 3) {
	case 0:
		c->desc_gpa = FZ_GPA_A;
		c->avail_gpa = c->desc_gpa + c->db;
		c->used_gpa = (c->avail_gpa + c->ab + 3) & ~3ull;
		break;
	case 1:
		c->desc_gpa = FZ_GPA_RINGS;
		c->avail_gpa = FZ_GPA_RINGS + 0x10000;
		c->used_gpa = FZ_GPA_RINGS + 0x20000;
		fz_add_region(c, c->desc_gpa, c->db);
		fz_add_region(c, c->avail_gpa, c->ab);
		fz_add_region(c, c->used_gpa, c->ub);
		break;
	default:
		c->used_gpa = (FZ_GPA_END - c->ub) & ~3ull;
		c->avail_gpa = (c->used_gpa - c->ab) & ~1ull;
		c->desc_gpa = (c->avail_gpa - c->db) & ~15ull;
	}
}

/* The input's head after flags and size: iovec capacity per pop
 * (1 + cap % 64) and the number of operations; returns that number. */
static unsigned fz_head(struct fz_ctx *c, struct fz_in *in)
{
	c->cap = 1 + fz_u8(in) % 64;
	c->iov = calloc(c->cap, sizeof(*c->iov));
	FZ_ASSERT(c->iov != NULL, "calloc");
	return fz_u8(in) % (FZ_MAX_OPS + 1);
}

/* Guest memory: the rest of the input from the descriptor table on,
 * then from the start. */
static void fz_image(struct fz_ctx *c, struct fz_in *in)
{
	fz_fill(c, in, c->desc_gpa, UINT64_MAX);
	fz_fill(c, in, 0, c->desc_gpa);
}

/* The queue over the placed rings, ready to map: flags bit 0
 * INDIRECT_DESC, bit 1 EVENT_IDX; a kick already pending. */
static void fz_vq_setup(struct fz_ctx *c, unsigned qsize, uint8_t flags)
{
	vhu__vq_init(&c->vq, 0, &c->mem);
	c->vq.size = (uint16_t)qsize;
	c->vq.indirect = flags & 1;
	c->vq.event_idx = (flags & 2) != 0;
	c->vq.desc_uva = c->desc_gpa + FZ_UVA_OFF;
	c->vq.avail_uva = c->avail_gpa + FZ_UVA_OFF;
	c->vq.used_uva = c->used_gpa + FZ_UVA_OFF;
	c->vq.addr_set = true;
	c->vq.enabled = true;
	c->vq.kick_set = true;
	c->vq.kick_fd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
	c->vq.call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
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

/* Check a popped element: storage, counts, id, every iovec inside guest
 * memory (first and last byte read: ASan checks the mapping too). */
static void fz_check_elem(struct fz_ctx *c, const struct vhu_vq_elem *e,
			  const struct iovec *iov)
{
#ifdef FZ_CHECK_POSITIONS
	FZ_ASSERT(c->vq.last_avail_idx < c->vq.size, "avail position %u",
		  c->vq.last_avail_idx);
#endif
	FZ_ASSERT(e->iov == iov, "elem iov not the caller's storage");
	FZ_ASSERT((unsigned)e->n_out + e->n_in <= c->cap, "%u + %u iovecs, cap %u",
		  e->n_out, e->n_in, c->cap);
	FZ_ASSERT(e->id < c->vq.size, "head id %u, size %u", e->id, c->vq.size);
	for (unsigned i = 0; i < (unsigned)e->n_out + e->n_in; i++) {
		FZ_ASSERT(fz_inside(c, &iov[i]), "iovec %u (%p, %zu) outside guest memory",
			  i, iov[i].iov_base, iov[i].iov_len);
		if (iov[i].iov_len) {
			(void)((volatile uint8_t *)iov[i].iov_base)[0];
			(void)((volatile uint8_t *)iov[i].iov_base)[iov[i].iov_len - 1];
		}
	}
}

/* Pop one request, then push it or (hold) keep it; returns the pop
 * result. */
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
	fz_check_elem(c, &e, iov);
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

/* One 4-byte operation: 0 pop (op[1] bit 0: hold), 1 push a held one,
 * 2 the driver makes buffers available (the target's), 3 the driver
 * rewrites a byte of the descriptor area (op[3] bit 0 clear) or of the
 * next one, 4 a notification call, 5 drain the kick. */
static void fz_op(struct fz_ctx *c, const uint8_t op[4])
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
	case 2:
		fz_op_avail(c, op);
		break;
	case 3: {
		uint64_t off = (uint64_t)(op[1] | (op[3] >> 1) << 8);

		if (op[3] & 1)
			*fz_gpa(c, c->avail_gpa + off % c->ab) = op[2];
		else
			*fz_gpa(c, c->desc_gpa + off % c->db) = op[2];
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

/* After the operations: pop and push until the ring is empty or broken
 * (at most one pass over it plus what was held), push everything held. */
static void fz_drain(struct fz_ctx *c)
{
	for (unsigned k = 0; k < 2u * c->vq.size + 8 && !c->broken; k++) {
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
}

/* Map and start the queue, run the operations, drain. */
static void fz_start(struct fz_ctx *c, uint8_t (*ops)[4], unsigned nops)
{
	FZ_ASSERT(vhu__vq_map(&c->vq) == 0, "vq_map");
	c->vq.started = true;
	for (unsigned i = 0; i < nops; i++)
		fz_op(c, ops[i]);
	fz_drain(c);
}

static void fz_teardown(struct fz_ctx *c)
{
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
	int before = tl_count_fds();

	memset(&c, 0, sizeof(c));
	fz_run(&c, data, size);
	free(c.iov);
	FZ_ASSERT(tl_count_fds() <= before, "fd leak in queue reset");
	return 0;
}

#endif
