/* SPDX-License-Identifier: MIT */
/*
 * The back-end session against a protocol-level test front-end: every
 * handled request, the config-space rules, REPLY_ACK, the back-end
 * channel, reconnects, socket paths, and the event loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <vhu/frontend.h>

#include "fe-driver.h"
#include "internal.h"
#include "tap.h"

/* ---- a small test device ---- */

struct tdev {
	uint8_t cfg[64];
	bool fail_get;
	unsigned started[2], stopped[2], kicks[2];
	unsigned resets, connected, disconnected, set_config_calls;
	uint32_t last_flags;
	int status;
	uint64_t features;
	unsigned acks;
	int64_t last_ack;
	char log[256];          /* S0 T0 R D C ... in call order */
	int reply_pending_at_stop; /* poll() of the front-end at queue_stopped */
	int watch_sock;
};

static struct tdev dev;

static void logev(const char *s)
{
	size_t n = strlen(dev.log);
	if (n + strlen(s) + 1 < sizeof(dev.log))
		strcat(dev.log, s);
}

static void t_features_set(void *o, uint64_t f) { dev.features = f; }
static void t_started(void *o, struct vhu_vq *vq)
{
	unsigned i = vhu_vq_index(vq);
	dev.started[i]++;
	logev(i ? "S1" : "S0");
}
static void t_stopped(void *o, struct vhu_vq *vq)
{
	unsigned i = vhu_vq_index(vq);
	dev.stopped[i]++;
	logev(i ? "T1" : "T0");
	if (dev.watch_sock >= 0) {
		struct pollfd p = { .fd = dev.watch_sock, .events = POLLIN };
		dev.reply_pending_at_stop = poll(&p, 1, 0);
	}
}
static void t_kick(void *o, struct vhu_vq *vq) { dev.kicks[vhu_vq_index(vq)]++; }
static int t_get_config(void *o, uint32_t off, void *buf, uint32_t len)
{
	if (dev.fail_get)
		return -EIO;
	memcpy(buf, dev.cfg + off, len);
	return 0;
}
static int t_set_config(void *o, uint32_t off, const void *buf, uint32_t len,
			uint32_t flags)
{
	dev.set_config_calls++;
	dev.last_flags = flags;
	memcpy(dev.cfg + off, buf, len);
	return 0;
}
static void t_reset(void *o) { dev.resets++; logev("R"); }
static void t_device_reset(void *o) { logev("X"); }
static void t_connected(void *o) { dev.connected++; logev("C"); }
static void t_disconnected(void *o) { dev.disconnected++; logev("D"); }
static void t_status(void *o, uint8_t s) { dev.status = s; }
static void t_acked(void *o, int64_t r) { dev.acks++; dev.last_ack = r; }

static struct vhu_device_ops ops = {
	.features_set = t_features_set,
	.queue_started = t_started,
	.queue_stopped = t_stopped,
	.queue_kick = t_kick,
	.get_config = t_get_config,
	.set_config = t_set_config,
	.reset = t_reset,
	.connected = t_connected,
	.disconnected = t_disconnected,
	.set_status = t_status,
	.config_change_acked = t_acked,
	.device_reset = t_device_reset,
};

static uint8_t writable[64];

#define DEV_BIT0 VHU_BIT(0)
#define ALL_PF 0xffffffull

static struct vhu_backend_opts default_opts(void)
{
	memset(writable, 0, sizeof(writable));
	writable[32] = 1;
	memset(writable + 40, 1, 4);
	struct vhu_backend_opts o = {
		.ops = &ops,
		.features = DEV_BIT0 | VHU_BIT(VHU_F_VERSION_1) |
			    VHU_BIT(VHU_F_EVENT_IDX) |
			    VHU_BIT(VHU_F_INDIRECT_DESC) |
			    VHU_BIT(VHU_F_RING_PACKED) |
			    VHU_BIT(VHU_F_ACCESS_PLATFORM),
		.num_queues = 2,
		.max_queue_size = 256,
		.config_size = 64,
		.config_writable = writable,
	};
	return o;
}

static void reset_dev(void)
{
	memset(&dev, 0, sizeof(dev));
	dev.watch_sock = -1;
	for (unsigned i = 0; i < sizeof(dev.cfg); i++)
		dev.cfg[i] = (uint8_t)(0xa0 + i);
}

static struct fe fe;

/* A session with everything negotiated (REPLY_ACK, CONFIG...) but
 * packed rings: the helpers here lay out split rings. */
static void open_full(void)
{
	reset_dev();
	struct vhu_backend_opts o = default_opts();
	CHECK_EQ(fe_open(&fe, &o), 0);
	CHECK_EQ(fe_negotiate(&fe, ~VHU_BIT(VHU_F_RING_PACKED), ALL_PF), 0);
	dev.log[0] = 0;
}

/* ... plus memory and queue 0 started. */
static int kick0 = -1;
static void open_started(void)
{
	open_full();
	CHECK_EQ(fe_set_mem(&fe), 0);
	CHECK_EQ(fe_setup_vring(&fe, 0, 256, &kick0), 0);
	CHECK_EQ(fe_enable(&fe, 0, true), 0);
	CHECK_EQ(dev.started[0], 1);
}

static void close_all(void)
{
	if (kick0 >= 0)
		close(kick0);
	kick0 = -1;
	fe_close(&fe);
}

static int fds_at_start;
static void before(void) { fds_at_start = tl_count_fds(); }
static void after(void)
{
	/* Every test closes what it opened: the session leaks nothing. */
	CHECK_EQ(tl_count_fds(), fds_at_start);
}

static struct vhu_msg cfg_req(uint32_t off, uint32_t size, uint32_t flags,
			      uint32_t *len)
{
	struct vhu_msg m;
	memset(&m, 0, sizeof(m));
	m.p.config.offset = off;
	m.p.config.size = size;
	m.p.config.flags = flags;
	*len = VHU_CONFIG_HDR_SIZE + (size <= 256 ? size : 0);
	return m;
}

/* ---- negotiation ---- */

TEST(features_offered_and_negotiated)
{
	reset_dev();
	struct vhu_backend_opts o = default_opts();
	CHECK_EQ(fe_open(&fe, &o), 0);
	uint64_t f;
	CHECK_EQ(fe_get_u64(&fe, VHU_REQ_GET_FEATURES, &f), 0);
	CHECK(f & VHU_BIT(VHU_F_PROTOCOL_FEATURES));
	CHECK(f & DEV_BIT0);
	CHECK(f & VHU_BIT(VHU_F_VERSION_1));
	CHECK(f & VHU_BIT(VHU_F_EVENT_IDX));
	CHECK(f & VHU_BIT(VHU_F_INDIRECT_DESC));
	CHECK(f & VHU_BIT(VHU_F_RING_PACKED));
	CHECK(!(f & VHU_BIT(VHU_F_ACCESS_PLATFORM))); /* no IOTLB */

	uint64_t pf;
	CHECK_EQ(fe_get_u64(&fe, VHU_REQ_GET_PROTOCOL_FEATURES, &pf), 0);
	uint64_t want = VHU_BIT(VHU_PF_MQ) | VHU_BIT(VHU_PF_REPLY_ACK) |
			VHU_BIT(VHU_PF_BACKEND_REQ) | VHU_BIT(VHU_PF_CONFIG) |
			VHU_BIT(VHU_PF_CONFIGURE_MEM_SLOTS) |
			VHU_BIT(VHU_PF_RESET_DEVICE) | VHU_BIT(VHU_PF_STATUS) |
			VHU_BIT(VHU_PF_LOG_SHMFD);
	CHECK_EQ(pf, want);
	CHECK(f & VHU_BIT(VHU_F_LOG_ALL));

	CHECK_EQ(fe_send(&fe, VHU_REQ_SET_PROTOCOL_FEATURES, 1, &pf, 8, NULL, 0), 0);
	fe_process(&fe);
	CHECK_EQ(vhu_backend_protocol_features(fe.b), pf);
	uint64_t acc = VHU_BIT(VHU_F_PROTOCOL_FEATURES) | VHU_BIT(VHU_F_VERSION_1) | DEV_BIT0;
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_FEATURES, &acc, 8, NULL, 0), 0);
	CHECK_EQ(vhu_backend_features(fe.b), acc);
	CHECK_EQ(dev.features, acc);
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_OWNER, NULL, 0, NULL, 0), 0);
	uint64_t nq;
	CHECK_EQ(fe_get_u64(&fe, VHU_REQ_GET_QUEUE_NUM, &nq), 0);
	CHECK_EQ(nq, 2);
	CHECK_EQ(vhu_backend_num_queues(fe.b), 2);
	CHECK(vhu_backend_is_connected(fe.b));
	close_all();
}

