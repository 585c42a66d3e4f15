/* SPDX-License-Identifier: MIT */
/* Packed virtqueue, device side, driven by the test packed-ring driver. */
#include <endian.h>
#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <vhu/iov.h>

#include "driver.h"
#include "internal.h"
#include "ring-driver-packed.h"
#include "ring-check.h"
#include "tap.h"

static struct pd pd;

static void after(void)
{
	if (pd.g.host)
		pd_fini(&pd);
}

static void setup_full(uint16_t size, uint16_t start, bool wrap0,
		       bool event_idx, bool indirect, uint64_t split_at)
{
	after();
	struct pd_opts o = { .size = size, .start_pos = start,
			     .start_wrap0 = wrap0, .event_idx = event_idx,
			     .indirect = indirect, .split_at = split_at };
	int r = pd_init(&pd, &o);
	if (r < 0)
		TAP_FAIL("pd_init: %d", r);
	vq = &pd.vq;
}

static void setup(uint16_t size, bool event_idx, bool indirect)
{
	setup_full(size, 0, false, event_idx, indirect, 0);
}

static uint64_t buf_with(const char *s, uint32_t len)
{
	return gmem_buf_with(&pd.g, s, len);
}

/* Make a chain available, pop it, push it back with a notify. */
static void serve(const struct pd_buf *b, unsigned n, uint16_t id)
{
	pd_add(&pd, b, n, id);
	CHECK_EQ(pop(), 1);
	vhu_vq_push_notify(vq, &el, 1);
}

/* Push one element, notify: the calls the driver got. */
static uint64_t push_calls(const struct vhu_vq_elem *e, uint32_t written)
{
	vhu_vq_push(vq, e, written);
	vhu_vq_notify(vq);
	return pd_calls(&pd);
}

/* ---- normal operation ---- */

TEST(readable_and_writable_chain_skips_empty_descriptors)
{
	setup(16, false, false);
	uint64_t a = buf_with("ab", 2), c = buf_with("cd", 2);
	uint64_t w1 = gmem_buf(&pd.g, 8), w2 = gmem_buf(&pd.g, 8);
	struct pd_buf b[5] = {
		{ a, 2, false }, { a, 0, false }, { c, 2, false },
		{ w1, 8, true }, { w2, 8, true },
	};
	pd_add(&pd, b, 5, 3);
	CHECK_EQ(pop(), 1);
	CHECK_EQ(el.n_out, 2);
	CHECK_EQ(el.n_in, 2);
	char tmp[4];
	CHECK_EQ(vhu_iov_to_buf(iov, el.n_out, 0, tmp, 4), 4);
	CHECK_MEM(tmp, "abcd", 4);
	vhu_vq_push(vq, &el, 16);
	uint16_t id;
	uint32_t len;
	CHECK_EQ(pd_get_used(&pd, &id, &len), 1);
	CHECK_EQ(id, 3);
	CHECK_EQ(len, 16);
	CHECK_EQ(vq->used_idx, 5);
}

TEST(indirect_table_takes_one_position)
{
	setup(4, false, true);
	uint64_t a = buf_with("xyz", 3), w = gmem_buf(&pd.g, 32);
	struct pd_buf b[3] = { { a, 3, false }, { w, 16, true },
			       { w + 16, 16, true } };
	pd_add_indirect(&pd, b, 3, 2);
	struct pd_buf one = { a, 3, false };
	pd_add(&pd, &one, 1, 0);
	expect_pop(2, 1, 2);
	CHECK_MEM(iov[0].iov_base, "xyz", 3);
	CHECK_EQ(vq->last_avail_idx, 1);
	CHECK_EQ(pop(), 1);
	CHECK_EQ(el.id, 0);
	vhu_vq_push(vq, &el, 0);
	struct vhu_vq_elem first = { .id = 2 };
	vhu_vq_push(vq, &first, 32);
	uint16_t id;
	uint32_t len;
	CHECK_EQ(pd_get_used(&pd, &id, &len), 1);
	CHECK_EQ(id, 0);
	CHECK_EQ(pd_get_used(&pd, &id, &len), 1);
	CHECK_EQ(id, 2);
	CHECK_EQ(len, 32);
	CHECK_EQ(pd_get_used(&pd, &id, &len), 0);
}

