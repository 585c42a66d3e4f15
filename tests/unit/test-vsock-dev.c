/* SPDX-License-Identifier: MIT */
/*
 * vhu-vsock end to end in one process: the device behind a real back-end
 * session (its loop on a thread), the test as the guest's driver through
 * the library's front-end (rx, tx and event queues in the case's ring
 * layout), and real Unix sockets on the host side.  Checks the packets the
 * guest sees, the bytes host programs see, credit in both directions, and
 * that packets breaking the rules get a reset or are dropped while the
 * device goes on serving.
 */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <vhu/backend.h>
#include <vhu/frontend.h>
#include <vhu/loop.h>

#include "pkt.h"
#include "tap.h"
#include "util.h"
#include "vsock.h"

#define CID 42
#define RXN 32
#define RX_PAYLOAD 4096
#define RXSZ (VSOCK_HDR_SIZE + RX_PAYLOAD)
#define TXSZ (VSOCK_HDR_SIZE + VSOCK_MAX_PKT_PAYLOAD)
#define QSIZE 64
#define GUEST_BUF 65536u
#define WAIT_MS 3000

struct t {
	char dir[64], sock[96], uds[96];
	struct vhu_vsock *dev;
	struct vhu_backend *b;
	struct vhu_loop *loop;
	pthread_t th;
	bool running;
	struct vhu_fe *fe;
	struct vhu_fe_vq *rxq, *txq, *evq;
	uint8_t *rxbuf, *txbuf;
	uint64_t rxgpa, txgpa;
	uint32_t gbuf;            /* the guest's buf_alloc */
	int listeners[8];
	unsigned nlisteners;
};

static void *loop_main(void *arg)
{
	struct t *t = arg;

	vhu_loop_run(t->loop);
	return NULL;
}

static void rx_add(struct t *t, unsigned i)
{
	uint64_t g = t->rxgpa + (uint64_t)i * RXSZ;
	/* Odd buffers in one descriptor, even ones as header + payload, as
	 * older Linux drivers post them. */
	struct vhu_fe_buf one = { g, RXSZ };
	struct vhu_fe_buf two[2] = { { g, VSOCK_HDR_SIZE }, { g + VSOCK_HDR_SIZE, RX_PAYLOAD } };

	if (i % 2)
		CHECK(vhu_fe_vq_add(t->rxq, NULL, 0, &one, 1, (void *)(uintptr_t)(i + 1)) >= 0);
	else
		CHECK(vhu_fe_vq_add(t->rxq, NULL, 0, two, 2, (void *)(uintptr_t)(i + 1)) >= 0);
}

/* The device's connect timeout for the next t_open (0: its default), and
 * feature bits the next t_open does not negotiate. */
static unsigned t_timeout_ms;
static uint64_t t_features_clear;

static void t_open(struct t *t, uint32_t buf_alloc)
{
	struct vhu_backend_opts bo;

	memset(t, 0, sizeof(*t));
	t->gbuf = GUEST_BUF;
	strcpy(t->dir, "/tmp/vhu-vsock-XXXXXX");
	CHECK(mkdtemp(t->dir) != NULL);
	snprintf(t->sock, sizeof(t->sock), "%s/sock", t->dir);
	snprintf(t->uds, sizeof(t->uds), "%s/uds", t->dir);
	CHECK_EQ(vhu_loop_new(&t->loop), 0);
	struct vhu_vsock_opts o = { .guest_cid = CID, .uds_path = t->uds,
				    .buf_alloc = buf_alloc,
				    .connect_timeout_ms = t_timeout_ms };
	CHECK_EQ(vhu_vsock_new(&o, t->loop, &t->dev), 0);
	vhu_vsock_backend_opts(t->dev, &bo);
	CHECK_EQ(vhu_backend_new(&bo, &t->b), 0);
	CHECK_EQ(vhu_backend_listen(t->b, t->sock), 0);
	CHECK_EQ(vhu_backend_attach(t->b, t->loop), 0);
	CHECK_EQ(pthread_create(&t->th, NULL, loop_main, t), 0);
	t->running = true;

	CHECK_EQ(vhu_fe_connect(&t->fe, t->sock, NULL), 0);
	uint64_t f = vhu_fe_features_offered(t->fe);
	CHECK(f & VHU_BIT(VHU_F_VERSION_1));
	CHECK(f & VHU_BIT(VHU_F_RING_PACKED));
	CHECK(f & VHU_BIT(VSOCK_F_SEQPACKET));
	if (!tap_packed)
		f &= ~VHU_BIT(VHU_F_RING_PACKED);
	f &= ~t_features_clear;
	CHECK_EQ(vhu_fe_set_features(t->fe, f), 0);
	CHECK_EQ(vhu_fe_add_memory(t->fe, 4u << 20), 0);
	CHECK_EQ(vhu_fe_vq_setup(t->fe, 0, QSIZE, &t->rxq), 0);
	CHECK_EQ(vhu_fe_vq_setup(t->fe, 1, QSIZE, &t->txq), 0);
	CHECK_EQ(vhu_fe_vq_setup(t->fe, 2, QSIZE, &t->evq), 0);
	t->rxbuf = vhu_fe_alloc(t->fe, (size_t)RXN * RXSZ, 64, &t->rxgpa);
	t->txbuf = vhu_fe_alloc(t->fe, TXSZ, 64, &t->txgpa);
	CHECK(t->rxbuf && t->txbuf);
	for (unsigned i = 0; i < RXN; i++)
		rx_add(t, i);
	CHECK(vhu_fe_vq_kick(t->rxq) >= 0);
}

static void t_close(struct t *t)
{
	if (t->fe)
		vhu_fe_close(t->fe);
	t->fe = NULL;
	if (t->running) {
		vhu_loop_stop(t->loop);
		pthread_join(t->th, NULL);
		t->running = false;
	}
	vhu_backend_free(t->b);
	vhu_vsock_free(t->dev);
	vhu_loop_free(t->loop);
	for (unsigned i = 0; i < t->nlisteners; i++)
		close(t->listeners[i]);
	t->b = NULL;
	t->dev = NULL;
	t->loop = NULL;
	if (t->dir[0]) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", t->dir);
		CHECK_EQ(system(cmd), 0);
		t->dir[0] = 0;
	}
}

/* The next packet the device gave the guest: header in *h, payload copied
 * to data (up to cap).  Returns 1, or 0 when none came within ms. */
static int rx_recv(struct t *t, struct vsock_hdr *h, void *data, size_t cap, int ms)
{
	void *tag;
	uint32_t len;
	int r;

	while ((r = vhu_fe_vq_get_used(t->rxq, &tag, &len)) == 0) {
		r = vhu_fe_vq_wait(t->rxq, ms);
		CHECK(r >= 0);
		if (r == 0)
			return 0;
	}
	CHECK_EQ(r, 1);
	unsigned i = (unsigned)(uintptr_t)tag - 1;
	CHECK(i < RXN);
	CHECK(len >= VSOCK_HDR_SIZE && len <= RXSZ);
	const uint8_t *p = t->rxbuf + (size_t)i * RXSZ;
	vsock_hdr_decode(p, h);
	CHECK_EQ(h->len, len - VSOCK_HDR_SIZE);
	CHECK_EQ(h->src_cid, VSOCK_HOST_CID);
	CHECK_EQ(h->dst_cid, CID);
	if (h->op != VSOCK_OP_RST)   /* a reset answers in the packet's type */
		CHECK(h->type == VSOCK_TYPE_STREAM || h->type == VSOCK_TYPE_SEQPACKET);
	if (data)
		memcpy(data, p + VSOCK_HDR_SIZE, h->len < cap ? h->len : cap);
	rx_add(t, i);
	CHECK(vhu_fe_vq_kick(t->rxq) >= 0);
	return 1;
}