TEST(protocol_features_depend_on_config_and_device)
{
	reset_dev();
	struct vhu_backend_opts o = default_opts();
	o.config_size = 0;
	o.config_writable = NULL;
	/* Asking for something the library does not implement changes
	 * nothing; CONFIG needs a config space; INFLIGHT_SHMFD is served;
	 * a device that opts out of dirty logging gets no LOG_SHMFD even
	 * when it lists it, and no LOG_ALL. */
	o.protocol_features = VHU_BIT(VHU_PF_LOG_SHMFD) | VHU_BIT(VHU_PF_CONFIG) |
			      VHU_BIT(VHU_PF_INFLIGHT_SHMFD) |
			      VHU_BIT(VHU_PF_RARP);
	o.features |= VHU_BIT(VHU_F_LOG_ALL);
	o.no_dirty_log = true;
	CHECK_EQ(fe_open(&fe, &o), 0);
	uint64_t pf, f;
	CHECK_EQ(fe_get_u64(&fe, VHU_REQ_GET_PROTOCOL_FEATURES, &pf), 0);
	CHECK_EQ(fe_get_u64(&fe, VHU_REQ_GET_FEATURES, &f), 0);
	CHECK(!(pf & VHU_BIT(VHU_PF_CONFIG)));
	CHECK(!(pf & VHU_BIT(VHU_PF_RARP)));
	CHECK(!(pf & VHU_BIT(VHU_PF_LOG_SHMFD)));
	CHECK(!(f & VHU_BIT(VHU_F_LOG_ALL)));
	/* Implemented, so offered when the device asks for it. */
	CHECK(pf & VHU_BIT(VHU_PF_INFLIGHT_SHMFD));
	CHECK(pf & VHU_BIT(VHU_PF_REPLY_ACK));
	CHECK(pf & VHU_BIT(VHU_PF_STATUS));
	close_all();
}

TEST(set_features_must_be_offered)
{
	open_full();
	uint64_t before_f = vhu_backend_features(fe.b);
	uint64_t bad = VHU_BIT(VHU_F_ACCESS_PLATFORM) | VHU_BIT(VHU_F_VERSION_1);
	CHECK(fe_acked(&fe, VHU_REQ_SET_FEATURES, &bad, 8, NULL, 0) > 0);
	CHECK_EQ(vhu_backend_features(fe.b), before_f);
	uint64_t badpf = VHU_BIT(VHU_PF_RARP) | VHU_BIT(VHU_PF_REPLY_ACK);
	CHECK(fe_acked(&fe, VHU_REQ_SET_PROTOCOL_FEATURES, &badpf, 8, NULL, 0) > 0);
	CHECK(vhu_backend_protocol_features(fe.b) & VHU_BIT(VHU_PF_REPLY_ACK));
	CHECK(!fe_dropped(&fe));
	close_all();
}

TEST(reply_ack_only_when_negotiated)
{
	reset_dev();
	struct vhu_backend_opts o = default_opts();
	CHECK_EQ(fe_open(&fe, &o), 0);
	struct vhu_msg m;
	/* NEED_REPLY without REPLY_ACK negotiated: no answer. */
	CHECK_EQ(fe_call(&fe, VHU_REQ_SET_OWNER, 1 | VHU_MSG_NEED_REPLY, NULL, 0,
			 NULL, 0, &m), -EAGAIN);
	uint64_t pf = VHU_BIT(VHU_PF_REPLY_ACK);
	CHECK_EQ(fe_send(&fe, VHU_REQ_SET_PROTOCOL_FEATURES, 1, &pf, 8, NULL, 0), 0);
	fe_process(&fe);
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_OWNER, NULL, 0, NULL, 0), 0);
	/* Without NEED_REPLY: still silent. */
	CHECK_EQ(fe_call(&fe, VHU_REQ_SET_OWNER, 1, NULL, 0, NULL, 0, &m), -EAGAIN);
	/* A request with a reply body gets that body, not an ack. */
	CHECK_EQ(fe_call(&fe, VHU_REQ_GET_FEATURES, 1 | VHU_MSG_NEED_REPLY, NULL,
			 0, NULL, 0, &m), 1);
	CHECK_EQ(m.hdr.flags, 0x5);
	CHECK(m.p.u64 & VHU_BIT(VHU_F_PROTOCOL_FEATURES));
	/* A refused request with NEED_REPLY: failing ack, still connected. */
	CHECK(fe_acked(&fe, 9999, NULL, 0, NULL, 0) > 0);
	CHECK(fe_acked(&fe, VHU_REQ_GET_CONFIG, NULL, 0, NULL, 0) > 0); /* gated */
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_OWNER, NULL, 0, NULL, 0), 0);
	close_all();
}

/* ---- vrings ---- */

TEST(queue_starts_on_enable_with_protocol_features)
{
	open_full();
	CHECK_EQ(fe_set_mem(&fe), 0);
	CHECK_EQ(fe_setup_vring(&fe, 0, 256, &kick0), 0);
	/* vhost-user.rst "Ring states": initialised disabled. */
	CHECK_EQ(dev.started[0], 0);
	CHECK_EQ(fe_enable(&fe, 0, true), 0);
	CHECK_EQ(dev.started[0], 1);
	struct vhu_vq *vq = vhu_backend_vq(fe.b, 0);
	CHECK(vq != NULL);
	CHECK(vhu_backend_vq(fe.b, 2) == NULL);
	CHECK_EQ(vhu_vq_size(vq), 256);
	CHECK(vhu_vq_kick_fd(vq) >= 0);
	CHECK(vq->event_idx); /* negotiated by fe_negotiate(~0) */

	/* The session watches kick fds when the device has queue_kick. */
	uint64_t one = 1;
	CHECK_EQ(write(kick0, &one, 8), 8);
	struct pollfd p = { .fd = vhu_backend_fd(fe.b), .events = POLLIN };
	CHECK_EQ(poll(&p, 1, 1000), 1);
	CHECK_EQ(fe_process(&fe), 0);
	CHECK_EQ(dev.kicks[0], 1);
	/* Consumed: nothing more to do. */
	CHECK_EQ(poll(&p, 1, 0), 0);

	CHECK_EQ(fe_enable(&fe, 0, false), 0);
	CHECK_EQ(dev.stopped[0], 1);
	CHECK(!vq->started);
	/* A kick on a stopped queue reaches nobody. */
	CHECK_EQ(write(kick0, &one, 8), 8);
	CHECK_EQ(fe_process(&fe), 0);
	CHECK_EQ(dev.kicks[0], 1);
	close_all();
}

TEST(queue_starts_on_kick_without_protocol_features)
{
	reset_dev();
	struct vhu_backend_opts o = default_opts();
	CHECK_EQ(fe_open(&fe, &o), 0);
	/* An old front-end: no bit 30, so rings start enabled. */
	CHECK_EQ(fe_negotiate(&fe, VHU_BIT(VHU_F_VERSION_1), 0), 0);
	CHECK_EQ(fe_set_mem(&fe), 0);
	CHECK_EQ(fe_setup_vring(&fe, 1, 64, &kick0), 0);
	CHECK_EQ(dev.started[1], 1);
	CHECK_EQ(dev.started[0], 0);
	CHECK(!vhu_backend_vq(fe.b, 1)->event_idx);
	close_all();
}

TEST(get_vring_base_stops_first_then_replies)
{
	open_full();
	CHECK_EQ(fe_set_mem(&fe), 0);
	CHECK_EQ(fe_setup_vring(&fe, 0, 128, &kick0), 0);
	struct vhu_vring_state st = { .index = 0, .num = 1234 };
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_VRING_BASE, &st, 8, NULL, 0), 0);
	CHECK_EQ(fe_enable(&fe, 0, true), 0);
	CHECK_EQ(dev.started[0], 1);
	struct vhu_vq *vq = vhu_backend_vq(fe.b, 0);
	CHECK_EQ(vq->last_avail_idx, 1234);

	int n0 = tl_count_fds();
	dev.watch_sock = fe.sock;
	dev.reply_pending_at_stop = -1;
	struct vhu_msg m;
	st.num = 0;
	CHECK_EQ(fe_call(&fe, VHU_REQ_GET_VRING_BASE, 1, &st, 8, NULL, 0, &m), 1);
	/* queue_stopped ran before the reply was sent. */
	CHECK_EQ(dev.stopped[0], 1);
	CHECK_EQ(dev.reply_pending_at_stop, 0);
	CHECK_EQ(m.hdr.flags, 0x5);
	CHECK_EQ(m.hdr.size, 8);
	CHECK_EQ(m.p.state.index, 0);
	CHECK_EQ(m.p.state.num, 1234);
	/* The kick fd was closed (vhost-user.rst GET_VRING_BASE). */
	CHECK_EQ(tl_count_fds(), n0 - 1);
	CHECK_EQ(vhu_vq_kick_fd(vq), -1);
	CHECK(!vq->started);

	/* A restart needs a new kick. */
	int k2 = eventfd(0, EFD_CLOEXEC);
	uint64_t u = 0;
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_VRING_KICK, &u, 8, &k2, 1), 0);
	close(k2);
	CHECK_EQ(dev.started[0], 2);
	close_all();
}

