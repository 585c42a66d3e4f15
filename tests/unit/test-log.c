/* SPDX-License-Identifier: MIT */
/*
 * Dirty logging over a real back-end session (vhost-user.rst "Migration",
 * SET_LOG_BASE, SET_LOG_FD; project notes section 7): the log is mapped
 * and answered, hostile log messages are refused without leaking fds,
 * LOG_ALL and a ring's LOG flag switch while the ring runs without losing
 * or repeating a request, a new log replaces the old, and GET_VRING_BASE
 * answers only once every popped request is complete.
 */

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fe-driver.h"
#include "backend-internal.h"
#include "tap.h"
#include "util.h"

#define QSIZE 64u
#define LOG_BYTES 4096u           /* covers 128 MiB of guest memory */
#define USED0 (FE_RING_GPA(0) + 0x3000)

/* ---- a device that holds what it popped until it is stopped ---- */

static struct vhu_vq *vq0;
static unsigned starts, stops;
static struct vhu_vq_elem held[8];
static struct iovec held_iov[8][4];
static unsigned nheld;

static void complete_held(void)
{
	for (unsigned i = 0; i < nheld; i++)
		vhu_vq_push(vq0, &held[i], 1);
	nheld = 0;
}
static void t_started(void *o, struct vhu_vq *vq) { vq0 = vq; starts++; }
static void t_stopped(void *o, struct vhu_vq *vq)
{
	/* queue_stopped's contract: everything popped is pushed back. */
	complete_held();
	vq0 = NULL;
	stops++;
}
static struct vhu_device_ops ops = {
	.queue_started = t_started,
	.queue_stopped = t_stopped,
};

static struct fe fe;
static int fds_before;

static void before(void)
{
	fds_before = tl_count_fds();
	vq0 = NULL;
	starts = stops = nheld = 0;
	fe_init(&fe);
}

static void after(void)
{
	if (fe.b)
		fe_close(&fe);
	fe.b = NULL;
	CHECK_EQ(tl_count_fds(), fds_before);
}

static void open_session(bool start)
{
	struct vhu_backend_opts o = {
		.ops = &ops,
		.features = VHU_BIT(VHU_F_VERSION_1),
		.num_queues = 1,
		.max_queue_size = 256,
	};
	if (fe_open(&fe, &o) < 0 ||
	    fe_negotiate(&fe, VHU_BIT(VHU_F_VERSION_1) |
				      VHU_BIT(VHU_F_PROTOCOL_FEATURES),
			 VHU_BIT(VHU_PF_LOG_SHMFD) | VHU_BIT(VHU_PF_REPLY_ACK)) < 0 ||
	    fe_set_mem(&fe) < 0)
		TAP_FAIL("session set-up");
	if (!start)
		return;
	int kick;
	if (fe_setup_vring(&fe, 0, QSIZE, &kick) < 0)
		TAP_FAIL("vring set-up");
	close(kick);
	if (fe_enable(&fe, 0, true) < 0 || !vq0)
		TAP_FAIL("queue not started");
}

