/* SPDX-License-Identifier: MIT */
/*
 * Surviving a peer that shrinks shared memory it gave us.
 *
 * Guest memory, the inflight region and the dirty log are files the
 * front-end passes as fds.  The size is checked when they are mapped (mem.c, inflight.c), but
 * the front-end keeps the file and may ftruncate() it later; our next
 * access to a page past the new end then raises SIGBUS, which would end
 * the whole process (every session, every queue).  QEMU's
 * memory-backend-memfd seals its files against that by default, but
 * memory-backend-file (/dev/shm, hugetlbfs) does not, so requiring seals
 * would refuse common setups.  The library instead survives the fault:
 *
 * - Every mapping of peer memory is entered in a lock-free registry
 *   (vhu__guard_add/del) that grows in chunks up to a hard cap.  A
 *   mapping that cannot be entered is not kept: the request that would
 *   create it (ADD_MEM_REG, SET_MEM_TABLE, SET_INFLIGHT_FD, SET_LOG_BASE)
 *   fails, so no mapping of peer memory is ever unprotected.
 * - vhu_sigbus_guard_install() (the application opts in; it owns the
 *   process's signal dispositions) installs a SIGBUS handler.  A fault
 *   inside a registered mapping replaces the pages from the faulting one
 *   to the mapping's end with anonymous zero memory (mmap MAP_FIXED, a
 *   plain system call, safe in a handler), records that range as lost,
 *   flags the faulting thread and returns: the access is retried and
 *   reads zeros.  A fault anywhere else goes to the previous handler, or
 *   kills the process with the default action as before.
 * - The ring code checks at every pop (virtq.c): a queue whose thread
 *   faulted, or whose rings, inflight record or dirty log lie in a lost
 *   range, is marked broken (the same path as a malformed ring: -EIO,
 *   error fd signalled).  A queue that logs also checks after writing
 *   the log (virtq-log.c): bits written into a lost log reach nobody, so
 *   the push that lost them breaks the queue instead of passing for
 *   logged.  Other queues and sessions go on.
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

/*
 * The registry: chunks of CHUNK slots, created on demand and never freed,
 * so the handler and vhu__guard_lost() walk it without a lock and never
 * see memory go away under them.  chunks[] fills in order (a chunk is
 * created only once every one before it exists), so readers stop at the
 * first NULL.  A slot id is chunk * CHUNK + index.
 *
 * MAX_CHUNKS * CHUNK = 65536 mappings: at or above the kernel's default
 * vm.max_map_count (65530), so under default settings the process runs
 * out of mappings before the registry does; one session needs at most
 * VHU_MAX_MEM_SLOTS + 2 (regions, inflight region, dirty log), twice that
 * while SET_MEM_TABLE builds the new table beside the old.
 */
#define CHUNK 512
#define MAX_CHUNKS 128

enum { FREE = 0, BUSY, ACTIVE };

struct slot {
	atomic_int state;
	atomic_uintptr_t start;
	atomic_size_t len;
	atomic_size_t granule;
	atomic_uintptr_t lost_from;  /* 0: nothing lost */
};

struct chunk {
	atomic_uint used;  /* slots taken: a hint to skip full chunks */
	struct slot s[CHUNK];
};

static _Atomic(struct chunk *) chunks[MAX_CHUNKS];
static atomic_uint lost_gen;
static atomic_int installed;
static struct sigaction previous;
static __thread volatile sig_atomic_t thread_faulted
	__attribute__((tls_model("initial-exec")));

