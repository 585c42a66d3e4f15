/* SPDX-License-Identifier: MIT */
/*
 * vhu-blk device end to end, in one process: the device behind a real
 * back-end session (its loop on a thread), driven by the library's
 * front-end over a Unix socket, with a temporary image file.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vhu/backend.h>
#include <vhu/frontend.h>
#include <vhu/loop.h>

#include "blk-harness.h"
#include "tap.h"

static void rw_roundtrip(enum vhu_blk_cache cache)
{
	struct vhu_blk_opts o = { .cache = cache };
	struct ctx c;
	uint8_t buf[8192], want[8192];
	uint32_t w;

	ctx_open(&c, &o, true);
	fill(c.data, 8192, 3);
	memcpy(want, c.data, 8192);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 16, 8192, false, &w), VHU_BLK_S_OK);
	CHECK_EQ(w, 1);
	pread_img(&c, buf, 8192, 16 * 512);
	CHECK_MEM(buf, want, 8192);

	memset(c.data, 0, 8192);
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 16, 8192, true, &w), VHU_BLK_S_OK);
	CHECK_EQ(w, 8193);
	CHECK_MEM(c.data, want, 8192);
	ctx_close(&c);
}

/* Live migration: with logging started while the queue runs, a read's
 * data and status pages and the used ring are marked; a write's data
 * (read by the device) is not. */
TEST_LAYOUTS(reads_marked_in_dirty_log)
{
	struct vhu_blk_opts o = { 0 };
	struct ctx c;
	uint8_t bits[4096];
	size_t n;

	ctx_open(&c, &o, true);
	CHECK_EQ(vhu_fe_log_start(c.fe), 0);
	n = vhu_fe_log_size(c.fe);
	CHECK(n > 0 && n <= sizeof(bits));
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 16, 8192, false, NULL), VHU_BLK_S_OK);
	CHECK(vhu_fe_log_read(c.fe, bits, n) >= 0);
	CHECK(!vhu_fe_log_test(bits, n, c.data_gpa));
	CHECK(vhu_fe_log_test(bits, n, c.status_gpa));
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 16, 8192, true, NULL), VHU_BLK_S_OK);
	CHECK(vhu_fe_log_read(c.fe, bits, n) >= 3);
	CHECK(vhu_fe_log_test(bits, n, c.data_gpa));
	CHECK(vhu_fe_log_test(bits, n, c.data_gpa + 4096));
	CHECK(vhu_fe_log_test(bits, n, c.status_gpa));
	CHECK_EQ(vhu_fe_log_stop(c.fe), 0);
	ctx_close(&c);
}

TEST_LAYOUTS(write_then_read_writeback)
{
	rw_roundtrip(VHU_BLK_CACHE_WRITEBACK);
}

TEST_LAYOUTS(write_then_read_direct)
{
	rw_roundtrip(VHU_BLK_CACHE_NONE);
}

TEST_LAYOUTS(direct_unaligned_buffers_bounce)
{
	struct vhu_blk_opts o = { .cache = VHU_BLK_CACHE_NONE };
	struct ctx c;
	uint8_t buf[1024], want[1024];

	ctx_open(&c, &o, true);
	/* data at an odd guest address: O_DIRECT cannot take it as is */
	fill(c.data + 1, 1024, 9);
	memcpy(want, c.data + 1, 1024);
	add_req(&c, 0, VHU_BLK_T_OUT, 100, c.data_gpa + 1, 1024, false);
	run(&c, 1, NULL);
	CHECK_EQ(c.status[0], VHU_BLK_S_OK);
	pread_img(&c, buf, 1024, 100 * 512);
	CHECK_MEM(buf, want, 1024);

	memset(c.data, 0, 2048);
	add_req(&c, 0, VHU_BLK_T_IN, 100, c.data_gpa + 3, 1024, true);
	run(&c, 1, NULL);
	CHECK_EQ(c.status[0], VHU_BLK_S_OK);
	CHECK_MEM(c.data + 3, want, 1024);
	ctx_close(&c);
}

/* Unaligned requests under --cache none: far more than the bounce budget
 * asked for at once, and requests larger than one bounce chunk, all
 * complete with the right data while the queue's bounce memory stays
 * within VHU_BLK_BOUNCE_BUDGET. */
