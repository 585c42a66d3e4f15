/* SPDX-License-Identifier: MIT */
/*
 * The ring layer's device side where split and packed rings behave alike:
 * every case runs once over each layout (TEST_LAYOUTS), driven through
 * tests/lib/ring-any.h.  What only one layout has stays in test-virtq.c
 * (split) and test-virtq-packed.c (packed).
 */
#include <errno.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vhu/iov.h>

#include "internal.h"
#include "ring-any.h"
#include "ring-check.h"
#include "tap.h"

static struct ra ra;

static void after(void)
{
	ra_fini(&ra);
}

static void setup_opts(const struct ra_opts *o)
{
	after(); /* a failed case skips the after-each hook */
	int r = ra_init(&ra, tap_packed, o);
	if (r < 0)
		TAP_FAIL("ra_init: %d", r);
	vq = ra.vq;
}

static void setup(uint16_t size, bool indirect)
{
	struct ra_opts o = { .size = size, .indirect = indirect };
	setup_opts(&o);
}

static uint64_t buf(uint32_t len)
{
	return gmem_buf(ra.g, len);
}

static uint64_t buf_with(const char *s, uint32_t len)
{
	return gmem_buf_with(ra.g, s, len);
}

/* The next used element is id with len written. */
static void expect_used(uint32_t id, uint32_t len)
{
	uint32_t got_id, got_len = 99;
	CHECK_EQ(ra_get_used(&ra, &got_id, &got_len), 1);
	CHECK_EQ(got_id, id);
	CHECK_EQ(got_len, len);
}

TEST_LAYOUTS(empty_ring)
{
	setup(8, false);
	CHECK_EQ(pop(), 0);
	CHECK(!vhu_vq_has_work(vq));
	vhu_vq_notify(vq); /* nothing pushed: no interrupt */
	CHECK_EQ(ra_calls(&ra), 0);
	CHECK_EQ(vhu_vq_size(vq), 8);
	CHECK_EQ(vhu_vq_index(vq), 0);
}

TEST_LAYOUTS(request_round_trip)
{
	setup(8, false);
	uint64_t in = buf(16);
	struct ra_buf b[2] = { { buf_with("hello", 5), 5, false },
			       { in, 16, true } };
	uint16_t id = ra_add(&ra, b, 2);
	CHECK(vhu_vq_has_work(vq));
	expect_pop(id, 1, 1);
	CHECK(el.iov == iov);
	CHECK_EQ(iov[0].iov_len, 5);
	CHECK_MEM(iov[0].iov_base, "hello", 5);
	CHECK_EQ(iov[1].iov_len, 16);
	memcpy(iov[1].iov_base, "world", 5);
	CHECK_EQ(vq->inflight, 1);
	CHECK_EQ(pop(), 0);
	CHECK(!vhu_vq_has_work(vq));

	uint32_t uid, len;
	CHECK_EQ(ra_get_used(&ra, &uid, &len), 0);
	vhu_vq_push_notify(vq, &el, 5);
	CHECK_EQ(vq->inflight, 0);
	expect_used(id, 5);
	CHECK_MEM(gmem_ptr(ra.g, in), "world", 5);
	CHECK_EQ(ra_calls(&ra), 1);
	CHECK_EQ(ra_get_used(&ra, &uid, &len), 0);
	if (tap_packed) {
		/* the used descriptor took the head's position; the next
		 * one is written two positions on */
		CHECK_EQ(vq->used_idx, 2);
		CHECK_EQ(vq->last_avail_idx, 2);
	}
}

