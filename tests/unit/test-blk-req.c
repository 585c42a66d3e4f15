/* SPDX-License-Identifier: MIT */
/* vhu-blk request parsing and validation over plain iovecs (virtio 1.2,
 * 5.2.6), and the config space layout (5.2.4). */
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "blk-wire.h"
#include "blk.h"
#include "tap.h"

static struct vhu_blk_limits lim(uint64_t capacity)
{
	struct vhu_blk_limits l = {
		.capacity = capacity,
		.blk_size = 512,
		.read_only = false,
		.max_discard_seg = VHU_BLK_MAX_DISCARD_SEG,
		.max_discard_sectors = VHU_BLK_MAX_DISCARD_SECTORS,
		.max_write_zeroes_seg = VHU_BLK_MAX_DISCARD_SEG,
		.max_write_zeroes_sectors = VHU_BLK_MAX_DISCARD_SECTORS,
	};
	return l;
}

static uint8_t hdr[16], data[8192], status[4];
static struct iovec data_iov[VHU_BLK_IOV_CAP];
static struct vhu_blk_req req;

/* header | data (writable) | status: the usual IN layout */
static int parse_in(uint64_t sector, size_t len)
{
	struct iovec iov[3] = {
		{ hdr, 16 }, { data, len }, { status, 1 },
	};

	put_hdr(hdr, VHU_BLK_T_IN, sector);
	return vhu_blk_req_parse(iov, 1, 2, &req, data_iov, VHU_BLK_IOV_CAP);
}

static int parse_out(uint32_t type, uint64_t sector, size_t len)
{
	struct iovec iov[3] = {
		{ hdr, 16 }, { data, len }, { status, 1 },
	};

	put_hdr(hdr, type, sector);
	return vhu_blk_req_parse(iov, 2, 1, &req, data_iov, VHU_BLK_IOV_CAP);
}

/* Parse an IN or OUT request, which must succeed, then the verdict of
 * the limits check on it. */
static int in_verdict(const struct vhu_blk_limits *l, uint64_t sector,
		      size_t len)
{
	CHECK_EQ(parse_in(sector, len), VHU_BLK_S_OK);
	return vhu_blk_req_check(&req, l);
}

static int out_verdict(const struct vhu_blk_limits *l, uint32_t type,
		       uint64_t sector, size_t len)
{
	CHECK_EQ(parse_out(type, sector, len), VHU_BLK_S_OK);
	return vhu_blk_req_check(&req, l);
}

TEST(in_request_layout)
{
	struct vhu_blk_limits l = lim(100);

	CHECK_EQ(parse_in(3, 1024), VHU_BLK_S_OK);
	CHECK_EQ(req.type, VHU_BLK_T_IN);
	CHECK_EQ(req.sector, 3);
	CHECK_EQ(req.data_len, 1024);
	CHECK_EQ(req.n_data, 1);
	CHECK(req.data[0].iov_base == data);
	CHECK(req.status == status);
	CHECK_EQ(vhu_blk_req_check(&req, &l), VHU_BLK_S_OK);
	CHECK_EQ(vhu_blk_req_written(&req, VHU_BLK_S_OK, 1024), 1025);
	CHECK_EQ(vhu_blk_req_written(&req, VHU_BLK_S_IOERR, 0), 1);
}

TEST(header_split_across_descriptors)
{
	uint8_t h[16];
	struct iovec iov[5] = {
		{ h, 5 }, { h + 5, 0 }, { h + 5, 7 }, { h + 12, 4 },
		{ status, 1 },
	};

	put_hdr(h, VHU_BLK_T_FLUSH, 0x0102030405060708ull);
	CHECK_EQ(vhu_blk_req_parse(iov, 4, 1, &req, data_iov, VHU_BLK_IOV_CAP),
		 VHU_BLK_S_OK);
	CHECK_EQ(req.type, VHU_BLK_T_FLUSH);
	CHECK(req.sector == 0x0102030405060708ull);
	CHECK_EQ(req.data_len, 0);
	CHECK(req.status == status);
}

