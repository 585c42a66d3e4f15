/* SPDX-License-Identifier: MIT */
/*
 * Malformed input from a front-end: every case must end in a clean error
 * (a failing REPLY_ACK with the connection kept, a size-0 GET_CONFIG
 * reply, or the connection dropped), never a crash, and never a leaked fd:
 * the process's open fds are counted before and after each case.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "backend-internal.h"
#include "fe-case.h"
#include "fe-driver.h"
#include "msg.h"
#include "tap.h"
#include "util.h"

#define ALL_PF 0xffffffull
#define NR VHU_MSG_NEED_REPLY

static void open_pf(uint64_t pf)
{
	static uint8_t writable[64];
	writable[32] = 1;
	struct vhu_backend_opts o = {
		.features = VHU_BIT(VHU_F_VERSION_1),
		.num_queues = 2,
		.max_queue_size = 1024,
		.config_size = 64,
		.config_writable = writable,
	};
	CHECK_EQ(fe_open(&fe, &o), 0);
	CHECK_EQ(fe_negotiate(&fe, ~0ull, pf), 0);
}

static void open_all(void) { open_pf(ALL_PF); }

enum want {
	ACK_FAIL,   /* a failing u64 ack, connection kept */
	DROPPED,    /* the session closed the connection */
	CFG_ZERO,   /* a GET_CONFIG reply with size 0 */
};

static void make_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		fds[i] = eventfd(0, EFD_CLOEXEC);
		CHECK(fds[i] >= 0);
	}
}

/* The session still serves requests normally. */
static void check_alive(void)
{
	uint64_t f;
	CHECK_EQ(fe_get_u64(&fe, VHU_REQ_GET_FEATURES, &f), 0);
	CHECK(f & VHU_BIT(VHU_F_PROTOCOL_FEATURES));
}

static void check_outcome(uint32_t req, enum want w, int before_fds)
{
	struct vhu_msg m;
	switch (w) {
	case ACK_FAIL:
		CHECK_EQ(fe_recv(&fe, &m), 1);
		CHECK_EQ(m.hdr.request, req);
		CHECK_EQ(m.hdr.flags, 0x5);
		CHECK_EQ(m.hdr.size, 8);
		CHECK(m.p.u64 != 0);
		/* Nothing the front-end sent was kept. */
		CHECK_EQ(tl_count_fds(), before_fds);
		check_alive();
		break;
	case CFG_ZERO:
		CHECK_EQ(fe_recv(&fe, &m), 1);
		CHECK_EQ(m.hdr.request, VHU_REQ_GET_CONFIG);
		CHECK_EQ(m.hdr.flags, 0x5);
		CHECK_EQ(m.hdr.size, 12);
		CHECK_EQ(m.p.config.size, 0);
		CHECK_EQ(tl_count_fds(), before_fds);
		check_alive();
		break;
	case DROPPED:
		CHECK(fe_dropped(&fe));
		CHECK_EQ(fe_process(&fe), -ENOTCONN);
		/* Only the session's end of the connection went away. */
		CHECK_EQ(tl_count_fds(), before_fds - 1);
		break;
	}
}

/* Send one request with nfds fresh fds (closed on our side after the
 * send), let the session process it, and check the outcome. */
static void run(uint32_t req, uint32_t flags, const void *p, uint32_t size,
		unsigned nfds, enum want w)
{
	int fds[VHU_MAX_FDS];
	int n0 = tl_count_fds();
	make_fds(fds, nfds);
	CHECK_EQ(fe_send(&fe, req, flags, p, size, fds, nfds), 0);
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
	fe_process(&fe);
	check_outcome(req, w, n0);
}

/* Raw bytes (any framing), nfds fresh fds on the first byte. */
static void send_raw(const void *buf, size_t len, unsigned nfds)
{
	int fds[16] = { 0 };
	make_fds(fds, nfds);
	int r = vhu__sock_send_bytes(fe.sock, buf, len, fds, nfds);
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
	CHECK_EQ(r, 0);
}

static void raw_case(uint32_t req, uint32_t flags, uint32_t size,
		     const void *payload, size_t sent, unsigned nfds,
		     bool shut, enum want w)
{
	uint8_t buf[600];
	struct vhu_msg_hdr h = { req, flags, size };
	memcpy(buf, &h, sizeof(h));
	if (sent > sizeof(h))
		memcpy(buf + sizeof(h), payload, sent - sizeof(h));
	int n0 = tl_count_fds();
	send_raw(buf, sent, nfds);
	if (shut)
		shutdown(fe.sock, SHUT_WR);
	fe_process(&fe);
	check_outcome(req, w, n0);
}

