/* SPDX-License-Identifier: MIT */
/*
 * The IOTLB (src/iotlb.c): updates, overlaps, partial invalidation,
 * permissions, ranges at the top of the address space, a full table; and
 * the ring layer translating through it (ACCESS_PLATFORM): rings and
 * buffers given as I/O virtual addresses, split and packed.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <vhu/iov.h>

#include "internal.h"
#include "ring-any.h"
#include "ring-check.h"
#include "tap.h"

static struct vhu__iotlb t;
static struct ra ra;

static void before(void)
{
	if (vhu__iotlb_init(&t) < 0)
		TAP_FAIL("iotlb init");
}

static void after(void)
{
	ra_fini(&ra);
	vhu__iotlb_destroy(&t);
}

/* Lookup iova for perm: expect rc, and with 0 the uaddr and length. */
static void expect(uint64_t iova, uint8_t perm, int rc, uint64_t uaddr,
		   uint64_t len)
{
	uint64_t u = 0, l = 0;
	CHECK_EQ(vhu__iotlb_lookup(&t, iova, perm, &u, &l), rc);
	if (rc == 0) {
		CHECK_EQ(u, uaddr);
		CHECK_EQ(l, len);
	}
}

#define RO VHU_IOTLB_PERM_RO
#define WO VHU_IOTLB_PERM_WO
#define RW VHU_IOTLB_PERM_RW

TEST(update_lookup_miss)
{
	expect(0x1000, RO, -ENOENT, 0, 0);
	CHECK_EQ(vhu__iotlb_update(&t, 0x1000, 0x2000, 0x7000000, RW), 0);
	expect(0x1000, RO, 0, 0x7000000, 0x2000);
	expect(0x2ff0, WO, 0, 0x7001ff0, 0x10);
	expect(0x0fff, RO, -ENOENT, 0, 0);
	expect(0x3000, RO, -ENOENT, 0, 0);
	CHECK_EQ(vhu__iotlb_count(&t), 1);
}

TEST(update_replaces_what_it_overlaps)
{
	CHECK_EQ(vhu__iotlb_update(&t, 0x1000, 0x3000, 0x10000, RW), 0);
	/* the middle page now maps elsewhere, read-only */
	CHECK_EQ(vhu__iotlb_update(&t, 0x2000, 0x1000, 0x90000, RO), 0);
	CHECK_EQ(vhu__iotlb_count(&t), 3);
	expect(0x1800, RW, 0, 0x10800, 0x800);
	expect(0x2800, RO, 0, 0x90800, 0x800);
	expect(0x2800, WO, -EACCES, 0, 0);
	expect(0x3000, RW, 0, 0x12000, 0x1000);
	/* one update over all of them and more */
	CHECK_EQ(vhu__iotlb_update(&t, 0x0, 0x10000, 0x50000, WO), 0);
	CHECK_EQ(vhu__iotlb_count(&t), 1);
	expect(0x2800, WO, 0, 0x52800, 0xd800);
}

TEST(partial_invalidation)
{
	CHECK_EQ(vhu__iotlb_update(&t, 0x10000, 0x10000, 0x100000, RW), 0);
	/* head */
	CHECK_EQ(vhu__iotlb_invalidate(&t, 0xf000, 0x2000), 0);
	expect(0x10fff, RO, -ENOENT, 0, 0);
	expect(0x11000, RO, 0, 0x101000, 0xf000);
	/* tail */
	CHECK_EQ(vhu__iotlb_invalidate(&t, 0x1f000, 0x4000), 0);
	expect(0x1f000, RO, -ENOENT, 0, 0);
	expect(0x1e000, RO, 0, 0x10e000, 0x1000);
	/* middle: the entry splits in two */
	CHECK_EQ(vhu__iotlb_invalidate(&t, 0x14000, 0x1000), 0);
	CHECK_EQ(vhu__iotlb_count(&t), 2);
	expect(0x13fff, RO, 0, 0x103fff, 1);
	expect(0x14000, RO, -ENOENT, 0, 0);
	expect(0x14fff, RO, -ENOENT, 0, 0);
	expect(0x15000, RW, 0, 0x105000, 0xa000);
	/* across several entries at once */
	CHECK_EQ(vhu__iotlb_update(&t, 0x30000, 0x1000, 0x200000, RO), 0);
	CHECK_EQ(vhu__iotlb_invalidate(&t, 0x12000, 0x1f000), 0);
	CHECK_EQ(vhu__iotlb_count(&t), 1);
	expect(0x11000, RO, 0, 0x101000, 0x1000);
	expect(0x30000, RO, -ENOENT, 0, 0);
	/* nothing there: nothing changes */
	CHECK_EQ(vhu__iotlb_invalidate(&t, 0x900000, 0x1000), 0);
	CHECK_EQ(vhu__iotlb_count(&t), 1);
}