TEST(out_of_order_completion)
{
	setup(10, false, false);
	uint64_t g = gmem_buf(&pd.g, 64);
	struct pd_buf b[3] = { { g, 8, false }, { g + 8, 8, true },
			       { g + 16, 8, true } };
	pd_add(&pd, b, 1, 5);
	pd_add(&pd, b, 2, 2);
	pd_add(&pd, b, 3, 7);
	struct vhu_vq_elem e[3];
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(pop(), 1);
		e[i] = el;
	}
	CHECK_EQ(e[0].id, 5);
	CHECK_EQ(e[1].id, 2);
	CHECK_EQ(e[2].id, 7);
	CHECK_EQ(vq->inflight, 3);
	vhu_vq_push(vq, &e[2], 16);
	vhu_vq_push(vq, &e[0], 0);
	vhu_vq_push(vq, &e[1], 8);
	uint16_t id;
	uint32_t len;
	CHECK_EQ(pd_get_used(&pd, &id, &len), 1);
	CHECK_EQ(id, 7);
	CHECK_EQ(len, 16);
	CHECK_EQ(pd_get_used(&pd, &id, &len), 1);
	CHECK_EQ(id, 5);
	CHECK_EQ(pd_get_used(&pd, &id, &len), 1);
	CHECK_EQ(id, 2);
	CHECK_EQ(len, 8);
	CHECK_EQ(pd_get_used(&pd, &id, &len), 0);
	CHECK_EQ(vq->used_idx, 6);
	/* A second push of the same element is refused: nothing written. */
	vhu_vq_push(vq, &e[1], 8);
	CHECK_EQ(pd_get_used(&pd, &id, &len), 0);
	CHECK_EQ(vq->used_idx, 6);
	CHECK(!vhu_vq_is_broken(vq));
}

/* Many laps of a ring whose size is not a power of two, with chains that
 * straddle the end and two buffers in flight completed in reverse. */
TEST(wrap_counters_over_many_laps)
{
	setup(7, false, true);
	uint64_t g = gmem_buf(&pd.g, 4096);
	unsigned avail_flips = 0, used_flips = 0;
	bool aw = vq->pk_avail_wrap, uw = vq->pk_used_wrap;
	for (unsigned it = 0; it < 60; it++) {
		unsigned n1 = 1 + it % 3, n2 = 1 + (it / 3) % 3;
		struct pd_buf b[3];
		for (unsigned i = 0; i < 3; i++)
			b[i] = (struct pd_buf){ g + 64 * i, 16, i > 0 };
		pd_add(&pd, b, n1, (uint16_t)(it % 7));
		if (it % 4 == 3)
			pd_add_indirect(&pd, b, n2, (uint16_t)((it + 3) % 7));
		else
			pd_add(&pd, b, n2, (uint16_t)((it + 3) % 7));
		struct vhu_vq_elem e1, e2;
		CHECK_EQ(pop(), 1);
		e1 = el;
		CHECK_EQ(el.n_out + el.n_in, n1);
		CHECK_EQ(pop(), 1);
		e2 = el;
		CHECK_EQ(el.n_out + el.n_in, n2);
		CHECK_EQ(pop(), 0);
		vhu_vq_push(vq, &e2, 1);
		vhu_vq_push(vq, &e1, 2);
		uint16_t id;
		uint32_t len;
		CHECK_EQ(pd_get_used(&pd, &id, &len), 1);
		CHECK_EQ(id, e2.id);
		CHECK_EQ(len, 1);
		CHECK_EQ(pd_get_used(&pd, &id, &len), 1);
		CHECK_EQ(id, e1.id);
		CHECK_EQ(len, 2);
		CHECK_EQ(pd_get_used(&pd, &id, &len), 0);
		if (vq->pk_avail_wrap != aw)
			avail_flips++;
		if (vq->pk_used_wrap != uw)
			used_flips++;
		aw = vq->pk_avail_wrap;
		uw = vq->pk_used_wrap;
		CHECK_EQ(vq->last_avail_idx, pd.avail_pos);
		CHECK_EQ(vq->used_idx, pd.used_pos);
		CHECK_EQ(vq->pk_used_wrap, pd.used_wrap);
	}
	CHECK(avail_flips >= 10);
	CHECK(used_flips >= 10);
	CHECK(!vhu_vq_is_broken(vq));
}