TEST_LAYOUTS(direct_bounce_memory_bounded)
{
	struct vhu_blk_opts o = { .cache = VHU_BLK_CACHE_NONE };
	const uint32_t seg = 64u << 10;
	struct vhu_fe_buf out[9], in[9];
	struct vhu_blk_qstats st;
	uint8_t *pat = malloc(seg), *buf = malloc(IMG_SIZE);
	uint32_t lens[NSLOT];
	struct ctx c;
	unsigned i, k;

	CHECK(pat && buf);
	ctx_open(&c, &o, true);
	/* every request writes the same 64 KiB pattern at 64 KiB-aligned
	 * places, so overlaps do not matter */
	fill(c.data + 100, seg, 11);
	memcpy(pat, c.data + 100, seg);
	for (k = 0; k < 24; k++) {
		set_hdr(&c, k, VHU_BLK_T_OUT, (k % 14) * (seg / 512));
		out[0] = (struct vhu_fe_buf){ c.hdr_gpa + 16 * k, 16 };
		for (i = 1; i <= 3; i++)
			out[i] = (struct vhu_fe_buf){ c.data_gpa + 100, seg };
		in[0] = (struct vhu_fe_buf){ c.status_gpa + k, 1 };
		CHECK(vhu_fe_vq_add(c.vq, out, 4, in, 1,
				    (void *)(uintptr_t)(k + 1)) >= 0);
	}
	run(&c, 24, lens);
	for (k = 0; k < 24; k++)
		CHECK_EQ(c.status[k], VHU_BLK_S_OK);
	/* one request of 8 x 64 KiB: more than one bounce chunk */
	set_hdr(&c, 0, VHU_BLK_T_OUT, 1024);
	out[0] = (struct vhu_fe_buf){ c.hdr_gpa, 16 };
	for (i = 1; i <= 8; i++)
		out[i] = (struct vhu_fe_buf){ c.data_gpa + 100, seg };
	in[0] = (struct vhu_fe_buf){ c.status_gpa, 1 };
	CHECK(vhu_fe_vq_add(c.vq, out, 9, in, 1, (void *)(uintptr_t)1) >= 0);
	run(&c, 1, lens);
	CHECK_EQ(c.status[0], VHU_BLK_S_OK);
	pread_img(&c, buf, IMG_SIZE, 0);
	for (i = 0; i < IMG_SIZE / seg; i++)
		CHECK_MEM(buf + (size_t)i * seg, pat, seg);

	/* and back: 8 x 64 KiB into an odd guest address, in two chunks */
	memset(c.data, 0, 2 * seg);
	set_hdr(&c, 0, VHU_BLK_T_IN, 0);
	out[0] = (struct vhu_fe_buf){ c.hdr_gpa, 16 };
	for (i = 0; i < 8; i++)
		in[i] = (struct vhu_fe_buf){ c.data_gpa + 3 + (i % 2) * seg, seg };
	in[8] = (struct vhu_fe_buf){ c.status_gpa, 1 };
	CHECK(vhu_fe_vq_add(c.vq, out, 1, in, 9, (void *)(uintptr_t)1) >= 0);
	run(&c, 1, lens);
	CHECK_EQ(c.status[0], VHU_BLK_S_OK);
	CHECK_EQ(lens[0], 8 * seg + 1);
	CHECK_MEM(c.data + 3, pat, seg);
	CHECK_MEM(c.data + 3 + seg, pat, seg);

	CHECK_EQ(vhu_blk_queue_stats(c.blk, 0, &st), 0);
	CHECK(st.bounce_peak > 0);
	CHECK(st.bounce_peak <= VHU_BLK_BOUNCE_BUDGET);
	CHECK_EQ(st.bounce_bytes, 0);
	ctx_close(&c);
	free(pat);
	free(buf);
}

TEST_LAYOUTS(split_descriptors_read)
{
	struct vhu_blk_opts o = { 0 };
	struct ctx c;
	uint8_t want[1536];
	struct vhu_fe_buf out[3], in[4];

	ctx_open(&c, &o, true);
	fill(want, sizeof(want), 5);
	pwrite_img(&c, want, sizeof(want), 7 * 512);
	memset(c.data, 0, 4096);
	set_hdr(&c, 0, VHU_BLK_T_IN, 7);
	/* header in three pieces; data in three; the status shares the last */
	out[0] = (struct vhu_fe_buf){ c.hdr_gpa, 3 };
	out[1] = (struct vhu_fe_buf){ c.hdr_gpa + 3, 9 };
	out[2] = (struct vhu_fe_buf){ c.hdr_gpa + 12, 4 };
	in[0] = (struct vhu_fe_buf){ c.data_gpa, 100 };
	in[1] = (struct vhu_fe_buf){ c.data_gpa + 100, 1000 };
	in[2] = (struct vhu_fe_buf){ c.data_gpa + 1100, 437 };
	CHECK(vhu_fe_vq_add(c.vq, out, 3, in, 3, (void *)1) >= 0);
	uint32_t lens[NSLOT];
	run(&c, 1, lens);
	CHECK_EQ(c.data[1536], VHU_BLK_S_OK);
	CHECK_EQ(lens[0], 1537);
	CHECK_MEM(c.data, want, sizeof(want));
	ctx_close(&c);
}