/* ---- framing and header ---- */

TEST(version_0_dropped)
{
	open_all();
	run(VHU_REQ_GET_FEATURES, 0, NULL, 0, 0, DROPPED);
}

TEST(version_2_dropped_even_with_need_reply)
{
	open_all();
	run(VHU_REQ_SET_OWNER, 2 | NR, NULL, 0, 0, DROPPED);
}

TEST(reply_flag_on_request_dropped)
{
	open_all();
	run(VHU_REQ_SET_OWNER, 1 | VHU_MSG_REPLY, NULL, 0, 0, DROPPED);
}

TEST(reserved_flag_bits_dropped)
{
	open_all();
	run(VHU_REQ_SET_OWNER, 1 | NR | 0x100, NULL, 0, 0, DROPPED);
}

TEST(size_above_maximum_dropped)
{
	open_all();
	uint8_t junk[300] = { 0 };
	raw_case(VHU_REQ_SET_FEATURES, 1, VHU_MAX_PAYLOAD + 1, junk,
		 sizeof(struct vhu_msg_hdr) + 100, 0, false, DROPPED);
}

TEST(size_0xffffffff_dropped)
{
	open_all();
	raw_case(VHU_REQ_SET_FEATURES, 1, 0xffffffffu, NULL,
		 sizeof(struct vhu_msg_hdr), 0, false, DROPPED);
}

TEST(truncated_payload_then_eof_dropped)
{
	open_all();
	uint64_t v = 0;
	raw_case(VHU_REQ_SET_FEATURES, 1, 8, &v, sizeof(struct vhu_msg_hdr) + 4,
		 0, true, DROPPED);
}

TEST(truncated_header_with_fds_then_eof_dropped)
{
	open_all();
	raw_case(VHU_REQ_SET_VRING_KICK, 1, 8, NULL, 6, 2, true, DROPPED);
}

TEST(truncated_payload_times_out)
{
	/* The rest never comes: vhu_backend_process() returns at once
	 * (never waits for it), and the session's fd wakes the caller when
	 * the stall timeout runs out; the next call drops the peer. */
	open_all();
	fe.b->stall_ms = 300;
	uint8_t buf[64] = { 0 };
	struct vhu_msg_hdr h = { VHU_REQ_SET_VRING_ADDR, 1, 40 };
	memcpy(buf, &h, sizeof(h));
	int n0 = tl_count_fds();
	send_raw(buf, sizeof(h) + 10, 1);
	int64_t t0 = tl_now_ms();
	CHECK_EQ(fe_process(&fe), 0);
	CHECK(tl_now_ms() - t0 < 200);
	CHECK(vhu_backend_is_connected(fe.b));
	struct pollfd p = { .fd = vhu_backend_fd(fe.b), .events = POLLIN };
	CHECK_EQ(poll(&p, 1, 3000), 1);
	CHECK(tl_now_ms() - t0 >= 250);
	fe_process(&fe);
	check_outcome(VHU_REQ_SET_VRING_ADDR, DROPPED, n0);
}

TEST(more_than_8_fds_dropped)
{
	open_all();
	raw_case(VHU_REQ_SET_OWNER, 1, 0, NULL, sizeof(struct vhu_msg_hdr), 12,
		 false, DROPPED);
}

/* ---- ids and gates ---- */

TEST(id_0_refused_with_ack_or_dropped)
{
	open_all();
	run(0, 1 | NR, NULL, 0, 0, ACK_FAIL);
	run(0, 1, NULL, 0, 0, DROPPED);
}

TEST(unknown_id_9999)
{
	open_all();
	run(9999, 1 | NR, NULL, 0, 1, ACK_FAIL);
	run(9999, 1, NULL, 0, 1, DROPPED);
}

TEST(gated_requests_without_their_feature)
{
	open_pf(VHU_BIT(VHU_PF_REPLY_ACK));
	run(VHU_REQ_GET_QUEUE_NUM, 1 | NR, NULL, 0, 0, ACK_FAIL);
	uint8_t cfg[12 + 4] = { 0 };
	cfg[4] = 4;
	run(VHU_REQ_GET_CONFIG, 1 | NR, cfg, sizeof(cfg), 0, ACK_FAIL);
	run(VHU_REQ_SET_BACKEND_REQ_FD, 1 | NR, NULL, 0, 1, ACK_FAIL);
	run(VHU_REQ_GET_MAX_MEM_SLOTS, 1 | NR, NULL, 0, 0, ACK_FAIL);
	run(VHU_REQ_RESET_DEVICE, 1, NULL, 0, 0, DROPPED);
}

