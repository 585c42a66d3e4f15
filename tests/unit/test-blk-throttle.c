/* SPDX-License-Identifier: MIT */
/*
 * I/O limits (devices/blk/throttle.c): the buckets on a simulated clock
 * (rates, bursts and their length, iops-size, changes at run time, huge
 * values), the KEY=VALUE configuration and its rules, and the device
 * with limits set: requests held and released in time, flushes not held,
 * a limit removed while requests wait, a queue stopped while it holds
 * requests (every popped request still completes).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "blk-harness.h"
#include "blk.h"
#include "tap.h"
#include "throttle.h"

#define SEC 1000000000ull

static struct vhu_blk_throttle cfg_of(const char *list)
{
	struct vhu_blk_throttle t = { 0 };
	char err[256] = "";

	CHECK_EQ(vhu_blk_throttle_parse(&t, list, err, sizeof(err)), 0);
	CHECK_EQ(vhu_blk_throttle_check(&t, err, sizeof(err)), 0);
	return t;
}

/*
 * A client that always has a request ready (an infinitely fast disk at
 * any queue depth): from start to end it sends requests of bytes in
 * direction dir as soon as the buckets let it, the clock jumping to when
 * the next may go.  Returns how many went.
 */
static uint64_t greedy(struct vhu__thr *t, int dir, uint64_t bytes,
		       uint64_t start, uint64_t end)
{
	uint64_t now = start, n = 0;

	while (now < end) {
		uint64_t w = vhu__thr_wait(t, dir, now);

		if (w) {
			now += w;
			continue;
		}
		vhu__thr_account(t, dir, bytes);
		n++;
	}
	return n;
}

TEST(iops_rate_with_a_tenth_of_a_second_burst)
{
	struct vhu_blk_throttle c = cfg_of("iops-total=5000");
	struct vhu__thr t = { 0 };

	vhu__thr_config(&t, &c, 1000);
	/* QEMU: a bucket of avg/10 lets 500 go at once, then 5000/s. */
	uint64_t n = greedy(&t, VHU__THR_READ, 4096, 1000, 1000 + 10 * SEC);
	CHECK(n >= 50000 + 500 && n <= 50000 + 502);
	/* writes share iops-total */
	n = greedy(&t, VHU__THR_WRITE, 4096, 1000 + 10 * SEC, 1000 + 11 * SEC);
	CHECK(n >= 4999 && n <= 5001);
}

TEST(read_and_write_limits_are_separate)
{
	struct vhu_blk_throttle c = cfg_of("iops-read=1000,iops-write=100");
	struct vhu__thr t = { 0 };

	vhu__thr_config(&t, &c, 0);
	uint64_t r = greedy(&t, VHU__THR_READ, 512, 0, 2 * SEC);
	uint64_t w = greedy(&t, VHU__THR_WRITE, 512, 2 * SEC, 4 * SEC);
	CHECK(r >= 2000 + 100 && r <= 2000 + 102);
	CHECK(w >= 200 + 10 && w <= 200 + 12);
}

TEST(bps_rate_with_large_requests)
{
	struct vhu_blk_throttle c = cfg_of("bps-total=52428800");
	struct vhu__thr t = { 0 };

	vhu__thr_config(&t, &c, 0);
	/* 50 MiB/s of 1 MiB requests: 50 per second, 5 at once. */
	uint64_t n = greedy(&t, VHU__THR_WRITE, 1 << 20, 0, 10 * SEC);
	CHECK(n >= 500 + 5 && n <= 500 + 7);
}

TEST(iops_size_counts_large_requests_as_several)
{
	struct vhu_blk_throttle c = cfg_of("iops-total=1000,iops-size=4096");
	struct vhu__thr t = { 0 };

	vhu__thr_config(&t, &c, 0);
	/* 16 KiB = 4 operations: 250 a second */
	uint64_t n = greedy(&t, VHU__THR_READ, 16384, 0, 4 * SEC);
	CHECK(n >= 1000 + 25 && n <= 1000 + 27);
	/* smaller than iops-size: one each */
	n = greedy(&t, VHU__THR_READ, 512, 4 * SEC, 5 * SEC);
	CHECK(n >= 995 && n <= 1005);
	/* 6 KiB = 1.5 operations (fractions kept) */
	n = greedy(&t, VHU__THR_READ, 6144, 5 * SEC, 8 * SEC);
	CHECK(n >= 1995 && n <= 2005);
}