/* Put raw bytes on the tx queue as readable buffers cut at cuts[] (sorted
 * offsets; the ends are implied) and wait until the device took them. */
static void tx_raw(struct t *t, const void *bytes, size_t len, const size_t *cuts,
		   unsigned ncuts)
{
	struct vhu_fe_buf out[16];
	unsigned n = 0;
	size_t at = 0;
	void *tag;
	uint32_t wl;

	CHECK(len <= TXSZ && ncuts < 15);
	memcpy(t->txbuf, bytes, len);
	for (unsigned i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : len;
		if (end > at)
			out[n++] = (struct vhu_fe_buf){ t->txgpa + at, (uint32_t)(end - at) };
		at = end;
	}
	if (!n)   /* a chain must hold something: one writable byte */
		CHECK(vhu_fe_vq_add(t->txq, NULL, 0,
				    &(struct vhu_fe_buf){ t->txgpa, 1 }, 1, t) >= 0);
	else
		CHECK(vhu_fe_vq_add(t->txq, out, n, NULL, 0, t) >= 0);
	CHECK(vhu_fe_vq_kick(t->txq) >= 0);
	int r;
	while ((r = vhu_fe_vq_get_used(t->txq, &tag, &wl)) == 0)
		CHECK(vhu_fe_vq_wait(t->txq, WAIT_MS) == 1);
	CHECK_EQ(r, 1);
	CHECK(tag == t);
}

static struct vsock_hdr hdr(uint16_t op, uint32_t src_port, uint32_t dst_port)
{
	return (struct vsock_hdr){
		.src_cid = CID, .dst_cid = VSOCK_HOST_CID, .src_port = src_port,
		.dst_port = dst_port, .type = VSOCK_TYPE_STREAM, .op = op,
		.buf_alloc = GUEST_BUF,
	};
}

/* A packet with a payload, the header cut in two and the payload in two. */
static void tx_pkt(struct t *t, struct vsock_hdr h, const void *data, uint32_t len)
{
	static uint8_t pkt[TXSZ];
	size_t cuts[2] = { 13, VSOCK_HDR_SIZE + len / 2 };

	h.len = len;
	vsock_hdr_encode(&h, pkt);
	if (len)
		memcpy(pkt + VSOCK_HDR_SIZE, data, len);
	tx_raw(t, pkt, VSOCK_HDR_SIZE + len, cuts, 2);
}

static int host_listen_type(struct t *t, uint32_t port, int type)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);

	CHECK(fd >= 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s_%u", t->uds, port);
	CHECK_EQ(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	CHECK_EQ(listen(fd, 16), 0);
	CHECK(t->nlisteners < 8);
	t->listeners[t->nlisteners++] = fd;
	return fd;
}

static int host_listen(struct t *t, uint32_t port)
{
	return host_listen_type(t, port, SOCK_STREAM);
}

static bool readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1;
}

static int host_accept(int lfd)
{
	CHECK(readable(lfd, WAIT_MS));
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	CHECK(fd >= 0);
	return fd;
}

/* Read exactly len bytes (or up to EOF) from a host socket. */
static size_t host_read(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		CHECK(readable(fd, WAIT_MS));
		ssize_t n = read(fd, (uint8_t *)buf + got, len - got);
		CHECK(n >= 0);
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return got;
}

/* The host socket was closed by the device: EOF, or a reset when bytes
 * we sent were left unread. */
static bool host_closed(int fd)
{
	char c;

	if (!readable(fd, WAIT_MS))
		return false;
	ssize_t n = read(fd, &c, 1);
	return n == 0 || (n < 0 && errno == ECONNRESET);
}

static void expect(struct t *t, uint16_t op, uint32_t src_port, uint32_t dst_port,
		   struct vsock_hdr *out)
{
	struct vsock_hdr h;

	CHECK_EQ(rx_recv(t, &h, NULL, 0, WAIT_MS), 1);
	if (h.op != op || h.src_port != src_port || h.dst_port != dst_port)
		TAP_FAIL("got op %u %u -> %u, wanted op %u %u -> %u", h.op,
			 h.src_port, h.dst_port, op, src_port, dst_port);
	if (out)
		*out = h;
}

/* Nothing more for the guest (within a short grace). */
static void expect_quiet(struct t *t)
{
	struct vsock_hdr h;

	if (rx_recv(t, &h, NULL, 0, 150))
		TAP_FAIL("unexpected packet op %u %u -> %u", h.op, h.src_port, h.dst_port);
}

/* A guest connection to host port `port` from guest port gport; returns
 * the host's end. */
static int guest_connect(struct t *t, int lfd, uint32_t gport, uint32_t port,
			 struct vsock_hdr *resp)
{
	tx_pkt(t, hdr(VSOCK_OP_REQUEST, gport, port), NULL, 0);
	expect(t, VSOCK_OP_RESPONSE, port, gport, resp);
	return host_accept(lfd);
}

TEST(config_space_and_features)
{
	struct t t;
	uint8_t cfg[8];
	uint64_t cid;

	t_open(&t, 0);
	CHECK_EQ(vhu_fe_queue_num(t.fe), 3);
	CHECK_EQ(vhu_fe_get_config(t.fe, 0, cfg, 8), 0);
	memcpy(&cid, cfg, 8);
	CHECK_EQ(le64toh(cid), CID);
	/* past the 8 bytes, and a guest write: refused */
	CHECK(vhu_fe_get_config(t.fe, 0, cfg, 9) < 0);
	t_close(&t);
	t_open(&t, 0);
	cid = htole64(7);
	CHECK(vhu_fe_set_config(t.fe, 0, &cid, 8, 0) < 0);
	t_close(&t);
}