TEST(unhandled_requests_close_their_fds)
{
	open_all();
	/* A log larger than its fd (an eventfd: size 0): a failing ack
	 * (asked for), the fd closed. */
	struct vhu_log lg = { 4096, 0 };
	run(VHU_REQ_SET_LOG_BASE, 1 | NR, &lg, sizeof(lg), 1, ACK_FAIL);
	/* A region too small for 2 queues of 256: refused, fd closed. */
	struct vhu_inflight inf = { 4096, 0, 2, 256 };
	run(VHU_REQ_SET_INFLIGHT_FD, 1 | NR, &inf, sizeof(inf), 1, ACK_FAIL);
	run(VHU_REQ_GPU_SET_SOCKET, 1, NULL, 0, 1, DROPPED);
}

TEST(every_unhandled_request_refused)
{
	/* Each request the back-end does not serve, well-formed per the
	 * table (size, fds) and with its gate open where possible: a
	 * failing ack, the fds closed, the connection kept. */
	open_all();
	unsigned refused = 0;
	for (uint32_t id = 1; id < VHU_REQ_MAX; id++) {
		const struct vhu__req_info *in = vhu__req_lookup(id);
		CHECK(in != NULL);
		if (vhu__be_handler_for(id))
			continue;
		uint8_t p[VHU_MAX_PAYLOAD] = { 0 };
		uint32_t size = in->payload == VHU__P_NONE ? 0 : in->size;
		unsigned nfds = in->fds == VHU__FD_ONE ? 1 : 0;
		run(id, 1 | NR, p, size, nfds, ACK_FAIL);
		refused++;
	}
	CHECK_EQ(refused, 45 - 30);
}

/* ---- ring indices and sizes ---- */

TEST(ring_index_0x10000)
{
	open_all();
	struct vhu_vring_state st = { 0x10000, 256 };
	run(VHU_REQ_SET_VRING_NUM, 1 | NR, &st, 8, 0, ACK_FAIL);
	struct vhu_vring_addr a = { .index = 0x10000 };
	run(VHU_REQ_SET_VRING_ADDR, 1 | NR, &a, sizeof(a), 0, ACK_FAIL);
	run(VHU_REQ_GET_VRING_BASE, 1, &st, 8, 0, DROPPED);
}

TEST(ring_index_256)
{
	open_all();
	struct vhu_vring_state st = { 256, 256 };
	run(VHU_REQ_SET_VRING_BASE, 1 | NR, &st, 8, 0, ACK_FAIL);
	run(VHU_REQ_SET_VRING_ENABLE, 1 | NR, &st, 8, 0, ACK_FAIL);
}

TEST(ring_index_num_queues)
{
	open_all();
	struct vhu_vring_state st = { 2, 256 };
	run(VHU_REQ_SET_VRING_NUM, 1 | NR, &st, 8, 0, ACK_FAIL);
	uint64_t u = 2;
	run(VHU_REQ_SET_VRING_CALL, 1 | NR, &u, 8, 1, ACK_FAIL);
	u = 0xff;
	run(VHU_REQ_SET_VRING_KICK, 1 | NR, &u, 8, 1, ACK_FAIL);
}

TEST(vring_num_0_3_65536_and_above_max)
{
	open_all();
	static const uint32_t bad[] = { 0, 3, 65536, 2048, 0xffffffffu, 1000 };
	for (unsigned i = 0; i < VHU__ARRAY_SIZE(bad); i++) {
		struct vhu_vring_state st = { 0, bad[i] };
		run(VHU_REQ_SET_VRING_NUM, 1 | NR, &st, 8, 0, ACK_FAIL);
		CHECK_EQ(vhu_backend_vq(fe.b, 0)->size, 0);
	}
}

TEST(vring_base_upper_bits_and_enable_2)
{
	open_all();
	struct vhu_vring_state st = { 0, 0x10000 };
	run(VHU_REQ_SET_VRING_BASE, 1 | NR, &st, 8, 0, ACK_FAIL);
	st.num = 2;
	run(VHU_REQ_SET_VRING_ENABLE, 1 | NR, &st, 8, 0, ACK_FAIL);
}