TEST(burst_level_and_length)
{
	/* 5000/s, bursts of 20000/s for 2 s: the main bucket holds
	 * 20000 * 2 and fills at 15000/s net while the burst runs, which
	 * lasts 40000 / 15000 = 2.67 s (as in QEMU). */
	struct vhu_blk_throttle c =
		cfg_of("iops-total=5000,iops-total-max=20000,iops-total-max-length=2");
	struct vhu__thr t = { 0 };

	vhu__thr_config(&t, &c, 0);
	uint64_t first = greedy(&t, VHU__THR_WRITE, 4096, 0, 1 * SEC);
	CHECK(first >= 20000 && first <= 20000 + 2002);
	uint64_t second = greedy(&t, VHU__THR_WRITE, 4096, 1 * SEC, 2 * SEC);
	CHECK(second >= 19999 && second <= 20001);
	/* 2..4 s: what is left of the burst, then the average */
	uint64_t rest = greedy(&t, VHU__THR_WRITE, 4096, 2 * SEC, 4 * SEC);
	CHECK(rest > 10000 && rest < 25000);
	uint64_t after = greedy(&t, VHU__THR_WRITE, 4096, 4 * SEC, 6 * SEC);
	CHECK(after >= 9999 && after <= 10001);
	/* Idle long enough, the burst is there again. */
	uint64_t again = greedy(&t, VHU__THR_WRITE, 4096, 60 * SEC, 61 * SEC);
	CHECK(again >= 20000 && again <= 20000 + 2002);
}

TEST(burst_level_without_length_is_a_bucket_of_max)
{
	struct vhu_blk_throttle c = cfg_of("iops-total=100,iops-total-max=1000");
	struct vhu__thr t = { 0 };

	vhu__thr_config(&t, &c, 0);
	/* 1000 at once (length 1: no rate cap on the burst), then 100/s */
	CHECK_EQ(greedy(&t, VHU__THR_READ, 512, 0, 1), 1001);
	uint64_t n = greedy(&t, VHU__THR_READ, 512, 1, 1 + 10 * SEC);
	CHECK(n >= 998 && n <= 1002);
}

TEST(change_at_run_time)
{
	struct vhu_blk_throttle c = cfg_of("iops-total=1000");
	struct vhu__thr t = { 0 };
	uint64_t n;

	vhu__thr_config(&t, &c, 0);
	n = greedy(&t, VHU__THR_READ, 512, 0, 2 * SEC);
	CHECK(n >= 2099 && n <= 2102);
	/* Lowered: the new rate at once, no fresh burst and no debt
	 * beyond the new bucket. */
	c = cfg_of("iops-total=100");
	vhu__thr_config(&t, &c, 2 * SEC);
	n = greedy(&t, VHU__THR_READ, 512, 2 * SEC, 4 * SEC);
	CHECK(n >= 199 && n <= 211);
	/* The same limits again: still no fresh burst (QEMU would allow
	 * one here, it empties the buckets). */
	vhu__thr_config(&t, &c, 4 * SEC);
	n = greedy(&t, VHU__THR_READ, 512, 4 * SEC, 5 * SEC);
	CHECK(n >= 99 && n <= 101);
	/* Removed: no wait at all, nothing counted. */
	c = (struct vhu_blk_throttle){ 0 };
	vhu__thr_config(&t, &c, 5 * SEC);
	CHECK(!t.on);
	CHECK_EQ(vhu__thr_wait(&t, VHU__THR_READ, 5 * SEC), 0);
	/* Raised by key over the current configuration. */
	struct vhu_blk_throttle k = { 0 };
	char err[200];
	CHECK_EQ(vhu_blk_throttle_parse(&k, "iops-read=10,bps-write=4096", err,
					sizeof(err)), 0);
	CHECK_EQ(vhu_blk_throttle_parse(&k, "iops-read=20", err, sizeof(err)), 0);
	CHECK_EQ(k.b[VHU_BLK_THR_IOPS_READ].avg, 20);
	CHECK_EQ(k.b[VHU_BLK_THR_BPS_WRITE].avg, 4096);
	vhu__thr_config(&t, &k, 6 * SEC);
	n = greedy(&t, VHU__THR_READ, 512, 6 * SEC, 7 * SEC);
	CHECK(n >= 20 + 1 && n <= 20 + 3);
}