TEST(vring_kick_without_fd_means_polling)
{
	open_full();
	CHECK_EQ(fe_set_mem(&fe), 0);
	CHECK_EQ(fe_setup_vring(&fe, 0, 256, &kick0), 0);
	uint64_t u = 0 | VHU_VRING_NOFD;
	int n0 = tl_count_fds();
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_VRING_KICK, &u, 8, NULL, 0), 0);
	CHECK_EQ(tl_count_fds(), n0 - 1); /* the old kick fd went */
	CHECK_EQ(fe_enable(&fe, 0, true), 0);
	CHECK_EQ(dev.started[0], 1);
	CHECK_EQ(vhu_vq_kick_fd(vhu_backend_vq(fe.b, 0)), -1);
	close_all();
}

TEST(vring_call_and_err_fds_are_kept_and_replaced)
{
	open_started();
	struct vhu_vq *vq = vhu_backend_vq(fe.b, 0);
	int n0 = tl_count_fds();
	int e = eventfd(0, EFD_CLOEXEC);
	uint64_t u = 0;
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_VRING_ERR, &u, 8, &e, 1), 0);
	close(e);
	CHECK_EQ(tl_count_fds(), n0 + 1); /* the session holds its copy */
	CHECK(vq->err_fd >= 0);
	int c = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_VRING_CALL, &u, 8, &c, 1), 0);
	/* The new call fd reaches the queue: signal through it (after the
	 * session's own interrupt for the new fd). */
	uint64_t one = 1, v = 0;
	CHECK_EQ(read(c, &v, 8), 8);
	CHECK_EQ(v, 1);
	CHECK_EQ(write(vq->call_fd, &one, 8), 8);
	CHECK_EQ(read(c, &v, 8), 8);
	CHECK_EQ(v, 1);
	close(c);
	CHECK_EQ(tl_count_fds(), n0 + 1); /* old call fd closed */
	/* The device was asked to stop before the swap, then restarted. */
	CHECK_EQ(dev.stopped[0], 2);
	CHECK_EQ(dev.started[0], 3);
	u = VHU_VRING_NOFD;
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_VRING_ERR, &u, 8, NULL, 0), 0);
	CHECK_EQ(tl_count_fds(), n0);
	CHECK_EQ(vq->err_fd, -1);
	close_all();
}

/* libvhost-user signals every new call fd (an interrupt lost across an
 * fd switch or a reconnect would leave the driver waiting), and QEMU's
 * own vhost-user-blk tests wait for it: one interrupt, on a running
 * queue and on one that has its rings but is not enabled yet (QEMU sends
 * SET_VRING_CALL before SET_VRING_ENABLE), none without a ring. */
TEST(new_call_fd_is_signalled_once)
{
	open_started();
	struct vhu_vq *vq = vhu_backend_vq(fe.b, 0);
	int c = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	uint64_t u = 0, v = 0;
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_VRING_CALL, &u, 8, &c, 1), 0);
	CHECK(vq->started);
	CHECK_EQ(read(c, &v, 8), 8);
	CHECK_EQ(v, 1);
	CHECK(read(c, &v, 8) < 0 && errno == EAGAIN);
	close(c);

	/* Queue 1: rings set, not enabled (not started). */
	int k1 = -1;
	CHECK_EQ(fe_setup_vring(&fe, 1, 256, &k1), 0);
	CHECK(!vhu_backend_vq(fe.b, 1)->started);
	c = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	u = 1;
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_VRING_CALL, &u, 8, &c, 1), 0);
	v = 0;
	CHECK_EQ(read(c, &v, 8), 8);
	CHECK_EQ(v, 1);
	close(c);
	close(k1);

	/* A call "eventfd" that is a full, blocking pipe: the session must
	 * not block writing to it (SIGALRM ends the test if it does). */
	int pp[2];
	CHECK_EQ(pipe2(pp, O_CLOEXEC | O_NONBLOCK), 0);
	char junk[4096];
	memset(junk, 0, sizeof(junk));
	while (write(pp[1], junk, sizeof(junk)) > 0)
		;
	CHECK_EQ(fcntl(pp[1], F_SETFL, 0), 0);
	alarm(10);
	u = 0;
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_VRING_CALL, &u, 8, &pp[1], 1), 0);
	alarm(0);
	CHECK(vq->started);
	close(pp[0]);
	close(pp[1]);

	/* After a reset no queue has rings: nothing to look at, no
	 * interrupt. */
	CHECK_EQ(fe_acked(&fe, VHU_REQ_RESET_DEVICE, NULL, 0, NULL, 0), 0);
	c = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	u = 0;
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_VRING_CALL, &u, 8, &c, 1), 0);
	CHECK(read(c, &v, 8) < 0 && errno == EAGAIN);
	close(c);
	/* "No fd" signals nothing and breaks nothing. */
	u = VHU_VRING_NOFD;
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_VRING_CALL, &u, 8, NULL, 0), 0);
	close_all();
}

TEST(vring_addr_rules)
{
	open_full();
	CHECK_EQ(fe_set_mem(&fe), 0);
	struct vhu_vring_state st = { .index = 1, .num = 64 };
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_VRING_NUM, &st, 8, NULL, 0), 0);
	struct vhu_vring_addr a = {
		.index = 1,
		.desc_user_addr = FE_UVA + 0x1000,
		.avail_user_addr = FE_UVA + 0x2000,
		.used_user_addr = FE_UVA + 0x3000,
	};
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), 0);
	struct vhu_vq *vq = vhu_backend_vq(fe.b, 1);
	/* The session's mapping shows what the front-end wrote. */
	CHECK(vq->desc != NULL);
	fe.mem[0x1000] = 0x5a;
	CHECK_EQ(((volatile uint8_t *)vq->desc)[0], 0x5a);

	/* The LOG flag is the only one (dirty logging, test-log.c). */
	a.flags = VHU_VRING_F_LOG;
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), 0);
	CHECK(vq->addr_flags == VHU_VRING_F_LOG);
	a.flags = 2;
	CHECK(fe_acked(&fe, VHU_REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0) > 0);
	/* Rings outside guest memory are refused. */
	a.flags = 0;
	a.used_user_addr = FE_UVA + FE_MEM_SIZE;
	CHECK(fe_acked(&fe, VHU_REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0) > 0);
	CHECK(!vq->addr_set);
	/* Valid sizes: 1 and the device maximum. */
	st.num = 1;
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_VRING_NUM, &st, 8, NULL, 0), 0);
	st.num = 256;
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_VRING_NUM, &st, 8, NULL, 0), 0);
	CHECK_EQ(vq->size, 256);
	st.num = 512; /* above max_queue_size */
	CHECK(fe_acked(&fe, VHU_REQ_SET_VRING_NUM, &st, 8, NULL, 0) > 0);
	CHECK_EQ(vq->size, 256);
	close_all();
}

TEST(addresses_before_memory_map_when_memory_arrives)
{
	open_full();
	int k;
	/* Rings first, memory later (allowed by the protocol). */
	struct vhu_vring_state st = { .index = 0, .num = 256 };
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_VRING_NUM, &st, 8, NULL, 0), 0);
	struct vhu_vring_addr a = {
		.index = 0,
		.desc_user_addr = FE_UVA + FE_RING_GPA(0),
		.avail_user_addr = FE_UVA + FE_RING_GPA(0) + 0x2000,
		.used_user_addr = FE_UVA + FE_RING_GPA(0) + 0x3000,
	};
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), 0);
	k = eventfd(0, EFD_CLOEXEC);
	uint64_t u = 0;
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_VRING_KICK, &u, 8, &k, 1), 0);
	close(k);
	CHECK_EQ(fe_enable(&fe, 0, true), 0);
	CHECK_EQ(dev.started[0], 0);
	CHECK_EQ(fe_set_mem(&fe), 0);
	CHECK_EQ(dev.started[0], 1);
	close_all();
}

/* ---- memory ---- */