TEST(vring_kick_without_fd_and_without_bit8)
{
	open_all();
	uint64_t u = 0;
	run(VHU_REQ_SET_VRING_KICK, 1 | NR, &u, 8, 0, ACK_FAIL);
	run(VHU_REQ_SET_VRING_KICK, 1, &u, 8, 0, DROPPED);
}

TEST(vring_kick_bit8_with_fd_and_reserved_bits)
{
	open_all();
	uint64_t u = VHU_VRING_NOFD;
	run(VHU_REQ_SET_VRING_KICK, 1 | NR, &u, 8, 1, ACK_FAIL);
	u = 1ull << 40;
	run(VHU_REQ_SET_VRING_ERR, 1 | NR, &u, 8, 1, ACK_FAIL);
	u = 0;
	run(VHU_REQ_SET_VRING_CALL, 1 | NR, &u, 8, 3, ACK_FAIL);
}

/* ---- memory ---- */

static struct vhu_mem_table table1(uint64_t gpa, uint64_t size, uint64_t uva,
				   uint64_t off)
{
	struct vhu_mem_table t;
	memset(&t, 0, sizeof(t));
	t.nregions = 1;
	t.regions[0] = (struct vhu_mem_region){ gpa, size, uva, off };
	return t;
}

/* table1() and a second region. */
static struct vhu_mem_table table2(uint64_t gpa0, uint64_t size0, uint64_t gpa1,
				   uint64_t size1)
{
	struct vhu_mem_table t = table1(gpa0, size0, 0x1000000, 0);

	t.nregions = 2;
	t.regions[1] = (struct vhu_mem_region){ gpa1, size1, 0x2000000, 0 };
	return t;
}

/* Send a memory table backed by real memfds of `fd_size` bytes. */
static void mem_case(const struct vhu_mem_table *t, uint32_t size,
		     unsigned nfds, uint64_t fd_size, uint32_t flags, enum want w)
{
	int fds[VHU_MAX_FDS];
	int n0 = tl_count_fds();
	for (unsigned i = 0; i < nfds; i++) {
		fds[i] = memfd_create("vhu-robust", MFD_CLOEXEC);
		CHECK(fds[i] >= 0);
		CHECK_EQ(ftruncate(fds[i], (off_t)fd_size), 0);
	}
	CHECK_EQ(fe_send(&fe, VHU_REQ_SET_MEM_TABLE, flags, t, size, fds, nfds), 0);
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
	fe_process(&fe);
	check_outcome(VHU_REQ_SET_MEM_TABLE, w, n0);
}

TEST(nregions_9_and_0)
{
	open_all();
	struct vhu_mem_table t = table1(0, 0x1000, 0x1000000, 0);
	t.nregions = 9;
	mem_case(&t, 8 + 32 * 8, 8, 0x1000, 1 | NR, ACK_FAIL);
	t.nregions = 0;
	mem_case(&t, 8, 0, 0x1000, 1 | NR, ACK_FAIL);
	t.nregions = 9;
	mem_case(&t, 8 + 32 * 8, 8, 0x1000, 1, DROPPED);
}

TEST(nregions_differs_from_fd_count)
{
	open_all();
	struct vhu_mem_table t = table2(0, 0x1000, 0x10000, 0x1000);
	mem_case(&t, 8 + 64, 1, 0x1000, 1 | NR, ACK_FAIL);
	t.nregions = 1;
	mem_case(&t, 8 + 32, 3, 0x1000, 1 | NR, ACK_FAIL);
	mem_case(&t, 8 + 32, 0, 0x1000, 1 | NR, ACK_FAIL);
	/* nregions and payload size disagree */
	mem_case(&t, 8 + 64, 1, 0x1000, 1 | NR, ACK_FAIL);
}

TEST(region_size_0)
{
	open_all();
	struct vhu_mem_table t = table1(0, 0, 0x1000000, 0);
	mem_case(&t, 8 + 32, 1, 0x1000, 1 | NR, ACK_FAIL);
}

TEST(region_gpa_plus_size_overflows)
{
	open_all();
	struct vhu_mem_table t = table1(0xfffffffffffff000ull, 0x2000, 0x1000000, 0);
	mem_case(&t, 8 + 32, 1, 0x2000, 1 | NR, ACK_FAIL);
}

TEST(region_mmap_offset_plus_size_overflows)
{
	open_all();
	struct vhu_mem_table t = table1(0, 0x2000, 0x1000000, 0xfffffffffffff000ull);
	mem_case(&t, 8 + 32, 1, 0x2000, 1 | NR, ACK_FAIL);
}

