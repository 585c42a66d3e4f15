/* SPDX-License-Identifier: MIT */
/*
 * A front-end that sends a message in pieces, or stops half-way:
 * vhu_backend_process() never waits for the rest (it shares the caller's
 * event loop), keeps what arrived, fds included, and handles the message
 * once it is complete.  fds that came with a fragment are closed when the
 * peer goes away before finishing.  Open fds are counted around each case.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "backend-internal.h"
#include "fe-case.h"
#include "fe-driver.h"
#include "tap.h"
#include "util.h"

#define ALL_PF 0xffffffull
#define HDR ((unsigned)sizeof(struct vhu_msg_hdr))
/* Generous bound for "returned at once": the code before this change
 * waited VHU__SOCK_TIMEOUT_MS (5 s) for the rest. */
#define QUICK_MS 200

/* A VERSION_1 session with nq queues, negotiated (0: the defaults). */
static void open_with(unsigned nq, unsigned max_qsize, unsigned config_size)
{
	struct vhu_backend_opts o = {
		.features = VHU_BIT(VHU_F_VERSION_1),
		.num_queues = nq,
		.max_queue_size = max_qsize,
		.config_size = config_size,
	};
	CHECK_EQ(fe_open(&fe, &o), 0);
	CHECK_EQ(fe_negotiate(&fe, ~0ull, ALL_PF), 0);
}

static void open_session(void)
{
	open_with(2, 256, 0);
}

/* Build a whole message (header + payload) into buf; returns its length. */
static size_t build(uint8_t *buf, uint32_t req, uint32_t flags,
		    const void *payload, uint32_t size)
{
	struct vhu_msg_hdr h = { req, flags, size };
	memcpy(buf, &h, HDR);
	if (size)
		memcpy(buf + HDR, payload, size);
	return HDR + size;
}

/* Send bytes with nfds fresh eventfds (closed on our side afterwards). */
static void send_part(const uint8_t *p, size_t len, unsigned nfds)
{
	int fds[VHU_MAX_FDS] = { 0 };
	for (unsigned i = 0; i < nfds; i++) {
		fds[i] = eventfd(0, EFD_CLOEXEC);
		CHECK(fds[i] >= 0);
	}
	int r = vhu__sock_send_bytes(fe.sock, p, len, fds, nfds);
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
	CHECK_EQ(r, 0);
}

/* Send the rest of a message (no fds); the session handles it at once
 * and its reply to req is in *m. */
static void send_rest(const uint8_t *p, size_t len, uint32_t req,
		      struct vhu_msg *m)
{
	send_part(p, len, 0);
	CHECK_EQ(fe_process(&fe), 0);
	CHECK_EQ(fe_recv(&fe, m), 1);
	CHECK_EQ(m->hdr.request, req);
}

/* One vhu_backend_process() call that must come back at once and leave
 * the connection up with nothing answered yet. */
static void process_quick_no_reply(void)
{
	struct vhu_msg m;
	int64_t t0 = tl_now_ms();
	CHECK_EQ(fe_process(&fe), 0);
	CHECK(tl_now_ms() - t0 < QUICK_MS);
	CHECK(vhu_backend_is_connected(fe.b));
	CHECK_EQ(fe_recv(&fe, &m), -EAGAIN);
}

TEST(half_header_returns_at_once_then_completes)
{
	open_session();
	uint8_t buf[64];
	size_t n = build(buf, VHU_REQ_GET_FEATURES, VHU_MSG_VERSION, NULL, 0);
	send_part(buf, 5, 0);
	process_quick_no_reply();
	process_quick_no_reply(); /* still waiting, still not blocking */
	struct vhu_msg m;
	send_rest(buf + 5, n - 5, VHU_REQ_GET_FEATURES, &m);
	CHECK_EQ(m.hdr.flags, 0x5);
	CHECK_EQ(m.hdr.size, 8);
	CHECK(m.p.u64 & VHU_BIT(VHU_F_VERSION_1));
}

TEST(half_payload_returns_at_once_then_completes)
{
	open_session();
	uint8_t buf[64];
	struct vhu_vring_state st = { .index = 1, .num = 128 };
	size_t n = build(buf, VHU_REQ_SET_VRING_NUM,
			 VHU_MSG_VERSION | VHU_MSG_NEED_REPLY, &st, sizeof(st));
	send_part(buf, HDR + 3, 0);
	process_quick_no_reply();
	struct vhu_msg m;
	send_rest(buf + HDR + 3, n - HDR - 3, VHU_REQ_SET_VRING_NUM, &m);
	CHECK_EQ(m.hdr.size, 8);
	CHECK_EQ(m.p.u64, 0);
	CHECK_EQ(vhu_vq_size(vhu_backend_vq(fe.b, 1)), 128);
}

TEST(one_byte_at_a_time_then_the_next_message)
{
	open_session();
	uint8_t buf[128];
	uint64_t pf;
	CHECK_EQ(fe_get_u64(&fe, VHU_REQ_GET_PROTOCOL_FEATURES, &pf), 0);
	size_t n = build(buf, VHU_REQ_GET_PROTOCOL_FEATURES, VHU_MSG_VERSION,
			 NULL, 0);
	/* A second message right behind the first: framing must not read
	 * into it. */
	size_t n2 = build(buf + n, VHU_REQ_GET_FEATURES, VHU_MSG_VERSION,
			  NULL, 0);
	for (size_t i = 0; i + 1 < n; i++) {
		send_part(buf + i, 1, 0);
		process_quick_no_reply();
	}
	struct vhu_msg m;
	send_rest(buf + n - 1, 1 + n2, VHU_REQ_GET_PROTOCOL_FEATURES, &m);
	CHECK_EQ(m.p.u64, pf);
	CHECK_EQ(fe_recv(&fe, &m), 1);
	CHECK_EQ(m.hdr.request, VHU_REQ_GET_FEATURES);
}