TEST_LAYOUTS(readable_then_writable_buffers)
{
	setup(16, false);
	struct ra_buf b[4] = {
		{ buf_with("head", 4), 4, false },
		{ buf_with("body!", 5), 5, false },
		{ buf(8), 8, true },
		{ buf(1), 1, true },
	};
	uint16_t id = ra_add(&ra, b, 4);
	expect_pop(id, 2, 2);
	char out[16];
	CHECK_EQ(vhu_iov_to_buf(el.iov, el.n_out, 0, out, sizeof(out)), 9);
	CHECK_MEM(out, "headbody!", 9);
	CHECK_EQ(vhu_iov_from_buf(el.iov + el.n_out, el.n_in, 0, "written!S", 9),
		 9);
	vhu_vq_push(vq, &el, 9);
	CHECK_MEM(gmem_ptr(ra.g, b[2].gpa), "written!", 8);
	CHECK_MEM(gmem_ptr(ra.g, b[3].gpa), "S", 1);
	expect_used(id, 9);
}

TEST_LAYOUTS(buffer_across_two_regions)
{
	struct ra_opts o = { .size = 8, .split_at = 1u << 20 };
	setup_opts(&o);
	CHECK_EQ(ra.g->mem.n, 2);
	uint64_t g = GMEM_GPA_BASE + (1u << 20) - 3;
	memcpy(gmem_ptr(ra.g, g), "abcdef", 6);
	struct ra_buf b = { g, 6, false };
	ra_add(&ra, &b, 1);
	CHECK_EQ(pop(), 1);
	CHECK_EQ(el.n_out, 2);
	CHECK_EQ(iov[0].iov_len, 3);
	CHECK_EQ(iov[1].iov_len, 3);
	/* Distinct mappings: the second iovec does not follow the first. */
	char out[6];
	CHECK_EQ(vhu_iov_to_buf(iov, 2, 0, out, 6), 6);
	CHECK_MEM(out, "abcdef", 6);
}

TEST_LAYOUTS(indirect_table)
{
	setup(8, true);
	struct ra_buf b[3] = {
		{ buf_with("req", 3), 3, false },
		{ buf(100), 100, true },
		{ buf(1), 1, true },
	};
	uint16_t id = ra_add_indirect(&ra, b, 3);
	expect_pop(id, 1, 2);
	CHECK_MEM(iov[0].iov_base, "req", 3);
	CHECK_EQ(iov[1].iov_len, 100);
	/* the device's own mapping of the driver's last buffer */
	*(char *)gmem_ptr(ra.g, b[2].gpa) = 'Z';
	CHECK_EQ(iov[2].iov_len, 1);
	CHECK_EQ(*(char *)iov[2].iov_base, 'Z');
	vhu_vq_push(vq, &el, 101);
	expect_used(id, 101);
}

/* A chain longer than the device's array completes empty (-E2BIG), and
 * the ring goes on. */
TEST_LAYOUTS(too_many_buffers_then_ring_works)
{
	setup(16, false);
	struct ra_buf b[5];
	for (int i = 0; i < 5; i++)
		b[i] = (struct ra_buf){ buf(4), 4, i >= 2 };
	uint16_t big = ra_add(&ra, b, 5);
	uint16_t small = ra_add(&ra, b, 2);
	CHECK_EQ(vhu_vq_pop(vq, &el, iov, 4), -E2BIG);
	CHECK(!vhu_vq_is_broken(vq));
	expect_used(big, 0);
	CHECK_EQ(vq->inflight, 0);
	CHECK_EQ(vhu_vq_pop(vq, &el, iov, 4), 1);
	CHECK_EQ(el.id, small);
	CHECK_EQ(el.n_out, 2);
	vhu_vq_push_notify(vq, &el, 0);
	expect_used(small, 0);
	/* the empty completion and this one share one interrupt */
	CHECK_EQ(ra_calls(&ra), 1);
}

/* VHU_VQ_POP_TRUNCATED: the device gets the status byte of a chain too
 * long for its array, answers it, and the driver is notified. */