TEST_LAYOUTS(guest_to_host_stream)
{
	struct t t;
	struct vsock_hdr h;
	uint8_t data[3000], back[3000];
	int fds = tl_count_fds();

	t_open(&t, 0);
	int lfd = host_listen(&t, 5000);
	int fd = guest_connect(&t, lfd, 1234, 5000, &h);
	CHECK_EQ(h.buf_alloc, VHU_VSOCK_BUF_ALLOC_DEFAULT);
	CHECK_EQ(h.fwd_cnt, 0);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 1);
	/* three packets, header and payload each cut in two */
	struct vsock_hdr rw = hdr(VSOCK_OP_RW, 1234, 5000);
	tx_pkt(&t, rw, data, 1000);
	tx_pkt(&t, rw, data + 1000, 1000);
	tx_pkt(&t, rw, data + 2000, 1000);
	CHECK_EQ(host_read(fd, back, sizeof(back)), sizeof(back));
	CHECK_MEM(back, data, sizeof(data));
	/* host to guest */
	CHECK_EQ(write(fd, "hello", 5), 5);
	CHECK_EQ(rx_recv(&t, &h, back, sizeof(back), WAIT_MS), 1);
	CHECK_EQ(h.op, VSOCK_OP_RW);
	CHECK_EQ(h.len, 5);
	CHECK_MEM(back, "hello", 5);
	CHECK_EQ(h.fwd_cnt, 3000);  /* what the host took so far */
	/* the guest stops sending: the host reads EOF, and can still write */
	tx_pkt(&t, (struct vsock_hdr){ .src_cid = CID, .dst_cid = 2, .src_port = 1234,
				       .dst_port = 5000, .type = 1,
				       .op = VSOCK_OP_SHUTDOWN,
				       .flags = VSOCK_SHUTDOWN_SEND,
				       .buf_alloc = GUEST_BUF }, NULL, 0);
	CHECK_EQ(host_read(fd, back, 1), 0);
	CHECK_EQ(write(fd, "x", 1), 1);
	CHECK_EQ(rx_recv(&t, &h, back, sizeof(back), WAIT_MS), 1);
	CHECK_EQ(h.op, VSOCK_OP_RW);
	CHECK_EQ(back[0], 'x');
	/* the host closes: the guest gets the reset that ends the stream */
	close(fd);
	expect(&t, VSOCK_OP_RST, 5000, 1234, NULL);
	struct vhu_vsock_stats s;
	vhu_vsock_get_stats(t.dev, &s);
	CHECK_EQ(s.conns_open, 0);
	CHECK_EQ(s.conns_total, 1);
	CHECK_EQ(s.bytes_to_host, 3000);
	CHECK_EQ(s.bytes_to_guest, 6);
	t_close(&t);
	CHECK_EQ(tl_count_fds(), fds);
}

/* The guest closes (SHUTDOWN both ways): bytes still in flight reach the
 * host before its EOF, and the guest gets the RST that completes its
 * close. */
TEST(guest_close_flushes_then_resets)
{
	struct t t;
	uint8_t back[8];

	t_open(&t, 0);
	int lfd = host_listen(&t, 5000);
	int fd = guest_connect(&t, lfd, 1234, 5000, NULL);
	tx_pkt(&t, hdr(VSOCK_OP_RW, 1234, 5000), "bye", 3);
	struct vsock_hdr sh = hdr(VSOCK_OP_SHUTDOWN, 1234, 5000);
	sh.flags = VSOCK_SHUTDOWN_BOTH;
	tx_pkt(&t, sh, NULL, 0);
	expect(&t, VSOCK_OP_RST, 5000, 1234, NULL);
	CHECK_EQ(host_read(fd, back, sizeof(back)), 3);
	CHECK_MEM(back, "bye", 3);
	close(fd);
	expect_quiet(&t);
	t_close(&t);
}

TEST(connect_to_nobody_is_refused)
{
	struct t t;

	t_open(&t, 0);
	tx_pkt(&t, hdr(VSOCK_OP_REQUEST, 1234, 6000), NULL, 0);
	expect(&t, VSOCK_OP_RST, 6000, 1234, NULL);
	/* a listener that went away (stale socket file): refused too */
	int lfd = host_listen(&t, 6001);
	close(lfd);
	t.nlisteners--;
	tx_pkt(&t, hdr(VSOCK_OP_REQUEST, 1235, 6001), NULL, 0);
	expect(&t, VSOCK_OP_RST, 6001, 1235, NULL);
	t_close(&t);
}

/*
 * Packets that break the rules: the ones without a usable header or from
 * the wrong address are dropped, those naming a connection that does not
 * exist or misbehaving on one get a reset; the device goes on serving.
 */
TEST_LAYOUTS(malformed_packets_reset_or_drop)
{
	struct t t;
	uint8_t pkt[VSOCK_HDR_SIZE + 64] = { 0 };
	struct vsock_hdr h;
	uint8_t back[16];
	int fds = tl_count_fds();

	t_open(&t, 4096);
	int lfd = host_listen(&t, 5000);
	int fd = guest_connect(&t, lfd, 1234, 5000, NULL);

	/* shorter than a header, in one and in several buffers */
	h = hdr(VSOCK_OP_REQUEST, 1, 5000);
	vsock_hdr_encode(&h, pkt);
	tx_raw(&t, pkt, 10, NULL, 0);
	size_t cuts[3] = { 5, 20, 30 };
	tx_raw(&t, pkt, 43, cuts, 3);
	/* no readable buffer at all */
	tx_raw(&t, pkt, 0, NULL, 0);
	/* len past the chain, and a huge len */
	h = hdr(VSOCK_OP_RW, 1234, 5000);
	h.len = 65;
	vsock_hdr_encode(&h, pkt);
	tx_raw(&t, pkt, sizeof(pkt), NULL, 0);
	h.len = UINT32_MAX;
	vsock_hdr_encode(&h, pkt);
	tx_raw(&t, pkt, sizeof(pkt), NULL, 0);
	/* the wrong source or destination CID */
	h = hdr(VSOCK_OP_REQUEST, 1, 5000);
	h.src_cid = CID + 1;
	tx_pkt(&t, h, NULL, 0);
	h = hdr(VSOCK_OP_REQUEST, 1, 5000);
	h.dst_cid = 7;
	tx_pkt(&t, h, NULL, 0);
	h = hdr(VSOCK_OP_RW, 1234, 5000);
	h.src_cid = (uint64_t)CID << 32 | CID;   /* only the low half right */
	tx_pkt(&t, h, "zz", 2);
	expect_quiet(&t);
	struct vhu_vsock_stats s;
	vhu_vsock_get_stats(t.dev, &s);
	CHECK(s.pkts_dropped >= 8);

	/* no such connection: reset, for every op but RST itself */
	tx_pkt(&t, hdr(VSOCK_OP_RW, 999, 5000), "data", 4);
	expect(&t, VSOCK_OP_RST, 5000, 999, NULL);
	tx_pkt(&t, hdr(VSOCK_OP_CREDIT_REQUEST, 998, 5000), NULL, 0);
	expect(&t, VSOCK_OP_RST, 5000, 998, NULL);
	tx_pkt(&t, hdr(VSOCK_OP_RST, 997, 5000), NULL, 0);
	expect_quiet(&t);
	/* a seqpacket request (not offered) and an unknown type */
	h = hdr(VSOCK_OP_REQUEST, 996, 5000);
	h.type = VSOCK_TYPE_SEQPACKET;
	tx_pkt(&t, h, NULL, 0);
	struct vsock_hdr r;
	expect(&t, VSOCK_OP_RST, 5000, 996, &r);
	CHECK_EQ(r.type, VSOCK_TYPE_SEQPACKET);
	h.type = 77;
	tx_pkt(&t, h, NULL, 0);
	expect(&t, VSOCK_OP_RST, 5000, 996, &r);
	CHECK_EQ(r.type, 77);

	/* a seqpacket packet with the live connection's ports: reset in its
	 * own type, the stream connection untouched */
	h = hdr(VSOCK_OP_RW, 1234, 5000);
	h.type = VSOCK_TYPE_SEQPACKET;
	tx_pkt(&t, h, "sq", 2);
	expect(&t, VSOCK_OP_RST, 5000, 1234, &r);
	CHECK_EQ(r.type, VSOCK_TYPE_SEQPACKET);
	/* on the live connection: the data before it still arrives */
	tx_pkt(&t, hdr(VSOCK_OP_RW, 1234, 5000), "ok", 2);
	CHECK_EQ(host_read(fd, back, 2), 2);
	CHECK_MEM(back, "ok", 2);
	/* an unknown op resets it, and the host sees it close */
	tx_pkt(&t, hdr(99, 1234, 5000), NULL, 0);
	expect(&t, VSOCK_OP_RST, 5000, 1234, NULL);
	CHECK_EQ(host_read(fd, back, 1), 0);
	close(fd);

	/* a second REQUEST on a live connection resets it */
	fd = guest_connect(&t, lfd, 1300, 5000, NULL);
	tx_pkt(&t, hdr(VSOCK_OP_REQUEST, 1300, 5000), NULL, 0);
	expect(&t, VSOCK_OP_RST, 5000, 1300, NULL);
	CHECK_EQ(host_read(fd, back, 1), 0);
	close(fd);

	/* more than the credit we gave (4096): reset, nothing of it
	 * delivered */
	fd = guest_connect(&t, lfd, 1301, 5000, &h);
	CHECK_EQ(h.buf_alloc, 4096);
	static uint8_t big[4097];
	tx_pkt(&t, hdr(VSOCK_OP_RW, 1301, 5000), big, sizeof(big));
	expect(&t, VSOCK_OP_RST, 5000, 1301, NULL);
	CHECK_EQ(host_read(fd, back, 1), 0);
	close(fd);

	/* after all that, a new connection works both ways */
	fd = guest_connect(&t, lfd, 1400, 5000, NULL);
	tx_pkt(&t, hdr(VSOCK_OP_RW, 1400, 5000), "fine", 4);
	CHECK_EQ(host_read(fd, back, 4), 4);
	CHECK_MEM(back, "fine", 4);
	CHECK_EQ(write(fd, "yes", 3), 3);
	CHECK_EQ(rx_recv(&t, &h, back, sizeof(back), WAIT_MS), 1);
	CHECK_EQ(h.op, VSOCK_OP_RW);
	CHECK_MEM(back, "yes", 3);
	close(fd);
	expect(&t, VSOCK_OP_RST, 5000, 1400, NULL);
	t_close(&t);
	CHECK_EQ(tl_count_fds(), fds);
}