TEST(fd_with_first_fragment_is_kept_for_the_message)
{
	open_session();
	uint8_t buf[64];
	uint64_t u = 0; /* SET_VRING_CALL queue 0, with an fd */
	size_t n = build(buf, VHU_REQ_SET_VRING_CALL,
			 VHU_MSG_VERSION | VHU_MSG_NEED_REPLY, &u, sizeof(u));
	int n0 = tl_count_fds();
	send_part(buf, 4, 1);
	process_quick_no_reply();
	CHECK_EQ(tl_count_fds(), n0 + 1); /* held for the message */
	struct vhu_msg m;
	send_rest(buf + 4, n - 4, VHU_REQ_SET_VRING_CALL, &m);
	CHECK_EQ(m.p.u64, 0);
	CHECK_EQ(tl_count_fds(), n0 + 1); /* now the queue's call fd */
}

TEST(fds_of_a_partial_message_closed_when_the_peer_leaves)
{
	open_session();
	uint8_t buf[64];
	uint64_t u = 0;
	build(buf, VHU_REQ_SET_VRING_KICK, VHU_MSG_VERSION, &u, sizeof(u));
	int n0 = tl_count_fds();
	send_part(buf, HDR + 2, 3);
	process_quick_no_reply();
	CHECK_EQ(tl_count_fds(), n0 + 3);
	shutdown(fe.sock, SHUT_WR);
	fe_process(&fe);
	CHECK(fe_dropped(&fe));
	CHECK_EQ(fe_process(&fe), -ENOTCONN);
	/* The three fds and the session's end of the connection. */
	CHECK_EQ(tl_count_fds(), n0 - 1);
}

TEST(fds_of_a_partial_message_closed_when_it_stalls)
{
	open_session();
	fe.b->stall_ms = 300;
	uint8_t buf[64];
	uint64_t u = 1;
	build(buf, VHU_REQ_SET_VRING_KICK, VHU_MSG_VERSION, &u, sizeof(u));
	int n0 = tl_count_fds();
	int64_t t0 = tl_now_ms();
	send_part(buf, 7, 2);
	process_quick_no_reply();
	/* Nothing more comes: the session's fd wakes the caller when the
	 * stall time is up, and that call drops the peer. */
	struct pollfd p = { .fd = vhu_backend_fd(fe.b), .events = POLLIN };
	CHECK_EQ(poll(&p, 1, 3000), 1);
	CHECK(tl_now_ms() - t0 >= 250);
	fe_process(&fe);
	CHECK(!vhu_backend_is_connected(fe.b));
	CHECK(fe_dropped(&fe));
	CHECK_EQ(tl_count_fds(), n0 - 1);
}

TEST(slow_but_steady_message_within_the_stall_time_is_served)
{
	open_session();
	fe.b->stall_ms = 2000;
	uint8_t buf[64];
	size_t n = build(buf, VHU_REQ_GET_FEATURES, VHU_MSG_VERSION, NULL, 0);
	send_part(buf, 3, 0);
	process_quick_no_reply();
	/* The timer is armed but not due: the fd stays quiet meanwhile. */
	struct pollfd p = { .fd = vhu_backend_fd(fe.b), .events = POLLIN };
	CHECK_EQ(poll(&p, 1, 100), 0);
	struct vhu_msg m;
	send_rest(buf + 3, n - 3, VHU_REQ_GET_FEATURES, &m);
	/* Complete: the timer was disarmed, nothing wakes the caller. */
	CHECK_EQ(poll(&p, 1, 100), 0);
}

TEST(partial_ack_on_the_backend_channel_does_not_block)
{
	open_with(1, 0, 16);
	CHECK_EQ(fe_set_channel(&fe), 0);
	CHECK_EQ(vhu_backend_config_changed(fe.b, true), 0);
	struct vhu_msg m;
	CHECK_EQ(fe_chan_recv(&fe, &m), 1);
	CHECK_EQ(m.hdr.request, VHU_BREQ_CONFIG_CHANGE_MSG);
	uint8_t buf[64];
	uint64_t ok = 0;
	struct vhu_msg_hdr h = { VHU_BREQ_CONFIG_CHANGE_MSG, 0x5, 8 };
	memcpy(buf, &h, HDR);
	memcpy(buf + HDR, &ok, 8);
	CHECK_EQ(vhu__sock_send_bytes(fe.chan, buf, HDR + 4, NULL, 0), 0);
	int64_t t0 = tl_now_ms();
	CHECK_EQ(fe_process(&fe), 0);
	CHECK(tl_now_ms() - t0 < QUICK_MS);
	CHECK_EQ(fe.b->acks_pending, 1);
	CHECK_EQ(vhu__sock_send_bytes(fe.chan, buf + HDR + 4, 4, NULL, 0), 0);
	CHECK_EQ(fe_process(&fe), 0);
	CHECK_EQ(fe.b->acks_pending, 0);
	CHECK(fe.b->chan_fd >= 0);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	tap_before_each = fe_case_before;
	tap_after_each = fe_case_after;
	return tap_run();
}
