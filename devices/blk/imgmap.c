/* SPDX-License-Identifier: MIT */
/*
 * Images in memory (tmpfs, ramfs) served by a plain memory copy.
 *
 * A read or write of such an image is a copy between the page cache and
 * guest memory; preadv2/pwritev2 add a system call and a page-cache
 * lookup per page around that copy, which is most of the CPU a request
 * costs.  The image is mapped (MAP_SHARED, the same pages the file calls
 * see) and the queue threads copy directly.
 *
 * - Address space for the image is reserved once, larger than the
 *   image, so a grow maps the new part in place (MAP_FIXED over the
 *   reservation) and never moves pages a queue thread may be copying.
 *   A request beyond what is mapped goes through the file calls.
 * - Reading a hole through a mapping of tmpfs allocates a page for it
 *   (preadv2 returns zeros without), so reads use the mapping only while
 *   the image is known to have no holes: checked at open and at every
 *   queue start, forgotten at the first discard, write-zeroes or grow.
 * - The file may still change under the mapping: someone truncates it,
 *   or tmpfs is full when a write first touches a page.  Either raises
 *   SIGBUS in the copying thread.  A handler (SA_NODEFER) jumps back to
 *   the copy, which then reports nothing done, and the request goes
 *   through the file calls: their error (end of file, ENOSPC) is the
 *   request's.  After a truncate the mapping is not used any more
 *   (map_dropped): what it shows no longer matches the file's size, and
 *   a read of a hole the file got since would allocate pages through it.
 * - Only a fault on the image's own pages is taken back.  A SIGBUS
 *   anywhere else, in a copy (guest memory the front-end truncated) or
 *   outside one, goes to the handler that was there before: libvhu's
 *   guard of guest memory records the loss and breaks the queue, which
 *   a jump back would skip; or the default action.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blk-int.h"

/* Reserved address space: four times the image, at least 64 GiB. */
#define MAP_MIN_RESERVE (64ull << 30)
/* Images up to this size get their page tables filled (8 MiB of them). */
#define POPULATE_MAX (4ull << 30)
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

static __thread sigjmp_buf *copy_jmp
	__attribute__((tls_model("initial-exec")));
/* The image pages the running copy touches: [copy_lo, copy_hi). */
static __thread uintptr_t copy_lo __attribute__((tls_model("initial-exec")));
static __thread uintptr_t copy_hi __attribute__((tls_model("initial-exec")));
static struct sigaction prev_bus;
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;
static bool handler_ok;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	sigjmp_buf *jb = copy_jmp;
	uintptr_t a = si ? (uintptr_t)si->si_addr : 0;

	if (jb && si && si->si_code > 0 && a >= copy_lo && a < copy_hi) {
		copy_jmp = NULL;
		siglongjmp(*jb, 1);
	}
	if (prev_bus.sa_flags & SA_SIGINFO) {
		prev_bus.sa_sigaction(sig, si, uc);
		return;
	}
	if (prev_bus.sa_handler != SIG_DFL && prev_bus.sa_handler != SIG_IGN) {
		prev_bus.sa_handler(sig);
		return;
	}
	/* The default action: the fault repeats when this returns and
	 * ends the process, as it would have without this handler. */
	signal(SIGBUS, SIG_DFL);
}

static void install_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	handler_ok = sigaction(SIGBUS, &sa, &prev_bus) == 0;
}

static uint64_t page_up(uint64_t n)
{
	uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);

	return (n + pg - 1) & ~(pg - 1);
}