TEST(header_and_data_in_one_descriptor)
{
	uint8_t buf[16 + 1024];
	struct iovec iov[2] = { { buf, sizeof(buf) }, { status, 1 } };
	struct vhu_blk_limits l = lim(100);

	put_hdr(buf, VHU_BLK_T_OUT, 10);
	CHECK_EQ(vhu_blk_req_parse(iov, 1, 1, &req, data_iov, VHU_BLK_IOV_CAP),
		 VHU_BLK_S_OK);
	CHECK_EQ(req.type, VHU_BLK_T_OUT);
	CHECK_EQ(req.data_len, 1024);
	CHECK(req.data[0].iov_base == buf + 16);
	CHECK_EQ(vhu_blk_req_check(&req, &l), VHU_BLK_S_OK);
	CHECK_EQ(vhu_blk_req_written(&req, VHU_BLK_S_OK, 1024), 1);
}

TEST(status_is_last_writable_byte)
{
	/* data and status share one writable buffer, then an empty one */
	struct iovec iov[4] = {
		{ hdr, 16 }, { data, 512 }, { data + 512, 513 }, { status, 0 },
	};

	put_hdr(hdr, VHU_BLK_T_IN, 0);
	CHECK_EQ(vhu_blk_req_parse(iov, 1, 3, &req, data_iov, VHU_BLK_IOV_CAP),
		 VHU_BLK_S_OK);
	CHECK(req.status == data + 1024);
	CHECK_EQ(req.data_len, 1024);
	CHECK_EQ(req.n_data, 2);
	CHECK_EQ(req.data[1].iov_len, 512);
}

TEST(no_writable_byte_is_einval)
{
	struct iovec iov[2] = { { hdr, 16 }, { status, 0 } };

	put_hdr(hdr, VHU_BLK_T_FLUSH, 0);
	CHECK_EQ(vhu_blk_req_parse(iov, 1, 1, &req, data_iov, VHU_BLK_IOV_CAP),
		 -EINVAL);
	CHECK_EQ(vhu_blk_req_parse(iov, 1, 0, &req, data_iov, VHU_BLK_IOV_CAP),
		 -EINVAL);
	CHECK(req.status == NULL);
}

TEST(short_header_is_ioerr)
{
	struct iovec iov[2] = { { hdr, 10 }, { status, 1 } };

	CHECK_EQ(vhu_blk_req_parse(iov, 1, 1, &req, data_iov, VHU_BLK_IOV_CAP),
		 VHU_BLK_S_IOERR);
	CHECK(req.status == status);
	/* header only in writable memory does not count either */
	struct iovec iov2[1] = { { data, 32 } };
	CHECK_EQ(vhu_blk_req_parse(iov2, 0, 1, &req, data_iov, VHU_BLK_IOV_CAP),
		 VHU_BLK_S_IOERR);
}

TEST(data_too_fragmented_is_ioerr)
{
	struct iovec iov[3] = { { hdr, 16 }, { data, 1024 }, { status, 1 } };

	put_hdr(hdr, VHU_BLK_T_IN, 0);
	CHECK_EQ(vhu_blk_req_parse(iov, 1, 2, &req, data_iov, 0),
		 VHU_BLK_S_IOERR);
}

TEST(out_of_range_sectors)
{
	struct vhu_blk_limits l = lim(100);

	CHECK_EQ(in_verdict(&l, 98, 1024), VHU_BLK_S_OK);   /* ends at 100 */
	CHECK_EQ(in_verdict(&l, 99, 1024), VHU_BLK_S_IOERR); /* ends at 101 */
	CHECK_EQ(in_verdict(&l, 100, 512), VHU_BLK_S_IOERR);
	CHECK_EQ(out_verdict(&l, VHU_BLK_T_OUT, 101, 512), VHU_BLK_S_IOERR);
	/* after a shrink the same request fails */
	CHECK_EQ(in_verdict(&l, 50, 512), VHU_BLK_S_OK);
	l.capacity = 50;
	CHECK_EQ(vhu_blk_req_check(&req, &l), VHU_BLK_S_IOERR);
}