TEST(start_mid_ring_with_wrap_counter_zero)
{
	setup_full(5, 3, true, false, false, 0);
	uint64_t g = gmem_buf(&pd.g, 64);
	struct pd_buf b[3] = { { g, 8, false }, { g, 8, false },
			       { g, 8, true } };
	pd_add(&pd, b, 3, 4); /* positions 3, 4, 0 */
	CHECK_EQ(pop(), 1);
	CHECK_EQ(el.n_out, 2);
	CHECK_EQ(vq->last_avail_idx, 1);
	CHECK(vq->pk_avail_wrap);
	vhu_vq_push(vq, &el, 8);
	uint16_t id;
	uint32_t len;
	CHECK_EQ(pd_get_used(&pd, &id, &len), 1);
	CHECK_EQ(id, 4);
	CHECK(vq->pk_used_wrap);
	CHECK_EQ(vhu__packed_get_base(vq), 1u | 1u << 15 | 1u << 16 | 1u << 31);
}

/* ---- notifications ---- */

TEST(used_notification_enable_disable)
{
	setup(8, false, false);
	uint64_t g = gmem_buf(&pd.g, 16);
	struct pd_buf b = { g, 8, true };
	vhu_vq_notify(vq); /* nothing pushed */
	CHECK_EQ(pd_calls(&pd), 0);
	serve(&b, 1, 0);
	CHECK_EQ(pd_calls(&pd), 1);
	vhu_vq_notify(vq); /* already signalled */
	CHECK_EQ(pd_calls(&pd), 0);

	pd_set_driver_event(&pd, VHU__PEVENT_DISABLE, 0, false);
	serve(&b, 1, 1);
	CHECK_EQ(pd_calls(&pd), 0);

	/* DESC without EVENT_IDX is not valid: the device notifies. */
	pd_set_driver_event(&pd, VHU__PEVENT_DESC, 7, false);
	serve(&b, 1, 2);
	CHECK_EQ(pd_calls(&pd), 1);
}

TEST(used_notification_desc_event)
{
	setup(4, true, false);
	uint64_t g = gmem_buf(&pd.g, 16);
	struct pd_buf b = { g, 8, true };
	/* Ask for the used descriptor at position 2, wrap 1. */
	pd_set_driver_event(&pd, VHU__PEVENT_DESC, 2, true);
	for (int i = 0; i < 2; i++) {
		serve(&b, 1, (uint16_t)i); /* positions 0, 1 */
	}
	CHECK_EQ(pd_calls(&pd), 0);
	serve(&b, 1, 2); /* position 2 */
	CHECK_EQ(pd_calls(&pd), 1);
	serve(&b, 1, 3); /* position 3: past it */
	CHECK_EQ(pd_calls(&pd), 0);

	/* Next lap: position 1 with wrap 0; two pushes batched before one
	 * notify cover [0, 2). */
	pd_set_driver_event(&pd, VHU__PEVENT_DESC, 1, false);
	struct vhu_vq_elem e[2];
	for (int i = 0; i < 2; i++) {
		pd_add(&pd, &b, 1, (uint16_t)i);
		CHECK_EQ(pop(), 1);
		e[i] = el;
	}
	vhu_vq_push(vq, &e[0], 1);
	CHECK_EQ(push_calls(&e[1], 1), 1);
	/* An event in the past of this lap (position 0, wrap 0) does not
	 * fire for position 2. */
	pd_set_driver_event(&pd, VHU__PEVENT_DESC, 0, false);
	serve(&b, 1, 2);
	CHECK_EQ(pd_calls(&pd), 0);
	/* A wrap counter for the previous lap: position 3 of it is behind
	 * the used position (3 of this lap) by a whole ring: no. */
	pd_set_driver_event(&pd, VHU__PEVENT_DESC, 3, true);
	serve(&b, 1, 0); /* position 3, wrap 0 */
	CHECK_EQ(pd_calls(&pd), 0);
	/* A chain of two positions steps over the event position. */
	pd_set_driver_event(&pd, VHU__PEVENT_DESC, 1, true);
	struct pd_buf two[2] = { { g, 8, false }, { g, 8, true } };
	pd_add(&pd, two, 2, 1); /* positions 0, 1, wrap 1 */
	CHECK_EQ(pop(), 1);
	vhu_vq_push_notify(vq, &el, 1);
	CHECK_EQ(pd_calls(&pd), 1);
}