TEST(region_uva_plus_size_overflows)
{
	open_all();
	struct vhu_mem_table t = table1(0, 0x2000, 0xffffffffffffff00ull, 0);
	mem_case(&t, 8 + 32, 1, 0x2000, 1 | NR, ACK_FAIL);
}

TEST(region_larger_than_its_file)
{
	/* mmap succeeds past EOF on Linux but touching it would SIGBUS;
	 * whatever the memory module decides, the session must not leak. */
	open_all();
	struct vhu_mem_table t = table1(0, 0x100000, 0x1000000, 0);
	int n0 = tl_count_fds();
	int fd = memfd_create("vhu-robust", MFD_CLOEXEC);
	CHECK_EQ(ftruncate(fd, 0x1000), 0);
	long long r = fe_acked(&fe, VHU_REQ_SET_MEM_TABLE, &t, 8 + 32, &fd, 1);
	close(fd);
	CHECK(r >= 0);
	CHECK(tl_count_fds() <= n0 + 1);
	check_alive();
}

TEST(overlapping_regions)
{
	open_all();
	struct vhu_mem_table t = table2(0, 0x4000, 0x3000, 0x4000);
	mem_case(&t, 8 + 64, 2, 0x4000, 1 | NR, ACK_FAIL);
	/* Same start */
	t.regions[1].guest_phys_addr = 0;
	mem_case(&t, 8 + 64, 2, 0x4000, 1 | NR, ACK_FAIL);
}

TEST(add_mem_reg_fd_count_and_overlap)
{
	open_all();
	struct vhu_mem_single one = { .region = { 0, 0x1000, 0x1000000, 0 } };
	for (unsigned n = 0; n <= 2; n += 2) /* no fd, two fds */
		run(VHU_REQ_ADD_MEM_REG, 1 | NR, &one, sizeof(one), n, ACK_FAIL);
	/* An eventfd cannot be mapped: refused, fd closed. */
	run(VHU_REQ_ADD_MEM_REG, 1 | NR, &one, sizeof(one), 1, ACK_FAIL);
	/* Overlap with an existing region. */
	CHECK_EQ(fe_set_mem(&fe), 0);
	int n0 = tl_count_fds();
	int fd = memfd_create("vhu-robust", MFD_CLOEXEC);
	CHECK_EQ(ftruncate(fd, 0x1000), 0);
	CHECK(fe_acked(&fe, VHU_REQ_ADD_MEM_REG, &one, sizeof(one), &fd, 1) > 0);
	close(fd);
	CHECK_EQ(tl_count_fds(), n0);
}

TEST(rem_mem_reg_of_unknown_region)
{
	open_all();
	struct vhu_mem_single one = { .region = { 0x5000, 0x1000, 0x1000000, 0 } };
	for (unsigned n = 0; n <= 2; n++)
		run(VHU_REQ_REM_MEM_REG, 1 | NR, &one, sizeof(one), n, ACK_FAIL);
	run(VHU_REQ_REM_MEM_REG, 1, &one, sizeof(one), 0, DROPPED);
}

/* ---- fds and payload sizes ---- */

TEST(fds_on_messages_that_take_none)
{
	open_all();
	run(VHU_REQ_GET_FEATURES, 1 | NR, NULL, 0, 3, ACK_FAIL);
	uint64_t f = VHU_BIT(VHU_F_VERSION_1);
	run(VHU_REQ_SET_FEATURES, 1 | NR, &f, 8, 1, ACK_FAIL);
	uint64_t s = 1;
	run(VHU_REQ_SET_STATUS, 1 | NR, &s, 8, 8, ACK_FAIL);
	run(VHU_REQ_SET_OWNER, 1, NULL, 0, 2, DROPPED);
}

TEST(wrong_payload_sizes)
{
	open_all();
	uint8_t z[64] = { 0 };
	run(VHU_REQ_SET_FEATURES, 1 | NR, z, 4, 0, ACK_FAIL);
	run(VHU_REQ_GET_FEATURES, 1 | NR, z, 8, 0, ACK_FAIL);
	run(VHU_REQ_SET_VRING_ADDR, 1 | NR, z, 32, 0, ACK_FAIL);
	run(VHU_REQ_ADD_MEM_REG, 1 | NR, z, 32, 1, ACK_FAIL);
	run(VHU_REQ_SET_VRING_NUM, 1, z, 12, 0, DROPPED);
}

