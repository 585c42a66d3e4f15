/* SPDX-License-Identifier: MIT */
/*
 * Surviving a peer that shrinks shared memory it gave us.
 *
 * Guest memory and the inflight region are files the front-end passes as
 * fds.  The size is checked when they are mapped (mem.c, inflight.c), but
 * the front-end keeps the file and may ftruncate() it later; our next
 * access to a page past the new end then raises SIGBUS, which would end
 * the whole process (every session, every queue).  QEMU's
 * memory-backend-memfd seals its files against that by default, but
 * memory-backend-file (/dev/shm, hugetlbfs) does not, so requiring seals
 * would refuse common setups.  The library instead survives the fault:
 *
 * - Every mapping of peer memory is entered in a fixed, lock-free
 *   registry (vhu__guard_add/del).
 * - vhu_sigbus_guard_install() (the application opts in; it owns the
 *   process's signal dispositions) installs a SIGBUS handler.  A fault
 *   inside a registered mapping replaces the pages from the faulting one
 *   to the mapping's end with anonymous zero memory (mmap MAP_FIXED, a
 *   plain system call, safe in a handler), records that range as lost,
 *   flags the faulting thread and returns: the access is retried and
 *   reads zeros.  A fault anywhere else goes to the previous handler, or
 *   kills the process with the default action as before.
 * - The ring code checks at every pop (virtq.c): a queue whose thread
 *   faulted, or whose rings or inflight record lie in a lost range, is
 *   marked broken (the same path as a malformed ring: -EIO, error fd
 *   signalled).  Other queues and sessions go on.
 *
 * What a lost page held is gone: the front-end destroyed it.  A request
 * whose buffers were there fails (the kernel reports EFAULT for I/O from
 * unmapped pages before the fault, and the queue breaks after it).
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#define SLOTS 256

enum { FREE = 0, BUSY, ACTIVE };

struct slot {
	atomic_int state;
	atomic_uintptr_t start;
	atomic_size_t len;
	atomic_size_t granule;
	atomic_uintptr_t lost_from;  /* 0: nothing lost */
};

static struct slot slots[SLOTS];
static atomic_uint lost_gen;
static atomic_int installed;
static struct sigaction previous;
static __thread volatile sig_atomic_t thread_faulted
	__attribute__((tls_model("initial-exec")));

int vhu__guard_add(void *addr, size_t len, size_t granule)
{
	if (!addr || len == 0)
		return -EINVAL;
	for (int i = 0; i < SLOTS; i++) {
		int want = FREE;
		if (!atomic_compare_exchange_strong(&slots[i].state, &want, BUSY))
			continue;
		atomic_store(&slots[i].start, (uintptr_t)addr);
		atomic_store(&slots[i].len, len);
		atomic_store(&slots[i].granule, granule ? granule : 4096);
		atomic_store(&slots[i].lost_from, 0);
		atomic_store_explicit(&slots[i].state, ACTIVE, memory_order_release);
		return i;
	}
	vhu__log_rl(VHU_LOG_WARN, "SIGBUS guard: registry full, a mapping of "
		    "%zu bytes is unprotected", len);
	return -ENOSPC;
}

void vhu__guard_del(int slot)
{
	if (slot < 0 || slot >= SLOTS)
		return;
	atomic_store_explicit(&slots[slot].state, FREE, memory_order_release);
}

unsigned vhu__guard_gen(void)
{
	return atomic_load_explicit(&lost_gen, memory_order_acquire);
}

bool vhu__guard_take_thread_fault(void)
{
	if (!thread_faulted)
		return false;
	thread_faulted = 0;
	return true;
}

bool vhu__guard_lost(const void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr;
	if (!addr || len == 0)
		return false;
	for (int i = 0; i < SLOTS; i++) {
		struct slot *s = &slots[i];
		if (atomic_load_explicit(&s->state, memory_order_acquire) != ACTIVE)
			continue;
		uintptr_t from = atomic_load(&s->lost_from);
		if (!from)
			continue;
		uintptr_t end = atomic_load(&s->start) + atomic_load(&s->len);
		if (a < end && from < a + len)
			return true;
	}
	return false;
}

/* In the handler: make [page of addr, end of its mapping) anonymous.
 * true when addr was ours and the memory is now readable. */
static bool absorb(uintptr_t addr)
{
	for (int i = 0; i < SLOTS; i++) {
		struct slot *s = &slots[i];
		if (atomic_load_explicit(&s->state, memory_order_acquire) != ACTIVE)
			continue;
		uintptr_t start = atomic_load(&s->start);
		uintptr_t end = start + atomic_load(&s->len);
		if (addr < start || addr >= end)
			continue;
		/* hugetlbfs mappings split only at huge-page boundaries */
		uintptr_t g = atomic_load(&s->granule);
		uintptr_t from = start + ((addr - start) & ~(g - 1));
		void *p = mmap((void *)from, end - from, PROT_READ | PROT_WRITE,
			       MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return false;
		uintptr_t old = atomic_load(&s->lost_from);
		if (!old || from < old)
			atomic_store(&s->lost_from, from);
		thread_faulted = 1;
		atomic_fetch_add_explicit(&lost_gen, 1, memory_order_release);
		return true;
	}
	return false;
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;
	/* si_code > 0: raised by the kernel for an access (not kill()). */
	if (si && si->si_code > 0 && absorb((uintptr_t)si->si_addr)) {
		errno = saved;
		return;
	}
	errno = saved;
	if ((previous.sa_flags & SA_SIGINFO) && previous.sa_sigaction) {
		previous.sa_sigaction(sig, si, uc);
		return;
	}
	if (!(previous.sa_flags & SA_SIGINFO) &&
	    previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
		previous.sa_handler(sig);
		return;
	}
	/* Not ours: die as if no handler were installed.  A fault re-runs
	 * the access and gets the default action; a sent signal is re-raised. */
	struct sigaction dfl;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	sigaction(SIGBUS, &dfl, NULL);
	if (!si || si->si_code <= 0)
		raise(SIGBUS);
}

int vhu_sigbus_guard_install(void)
{
	int want = 0;
	if (!atomic_compare_exchange_strong(&installed, &want, 1))
		return 0;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, &previous) < 0) {
		int e = -errno;
		atomic_store(&installed, 0);
		return e;
	}
	return 0;
}