TEST(huge_values_do_not_overflow)
{
	struct vhu_blk_throttle c = { 0 };
	struct vhu__thr t = { 0 };
	char err[200];

	/* the largest rates QEMU takes, with the longest burst */
	c.b[VHU_BLK_THR_BPS_TOTAL].avg = VHU_BLK_THR_VALUE_MAX;
	c.b[VHU_BLK_THR_BPS_TOTAL].max = VHU_BLK_THR_VALUE_MAX;
	c.b[VHU_BLK_THR_BPS_TOTAL].max_length = 1;
	c.b[VHU_BLK_THR_IOPS_TOTAL].avg = VHU_BLK_THR_VALUE_MAX / 1000;
	c.b[VHU_BLK_THR_IOPS_TOTAL].max = VHU_BLK_THR_VALUE_MAX / 1000;
	c.b[VHU_BLK_THR_IOPS_TOTAL].max_length = 1000;
	CHECK_EQ(vhu_blk_throttle_check(&c, err, sizeof(err)), 0);
	vhu__thr_config(&t, &c, 0);
	/* 64 GiB discards (the most a request covers) count exactly */
	for (int i = 0; i < 1000; i++) {
		CHECK_EQ(vhu__thr_wait(&t, VHU__THR_WRITE, 0), 0);
		vhu__thr_account(&t, VHU__THR_WRITE, 64ull << 30);
	}
	/* 6.9e13 bytes, under the 10^15 bucket: still free */
	CHECK_EQ(vhu__thr_wait(&t, VHU__THR_WRITE, 0), 0);
	for (int i = 0; i < 20000; i++)
		vhu__thr_account(&t, VHU__THR_WRITE, 64ull << 30);
	/* 1.44e15 bytes in a 10^15 bucket: 0.44 s at 10^15/s */
	uint64_t w = vhu__thr_wait(&t, VHU__THR_WRITE, 0);
	CHECK(w > 430000000ull && w < 450000000ull);
	/* a clock that jumps by centuries leaks everything, no wrap */
	CHECK_EQ(vhu__thr_wait(&t, VHU__THR_WRITE, UINT64_MAX - 1), 0);

	/* a 1 B/s limit and a 1 GiB request: a wait of 2^30 s, in range */
	c = cfg_of("bps-write=1");
	vhu__thr_config(&t, &c, 0);
	vhu__thr_account(&t, VHU__THR_WRITE, 1ull << 30);
	w = vhu__thr_wait(&t, VHU__THR_WRITE, 0);
	CHECK(w >= (1ull << 30) * SEC - SEC && w <= (1ull << 30) * SEC);
	/* beyond 64 bits of nanoseconds: the longest wait, not a short one */
	for (int i = 0; i < 300; i++)
		vhu__thr_account(&t, VHU__THR_WRITE, 64ull << 30);
	CHECK_EQ(vhu__thr_wait(&t, VHU__THR_WRITE, 0), UINT64_MAX);
}