TEST_LAYOUTS(too_many_buffers_truncated_to_status)
{
	setup(16, true);
	struct ra_buf b[6];
	for (int i = 0; i < 6; i++)
		b[i] = (struct ra_buf){ buf(4), 4, i >= 2 };
	uint8_t *last = gmem_ptr(ra.g, b[5].gpa);
	uint16_t big = ra_add(&ra, b, 6);
	uint16_t ind = ra_add_indirect(&ra, b, 6);
	uint16_t small = ra_add(&ra, b, 2);

	for (int k = 0; k < 2; k++) {
		memset(last, 0xaa, 4);
		expect_pop_truncated(4, k ? ind : big);
		/* the same memory, mapped twice: the last byte, only it */
		CHECK_EQ(last[2], 0xaa);
		vhu_vq_push_notify(vq, &el, 1);
		expect_used(el.id, 1);
		CHECK_EQ(last[3], 1);
		CHECK_EQ(ra_calls(&ra), 1);
	}
	CHECK_EQ(vq->inflight, 0);
	/* a chain that fits is not marked */
	CHECK_EQ(vhu_vq_pop_flags(vq, &el, iov, 4, VHU_VQ_POP_TRUNCATED), 1);
	CHECK_EQ(el.id, small);
	CHECK_EQ(el.flags, 0);
	CHECK_EQ(el.n_out, 2);

	/* no writable byte: nothing to answer in */
	setup(16, false);
	for (int i = 0; i < 6; i++)
		b[i] = (struct ra_buf){ buf(4), 4, false };
	ra_add(&ra, b, 6);
	CHECK_EQ(vhu_vq_pop_flags(vq, &el, iov, 4, VHU_VQ_POP_TRUNCATED), 1);
	CHECK_EQ(el.flags, VHU_VQ_ELEM_F_TRUNCATED);
	CHECK_EQ(el.n_in + el.n_out, 0);
	vhu_vq_push(vq, &el, 0);
	CHECK_EQ(vq->inflight, 0);
}

/* VHU_VQ_POP_PARTIAL: a chain too long for the device's array comes with
 * the buffers that fit, in order, flagged; the device answers in them and
 * the driver gets what it wrote (virtio-rng may not answer with 0 bytes). */
TEST_LAYOUTS(too_many_buffers_partial)
{
	setup(16, true);
	struct ra_buf b[6];
	static const char *const tag[6] = { "AAAA", "BBBB", "CCCC", "DDDD",
					    "EEEE", "FFFF" };
	for (int i = 0; i < 6; i++)
		b[i] = (struct ra_buf){ buf_with(tag[i], 4), 4, i >= 2 };
	uint16_t big = ra_add(&ra, b, 6);
	uint16_t ind = ra_add_indirect(&ra, b, 6);
	uint16_t small = ra_add(&ra, b, 3);
	uint16_t both = ra_add(&ra, b, 6);

	for (int k = 0; k < 2; k++) {
		CHECK_EQ(vhu_vq_pop_flags(vq, &el, iov, 4, VHU_VQ_POP_PARTIAL), 1);
		CHECK_EQ(el.id, k ? ind : big);
		CHECK_EQ(el.flags, VHU_VQ_ELEM_F_TRUNCATED);
		CHECK_EQ(el.n_out, 2);
		CHECK_EQ(el.n_in, 2);
		/* the first four buffers, in order (the guest memory is
		 * mapped twice: compare contents, not addresses) */
		for (int i = 0; i < 4; i++) {
			CHECK_EQ(el.iov[i].iov_len, 4);
			CHECK(!memcmp(el.iov[i].iov_base,
				      k ? (i < 2 ? tag[i] : "ZZZZ") : tag[i], 4));
		}
		CHECK_EQ(vhu_iov_memset(el.iov + 2, 2, 0, 'Z', 8), 8);
		vhu_vq_push_notify(vq, &el, 8);
		expect_used(el.id, 8);
		CHECK(!memcmp(gmem_ptr(ra.g, b[3].gpa), "ZZZZ", 4));
		CHECK(!memcmp(gmem_ptr(ra.g, b[4].gpa), "EEEE", 4));
	}
	CHECK_EQ(vq->inflight, 0);
	/* a chain that fits is not marked */
	CHECK_EQ(vhu_vq_pop_flags(vq, &el, iov, 4, VHU_VQ_POP_PARTIAL), 1);
	CHECK_EQ(el.id, small);
	CHECK_EQ(el.flags, 0);
	CHECK_EQ(el.n_out, 2);
	CHECK_EQ(el.n_in, 1);
	vhu_vq_push(vq, &el, 0);
	expect_used(small, 0);
	/* with both flags, PARTIAL wins */
	CHECK_EQ(vhu_vq_pop_flags(vq, &el, iov, 4,
				  VHU_VQ_POP_PARTIAL | VHU_VQ_POP_TRUNCATED), 1);
	CHECK_EQ(el.id, both);
	CHECK_EQ(el.n_out + el.n_in, 4);
	vhu_vq_push(vq, &el, 0);
	CHECK_EQ(vq->inflight, 0);

	/* cut inside the readable part: no writable buffer handed over */
	setup(16, false);
	for (int i = 0; i < 6; i++)
		b[i] = (struct ra_buf){ buf(4), 4, i == 5 };
	ra_add(&ra, b, 6);
	CHECK_EQ(vhu_vq_pop_flags(vq, &el, iov, 4, VHU_VQ_POP_PARTIAL), 1);
	CHECK_EQ(el.flags, VHU_VQ_ELEM_F_TRUNCATED);
	CHECK_EQ(el.n_out, 4);
	CHECK_EQ(el.n_in, 0);
	vhu_vq_push(vq, &el, 0);
	CHECK_EQ(vq->inflight, 0);
	CHECK(!vhu_vq_is_broken(vq));
}

