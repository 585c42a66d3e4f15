/* SPDX-License-Identifier: MIT */
/* Split virtqueue, device side, driven by the test ring driver. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vhu/iov.h>

#include "internal.h"
#include "ring-driver.h"
#include "ring-check.h"
#include "tap.h"

static struct rd rd;

static void after(void);

static void setup(uint16_t size, uint16_t start, bool event_idx, bool indirect)
{
	after(); /* a failed case skips the after-each hook */
	struct rd_opts o = { .size = size, .start_idx = start,
			     .event_idx = event_idx, .indirect = indirect };
	int r = rd_init(&rd, &o);
	if (r < 0)
		TAP_FAIL("rd_init: %d", r);
	vq = &rd.vq;
}

static void after(void)
{
	if (rd.g.host)
		rd_fini(&rd);
}

/* A buffer with known contents. */
static uint64_t buf_with(const char *s, uint32_t len)
{
	return gmem_buf_with(&rd.g, s, len);
}

/* Publish head: the queue breaks on it. */
static void publish_broken(uint16_t head)
{
	rd_publish(&rd, head);
	expect_broken();
}

TEST(indirect_after_direct_descriptor)
{
	/* 2.7.5.3: a chain may end in an indirect descriptor. */
	setup(8, 0, false, true);
	uint64_t t = gmem_buf(&rd.g, 32);
	uint64_t a = buf_with("A", 1), b = buf_with("B", 1), c = gmem_buf(&rd.g, 4);
	rd_desc(&rd, t, 0, b, 1, VHU_VRING_DESC_F_NEXT, 1);
	rd_desc(&rd, t, 1, c, 4, VHU_VRING_DESC_F_WRITE, 0);
	rd_desc(&rd, rd.desc_gpa, 3, a, 1, VHU_VRING_DESC_F_NEXT, 5);
	rd_desc(&rd, rd.desc_gpa, 5, t, 32, VHU_VRING_DESC_F_INDIRECT, 0);
	rd_publish(&rd, 3);
	expect_pop(3, 2, 1);
	CHECK_MEM(iov[1].iov_base, "B", 1);
}

TEST(indirect_not_negotiated)
{
	setup(8, 0, false, false);
	struct rd_buf b = { gmem_buf(&rd.g, 4), 4, false };
	rd_add_indirect(&rd, &b, 1);
	expect_broken();
}

TEST(no_interrupt_flag)
{
	setup(8, 0, false, false);
	struct rd_buf b = { gmem_buf(&rd.g, 4), 4, true };
	rd_set_avail_flags(&rd, VHU_VRING_AVAIL_F_NO_INTERRUPT);
	rd_add_chain(&rd, &b, 1);
	CHECK_EQ(pop(), 1);
	vhu_vq_push_notify(vq, &el, 4);
	CHECK_EQ(rd_calls(&rd), 0);

	rd_set_avail_flags(&rd, 0);
	rd_add_chain(&rd, &b, 1);
	CHECK_EQ(pop(), 1);
	vhu_vq_push_notify(vq, &el, 4);
	CHECK_EQ(rd_calls(&rd), 1);
	vhu_vq_notify(vq); /* nothing new */
	CHECK_EQ(rd_calls(&rd), 0);
}

TEST(batch_then_one_notify)
{
	setup(8, 0, false, false);
	struct rd_buf b = { gmem_buf(&rd.g, 4), 4, true };
	for (int i = 0; i < 3; i++)
		rd_add_chain(&rd, &b, 1);
	struct vhu_vq_elem e[3];
	for (int i = 0; i < 3; i++)
		CHECK_EQ(vhu_vq_pop(vq, &e[i], iov + i, 1), 1);
	for (int i = 0; i < 3; i++)
		vhu_vq_push(vq, &e[i], 0);
	CHECK_EQ(rd_calls(&rd), 0); /* push alone never notifies */
	vhu_vq_notify(vq);
	CHECK_EQ(rd_calls(&rd), 1);
	CHECK_EQ(rd_used_idx(&rd), 3);
}

/* One request through the ring, pushed (not notified). */
static void one_request(void)
{
	struct rd_buf b = { gmem_buf(&rd.g, 4), 4, true };
	rd_add_chain(&rd, &b, 1);
	CHECK_EQ(pop(), 1);
	vhu_vq_push(vq, &el, 0);
}