TEST(kick_suppression_through_device_area)
{
	setup(8, false, false);
	uint64_t g = gmem_buf(&pd.g, 16);
	struct pd_buf b = { g, 8, true };
	CHECK_EQ(pd_device_flags(&pd), VHU__PEVENT_ENABLE);
	vhu_vq_disable_notify(vq);
	CHECK_EQ(pd_device_flags(&pd), VHU__PEVENT_DISABLE);
	CHECK(!vhu_vq_enable_notify(vq));
	CHECK_EQ(pd_device_flags(&pd), VHU__PEVENT_ENABLE);
	vhu_vq_disable_notify(vq);
	pd_add(&pd, &b, 1, 0);
	CHECK(vhu_vq_enable_notify(vq)); /* arrived while disabled */
	CHECK_EQ(pop(), 1);
	CHECK(!vhu_vq_enable_notify(vq));
	/* Without EVENT_IDX an empty pop leaves kicks off. */
	vhu_vq_disable_notify(vq);
	CHECK_EQ(pop(), 0);
	CHECK_EQ(pd_device_flags(&pd), VHU__PEVENT_DISABLE);
}

TEST(empty_pop_rearms_kicks_with_event_idx)
{
	setup(8, true, false);
	vhu_vq_disable_notify(vq);
	CHECK_EQ(pd_device_flags(&pd), VHU__PEVENT_DISABLE);
	CHECK_EQ(pop(), 0);
	CHECK_EQ(pd_device_flags(&pd), VHU__PEVENT_ENABLE);
}

TEST(empty_pop_no_rearm_keeps_kicks_off)
{
	setup(8, true, false);
	struct pd_buf b = { gmem_buf(&pd.g, 16), 8, true };
	vhu_vq_disable_notify(vq);
	/* A polling device's empty pop leaves the driver quiet... */
	CHECK_EQ(vhu_vq_pop_flags(vq, &el, iov, 64, VHU_VQ_POP_NO_REARM), 0);
	CHECK_EQ(pd_device_flags(&pd), VHU__PEVENT_DISABLE);
	CHECK(!vhu_vq_has_work(vq));
	pd_add(&pd, &b, 1, 0);
	CHECK(vhu_vq_has_work(vq));
	CHECK_EQ(vhu_vq_pop_flags(vq, &el, iov, 64, VHU_VQ_POP_NO_REARM), 1);
	CHECK_EQ(vhu_vq_pop_flags(vq, &el, iov, 64, VHU_VQ_POP_NO_REARM), 0);
	CHECK_EQ(pd_device_flags(&pd), VHU__PEVENT_DISABLE);
	/* ...until it asks for kicks before sleeping. */
	CHECK(!vhu_vq_enable_notify(vq));
	CHECK_EQ(pd_device_flags(&pd), VHU__PEVENT_ENABLE);
}

/* ---- hostile rings ---- */

TEST(chain_longer_than_ring_breaks)
{
	setup(4, false, false);
	uint64_t g = gmem_buf(&pd.g, 16);
	/* Every position of this lap and the next looks like a member. */
	for (uint16_t i = 0; i < 4; i++)
		pd_raw(&pd, i, g, 8, 0,
		       (uint16_t)(pd_avail_bits(true) | VHU_VRING_DESC_F_NEXT));
	expect_broken();
}

TEST(chain_into_unavailable_descriptor_breaks)
{
	setup(8, false, false);
	uint64_t g = gmem_buf(&pd.g, 16);
	pd_raw(&pd, 0, g, 8, 0,
	       (uint16_t)(pd_avail_bits(true) | VHU_VRING_DESC_F_NEXT));
	expect_broken();
}

TEST(both_flags_equal_to_wrap_breaks)
{
	setup(8, false, false);
	uint64_t g = gmem_buf(&pd.g, 16);
	pd_raw(&pd, 0, g, 8, 0, VHU__PDESC_F_AVAIL | VHU__PDESC_F_USED);
	CHECK(vhu_vq_has_work(vq));
	expect_broken();
}