static int new_memfd(size_t size)
{
	int fd = memfd_create("vhu-test-extra", MFD_CLOEXEC);
	if (fd >= 0 && ftruncate(fd, (off_t)size) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

TEST(mem_table_change_restarts_started_queues)
{
	open_started();
	struct vhu_vq *vq = vhu_backend_vq(fe.b, 0);
	void *old_desc = (void *)vq->desc;
	/* A new table with the same layout on a new memfd. */
	int fd = new_memfd(FE_MEM_SIZE);
	CHECK(fd >= 0);
	struct vhu_mem_table t = { .nregions = 1 };
	t.regions[0] = (struct vhu_mem_region){ 0, FE_MEM_SIZE, FE_UVA, 0 };
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_MEM_TABLE, &t, 8 + 32, &fd, 1), 0);
	CHECK(!strcmp(dev.log, "S0T0S0"));
	CHECK(vq->started);
	CHECK(vq->desc != NULL);
	(void)old_desc;
	/* The rings now live in the new memory. */
	uint8_t *p = mmap(NULL, FE_MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
			  fd, 0);
	CHECK(p != MAP_FAILED);
	p[FE_RING_GPA(0)] = 0x77;
	CHECK_EQ(((volatile uint8_t *)vq->desc)[0], 0x77);
	munmap(p, FE_MEM_SIZE);
	close(fd);

	/* A table without the rings: the queue stops and stays stopped. */
	fd = new_memfd(0x10000);
	t.regions[0] = (struct vhu_mem_region){ 0x800000, 0x10000, FE_UVA + 0x800000, 0 };
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_MEM_TABLE, &t, 8 + 32, &fd, 1), 0);
	close(fd);
	CHECK(!vq->started);
	CHECK_EQ(dev.stopped[0], 2);
	close_all();
}

TEST(bad_mem_table_keeps_the_old_one)
{
	open_started();
	int fds[2] = { new_memfd(0x10000), new_memfd(0x10000) };
	struct vhu_mem_table t = { .nregions = 2 };
	/* The second region overlaps the first: the whole table is refused. */
	t.regions[0] = (struct vhu_mem_region){ 0x4000000, 0x10000, 0x1000000, 0 };
	t.regions[1] = (struct vhu_mem_region){ 0x4008000, 0x10000, 0x2000000, 0 };
	int n0 = tl_count_fds();
	CHECK(fe_acked(&fe, VHU_REQ_SET_MEM_TABLE, &t, 8 + 64, fds, 2) > 0);
	CHECK_EQ(tl_count_fds(), n0);
	close(fds[0]);
	close(fds[1]);
	CHECK(vhu_backend_vq(fe.b, 0)->started);
	CHECK_EQ(dev.stopped[0], 0);
	close_all();
}

TEST(add_and_remove_memory_regions)
{
	open_started();
	uint64_t slots;
	CHECK_EQ(fe_get_u64(&fe, VHU_REQ_GET_MAX_MEM_SLOTS, &slots), 0);
	CHECK_EQ(slots, 509);

	int fd = new_memfd(0x20000);
	struct vhu_mem_single one = {
		.region = { 0x10000000, 0x20000, FE_UVA + 0x10000000, 0 },
	};
	int n0 = tl_count_fds();
	CHECK_EQ(fe_acked(&fe, VHU_REQ_ADD_MEM_REG, &one, sizeof(one), &fd, 1), 0);
	CHECK_EQ(tl_count_fds(), n0 + 1);
	/* Queues were taken back around the change and handed out again. */
	CHECK(!strcmp(dev.log, "S0T0S0"));
	/* QEMU sends the fd along with REM_MEM_REG: closed, not kept. */
	CHECK_EQ(fe_acked(&fe, VHU_REQ_REM_MEM_REG, &one, sizeof(one), &fd, 1), 0);
	CHECK_EQ(tl_count_fds(), n0);
	CHECK(!strcmp(dev.log, "S0T0S0T0S0"));
	close(fd);
	/* Removing it again: unknown region, refused. */
	CHECK(fe_acked(&fe, VHU_REQ_REM_MEM_REG, &one, sizeof(one), NULL, 0) > 0);

	/* Removing the region that holds the rings stops the queue. */
	struct vhu_mem_single main_reg = {
		.region = { 0, FE_MEM_SIZE, FE_UVA, 0 },
	};
	CHECK_EQ(fe_acked(&fe, VHU_REQ_REM_MEM_REG, &main_reg, sizeof(main_reg),
			  NULL, 0), 0);
	CHECK(!vhu_backend_vq(fe.b, 0)->started);
	/* Adding it back restarts it. */
	CHECK_EQ(fe_acked(&fe, VHU_REQ_ADD_MEM_REG, &main_reg, sizeof(main_reg),
			  &fe.mem_fd, 1), 0);
	CHECK(vhu_backend_vq(fe.b, 0)->started);
	close_all();
}

/* queue_stop_begin: before every queue_stopped; a stop of all queues
 * begins each before the first queue_stopped, so a device that waits in
 * queue_stopped waits for all of them at once. */
static unsigned begun_restarting;
static void t_stop_begin(void *o, struct vhu_vq *vq)
{
	unsigned i = vhu_vq_index(vq);
	logev(i ? "B1" : "B0");
	begun_restarting += vhu_vq_is_restarting(vq);
	/* Still the device's: not stopped yet. */
	CHECK(vq->started);
}

TEST(all_queue_stops_begin_every_queue_first)
{
	struct vhu_device_ops ops_b = ops;
	ops_b.queue_stop_begin = t_stop_begin;
	reset_dev();
	begun_restarting = 0;
	struct vhu_backend_opts o = default_opts();
	o.ops = &ops_b;
	CHECK_EQ(fe_open(&fe, &o), 0);
	CHECK_EQ(fe_negotiate(&fe, ~VHU_BIT(VHU_F_RING_PACKED), ALL_PF), 0);
	uint64_t feat = vhu_backend_features(fe.b);
	CHECK(feat & VHU_BIT(VHU_F_LOG_ALL));
	dev.log[0] = 0;
	CHECK_EQ(fe_set_mem(&fe), 0);
	int k1 = -1;
	CHECK_EQ(fe_setup_vring(&fe, 0, 256, &kick0), 0);
	CHECK_EQ(fe_setup_vring(&fe, 1, 256, &k1), 0);
	CHECK_EQ(fe_enable(&fe, 0, true), 0);
	CHECK_EQ(fe_enable(&fe, 1, true), 0);
	CHECK(!strcmp(dev.log, "S0S1"));

	/* A new memory table (the same layout on a new memfd). */
	dev.log[0] = 0;
	int fd = new_memfd(FE_MEM_SIZE);
	CHECK(fd >= 0);
	struct vhu_mem_table t = { .nregions = 1 };
	t.regions[0] = (struct vhu_mem_region){ 0, FE_MEM_SIZE, FE_UVA, 0 };
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_MEM_TABLE, &t, 8 + 32, &fd, 1), 0);
	close(fd);
	CHECK(!strcmp(dev.log, "B0B1T0T1S0S1"));
	CHECK_EQ(begun_restarting, 2);

	/* Dirty logging switched off while the rings run. */
	dev.log[0] = 0;
	uint64_t f = feat & ~VHU_BIT(VHU_F_LOG_ALL);
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_FEATURES, &f, 8, NULL, 0), 0);
	CHECK(!strcmp(dev.log, "B0B1T0T1S0S1"));
	CHECK_EQ(begun_restarting, 4);

	/* One queue alone: begun, then stopped. */
	dev.log[0] = 0;
	CHECK_EQ(fe_enable(&fe, 1, false), 0);
	CHECK(!strcmp(dev.log, "B1T1"));
	CHECK_EQ(fe_enable(&fe, 1, true), 0);

	/* A reset (as a disconnect): real stops, begun first. */
	dev.log[0] = 0;
	CHECK_EQ(fe_acked(&fe, VHU_REQ_RESET_DEVICE, NULL, 0, NULL, 0), 0);
	CHECK(!strcmp(dev.log, "B0B1T0T1RX"));
	CHECK_EQ(begun_restarting, 4);
	close(k1);
	close_all();
}

/* A memory table that no longer holds queue 1's rings: the queue was
 * stopped to restart and cannot; the device is told the stop is final. */
static unsigned restart_failed[2];
static void t_restart_failed(void *o, struct vhu_vq *vq)
{
	restart_failed[vhu_vq_index(vq) & 1]++;
	logev(vhu_vq_index(vq) ? "F1" : "F0");
	CHECK(!vhu_vq_is_restarting(vq));
}

