/* SPDX-License-Identifier: MIT */
/*
 * Adaptive polling of a queue before it sleeps (the io_uring engine on a
 * thread of its own; see worker.c).
 *
 * Waking a sleeping thread through an eventfd costs tens of microseconds
 * on a virtual machine; a request that arrives a few microseconds after
 * the last one completed is served sooner by a thread that keeps looking
 * at the ring (and the io_uring completion queue) for a while.  How long
 * is the budget: it adapts, as halt polling does, to how soon work came:
 *   - polling found work: keep the budget (grow it a little);
 *   - polling found none and the sleep that followed was short (within the
 *     cap): polling longer would have caught it, double the budget;
 *   - the sleep was long: halve the budget.
 * So a busy queue polls up to the cap, an idle one stops polling after at
 * most one budget and then sleeps at ~0% CPU until a kick.  "always" never
 * sleeps: the thread spins while the queue is started.
 *
 * Polling pays only while a CPU is spare: the front-end that will submit
 * the next request needs one too (on a VM host, the guest's vCPU threads;
 * with `vhu bench`, its queue threads).  A thread that spins while the
 * front-end waits for a CPU delays the very request it is waiting for: two
 * queues polling on two CPUs served QD1 at a third of the rate of no
 * polling.  So adaptive polling counts the queue threads of the process
 * that are awake (serving or polling, not asleep in the kernel) and polls
 * only while that count is at most half the CPUs this process may run on
 * (sched_getaffinity): on 2 CPUs one queue polls, and when a second queue
 * wakes up the poller stops at its next clock read and sleeps.  On one CPU
 * adaptive polling never spins.  "always" ignores the count (it dedicates
 * a core by request) but is counted.
 */
#include <liburing.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "blk-int.h"

#define POLL_MIN_NS 2000u   /* the first step up from nothing */

/* Queue threads with polling on that are not asleep in the kernel. */
static atomic_uint awake_threads;

static void mark_awake(struct vhu__blk_poll *p)
{
	if (!p->awake) {
		p->awake = true;
		atomic_fetch_add_explicit(&awake_threads, 1, memory_order_relaxed);
	}
}

static void mark_asleep(struct vhu__blk_poll *p)
{
	if (p->awake) {
		p->awake = false;
		atomic_fetch_sub_explicit(&awake_threads, 1, memory_order_relaxed);
	}
}

/* More threads awake than CPUs to spare for polling. */
static bool crowded(const struct vhu__blk_poll *p)
{
	return atomic_load_explicit(&awake_threads, memory_order_relaxed) >
	       p->max_awake;
}

unsigned vhu__blk_poll_awake(void)
{
	return atomic_load_explicit(&awake_threads, memory_order_relaxed);
}

static unsigned usable_cpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	return 1;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void vhu__blk_poll_init(struct vhu__blk_poll *p, unsigned cap_us, bool always)
{
	p->always = always;
	p->cap_ns = (uint64_t)cap_us * 1000u;
	p->cur_ns = p->cap_ns / 2;
	p->slept_at = 0;
	p->awake = false;
	p->max_awake = usable_cpus() / 2;
}

void vhu__blk_poll_fini(struct vhu__blk_poll *p)
{
	mark_asleep(p);
}

bool vhu__blk_poll_on(const struct vhu__blk_poll *p)
{
	return p->always || p->cap_ns > 0;
}

bool vhu__blk_poll_spin(struct vhu__blk_poll *p,
			bool (*ready)(void *arg), void *arg)
{
	uint64_t start, end;

	mark_awake(p);
	if (p->always) {
		while (!ready(arg))
			cpu_relax();
		return true;
	}
	if (p->cur_ns == 0 || crowded(p))
		return ready(arg);
	start = now_ns();
	end = start + p->cur_ns;
	do {
		/* Several looks per clock read: both are cheap loads. */
		for (unsigned i = 0; i < 16; i++) {
			if (ready(arg)) {
				uint64_t grown = p->cur_ns + p->cur_ns / 8;

				p->cur_ns = grown < p->cap_ns ? grown : p->cap_ns;
				return true;
			}
			cpu_relax();
		}
		/* Another queue woke up: leave it (and the front-end) the CPU. */
		if (crowded(p))
			break;
	} while (now_ns() < end);
	return false;
}

void vhu__blk_poll_sleeping(struct vhu__blk_poll *p)
{
	mark_asleep(p);
	p->slept_at = now_ns();
}

void vhu__blk_poll_woke(struct vhu__blk_poll *p)
{
	uint64_t slept;

	mark_awake(p);
	if (p->always || p->cap_ns == 0 || p->slept_at == 0)
		return;
	slept = now_ns() - p->slept_at;
	p->slept_at = 0;
	if (slept + p->cur_ns <= p->cap_ns) {
		/* Polling this much longer would have caught it. */
		uint64_t grown = p->cur_ns ? p->cur_ns * 2 : POLL_MIN_NS;

		p->cur_ns = grown < p->cap_ns ? grown : p->cap_ns;
	} else {
		p->cur_ns /= 2;
		if (p->cur_ns < POLL_MIN_NS / 2)
			p->cur_ns = 0;
	}
}

struct poll_target {
	struct vhu_vq *vq;
	struct io_uring *ring;
};

static bool poll_ready(void *arg)
{
	struct poll_target *t = arg;

	return io_uring_cq_ready(t->ring) > 0 || vhu_vq_has_work(t->vq);
}

bool vhu__blk_poll_wait(struct vhu__blk_poll *p, struct vhu_vq *vq,
			struct io_uring *ring, bool *kicks_off)
{
	struct poll_target t = { vq, ring };

	io_uring_submit(ring);
	if (!*kicks_off) {
		vhu_vq_disable_notify(vq);
		*kicks_off = true;
	}
	if (vhu__blk_poll_spin(p, poll_ready, &t))
		return true;
	*kicks_off = false;
	if (vhu_vq_enable_notify(vq))
		return true;
	vhu__blk_poll_sleeping(p);
	return false;
}
