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
#define FZ_GPA_RINGS   0x40000u
#define FZ_MAX_REGIONS 5u
#define FZ_UVA_OFF     0x7f0000000000ull
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
	} r[FZ_MAX_REGIONS];
	unsigned n_r;
	uint64_t desc_gpa, drv_gpa;
	unsigned cap;
	struct iovec *iov;
	struct fz_held held[FZ_MAX_HELD];
	unsigned n_held;
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

static struct vhu__pdesc fz_desc(struct fz_ctx *c, unsigned pos)
{
	struct vhu__pdesc d;

	memcpy(&d, fz_gpa(c, c->desc_gpa + 16ull * pos), sizeof(d));
	return d;
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
	if (r == -E2BIG)
		return r;
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
	FZ_ASSERT(c->vq.last_avail_idx < c->vq.size, "avail position %u",
		  c->vq.last_avail_idx);
	FZ_ASSERT(e.iov == iov, "elem iov not the caller's storage");
	FZ_ASSERT((unsigned)e.n_out + e.n_in <= c->cap, "%u + %u iovecs, cap %u",
		  e.n_out, e.n_in, c->cap);
	FZ_ASSERT(e.id < c->vq.size, "buffer id %u, size %u", e.id, c->vq.size);
	for (unsigned i = 0; i < (unsigned)e.n_out + e.n_in; i++) {
		FZ_ASSERT(fz_inside(c, &iov[i]), "iovec %u outside guest memory", i);
		if (iov[i].iov_len) {
			(void)((volatile uint8_t *)iov[i].iov_base)[0];
			(void)((volatile uint8_t *)iov[i].iov_base)[iov[i].iov_len - 1];
		}
	}
	size_t in = vhu_iov_size(iov + e.n_out, e.n_in);
	uint32_t written = want_written < in ? want_written : (uint32_t)in;

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

static void fz_op(struct fz_ctx *c, const uint8_t op[4], unsigned qsize)
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
	case 2: { /* the driver makes a position available for a wrap */
		unsigned pos = (unsigned)(op[1] | op[2] << 8) % qsize;
		uint8_t *f = fz_gpa(c, c->desc_gpa + 16ull * pos + 14);
		uint16_t v = (uint16_t)(f[0] | f[1] << 8);

		v &= (uint16_t)~(VHU__PDESC_F_AVAIL | VHU__PDESC_F_USED);
		v |= (op[3] & 1) ? VHU__PDESC_F_AVAIL : VHU__PDESC_F_USED;
		if (op[3] & 2)
			v ^= VHU__PDESC_F_USED;
		f[0] = (uint8_t)v;
		f[1] = (uint8_t)(v >> 8);
		break;
	}
	case 3: { /* the driver rewrites a byte of the ring or its area */
		uint64_t off = (uint64_t)(op[1] | (op[3] >> 1) << 8);

		if (op[3] & 1)
			*fz_gpa(c, c->drv_gpa + off % VHU__PEVENT_BYTES) = op[2];
		else
			*fz_gpa(c, c->desc_gpa + off % (16ull * qsize)) = op[2];
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
	unsigned qsize = 1u + fz_u8(&in);
	uint8_t ops[FZ_MAX_OPS][4];
	unsigned nops;
	uint64_t dev_gpa;
	size_t db = vhu__packed_ring_bytes(qsize);

	c->cap = 1 + fz_u8(&in) % 64;
	c->iov = calloc(c->cap, sizeof(*c->iov));
	FZ_ASSERT(c->iov != NULL, "calloc");
	nops = fz_u8(&in) % (FZ_MAX_OPS + 1);
	uint32_t base = fz_u32(&in);
	fz_take(&in, ops, (size_t)nops * 4);

	FZ_ASSERT(db == 16u * qsize, "ring bytes %zu for %u", db, qsize);
	vhu__mem_init(&c->mem);
	fz_add_region(c, FZ_GPA_A, FZ_REGION_SIZE);
	fz_add_region(c, FZ_GPA_B, FZ_REGION_SIZE);
	switch ((flags >> 2) % 3) {
	case 0:
		c->desc_gpa = FZ_GPA_A;
		c->drv_gpa = c->desc_gpa + db;
		dev_gpa = c->drv_gpa + VHU__PEVENT_BYTES;
		break;
	case 1:
		c->desc_gpa = FZ_GPA_RINGS;
		c->drv_gpa = FZ_GPA_RINGS + 0x10000;
		dev_gpa = FZ_GPA_RINGS + 0x20000;
		fz_add_region(c, c->desc_gpa, db);
		fz_add_region(c, c->drv_gpa, VHU__PEVENT_BYTES);
		fz_add_region(c, dev_gpa, VHU__PEVENT_BYTES);
		break;
	default:
		dev_gpa = FZ_GPA_END - VHU__PEVENT_BYTES;
		c->drv_gpa = dev_gpa - VHU__PEVENT_BYTES;
		c->desc_gpa = (c->drv_gpa - db) & ~15ull;
	}

	fz_fill(c, &in, c->desc_gpa, UINT64_MAX);
	fz_fill(c, &in, 0, c->desc_gpa);

	vhu__vq_init(&c->vq, 0, &c->mem);
	c->vq.packed = true;
	c->vq.size = (uint16_t)qsize;
	c->vq.indirect = flags & 1;
	c->vq.event_idx = (flags & 2) != 0;
	c->vq.desc_uva = c->desc_gpa + FZ_UVA_OFF;
	c->vq.avail_uva = c->drv_gpa + FZ_UVA_OFF;
	c->vq.used_uva = dev_gpa + FZ_UVA_OFF;
	c->vq.addr_set = true;
	c->vq.enabled = true;
	c->vq.kick_set = true;
	c->vq.kick_fd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
	c->vq.call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	/* Both sides at the same position (nothing in flight). */
	uint32_t pos = (base & 0xffff) % qsize;
	uint32_t w = (base >> 16) & 1;
	uint32_t half = pos | w << 15;
	vhu__packed_set_base(&c->vq, half | half << 16);
	FZ_ASSERT(vhu__vq_map(&c->vq) == 0, "vq_map");
	c->vq.started = true;

	for (unsigned i = 0; i < nops; i++)
		fz_op(c, ops[i], qsize);

	for (unsigned k = 0; k < 2 * qsize + 8 && !c->broken; k++) {
		int r = fz_pop(c, false, 0xffff);

		if (r == 0 || r == -EIO)
			break;
	}
	while (c->n_held)
		fz_push_held(c, c->n_held - 1);
	vhu_vq_notify(&c->vq);
	if (!c->broken) {
		FZ_ASSERT(c->vq.inflight == 0, "inflight %u after all pushes",
			  c->vq.inflight);
		FZ_ASSERT(c->vq.used_idx == c->vq.last_avail_idx &&
			  c->vq.pk_used_wrap == c->vq.pk_avail_wrap,
			  "used %u/%d behind avail %u/%d", c->vq.used_idx,
			  c->vq.pk_used_wrap, c->vq.last_avail_idx,
			  c->vq.pk_avail_wrap);
	}

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