/* Host to guest: never more in flight than the guest's buf_alloc; a
 * CREDIT_UPDATE lets the rest through, every byte in order. */
TEST_LAYOUTS(host_to_guest_respects_guest_credit)
{
	struct t t;
	struct vsock_hdr h;
	static uint8_t data[65536], got[65536];
	const uint32_t gbuf = 8192;

	t_open(&t, 0);
	int lfd = host_listen(&t, 5000);
	struct vsock_hdr req = hdr(VSOCK_OP_REQUEST, 1234, 5000);
	req.buf_alloc = gbuf;
	tx_pkt(&t, req, NULL, 0);
	expect(&t, VSOCK_OP_RESPONSE, 5000, 1234, NULL);
	int fd = host_accept(lfd);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i ^ i >> 8);
	CHECK_EQ(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));
	uint32_t total = 0, fwd = 0;
	while (total < sizeof(data)) {
		/* take everything the credit allows */
		while (total - fwd < gbuf) {
			CHECK_EQ(rx_recv(&t, &h, got + total, sizeof(got) - total, WAIT_MS), 1);
			CHECK_EQ(h.op, VSOCK_OP_RW);
			total += h.len;
			CHECK(total - fwd <= gbuf);
		}
		/* and then nothing until the guest consumed some */
		expect_quiet(&t);
		fwd = total;
		struct vsock_hdr cu = hdr(VSOCK_OP_CREDIT_UPDATE, 1234, 5000);
		cu.buf_alloc = gbuf;
		cu.fwd_cnt = fwd;
		tx_pkt(&t, cu, NULL, 0);
	}
	CHECK_EQ(total, sizeof(data));
	CHECK_MEM(got, data, sizeof(data));
	close(fd);
	expect(&t, VSOCK_OP_RST, 5000, 1234, NULL);
	t_close(&t);
}

/*
 * Guest to host with a host that does not read: the guest spends its
 * credit, the device holds at most buf_alloc bytes and sends no credit
 * back; when the host reads, every byte arrives in order and a
 * CREDIT_UPDATE gives the guest its credit again.
 */
TEST_LAYOUTS(slow_host_reader_holds_the_guest)
{
	struct t t;
	struct vsock_hdr h;
	const uint32_t buf = 4096;
	static uint8_t chunk[1024], back[1024];

	t_open(&t, buf);
	int lfd = host_listen(&t, 5000);
	int fd = guest_connect(&t, lfd, 1234, 5000, &h);
	uint32_t peer_buf = h.buf_alloc, peer_fwd = h.fwd_cnt, sent = 0;
	CHECK_EQ(peer_buf, buf);
	/* Send while there is credit; take credit updates as they come. */
	for (int round = 0; round < 100000; round++) {
		while (rx_recv(&t, &h, NULL, 0, 0)) {
			CHECK_EQ(h.op, VSOCK_OP_CREDIT_UPDATE);
			peer_buf = h.buf_alloc;
			peer_fwd = h.fwd_cnt;
		}
		uint32_t credit = vsock_credit_free(peer_buf, peer_fwd, sent);
		if (!credit) {
			/* out of credit: wait a little for an update */
			if (!rx_recv(&t, &h, NULL, 0, 300))
				break;
			CHECK_EQ(h.op, VSOCK_OP_CREDIT_UPDATE);
			peer_buf = h.buf_alloc;
			peer_fwd = h.fwd_cnt;
			continue;
		}
		uint32_t n = credit < sizeof(chunk) ? credit : sizeof(chunk);
		for (uint32_t i = 0; i < n; i++)
			chunk[i] = (uint8_t)((sent + i) * 13);
		tx_pkt(&t, hdr(VSOCK_OP_RW, 1234, 5000), chunk, n);
		sent += n;
	}
	/* The guest is held back: the host's socket and our buffer are full. */
	CHECK_EQ(vsock_credit_free(peer_buf, peer_fwd, sent), 0);
	CHECK(sent >= buf);
	struct vhu_vsock_stats s;
	vhu_vsock_get_stats(t.dev, &s);
	CHECK_EQ(s.bytes_to_host + buf, sent);   /* exactly buf_alloc held */
	/* The host reads it all, in order. */
	for (uint32_t at = 0; at < sent;) {
		uint32_t n = sent - at < sizeof(back) ? sent - at : sizeof(back);
		CHECK_EQ(host_read(fd, back, n), n);
		for (uint32_t i = 0; i < n; i++)
			if (back[i] != (uint8_t)((at + i) * 13))
				TAP_FAIL("byte %u differs", at + i);
		at += n;
	}
	/* and the guest hears it may send again */
	CHECK_EQ(rx_recv(&t, &h, NULL, 0, WAIT_MS), 1);
	CHECK_EQ(h.op, VSOCK_OP_CREDIT_UPDATE);
	CHECK_EQ(h.fwd_cnt, sent);
	CHECK_EQ(vsock_credit_free(h.buf_alloc, h.fwd_cnt, sent), buf);
	close(fd);
	t_close(&t);
}

