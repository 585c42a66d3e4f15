/* SPDX-License-Identifier: MIT */
/*
 * vhu-blk over both ring layouts, in one process: the device behind a
 * real back-end session (its loop on a thread), driven by the library's
 * front-end over a Unix socket, each case once with a split ring and once
 * with VIRTIO_F_RING_PACKED negotiated, and every byte checked against
 * the image file: ring sizes, laps, many requests in flight.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include <vhu/frontend.h>

#include "blk-harness.h"
#include "blk.h"
#include "tap.h"

#define SLOT_DATA 4096u  /* NSLOT of them: the harness's 2 * DATA_SIZE */

static struct ctx cx;

static void after(void)
{
	ctx_close(&cx);
}

/* A queue of qsize in the case's layout (ctx_open follows tap_packed). */
static void open_ring(struct ctx *c, unsigned qsize, bool event_idx)
{
	struct vhu_blk_opts o = { .num_queues = 1, .blk_size = 512 };

	ctx_close(c);
	ctx_open(c, &o, false);
	c->qsize = qsize;
	if (!event_idx)
		c->features_clear = VHU_BIT(VHU_F_EVENT_IDX);
	ctx_connect(c);
}

/* One request of a slot, on that slot's SLOT_DATA bytes of data. */
static void slot_req(struct ctx *c, unsigned slot, uint32_t type,
		     uint64_t sector, uint32_t len)
{
	add_req(c, slot, type, sector,
		c->data_gpa + (uint64_t)SLOT_DATA * slot, len,
		type != VHU_BLK_T_OUT);
}

/* Each sector differs from its neighbours. */
static void fill_sectors(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 13 + seed * 7 + (i >> 9));
}

/* Write n slots (in flight together), check the image; read them back
 * into cleared buffers, check the data. */
static void batch(struct ctx *c, unsigned n, unsigned seed, uint64_t sector0)
{
	uint32_t w[NSLOT];
	static uint8_t buf[SLOT_DATA];

	for (unsigned s = 0; s < n; s++) {
		fill_sectors(c->data + SLOT_DATA * s, SLOT_DATA, seed + s);
		slot_req(c, s, VHU_BLK_T_OUT, sector0 + 8 * s, SLOT_DATA);
	}
	run(c, n, w);
	for (unsigned s = 0; s < n; s++) {
		CHECK_EQ(c->status[s], VHU_BLK_S_OK);
		CHECK_EQ(w[s], 1);
		pread_img(c, buf, SLOT_DATA, (off_t)(sector0 + 8 * s) * 512);
		CHECK_MEM(buf, c->data + SLOT_DATA * s, SLOT_DATA);
	}
	memset(c->data, 0, (size_t)SLOT_DATA * n);
	for (unsigned s = 0; s < n; s++)
		slot_req(c, s, VHU_BLK_T_IN, sector0 + 8 * s, SLOT_DATA);
	run(c, n, w);
	for (unsigned s = 0; s < n; s++) {
		CHECK_EQ(c->status[s], VHU_BLK_S_OK);
		CHECK_EQ(w[s], SLOT_DATA + 1);
		fill_sectors(buf, SLOT_DATA, seed + s);
		CHECK_MEM(c->data + SLOT_DATA * s, buf, SLOT_DATA);
	}
}

TEST_LAYOUTS(write_read_verified)
{
	open_ring(&cx, 128, true);
	batch(&cx, 1, 1, 0);
	batch(&cx, NSLOT, 2, 64);
	CHECK_EQ(vhu_fe_vq_inflight(cx.vq), 0);
	CHECK_EQ(vhu_fe_vq_num_free(cx.vq), 128);
}

/* 32 requests of 3 descriptors in flight, twice, then GET_VRING_BASE: on
 * a packed ring of 100 (not a power of two) that is 192 positions, one
 * lap and 92, wrap counters 0; on a split ring of 128 the index 64. */
TEST_LAYOUTS(many_in_flight_and_base)
{
	open_ring(&cx, tap_packed ? 100 : 128, true);
	batch(&cx, NSLOT, 3, 0);
	uint32_t base = 0;
	CHECK_EQ(vhu_fe_vq_stop(cx.fe, 0, &base), 0);
	CHECK_EQ(base, tap_packed ? 92u | 92u << 16 : 64u);
}

/* A small ring (packed 13, split 16) run through many laps. */
static void laps(bool event_idx)
{
	unsigned size = tap_packed ? 13 : 16;
	open_ring(&cx, size, event_idx);
	for (unsigned round = 0; round < 40; round++)
		batch(&cx, 1 + round % 4, round, (round % 16) * 32);
	CHECK_EQ(vhu_fe_vq_num_free(cx.vq), size);
}

TEST_LAYOUTS(many_laps_event_idx)
{
	laps(true);
}

TEST_LAYOUTS(many_laps_no_event_idx)
{
	laps(false);
}

TEST_LAYOUTS(queue_size_rules)
{
	/* A packed ring's size need not be a power of two, a split ring's
	 * must be; 0 and > 32768 are refused for both. */
	unsigned size = tap_packed ? 7 : 8;
	open_ring(&cx, size, true);
	struct vhu_fe_vq *q;
	CHECK_EQ(vhu_fe_vq_setup(cx.fe, 0, size, &q), -EBUSY);
	CHECK_EQ(vhu_fe_vq_setup(cx.fe, 1, 0, &q), -EINVAL);
	CHECK_EQ(vhu_fe_vq_setup(cx.fe, 1, 40000, &q), -EINVAL);
	if (!tap_packed)
		CHECK_EQ(vhu_fe_vq_setup(cx.fe, 1, 7, &q), -EINVAL);
	/* 3 descriptors per request: two fit, a third does not */
	slot_req(&cx, 0, VHU_BLK_T_IN, 0, 512);
	slot_req(&cx, 1, VHU_BLK_T_IN, 8, 512);
	struct vhu_fe_buf b = { cx.hdr_gpa, 16 }, s[2] = {
		{ cx.data_gpa, 512 }, { cx.status_gpa, 1 } };
	CHECK_EQ(vhu_fe_vq_add(cx.vq, &b, 1, s, 2, NULL), -ENOSPC);
	run(&cx, 2, NULL);
	CHECK_EQ(cx.status[0], VHU_BLK_S_OK);
	CHECK_EQ(cx.status[1], VHU_BLK_S_OK);
}

int main(void)
{
	tap_after_each = after;
	return tap_run();
}