TEST(keys_and_rules)
{
	struct vhu_blk_throttle t = { 0 };
	char err[300];
	uint64_t v;

	CHECK_EQ(vhu_blk_throttle_parse(&t, "iops-total=5000,iops-total-max=20000,"
					"iops-total-max-length=2,bps-read=100,"
					"iops-size=8192", err, sizeof(err)), 0);
	CHECK_EQ(t.b[VHU_BLK_THR_IOPS_TOTAL].avg, 5000);
	CHECK_EQ(t.b[VHU_BLK_THR_IOPS_TOTAL].max, 20000);
	CHECK_EQ(t.b[VHU_BLK_THR_IOPS_TOTAL].max_length, 2);
	CHECK_EQ(t.b[VHU_BLK_THR_BPS_READ].avg, 100);
	CHECK_EQ(t.iops_size, 8192);
	CHECK_EQ(vhu_blk_throttle_check(&t, err, sizeof(err)), 0);
	CHECK(vhu_blk_throttle_any(&t));
	CHECK(strcmp(vhu_blk_throttle_key(&t, 10, &v), "iops-total-max") == 0);
	CHECK_EQ(v, 20000);
	CHECK(strcmp(vhu_blk_throttle_key(&t, 18, &v), "iops-size") == 0);
	CHECK(vhu_blk_throttle_key(&t, 19, &v) == NULL);

	/* 0 removes a limit and its burst */
	CHECK_EQ(vhu_blk_throttle_parse(&t, "iops-total=0,bps-read=0", err,
					sizeof(err)), 0);
	CHECK_EQ(t.b[VHU_BLK_THR_IOPS_TOTAL].max, 0);
	CHECK(!vhu_blk_throttle_any(&t));
	CHECK_EQ(vhu_blk_throttle_check(&t, err, sizeof(err)), 0);

	/* a bad list leaves t as it was */
	static const char *bad[] = {
		"", "iops-total", "iops-total=", "=5", "iops-totl=5", "iops-total=-1",
		"iops-total=5x", "iops-total=5,", "iops-total=99999999999999999999",
		"iops-total=1,,iops-read=1",
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct vhu_blk_throttle b = t;

		err[0] = '\0';
		CHECK_EQ(vhu_blk_throttle_parse(&b, bad[i], err, sizeof(err)), -EINVAL);
		CHECK(err[0] != '\0');
		CHECK(memcmp(&b, &t, sizeof(t)) == 0);
	}
	/* QEMU's rules */
	static const char *invalid[] = {
		"iops-total=10,iops-read=5",
		"bps-total=10,bps-write=5",
		"iops-read-max=10",
		"iops-read=10,iops-read-max=5",
		"iops-read=10,iops-read-max-length=5",
		"bps-total=1000000000000001",
		"bps-total=10,bps-total-max=1000000000000,bps-total-max-length=1001",
		"iops-size=1000000000000001",
	};
	for (unsigned i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		struct vhu_blk_throttle b = { 0 };

		CHECK_EQ(vhu_blk_throttle_parse(&b, invalid[i], err, sizeof(err)), 0);
		err[0] = '\0';
		CHECK_EQ(vhu_blk_throttle_check(&b, err, sizeof(err)), -EINVAL);
		CHECK(err[0] != '\0');
	}
}

/* ---- the device ---- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
}

static void set_limits(struct ctx *c, const char *list)
{
	struct vhu_blk_throttle t = { 0 };
	char err[256];

	vhu_blk_get_throttle(c->blk, &t);
	CHECK_EQ(vhu_blk_throttle_parse(&t, list, err, sizeof(err)), 0);
	CHECK_EQ(vhu_blk_set_throttle(c->blk, &t, err, sizeof(err)), 0);
}

/* Collect completions until n came or timeout_ms passed; how many came. */
static unsigned collect(struct ctx *c, unsigned n, unsigned timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000;
	unsigned got = 0;

	while (got < n) {
		void *data;
		uint32_t len;
		int r = vhu_fe_vq_get_used(c->vq, &data, &len);

		CHECK(r >= 0);
		if (r == 1) {
			got++;
			continue;
		}
		if (now_ns() >= end)
			break;
		CHECK(vhu_fe_vq_wait(c->vq, 10) >= 0);
	}
	return got;
}