TEST_LAYOUTS(bad_requests_do_not_touch_image)
{
	struct vhu_blk_opts o = { .serial = "serial-42" };
	struct ctx c;
	uint8_t before[IMG_SIZE / 16], after[IMG_SIZE / 16];
	uint32_t w;

	ctx_open(&c, &o, true);
	fill(c.data, 4096, 1);
	pread_img(&c, before, sizeof(before), IMG_SIZE - sizeof(before));
	/* past the end, straddling the end, overflowing, partial sector */
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 2048, 512, false, NULL), VHU_BLK_S_IOERR);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 2047, 1024, false, NULL), VHU_BLK_S_IOERR);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, UINT64_MAX, 512, false, NULL),
		 VHU_BLK_S_IOERR);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 2040, 100, false, NULL), VHU_BLK_S_IOERR);
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 1ull << 60, 512, true, &w), VHU_BLK_S_IOERR);
	CHECK_EQ(w, 1);
	CHECK_EQ(one(&c, 77, 0, 512, false, NULL), VHU_BLK_S_UNSUPP);
	pread_img(&c, after, sizeof(after), IMG_SIZE - sizeof(after));
	CHECK_MEM(before, after, sizeof(before));

	CHECK_EQ(one(&c, VHU_BLK_T_FLUSH, 0, 0, false, NULL), VHU_BLK_S_OK);
	memset(c.data, 0xee, 32);
	CHECK_EQ(one(&c, VHU_BLK_T_GET_ID, 0, 20, true, &w), VHU_BLK_S_OK);
	CHECK_EQ(w, 21);
	CHECK_MEM(c.data, "serial-42\0\0\0\0\0\0\0\0\0\0\0", 20);

	struct vhu_blk_qstats st;
	CHECK_EQ(vhu_blk_queue_stats(c.blk, 0, &st), 0);
	CHECK_EQ(st.requests, 8);
	CHECK_EQ(st.errors, 6);
	CHECK_EQ(st.in_flight, 0);
	ctx_close(&c);
}

TEST_LAYOUTS(discard_and_write_zeroes)
{
	struct vhu_blk_opts o = { 0 };
	struct ctx c;
	uint8_t pat[4096], buf[4096], zero[4096] = { 0 };
	uint8_t *seg;

	ctx_open(&c, &o, true);
	fill(pat, sizeof(pat), 2);
	pwrite_img(&c, pat, sizeof(pat), 64 * 512);
	pwrite_img(&c, pat, sizeof(pat), 128 * 512);

	/* write zeroes with and without unmap, one request, two segments */
	seg = c.data;
	uint64_t s0 = htole64(64), s1 = htole64(128);
	uint32_t n = htole32(8), unmap = htole32(1), none = 0;
	memcpy(seg, &s0, 8); memcpy(seg + 8, &n, 4); memcpy(seg + 12, &none, 4);
	memcpy(seg + 16, &s1, 8); memcpy(seg + 24, &n, 4); memcpy(seg + 28, &unmap, 4);
	CHECK_EQ(one(&c, VHU_BLK_T_WRITE_ZEROES, 0, 32, false, NULL), VHU_BLK_S_OK);
	pread_img(&c, buf, sizeof(buf), 64 * 512);
	CHECK_MEM(buf, zero, sizeof(buf));
	pread_img(&c, buf, sizeof(buf), 128 * 512);
	CHECK_MEM(buf, zero, sizeof(buf));

	/* discard: the unmap flag is refused, plain discard accepted */
	CHECK_EQ(one(&c, VHU_BLK_T_DISCARD, 0, 32, false, NULL), VHU_BLK_S_UNSUPP);
	CHECK_EQ(one(&c, VHU_BLK_T_DISCARD, 0, 16, false, NULL), VHU_BLK_S_OK);
	/* segment past the end */
	s0 = htole64(2046);
	memcpy(seg, &s0, 8);
	CHECK_EQ(one(&c, VHU_BLK_T_WRITE_ZEROES, 0, 16, false, NULL),
		 VHU_BLK_S_IOERR);
	struct stat sb;
	CHECK_EQ(stat(c.img, &sb), 0);
	CHECK_EQ(sb.st_size, IMG_SIZE);
	ctx_close(&c);
}