TEST(permissions)
{
	CHECK_EQ(vhu__iotlb_update(&t, 0x1000, 0x1000, 0x1000, RO), 0);
	CHECK_EQ(vhu__iotlb_update(&t, 0x2000, 0x1000, 0x2000, WO), 0);
	CHECK_EQ(vhu__iotlb_update(&t, 0x3000, 0x1000, 0x3000, RW), 0);
	expect(0x1000, RO, 0, 0x1000, 0x1000);
	expect(0x1000, WO, -EACCES, 0, 0);
	expect(0x1000, RW, -EACCES, 0, 0);
	expect(0x2000, RO, -EACCES, 0, 0);
	expect(0x2000, WO, 0, 0x2000, 0x1000);
	expect(0x3000, RO, 0, 0x3000, 0x1000);
	expect(0x3000, WO, 0, 0x3000, 0x1000);
	/* only RO, WO and RW exist */
	CHECK_EQ(vhu__iotlb_update(&t, 0x5000, 0x1000, 0x5000, 0), -EINVAL);
	CHECK_EQ(vhu__iotlb_update(&t, 0x5000, 0x1000, 0x5000, 4), -EINVAL);
	CHECK_EQ(vhu__iotlb_count(&t), 3);
}

TEST(ranges_that_wrap)
{
	const uint64_t top = UINT64_MAX;
	CHECK_EQ(vhu__iotlb_update(&t, 0x1000, 0, 0x1000, RW), -EINVAL);
	CHECK_EQ(vhu__iotlb_update(&t, top - 0xfff, 0x1001, 0x1000, RW),
		 -EINVAL);
	CHECK_EQ(vhu__iotlb_update(&t, 0x1000, 0x1000, top - 0xffe, RW),
		 -EINVAL);
	CHECK_EQ(vhu__iotlb_count(&t), 0);
	/* the last page of the space is fine */
	CHECK_EQ(vhu__iotlb_update(&t, top - 0xfff, 0x1000, 0x40000, RW), 0);
	expect(top, RO, 0, 0x40fff, 1);
	/* everything but the last byte, in one entry */
	CHECK_EQ(vhu__iotlb_update(&t, 0, top, 0, RO), 0);
	CHECK_EQ(vhu__iotlb_count(&t), 2);
	expect(0, RO, 0, 0, top);
	expect(top, RO, 0, 0x40fff, 1);
	/* an invalidation whose end wraps runs to the top */
	CHECK_EQ(vhu__iotlb_invalidate(&t, 0x8000, top), 0);
	CHECK_EQ(vhu__iotlb_count(&t), 1);
	expect(0x7fff, RO, 0, 0x7fff, 1);
	expect(top, RO, -ENOENT, 0, 0);
	/* size 0 too */
	CHECK_EQ(vhu__iotlb_invalidate(&t, 0, 0), 0);
	CHECK_EQ(vhu__iotlb_count(&t), 0);
}