static void held_requests_go_in_time(enum vhu_blk_aio aio)
{
	struct vhu_blk_opts o = { .aio = aio };
	struct vhu_blk_thr_stats st;
	struct ctx c;

	ctx_open(&c, &o, true);
	/* 200/s: 20 at once, the other 12 over 60 ms */
	set_limits(&c, "iops-total=200");
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < NSLOT; i++)
		add_req(&c, i, VHU_BLK_T_OUT, i * 8, c.data_gpa + i * 4096, 4096,
			false);
	run(&c, NSLOT, NULL);
	uint64_t took = now_ns() - t0;
	CHECK(took >= 50000000ull);
	CHECK(took < 5 * SEC);
	for (unsigned i = 0; i < NSLOT; i++)
		CHECK_EQ(c.status[i], VHU_BLK_S_OK);
	vhu_blk_throttle_stats(c.blk, &st);
	CHECK(st.held >= 11 && st.held <= 12);
	CHECK_EQ(st.holding, 0);
	CHECK(st.wait_ns >= 50000000ull);
	CHECK(st.wait_max_ns >= 50000000ull && st.wait_max_ns <= took);
	ctx_close(&c);
}

TEST_LAYOUTS(held_requests_go_in_time)
{
	held_requests_go_in_time(VHU_BLK_AIO_AUTO);
}

TEST_LAYOUTS(held_requests_go_in_time_blocking_io)
{
	held_requests_go_in_time(VHU_BLK_AIO_THREADS);
}

TEST_LAYOUTS(flush_and_removed_limit_do_not_wait)
{
	struct vhu_blk_opts o = { 0 };
	struct vhu_blk_thr_stats st;
	struct ctx c;

	ctx_open(&c, &o, true);
	/* 1/s: the first write goes, the next two wait a second each */
	set_limits(&c, "iops-write=1");
	for (unsigned i = 0; i < 3; i++)
		add_req(&c, i, VHU_BLK_T_OUT, i * 8, c.data_gpa, 4096, false);
	CHECK(vhu_fe_vq_kick(c.vq) >= 0);
	CHECK_EQ(collect(&c, 1, 2000), 1);
	/* a flush and a read pass the held writes */
	add_req(&c, 3, VHU_BLK_T_FLUSH, 0, 0, 0, false);
	add_req(&c, 4, VHU_BLK_T_IN, 0, c.data_gpa + 8192, 4096, true);
	CHECK(vhu_fe_vq_kick(c.vq) >= 0);
	CHECK_EQ(collect(&c, 2, 500), 2);
	CHECK_EQ(c.status[3], VHU_BLK_S_OK);
	CHECK_EQ(c.status[4], VHU_BLK_S_OK);
	vhu_blk_throttle_stats(c.blk, &st);
	CHECK_EQ(st.holding, 2);
	/* the limit removed: the held writes go within the recheck time */
	uint64_t t0 = now_ns();
	set_limits(&c, "iops-write=0");
	CHECK_EQ(collect(&c, 2, 400), 2);
	CHECK(now_ns() - t0 < 400000000ull);
	CHECK_EQ(c.status[1], VHU_BLK_S_OK);
	CHECK_EQ(c.status[2], VHU_BLK_S_OK);
	vhu_blk_throttle_stats(c.blk, &st);
	CHECK_EQ(st.holding, 0);
	CHECK_EQ(st.held, 2);
	ctx_close(&c);
}

static void stop_while_holding(enum vhu_blk_aio aio)
{
	struct vhu_blk_opts o = { .aio = aio };
	struct vhu_blk_thr_stats st;
	struct ctx c;
	uint8_t buf[4096];

	ctx_open(&c, &o, true);
	set_limits(&c, "iops-total=1");
	for (unsigned i = 0; i < NSLOT; i++) {
		memset(c.data + i * 4096, (int)i + 1, 4096);
		add_req(&c, i, VHU_BLK_T_OUT, i * 8, c.data_gpa + i * 4096, 4096,
			false);
	}
	CHECK(vhu_fe_vq_kick(c.vq) >= 0);
	CHECK_EQ(collect(&c, 1, 2000), 1);
	/* the stop comes while the queue holds the other 31 */
	usleep(20000);
	vhu_blk_throttle_stats(c.blk, &st);
	CHECK_EQ(st.holding, NSLOT - 1);
	uint64_t t0 = now_ns();
	uint32_t base = 0;
	CHECK_EQ(vhu_fe_vq_stop(c.fe, 0, &base), 0);
	CHECK(now_ns() - t0 < 2 * SEC);
	/* every popped request was done and given back */
	CHECK_EQ(base, ring_base_after(&c, NSLOT));
	for (unsigned i = 0; i < NSLOT; i++) {
		CHECK_EQ(c.status[i], VHU_BLK_S_OK);
		pread_img(&c, buf, sizeof(buf), i * 4096);
		CHECK_EQ(buf[0], i + 1);
		CHECK_EQ(buf[4095], i + 1);
	}
	vhu_blk_throttle_stats(c.blk, &st);
	CHECK_EQ(st.holding, 0);
	ctx_close(&c);
}

