/* SPDX-License-Identifier: MIT */
/*
 * vhu-vsock's packet layer: header coding, the framing checks of a tx
 * chain (header across buffers, len against the chain) and the credit
 * arithmetic of both directions, wrap-around of the u32 counters included.
 */
#include <endian.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include "pkt.h"
#include "tap.h"

static const struct vsock_hdr sample = {
	.src_cid = 3, .dst_cid = 2, .src_port = 1025, .dst_port = 5000,
	.len = 10, .type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_RW,
	.flags = 0x5a5a, .buf_alloc = 262144, .fwd_cnt = 0xfffffff0u,
};

/* The wire layout of Linux's struct virtio_vsock_hdr, field by field. */
TEST(encode_matches_wire_layout)
{
	uint8_t raw[VSOCK_HDR_SIZE];
	uint64_t v64;
	uint32_t v32;
	uint16_t v16;

	vsock_hdr_encode(&sample, raw);
	memcpy(&v64, raw + 0, 8);
	CHECK_EQ(le64toh(v64), 3);
	memcpy(&v64, raw + 8, 8);
	CHECK_EQ(le64toh(v64), 2);
	memcpy(&v32, raw + 16, 4);
	CHECK_EQ(le32toh(v32), 1025);
	memcpy(&v32, raw + 20, 4);
	CHECK_EQ(le32toh(v32), 5000);
	memcpy(&v32, raw + 24, 4);
	CHECK_EQ(le32toh(v32), 10);
	memcpy(&v16, raw + 28, 2);
	CHECK_EQ(le16toh(v16), VSOCK_TYPE_STREAM);
	memcpy(&v16, raw + 30, 2);
	CHECK_EQ(le16toh(v16), VSOCK_OP_RW);
	memcpy(&v32, raw + 32, 4);
	CHECK_EQ(le32toh(v32), 0x5a5a);
	memcpy(&v32, raw + 36, 4);
	CHECK_EQ(le32toh(v32), 262144);
	memcpy(&v32, raw + 40, 4);
	CHECK_EQ(le32toh(v32), 0xfffffff0u);

	struct vsock_hdr back;
	memset(&back, 0, sizeof(back));   /* the struct's tail padding */
	vsock_hdr_decode(raw, &back);
	CHECK_MEM(&back, &sample, sizeof(back));
}

/* Header and payload cut into buffers at every possible place. */
TEST(parse_header_across_buffers)
{
	uint8_t pkt[VSOCK_HDR_SIZE + 10];

	vsock_hdr_encode(&sample, pkt);
	memcpy(pkt + VSOCK_HDR_SIZE, "0123456789", 10);
	for (size_t a = 0; a <= sizeof(pkt); a++) {
		for (size_t b = a; b <= sizeof(pkt); b += 7) {
			struct iovec iov[3] = {
				{ pkt, a }, { pkt + a, b - a }, { pkt + b, sizeof(pkt) - b },
			};
			struct vsock_hdr h;
			CHECK_EQ(vsock_pkt_parse(iov, 3, &h), VSOCK_PARSE_OK);
			CHECK_EQ(h.len, 10);
			CHECK_EQ(h.dst_port, 5000);
			CHECK_EQ(h.fwd_cnt, 0xfffffff0u);
		}
	}
}