/* Chunk c, created if needed; NULL when it cannot be. */
static struct chunk *chunk_get(unsigned c)
{
	struct chunk *ch = atomic_load_explicit(&chunks[c], memory_order_acquire);
	if (ch)
		return ch;
	/* mmap: zeroed (every slot FREE), and no allocator state a handler
	 * could trip over. */
	void *p = mmap(NULL, sizeof(struct chunk), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	struct chunk *want = NULL;
	if (!atomic_compare_exchange_strong_explicit(&chunks[c], &want, p,
						     memory_order_acq_rel,
						     memory_order_acquire)) {
		munmap(p, sizeof(struct chunk)); /* another thread was first */
		return want;
	}
	return p;
}

static int take(unsigned c, struct chunk *ch, void *addr, size_t len,
		size_t granule)
{
	for (unsigned i = 0; i < CHUNK; i++) {
		struct slot *s = &ch->s[i];
		int want = FREE;
		if (!atomic_compare_exchange_strong(&s->state, &want, BUSY))
			continue;
		atomic_fetch_add(&ch->used, 1);
		atomic_store(&s->start, (uintptr_t)addr);
		atomic_store(&s->len, len);
		atomic_store(&s->granule, granule ? granule : 4096);
		atomic_store(&s->lost_from, 0);
		atomic_store_explicit(&s->state, ACTIVE, memory_order_release);
		return (int)(c * CHUNK + i);
	}
	return -ENOSPC;
}

int vhu__guard_add(void *addr, size_t len, size_t granule)
{
	if (!addr || len == 0)
		return -EINVAL;
	/* Two passes: the first skips chunks that look full; the second,
	 * only at the cap, looks at every slot (a hint can be stale). */
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned c = 0; c < MAX_CHUNKS; c++) {
			struct chunk *ch = chunk_get(c);
			if (!ch) {
				vhu__err("SIGBUS guard: cannot grow the registry: %s",
					 strerror(errno));
				return -ENOMEM;
			}
			if (pass == 0 && atomic_load(&ch->used) >= CHUNK)
				continue;
			int r = take(c, ch, addr, len, granule);
			if (r >= 0)
				return r;
		}
	}
	vhu__log_rl(VHU_LOG_ERROR, "SIGBUS guard: registry full (%u mappings of "
		    "peer memory): a mapping of %zu bytes is refused",
		    MAX_CHUNKS * CHUNK, len);
	return -ENOSPC;
}

static struct slot *slot_at(int id)
{
	if (id < 0 || (unsigned)id >= MAX_CHUNKS * CHUNK)
		return NULL;
	struct chunk *ch = atomic_load_explicit(&chunks[id / CHUNK],
						memory_order_acquire);
	return ch ? &ch->s[id % CHUNK] : NULL;
}

void vhu__guard_del(int slot)
{
	struct slot *s = slot_at(slot);
	if (!s || atomic_load(&s->state) != ACTIVE)
		return;
	atomic_store_explicit(&s->state, FREE, memory_order_release);
	atomic_fetch_sub(&atomic_load(&chunks[slot / CHUNK])->used, 1);
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
	for (unsigned c = 0; c < MAX_CHUNKS; c++) {
		struct chunk *ch = atomic_load_explicit(&chunks[c],
							memory_order_acquire);
		if (!ch)
			break;
		for (unsigned i = 0; i < CHUNK; i++) {
			struct slot *s = &ch->s[i];
			if (atomic_load_explicit(&s->state, memory_order_acquire) != ACTIVE)
				continue;
			uintptr_t from = atomic_load(&s->lost_from);
			if (!from)
				continue;
			uintptr_t end = atomic_load(&s->start) + atomic_load(&s->len);
			if (a < end && from < a + len)
				return true;
		}
	}
	return false;
}

/* In the handler: make [page of addr, end of its mapping) anonymous.
 * true when addr was ours and the memory is now readable. */
static bool absorb_slot(struct slot *s, uintptr_t addr)
{
	if (atomic_load_explicit(&s->state, memory_order_acquire) != ACTIVE)
		return false;
	uintptr_t start = atomic_load(&s->start);
	uintptr_t end = start + atomic_load(&s->len);
	if (addr < start || addr >= end)
		return false;
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

static bool absorb(uintptr_t addr)
{
	for (unsigned c = 0; c < MAX_CHUNKS; c++) {
		struct chunk *ch = atomic_load_explicit(&chunks[c],
							memory_order_acquire);
		if (!ch)
			break;
		for (unsigned i = 0; i < CHUNK; i++)
			if (absorb_slot(&ch->s[i], addr))
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