TEST_LAYOUTS(many_requests_in_flight)
{
	struct vhu_blk_opts o = { 0 };
	struct ctx c;
	uint32_t lens[NSLOT];
	uint8_t buf[2048];

	ctx_open(&c, &o, true);
	for (unsigned i = 0; i < NSLOT; i++) {
		memset(c.data + i * 2048, (int)i + 1, 2048);
		add_req(&c, i, VHU_BLK_T_OUT, i * 4, c.data_gpa + i * 2048, 2048,
			false);
	}
	run(&c, NSLOT, lens);
	for (unsigned i = 0; i < NSLOT; i++) {
		CHECK_EQ(c.status[i], VHU_BLK_S_OK);
		pread_img(&c, buf, sizeof(buf), i * 2048);
		CHECK_EQ(buf[0], i + 1);
		CHECK_EQ(buf[2047], i + 1);
	}
	struct vhu_blk_qstats st;
	CHECK_EQ(vhu_blk_queue_stats(c.blk, 0, &st), 0);
	CHECK_EQ(st.requests, NSLOT);
	CHECK_EQ(st.bytes_written, NSLOT * 2048);

	/* stopping the queue returns every request popped so far */
	uint32_t base = 0;
	CHECK_EQ(vhu_fe_vq_stop(c.fe, 0, &base), 0);
	CHECK_EQ(base, ring_base_after(&c, NSLOT));
	ctx_close(&c);
}

TEST_LAYOUTS(read_only_device)
{
	struct vhu_blk_opts o = { .read_only = true };
	struct ctx c;

	ctx_open(&c, &o, true);
	CHECK(vhu_fe_features(c.fe) & VHU_BIT(VHU_BLK_F_RO));
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 0, 512, false, NULL), VHU_BLK_S_IOERR);
	CHECK_EQ(one(&c, VHU_BLK_T_WRITE_ZEROES, 0, 16, false, NULL),
		 VHU_BLK_S_IOERR);
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 0, 512, true, NULL), VHU_BLK_S_OK);
	CHECK_EQ(vhu_blk_resize(c.blk, IMG_SIZE * 2, 0), -EROFS);
	ctx_close(&c);
}

TEST_LAYOUTS(config_space_and_wce)
{
	struct vhu_blk_opts o = { .num_queues = 2, .blk_size = 4096 };
	struct ctx c;
	uint8_t cfg[VHU_BLK_CONFIG_SIZE], zero = 0;
	uint64_t cap;
	uint32_t bs;
	uint16_t nq;

	ctx_open(&c, &o, true);
	CHECK_EQ(vhu_fe_get_config(c.fe, 0, cfg, sizeof(cfg)), 0);
	memcpy(&cap, cfg, 8);
	memcpy(&bs, cfg + 20, 4);
	memcpy(&nq, cfg + 34, 2);
	CHECK_EQ(le64toh(cap), IMG_SIZE / 512);
	CHECK_EQ(le32toh(bs), 4096);
	CHECK_EQ(le16toh(nq), 2);
	CHECK_EQ(cfg[32], 1);
	CHECK(vhu_blk_wce(c.blk));
	/* the guest may write wce, and nothing else */
	CHECK_EQ(vhu_fe_set_config(c.fe, 32, &zero, 1, 0), 0);
	CHECK_EQ(vhu_fe_get_config(c.fe, 32, cfg, 1), 0);
	CHECK_EQ(cfg[0], 0);
	CHECK(!vhu_blk_wce(c.blk));
	CHECK(vhu_fe_set_config(c.fe, 0, &zero, 1, 0) < 0);
	CHECK_EQ(vhu_fe_get_config(c.fe, 0, &cap, 8), 0);
	CHECK_EQ(le64toh(cap), IMG_SIZE / 512);
	/* write-through writes still land, with a 4 KiB block size */
	fill(c.data, 4096, 4);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 8, 4096, false, NULL), VHU_BLK_S_OK);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 1, 4096, false, NULL), VHU_BLK_S_IOERR);
	ctx_close(&c);
}

static uint64_t writes_through(struct ctx *c);

/* The driver sees write-through (WCE 0); a 4 KiB write of fill(seed) at
 * sector succeeds and brings the device's write-through count to n. */
static void check_write_through(struct ctx *c, unsigned seed,
				uint64_t sector, uint64_t n)
{
	uint8_t v;

	CHECK_EQ(vhu_fe_get_config(c->fe, VHU_BLK_CONFIG_WCE_OFFSET, &v, 1), 0);
	CHECK_EQ(v, 0);
	fill(c->data, 4096, seed);
	CHECK_EQ(one(c, VHU_BLK_T_OUT, sector, 4096, false, NULL),
		 VHU_BLK_S_OK);
	CHECK_EQ(writes_through(c), n);
}