TEST(queue_that_cannot_restart_is_reported)
{
	struct vhu_device_ops ops_b = ops;
	ops_b.queue_restart_failed = t_restart_failed;
	reset_dev();
	memset(restart_failed, 0, sizeof(restart_failed));
	struct vhu_backend_opts o = default_opts();
	o.ops = &ops_b;
	CHECK_EQ(fe_open(&fe, &o), 0);
	CHECK_EQ(fe_negotiate(&fe, ~VHU_BIT(VHU_F_RING_PACKED), ALL_PF), 0);
	CHECK_EQ(fe_set_mem(&fe), 0);
	int k1 = -1;
	CHECK_EQ(fe_setup_vring(&fe, 0, 256, &kick0), 0);
	CHECK_EQ(fe_setup_vring(&fe, 1, 256, &k1), 0);
	CHECK_EQ(fe_enable(&fe, 0, true), 0);
	CHECK_EQ(fe_enable(&fe, 1, true), 0);

	/* The same layout again: both restart, nothing reported. */
	int fd = new_memfd(FE_MEM_SIZE);
	CHECK(fd >= 0);
	struct vhu_mem_table t = { .nregions = 1 };
	t.regions[0] = (struct vhu_mem_region){ 0, FE_MEM_SIZE, FE_UVA, 0 };
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_MEM_TABLE, &t, 8 + 32, &fd, 1), 0);
	close(fd);
	CHECK_EQ(restart_failed[0] + restart_failed[1], 0);

	/* Memory up to queue 1's rings only (FE_RING_GPA(1)): queue 0
	 * restarts, queue 1 cannot and is reported once. */
	dev.log[0] = 0;
	fd = new_memfd(FE_RING_GPA(1));
	CHECK(fd >= 0);
	t.regions[0] = (struct vhu_mem_region){ 0, FE_RING_GPA(1), FE_UVA, 0 };
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_MEM_TABLE, &t, 8 + 32, &fd, 1), 0);
	close(fd);
	CHECK_EQ(restart_failed[0], 0);
	CHECK_EQ(restart_failed[1], 1);
	CHECK(strstr(dev.log, "F1") != NULL);
	close(k1);
	close_all();
}

/* ---- reset, status ---- */

TEST(reset_device_stops_and_resets)
{
	open_started();
	CHECK_EQ(fe_acked(&fe, VHU_REQ_RESET_DEVICE, NULL, 0, NULL, 0), 0);
	/* X: device_reset, the guest's device is reset (not a disconnect) */
	CHECK(!strcmp(dev.log, "S0T0RX"));
	struct vhu_vq *vq = vhu_backend_vq(fe.b, 0);
	CHECK(!vq->started);
	CHECK_EQ(vq->size, 0);
	CHECK_EQ(vq->kick_fd, -1);
	CHECK_EQ(vq->call_fd, -1);
	/* Ownership and negotiation survive: the front-end sets up again. */
	CHECK(vhu_backend_protocol_features(fe.b) & VHU_BIT(VHU_PF_REPLY_ACK));
	close(kick0);
	kick0 = -1;
	CHECK_EQ(fe_setup_vring(&fe, 0, 256, &kick0), 0);
	CHECK_EQ(fe_enable(&fe, 0, true), 0);
	CHECK_EQ(dev.started[0], 2);
	close_all();
}

TEST(reset_owner_is_a_reset)
{
	open_started();
	CHECK_EQ(fe_acked(&fe, VHU_REQ_RESET_OWNER, NULL, 0, NULL, 0), 0);
	CHECK(!strcmp(dev.log, "S0T0RX"));
	CHECK_EQ(vhu_backend_features(fe.b), 0);
	close_all();
}

TEST(status_set_and_get)
{
	open_full();
	uint64_t s = 0xf;
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_STATUS, &s, 8, NULL, 0), 0);
	CHECK_EQ(dev.status, 0xf);
	uint64_t v;
	CHECK_EQ(fe_get_u64(&fe, VHU_REQ_GET_STATUS, &v), 0);
	CHECK_EQ(v, 0xf);
	s = 0x100;
	CHECK(fe_acked(&fe, VHU_REQ_SET_STATUS, &s, 8, NULL, 0) > 0);
	CHECK_EQ(fe_get_u64(&fe, VHU_REQ_GET_STATUS, &v), 0);
	CHECK_EQ(v, 0xf);
	close_all();
}

/* ---- config space (the seed) ---- */

static int get_config(uint32_t off, uint32_t size, uint32_t flags,
		      struct vhu_msg *r)
{
	uint32_t len;
	struct vhu_msg m = cfg_req(off, size, flags, &len);
	return fe_call(&fe, VHU_REQ_GET_CONFIG, 1, &m.p, len, NULL, 0, r);
}

TEST(get_config_returns_exactly_the_window)
{
	open_full();
	static const uint32_t win[][2] = {
		{ 0, 64 }, { 0, 1 }, { 5, 7 }, { 63, 1 }, { 32, 8 }, { 60, 4 },
		{ 0, 57 }, { 8, 48 },
	};
	for (unsigned i = 0; i < VHU__ARRAY_SIZE(win); i++) {
		struct vhu_msg r;
		uint32_t off = win[i][0], size = win[i][1];
		CHECK_EQ(get_config(off, size, 0, &r), 1);
		CHECK_EQ(r.hdr.request, VHU_REQ_GET_CONFIG);
		CHECK_EQ(r.hdr.flags, 0x5);
		CHECK_EQ(r.hdr.size, 12 + size);
		CHECK_EQ(r.p.config.offset, off);
		CHECK_EQ(r.p.config.size, size);
		CHECK_EQ(r.p.config.flags, 0);
		CHECK_MEM(r.p.config.payload, dev.cfg + off, size);
	}
	/* rust-vmm front-ends send flags 1 on GET_CONFIG: ignored, echoed. */
	struct vhu_msg r;
	CHECK_EQ(get_config(4, 4, 1, &r), 1);
	CHECK_EQ(r.hdr.size, 16);
	CHECK_EQ(r.p.config.flags, 1);
	CHECK_MEM(r.p.config.payload, dev.cfg + 4, 4);
	/* A head-only request (12 bytes) is answered the same way. */
	struct vhu_msg q;
	uint32_t len;
	q = cfg_req(16, 8, 0, &len);
	CHECK_EQ(fe_call(&fe, VHU_REQ_GET_CONFIG, 1, &q.p, 12, NULL, 0, &r), 1);
	CHECK_EQ(r.hdr.size, 20);
	CHECK_MEM(r.p.config.payload, dev.cfg + 16, 8);
	close_all();
}

TEST(get_config_errors_reply_size_zero)
{
	open_full();
	static const uint32_t bad[][2] = {
		{ 0, 0 },            /* size 0 */
		{ 60, 8 },           /* past the end */
		{ 64, 1 },           /* starts at the end */
		{ 0xffffffffu, 2 },  /* offset + size overflows */
		{ 0, 300 },          /* more than 256 */
		{ 0x80000000u, 0x80000000u },
	};
	for (unsigned i = 0; i < VHU__ARRAY_SIZE(bad); i++) {
		struct vhu_msg r;
		CHECK_EQ(get_config(bad[i][0], bad[i][1], 0, &r), 1);
		CHECK_EQ(r.hdr.flags, 0x5);
		CHECK_EQ(r.hdr.size, 12);
		CHECK_EQ(r.p.config.offset, bad[i][0]);
		CHECK_EQ(r.p.config.size, 0);
	}
	/* The device failing the read is an error too. */
	dev.fail_get = true;
	struct vhu_msg r;
	CHECK_EQ(get_config(0, 8, 0, &r), 1);
	CHECK_EQ(r.hdr.size, 12);
	CHECK_EQ(r.p.config.size, 0);
	dev.fail_get = false;
	/* And the connection is fine. */
	CHECK_EQ(get_config(0, 8, 0, &r), 1);
	CHECK_EQ(r.hdr.size, 20);
	close_all();
}

static long long set_config(uint32_t off, uint32_t size, uint32_t flags,
			    const void *data)
{
	uint32_t len;
	struct vhu_msg m = cfg_req(off, size, flags, &len);
	memcpy(m.p.config.payload, data, size);
	return fe_acked(&fe, VHU_REQ_SET_CONFIG, &m.p, len, NULL, 0);
}