TEST(backend_req_fd_not_a_socket_and_status_too_big)
{
	open_all();
	uint64_t s = 0x1ff;
	run(VHU_REQ_SET_STATUS, 1 | NR, &s, 8, 0, ACK_FAIL);
	/* Two fds for one channel. */
	run(VHU_REQ_SET_BACKEND_REQ_FD, 1 | NR, NULL, 0, 2, ACK_FAIL);
}

/* ---- config space ---- */

TEST(oversized_get_config_300)
{
	open_all();
	uint8_t p[12] = { 0 };
	uint32_t v = 300;
	memcpy(p + 4, &v, 4);
	run(VHU_REQ_GET_CONFIG, 1, p, 12, 0, CFG_ZERO);
	/* 12 + 300 bytes cannot even be framed. */
	uint8_t big[400] = { 0 };
	memcpy(big + 4, &v, 4);
	raw_case(VHU_REQ_GET_CONFIG, 1, 312, big, sizeof(struct vhu_msg_hdr) + 312,
		 0, false, DROPPED);
}

TEST(get_config_offset_overflow_0xffffffff)
{
	open_all();
	struct vhu_config c = { .offset = 0xffffffffu, .size = 4 };
	run(VHU_REQ_GET_CONFIG, 1, &c, 16, 0, CFG_ZERO);
	c.offset = 0xfffffffcu;
	run(VHU_REQ_GET_CONFIG, 1 | NR, &c, 16, 0, CFG_ZERO);
	c.offset = 0;
	c.size = 0;
	run(VHU_REQ_GET_CONFIG, 1, &c, 12, 0, CFG_ZERO);
	/* Payload length that matches neither 12 nor 12 + size. */
	c.size = 8;
	run(VHU_REQ_GET_CONFIG, 1, &c, 16, 0, CFG_ZERO);
	run(VHU_REQ_GET_CONFIG, 1, &c, 11, 0, DROPPED);
}

TEST(set_config_bad_sizes_and_windows)
{
	open_all();
	struct vhu_config c = { .offset = 0, .size = 300, .flags = 1 };
	run(VHU_REQ_SET_CONFIG, 1 | NR, &c, 12 + 8, 0, ACK_FAIL);
	c.size = 8;
	run(VHU_REQ_SET_CONFIG, 1 | NR, &c, 12 + 4, 0, ACK_FAIL);
	c.offset = 0xfffffffcu;
	run(VHU_REQ_SET_CONFIG, 1 | NR, &c, 12 + 8, 0, ACK_FAIL);
	c.offset = 32;
	c.size = 1;
	c.flags = 0;
	run(VHU_REQ_SET_CONFIG, 1 | NR, &c, 13, 2, ACK_FAIL);
	c.size = 2; /* byte 33 is read-only */
	run(VHU_REQ_SET_CONFIG, 1 | NR, &c, 14, 0, ACK_FAIL);
}

/* ---- a bounded storm of random messages ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)rng;
}

TEST(random_messages_never_crash_or_leak)
{
	for (int round = 0; round < 40; round++) {
		int n0 = tl_count_fds();
		open_all();
		for (int i = 0; i < 50; i++) {
			uint8_t p[VHU_MAX_PAYLOAD];
			for (unsigned k = 0; k < sizeof(p); k++)
				p[k] = (uint8_t)rnd();
			uint32_t req = rnd() % 48;
			uint32_t flags = (rnd() % 4 == 0) ? rnd() : (1 | (rnd() & NR));
			uint32_t size = rnd() % 4 ? rnd() % 48 : rnd() % VHU_MAX_PAYLOAD;
			/* Small indices and sizes now and then, so some
			 * messages get past validation. */
			if (rnd() % 2) {
				uint32_t idx = rnd() % 3;
				memcpy(p, &idx, 4);
			}
			unsigned nfds = rnd() % 3;
			int fds[2];
			make_fds(fds, nfds);
			int r = fe_send(&fe, req, flags, p, size, fds, nfds);
			for (unsigned k = 0; k < nfds; k++)
				close(fds[k]);
			if (r < 0)
				break;
			fe_process(&fe);
			struct vhu_msg m;
			while (fe_recv(&fe, &m) == 1)
				;
			if (!vhu_backend_is_connected(fe.b))
				break;
		}
		fe_close(&fe);
		CHECK_EQ(tl_count_fds(), n0);
	}
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	tap_before_each = fe_case_before;
	tap_after_each = fe_case_after;
	return tap_run();
}