TEST(buffer_id_out_of_range_breaks)
{
	setup(8, false, false);
	uint64_t g = gmem_buf(&pd.g, 16);
	struct pd_buf b = { g, 8, false };
	pd_add(&pd, &b, 1, 8);
	expect_broken();
}

TEST(buffer_id_in_flight_twice_breaks)
{
	setup(8, false, false);
	uint64_t g = gmem_buf(&pd.g, 16);
	struct pd_buf b = { g, 8, false };
	pd_add(&pd, &b, 1, 3);
	pd_add(&pd, &b, 1, 3);
	CHECK_EQ(pop(), 1);
	expect_broken();
}

TEST(nested_indirect_breaks)
{
	setup(8, false, true);
	uint64_t g = gmem_buf(&pd.g, 16), t = gmem_buf(&pd.g, 32);
	pd_table_entry(&pd, t, 0, g, 8, 0);
	pd_table_entry(&pd, t, 1, t, 32, VHU_VRING_DESC_F_INDIRECT);
	pd_raw(&pd, 0, t, 32, 0,
	       (uint16_t)(pd_avail_bits(true) | VHU_VRING_DESC_F_INDIRECT));
	expect_broken();
}

TEST(bad_indirect_tables_break)
{
	static const uint32_t lens[] = { 0, 20, 8 };
	for (unsigned i = 0; i < VHU__ARRAY_SIZE(lens); i++) {
		setup(8, false, true);
		uint64_t t = gmem_buf(&pd.g, 32);
		pd_table_entry(&pd, t, 0, t, 8, 0);
		pd_raw(&pd, 0, t, lens[i], 0,
		       (uint16_t)(pd_avail_bits(true) |
				  VHU_VRING_DESC_F_INDIRECT));
		expect_broken();
	}
	/* Unmapped table */
	setup(8, false, true);
	pd_raw(&pd, 0, 0x1000, 32, 0,
	       (uint16_t)(pd_avail_bits(true) | VHU_VRING_DESC_F_INDIRECT));
	expect_broken();
	/* INDIRECT with NEXT */
	setup(8, false, true);
	uint64_t t = gmem_buf(&pd.g, 32);
	pd_table_entry(&pd, t, 0, t, 8, 0);
	pd_raw(&pd, 1, t, 8, 0, pd_avail_bits(true));
	pd_raw(&pd, 0, t, 16, 0,
	       (uint16_t)(pd_avail_bits(true) | VHU_VRING_DESC_F_INDIRECT |
			  VHU_VRING_DESC_F_NEXT));
	expect_broken();
	/* Not negotiated */
	setup(8, false, false);
	t = gmem_buf(&pd.g, 32);
	pd_table_entry(&pd, t, 0, t, 8, 0);
	pd_raw(&pd, 0, t, 16, 0,
	       (uint16_t)(pd_avail_bits(true) | VHU_VRING_DESC_F_INDIRECT));
	expect_broken();
}

TEST(indirect_after_first_member_breaks)
{
	setup(8, false, true);
	uint64_t g = gmem_buf(&pd.g, 16), t = gmem_buf(&pd.g, 16);
	pd_table_entry(&pd, t, 0, g, 8, 0);
	pd_raw(&pd, 1, t, 16, 0,
	       (uint16_t)(pd_avail_bits(true) | VHU_VRING_DESC_F_INDIRECT));
	pd_raw(&pd, 0, g, 8, 0,
	       (uint16_t)(pd_avail_bits(true) | VHU_VRING_DESC_F_NEXT));
	expect_broken();
}

/* ---- mapping and vhost-user base encoding ---- */