/* Buffers whose address and length overflow, or that run off guest
 * memory, break the queue; nothing is pushed for them. */
TEST_LAYOUTS(address_overflow_and_unmapped_break)
{
	setup(8, false);
	struct ra_buf o = { UINT64_MAX - 4, 16, false };
	ra_add(&ra, &o, 1);
	expect_broken();

	setup(8, false);
	struct ra_buf u[2] = {
		{ buf(4), 4, false },
		{ GMEM_GPA_BASE + ra.g->size - 2, 4, true }, /* runs off */
	};
	ra_add(&ra, u, 2);
	expect_broken();
	uint32_t id, len;
	CHECK_EQ(ra_get_used(&ra, &id, &len), 0);

	setup(8, false);
	struct ra_buf n = { 0x1000, 100, false }; /* below guest memory */
	ra_add(&ra, &n, 1);
	expect_broken();
}

/* A readable buffer after a writable one (virtio 1.2, 2.7.4.2 and
 * 2.8.4.2) breaks the queue, also inside an indirect table. */
TEST_LAYOUTS(readable_after_writable_breaks)
{
	setup(8, true);
	struct ra_buf b[2] = { { buf(4), 4, true }, { buf(4), 4, false } };
	ra_add(&ra, b, 2);
	expect_broken();

	setup(8, true);
	b[0].gpa = buf(4);
	b[1].gpa = buf(4);
	ra_add_indirect(&ra, b, 2);
	expect_broken();
}

/* A broken queue signals its err fd once, and writes nothing more into
 * the guest's used ring. */
TEST_LAYOUTS(broken_queue_reports_on_err_fd)
{
	setup(8, false);
	struct ra_buf ok = { buf(4), 4, true };
	ra_add(&ra, &ok, 1);
	CHECK_EQ(pop(), 1);
	struct vhu_vq_elem held = el;
	vq->err_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	CHECK(vq->err_fd >= 0);
	struct ra_buf bad = { 0x1000, 8, false };
	ra_add(&ra, &bad, 1);
	expect_broken();
	uint64_t v = 0;
	CHECK_EQ(read(vq->err_fd, &v, 8), 8);
	CHECK_EQ(v, 1);
	vhu_vq_push_notify(vq, &held, 4);
	uint32_t id, len;
	CHECK_EQ(ra_get_used(&ra, &id, &len), 0);
	CHECK_EQ(ra_calls(&ra), 0);
	CHECK(!vhu_vq_enable_notify(vq));
}

int main(void)
{
	tap_after_each = after;
	return tap_run();
}