TEST(event_idx_notify_decisions)
{
	setup(8, 0, true, false);
	rd_set_used_event(&rd, 0);
	one_request(); /* used 0 -> 1 crosses used_event 0 */
	vhu_vq_notify(vq);
	CHECK_EQ(rd_calls(&rd), 1);

	one_request(); /* 1 -> 2: used_event 0 already passed */
	vhu_vq_notify(vq);
	CHECK_EQ(rd_calls(&rd), 0);

	rd_set_used_event(&rd, 3);
	one_request(); /* 2 -> 3 */
	one_request(); /* 3 -> 4 */
	vhu_vq_notify(vq); /* [2, 4) holds 3 */
	CHECK_EQ(rd_calls(&rd), 1);
	vhu_vq_notify(vq);
	CHECK_EQ(rd_calls(&rd), 0);

	rd_set_used_event(&rd, 10);
	one_request();
	vhu_vq_notify(vq);
	CHECK_EQ(rd_calls(&rd), 0);
	/* The driver asks to hear when entry 5 is used: */
	rd_set_used_event(&rd, 5);
	one_request(); /* 5 -> 6 */
	vhu_vq_notify(vq); /* [5, 6) holds 5 */
	CHECK_EQ(rd_calls(&rd), 1);
	/* NO_INTERRUPT is ignored with EVENT_IDX */
	rd_set_avail_flags(&rd, VHU_VRING_AVAIL_F_NO_INTERRUPT);
	rd_set_used_event(&rd, 6);
	one_request();
	vhu_vq_notify(vq);
	CHECK_EQ(rd_calls(&rd), 1);
}

TEST(event_idx_across_wrap)
{
	setup(8, 65534, true, false);
	rd_set_used_event(&rd, 0); /* after the wrap */
	one_request(); /* 65534 -> 65535 */
	vhu_vq_notify(vq);
	CHECK_EQ(rd_calls(&rd), 0);
	one_request(); /* 65535 -> 0 */
	one_request(); /* 0 -> 1 */
	vhu_vq_notify(vq); /* [65535, 1) holds 0 */
	CHECK_EQ(rd_calls(&rd), 1);
}

TEST(event_idx_avail_event)
{
	setup(8, 0, true, false);
	struct rd_buf b = { gmem_buf(&rd.g, 4), 4, false };
	/* An empty pop asks for a kick at the next entry. */
	CHECK_EQ(pop(), 0);
	CHECK_EQ(rd_avail_event(&rd), 0);
	rd_add_chain(&rd, &b, 1);
	rd_add_chain(&rd, &b, 1);
	CHECK_EQ(pop(), 1);
	CHECK_EQ(pop(), 1);
	CHECK_EQ(pop(), 0);
	CHECK_EQ(rd_avail_event(&rd), 2);
	/* used->flags stays 0 with EVENT_IDX */
	vhu_vq_disable_notify(vq);
	CHECK_EQ(rd_used_flags(&rd), 0);
	CHECK(!vhu_vq_enable_notify(vq));
	CHECK_EQ(rd_avail_event(&rd), 2);
	rd_add_chain(&rd, &b, 1);
	CHECK(vhu_vq_enable_notify(vq));
	CHECK(vhu_vq_has_work(vq));
	CHECK_EQ(pop(), 1);
	CHECK_EQ(pop(), 0);
	CHECK_EQ(rd_avail_event(&rd), 3);
}

TEST(event_idx_empty_pop_no_rearm)
{
	setup(8, 0, true, false);
	struct rd_buf b = { gmem_buf(&rd.g, 4), 4, false };
	CHECK(!vhu_vq_enable_notify(vq));
	CHECK_EQ(rd_avail_event(&rd), 0);
	rd_add_chain(&rd, &b, 1);
	rd_add_chain(&rd, &b, 1);
	/* A polling device pops without re-arming: avail_event stays
	 * behind, so the driver kicks no more while the device polls. */
	CHECK_EQ(vhu_vq_pop_flags(vq, &el, iov, 64, VHU_VQ_POP_NO_REARM), 1);
	CHECK_EQ(vhu_vq_pop_flags(vq, &el, iov, 64, VHU_VQ_POP_NO_REARM), 1);
	CHECK_EQ(vhu_vq_pop_flags(vq, &el, iov, 64, VHU_VQ_POP_NO_REARM), 0);
	CHECK_EQ(rd_avail_event(&rd), 0);
	CHECK(!vhu_vq_has_work(vq));
	rd_add_chain(&rd, &b, 1);
	CHECK(vhu_vq_has_work(vq));
	CHECK_EQ(rd_avail_event(&rd), 0);
	/* Before sleeping: enable, which finds the request that came. */
	CHECK(vhu_vq_enable_notify(vq));
	CHECK_EQ(rd_avail_event(&rd), 2);
	CHECK_EQ(pop(), 1);
	CHECK_EQ(pop(), 0);
	CHECK_EQ(rd_avail_event(&rd), 3);
}