TEST_LAYOUTS(stop_while_holding_completes_every_request)
{
	stop_while_holding(VHU_BLK_AIO_AUTO);
}

TEST_LAYOUTS(stop_while_holding_completes_every_request_blocking_io)
{
	stop_while_holding(VHU_BLK_AIO_THREADS);
}

TEST(group_shares_the_budget)
{
	struct vhu_blk_opts oa = { 0 }, ob = { 0 };
	struct vhu_blk_throttle t;
	struct ctx a, b;
	char name[64], path[96], err[256];

	snprintf(name, sizeof(name), "test-%d", (int)getpid());
	snprintf(path, sizeof(path), "/vhu-blk-throttle-%s", name);
	shm_unlink(path);
	ctx_open(&a, &oa, false);
	ctx_open(&b, &ob, false);
	CHECK_EQ(vhu_blk_throttle_group(a.blk, "bad/name", err, sizeof(err)),
		 -EINVAL);
	CHECK_EQ(vhu_blk_throttle_group(a.blk, name, err, sizeof(err)), 0);
	CHECK_EQ(vhu_blk_throttle_group(b.blk, name, err, sizeof(err)), 0);
	CHECK(strcmp(vhu_blk_throttle_group_name(b.blk), name) == 0);
	/* limits set through one member are the other's */
	set_limits(&a, "iops-total=200");
	vhu_blk_get_throttle(b.blk, &t);
	CHECK_EQ(t.b[VHU_BLK_THR_IOPS_TOTAL].avg, 200);
	ctx_connect(&a);
	ctx_connect(&b);
	/* joining while the queues run is refused */
	CHECK_EQ(vhu_blk_throttle_group(a.blk, name, err, sizeof(err)), -EBUSY);
	/* 64 requests over both: 21 at once, the other 43 at 200/s, about
	 * 215 ms (each alone would take 55 ms) */
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < NSLOT; i++) {
		add_req(&a, i, VHU_BLK_T_IN, i * 8, a.data_gpa + i * 4096, 4096, true);
		add_req(&b, i, VHU_BLK_T_IN, i * 8, b.data_gpa + i * 4096, 4096, true);
	}
	CHECK(vhu_fe_vq_kick(a.vq) >= 0);
	CHECK(vhu_fe_vq_kick(b.vq) >= 0);
	CHECK_EQ(collect(&a, NSLOT, 5000), NSLOT);
	CHECK_EQ(collect(&b, NSLOT, 5000), NSLOT);
	uint64_t took = now_ns() - t0;
	CHECK(took >= 190000000ull);
	CHECK(took < 5 * SEC);
	ctx_close(&a);
	ctx_close(&b);
	shm_unlink(path);
}

TEST(group_segment_of_another_kind_is_refused)
{
	struct vhu_blk_opts o = { 0 };
	struct ctx a;
	char name[64], path[96], err[256] = "";
	int fd;

	snprintf(name, sizeof(name), "test-bad-%d", (int)getpid());
	snprintf(path, sizeof(path), "/vhu-blk-throttle-%s", name);
	fd = shm_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK_EQ(ftruncate(fd, 12345), 0);
	close(fd);
	ctx_open(&a, &o, false);
	CHECK_EQ(vhu_blk_throttle_group(a.blk, name, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "not a throttle group") != NULL);
	CHECK(vhu_blk_throttle_group_name(a.blk) == NULL);
	ctx_close(&a);
	shm_unlink(path);
}

int main(void)
{
	return tap_run();
}
