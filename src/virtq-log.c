/* SPDX-License-Identifier: MIT */
/*
 * Dirty logging, the queue's side (vhost-user.rst "Migration"): while the
 * front-end migrates, every guest page the device writes is marked in a
 * bitmap it shares, one bit per 4 KiB page of guest-physical address
 * (bit page % 8 of byte page / 8), so the front-end copies that page
 * again.  The front-end reads and clears the bitmap while we run: bits
 * are only ever set, with atomic OR.
 *
 * What is marked, and where (the callers in virtq-split.c and
 * virtq-packed.c): the writable buffers of every element pushed, before
 * the used element that publishes them; the used element and used index
 * of a split ring, at log_gpa offsets, after they are written; the
 * avail_event and flags fields of the used ring; for a packed ring the
 * descriptor-ring slot the used descriptor is written into (by its own
 * guest-physical address: the front-end's log_gpa names the device event
 * suppression area, which is logged when written).
 *
 * Cost: a push gathers its pages in a small per-queue cache of 64-bit
 * words and writes them with one atomic OR per byte that changed; with
 * logging off, callers test vq->log once.
 *
 * This file knows the log object the session hands down (struct
 * vhu__dirty_log) and never the session.  A page beyond the log's size is
 * refused (-EFAULT: the caller breaks the ring), never written.
 */
#include <errno.h>
#include <time.h>

#include "internal.h"

uint64_t vhu__log_bytes_for(uint64_t end)
{
	uint64_t pages = (end >> VHU__LOG_PAGE_SHIFT) +
			 ((end & ((1u << VHU__LOG_PAGE_SHIFT) - 1)) != 0);
	return pages / 8 + (pages % 8 != 0);
}

static void cache_add(struct vhu_vq *vq, uint64_t word, uint64_t mask)
{
	for (unsigned i = 0; i < vq->log_n; i++) {
		if (vq->log_cache[i].word == word) {
			vq->log_cache[i].mask |= mask;
			return;
		}
	}
	if (vq->log_n == VHU__LOG_CACHE)
		vhu__log_flush(vq);
	vq->log_cache[vq->log_n].word = word;
	vq->log_cache[vq->log_n].mask = mask;
	vq->log_n++;
}

int vhu__log_gpa(struct vhu_vq *vq, uint64_t gpa, uint64_t len)
{
	const struct vhu__dirty_log *log = vq->log;
	if (!log || len == 0)
		return 0;
	if (gpa > UINT64_MAX - (len - 1))
		return -EFAULT;
	uint64_t first = gpa >> VHU__LOG_PAGE_SHIFT;
	uint64_t last = (gpa + (len - 1)) >> VHU__LOG_PAGE_SHIFT;
	/* The last page's byte bounds every other one. */
	if ((last >> 3) >= log->size)
		return -EFAULT;
	for (uint64_t w = first >> 6; w <= last >> 6; w++) {
		unsigned lo = w == first >> 6 ? (unsigned)(first & 63) : 0;
		unsigned hi = w == last >> 6 ? (unsigned)(last & 63) : 63;
		uint64_t mask = (hi == 63 ? ~0ull : (1ull << (hi + 1)) - 1) &
				~((1ull << lo) - 1);
		cache_add(vq, w, mask);
	}
	return 0;
}

int vhu__log_va(struct vhu_vq *vq, const volatile void *p, uint64_t len)
{
	uint64_t gpa;
	if (vhu__mem_va_to_gpa(vq->mem, (const void *)p, len, &gpa) < 0)
		return -EFAULT;
	return vhu__log_gpa(vq, gpa, len);
}

int vhu__log_writable(struct vhu_vq *vq, const struct vhu_vq_elem *elem)
{
	unsigned end = (unsigned)elem->n_out + elem->n_in;
	for (unsigned i = elem->n_out; i < end; i++) {
		const struct iovec *v = &elem->iov[i];
		if (v->iov_len && vhu__log_va(vq, v->iov_base, v->iov_len) < 0)
			return -EFAULT;
	}
	return 0;
}

int vhu__log_used(struct vhu_vq *vq, uint64_t off, uint64_t len)
{
	if (!vq->log_used)
		return 0;
	/* With an IOTLB, log_gpa is an I/O virtual address (QEMU sends the
	 * ring's), not where the guest's page is: log what our pointer to
	 * the ring is in guest-physical terms (the memory table's). */
	if (vq->iotlb)
		return vhu__log_va(vq, (const volatile uint8_t *)vq->used + off,
				   len);
	/* vhost-user.rst: "the write to first byte of the used ring is
	 * logged at this offset from log start"; log_gpa need not be in
	 * the memory table, but the ring's last byte must be in the log. */
	if (vq->log_gpa > UINT64_MAX - off)
		return -EFAULT;
	return vhu__log_gpa(vq, vq->log_gpa + off, len);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void vhu__log_flush(struct vhu_vq *vq)
{
	const struct vhu__dirty_log *log = vq->log;
	if (!log || vq->log_n == 0)
		return;
	/* The writes being logged are visible before their bits: the
	 * front-end copies a page after it sees its bit. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (unsigned i = 0; i < vq->log_n; i++) {
		uint64_t word = vq->log_cache[i].word;
		uint64_t mask = vq->log_cache[i].mask;
		/* Byte by byte: the log's layout is bytes, its offset in the
		 * fd need not be 8-aligned, and its size need not be whole
		 * words.  Every byte here was checked against the size. */
		for (unsigned b = 0; b < 8; b++) {
			uint8_t m = (uint8_t)(mask >> (8 * b));
			if (m)
				__atomic_fetch_or(&log->bits[word * 8 + b], m,
						  __ATOMIC_RELAXED);
		}
	}
	vq->log_n = 0;
	/* A log the front-end truncated: the fault was absorbed (sigbus.c)
	 * and the bits went to anonymous memory it never reads.  The queue
	 * breaks now, in the push that lost them, not at its next pop: a
	 * migration must not go on as if they were logged.  One load while
	 * no fault was ever absorbed. */
	if (__builtin_expect(vhu__guard_gen() != 0, 0) &&
	    vhu__vq_check_lost(vq))
		return;
	if (log->signal_fd >= 0) {
		int64_t t = now_ms();
		if (t != vq->log_signalled_ms) {
			vq->log_signalled_ms = t;
			(void)vhu__eventfd_signal(log->signal_fd);
		}
	}
}