static int host_dial(struct t *t)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	CHECK(fd >= 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", t->uds);
	CHECK_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* The hybrid-vsock handshake: CONNECT <port>, the guest's REQUEST and
 * RESPONSE, "OK <host-port>", then a stream (bytes written right after
 * the line included). */
TEST_LAYOUTS(host_connects_to_guest)
{
	struct t t;
	struct vsock_hdr h;
	char line[64];

	t_open(&t, 0);
	int fd = host_dial(&t);
	const char req[] = "CONNECT 7000\nearly";
	CHECK_EQ(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	CHECK_EQ(rx_recv(&t, &h, NULL, 0, WAIT_MS), 1);
	CHECK_EQ(h.op, VSOCK_OP_REQUEST);
	CHECK_EQ(h.dst_port, 7000);
	uint32_t hport = h.src_port;
	CHECK(hport >= 1u << 30);
	/* nothing reaches the host before the guest accepted */
	CHECK(!readable(fd, 100));
	struct vsock_hdr resp = hdr(VSOCK_OP_RESPONSE, 7000, hport);
	tx_pkt(&t, resp, NULL, 0);
	int n = snprintf(line, sizeof(line), "OK %u\n", hport);
	char got[64] = { 0 };
	CHECK_EQ(host_read(fd, got, (size_t)n), (size_t)n);
	CHECK_MEM(got, line, (size_t)n);
	CHECK_EQ(rx_recv(&t, &h, got, sizeof(got), WAIT_MS), 1);
	CHECK_EQ(h.op, VSOCK_OP_RW);
	CHECK_EQ(h.len, 5);
	CHECK_MEM(got, "early", 5);
	tx_pkt(&t, hdr(VSOCK_OP_RW, 7000, hport), "back", 4);
	CHECK_EQ(host_read(fd, got, 4), 4);
	CHECK_MEM(got, "back", 4);
	/* the guest resets: the host sees EOF */
	tx_pkt(&t, hdr(VSOCK_OP_RST, 7000, hport), NULL, 0);
	CHECK_EQ(host_read(fd, got, 1), 0);
	close(fd);

	/* refused by the guest: closed without OK */
	fd = host_dial(&t);
	CHECK_EQ(write(fd, "connect 7001\n", 13), 13);
	CHECK_EQ(rx_recv(&t, &h, NULL, 0, WAIT_MS), 1);
	CHECK_EQ(h.op, VSOCK_OP_REQUEST);
	tx_pkt(&t, hdr(VSOCK_OP_RST, 7001, h.src_port), NULL, 0);
	CHECK_EQ(host_read(fd, got, 1), 0);
	close(fd);

	/* a line that is not CONNECT, and one too long: closed */
	fd = host_dial(&t);
	CHECK_EQ(write(fd, "HELLO 1\n", 8), 8);
	CHECK(host_closed(fd));
	close(fd);
	fd = host_dial(&t);
	memset(line, '1', sizeof(line));
	memcpy(line, "CONNECT ", 8);
	CHECK_EQ(write(fd, line, sizeof(line)), (ssize_t)sizeof(line));
	CHECK(host_closed(fd));
	close(fd);
	expect_quiet(&t);
	t_close(&t);
}

/* The event queue's first buffer reports TRANSPORT_RESET once per life
 * of the connection table: at the first start, and after a front-end
 * left (a reconnecting front-end's guest still has sockets the table no
 * longer knows). */
static void event_add(struct t *t, uint8_t *buf, uint64_t gpa, uint32_t len)
{
	memset(buf, 0xee, 8);
	CHECK(vhu_fe_vq_add(t->evq, NULL, 0, &(struct vhu_fe_buf){ gpa, len }, 1,
			    buf) >= 0);
	CHECK(vhu_fe_vq_kick(t->evq) >= 0);
}

static bool event_got(struct t *t, uint8_t *buf, int ms)
{
	void *tag;
	uint32_t len;
	int r;

	while ((r = vhu_fe_vq_get_used(t->evq, &tag, &len)) == 0)
		if (vhu_fe_vq_wait(t->evq, ms) != 1)
			return false;
	CHECK_EQ(r, 1);
	CHECK(tag == buf);
	return len == 4 && !memcmp(buf, "\0\0\0\0", 4) && buf[4] == 0xee;
}

TEST(transport_reset_event)
{
	struct t t;
	uint64_t gpa;

	t_open(&t, 0);
	uint8_t *ev = vhu_fe_alloc(t.fe, 16, 8, &gpa);
	CHECK(ev != NULL);
	/* a buffer too small for the event is handed back unwritten */
	event_add(&t, ev, gpa, 3);
	void *tag;
	uint32_t len;
	CHECK_EQ(vhu_fe_vq_wait(t.evq, WAIT_MS), 1);
	CHECK_EQ(vhu_fe_vq_get_used(t.evq, &tag, &len), 1);
	CHECK_EQ(len, 0);
	event_add(&t, ev, gpa, 8);
	CHECK(event_got(&t, ev, WAIT_MS));
	event_add(&t, ev, gpa, 8);
	CHECK(!event_got(&t, ev, 150));   /* once */

	/* the front-end leaves and comes back: reported again */
	vhu_fe_close(t.fe);
	t.fe = NULL;
	CHECK_EQ(vhu_fe_connect(&t.fe, t.sock, NULL), 0);
	uint64_t f = vhu_fe_features_offered(t.fe) & ~VHU_BIT(VHU_F_RING_PACKED);
	CHECK_EQ(vhu_fe_set_features(t.fe, f), 0);
	CHECK_EQ(vhu_fe_add_memory(t.fe, 1u << 20), 0);
	CHECK_EQ(vhu_fe_vq_setup(t.fe, 2, QSIZE, &t.evq), 0);
	ev = vhu_fe_alloc(t.fe, 16, 8, &gpa);
	CHECK(ev != NULL);
	event_add(&t, ev, gpa, 8);
	CHECK(event_got(&t, ev, WAIT_MS));
	t_close(&t);
}

/* Host programs that never finish their CONNECT line, and guests that
 * never answer the REQUEST, are given up on; an answered one stays. */
TEST(connect_deadlines)
{
	struct t t;
	struct vsock_hdr h;
	char got[32];

	t_timeout_ms = 300;
	t_open(&t, 0);
	t_timeout_ms = 0;
	int quiet = host_dial(&t), partial = host_dial(&t);
	CHECK_EQ(write(partial, "CONN", 4), 4);
	CHECK(host_closed(quiet));
	CHECK(host_closed(partial));
	close(quiet);
	close(partial);

	/* the guest hears the REQUEST and never answers */
	int fd = host_dial(&t);
	CHECK_EQ(write(fd, "CONNECT 7000\n", 13), 13);
	CHECK_EQ(rx_recv(&t, &h, NULL, 0, WAIT_MS), 1);
	CHECK_EQ(h.op, VSOCK_OP_REQUEST);
	uint32_t hport = h.src_port;
	CHECK(host_closed(fd));
	close(fd);
	expect(&t, VSOCK_OP_RST, hport, 7000, NULL);

	/* answered in time: still open long after the timeout */
	fd = host_dial(&t);
	CHECK_EQ(write(fd, "CONNECT 7001\n", 13), 13);
	CHECK_EQ(rx_recv(&t, &h, NULL, 0, WAIT_MS), 1);
	hport = h.src_port;
	tx_pkt(&t, hdr(VSOCK_OP_RESPONSE, 7001, hport), NULL, 0);
	int n = snprintf(got, sizeof(got), "OK %u\n", hport);
	CHECK_EQ(host_read(fd, got, (size_t)n), (size_t)n);
	usleep(900 * 1000);
	tx_pkt(&t, hdr(VSOCK_OP_RW, 7001, hport), "still", 5);
	CHECK_EQ(host_read(fd, got, 5), 5);
	CHECK_MEM(got, "still", 5);
	close(fd);
	expect(&t, VSOCK_OP_RST, hport, 7001, NULL);
	t_close(&t);
}

static uint64_t rnd_state = 0x2545f4914f6cdd1dull;

static uint32_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return (uint32_t)(rnd_state >> 11);
}

/*
 * Thousands of packets with random fields (ops, types, ports around the
 * live connections, lengths near and past the chain, flags, credit
 * numbers) cut into random buffers, on both layouts: the device answers
 * or drops each without breaking, its host sockets see only bytes the
 * guest sent on their connection, and afterwards a new connection works
 * and nothing leaked.
 */
TEST_LAYOUTS(random_packets_survive)
{
	struct t t;
	static uint8_t pkt[VSOCK_HDR_SIZE + 256];
	struct vsock_hdr h;
	uint8_t back[64];
	int fds = tl_count_fds();

	t_open(&t, 8192);
	int lfd = host_listen(&t, 5000);
	int live = guest_connect(&t, lfd, 1234, 5000, NULL);
	for (int i = 0; i < 3000; i++) {
		h = hdr((uint16_t)(rnd() % 9), 1233 + rnd() % 3, 4999 + rnd() % 3);
		if (rnd() % 8 == 0)
			h.type = (uint16_t)(rnd() % 4);
		if (rnd() % 16 == 0)
			h.src_cid = rnd() % 2 ? CID + 1 : (uint64_t)rnd() << 32 | CID;
		if (rnd() % 16 == 0)
			h.dst_cid = rnd() % 4;
		h.flags = rnd() % 4 ? 0 : rnd();
		h.buf_alloc = rnd() % 4 ? GUEST_BUF : rnd();
		h.fwd_cnt = rnd() % 4 ? 0 : rnd();
		uint32_t body = rnd() % 200;
		h.len = rnd() % 4 ? body : rnd() % 2 ? body + 1 + rnd() % 64 : rnd();
		vsock_hdr_encode(&h, pkt);
		for (uint32_t k = 0; k < body; k++)
			pkt[VSOCK_HDR_SIZE + k] = (uint8_t)rnd();
		size_t total = rnd() % 16 ? VSOCK_HDR_SIZE + body : rnd() % (VSOCK_HDR_SIZE + body + 1);
		size_t cuts[4];
		unsigned nc = rnd() % 5;
		for (unsigned k = 0; k < nc; k++)
			cuts[k] = total ? rnd() % total : 0;
		for (unsigned a = 0; a < nc; a++)       /* sorted */
			for (unsigned b = a + 1; b < nc; b++)
				if (cuts[b] < cuts[a]) {
					size_t x = cuts[a];
					cuts[a] = cuts[b];
					cuts[b] = x;
				}
		tx_raw(&t, pkt, total, cuts, nc);
		/* take what the device answered, keep the rx ring supplied */
		while (rx_recv(&t, &h, NULL, 0, 0))
			;
	}
	/* the host ends of whatever got connected: drain and close */
	for (;;) {
		struct pollfd p = { .fd = lfd, .events = POLLIN };
		if (poll(&p, 1, 0) != 1)
			break;
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		CHECK(fd >= 0);
		close(fd);
	}
	close(live);
	/* the last answers, until the device is quiet */
	while (rx_recv(&t, &h, NULL, 0, 300))
		;
	/* still serving: a new connection, both ways */
	int fd = guest_connect(&t, lfd, 2000, 5000, NULL);
	tx_pkt(&t, hdr(VSOCK_OP_RW, 2000, 5000), "alive", 5);
	CHECK_EQ(host_read(fd, back, 5), 5);
	CHECK_MEM(back, "alive", 5);
	CHECK_EQ(write(fd, "yes", 3), 3);
	for (;;) {
		CHECK_EQ(rx_recv(&t, &h, back, sizeof(back), WAIT_MS), 1);
		if (h.op == VSOCK_OP_RW && h.dst_port == 2000)
			break;
	}
	CHECK_MEM(back, "yes", 3);
	close(fd);
	struct vhu_vsock_stats st;
	vhu_vsock_get_stats(t.dev, &st);
	CHECK(st.pkts_dropped > 100);
	CHECK(st.rst_sent > 100);
	t_close(&t);
	CHECK_EQ(tl_count_fds(), fds);
}

/*
 * Seqpacket (guest-initiated): a seqpacket REQUEST reaches a seqpacket
 * listener; each guest message, whatever packets carry it, is one host
 * record; each host record reaches the guest as packets of which only the
 * last has EOM; the types must match on both sides.
 */
TEST_LAYOUTS(seqpacket_messages_keep_their_boundaries)
{
	struct t t;
	struct vsock_hdr h, rq;
	static uint8_t big[10000], got[10000];
	char buf[64];

	t_open(&t, 0);
	int slfd = host_listen_type(&t, 6000, SOCK_SEQPACKET);
	host_listen(&t, 6001);
	rq = hdr(VSOCK_OP_REQUEST, 1234, 6000);
	rq.type = VSOCK_TYPE_SEQPACKET;
	tx_pkt(&t, rq, NULL, 0);
	expect(&t, VSOCK_OP_RESPONSE, 6000, 1234, &h);
	CHECK_EQ(h.type, VSOCK_TYPE_SEQPACKET);
	int fd = host_accept(slfd);

	/* one message in two packets, three in one each, an empty one */
	struct vsock_hdr rw = hdr(VSOCK_OP_RW, 1234, 6000);
	rw.type = VSOCK_TYPE_SEQPACKET;
	tx_pkt(&t, rw, "hello ", 6);
	CHECK(!readable(fd, 100));          /* not a record yet */
	rw.flags = VSOCK_SEQ_EOM;
	tx_pkt(&t, rw, "world", 5);
	CHECK(readable(fd, WAIT_MS));
	CHECK_EQ(recv(fd, buf, sizeof(buf), 0), 11);
	CHECK_MEM(buf, "hello world", 11);
	tx_pkt(&t, rw, "a", 1);
	tx_pkt(&t, rw, "bb", 2);
	tx_pkt(&t, rw, NULL, 0);
	tx_pkt(&t, rw, "ccc", 3);
	CHECK(readable(fd, WAIT_MS));
	CHECK_EQ(recv(fd, buf, sizeof(buf), 0), 1);
	CHECK_EQ(recv(fd, buf, sizeof(buf), 0), 2);
	CHECK_EQ(recv(fd, buf, sizeof(buf), 0), 0);
	CHECK_EQ(recv(fd, buf, sizeof(buf), 0), 3);
	CHECK_MEM(buf, "ccc", 3);

	/* a host record larger than an rx buffer, then two small ones */
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 31 + 7);
	CHECK_EQ(send(fd, big, sizeof(big), 0), (ssize_t)sizeof(big));
	CHECK_EQ(send(fd, "x", 1, 0), 1);
	CHECK_EQ(send(fd, "yy", 2, 0), 2);
	uint32_t total = 0;
	for (;;) {
		CHECK_EQ(rx_recv(&t, &h, got + total, sizeof(got) - total, WAIT_MS), 1);
		CHECK_EQ(h.op, VSOCK_OP_RW);
		CHECK_EQ(h.type, VSOCK_TYPE_SEQPACKET);
		total += h.len;
		CHECK(total <= sizeof(big));
		if (h.flags & VSOCK_SEQ_EOM)
			break;
	}
	CHECK_EQ(total, sizeof(big));
	CHECK_MEM(got, big, sizeof(big));
	CHECK_EQ(rx_recv(&t, &h, buf, sizeof(buf), WAIT_MS), 1);
	CHECK(h.len == 1 && (h.flags & VSOCK_SEQ_EOM) && buf[0] == 'x');
	CHECK_EQ(rx_recv(&t, &h, buf, sizeof(buf), WAIT_MS), 1);
	CHECK(h.len == 2 && (h.flags & VSOCK_SEQ_EOM) && !memcmp(buf, "yy", 2));

	/* the host closes: the guest gets the reset */
	close(fd);
	for (;;) {
		CHECK_EQ(rx_recv(&t, &h, NULL, 0, WAIT_MS), 1);
		if (h.op == VSOCK_OP_RST)
			break;
		CHECK_EQ(h.op, VSOCK_OP_SHUTDOWN);
	}
	CHECK_EQ(h.type, VSOCK_TYPE_SEQPACKET);

	/* types must match: seqpacket to a stream listener, stream to a
	 * seqpacket one */
	rq = hdr(VSOCK_OP_REQUEST, 1300, 6001);
	rq.type = VSOCK_TYPE_SEQPACKET;
	tx_pkt(&t, rq, NULL, 0);
	expect(&t, VSOCK_OP_RST, 6001, 1300, &h);
	CHECK_EQ(h.type, VSOCK_TYPE_SEQPACKET);
	tx_pkt(&t, hdr(VSOCK_OP_REQUEST, 1301, 6000), NULL, 0);
	expect(&t, VSOCK_OP_RST, 6000, 1301, &h);
	CHECK_EQ(h.type, VSOCK_TYPE_STREAM);
	t_close(&t);

	/* not negotiated: refused even with a seqpacket listener */
	t_features_clear = VHU_BIT(VSOCK_F_SEQPACKET);
	t_open(&t, 0);
	t_features_clear = 0;
	host_listen_type(&t, 6000, SOCK_SEQPACKET);
	rq = hdr(VSOCK_OP_REQUEST, 1234, 6000);
	rq.type = VSOCK_TYPE_SEQPACKET;
	tx_pkt(&t, rq, NULL, 0);
	expect(&t, VSOCK_OP_RST, 6000, 1234, NULL);
	t_close(&t);
}