void vhu__blk_map_dense_check(struct vhu_blk *blk)
{
	struct stat st;

	if (!blk->map)
		return;
	if (fstat(blk->fd, &st) < 0 ||
	    (uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size)
		return;
	/* Without holes, the page tables can be filled at once, so no
	 * request pays a page fault (about as much as the system call it
	 * replaces) on its first touch of a page; up to POPULATE_MAX, for
	 * the page tables' sake.  Kernels before 5.14 say EINVAL: the
	 * faults happen then. */
	if (blk->map_mapped <= POPULATE_MAX &&
	    !atomic_exchange(&blk->map_populated, true)) {
		madvise(blk->map, (size_t)blk->map_mapped, MADV_POPULATE_READ);
	}
	atomic_store(&blk->map_reads, true);
}

int vhu__blk_map_open(struct vhu_blk *blk)
{
	uint64_t size = atomic_load(&blk->size), len = page_up(size);
	int prot = PROT_READ | (blk->read_only ? 0 : PROT_WRITE);
	size_t reserve;
	void *base;

	if (!blk->mem_backed || blk->blockdev ||
	    blk->cache == VHU_BLK_CACHE_NONE || size == 0)
		return 0;
	pthread_once(&handler_once, install_handler);
	if (!handler_ok)
		return 0;   /* the file calls serve it, as before */
	reserve = (size_t)(len * 4 > MAP_MIN_RESERVE ? page_up(len * 4)
						     : MAP_MIN_RESERVE);
	base = mmap(NULL, reserve, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED)
		return 0;
	if (mmap(base, (size_t)len, prot, MAP_SHARED | MAP_FIXED, blk->fd, 0) ==
	    MAP_FAILED) {
		munmap(base, reserve);
		return 0;
	}
	blk->map = base;
	blk->map_reserve = reserve;
	blk->map_prot = prot;
	blk->map_mapped = len;
	atomic_store(&blk->map_len, size);
	vhu__blk_map_dense_check(blk);
	return 0;
}

void vhu__blk_map_size(struct vhu_blk *blk, uint64_t size)
{
	uint64_t len = page_up(size);

	if (!blk->map)
		return;
	if (size <= atomic_load(&blk->map_len)) {
		/* Smaller: requests past the new end are refused before they
		 * get here; the pages stay mapped (a copy racing with an
		 * outside truncate is caught by the SIGBUS handler). */
		atomic_store(&blk->map_len, size);
		return;
	}
	/* Larger: the new part is a hole until written. */
	atomic_store(&blk->map_reads, false);
	if (len > blk->map_mapped) {
		uint64_t from = blk->map_mapped;

		if (len > blk->map_reserve ||
		    mmap((char *)blk->map + from, (size_t)(len - from),
			 blk->map_prot, MAP_SHARED | MAP_FIXED, blk->fd,
			 (off_t)from) == MAP_FAILED)
			return;  /* the part past map_len uses the file calls */
		blk->map_mapped = len;
	}
	atomic_store(&blk->map_len, size);
}

void vhu__blk_map_close(struct vhu_blk *blk)
{
	if (!blk->map)
		return;
	atomic_store(&blk->map_len, 0);
	munmap(blk->map, blk->map_reserve);
	blk->map = NULL;
}

static __attribute__((noinline)) void copy_iov(char *img,
						 const struct iovec *iov,
						 unsigned n, bool to_guest)
{
	for (unsigned i = 0; i < n; i++) {
		if (to_guest)
			memcpy(iov[i].iov_base, img, iov[i].iov_len);
		else
			memcpy(img, iov[i].iov_base, iov[i].iov_len);
		img += iov[i].iov_len;
	}
}

/* Copy one read or write between the image mapping and guest memory;
 * false when a SIGBUS stopped it. */
static bool guarded_copy(char *img, size_t len, const struct iovec *iov,
			 unsigned n, bool to_guest)
{
	sigjmp_buf jb;

	if (sigsetjmp(jb, 0)) {
		copy_jmp = NULL;
		return false;
	}
	copy_lo = (uintptr_t)img;
	copy_hi = (uintptr_t)img + len;
	copy_jmp = &jb;
	copy_iov(img, iov, n, to_guest);
	copy_jmp = NULL;
	return true;
}

size_t vhu__blk_map_copy(struct vhu_blk *blk, const struct vhu_blk_req *req)
{
	uint64_t off = req->sector << VHU_BLK_SECTOR_SHIFT;
	bool read = req->type == VHU_BLK_T_IN;

	if (!blk->map ||
	    (read && !atomic_load_explicit(&blk->map_reads, memory_order_relaxed)) ||
	    atomic_load_explicit(&blk->map_dropped, memory_order_relaxed))
		return 0;
	if (off + req->data_len < off ||
	    off + req->data_len > atomic_load_explicit(&blk->map_len,
						       memory_order_acquire))
		return 0;
	if (!guarded_copy((char *)blk->map + off, req->data_len, req->data,
			  req->n_data, read)) {
		struct stat st;

		/* Truncated from outside (not a full tmpfs, which leaves
		 * the mapping right): stop using it. */
		if (fstat(blk->fd, &st) == 0 &&
		    (uint64_t)st.st_size < atomic_load(&blk->map_len) &&
		    !atomic_exchange(&blk->map_dropped, true))
			vhu__blk_log(VHU_LOG_WARN, "image truncated from outside "
				     "to %lld bytes under its mapping: served "
				     "by file calls from now on",
				     (long long)st.st_size);
		return 0;
	}
	return req->data_len;
}

void vhu__blk_map_holes(struct vhu_blk *blk)
{
	if (blk->map)
		atomic_store(&blk->map_reads, false);
}