TEST(many_entries_and_a_full_table)
{
	/* every other page, inserted from the top down */
	for (unsigned i = VHU__IOTLB_MAX; i-- > 0;)
		CHECK_EQ(vhu__iotlb_update(&t, (uint64_t)i * 0x2000, 0x1000,
					   0x100000000ull + i * 0x1000ull, RW),
			 0);
	CHECK_EQ(vhu__iotlb_count(&t), VHU__IOTLB_MAX);
	for (unsigned i = 0; i < VHU__IOTLB_MAX; i++) {
		uint64_t u, l;
		CHECK_EQ(vhu__iotlb_lookup(&t, (uint64_t)i * 0x2000 + 5, RO,
					   &u, &l), 0);
		CHECK_EQ(u, 0x100000000ull + i * 0x1000ull + 5);
		CHECK_EQ(vhu__iotlb_lookup(&t, (uint64_t)i * 0x2000 + 0x1000,
					   RO, &u, &l), -ENOENT);
	}
	/* full: a split drops the whole entry (never keeps the part that
	 * was invalidated) */
	CHECK_EQ(vhu__iotlb_invalidate(&t, 0x2100, 0x100), 0);
	CHECK_EQ(vhu__iotlb_count(&t), VHU__IOTLB_MAX - 1);
	expect(0x2100, RO, -ENOENT, 0, 0);
	expect(0x2000, RO, -ENOENT, 0, 0);
	expect(0x4000, RO, 0, 0x100002000, 0x1000);
	/* one more fits; then a full table is emptied for the next */
	CHECK_EQ(vhu__iotlb_update(&t, 0x2000, 0x1000, 0x7000, RW), 0);
	CHECK_EQ(vhu__iotlb_count(&t), VHU__IOTLB_MAX);
	CHECK_EQ(vhu__iotlb_update(&t, 0x10000000, 0x1000, 0x9000, RW), 0);
	CHECK_EQ(vhu__iotlb_count(&t), 1);
	expect(0x4000, RO, -ENOENT, 0, 0);
	expect(0x10000000, WO, 0, 0x9000, 0x1000);
	CHECK_EQ(vhu__iotlb_invalidate(&t, 0, 0), 0);
	CHECK_EQ(vhu__iotlb_count(&t), 0);
}

/* ------------------------------------------------ the ring, translated */

/* Buffers are given to the device at IOVA gpa + BUF_IOVA; the rings at
 * IOVA gpa, page by page (as QEMU maps them), so a translation that
 * skipped the IOTLB would not find the buffers. */
#define BUF_IOVA 0x100000000000ull
#define PAGE 0x1000ull

static uint64_t to_iova(uint64_t uva)
{
	return uva - GMEM_UVA_BASE + GMEM_GPA_BASE;
}

/* A ring whose addresses are IOVAs; buffers mapped with buf_perm. */
static void setup_iommu(uint8_t buf_perm)
{
	ra_fini(&ra);
	struct ra_opts o = { .size = 8, .indirect = true };
	if (ra_init(&ra, tap_packed, &o) < 0)
		TAP_FAIL("ra_init");
	vq = ra.vq;
	struct gmem *g = ra.g;
	for (uint64_t off = 0; off < g->size; off += PAGE)
		CHECK_EQ(vhu__iotlb_update(&t, GMEM_GPA_BASE + off, PAGE,
					   gmem_uva(GMEM_GPA_BASE + off), RW),
			 0);
	CHECK_EQ(vhu__iotlb_update(&t, GMEM_GPA_BASE + BUF_IOVA, g->size,
				   gmem_uva(GMEM_GPA_BASE), buf_perm), 0);
	vq->iotlb = &t;
	vq->desc_uva = to_iova(vq->desc_uva);
	vq->avail_uva = to_iova(vq->avail_uva);
	vq->used_uva = to_iova(vq->used_uva);
	CHECK_EQ(vhu__vq_map(vq), 0);
}

TEST_LAYOUTS(iova_round_trip)
{
	setup_iommu(RW);
	uint64_t out = gmem_buf_with(ra.g, "hello", 5);
	uint64_t in = gmem_buf(ra.g, 16);
	struct ra_buf b[2] = { { out + BUF_IOVA, 5, false },
			       { in + BUF_IOVA, 16, true } };
	uint16_t id = ra_add(&ra, b, 2);
	expect_pop(id, 1, 1);
	CHECK_MEM(iov[0].iov_base, "hello", 5);
	CHECK_EQ(iov[1].iov_len, 16);
	memcpy(iov[1].iov_base, "world", 5);
	vhu_vq_push_notify(vq, &el, 5);
	uint32_t uid, len;
	CHECK_EQ(ra_get_used(&ra, &uid, &len), 1);
	CHECK_EQ(uid, id);
	CHECK_EQ(len, 5);
	CHECK_MEM(gmem_ptr(ra.g, in), "world", 5);
}