static uint64_t writes_through(struct ctx *c)
{
	struct vhu_blk_qstats st;

	CHECK_EQ(vhu_blk_queue_stats(c->blk, 0, &st), 0);
	return st.writes_through;
}

/* The guest's write-cache choice: SET_FEATURES (QEMU sends it on every
 * device start) and a reconnect keep it; a device reset restores it. */
TEST_LAYOUTS(wce_survives_set_features_and_reconnect)
{
	struct vhu_blk_opts o = { 0 };
	struct vhu_backend_opts bo;
	struct ctx c;
	uint8_t v, zero = 0;

	ctx_open(&c, &o, true);
	fill(c.data, 4096, 5);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 0, 4096, false, NULL), VHU_BLK_S_OK);
	CHECK_EQ(writes_through(&c), 0);

	CHECK_EQ(vhu_fe_set_config(c.fe, VHU_BLK_CONFIG_WCE_OFFSET, &zero, 1, 0), 0);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 0, 4096, false, NULL), VHU_BLK_S_OK);
	CHECK_EQ(writes_through(&c), 1);

	/* a device start sends SET_FEATURES again */
	CHECK_EQ(vhu_fe_set_features(c.fe, vhu_fe_features(c.fe)), 0);
	CHECK_EQ(vhu_fe_get_config(c.fe, VHU_BLK_CONFIG_WCE_OFFSET, &v, 1), 0);
	CHECK_EQ(v, 0);
	CHECK(!vhu_blk_wce(c.blk));
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 8, 4096, false, NULL), VHU_BLK_S_OK);
	CHECK_EQ(writes_through(&c), 2);
	/* write zeroes is made durable too */
	{
		uint8_t seg[16] = { 0 };
		uint32_t n = htole32(8);

		memcpy(seg + 8, &n, 4);
		memcpy(c.data, seg, 16);
		CHECK_EQ(one(&c, VHU_BLK_T_WRITE_ZEROES, 0, 16, false, NULL),
			 VHU_BLK_S_OK);
		CHECK_EQ(writes_through(&c), 3);
	}

	/* the front-end goes away and comes back */
	vhu_fe_close(c.fe);
	c.fe = NULL;
	ctx_connect(&c);
	check_write_through(&c, 6, 16, 4);

	/* a device reset (the op the session calls for RESET_DEVICE and
	 * RESET_OWNER, see test-backend) restores write-back */
	vhu_blk_backend_opts(c.blk, &bo);
	CHECK(bo.ops->device_reset != NULL);
	bo.ops->device_reset(bo.opaque);
	CHECK_EQ(vhu_fe_get_config(c.fe, VHU_BLK_CONFIG_WCE_OFFSET, &v, 1), 0);
	CHECK_EQ(v, 1);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 16, 4096, false, NULL), VHU_BLK_S_OK);
	CHECK_EQ(writes_through(&c), 4);
	ctx_close(&c);
}

/* Without FLUSH the device is write-through whatever the config says. */
TEST_LAYOUTS(no_flush_feature_means_write_through)
{
	struct vhu_blk_opts o = { 0 };
	struct ctx c;

	/* The driver declines FLUSH at negotiation (features cannot change
	 * while rings run). */
	ctx_open(&c, &o, false);
	c.features_clear = VHU_BIT(VHU_BLK_F_FLUSH);
	ctx_connect(&c);
	check_write_through(&c, 7, 0, 1);
	ctx_close(&c);
}

/* A chain with more buffers than the device's iovec array (beyond
 * seg_max) gets IOERR in its status byte and an interrupt, and the queue
 * goes on. */
TEST_LAYOUTS(oversized_chain_answered_ioerr)
{
	struct vhu_blk_opts o = { 0 };
	struct vhu_fe_buf out[1], in[VHU_BLK_IOV_CAP + 8];
	unsigned n_in = 0;
	uint32_t lens[NSLOT];
	struct ctx c;

	ctx_open(&c, &o, false);
	c.qsize = 512;
	ctx_connect(&c);
	set_hdr(&c, 0, VHU_BLK_T_IN, 0);
	out[0] = (struct vhu_fe_buf){ c.hdr_gpa, 16 };
	for (unsigned i = 0; i < VHU_BLK_IOV_CAP + 4; i++)
		in[n_in++] = (struct vhu_fe_buf){ c.data_gpa + 512 * (i % 64), 512 };
	in[n_in++] = (struct vhu_fe_buf){ c.status_gpa, 1 };
	CHECK(vhu_fe_vq_add(c.vq, out, 1, in, n_in, (void *)(uintptr_t)1) >= 0);
	lens[0] = 99;
	run(&c, 1, lens);
	CHECK_EQ(c.status[0], VHU_BLK_S_IOERR);
	CHECK_EQ(lens[0], 1);
	/* the queue still serves requests */
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 0, 4096, true, NULL), VHU_BLK_S_OK);
	ctx_close(&c);
}