/* A seqpacket host reader that does not read: whole messages wait within
 * the credit, none is split or lost, and the guest is held back. */
TEST(seqpacket_slow_host_reader)
{
	struct t t;
	struct vsock_hdr h;
	static uint8_t msg[1000], back[2000];

	t_open(&t, 4096);
	int slfd = host_listen_type(&t, 6000, SOCK_SEQPACKET);
	struct vsock_hdr rq = hdr(VSOCK_OP_REQUEST, 1234, 6000);
	rq.type = VSOCK_TYPE_SEQPACKET;
	tx_pkt(&t, rq, NULL, 0);
	expect(&t, VSOCK_OP_RESPONSE, 6000, 1234, &h);
	int fd = host_accept(slfd);
	uint32_t pbuf = h.buf_alloc, pfwd = h.fwd_cnt, sent = 0, nmsg = 0;
	struct vsock_hdr rw = hdr(VSOCK_OP_RW, 1234, 6000);
	rw.type = VSOCK_TYPE_SEQPACKET;
	/* messages of 1000 bytes, each in two packets, while credit lasts */
	for (int round = 0; round < 100000; round++) {
		while (rx_recv(&t, &h, NULL, 0, 0)) {
			CHECK_EQ(h.op, VSOCK_OP_CREDIT_UPDATE);
			pbuf = h.buf_alloc;
			pfwd = h.fwd_cnt;
		}
		if (vsock_credit_free(pbuf, pfwd, sent) < sizeof(msg)) {
			if (!rx_recv(&t, &h, NULL, 0, 300))
				break;
			CHECK_EQ(h.op, VSOCK_OP_CREDIT_UPDATE);
			pbuf = h.buf_alloc;
			pfwd = h.fwd_cnt;
			continue;
		}
		memset(msg, (int)(nmsg & 0xff), sizeof(msg));
		rw.flags = 0;
		tx_pkt(&t, rw, msg, 400);
		rw.flags = VSOCK_SEQ_EOM;
		tx_pkt(&t, rw, msg + 400, 600);
		sent += sizeof(msg);
		nmsg++;
	}
	CHECK(nmsg > 4);
	CHECK(vsock_credit_free(pbuf, pfwd, sent) < sizeof(msg));
	for (uint32_t i = 0; i < nmsg; i++) {
		CHECK(readable(fd, WAIT_MS));
		CHECK_EQ(recv(fd, back, sizeof(back), 0), (ssize_t)sizeof(msg));
		CHECK(back[0] == (uint8_t)i && back[999] == (uint8_t)i);
	}
	CHECK(!readable(fd, 100));
	close(fd);
	t_close(&t);
}