TEST(sector_overflow)
{
	struct vhu_blk_limits l = lim(UINT64_MAX);

	CHECK_EQ(in_verdict(&l, UINT64_MAX, 512), VHU_BLK_S_IOERR);
	CHECK_EQ(in_verdict(&l, UINT64_MAX - 1, 1024), VHU_BLK_S_IOERR);
	l = lim(1ull << 40);
	CHECK_EQ(out_verdict(&l, VHU_BLK_T_OUT, UINT64_MAX - 1, 1024), VHU_BLK_S_IOERR);
}

TEST(partial_sector_and_block_alignment)
{
	struct vhu_blk_limits l = lim(1000);

	CHECK_EQ(in_verdict(&l, 0, 100), VHU_BLK_S_IOERR);
	l.blk_size = 4096;
	CHECK_EQ(in_verdict(&l, 8, 4096), VHU_BLK_S_OK);
	CHECK_EQ(in_verdict(&l, 1, 4096), VHU_BLK_S_IOERR);
	CHECK_EQ(in_verdict(&l, 8, 512), VHU_BLK_S_IOERR);
}

TEST(transfer_size_is_bounded)
{
	struct vhu_blk_limits l = lim(UINT64_MAX / 2);
	struct iovec iov[3] = {
		{ hdr, 16 }, { data, VHU_BLK_MAX_TRANSFER }, { status, 1 },
	};

	/* only the sizes matter: nothing is read past the header */
	put_hdr(hdr, VHU_BLK_T_OUT, 0);
	CHECK_EQ(vhu_blk_req_parse(iov, 2, 1, &req, data_iov, VHU_BLK_IOV_CAP),
		 VHU_BLK_S_OK);
	CHECK_EQ(vhu_blk_req_check(&req, &l), VHU_BLK_S_OK);
	iov[1].iov_len += 512;
	CHECK_EQ(vhu_blk_req_parse(iov, 2, 1, &req, data_iov, VHU_BLK_IOV_CAP),
		 VHU_BLK_S_OK);
	CHECK_EQ(vhu_blk_req_check(&req, &l), VHU_BLK_S_IOERR);
}

TEST(read_only_device)
{
	struct vhu_blk_limits l = lim(100);

	l.read_only = true;
	CHECK_EQ(in_verdict(&l, 0, 512), VHU_BLK_S_OK);
	CHECK_EQ(out_verdict(&l, VHU_BLK_T_OUT, 0, 512), VHU_BLK_S_IOERR);
	put_seg(data, 0, 8, 0);
	CHECK_EQ(out_verdict(&l, VHU_BLK_T_DISCARD, 0, 16), VHU_BLK_S_IOERR);
	CHECK_EQ(out_verdict(&l, VHU_BLK_T_WRITE_ZEROES, 0, 16), VHU_BLK_S_IOERR);
	CHECK_EQ(out_verdict(&l, VHU_BLK_T_FLUSH, 0, 0), VHU_BLK_S_OK);
}

TEST(unknown_type_is_unsupp)
{
	struct vhu_blk_limits l = lim(100);
	uint32_t types[] = { 2, 3, 5, 10, 14, 99, 0x80000000u, UINT32_MAX };

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		CHECK_EQ(parse_out(types[i], 0, 0), VHU_BLK_S_OK);
		CHECK_EQ(req.type, types[i]);
		CHECK_EQ(vhu_blk_req_check(&req, &l), VHU_BLK_S_UNSUPP);
	}
}