TEST(set_config_honours_writable_bytes_and_migration)
{
	open_full();
	uint8_t data[64];
	memset(data, 0x11, sizeof(data));
	uint8_t orig[64];
	memcpy(orig, dev.cfg, 64);

	/* A guest write to read-only bytes: refused, nothing changes. */
	CHECK(set_config(0, 1, 0, data) > 0);
	CHECK(set_config(39, 2, 0, data) > 0); /* 39 read-only, 40 writable */
	CHECK(set_config(32, 2, 0, data) > 0); /* 33 read-only */
	CHECK_EQ(dev.set_config_calls, 0);
	CHECK_MEM(dev.cfg, orig, 64);

	/* Writable bytes: accepted and passed to the device. */
	CHECK_EQ(set_config(32, 1, 0, data), 0);
	CHECK_EQ(dev.cfg[32], 0x11);
	CHECK_EQ(set_config(40, 4, 0, data), 0);
	CHECK_EQ(dev.cfg[43], 0x11);
	CHECK_EQ(dev.set_config_calls, 2);
	CHECK_EQ(dev.last_flags, 0);

	/* Migration restores anywhere. */
	CHECK_EQ(set_config(0, 16, VHU_CONFIG_MIGRATION, data), 0);
	CHECK_EQ(dev.cfg[0], 0x11);
	CHECK_EQ(dev.cfg[15], 0x11);
	CHECK_EQ(dev.last_flags, VHU_CONFIG_MIGRATION);

	/* Unknown flags, bad windows: refused. */
	CHECK(set_config(32, 1, 2, data) > 0);
	CHECK(set_config(60, 8, VHU_CONFIG_MIGRATION, data) > 0);
	CHECK(set_config(0, 0, VHU_CONFIG_MIGRATION, data) > 0);
	CHECK_EQ(dev.set_config_calls, 3);

	/* Without NEED_REPLY a refused guest write is logged, and the
	 * connection stays (a guest must not be able to drop it). */
	uint32_t len;
	struct vhu_msg m = cfg_req(0, 4, 0, &len);
	CHECK_EQ(fe_send(&fe, VHU_REQ_SET_CONFIG, 1, &m.p, len, NULL, 0), 0);
	CHECK_EQ(fe_process(&fe), 0);
	CHECK(!fe_dropped(&fe));
	CHECK_EQ(dev.set_config_calls, 3);
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_OWNER, NULL, 0, NULL, 0), 0);
	close_all();
}

/* ---- the back-end channel ---- */

static void send_chan_ack(uint64_t v)
{
	struct vhu_msg a = {
		.hdr = { VHU_BREQ_CONFIG_CHANGE_MSG, 0x5, 8 },
	};
	a.p.u64 = v;
	CHECK_EQ(vhu__sock_send(fe.chan, &a, NULL, 0), 0);
}

/* Acknowledge a CONFIG_CHANGE_MSG with v: the device hears of it, as its
 * acks-th acknowledgement. */
static void ack_config_change(uint64_t v, unsigned acks)
{
	send_chan_ack(v);
	CHECK_EQ(fe_process(&fe), 0);
	CHECK_EQ(dev.acks, acks);
	CHECK_EQ(dev.last_ack, v);
}

TEST(config_change_with_ack_does_not_deadlock)
{
	open_full();
	CHECK_EQ(fe_set_channel(&fe), 0);
	dev.cfg[0] = 0x42;
	/* Returns at once: the ack comes later. */
	CHECK_EQ(vhu_backend_config_changed(fe.b, true), 0);
	struct vhu_msg m;
	CHECK_EQ(fe_chan_recv(&fe, &m), 1);
	CHECK_EQ(m.hdr.request, VHU_BREQ_CONFIG_CHANGE_MSG);
	CHECK_EQ(m.hdr.flags, 0x9); /* version 1 | NEED_REPLY */
	CHECK_EQ(m.hdr.size, 0);

	/* Like QEMU: read the config on the main socket before acking. */
	struct vhu_msg r;
	CHECK_EQ(get_config(0, 8, 0, &r), 1);
	CHECK_EQ(r.hdr.size, 20);
	CHECK_EQ(r.p.config.payload[0], 0x42);
	CHECK_EQ(get_config(8, 8, 0, &r), 1);
	CHECK_EQ(dev.acks, 0);

	ack_config_change(0, 1);

	/* A failing ack is reported as such. */
	CHECK_EQ(vhu_backend_config_changed(fe.b, true), 0);
	CHECK_EQ(fe_chan_recv(&fe, &m), 1);
	ack_config_change(3, 2);

	/* Without want_ack: no NEED_REPLY, nothing pending. */
	CHECK_EQ(vhu_backend_config_changed(fe.b, false), 0);
	CHECK_EQ(fe_chan_recv(&fe, &m), 1);
	CHECK_EQ(m.hdr.flags, 0x1);
	close_all();
}

TEST(config_change_needs_connection_and_channel)
{
	reset_dev();
	struct vhu_backend_opts o = default_opts();
	struct vhu_backend *b;
	CHECK_EQ(vhu_backend_new(&o, &b), 0);
	CHECK_EQ(vhu_backend_config_changed(b, false), -ENOTCONN);
	vhu_backend_free(b);

	open_full();
	CHECK_EQ(vhu_backend_config_changed(fe.b, false), -EOPNOTSUPP);
	close_all();

	/* BACKEND_REQ without CONFIG negotiated. */
	reset_dev();
	CHECK_EQ(fe_open(&fe, &o), 0);
	CHECK_EQ(fe_negotiate(&fe, ~0ull, VHU_BIT(VHU_PF_REPLY_ACK) |
				   VHU_BIT(VHU_PF_BACKEND_REQ)), 0);
	CHECK_EQ(fe_set_channel(&fe), 0);
	CHECK_EQ(vhu_backend_config_changed(fe.b, true), -EOPNOTSUPP);
	close_all();
}

TEST(garbage_on_channel_closes_only_the_channel)
{
	open_full();
	CHECK_EQ(fe_set_channel(&fe), 0);
	CHECK_EQ(vhu_backend_config_changed(fe.b, true), 0);
	struct vhu_msg m = { .hdr = { 7, 0x1, 0 } };
	CHECK_EQ(vhu__sock_send(fe.chan, &m, NULL, 0), 0);
	CHECK_EQ(fe_process(&fe), 0);
	/* The pending ack is reported failed; the channel is gone. */
	CHECK_EQ(dev.acks, 1);
	CHECK(dev.last_ack < 0);
	CHECK_EQ(fe_chan_recv(&fe, &m), 1); /* the CONFIG_CHANGE_MSG */
	CHECK_EQ(fe_chan_recv(&fe, &m), 0); /* then EOF */
	CHECK_EQ(vhu_backend_config_changed(fe.b, false), -EOPNOTSUPP);
	/* The main connection is fine. */
	uint64_t f;
	CHECK_EQ(fe_get_u64(&fe, VHU_REQ_GET_FEATURES, &f), 0);
	close_all();
}

TEST(channel_eof_fails_pending_ack)
{
	open_full();
	CHECK_EQ(fe_set_channel(&fe), 0);
	CHECK_EQ(vhu_backend_config_changed(fe.b, true), 0);
	close(fe.chan);
	fe.chan = -1;
	CHECK_EQ(fe_process(&fe), 0);
	CHECK_EQ(dev.acks, 1);
	CHECK_EQ(dev.last_ack, -ECONNRESET);
	CHECK(vhu_backend_is_connected(fe.b));
	close_all();
}

TEST(unsolicited_ack_closes_channel)
{
	open_full();
	CHECK_EQ(fe_set_channel(&fe), 0);
	send_chan_ack(0);
	CHECK_EQ(fe_process(&fe), 0);
	struct vhu_msg m;
	CHECK_EQ(fe_chan_recv(&fe, &m), 0);
	CHECK_EQ(dev.acks, 0);
	CHECK(vhu_backend_is_connected(fe.b));
	close_all();
}

/* ---- connections ---- */

static void tmp_path(char *buf, size_t len, const char *tag)
{
	snprintf(buf, len, "/tmp/vhu-test-%d-%s.sock", (int)getpid(), tag);
}