TEST(disable_enable_notify)
{
	setup(8, 0, false, false);
	struct rd_buf b = { gmem_buf(&rd.g, 4), 4, false };
	vhu_vq_disable_notify(vq);
	CHECK_EQ(rd_used_flags(&rd), VHU_VRING_USED_F_NO_NOTIFY);
	CHECK(!vhu_vq_enable_notify(vq));
	CHECK_EQ(rd_used_flags(&rd), 0);
	vhu_vq_disable_notify(vq);
	rd_add_chain(&rd, &b, 1);
	CHECK(vhu_vq_enable_notify(vq)); /* arrived while disabled */
	CHECK_EQ(pop(), 1);
	CHECK(!vhu_vq_enable_notify(vq));
}

TEST(wraparound_16bit)
{
	setup(8, 65530, false, false);
	struct rd_buf b = { gmem_buf(&rd.g, 4), 4, true };
	for (unsigned i = 0; i < 20; i++) {
		uint16_t head = rd_add_chain(&rd, &b, 1);
		CHECK_EQ(pop(), 1);
		CHECK_EQ(el.id, head);
		vhu_vq_push(vq, &el, i);
		uint32_t id, len;
		CHECK_EQ(rd_get_used(&rd, &id, &len), 1);
		CHECK_EQ(id, head);
		CHECK_EQ(len, i);
	}
	CHECK_EQ(rd_used_idx(&rd), (uint16_t)(65530 + 20));
	CHECK_EQ(vq->last_avail_idx, (uint16_t)(65530 + 20));
	/* A full ring's worth across the wrap is still accepted. */
	for (unsigned i = 0; i < 8; i++)
		rd_add_chain(&rd, &b, 1);
	for (unsigned i = 0; i < 8; i++)
		CHECK_EQ(pop(), 1);
	CHECK_EQ(pop(), 0);
}

TEST(queue_size_32768)
{
	struct rd_opts o = { .size = 32768, .mem_size = 4u << 20,
			     .event_idx = true };
	after();
	CHECK_EQ(rd_init(&rd, &o), 0);
	vq = &rd.vq;
	uint64_t g = gmem_buf(&rd.g, 16);
	struct rd_buf b = { g, 16, true };
	for (unsigned i = 0; i < 32768; i++)
		rd_add_chain(&rd, &b, 1);
	CHECK(vhu_vq_has_work(vq));
	for (unsigned i = 0; i < 32768; i++) {
		if (pop() != 1)
			TAP_FAIL("pop %u failed", i);
		if (el.id != i)
			TAP_FAIL("pop %u gave id %u", i, el.id);
		vhu_vq_push(vq, &el, 16);
	}
	CHECK_EQ(pop(), 0);
	CHECK_EQ(rd_used_idx(&rd), 32768);
	CHECK_EQ(rd_avail_event(&rd), 32768);
	rd_set_used_event(&rd, 40000);
	vhu_vq_notify(vq);
	CHECK_EQ(rd_calls(&rd), 0);
	rd_set_used_event(&rd, 32767);
	one_request();
	vhu_vq_notify(vq); /* [32768, 32769) misses 32767 */
	CHECK_EQ(rd_calls(&rd), 0);
}

TEST(drain_kick)
{
	setup(8, 0, false, false);
	CHECK_EQ(vhu_vq_drain_kick(vq), 0); /* no kick fd */
	vq->kick_fd = eventfd(0, EFD_CLOEXEC); /* blocking on purpose */
	CHECK(vq->kick_fd >= 0);
	CHECK_EQ(vhu_vq_kick_fd(vq), vq->kick_fd);
	CHECK_EQ(vhu_vq_drain_kick(vq), 0);
	uint64_t three = 3;
	CHECK_EQ(write(vq->kick_fd, &three, 8), 8);
	CHECK_EQ(vhu_vq_drain_kick(vq), 3);
	CHECK_EQ(vhu_vq_drain_kick(vq), 0);
}