TEST(discard_segments)
{
	struct vhu_blk_limits l = lim(1000);

	put_seg(data, 8, 16, 0);
	put_seg(data + 16, 100, 4, 0);
	CHECK_EQ(out_verdict(&l, VHU_BLK_T_DISCARD, 0, 32), VHU_BLK_S_OK);
	CHECK_EQ(req.n_segs, 2);
	CHECK_EQ(req.segs[0].sector, 8);
	CHECK_EQ(req.segs[0].num_sectors, 16);
	CHECK_EQ(req.segs[1].sector, 100);

	/* unmap flag is not allowed on discard; unknown flags never */
	put_seg(data + 16, 100, 4, VHU_BLK_SEG_F_UNMAP);
	CHECK_EQ(vhu_blk_req_check(&req, &l), VHU_BLK_S_UNSUPP);
	put_seg(data + 16, 100, 4, 2);
	CHECK_EQ(vhu_blk_req_check(&req, &l), VHU_BLK_S_UNSUPP);

	/* out of range, overflowing, too large */
	put_seg(data + 16, 999, 2, 0);
	CHECK_EQ(vhu_blk_req_check(&req, &l), VHU_BLK_S_IOERR);
	put_seg(data + 16, UINT64_MAX, 2, 0);
	CHECK_EQ(vhu_blk_req_check(&req, &l), VHU_BLK_S_IOERR);
	l.capacity = UINT64_MAX;
	put_seg(data + 16, 0, VHU_BLK_MAX_DISCARD_SECTORS + 1, 0);
	CHECK_EQ(vhu_blk_req_check(&req, &l), VHU_BLK_S_IOERR);
	l.capacity = 1000;

	/* alignment to the logical block size */
	l.blk_size = 4096;
	put_seg(data + 16, 8, 8, 0);
	CHECK_EQ(vhu_blk_req_check(&req, &l), VHU_BLK_S_OK);
	put_seg(data + 16, 9, 8, 0);
	CHECK_EQ(vhu_blk_req_check(&req, &l), VHU_BLK_S_IOERR);
	put_seg(data + 16, 8, 7, 0);
	CHECK_EQ(vhu_blk_req_check(&req, &l), VHU_BLK_S_IOERR);
}

TEST(discard_segment_count_and_size)
{
	struct vhu_blk_limits l = lim(100000);
	unsigned n = VHU_BLK_MAX_DISCARD_SEG;

	for (unsigned i = 0; i <= n; i++)
		put_seg(data + 16 * i, i * 8, 8, 0);
	CHECK_EQ(out_verdict(&l, VHU_BLK_T_DISCARD, 0, 16 * n), VHU_BLK_S_OK);
	CHECK_EQ(req.n_segs, n);
	CHECK_EQ(out_verdict(&l, VHU_BLK_T_DISCARD, 0, 16 * (n + 1)), VHU_BLK_S_UNSUPP);
	l.max_discard_seg = 1;
	CHECK_EQ(out_verdict(&l, VHU_BLK_T_DISCARD, 0, 32), VHU_BLK_S_UNSUPP);
	CHECK_EQ(out_verdict(&l, VHU_BLK_T_DISCARD, 0, 20), VHU_BLK_S_IOERR);
	CHECK_EQ(out_verdict(&l, VHU_BLK_T_DISCARD, 0, 0), VHU_BLK_S_IOERR);
}

TEST(write_zeroes_flags)
{
	struct vhu_blk_limits l = lim(1000);

	put_seg(data, 16, 8, VHU_BLK_SEG_F_UNMAP);
	CHECK_EQ(out_verdict(&l, VHU_BLK_T_WRITE_ZEROES, 0, 16), VHU_BLK_S_OK);
	CHECK_EQ(req.segs[0].flags, VHU_BLK_SEG_F_UNMAP);
	put_seg(data, 16, 8, 0);
	CHECK_EQ(vhu_blk_req_check(&req, &l), VHU_BLK_S_OK);
	put_seg(data, 16, 8, 0x80000001u);
	CHECK_EQ(vhu_blk_req_check(&req, &l), VHU_BLK_S_UNSUPP);
	put_seg(data, 1000, 1, 0);
	CHECK_EQ(vhu_blk_req_check(&req, &l), VHU_BLK_S_IOERR);
}

TEST(segment_split_across_descriptors)
{
	uint8_t buf[16 + 16];
	struct iovec iov[4] = {
		{ buf, 20 }, { buf + 20, 3 }, { buf + 23, 9 }, { status, 1 },
	};
	struct vhu_blk_limits l = lim(1000);

	put_hdr(buf, VHU_BLK_T_WRITE_ZEROES, 0);
	put_seg(buf + 16, 0x1234, 0x20, VHU_BLK_SEG_F_UNMAP);
	CHECK_EQ(vhu_blk_req_parse(iov, 3, 1, &req, data_iov, VHU_BLK_IOV_CAP),
		 VHU_BLK_S_OK);
	CHECK_EQ(req.data_len, 16);
	l.capacity = 0x10000;
	CHECK_EQ(vhu_blk_req_check(&req, &l), VHU_BLK_S_OK);
	CHECK_EQ(req.segs[0].sector, 0x1234);
	CHECK_EQ(req.segs[0].num_sectors, 0x20);
}