static int connect_path(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

TEST(listen_path_serves_front_ends_in_turn)
{
	reset_dev();
	char path[108];
	tmp_path(path, sizeof(path), "turn");
	struct vhu_backend_opts o = default_opts();
	memset(&fe, 0, sizeof(fe));
	fe.chan = fe.mem_fd = -1;
	CHECK_EQ(vhu_backend_new(&o, &fe.b), 0);
	CHECK_EQ(vhu_backend_listen(fe.b, path), 0);
	CHECK(!vhu_backend_is_connected(fe.b));

	fe.sock = connect_path(path);
	CHECK(fe.sock >= 0);
	CHECK_EQ(fe_process(&fe), 0);
	CHECK_EQ(dev.connected, 1);
	CHECK_EQ(fe_negotiate(&fe, ~0ull, ALL_PF), 0);
	CHECK_EQ(fe_set_mem(&fe), 0);
	CHECK_EQ(fe_setup_vring(&fe, 0, 256, &kick0), 0);
	CHECK_EQ(fe_enable(&fe, 0, true), 0);

	/* A second front-end while one is served: accepted and closed. */
	int other = connect_path(path);
	CHECK(other >= 0);
	CHECK_EQ(fe_process(&fe), 0);
	char c;
	CHECK_EQ(read(other, &c, 1), 0);
	close(other);
	CHECK_EQ(dev.connected, 1);

	/* The first one leaves: the device is reset. */
	close(fe.sock);
	fe.sock = -1;
	CHECK_EQ(fe_process(&fe), 0);
	CHECK(!strcmp(dev.log, "CS0T0RD"));
	CHECK(!vhu_backend_is_connected(fe.b));
	CHECK_EQ(vhu_backend_features(fe.b), 0);
	CHECK_EQ(vhu_backend_vq(fe.b, 0)->size, 0);

	/* The next one starts from scratch. */
	munmap(fe.mem, fe.mem_size);
	fe.mem = NULL;
	close(fe.mem_fd);
	fe.mem_fd = -1;
	close(kick0);
	kick0 = -1;
	fe.sock = connect_path(path);
	CHECK(fe.sock >= 0);
	CHECK_EQ(fe_process(&fe), 0);
	CHECK_EQ(dev.connected, 2);
	CHECK_EQ(fe_negotiate(&fe, ~0ull, ALL_PF), 0);
	CHECK_EQ(fe_set_mem(&fe), 0);
	CHECK_EQ(fe_setup_vring(&fe, 0, 256, &kick0), 0);
	CHECK_EQ(fe_enable(&fe, 0, true), 0);
	CHECK_EQ(dev.started[0], 2);
	close_all();
	/* The session removed its socket. */
	struct stat st;
	CHECK(lstat(path, &st) < 0);
}

TEST(listen_path_in_use_stale_or_not_a_socket)
{
	reset_dev();
	char path[108];
	tmp_path(path, sizeof(path), "inuse");
	unlink(path);
	struct vhu_backend_opts o = default_opts();
	struct vhu_backend *b1, *b2;
	CHECK_EQ(vhu_backend_new(&o, &b1), 0);
	CHECK_EQ(vhu_backend_new(&o, &b2), 0);
	CHECK_EQ(vhu_backend_listen(b1, path), 0);
	CHECK_EQ(vhu_backend_listen(b2, path), -EADDRINUSE);
	vhu_backend_free(b1);

	/* A stale socket (nobody listening) is replaced. */
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, path);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK_EQ(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(s);
	CHECK_EQ(vhu_backend_listen(b2, path), 0);
	int c = connect_path(path);
	CHECK(c >= 0);
	CHECK_EQ(vhu_backend_process(b2), 0);
	CHECK(vhu_backend_is_connected(b2));
	close(c);
	CHECK_EQ(vhu_backend_listen(b2, path), -EBUSY);
	vhu_backend_free(b2);

	/* A regular file is never removed. */
	int f = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	CHECK(f >= 0);
	close(f);
	CHECK_EQ(vhu_backend_new(&o, &b1), 0);
	CHECK_EQ(vhu_backend_listen(b1, path), -EEXIST);
	vhu_backend_free(b1);
	struct stat st;
	CHECK_EQ(lstat(path, &st), 0);
	CHECK(S_ISREG(st.st_mode));
	unlink(path);
}

TEST(listen_fd_takes_a_listening_socket_only)
{
	reset_dev();
	char path[108];
	tmp_path(path, sizeof(path), "lfd");
	unlink(path);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, path);
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK_EQ(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHECK_EQ(listen(l, 1), 0);
	struct vhu_backend_opts o = default_opts();
	memset(&fe, 0, sizeof(fe));
	fe.chan = fe.mem_fd = -1;
	CHECK_EQ(vhu_backend_new(&o, &fe.b), 0);
	CHECK_EQ(vhu_backend_listen_fd(fe.b, l), 0);
	fe.sock = connect_path(path);
	CHECK(fe.sock >= 0);
	CHECK_EQ(fe_process(&fe), 0);
	uint64_t f;
	CHECK_EQ(fe_get_u64(&fe, VHU_REQ_GET_FEATURES, &f), 0);
	close_all();
	unlink(path);

	/* Not listening: refused (and the fd is the session's: closed). */
	struct vhu_backend *b;
	CHECK_EQ(vhu_backend_new(&o, &b), 0);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK_EQ(vhu_backend_listen_fd(b, s), -EINVAL);
	CHECK_EQ(vhu_backend_process(b), 0);
	vhu_backend_free(b);
}

TEST(connected_fd_session_ends_with_its_peer)
{
	open_started();
	close(fe.sock);
	fe.sock = -1;
	CHECK_EQ(fe_process(&fe), -ENOTCONN);
	CHECK(!strcmp(dev.log, "S0T0RD"));
	CHECK_EQ(fe_process(&fe), -ENOTCONN);
	CHECK_EQ(vhu_backend_config_changed(fe.b, false), -ENOTCONN);
	close_all();
}

TEST(session_fd_is_pollable)
{
	open_full();
	struct pollfd p = { .fd = vhu_backend_fd(fe.b), .events = POLLIN };
	CHECK_EQ(poll(&p, 1, 0), 0);
	CHECK_EQ(fe_send(&fe, VHU_REQ_GET_FEATURES, 1, NULL, 0, NULL, 0), 0);
	CHECK_EQ(poll(&p, 1, 1000), 1);
	CHECK_EQ(fe_process(&fe), 0);
	CHECK_EQ(poll(&p, 1, 0), 0);
	struct vhu_msg m;
	CHECK_EQ(fe_recv(&fe, &m), 1);
	close_all();
}

TEST(device_watches_kicks_itself_without_queue_kick)
{
	reset_dev();
	struct vhu_device_ops o2 = ops;
	o2.queue_kick = NULL;
	struct vhu_backend_opts o = default_opts();
	o.ops = &o2;
	CHECK_EQ(fe_open(&fe, &o), 0);
	CHECK_EQ(fe_negotiate(&fe, ~0ull, ALL_PF), 0);
	CHECK_EQ(fe_set_mem(&fe), 0);
	CHECK_EQ(fe_setup_vring(&fe, 0, 256, &kick0), 0);
	CHECK_EQ(fe_enable(&fe, 0, true), 0);
	CHECK_EQ(dev.started[0], 1);
	uint64_t one = 1;
	CHECK_EQ(write(kick0, &one, 8), 8);
	struct pollfd p = { .fd = vhu_backend_fd(fe.b), .events = POLLIN };
	CHECK_EQ(poll(&p, 1, 0), 0);
	/* The kick is there for the device. */
	CHECK_EQ(vhu_vq_drain_kick(vhu_backend_vq(fe.b, 0)), 1);
	close_all();
}

TEST(new_rejects_bad_options)
{
	struct vhu_backend_opts o = default_opts();
	struct vhu_backend *b = (void *)1;
	o.num_queues = 0;
	CHECK_EQ(vhu_backend_new(&o, &b), -EINVAL);
	CHECK(b == NULL);
	o.num_queues = 257;
	CHECK_EQ(vhu_backend_new(&o, &b), -EINVAL);
	o.num_queues = 1;
	o.max_queue_size = 100;
	CHECK_EQ(vhu_backend_new(&o, &b), -EINVAL);
	o.max_queue_size = 65536;
	CHECK_EQ(vhu_backend_new(&o, &b), -EINVAL);
	o.max_queue_size = 0;
	o.config_size = 257;
	CHECK_EQ(vhu_backend_new(&o, &b), -EINVAL);
	o.config_size = 0;
	o.ops = NULL; /* no callbacks at all is fine */
	CHECK_EQ(vhu_backend_new(&o, &b), 0);
	vhu_backend_free(b);
	CHECK_EQ(vhu_backend_new(NULL, &b), -EINVAL);
}

/* Log lines the library writes while a test runs (vhu_set_log_fn). */
static char logbuf[4096];
static void log_capture(enum vhu_log_level level, const char *msg, void *o)
{
	size_t n = strlen(logbuf);
	snprintf(logbuf + n, sizeof(logbuf) - n, "%d %s\n", (int)level, msg);
}
static void capture_start(void)
{
	logbuf[0] = 0;
	vhu_set_log_fn(log_capture, NULL);
}

TEST(new_bad_options_logged_with_the_limit)
{
	struct vhu_backend_opts o = default_opts();
	struct vhu_backend *b = NULL;
	capture_start();
	o.num_queues = 0;
	CHECK_EQ(vhu_backend_new(&o, &b), -EINVAL);
	CHECK(strstr(logbuf, "0 vhu_backend_new: num_queues 0 outside 1 .. 256") != NULL);
	o.num_queues = 1;
	o.max_queue_size = 100;
	logbuf[0] = 0;
	CHECK_EQ(vhu_backend_new(&o, &b), -EINVAL);
	CHECK(strstr(logbuf, "0 vhu_backend_new: max_queue_size 100 is not a "
		      "power of two in 1 .. 32768") != NULL);
	o.max_queue_size = 65536;
	logbuf[0] = 0;
	CHECK_EQ(vhu_backend_new(&o, &b), -EINVAL);
	CHECK(strstr(logbuf, "max_queue_size 65536") != NULL);
	o.max_queue_size = 0;
	o.config_size = 257;
	logbuf[0] = 0;
	CHECK_EQ(vhu_backend_new(&o, &b), -EINVAL);
	CHECK(strstr(logbuf, "0 vhu_backend_new: config_size 257 above 256") != NULL);
	vhu_set_log_fn(NULL, NULL);
	vhu_backend_free(NULL); /* documented: does nothing */
}

TEST(vring_num_refusal_logs_size_and_limit)
{
	open_full();
	CHECK_EQ(fe_set_mem(&fe), 0);
	capture_start();
	struct vhu_vring_state st = { .index = 1, .num = 512 };
	CHECK(fe_acked(&fe, VHU_REQ_SET_VRING_NUM, &st, 8, NULL, 0) > 0);
	CHECK(strstr(logbuf, "0 SET_VRING_NUM: queue 1: ring size 512 outside "
		      "1 .. 256 (the device's max_queue_size)") != NULL);
	st.num = 100;
	CHECK(fe_acked(&fe, VHU_REQ_SET_VRING_NUM, &st, 8, NULL, 0) > 0);
	CHECK(strstr(logbuf, "0 SET_VRING_NUM: queue 1: ring size 100 is not a "
		      "power of two (split ring)") != NULL);
	st.num = 0;
	CHECK(fe_acked(&fe, VHU_REQ_SET_VRING_NUM, &st, 8, NULL, 0) > 0);
	CHECK(strstr(logbuf, "ring size 0 outside") != NULL);
	vhu_set_log_fn(NULL, NULL);
	close_all();
}

/* ---- vhu_backend_run ---- */

static void *connect_then_term(void *arg)
{
	struct vhu_fe *f = NULL;
	struct vhu_fe_opts fo = { .connect_timeout_ms = 2000 };
	/* The handshake needs the session served: run() is running. */
	intptr_t r = vhu_fe_connect(&f, arg, &fo);
	vhu_fe_close(f);
	kill(getpid(), SIGTERM);
	return (void *)r;
}

static volatile sig_atomic_t own_term;
static void own_term_handler(int sig) { (void)sig; own_term++; }

TEST(run_serves_until_sigterm_and_restores_the_handler)
{
	char path[] = "/tmp/vhu-test-run-XXXXXX";
	CHECK(mkdtemp(path) != NULL);
	char sock[64];
	snprintf(sock, sizeof(sock), "%s/s", path);
	struct vhu_backend_opts o = default_opts();
	struct vhu_backend *b = NULL;
	CHECK_EQ(vhu_backend_new(&o, &b), 0);
	CHECK_EQ(vhu_backend_run(b), -EINVAL); /* no socket yet */
	CHECK_EQ(vhu_backend_listen(b, sock), 0);
	struct sigaction mine = { .sa_handler = own_term_handler }, now;
	sigaction(SIGTERM, &mine, NULL);

	reset_dev();
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, connect_then_term, sock), 0);
	alarm(10);
	CHECK_EQ(vhu_backend_run(b), 0);
	alarm(0);
	void *fr;
	pthread_join(t, &fr);
	CHECK_EQ((intptr_t)fr, 0);
	CHECK_EQ(dev.connected, 1);
	CHECK_EQ(own_term, 0);
	/* The caller's handler is back. */
	sigaction(SIGTERM, NULL, &now);
	CHECK(now.sa_handler == own_term_handler);
	kill(getpid(), SIGTERM);
	CHECK_EQ(own_term, 1);
	signal(SIGTERM, SIG_DFL);

	/* Attached to another loop: refused. */
	struct vhu_loop *loop;
	CHECK_EQ(vhu_loop_new(&loop), 0);
	CHECK_EQ(vhu_backend_attach(b, loop), 0);
	CHECK_EQ(vhu_backend_run(b), -EBUSY);
	CHECK_EQ(vhu_backend_detach(b), 0);
	vhu_loop_free(loop);
	vhu_backend_free(b);
	CHECK(access(sock, F_OK) != 0);
	rmdir(path);
}