TEST(priv_and_reset)
{
	setup(8, 0, false, false);
	int x;
	vhu_vq_set_priv(vq, &x);
	CHECK(vhu_vq_get_priv(vq) == &x);
	int fd = vq->call_fd;
	vq->kick_fd = eventfd(0, EFD_CLOEXEC);
	vq->err_fd = eventfd(0, EFD_CLOEXEC);
	int k = vq->kick_fd, e = vq->err_fd;
	vhu__vq_reset(vq);
	CHECK(fcntl(fd, F_GETFD) < 0 && fcntl(k, F_GETFD) < 0 &&
	      fcntl(e, F_GETFD) < 0);
	CHECK_EQ(vq->call_fd, -1);
	CHECK(vq->desc == NULL && vq->size == 0 && !vq->broken);
	CHECK(vq->mem == &rd.g.mem);
	CHECK(vhu_vq_get_priv(vq) == &x);
	CHECK_EQ(pop(), 0); /* unmapped: nothing to do, no crash */
}

TEST(map_checks)
{
	setup(8, 0, false, false);
	uint64_t d = vq->desc_uva;
	vq->desc_uva = d + 8; /* misaligned */
	CHECK_EQ(vhu__vq_map(vq), -EINVAL);
	vq->desc_uva = RD_UVA_BASE + rd.g.size - 64; /* runs off the end */
	CHECK_EQ(vhu__vq_map(vq), -EFAULT);
	vq->desc_uva = d;
	vq->used_uva += 2; /* used ring wants 4 */
	CHECK_EQ(vhu__vq_map(vq), -EINVAL);
	vq->used_uva -= 2;
	vq->size = 0;
	CHECK_EQ(vhu__vq_map(vq), -EINVAL);
	vq->size = 12;
	CHECK_EQ(vhu__vq_map(vq), -EINVAL);
	vq->size = 8;
	CHECK_EQ(vhu__vq_map(vq), 0);
	CHECK(vq->desc != NULL);
	CHECK_EQ(vhu__vring_desc_bytes(256), 4096);
	CHECK_EQ(vhu__vring_avail_bytes(256), 518);
	CHECK_EQ(vhu__vring_used_bytes(256), 2054);
}

/*
 * Driver and device in two threads, each sleeping on its eventfd whenever
 * it has nothing to do: a notification decision that loses a wakeup makes
 * one side wait for the other forever (here: a 10 s timeout).
 */
#define PINGPONG_N 20000

struct device_run {
	struct vhu_vq *vq;
	int failed; /* 0 ok, 1 wakeup lost, 2 pop error */
	unsigned done;
};

static bool wait_fd(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, ms) == 1;
}

static void *device_thread(void *arg)
{
	struct device_run *d = arg;
	struct vhu_vq_elem e;
	struct iovec v[4];
	while (d->done < PINGPONG_N) {
		int r;
		vhu_vq_disable_notify(d->vq);
		while ((r = vhu_vq_pop(d->vq, &e, v, 4)) == 1) {
			vhu_vq_push(d->vq, &e, 1);
			d->done++;
		}
		if (r < 0) {
			d->failed = 2;
			break;
		}
		vhu_vq_notify(d->vq);
		if (d->done == PINGPONG_N || vhu_vq_enable_notify(d->vq))
			continue;
		if (!wait_fd(d->vq->kick_fd, 10000)) {
			d->failed = 1;
			break;
		}
		if (vhu_vq_drain_kick(d->vq) < 0) {
			d->failed = 2;
			break;
		}
	}
	return NULL;
}