TEST(get_id)
{
	struct iovec iov[3] = { { hdr, 16 }, { data, 20 }, { status, 1 } };
	struct vhu_blk_limits l = lim(10);
	uint8_t want[20] = "disk-1";

	memset(data, 0xaa, 64);
	put_hdr(hdr, VHU_BLK_T_GET_ID, 0);
	CHECK_EQ(vhu_blk_req_parse(iov, 1, 2, &req, data_iov, VHU_BLK_IOV_CAP),
		 VHU_BLK_S_OK);
	CHECK_EQ(vhu_blk_req_check(&req, &l), VHU_BLK_S_OK);
	CHECK_EQ(vhu_blk_req_get_id(&req, "disk-1"), 20);
	CHECK_MEM(data, want, 20);
	CHECK_EQ(data[20], 0xaa);
	CHECK_EQ(vhu_blk_req_written(&req, VHU_BLK_S_OK, 20), 21);

	/* exactly 20 characters: no terminator */
	CHECK_EQ(vhu_blk_req_get_id(&req, "ABCDEFGHIJKLMNOPQRST"), 20);
	CHECK_MEM(data, "ABCDEFGHIJKLMNOPQRST", 20);

	/* a short buffer gets what fits, never more */
	memset(data, 0xaa, 64);
	iov[1].iov_len = 8;
	CHECK_EQ(vhu_blk_req_parse(iov, 1, 2, &req, data_iov, VHU_BLK_IOV_CAP),
		 VHU_BLK_S_OK);
	CHECK_EQ(vhu_blk_req_get_id(&req, "ABCDEFGHIJKLMNOPQRST"), 8);
	CHECK_MEM(data, "ABCDEFGH", 8);
	CHECK_EQ(data[8], 0xaa);

	/* no room at all */
	iov[1].iov_len = 0;
	CHECK_EQ(vhu_blk_req_parse(iov, 1, 2, &req, data_iov, VHU_BLK_IOV_CAP),
		 VHU_BLK_S_OK);
	CHECK_EQ(vhu_blk_req_check(&req, &l), VHU_BLK_S_IOERR);
}

TEST(config_space_layout)
{
	struct vhu_blk_config_in in = {
		.capacity = 0x1122334455ull, .blk_size = 4096,
		.num_queues = 4, .wce = true,
	};
	uint8_t cfg[VHU_BLK_CONFIG_SIZE];
	uint64_t cap;
	uint32_t u32;
	uint16_t u16;

	vhu_blk_config_build(&in, cfg);
	memcpy(&cap, cfg, 8);
	CHECK(le64toh(cap) == 0x1122334455ull);
	memcpy(&u32, cfg + 12, 4);
	CHECK_EQ(le32toh(u32), VHU_BLK_SEG_MAX);
	memcpy(&u32, cfg + 20, 4);
	CHECK_EQ(le32toh(u32), 4096);
	CHECK_EQ(cfg[32], 1);
	memcpy(&u16, cfg + 34, 2);
	CHECK_EQ(le16toh(u16), 4);
	memcpy(&u32, cfg + 40, 4);
	CHECK_EQ(le32toh(u32), VHU_BLK_MAX_DISCARD_SEG);
	memcpy(&u32, cfg + 44, 4);
	CHECK_EQ(le32toh(u32), 8);
	CHECK_EQ(cfg[56], 1);
	for (unsigned i = 57; i < VHU_BLK_CONFIG_SIZE; i++)
		CHECK_EQ(cfg[i], 0);
	in.wce = false;
	vhu_blk_config_build(&in, cfg);
	CHECK_EQ(cfg[32], 0);
}

/* Random chains: random request layouts split at random points (empty
 * pieces included).  Whatever the split and the header, the status lies
 * in the writable part, data slices stay inside the chain and off the
 * status byte, and an accepted request never leaves the capacity. */
static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

