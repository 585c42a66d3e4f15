/* SPDX-License-Identifier: MIT */
/*
 * vhu-blk over packed virtqueues, in one process: the device behind a
 * real back-end session (its loop on a thread), driven by the library's
 * front-end over a Unix socket with VIRTIO_F_RING_PACKED negotiated, and
 * every byte checked against the image file.
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

static void open_packed(struct ctx *c, unsigned qsize, bool event_idx)
{
	struct vhu_blk_opts o = { .num_queues = 1, .blk_size = 512 };

	ctx_close(c);
	ctx_open(c, &o, false);
	c->packed = true;
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

/* Beyond the device's iovec array: IOERR in the status byte, a used
 * entry and an interrupt, then the ring goes on. */
TEST(oversized_chain_answered_ioerr)
{
	struct vhu_fe_buf out[1], in[VHU_BLK_IOV_CAP + 8];
	unsigned n_in = 0;
	void *data;
	uint32_t len = 99;
	int r, rounds = 0;

	open_packed(&cx, 512, true);
	uint32_t t = htole32(VHU_BLK_T_IN);
	memset(cx.hdr, 0, 16);
	memcpy(cx.hdr, &t, 4);
	cx.status[0] = 0xff;
	out[0] = (struct vhu_fe_buf){ cx.hdr_gpa, 16 };
	for (unsigned i = 0; i < VHU_BLK_IOV_CAP + 4; i++)
		in[n_in++] = (struct vhu_fe_buf){ cx.data_gpa + 512 * (i % 8), 512 };
	in[n_in++] = (struct vhu_fe_buf){ cx.status_gpa, 1 };
	CHECK(vhu_fe_vq_add(cx.vq, out, 1, in, n_in, (void *)(uintptr_t)7) >= 0);
	CHECK(vhu_fe_vq_kick(cx.vq) >= 0);
	while ((r = vhu_fe_vq_get_used(cx.vq, &data, &len)) == 0) {
		CHECK(rounds++ < 50);
		CHECK(vhu_fe_vq_wait(cx.vq, 100) >= 0);
	}
	CHECK_EQ(r, 1);
	CHECK(data == (void *)(uintptr_t)7);
	CHECK_EQ(len, 1);
	CHECK_EQ(cx.status[0], VHU_BLK_S_IOERR);
}

TEST(packed_write_read_verified)
{
	open_packed(&cx, 128, true);
	batch(&cx, 1, 1, 0);
	batch(&cx, NSLOT, 2, 64);
	CHECK_EQ(vhu_fe_vq_inflight(cx.vq), 0);
	CHECK_EQ(vhu_fe_vq_num_free(cx.vq), 128);
}

/* A ring of 100 (not a power of two): 32 requests of 3 descriptors in
 * flight, then GET_VRING_BASE reports positions and wrap counters. */
TEST(packed_odd_size_many_in_flight_and_base)
{
	open_packed(&cx, 100, true);
	batch(&cx, NSLOT, 3, 0);
	/* 2 x 32 x 3 = 192 positions: one lap and 92, wrap counters 0 */
	uint32_t base = 0;
	CHECK_EQ(vhu_fe_vq_stop(cx.fe, 0, &base), 0);
	CHECK_EQ(base, 92u | 92u << 16);
}

/* A small ring run through many laps, with and without EVENT_IDX. */
static void laps(bool event_idx)
{
	open_packed(&cx, 13, event_idx);
	for (unsigned round = 0; round < 40; round++)
		batch(&cx, 1 + round % 4, round, (round % 16) * 32);
	CHECK_EQ(vhu_fe_vq_num_free(cx.vq), 13);
}

TEST(packed_many_laps_event_idx)
{
	laps(true);
}

TEST(packed_many_laps_no_event_idx)
{
	laps(false);
}

TEST(packed_queue_size_rules)
{
	open_packed(&cx, 7, true);
	struct vhu_fe_vq *q;
	/* non-power-of-two is fine for packed, 0 and > 32768 are not */
	CHECK_EQ(vhu_fe_vq_setup(cx.fe, 0, 7, &q), -EBUSY);
	CHECK_EQ(vhu_fe_vq_setup(cx.fe, 1, 0, &q), -EINVAL);
	CHECK_EQ(vhu_fe_vq_setup(cx.fe, 1, 40000, &q), -EINVAL);
	/* 3 descriptors per request: two fit in 7, a third does not */
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