TEST(map_checks_size_alignment_and_positions)
{
	setup(6, false, false); /* not a power of two: fine when packed */
	CHECK(vq->desc != NULL);
	vq->avail_uva += 2;
	CHECK_EQ(vhu__vq_map(vq), -EINVAL);
	vq->avail_uva -= 2;
	vq->desc_uva += 8;
	CHECK_EQ(vhu__vq_map(vq), -EINVAL);
	vq->desc_uva -= 8;
	vhu__packed_set_base(vq, 6); /* avail position == size */
	CHECK_EQ(vhu__vq_map(vq), -EINVAL);
	vhu__packed_set_base(vq, 6u << 16);
	CHECK_EQ(vhu__vq_map(vq), -EINVAL);
	vhu__packed_set_base(vq, 5u | 1u << 15 | 2u << 16);
	CHECK_EQ(vhu__vq_map(vq), 0);
	CHECK_EQ(vq->last_avail_idx, 5);
	CHECK(vq->pk_avail_wrap);
	CHECK_EQ(vq->used_idx, 2);
	CHECK(!vq->pk_used_wrap);
	CHECK_EQ(vhu__packed_get_base(vq), 5u | 1u << 15 | 2u << 16);
	vq->size = 0;
	CHECK_EQ(vhu__vq_map(vq), -EINVAL);
	vq->size = 40000;
	CHECK_EQ(vhu__vq_map(vq), -EINVAL);
	CHECK_EQ(vhu__packed_ring_bytes(32768), 524288);
}

TEST(reset_restores_initial_wrap_counters)
{
	setup(8, false, false);
	vhu__packed_set_base(vq, 0);
	CHECK(!vq->pk_avail_wrap);
	vhu__vq_reset(vq);
	CHECK(vq->pk_avail_wrap);
	CHECK(vq->pk_used_wrap);
	CHECK(vq->pk_chain == NULL);
	CHECK(!vq->packed);
}

/* ---- the front-end library's packed driver against the device side ---- */

static struct vhu_fe_vq fvq;

static void fe_setup(uint16_t size, bool event_idx)
{
	setup(size, event_idx, false);
	memset(&fvq, 0, sizeof(fvq));
	fvq.size = size;
	fvq.packed = true;
	fvq.event_idx = event_idx;
	fvq.pring = gmem_ptr(&pd.g, pd.ring_gpa);
	fvq.drv_area = gmem_ptr(&pd.g, pd.drv_gpa);
	fvq.dev_area = gmem_ptr(&pd.g, pd.dev_gpa);
	fvq.kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	fvq.call_fd = vq->call_fd; /* the device's call eventfd */
	CHECK(fvq.kick_fd >= 0);
	CHECK_EQ(vhu__drv_init(&fvq, size), 0);
}

static void fe_teardown(void)
{
	vhu__drv_free(&fvq);
	if (fvq.kick_fd >= 0)
		close(fvq.kick_fd);
	fvq.kick_fd = -1;
}

TEST(frontend_packed_driver_against_device_side)
{
	fe_setup(5, false);
	uint64_t g = gmem_buf(&pd.g, 4096);
	for (unsigned it = 0; it < 50; it++) {
		unsigned n = 1 + it % 3;
		struct vhu_fe_buf out = { g, 16 }, in[2] = { { g + 64, 32 },
							   { g + 128, 8 } };
		int id = vhu_fe_vq_add(&fvq, &out, 1, in, n - 1,
				       (void *)(uintptr_t)(it + 1));
		CHECK(id >= 0 && id < 5);
		CHECK_EQ(vhu_fe_vq_num_free(&fvq), 5 - n);
		if (it % 2)
			vhu_vq_disable_notify(vq);
		else
			CHECK(vhu_vq_enable_notify(vq)); /* the chain is there */
		CHECK_EQ(vhu_fe_vq_kick(&fvq), it % 2 ? 0 : 1);
		expect_pop(id, 1, n - 1);
		uint32_t wr = n > 1 ? 8 : 0;
		vhu_vq_push_notify(vq, &el, wr);
		void *data;
		uint32_t len;
		CHECK_EQ(vhu_fe_vq_wait(&fvq, 1000), 1);
		CHECK_EQ(vhu_fe_vq_get_used(&fvq, &data, &len), 1);
		CHECK_EQ((uintptr_t)data, it + 1);
		CHECK_EQ(len, wr);
		CHECK_EQ(vhu_fe_vq_get_used(&fvq, &data, &len), 0);
		CHECK_EQ(vhu_fe_vq_num_free(&fvq), 5);
		CHECK_EQ(vhu_fe_vq_inflight(&fvq), 0);
	}
	CHECK(!vhu_vq_is_broken(vq));
	fe_teardown();
}

