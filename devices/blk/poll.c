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
 * with `vhu bench`, its queue threads), and so does every other queue's
 * thread.  A thread that spins while they wait for a CPU delays the very
 * requests it waits for: two queues at QD1 on two CPUs, each polling, were
 * served at half the rate of no polling.  Counting the threads that are
 * awake is not enough: the thread that would say "I am awake too" cannot
 * run while the poller holds the CPU.  So adaptive polling counts the
 * process's active queues: a queue thread is active while it is awake
 * (serving or polling) and for POLL_IDLE_NS after it went to sleep (a busy
 * queue at low depth sleeps between requests but stays active).  A queue
 * polls only while the active queues number at most half the CPUs this
 * process may run on (sched_getaffinity): on 2 CPUs, one busy queue polls;
 * two busy queues both sleep on kicks, as with polling off; when the other
 * queue has been idle for a millisecond the busy one polls again.  On one
 * CPU adaptive polling never spins.  "always" ignores the count (it
 * dedicates a core by request) but is counted.  The active state lives in
 * a fixed table of POLL_SLOTS entries, claimed by a queue thread the first
 * time it polls; a queue that finds the table full never spins.
 */
#include <liburing.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "blk-int.h"

#define POLL_MIN_NS 2000u   /* the first step up from nothing */

#define POLL_SLOTS 64
#define POLL_IDLE_NS 1000000u  /* asleep this long: the queue is idle */

/* Per polling queue thread: 0 while awake, else when it went to sleep.
 * A cache line each: every thread writes its own at each sleep and wake. */
static struct {
	_Alignas(64) atomic_bool used;
	_Atomic uint64_t asleep_since;
} slots[POLL_SLOTS];
static atomic_uint slots_high;  /* slots[0, slots_high) may be used */

static uint64_t now_ns(void);

static void claim_slot(struct vhu__blk_poll *p)
{
	for (unsigned i = 0; i < POLL_SLOTS; i++) {
		bool free_slot = false;
		unsigned high;

		if (!atomic_compare_exchange_strong(&slots[i].used, &free_slot, true))
			continue;
		p->slot = (int)i;
		high = atomic_load(&slots_high);
		while (high < i + 1 &&
		       !atomic_compare_exchange_weak(&slots_high, &high, i + 1))
			;
		return;
	}
	p->slot = POLL_NO_SLOT;
}

static void mark_awake(struct vhu__blk_poll *p)
{
	if (p->slot == POLL_UNCLAIMED)
		claim_slot(p);
	if (p->slot >= 0)
		atomic_store_explicit(&slots[p->slot].asleep_since, 0,
				      memory_order_relaxed);
}

static void mark_asleep(struct vhu__blk_poll *p, uint64_t now)
{
	if (p->slot >= 0)
		atomic_store_explicit(&slots[p->slot].asleep_since, now,
				      memory_order_relaxed);
}

static unsigned active_queues(uint64_t now)
{
	unsigned n = 0, high = atomic_load_explicit(&slots_high, memory_order_relaxed);

	for (unsigned i = 0; i < high; i++) {
		uint64_t since;

		if (!atomic_load_explicit(&slots[i].used, memory_order_relaxed))
			continue;
		since = atomic_load_explicit(&slots[i].asleep_since,
					     memory_order_relaxed);
		if (since == 0 || since + POLL_IDLE_NS > now)
			n++;
	}
	return n;
}

/* More active queues than CPUs to spare for polling (or no slot). */
static bool crowded(const struct vhu__blk_poll *p, uint64_t now)
{
	return p->slot < 0 || active_queues(now) > p->max_active;
}

unsigned vhu__blk_poll_active(void)
{
	return active_queues(now_ns());
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
	p->slot = POLL_UNCLAIMED;
	p->max_active = usable_cpus() / 2;
}

void vhu__blk_poll_fini(struct vhu__blk_poll *p)
{
	if (p->slot >= 0) {
		atomic_store(&slots[p->slot].asleep_since, 0);
		atomic_store(&slots[p->slot].used, false);
	}
	p->slot = POLL_UNCLAIMED;
}

bool vhu__blk_poll_on(const struct vhu__blk_poll *p)
{
	return p->always || p->cap_ns > 0;
}

bool vhu__blk_poll_spin(struct vhu__blk_poll *p,
			bool (*ready)(void *arg), void *arg)
{
	uint64_t start, end, now;

	mark_awake(p);
	if (p->always) {
		while (!ready(arg))
			cpu_relax();
		return true;
	}
	start = now_ns();
	if (p->cur_ns == 0 || crowded(p, start))
		return ready(arg);
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
		now = now_ns();
		/* Another queue woke up: leave it (and the front-end) the CPU. */
		if (crowded(p, now))
			break;
	} while (now < end);
	return false;
}

void vhu__blk_poll_sleeping(struct vhu__blk_poll *p)
{
	p->slept_at = now_ns();
	mark_asleep(p, p->slept_at);
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