/* A sealed memfd of size bytes, as QEMU sends it. */
static int log_memfd(size_t size)
{
	int fd = memfd_create("test-log", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
		TAP_FAIL("memfd");
	return fd;
}

static uint8_t *map_log(int fd, size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		TAP_FAIL("mmap");
	return p;
}

static bool marked(const uint8_t *log, uint64_t gpa)
{
	uint64_t page = gpa >> 12;
	return (log[page / 8] >> (page % 8)) & 1;
}

/* SET_LOG_BASE without NEED_REPLY (as QEMU sends it): 0 when the reply
 * came (u64 0), 1 for a failing one, -2 when dropped, -1 otherwise. */
static int set_log_base(int fd, uint64_t size, uint64_t off)
{
	struct vhu_log lg = { size, off };
	struct vhu_msg m;
	int r = fe_call(&fe, VHU_REQ_SET_LOG_BASE, VHU_MSG_VERSION, &lg,
			sizeof(lg), &fd, 1, &m);
	if (r == 0)
		return -2;
	if (r != 1 || m.hdr.request != VHU_REQ_SET_LOG_BASE ||
	    m.hdr.flags != 0x5 || m.hdr.size != 8)
		return -1;
	return m.p.u64 ? 1 : 0;
}

static long long set_features(uint64_t f)
{
	return fe_acked(&fe, VHU_REQ_SET_FEATURES, &f, 8, NULL, 0);
}

static const uint64_t BASE_F = VHU_BIT(VHU_F_VERSION_1) |
			       VHU_BIT(VHU_F_PROTOCOL_FEATURES);

/* Guest side of queue 0: request h reads 16 bytes at page 0x80 + h and
 * writes one byte at page 0xc0 + h. */
static void post(uint16_t h)
{
	struct vhu_vring_desc *d =
		(struct vhu_vring_desc *)(fe.mem + FE_RING_GPA(0));
	unsigned a = (2 * h) % QSIZE, b = (2 * h + 1) % QSIZE;
	d[a] = (struct vhu_vring_desc){ (0x80ull + h) << 12, 16,
					VHU_VRING_DESC_F_NEXT, (uint16_t)b };
	d[b] = (struct vhu_vring_desc){ (0xc0ull + h) << 12, 1,
					VHU_VRING_DESC_F_WRITE, 0 };
	uint16_t *avail = (uint16_t *)(fe.mem + FE_RING_GPA(0) + 0x2000);
	uint16_t idx = avail[1];
	avail[2 + idx % QSIZE] = (uint16_t)a;
	__atomic_store_n(&avail[1], (uint16_t)(idx + 1), __ATOMIC_RELEASE);
}

static void pop_hold(void)
{
	if (!vq0 || vhu_vq_pop(vq0, &held[nheld], held_iov[nheld], 4) != 1)
		TAP_FAIL("nothing to pop");
	nheld++;
}

static uint16_t used_idx(void)
{
	return ((uint16_t *)(fe.mem + USED0))[1];
}

static uint32_t used_id(unsigned i)
{
	return ((uint32_t *)(fe.mem + USED0 + 4))[2 * (i % QSIZE)];
}

TEST(log_base_mapped_answered_and_fd_closed)
{
	open_session(true);
	int fd = log_memfd(LOG_BYTES);
	int before_fds = tl_count_fds();
	CHECK_EQ(set_log_base(fd, LOG_BYTES, 0), 0);
	CHECK_EQ(tl_count_fds(), before_fds); /* the session keeps no fd */
	close(fd);
	CHECK(!vq0->log);                     /* LOG_ALL not negotiated */
	CHECK_EQ(set_features(BASE_F | VHU_BIT(VHU_F_LOG_ALL)), 0);
	CHECK(vq0 && vq0->log && vq0->log->size == LOG_BYTES);
	/* With NEED_REPLY the reply is the same u64 0. */
	fd = log_memfd(2 * LOG_BYTES);
	struct vhu_log lg = { LOG_BYTES, LOG_BYTES };
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_LOG_BASE, &lg, sizeof(lg), &fd, 1), 0);
	close(fd);
}