/* Empty messages take no credit: a guest that floods a host that does
 * not read with them is reset once buf_alloc of them wait (the bound on
 * what the device keeps for them), and the device goes on. */
TEST(seqpacket_empty_message_flood_resets)
{
	struct t t;
	struct vsock_hdr h;

	t_open(&t, 4096);
	int slfd = host_listen_type(&t, 6000, SOCK_SEQPACKET);
	struct vsock_hdr rq = hdr(VSOCK_OP_REQUEST, 1234, 6000);
	rq.type = VSOCK_TYPE_SEQPACKET;
	tx_pkt(&t, rq, NULL, 0);
	expect(&t, VSOCK_OP_RESPONSE, 6000, 1234, NULL);
	int fd = host_accept(slfd);
	struct vsock_hdr rw = hdr(VSOCK_OP_RW, 1234, 6000);
	rw.type = VSOCK_TYPE_SEQPACKET;
	rw.flags = VSOCK_SEQ_EOM;
	bool reset = false;
	int i;
	for (i = 0; i < 20000 && !reset; i++) {
		tx_pkt(&t, rw, NULL, 0);
		while (!reset && rx_recv(&t, &h, NULL, 0, 0))
			reset = h.op == VSOCK_OP_RST;
	}
	CHECK(reset);
	CHECK(i > 4096);   /* not before buf_alloc of them waited */
	/* packets sent before the reset showed get resets of their own */
	while (rx_recv(&t, &h, NULL, 0, 150))
		CHECK_EQ(h.op, VSOCK_OP_RST);
	close(fd);
	/* still serving */
	rq.src_port = 1235;
	tx_pkt(&t, rq, NULL, 0);
	expect(&t, VSOCK_OP_RESPONSE, 6000, 1235, NULL);
	close(host_accept(slfd));
	t_close(&t);
}

static int64_t cpu_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (int64_t)ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000 +
	       (int64_t)ru.ru_stime.tv_sec * 1000 + ru.ru_stime.tv_usec / 1000;
}

/*
 * Out of file descriptors, the device cannot accept host connections: it
 * must stop watching the listener (not spin on a backlog it cannot take)
 * and take them once one of its host sockets closes.
 */
