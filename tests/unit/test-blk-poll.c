/* SPDX-License-Identifier: MIT */
/* vhu-blk adaptive polling (devices/blk/poll.c): the rule that a queue
 * thread spins only while the process's active polling queues (awake, or
 * asleep for less than a millisecond) number at most half the usable
 * CPUs. */
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "blk-int.h"
#include "tap.h"

static unsigned calls;

static bool never(void *arg)
{
	(void)arg;
	calls++;
	return false;
}

/* Longer than poll.c's idle window (1 ms). */
static void idle_wait(void)
{
	struct timespec ts = { 0, 3 * 1000 * 1000 };

	nanosleep(&ts, NULL);
}

static bool hundredth(void *arg)
{
	(void)arg;
	return ++calls == 100;
}

/* A's readiness check: on its third look, B (another queue thread of the
 * process) tries to poll while A is awake; then A finds work. */
struct nested {
	struct vhu__blk_poll *b;
	unsigned looks;
	unsigned b_calls;
	bool b_found;
};

static bool a_ready(void *arg)
{
	struct nested *n = arg;

	if (++n->looks < 3)
		return false;
	calls = 0;
	n->b_found = vhu__blk_poll_spin(n->b, never, NULL);
	n->b_calls = calls;
	return true;
}

static void two(struct vhu__blk_poll *a, struct vhu__blk_poll *b,
		unsigned max_active)
{
	vhu__blk_poll_init(a, 1000, false);
	vhu__blk_poll_init(b, 1000, false);
	a->max_active = b->max_active = max_active;
}

TEST(limit_is_half_the_usable_cpus)
{
	struct vhu__blk_poll p;
	cpu_set_t set;

	CHECK_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
	vhu__blk_poll_init(&p, 50, false);
	CHECK_EQ(p.max_active, CPU_COUNT(&set) / 2);
	CHECK(vhu__blk_poll_on(&p));
	CHECK_EQ(p.cur_ns, 25000);
}

TEST(lone_queue_spins_its_budget)
{
	struct vhu__blk_poll a, b;

	two(&a, &b, 1);
	calls = 0;
	CHECK(!vhu__blk_poll_spin(&a, never, NULL));
	/* 500 us of looks, 16 per clock read: far more than one batch. */
	CHECK(calls > 16);
	CHECK_EQ(vhu__blk_poll_active(), 1);
	/* Asleep: still active for the idle window, then not. */
	vhu__blk_poll_sleeping(&a);
	CHECK_EQ(vhu__blk_poll_active(), 1);
	idle_wait();
	CHECK_EQ(vhu__blk_poll_active(), 0);
	vhu__blk_poll_fini(&a);
	vhu__blk_poll_fini(&b);
}

TEST(second_queue_does_not_spin_while_one_is_awake)
{
	struct vhu__blk_poll a, b;
	struct nested n = { .b = &b };

	two(&a, &b, 1);
	CHECK(vhu__blk_poll_spin(&a, a_ready, &n));
	/* B looked once and went to sleep instead of spinning. */
	CHECK(!n.b_found);
	CHECK_EQ(n.b_calls, 1);
	CHECK_EQ(vhu__blk_poll_active(), 2);
	vhu__blk_poll_fini(&a);
	vhu__blk_poll_fini(&b);
	CHECK_EQ(vhu__blk_poll_active(), 0);
}

TEST(two_may_spin_with_room_for_two)
{
	struct vhu__blk_poll a, b;
	struct nested n = { .b = &b };

	two(&a, &b, 2);
	CHECK(vhu__blk_poll_spin(&a, a_ready, &n));
	CHECK(n.b_calls > 16);
	vhu__blk_poll_fini(&a);
	vhu__blk_poll_fini(&b);
}

TEST(busy_queue_that_sleeps_between_requests_stays_active)
{
	struct vhu__blk_poll a, b;

	two(&a, &b, 1);
	/* B serves QD1: woken by a kick, asleep again right after. */
	vhu__blk_poll_sleeping(&b);
	vhu__blk_poll_woke(&b);
	vhu__blk_poll_sleeping(&b);
	calls = 0;
	CHECK(!vhu__blk_poll_spin(&a, never, NULL));
	CHECK_EQ(calls, 1);
	/* B has been asleep longer than the idle window: A may spin. */
	idle_wait();
	calls = 0;
	CHECK(!vhu__blk_poll_spin(&a, never, NULL));
	CHECK(calls > 16);
	vhu__blk_poll_fini(&a);
	vhu__blk_poll_fini(&b);
}

/* A's readiness check while it spins: on the third look B wakes up. */
static struct vhu__blk_poll *waking;
static unsigned looks;

static bool other_wakes(void *arg)
{
	(void)arg;
	if (++looks == 3) {
		vhu__blk_poll_sleeping(waking);
		vhu__blk_poll_woke(waking);
	}
	return false;
}

TEST(spinner_stops_when_another_queue_wakes)
{
	struct vhu__blk_poll a, b;

	two(&a, &b, 1);
	vhu__blk_poll_sleeping(&b);
	idle_wait();
	waking = &b;
	looks = 0;
	CHECK(!vhu__blk_poll_spin(&a, other_wakes, NULL));
	/* It stopped at the first clock read after B woke (16 looks per
	 * read), not after its 500 us budget. */
	CHECK(looks <= 16);
	vhu__blk_poll_fini(&a);
	vhu__blk_poll_fini(&b);
}

TEST(finished_queue_frees_its_place)
{
	struct vhu__blk_poll a, b;

	two(&a, &b, 1);
	CHECK(!vhu__blk_poll_spin(&b, never, NULL));
	CHECK_EQ(vhu__blk_poll_active(), 1);
	vhu__blk_poll_fini(&b);
	CHECK_EQ(vhu__blk_poll_active(), 0);
	calls = 0;
	CHECK(!vhu__blk_poll_spin(&a, never, NULL));
	CHECK(calls > 16);
	vhu__blk_poll_fini(&a);
}

TEST(one_cpu_never_spins_but_always_does)
{
	struct vhu__blk_poll a;

	vhu__blk_poll_init(&a, 1000, false);
	a.max_active = 0;
	calls = 0;
	CHECK(!vhu__blk_poll_spin(&a, never, NULL));
	CHECK_EQ(calls, 1);
	vhu__blk_poll_fini(&a);

	/* --poll always spins regardless of the count. */
	vhu__blk_poll_init(&a, 0, true);
	a.max_active = 0;
	calls = 0;
	CHECK(vhu__blk_poll_spin(&a, hundredth, NULL));
	CHECK_EQ(calls, 100);
	vhu__blk_poll_fini(&a);
}

int main(void)
{
	return tap_run();
}