TEST_LAYOUTS(iova_indirect_table)
{
	setup_iommu(RW);
	uint64_t out = gmem_buf_with(ra.g, "abc", 3);
	uint64_t in = gmem_buf(ra.g, 8);
	struct ra_buf b[2] = { { out + BUF_IOVA, 3, false },
			       { in + BUF_IOVA, 8, true } };
	/* the table itself sits at its gpa, which is also its IOVA here */
	uint16_t id = ra_add_indirect(&ra, b, 2);
	expect_pop(id, 1, 1);
	CHECK_MEM(iov[0].iov_base, "abc", 3);
	vhu_vq_push(vq, &el, 0);
	/* a table whose IOVA is not in the IOTLB is not read: the queue
	 * waits for it */
	uint64_t from = ra.g->next;
	id = ra_add_indirect(&ra, b, 2);
	uint64_t to = ra.g->next;
	CHECK(to > from);
	CHECK_EQ(vhu__iotlb_invalidate(&t, from, to - from), 0);
	CHECK_EQ(pop(), 0);
	CHECK(!vhu_vq_is_broken(vq));
	uint64_t miss;
	uint8_t perm;
	CHECK(vhu__vq_iotlb_take_miss(vq, &miss, &perm));
	CHECK(miss >= from && miss < to);
	CHECK_EQ(perm, RO);
	CHECK_EQ(vhu__iotlb_update(&t, from & ~(PAGE - 1), PAGE,
				   gmem_uva(from & ~(PAGE - 1)), RO), 0);
	CHECK(vhu__vq_iotlb_resume(vq));
	expect_pop(id, 1, 1);
	CHECK_MEM(iov[0].iov_base, "abc", 3);
}

TEST_LAYOUTS(missing_translation_waits_then_pops)
{
	setup_iommu(RW);
	int kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int miss_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	CHECK(kick >= 0 && miss_fd >= 0);
	vq->kick_fd = kick;
	vq->iotlb_miss_fd = miss_fd;
	uint64_t out = gmem_buf_with(ra.g, "first", 5);
	uint64_t in = gmem_alloc(ra.g, 8, PAGE); /* a page of its own */
	/* the writable buffer's page is not mapped */
	uint64_t hole = (in + BUF_IOVA) & ~(PAGE - 1);
	CHECK_EQ(vhu__iotlb_invalidate(&t, hole, PAGE), 0);
	struct ra_buf b[2] = { { out + BUF_IOVA, 5, false },
			       { in + BUF_IOVA, 8, true } };
	uint16_t id = ra_add(&ra, b, 2);
	uint16_t last_avail = vq->last_avail_idx;
	CHECK_EQ(pop(), 0);
	CHECK(!vhu_vq_is_broken(vq));
	/* nothing taken, nothing to do until kicked, the miss told once */
	CHECK_EQ(vq->last_avail_idx, last_avail);
	CHECK_EQ(vq->inflight, 0);
	CHECK(!vhu_vq_has_work(vq));
	CHECK(!vhu_vq_enable_notify(vq));
	uint64_t v = 0;
	CHECK_EQ(read(miss_fd, &v, 8), 8);
	CHECK_EQ(v, 1);
	uint64_t miss;
	uint8_t perm;
	CHECK(vhu__vq_iotlb_take_miss(vq, &miss, &perm));
	CHECK_EQ(miss, in + BUF_IOVA);
	CHECK_EQ(perm, WO);
	CHECK(!vhu__vq_iotlb_take_miss(vq, &miss, &perm));
	/* a second pop (a driver kick) reports the same miss no more */
	CHECK_EQ(pop(), 0);
	CHECK_EQ(read(miss_fd, &v, 8), -1);
	CHECK(!vhu__vq_iotlb_take_miss(vq, &miss, &perm));
	/* the front-end's answer: the queue is kicked, the request pops */
	CHECK_EQ(vhu__iotlb_update(&t, hole, PAGE,
				   gmem_uva(hole - BUF_IOVA), RW), 0);
	CHECK(vhu__vq_iotlb_resume(vq));
	CHECK(!vhu__vq_iotlb_resume(vq));
	CHECK_EQ(read(kick, &v, 8), 8);
	CHECK(vhu_vq_has_work(vq));
	expect_pop(id, 1, 1);
	CHECK_MEM(iov[0].iov_base, "first", 5);
	memcpy(iov[1].iov_base, "answered", 8);
	vhu_vq_push(vq, &el, 8);
	CHECK_MEM(gmem_ptr(ra.g, in), "answered", 8);
	vq->kick_fd = -1;
	close(kick);
	close(miss_fd);
}