TEST_LAYOUTS(resize_announced_and_enforced)
{
	struct vhu_blk_opts o = { 0 };
	struct ctx c;
	uint64_t one_v = 1, cap;
	int bfd;

	ctx_open(&c, &o, true);
	bfd = vhu_fe_backend_fd(c.fe);
	CHECK(bfd >= 0);
	c.resize_to = IMG_SIZE / 2;
	c.resize_flags = VHU_BLK_RESIZE_SHRINK;
	CHECK_EQ(write(c.resize_fd, &one_v, 8), 8);
	struct pollfd p = { .fd = bfd, .events = POLLIN };
	CHECK_EQ(poll(&p, 1, 2000), 1);
	CHECK(vhu_fe_process_backend(c.fe) >= 1);
	CHECK_EQ(c.changed_calls, 1);
	CHECK_EQ(vhu_fe_get_config(c.fe, 0, &cap, 8), 0);
	CHECK_EQ(le64toh(cap), IMG_SIZE / 2 / 512);
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 1024, 512, true, NULL), VHU_BLK_S_IOERR);
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 1023, 512, true, NULL), VHU_BLK_S_OK);
	struct stat sb;
	CHECK_EQ(stat(c.img, &sb), 0);
	CHECK_EQ(sb.st_size, IMG_SIZE / 2);

	/* an outside truncate is picked up by a refresh */
	CHECK_EQ(truncate(c.img, IMG_SIZE * 2), 0);
	CHECK_EQ(vhu_blk_refresh_size(c.blk), 1);
	CHECK_EQ(vhu_blk_capacity(c.blk), IMG_SIZE * 2 / 512);
	CHECK_EQ(vhu_blk_refresh_size(c.blk), 0);
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 4000, 512, true, NULL), VHU_BLK_S_OK);
	ctx_close(&c);
}

/* Shrinking needs the caller's intent; 0 and block-unaligned sizes never
 * pass; growing needs nothing. */
TEST_LAYOUTS(resize_shrink_needs_intent)
{
	struct vhu_blk_opts o = { 0 };
	struct ctx c;
	struct stat sb;

	ctx_open(&c, &o, false);
	CHECK_EQ(vhu_blk_resize(c.blk, IMG_SIZE / 2, 0), -EPERM);
	CHECK_EQ(vhu_blk_resize(c.blk, 0, 0), -EINVAL);
	CHECK_EQ(vhu_blk_resize(c.blk, 0, VHU_BLK_RESIZE_SHRINK), -EINVAL);
	CHECK_EQ(stat(c.img, &sb), 0);
	CHECK_EQ(sb.st_size, IMG_SIZE);
	CHECK_EQ(vhu_blk_size(c.blk), IMG_SIZE);
	CHECK_EQ(vhu_blk_resize(c.blk, IMG_SIZE * 2, 0), 0);
	CHECK_EQ(vhu_blk_resize(c.blk, IMG_SIZE, VHU_BLK_RESIZE_SHRINK), 0);
	CHECK_EQ(stat(c.img, &sb), 0);
	CHECK_EQ(sb.st_size, IMG_SIZE);
	ctx_close(&c);
}

/* A shrink while writes past the new end are in flight: none of them may
 * extend the file again after the truncate (the queues are quiesced). */
TEST_LAYOUTS(shrink_quiesces_in_flight_writes)
{
	struct vhu_blk_opts o = { .cache = VHU_BLK_CACHE_NONE };
	struct ctx c;
	int done = 0;

	ctx_open(&c, &o, true);
	c.resize_quiet = true;
	fill(c.data, NSLOT * 4096, 6);
	for (unsigned round = 0; round < 40; round++) {
		struct stat sb;
		unsigned got = 0, waits = 0;

		resize_async(&c, IMG_SIZE, 0);
		CHECK_EQ(resize_wait(&c, ++done), 0);
		for (unsigned i = 0; i < NSLOT; i++)
			add_req(&c, i, VHU_BLK_T_OUT, 2048 - 8 * (i + 1),
				c.data_gpa + i * 4096, 4096, false);
		CHECK(vhu_fe_vq_kick(c.vq) >= 0);
		usleep(round * 10);
		resize_async(&c, IMG_SIZE / 2, VHU_BLK_RESIZE_SHRINK);
		while (got < NSLOT) {
			void *data;
			uint32_t len;
			int r = vhu_fe_vq_get_used(c.vq, &data, &len);

			CHECK(r >= 0);
			if (r == 1) {
				got++;
				continue;
			}
			CHECK(waits++ < 50);
			CHECK(vhu_fe_vq_wait(c.vq, 100) >= 0);
		}
		CHECK_EQ(resize_wait(&c, ++done), 0);
		CHECK_EQ(stat(c.img, &sb), 0);
		CHECK_EQ(sb.st_size, IMG_SIZE / 2);
		CHECK_EQ(vhu_blk_size(c.blk), IMG_SIZE / 2);
		if (sb.st_size != IMG_SIZE / 2)
			break;
	}
	/* the queue still serves after being quiesced and resumed */
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 0, 4096, false, NULL), VHU_BLK_S_OK);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 1024, 512, false, NULL), VHU_BLK_S_IOERR);
	ctx_close(&c);
}