TEST(run_ends_with_a_connected_session)
{
	open_full();
	/* The front-end leaves: a connected_fd session has nothing more to
	 * serve and run() returns. */
	shutdown(fe.sock, SHUT_RDWR);
	alarm(10);
	CHECK_EQ(vhu_backend_run(fe.b), 0);
	alarm(0);
	CHECK_EQ(dev.disconnected, 1);
	CHECK_EQ(vhu_backend_run(fe.b), 0); /* ended: at once */
	close_all();
}

/* ---- the event loop ---- */

static void *stopper(void *arg)
{
	usleep(20000);
	vhu_loop_stop(arg);
	return NULL;
}

TEST(loop_runs_a_connected_session_to_its_end)
{
	open_full();
	struct vhu_loop *loop;
	CHECK_EQ(vhu_loop_new(&loop), 0);
	CHECK_EQ(vhu_backend_attach(fe.b, loop), 0);
	CHECK_EQ(vhu_backend_attach(fe.b, loop), -EBUSY);
	CHECK_EQ(fe_send(&fe, VHU_REQ_GET_FEATURES, 1, NULL, 0, NULL, 0), 0);
	shutdown(fe.sock, SHUT_WR);
	alarm(10);
	CHECK_EQ(vhu_loop_run(loop), 0);
	alarm(0);
	struct vhu_msg m;
	CHECK_EQ(fe_recv(&fe, &m), 1);
	CHECK_EQ(m.hdr.request, VHU_REQ_GET_FEATURES);
	CHECK_EQ(dev.disconnected, 1);
	CHECK_EQ(vhu_backend_detach(fe.b), 0);
	CHECK_EQ(vhu_backend_detach(fe.b), -ENOENT);
	vhu_loop_free(loop);
	close_all();
}

struct lctx {
	struct vhu_loop *loop;
	int a, b;
	unsigned hits_a, hits_b;
};

static void cb_b(struct vhu_loop *l, int fd, uint32_t ev, void *o)
{
	struct lctx *c = o;
	c->hits_b++;
}

static void cb_a(struct vhu_loop *l, int fd, uint32_t ev, void *o)
{
	struct lctx *c = o;
	c->hits_a++;
	/* Remove itself and the other watch from inside a callback. */
	vhu_loop_del(l, fd);
	vhu_loop_del(l, c->b);
}

TEST(loop_delete_inside_callback_and_stop_from_thread)
{
	struct lctx c = { 0 };
	CHECK_EQ(vhu_loop_new(&c.loop), 0);
	c.a = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
	c.b = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
	CHECK_EQ(vhu_loop_add(c.loop, c.a, EPOLLIN, cb_a, &c), 0);
	CHECK_EQ(vhu_loop_add(c.loop, c.b, EPOLLIN, cb_b, &c), 0);
	CHECK_EQ(vhu_loop_add(c.loop, c.a, EPOLLIN, cb_a, &c), -EEXIST);
	/* Both are ready; whichever runs first, a deleted watch never runs
	 * afterwards. */
	int n = vhu_loop_run_once(c.loop, 1000);
	CHECK(n >= 1);
	CHECK_EQ(c.hits_a, 1);
	CHECK(c.hits_b <= 1);
	unsigned hb = c.hits_b;
	CHECK_EQ(vhu_loop_run_once(c.loop, 0), 0);
	CHECK_EQ(c.hits_a, 1);
	CHECK_EQ(c.hits_b, hb);
	CHECK_EQ(vhu_loop_del(c.loop, c.a), -ENOENT);
	CHECK_EQ(vhu_loop_mod(c.loop, c.a, EPOLLIN), -ENOENT);

	/* Re-add, modify to a never-ready event set, stop from a thread. */
	CHECK_EQ(vhu_loop_add(c.loop, c.b, EPOLLIN, cb_b, &c), 0);
	CHECK_EQ(vhu_loop_mod(c.loop, c.b, EPOLLPRI), 0);
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, stopper, c.loop), 0);
	alarm(10);
	CHECK_EQ(vhu_loop_run(c.loop), 0);
	alarm(0);
	pthread_join(t, NULL);
	CHECK_EQ(c.hits_b, hb);
	/* A stop before run returns at once. */
	vhu_loop_stop(c.loop);
	CHECK_EQ(vhu_loop_run(c.loop), 0);
	vhu_loop_free(c.loop);
	close(c.a);
	close(c.b);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	tap_before_each = before;
	tap_after_each = after;
	return tap_run();
}