static void pingpong(bool event_idx)
{
	setup(64, 65000, event_idx, false);
	vq->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	CHECK(vq->kick_fd >= 0);
	struct rd_buf b = { gmem_buf(&rd.g, 4), 4, true };
	struct device_run d = { .vq = vq };
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, device_thread, &d), 0);

	unsigned sent = 0, completed = 0, kicks = 0;
	bool lost = false;
	while (completed < PINGPONG_N) {
		while (sent < PINGPONG_N && sent - completed < rd.size) {
			uint16_t old = rd.avail_idx;
			rd_add_chain(&rd, &b, 1);
			sent++;
			if (rd_need_kick(&rd, old)) {
				uint64_t one = 1;
				if (write(vq->kick_fd, &one, 8) == 8)
					kicks++;
			}
		}
		uint32_t id, len;
		unsigned got = 0;
		while (rd_get_used(&rd, &id, &len) == 1)
			got++;
		completed += got;
		if (got || completed == PINGPONG_N)
			continue;
		if (sent - completed < rd.size && sent < PINGPONG_N)
			continue;
		/* Ring full (or all sent): sleep until the device answers. */
		rd_want_interrupt(&rd);
		if (rd_used_idx(&rd) != rd.used_seen)
			continue;
		if (!wait_fd(vq->call_fd, 10000)) {
			lost = true;
			break;
		}
		rd_calls(&rd);
	}
	pthread_join(t, NULL);
	CHECK(!lost);
	CHECK_EQ(d.failed, 0);
	CHECK_EQ(d.done, PINGPONG_N);
	CHECK_EQ(completed, PINGPONG_N);
	printf("# %s: %u kicks for %u requests\n",
	       event_idx ? "EVENT_IDX" : "NO_NOTIFY", kicks, PINGPONG_N);
	CHECK(kicks > 0);
	/* With EVENT_IDX a kick only comes after the device re-armed
	 * avail_event (an empty pop or enable), so batches share one. */
	if (event_idx)
		CHECK(kicks < PINGPONG_N);
	CHECK_EQ(rd_used_idx(&rd), (uint16_t)(65000 + PINGPONG_N));
}

TEST(threads_no_lost_wakeup_event_idx)
{
	pingpong(true);
}

TEST(threads_no_lost_wakeup_flags)
{
	pingpong(false);
}

/* ------------------------------------------------------- hostile */

TEST(descriptor_loop)
{
	setup(8, 0, false, false);
	uint64_t g = gmem_buf(&rd.g, 4);
	rd_desc(&rd, rd.desc_gpa, 0, g, 4, VHU_VRING_DESC_F_NEXT, 1);
	rd_desc(&rd, rd.desc_gpa, 1, g, 4, VHU_VRING_DESC_F_NEXT, 0);
	publish_broken(0);
}

TEST(zero_length_loop)
{
	setup(8, 0, false, false);
	rd_desc(&rd, rd.desc_gpa, 2, 0, 0, VHU_VRING_DESC_F_NEXT, 2);
	publish_broken(2);
}

TEST(next_out_of_table)
{
	setup(8, 0, false, false);
	uint64_t g = gmem_buf(&rd.g, 4);
	rd_desc(&rd, rd.desc_gpa, 0, g, 4, VHU_VRING_DESC_F_NEXT, 8);
	publish_broken(0);
}

TEST(nested_indirect)
{
	setup(8, 0, false, true);
	uint64_t t1 = gmem_buf(&rd.g, 16), t2 = gmem_buf(&rd.g, 16);
	rd_desc(&rd, t2, 0, gmem_buf(&rd.g, 4), 4, 0, 0);
	rd_desc(&rd, t1, 0, t2, 16, VHU_VRING_DESC_F_INDIRECT, 0);
	rd_desc(&rd, rd.desc_gpa, 0, t1, 16, VHU_VRING_DESC_F_INDIRECT, 0);
	publish_broken(0);
}

TEST(indirect_empty_table)
{
	setup(8, 0, false, true);
	rd_desc(&rd, rd.desc_gpa, 0, gmem_buf(&rd.g, 16), 0,
		VHU_VRING_DESC_F_INDIRECT, 0);
	publish_broken(0);
}

TEST(indirect_partial_entry)
{
	setup(8, 0, false, true);
	uint64_t t = gmem_buf(&rd.g, 32);
	rd_desc(&rd, t, 0, gmem_buf(&rd.g, 4), 4, 0, 0);
	rd_desc(&rd, rd.desc_gpa, 0, t, 24, VHU_VRING_DESC_F_INDIRECT, 0);
	publish_broken(0);
}

TEST(indirect_with_next)
{
	setup(8, 0, false, true);
	uint64_t t = gmem_buf(&rd.g, 16);
	rd_desc(&rd, t, 0, gmem_buf(&rd.g, 4), 4, 0, 0);
	rd_desc(&rd, rd.desc_gpa, 0, t, 16,
		VHU_VRING_DESC_F_INDIRECT | VHU_VRING_DESC_F_NEXT, 1);
	rd_desc(&rd, rd.desc_gpa, 1, gmem_buf(&rd.g, 4), 4, 0, 0);
	publish_broken(0);
}