TEST_LAYOUTS(open_errors)
{
	struct vhu_blk_opts o = { .path = "/nonexistent/vhu-blk-img",
				  .num_queues = 1, .blk_size = 512 };
	struct vhu_blk *blk = NULL;

	CHECK_EQ(vhu_blk_new(&o, &blk), -ENOENT);
	o.path = "/tmp";
	CHECK_EQ(vhu_blk_new(&o, &blk), -EISDIR);
	o.path = "/dev/null";
	CHECK_EQ(vhu_blk_new(&o, &blk), -ENOTBLK);
	o.blk_size = 1024;
	CHECK_EQ(vhu_blk_new(&o, &blk), -EINVAL);
	o.blk_size = 512;
	o.num_queues = 0;
	CHECK_EQ(vhu_blk_new(&o, &blk), -EINVAL);
	o.num_queues = 1;
	o.serial = "123456789012345678901";
	CHECK_EQ(vhu_blk_new(&o, &blk), -ENAMETOOLONG);
	CHECK(blk == NULL);
}

TEST_LAYOUTS(two_queues_and_reconnect)
{
	struct vhu_blk_opts o = { .num_queues = 2 };
	struct ctx c;
	struct vhu_fe_vq *vq1;
	struct vhu_blk_qstats st0, st1;
	uint8_t buf[512];

	ctx_open(&c, &o, true);
	CHECK_EQ(vhu_fe_queue_num(c.fe), 2);
	CHECK_EQ(vhu_fe_vq_setup(c.fe, 1, QSIZE, &vq1), 0);
	memset(c.data, 0x11, 512);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 0, 512, false, NULL), VHU_BLK_S_OK);
	/* the same request layout on queue 1 */
	struct vhu_fe_vq *vq0 = c.vq;
	c.vq = vq1;
	memset(c.data + 4096, 0x22, 512);
	add_req(&c, 0, VHU_BLK_T_OUT, 1, c.data_gpa + 4096, 512, false);
	run(&c, 1, NULL);
	CHECK_EQ(c.status[0], VHU_BLK_S_OK);
	c.vq = vq0;
	pread_img(&c, buf, 512, 0);
	CHECK_EQ(buf[0], 0x11);
	pread_img(&c, buf, 512, 512);
	CHECK_EQ(buf[511], 0x22);
	CHECK_EQ(vhu_blk_queue_stats(c.blk, 0, &st0), 0);
	CHECK_EQ(vhu_blk_queue_stats(c.blk, 1, &st1), 0);
	CHECK_EQ(st0.requests, 1);
	CHECK_EQ(st1.requests, 1);
	CHECK_EQ(st1.bytes_written, 512);
	CHECK(vhu_blk_queue_stats(c.blk, 2, &st1) < 0);

	/* the front-end goes away; the next one is served */
	vhu_fe_close(c.fe);
	c.fe = NULL;
	CHECK_EQ(vhu_fe_connect(&c.fe, c.sock, NULL), 0);
	CHECK_EQ(vhu_fe_set_features(c.fe, vhu_fe_features_offered(c.fe) &
					 ~VHU_BIT(VHU_F_RING_PACKED)), 0);
	CHECK_EQ(vhu_fe_add_memory(c.fe, 4u << 20), 0);
	CHECK_EQ(vhu_fe_vq_setup(c.fe, 0, QSIZE, &c.vq), 0);
	c.hdr = vhu_fe_alloc(c.fe, 16 * NSLOT, 64, &c.hdr_gpa);
	c.status = vhu_fe_alloc(c.fe, NSLOT, 64, &c.status_gpa);
	c.data = vhu_fe_alloc(c.fe, DATA_SIZE, 4096, &c.data_gpa);
	CHECK(c.hdr && c.status && c.data);
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 1, 512, true, NULL), VHU_BLK_S_OK);
	CHECK_EQ(c.data[0], 0x22);
	ctx_close(&c);
}