TEST(frontend_packed_driver_event_idx_wait)
{
	fe_setup(8, true);
	uint64_t g = gmem_buf(&pd.g, 64);
	struct vhu_fe_buf in = { g, 8 };
	void *data;
	uint32_t len;
	for (int i = 0; i < 3; i++)
		CHECK(vhu_fe_vq_add(&fvq, NULL, 0, &in, 1, (void *)1) >= 0);
	CHECK(vhu_fe_vq_kick(&fvq) >= 0);
	/* nothing used yet: the wait times out and leaves DESC at 0/1 */
	CHECK_EQ(vhu_fe_vq_wait(&fvq, 10), 0);
	uint16_t *drv = gmem_ptr(&pd.g, pd.drv_gpa);
	CHECK_EQ(le16toh(drv[1]), VHU__PEVENT_DESC);
	CHECK_EQ(le16toh(drv[0]), 0x8000);
	struct vhu_vq_elem e[3];
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(pop(), 1);
		e[i] = el;
	}
	CHECK_EQ(push_calls(&e[1], 4), 1);
	CHECK_EQ(vhu_fe_vq_get_used(&fvq, &data, &len), 1);
	CHECK_EQ(len, 4);
	/* the event still names position 0: the next used one (1) is past it */
	CHECK_EQ(push_calls(&e[0], 4), 0);
	CHECK_EQ(vhu_fe_vq_wait(&fvq, 10), 1);
	CHECK_EQ(vhu_fe_vq_get_used(&fvq, &data, &len), 1);
	CHECK_EQ(vhu_fe_vq_wait(&fvq, 10), 0); /* re-armed at position 2 */
	CHECK_EQ(push_calls(&e[2], 4), 1);
	fe_teardown();
}

/* One 8-byte buffer in flight, then the device "uses" position 0 with
 * buffer id (the buffer's + id_off), len and flags: the driver refuses
 * it, and the queue stays broken. */
static void hostile_used(uint16_t id_off, uint32_t len, uint16_t flags)
{
	fe_setup(8, false);
	struct vhu_fe_buf in = { gmem_buf(&pd.g, 64), 8 };
	void *data;
	uint32_t got;
	int id = vhu_fe_vq_add(&fvq, NULL, 0, &in, 1, (void *)1);
	CHECK(id >= 0);
	pd_raw(&pd, 0, 0, len, (uint16_t)(id + id_off),
	       (uint16_t)(VHU__PDESC_F_AVAIL | VHU__PDESC_F_USED | flags));
	CHECK_EQ(vhu_fe_vq_get_used(&fvq, &data, &got), -EIO);
	CHECK_EQ(vhu_fe_vq_add(&fvq, NULL, 0, &in, 1, NULL), -EIO);
	fe_teardown();
}

TEST(frontend_packed_driver_refuses_a_hostile_device)
{
	/* a used-looking descriptor with nothing in flight is ignored */
	fe_setup(8, false);
	void *data;
	uint32_t len;
	pd_raw(&pd, 0, 0, 0, 0, VHU__PDESC_F_AVAIL | VHU__PDESC_F_USED);
	CHECK_EQ(vhu_fe_vq_get_used(&fvq, &data, &len), 0);
	fe_teardown();
	/* used with an id not in flight */
	hostile_used(1, 0, 0);
	/* more bytes written than the buffer holds */
	hostile_used(0, 9, VHU_VRING_DESC_F_WRITE);

	/* a full ring refuses more; an empty chain is invalid */
	fe_setup(2, false);
	uint64_t g = gmem_buf(&pd.g, 64);
	struct vhu_fe_buf two[2] = { { g, 8 }, { g + 8, 8 } };
	CHECK(vhu_fe_vq_add(&fvq, two, 2, NULL, 0, NULL) >= 0);
	CHECK_EQ(vhu_fe_vq_add(&fvq, two, 1, NULL, 0, NULL), -ENOSPC);
	CHECK_EQ(vhu_fe_vq_add(&fvq, two, 0, NULL, 0, NULL), -EINVAL);
	fe_teardown();
}

int main(void)
{
	tap_after_each = after;
	return tap_run();
}