TEST(indirect_loop_and_escape)
{
	setup(8, 0, false, true);
	uint64_t t = gmem_buf(&rd.g, 64);
	uint64_t g = gmem_buf(&rd.g, 4);
	rd_desc(&rd, t, 0, g, 4, VHU_VRING_DESC_F_NEXT, 1);
	rd_desc(&rd, t, 1, g, 4, VHU_VRING_DESC_F_NEXT, 0);
	rd_desc(&rd, rd.desc_gpa, 0, t, 64, VHU_VRING_DESC_F_INDIRECT, 0);
	publish_broken(0);
	rd_fini(&rd);

	/* next beyond the indirect table (but inside the ring's size) */
	setup(8, 0, false, true);
	t = gmem_buf(&rd.g, 32);
	g = gmem_buf(&rd.g, 4);
	rd_desc(&rd, t, 0, g, 4, VHU_VRING_DESC_F_NEXT, 2);
	rd_desc(&rd, rd.desc_gpa, 0, t, 32, VHU_VRING_DESC_F_INDIRECT, 0);
	publish_broken(0);
	rd_fini(&rd);

	/* table itself outside guest memory */
	setup(8, 0, false, true);
	rd_desc(&rd, rd.desc_gpa, 0, 0x1000, 32, VHU_VRING_DESC_F_INDIRECT, 0);
	publish_broken(0);
}

TEST(avail_idx_jump)
{
	setup(8, 0, false, false);
	rd_set_avail_idx(&rd, 9); /* 9 > size 8 ahead of 0 */
	CHECK_EQ(pop(), -EIO);
	CHECK(vhu_vq_is_broken(vq));
	rd_fini(&rd);

	/* exactly a ring's worth is fine */
	setup(8, 100, false, false);
	struct rd_buf b = { gmem_buf(&rd.g, 4), 4, false };
	for (int i = 0; i < 8; i++)
		rd_add_chain(&rd, &b, 1);
	CHECK_EQ(pop(), 1);
	rd_fini(&rd);

	/* a jump backwards looks like 65535 ahead */
	setup(8, 100, false, false);
	rd_set_avail_idx(&rd, 99);
	expect_broken();
}

TEST(head_out_of_range)
{
	setup(8, 0, false, false);
	publish_broken(8);
}

TEST(chain_over_4gib)
{
	setup(8, 0, false, false);
	/* A large guest area that is reserved, never touched: pop only
	 * builds iovecs. */
	size_t big = 8ull << 30;
	void *res = mmap(NULL, big, PROT_NONE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (res == MAP_FAILED)
		tap_skip("cannot reserve 8 GiB of address space");
	uint64_t gpa = 1ull << 40;
	int r = vhu__mem_add_host(&rd.g.mem, gpa, big, 1ull << 44, res);
	if (r < 0) {
		munmap(res, big);
		TAP_FAIL("add_host: %d", r);
	}
	/* exactly 4 GiB: accepted */
	struct rd_buf b[3] = {
		{ gpa, 0x80000000u, false },
		{ gpa + 0x80000000u, 0x80000000u, true },
		{ gpa + 0x100000000ull, 1, true },
	};
	rd_add_chain(&rd, b, 2);
	r = pop();
	CHECK_EQ(r, 1);
	CHECK_EQ(el.n_out + el.n_in, 2);
	vhu_vq_push(vq, &el, 0);
	/* one byte more: refused */
	rd_add_chain(&rd, b, 3);
	r = pop();
	munmap(res, big);
	CHECK_EQ(r, -EIO);
	CHECK(vhu_vq_is_broken(vq));
}

TEST(broken_queue_stays_quiet)
{
	setup(8, 0, false, false);
	struct rd_buf b = { gmem_buf(&rd.g, 4), 4, true };
	rd_add_chain(&rd, &b, 1);
	CHECK_EQ(pop(), 1);
	struct vhu_vq_elem held = el;
	vq->err_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	CHECK(vq->err_fd >= 0);
	rd_publish(&rd, 9);
	CHECK_EQ(pop(), -EIO);
	uint64_t v = 0;
	CHECK_EQ(read(vq->err_fd, &v, 8), 8);
	CHECK_EQ(v, 1);
	/* No more writes into the guest's used ring. */
	vhu_vq_push_notify(vq, &held, 4);
	CHECK_EQ(rd_used_idx(&rd), 0);
	CHECK_EQ(rd_calls(&rd), 0);
	CHECK(!vhu_vq_enable_notify(vq));
}

int main(void)
{
	tap_after_each = after;
	return tap_run();
}