static int count_fds(void)
{
	char path[64];
	int n = 0;

	for (int fd = 0; fd < 1024; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		if (access(path, F_OK) == 0)
			n++;
	}
	return n;
}

TEST_LAYOUTS(no_fd_leak_across_sessions)
{
	int before = count_fds();

	for (int i = 0; i < 3; i++) {
		struct vhu_blk_opts o = { .num_queues = 2 };
		struct ctx c;

		ctx_open(&c, &o, true);
		CHECK_EQ(one(&c, VHU_BLK_T_FLUSH, 0, 0, false, NULL), VHU_BLK_S_OK);
		CHECK_EQ(vhu_fe_vq_stop(c.fe, 0, NULL), 0);
		ctx_close(&c);
	}
	CHECK_EQ(count_fds(), before);
}

/* Queues sharing threads: every queue serves, stops synchronously and
 * serves again after a restart. */
static void shared_threads(unsigned nq, unsigned threads)
{
	struct vhu_blk_opts o = { .num_queues = nq, .threads = threads };
	struct vhu_fe_vq *vqs[4];
	struct ctx c;
	uint8_t buf[512];
	uint32_t base = 0;

	ctx_open(&c, &o, true);
	CHECK_EQ(vhu_blk_num_threads(c.blk), threads);
	vqs[0] = c.vq;
	for (unsigned q = 1; q < nq; q++)
		CHECK_EQ(vhu_fe_vq_setup(c.fe, q, QSIZE, &vqs[q]), 0);
	for (unsigned round = 0; round < 2; round++) {
		for (unsigned q = 0; q < nq; q++) {
			if (round && q == 1)
				continue;
			c.vq = vqs[q];
			/* several in flight on each queue */
			for (unsigned i = 0; i < 8; i++) {
				unsigned slot = q * 8 + i;

				memset(c.data + slot * 512, (int)(slot + round * 64), 512);
				add_req(&c, slot, VHU_BLK_T_OUT, slot,
					c.data_gpa + slot * 512, 512, false);
			}
			CHECK(vhu_fe_vq_kick(c.vq) >= 0);
		}
		for (unsigned q = 0; q < nq; q++) {
			unsigned got = 0, tries = 0;

			if (round && q == 1)
				continue;
			c.vq = vqs[q];
			while (got < 8) {
				void *d;
				uint32_t len;
				int r = vhu_fe_vq_get_used(c.vq, &d, &len);

				CHECK(r >= 0);
				if (r == 1) {
					CHECK_EQ(len, 1);
					CHECK((uintptr_t)d > q * 8 &&
					      (uintptr_t)d <= q * 8 + 8);
					got++;
					continue;
				}
				CHECK(tries++ < 50);
				CHECK(vhu_fe_vq_wait(c.vq, 100) >= 0);
			}
		}
		for (unsigned slot = 0; slot < nq * 8; slot++) {
			if (round && slot / 8 == 1)
				continue;
			CHECK_EQ(c.status[slot], VHU_BLK_S_OK);
			pread_img(&c, buf, 512, slot * 512);
			CHECK_EQ(buf[0], (uint8_t)(slot + round * 64));
		}
		/* stop queue 1 (it hands back the right index); the queues
		 * sharing its thread keep serving in the next round */
		if (round == 0) {
			CHECK_EQ(vhu_fe_vq_stop(c.fe, 1, &base), 0);
			CHECK_EQ(base, ring_base_after(&c, 8));
		}
	}
	struct vhu_blk_qstats st;
	for (unsigned q = 0; q < nq; q++) {
		CHECK_EQ(vhu_blk_queue_stats(c.blk, q, &st), 0);
		CHECK_EQ(st.requests, q == 1 ? 8 : 16);
		CHECK_EQ(st.in_flight, 0);
	}
	c.vq = vqs[0];
	ctx_close(&c);
}

TEST_LAYOUTS(four_queues_on_two_threads)
{
	shared_threads(4, 2);
}

TEST_LAYOUTS(three_queues_on_one_thread)
{
	shared_threads(3, 1);
}

TEST_LAYOUTS(no_fd_leak_with_shared_threads)
{
	int before = count_fds();

	for (int i = 0; i < 2; i++) {
		struct vhu_blk_opts o = { .num_queues = 2, .threads = 1 };
		struct ctx c;

		ctx_open(&c, &o, true);
		CHECK_EQ(one(&c, VHU_BLK_T_FLUSH, 0, 0, false, NULL), VHU_BLK_S_OK);
		ctx_close(&c);
	}
	CHECK_EQ(count_fds(), before);
}

int main(void)
{
	return tap_run();
}