static unsigned rnd(unsigned n)
{
	rnd_state = rnd_state * 6364136223846793005ull + 1442695040888963407ull;
	return (unsigned)((rnd_state >> 33) % n);
}

/* Split [base, base + total) into n pieces at random points. */
static void split(struct iovec *iov, unsigned n, uint8_t *base, size_t total)
{
	size_t off = 0;

	for (unsigned i = 0; i < n; i++) {
		size_t len = i + 1 == n ? total - off : rnd((unsigned)(total - off) + 1);

		iov[i].iov_base = base + off;
		iov[i].iov_len = len;
		off += len;
	}
}

TEST(random_chains_stay_in_bounds)
{
	static const uint32_t types[] = {
		VHU_BLK_T_IN, VHU_BLK_T_OUT, VHU_BLK_T_FLUSH, VHU_BLK_T_GET_ID,
		VHU_BLK_T_DISCARD, VHU_BLK_T_WRITE_ZEROES, 2, 99,
	};
	static uint8_t mem[4096];
	struct iovec iov[16];
	unsigned accepted_rw = 0, accepted_segs = 0;

	for (unsigned round = 0; round < 20000; round++) {
		struct vhu_blk_limits l = lim(64);
		uint32_t type = types[rnd(8)];
		bool writes = type == VHU_BLK_T_IN || type == VHU_BLK_T_GET_ID;
		bool segs = type == VHU_BLK_T_DISCARD || type == VHU_BLK_T_WRITE_ZEROES;
		size_t dlen = segs ? 16 * (rnd(3) + 1) : 512 * rnd(4);
		size_t out_len, in_len;
		unsigned n_out = rnd(4) + 1, n_in = rnd(4) + 1;

		if (rnd(6) == 0)
			dlen += rnd(600);               /* odd sizes */
		put_hdr(mem, type, rnd(3) ? rnd(70) : UINT64_MAX - rnd(3));
		for (size_t i = 0; segs && i + 16 <= dlen; i += 16)
			put_seg(mem + 16 + i, rnd(70), rnd(12), rnd(3));
		out_len = 16 + (writes ? 0 : dlen);
		in_len = (writes ? dlen : 0) + 1;
		if (rnd(10) == 0)
			out_len = rnd(16);              /* short header */
		if (rnd(10) == 0)
			in_len = 0;                     /* no status byte */
		split(iov, n_out, mem, out_len);
		split(iov + n_out, n_in, mem + out_len, in_len);

		int r = vhu_blk_req_parse(iov, n_out, n_in, &req, data_iov,
					  VHU_BLK_IOV_CAP);
		if (in_len == 0) {
			CHECK_EQ(r, -EINVAL);
			continue;
		}
		CHECK(r == VHU_BLK_S_OK || r == VHU_BLK_S_IOERR);
		CHECK(req.status == mem + out_len + in_len - 1);
		if (out_len < 16)
			CHECK_EQ(r, VHU_BLK_S_IOERR);
		if (r != VHU_BLK_S_OK)
			continue;
		size_t sum = 0;
		for (unsigned i = 0; i < req.n_data; i++) {
			uint8_t *b = req.data[i].iov_base;

			CHECK(b >= mem && b + req.data[i].iov_len <= req.status);
			sum += req.data[i].iov_len;
		}
		CHECK_EQ(sum, req.data_len);
		if (vhu_blk_req_check(&req, &l) != VHU_BLK_S_OK)
			continue;
		if (type == VHU_BLK_T_IN || type == VHU_BLK_T_OUT) {
			CHECK(req.sector <= l.capacity &&
			      req.data_len / 512 <= l.capacity - req.sector);
			CHECK_EQ(req.data_len % 512, 0);
			accepted_rw++;
		}
		accepted_segs += req.n_segs ? 1 : 0;
		for (unsigned i = 0; i < req.n_segs; i++)
			CHECK(req.segs[i].sector + req.segs[i].num_sectors <=
			      l.capacity);
	}
	/* the generator reaches the interesting paths */
	CHECK(accepted_rw > 1000);
	CHECK(accepted_segs > 100);
}

int main(void)
{
	return tap_run();
}