TEST(hostile_log_base_refused_without_leak)
{
	open_session(true);
	int fd = log_memfd(LOG_BYTES), fds2[2] = { fd, fd };
	struct vhu_log lg = { LOG_BYTES, 0 };
	struct {
		uint64_t size, off;
	} bad[] = {
		{ 0, 0 },                         /* empty */
		{ LOG_BYTES + 1, 0 },             /* past the fd */
		{ LOG_BYTES, 1 },                 /* offset pushes it past */
		{ 16, LOG_BYTES },                /* offset at the end */
		{ 4096, UINT64_MAX - 100 },       /* offset + size wraps */
		{ UINT64_MAX, 2 },
		{ 16, 0 },                        /* 1 MiB of memory needs 32 */
	};
	for (unsigned i = 0; i < VHU__ARRAY_SIZE(bad); i++) {
		struct vhu_log b = { bad[i].size, bad[i].off };
		CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_LOG_BASE, &b, sizeof(b), &fd,
				  1), 1);
	}
	/* The table's rules: exactly one fd, 16 bytes. */
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_LOG_BASE, &lg, sizeof(lg), NULL, 0), 1);
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_LOG_BASE, &lg, sizeof(lg), fds2, 2), 1);
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_LOG_BASE, &lg, 8, &fd, 1), 1);
	CHECK(fe.b->log.bits == NULL);
	CHECK(vq0 != NULL);                   /* the queue never stopped */
	/* QEMU's way (no NEED_REPLY): it would take any reply for success,
	 * so a bad log costs the connection. */
	CHECK_EQ(set_log_base(fd, LOG_BYTES + 1, 0), -2);
	close(fd);
}

TEST(log_all_toggled_while_requests_run_loses_nothing)
{
	open_session(true);
	int fd = log_memfd(LOG_BYTES);
	uint8_t *log = map_log(fd, LOG_BYTES);
	CHECK_EQ(set_log_base(fd, LOG_BYTES, 0), 0);

	post(0);
	post(1);
	pop_hold();                           /* request 0 in flight */
	unsigned s = starts;
	CHECK_EQ(set_features(BASE_F | VHU_BIT(VHU_F_LOG_ALL)), 0);
	/* Stopped (request 0 completed), started again at the same place. */
	CHECK_EQ(starts, s + 1);
	CHECK(vq0 && vq0->log);
	CHECK_EQ(used_idx(), 1);
	CHECK_EQ(used_id(0), 0);
	/* Completed before logging was on: not marked. */
	CHECK(!marked(log, 0xc0ull << 12));
	pop_hold();                           /* request 1 (head 2) */
	CHECK_EQ(held[0].id, 2);
	CHECK_EQ(set_features(BASE_F), 0);    /* logging off, 1 completes */
	CHECK(vq0 && !vq0->log);
	CHECK_EQ(used_idx(), 2);
	CHECK_EQ(used_id(1), 2);
	CHECK(marked(log, 0xc1ull << 12));    /* completed while on */
	CHECK(!marked(log, 0x81ull << 12));   /* only read */
	CHECK(!vhu_vq_has_work(vq0));         /* nothing left, nothing twice */
	post(2);
	pop_hold();
	CHECK_EQ(held[0].id, 4);
	complete_held();
	CHECK_EQ(used_idx(), 3);
	CHECK(!marked(log, 0xc2ull << 12));
	munmap(log, LOG_BYTES);
	close(fd);
}

TEST(other_feature_changes_refused_while_running)
{
	open_session(true);
	CHECK_EQ(set_features(BASE_F & ~VHU_BIT(VHU_F_VERSION_1)), 1);
	CHECK_EQ(vhu_backend_features(fe.b), BASE_F);
	CHECK_EQ(set_features(VHU_BIT(VHU_F_VERSION_1) | VHU_BIT(VHU_F_LOG_ALL)), 1);
	CHECK_EQ(vhu_backend_features(fe.b), BASE_F);
	CHECK(vq0 != NULL);
	CHECK(!fe_dropped(&fe));
}

TEST(ring_log_flag_on_a_running_ring)
{
	open_session(true);
	int fd = log_memfd(LOG_BYTES);
	uint8_t *log = map_log(fd, LOG_BYTES);
	CHECK_EQ(set_log_base(fd, LOG_BYTES, 0), 0);
	CHECK_EQ(set_features(BASE_F | VHU_BIT(VHU_F_LOG_ALL)), 0);
	post(0);
	pop_hold();
	struct vhu_vring_addr a = {
		.index = 0,
		.flags = VHU_VRING_F_LOG,
		.desc_user_addr = FE_UVA + FE_RING_GPA(0),
		.avail_user_addr = FE_UVA + FE_RING_GPA(0) + 0x2000,
		.used_user_addr = FE_UVA + USED0,
		.log_guest_addr = USED0,
	};
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), 0);
	CHECK(vq0 && vq0->log_used);
	CHECK_EQ(used_idx(), 1);              /* completed at the stop */
	/* (The restart's enable_notify already wrote used->flags: marked.) */
	post(1);
	pop_hold();
	complete_held();
	CHECK_EQ(used_idx(), 2);
	CHECK(marked(log, USED0));
	CHECK(marked(log, 0xc1ull << 12));
	munmap(log, LOG_BYTES);
	close(fd);
}