TEST(out_of_fds_pauses_the_host_listener)
{
	struct t t;
	struct rlimit old, low;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct vsock_hdr h;
	int cl[3];

	t_open(&t, 0);
	int lfd = host_listen(&t, 5000);
	int fd = guest_connect(&t, lfd, 1234, 5000, NULL);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", t.uds);
	for (int i = 0; i < 3; i++)
		CHECK((cl[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
	/* no new descriptor from here on: the lowest free number is the limit */
	int lowest = dup(0);
	CHECK(lowest >= 0);
	close(lowest);
	CHECK_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = (rlim_t)lowest;
	CHECK_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(connect(cl[i], (struct sockaddr *)&a, sizeof(a)), 0);
	usleep(100 * 1000);
	int64_t c0 = cpu_ms(), w0 = tl_now_ms();
	usleep(500 * 1000);
	int64_t spent = cpu_ms() - c0, wall = tl_now_ms() - w0;
	CHECK_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
	/* a loop spinning on the listener burns about the whole time */
	if (spent * 2 > wall)
		TAP_FAIL("%lld ms of CPU in %lld ms while paused", (long long)spent,
			 (long long)wall);
	/* nothing was accepted: a CONNECT now is not read yet */
	CHECK_EQ(write(cl[0], "CONNECT 7000\n", 13), 13);
	expect_quiet(&t);
	/* a host socket closes (the guest resets its connection): the
	 * waiting host programs are taken */
	tx_pkt(&t, hdr(VSOCK_OP_RST, 1234, 5000), NULL, 0);
	CHECK(host_closed(fd));
	close(fd);
	CHECK_EQ(rx_recv(&t, &h, NULL, 0, WAIT_MS), 1);
	CHECK_EQ(h.op, VSOCK_OP_REQUEST);
	CHECK_EQ(h.dst_port, 7000);
	for (int i = 0; i < 3; i++)
		close(cl[i]);
	t_close(&t);
}

/* Many connections at once, each a stream both ways; all counted, all
 * gone at the end. */
TEST(a_thousand_connections)
{
	struct t t;
	enum { N = 1000 };
	static int fds[N];
	struct vsock_hdr h;
	char buf[16];
	struct vhu_vsock_stats st;

	t_open(&t, 0);
	int lfd = host_listen(&t, 5000);
	for (int i = 0; i < N; i++)
		fds[i] = guest_connect(&t, lfd, 10000 + (uint32_t)i, 5000, NULL);
	vhu_vsock_get_stats(t.dev, &st);
	CHECK_EQ(st.conns_open, N);
	for (int i = 0; i < N; i++) {
		snprintf(buf, sizeof(buf), "%08d", i);
		tx_pkt(&t, hdr(VSOCK_OP_RW, 10000 + (uint32_t)i, 5000), buf, 8);
	}
	for (int i = 0; i < N; i++) {
		char want[16];
		snprintf(want, sizeof(want), "%08d", i);
		CHECK_EQ(host_read(fds[i], buf, 8), 8);
		CHECK_MEM(buf, want, 8);
		CHECK_EQ(write(fds[i], want, 8), 8);
	}
	bool seen[N] = { false };
	for (int i = 0; i < N; i++) {
		CHECK_EQ(rx_recv(&t, &h, buf, sizeof(buf), WAIT_MS), 1);
		CHECK_EQ(h.op, VSOCK_OP_RW);
		uint32_t k = h.dst_port - 10000;
		CHECK(k < N && !seen[k]);
		seen[k] = true;
		char want[16];
		snprintf(want, sizeof(want), "%08u", k);
		CHECK_MEM(buf, want, 8);
	}
	for (int i = 0; i < N; i++)
		close(fds[i]);
	/* each ends with RST, after a SHUTDOWN when the device read the EOF
	 * before it saw the hang-up */
	for (int i = 0; i < N;) {
		CHECK_EQ(rx_recv(&t, &h, NULL, 0, WAIT_MS), 1);
		if (h.op == VSOCK_OP_SHUTDOWN)
			continue;
		CHECK_EQ(h.op, VSOCK_OP_RST);
		i++;
	}
	vhu_vsock_get_stats(t.dev, &st);
	CHECK_EQ(st.conns_open, 0);
	CHECK_EQ(st.conns_total, N);
	t_close(&t);
}

/* A host CONNECT whose REQUEST cannot go out yet (no rx buffers): a guest
 * packet that guesses its ports does not touch it, and the REQUEST still
 * goes out once buffers come. */
TEST(guessed_ports_before_the_request)
{
	struct t t;
	struct vsock_hdr h;
	static uint8_t fill[RXN * RX_PAYLOAD];
	void *tag;
	uint32_t len;

	t_open(&t, 0);
	int lfd = host_listen(&t, 5000);
	struct vsock_hdr req = hdr(VSOCK_OP_REQUEST, 1234, 5000);
	req.buf_alloc = sizeof(fill) * 2;   /* credit for more than all buffers */
	tx_pkt(&t, req, NULL, 0);
	expect(&t, VSOCK_OP_RESPONSE, 5000, 1234, NULL);
	int fd = host_accept(lfd);
	/* the host fills every rx buffer; the test does not give them back */
	CHECK_EQ(write(fd, fill, sizeof(fill)), (ssize_t)sizeof(fill));
	unsigned used = 0;
	while (used < RXN) {
		CHECK_EQ(vhu_fe_vq_wait(t.rxq, WAIT_MS), 1);
		while (vhu_fe_vq_get_used(t.rxq, &tag, &len) == 1)
			used++;
	}
	int hfd = host_dial(&t);
	CHECK_EQ(write(hfd, "CONNECT 7000\n", 13), 13);
	usleep(100 * 1000);
	/* the first port the device hands out, guessed */
	tx_pkt(&t, hdr(VSOCK_OP_RESPONSE, 7000, 1u << 30), NULL, 0);
	tx_pkt(&t, hdr(VSOCK_OP_RW, 7000, 1u << 30), "x", 1);
	CHECK(!readable(hfd, 150));
	/* buffers back: the REQUEST arrives, and the connection works */
	for (unsigned i = 0; i < RXN; i++)
		rx_add(&t, i);
	CHECK(vhu_fe_vq_kick(t.rxq) >= 0);
	uint32_t hport = 0;
	for (int i = 0; i < 200 && !hport; i++) {
		CHECK_EQ(rx_recv(&t, &h, NULL, 0, WAIT_MS), 1);
		if (h.op == VSOCK_OP_REQUEST)
			hport = h.src_port;
	}
	CHECK_EQ(hport, 1u << 30);
	tx_pkt(&t, hdr(VSOCK_OP_RESPONSE, 7000, hport), NULL, 0);
	char got[32];
	int n = snprintf(got, sizeof(got), "OK %u\n", hport);
	char want[32];
	memcpy(want, got, sizeof(want));
	CHECK_EQ(host_read(hfd, got, (size_t)n), (size_t)n);
	CHECK_MEM(got, want, (size_t)n);
	close(hfd);
	close(fd);
	t_close(&t);
}

/* The front-end leaves: every host socket of its guest closes. */
TEST(disconnect_closes_host_sockets)
{
	struct t t;
	char c;

	t_open(&t, 0);
	int lfd = host_listen(&t, 5000);
	int fd = guest_connect(&t, lfd, 1234, 5000, NULL);
	vhu_fe_close(t.fe);
	t.fe = NULL;
	CHECK_EQ(host_read(fd, &c, 1), 0);
	close(fd);
	t_close(&t);
}

int main(void)
{
	return tap_run();
}