TEST_LAYOUTS(update_racing_the_wait_kicks_the_queue)
{
	/* The update lands between the pop's miss and its wait: the queue
	 * sees it on its second look and kicks itself. */
	setup_iommu(RW);
	int kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	CHECK(kick >= 0);
	vq->kick_fd = kick;
	uint64_t in = gmem_buf(ra.g, 8);
	vhu__vq_iotlb_wait(vq, in + BUF_IOVA, WO); /* mapped already */
	uint64_t v = 0;
	CHECK_EQ(read(kick, &v, 8), 8);
	CHECK(!vhu__vq_iotlb_resume(vq)); /* no longer waiting */
	vq->kick_fd = -1;
	close(kick);
}

TEST_LAYOUTS(write_into_read_only_mapping_refused)
{
	setup_iommu(RO);
	uint64_t in = gmem_buf_with(ra.g, "keep", 4);
	struct ra_buf b[1] = { { in + BUF_IOVA, 4, true } };
	ra_add(&ra, b, 1);
	expect_broken();
	CHECK_MEM(gmem_ptr(ra.g, in), "keep", 4);
}

TEST_LAYOUTS(read_from_write_only_mapping_refused)
{
	setup_iommu(WO);
	uint64_t out = gmem_buf_with(ra.g, "secret", 6);
	struct ra_buf b[1] = { { out + BUF_IOVA, 6, false } };
	ra_add(&ra, b, 1);
	expect_broken();
}

TEST_LAYOUTS(rings_need_iotlb_entries)
{
	setup_iommu(RW);
	uint64_t used = vq->used_uva;
	CHECK_EQ(vhu__iotlb_invalidate(&t, used, 1), 0);
	CHECK_EQ(vhu__vq_map(vq), -EFAULT);
	/* back, but read-only: the device must write its ring */
	CHECK_EQ(vhu__iotlb_update(&t, used & ~(PAGE - 1), PAGE,
				   gmem_uva(used & ~(PAGE - 1)), RO), 0);
	CHECK_EQ(vhu__vq_map(vq), -EFAULT);
	CHECK_EQ(vhu__iotlb_update(&t, used & ~(PAGE - 1), PAGE,
				   gmem_uva(used & ~(PAGE - 1)), RW), 0);
	CHECK_EQ(vhu__vq_map(vq), 0);
}

TEST(dirty_log_is_guest_physical)
{
	/* With an IOTLB the front-end's log_guest_addr is an IOVA (QEMU
	 * sends the used ring's): the used ring is logged by where it is in
	 * guest-physical memory, and so are the buffers. */
	setup_iommu(RW);
	uint64_t bytes = vhu__log_bytes_for(GMEM_GPA_BASE + ra.g->size);
	uint8_t *bits = calloc(1, bytes);
	CHECK(bits != NULL);
	struct vhu__dirty_log dlog = { .bits = bits, .size = bytes,
				       .signal_fd = -1 };
	vq->log = &dlog;
	vq->log_used = true;
	vq->log_gpa = 0x7000000000ull; /* an IOVA, far outside the log */
	uint64_t in = gmem_alloc(ra.g, 8, PAGE);
	struct ra_buf b[1] = { { in + BUF_IOVA, 8, true } };
	uint16_t id = ra_add(&ra, b, 1);
	expect_pop(id, 0, 1);
	vhu_vq_push(vq, &el, 8);
	CHECK(!vhu_vq_is_broken(vq));
	uint64_t used_page = ra.rd.used_gpa >> 12, buf_page = in >> 12;
	CHECK((bits[used_page / 8] >> (used_page % 8)) & 1);
	CHECK((bits[buf_page / 8] >> (buf_page % 8)) & 1);
	vq->log = NULL;
	free(bits);
}

int main(void)
{
	tap_before_each = before;
	tap_after_each = after;
	return tap_run();
}