TEST(new_log_base_replaces_the_old_one)
{
	open_session(true);
	int fd1 = log_memfd(LOG_BYTES), fd2 = log_memfd(2 * LOG_BYTES);
	uint8_t *l1 = map_log(fd1, LOG_BYTES), *l2 = map_log(fd2, 2 * LOG_BYTES);
	CHECK_EQ(set_log_base(fd1, LOG_BYTES, 0), 0);
	CHECK_EQ(set_features(BASE_F | VHU_BIT(VHU_F_LOG_ALL)), 0);
	post(0);
	pop_hold();
	/* At an offset: the log starts LOG_BYTES into the fd. */
	CHECK_EQ(set_log_base(fd2, LOG_BYTES, LOG_BYTES), 0);
	CHECK(marked(l1, 0xc0ull << 12));     /* completed into the old one */
	post(1);
	pop_hold();
	complete_held();
	CHECK(!marked(l1, 0xc1ull << 12));
	CHECK(marked(l2 + LOG_BYTES, 0xc1ull << 12));
	CHECK(!marked(l2, 0xc1ull << 12));
	munmap(l1, LOG_BYTES);
	munmap(l2, 2 * LOG_BYTES);
	close(fd1);
	close(fd2);
}

TEST(log_fd_signalled_and_optional)
{
	open_session(true);
	int fd = log_memfd(LOG_BYTES);
	CHECK_EQ(set_log_base(fd, LOG_BYTES, 0), 0);
	close(fd);
	CHECK_EQ(set_features(BASE_F | VHU_BIT(VHU_F_LOG_ALL)), 0);
	int ev = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_LOG_FD, NULL, 0, &ev, 1), 0);
	post(0);
	pop_hold();
	complete_held();
	uint64_t v = 0;
	CHECK_EQ(read(ev, &v, 8), 8);
	/* Without an fd: no longer signalled, the old one closed. */
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_LOG_FD, NULL, 0, NULL, 0), 0);
	CHECK_EQ(fe.b->log.signal_fd, -1);
	post(1);
	pop_hold();
	complete_held();
	CHECK(read(ev, &v, 8) < 0);
	close(ev);
}

TEST(get_vring_base_answers_after_the_drain)
{
	open_session(true);
	post(0);
	post(1);
	pop_hold();
	pop_hold();
	struct vhu_vring_state st = { 0, 0 };
	struct vhu_msg m;
	CHECK_EQ(fe_call(&fe, VHU_REQ_GET_VRING_BASE, VHU_MSG_VERSION, &st, 8,
			 NULL, 0, &m), 1);
	CHECK_EQ(m.p.state.num, 2);
	/* Both popped requests were in the used ring before the answer. */
	CHECK_EQ(used_idx(), 2);
	CHECK_EQ(nheld, 0);
}

TEST(disconnect_drops_the_log)
{
	open_session(true);
	int fd = log_memfd(LOG_BYTES);
	CHECK_EQ(set_log_base(fd, LOG_BYTES, 0), 0);
	close(fd);
	CHECK(fe.b->log.bits != NULL);
	close(fe.sock);
	fe.sock = -1;
	fe_process(&fe);
	CHECK(fe.b->log.bits == NULL);
}

int main(void)
{
	tap_before_each = before;
	tap_after_each = after;
	return tap_run();
}