TEST(parse_refuses_short_and_overlong)
{
	uint8_t pkt[VSOCK_HDR_SIZE + 10];
	struct vsock_hdr h = sample, out;
	struct iovec iov = { pkt, 0 };

	vsock_hdr_encode(&h, pkt);
	/* no buffer, or fewer bytes than a header */
	CHECK_EQ(vsock_pkt_parse(NULL, 0, &out), VSOCK_PARSE_SHORT);
	for (size_t n = 0; n < VSOCK_HDR_SIZE; n++) {
		iov.iov_len = n;
		CHECK_EQ(vsock_pkt_parse(&iov, 1, &out), VSOCK_PARSE_SHORT);
	}
	/* len one past what the chain carries */
	iov.iov_len = VSOCK_HDR_SIZE + 9;
	CHECK_EQ(vsock_pkt_parse(&iov, 1, &out), VSOCK_PARSE_LEN);
	/* a header alone that claims a payload */
	iov.iov_len = VSOCK_HDR_SIZE;
	CHECK_EQ(vsock_pkt_parse(&iov, 1, &out), VSOCK_PARSE_LEN);
	/* lengths that would wrap a 32-bit sum, and the largest payload */
	h.len = UINT32_MAX;
	vsock_hdr_encode(&h, pkt);
	iov.iov_len = sizeof(pkt);
	CHECK_EQ(vsock_pkt_parse(&iov, 1, &out), VSOCK_PARSE_TOO_BIG);
	h.len = VSOCK_MAX_PKT_PAYLOAD + 1;
	vsock_hdr_encode(&h, pkt);
	CHECK_EQ(vsock_pkt_parse(&iov, 1, &out), VSOCK_PARSE_TOO_BIG);
	/* a chain longer than len is fine (trailing bytes are ignored) */
	h.len = 3;
	vsock_hdr_encode(&h, pkt);
	CHECK_EQ(vsock_pkt_parse(&iov, 1, &out), VSOCK_PARSE_OK);
	h.len = 0;
	vsock_hdr_encode(&h, pkt);
	iov.iov_len = VSOCK_HDR_SIZE;
	CHECK_EQ(vsock_pkt_parse(&iov, 1, &out), VSOCK_PARSE_OK);
}

/* The sender's view: buf_alloc - (tx_cnt - fwd_cnt), never negative. */
TEST(credit_free_sender)
{
	CHECK_EQ(vsock_credit_free(4096, 0, 0), 4096);
	CHECK_EQ(vsock_credit_free(4096, 0, 4000), 96);
	CHECK_EQ(vsock_credit_free(4096, 0, 4096), 0);
	CHECK_EQ(vsock_credit_free(4096, 1000, 4096), 1000);
	/* counters wrapped */
	CHECK_EQ(vsock_credit_free(4096, 0xfffffc00u, 0x00000200u), 4096 - 0x600);
	/* a peer claiming it consumed more than was sent, or a buffer that
	 * shrank under what is in flight: no credit, not a huge one */
	CHECK_EQ(vsock_credit_free(4096, 5000, 4096), 0);
	CHECK_EQ(vsock_credit_free(1024, 0, 2048), 0);
	CHECK_EQ(vsock_credit_free(0, 0, 0), 0);
}

/* The receiver's check of a packet against what it advertised. */
TEST(credit_fits_receiver)
{
	CHECK(vsock_credit_fits(4096, 0, 0, 4096));
	CHECK(!vsock_credit_fits(4096, 0, 0, 4097));
	CHECK(vsock_credit_fits(4096, 100, 4096, 100));
	CHECK(!vsock_credit_fits(4096, 100, 4096, 101));
	CHECK(vsock_credit_fits(4096, 0xffffff00u, 0x00000100u, 4096 - 0x200));
	CHECK(!vsock_credit_fits(4096, 0xffffff00u, 0x00000100u, 4096 - 0x1ff));
	CHECK(!vsock_credit_fits(4096, 0, 0, UINT32_MAX));
	CHECK(vsock_credit_fits(4096, 0, 0, 0));
}

TEST(credit_update_policy)
{
	/* nothing forwarded since the last advertisement: never */
	CHECK(!vsock_credit_update_due(4096, 0, 4096, 0));
	/* the peer thinks the buffer is full and we forwarded: yes */
	CHECK(vsock_credit_update_due(4096, 1, 4096, 0));
	/* the peer still sees more than half free: not yet */
	CHECK(!vsock_credit_update_due(4096, 1000, 1000, 0));
	CHECK(!vsock_credit_update_due(4096, 2048, 2048, 0));
	CHECK(vsock_credit_update_due(4096, 2049, 2049, 0));
	/* wrapped counters */
	CHECK(vsock_credit_update_due(4096, 0x10u, 0x10u, 0xfffff000u));
}

int main(void)
{
	return tap_run();
}
