/* SPDX-License-Identifier: MIT */
/*
 * virtio-vsock packets (virtio 1.2, 5.10.6): the 44-byte header, its
 * operations, and the arithmetic of credit-based flow control.  Pure
 * functions over iovecs and integers, so the unit tests exercise them
 * without rings.
 */
#ifndef VHU_VSOCK_PKT_H
#define VHU_VSOCK_PKT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define VSOCK_HOST_CID 2u

#define VSOCK_TYPE_STREAM 1u
#define VSOCK_TYPE_SEQPACKET 2u

#define VSOCK_OP_INVALID 0u
#define VSOCK_OP_REQUEST 1u
#define VSOCK_OP_RESPONSE 2u
#define VSOCK_OP_RST 3u
#define VSOCK_OP_SHUTDOWN 4u
#define VSOCK_OP_RW 5u
#define VSOCK_OP_CREDIT_UPDATE 6u
#define VSOCK_OP_CREDIT_REQUEST 7u

/* SHUTDOWN flags: the sender will receive no more / send no more. */
#define VSOCK_SHUTDOWN_RCV 1u
#define VSOCK_SHUTDOWN_SEND 2u
#define VSOCK_SHUTDOWN_BOTH 3u

/* Feature bit: seqpacket sockets. */
#define VSOCK_F_SEQPACKET 1u

/* RW flags of a seqpacket: end of message, end of record (MSG_EOR). */
#define VSOCK_SEQ_EOM 1u
#define VSOCK_SEQ_EOR 2u

#define VSOCK_HDR_SIZE 44u

/* The header in host byte order. */
struct vsock_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port;
	uint32_t len;
	uint16_t type, op;
	uint32_t flags;
	uint32_t buf_alloc, fwd_cnt;
};

/* Why a tx chain was not taken (vsock_pkt_parse). */
enum vsock_parse_err {
	VSOCK_PARSE_OK = 0,
	VSOCK_PARSE_SHORT,     /* fewer readable bytes than a header: drop */
	VSOCK_PARSE_LEN,       /* len runs past the readable bytes: drop */
	VSOCK_PARSE_TOO_BIG,   /* len above the largest payload taken: drop */
};

/* Largest payload one packet may carry (Linux sends at most 64 KiB). */
#define VSOCK_MAX_PKT_PAYLOAD (64u << 10)

/* Decode 44 little-endian bytes. */
void vsock_hdr_decode(const uint8_t raw[VSOCK_HDR_SIZE], struct vsock_hdr *h);
void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t raw[VSOCK_HDR_SIZE]);

/*
 * Parse a driver-to-device packet from the readable buffers iov[0..n):
 * the header may span any number of buffers and the payload follows it at
 * byte offset VSOCK_HDR_SIZE.  Checks only the framing (the header is
 * complete, len fits what the chain carries and VSOCK_MAX_PKT_PAYLOAD);
 * addresses, type and op are the connection layer's business.
 */
enum vsock_parse_err vsock_pkt_parse(const struct iovec *iov, unsigned n,
				     struct vsock_hdr *h);

/*
 * Credit (5.10.6.3).  A receiver advertises buf_alloc (its buffer) and
 * fwd_cnt (bytes it has consumed, free-running u32); a sender that has
 * sent tx_cnt bytes (free-running u32) may have at most
 * buf_alloc - (tx_cnt - fwd_cnt) more in flight.  A peer whose numbers
 * claim more in flight than its buffer holds gets no credit.
 */
static inline uint32_t vsock_credit_free(uint32_t buf_alloc, uint32_t fwd_cnt,
					 uint32_t tx_cnt)
{
	uint32_t in_flight = tx_cnt - fwd_cnt;

	return in_flight >= buf_alloc ? 0 : buf_alloc - in_flight;
}

/*
 * The receiving side of the same rule: we advertised buf_alloc, have
 * received rx_cnt bytes and forwarded fwd_cnt of them; a packet of len
 * more bytes is within credit when it fits the buffer.
 */
static inline bool vsock_credit_fits(uint32_t buf_alloc, uint32_t fwd_cnt,
				     uint32_t rx_cnt, uint32_t len)
{
	uint32_t held = rx_cnt - fwd_cnt;

	return held <= buf_alloc && len <= buf_alloc - held;
}

/*
 * Whether to tell the peer our credit now: it last heard fwd_cnt
 * last_adv; its view of our free space is buf_alloc - (rx_cnt - last_adv).
 * An update goes out when that view has fallen under half the buffer and
 * we have forwarded bytes since; a peer that waits for credit (its view
 * 0) thus hears of every forward, and a peer streaming into a fast host
 * reader is not sent one update per packet.
 */
static inline bool vsock_credit_update_due(uint32_t buf_alloc, uint32_t fwd_cnt,
					   uint32_t rx_cnt, uint32_t last_adv)
{
	return fwd_cnt != last_adv &&
	       vsock_credit_free(buf_alloc, last_adv, rx_cnt) < buf_alloc / 2;
}

#endif
