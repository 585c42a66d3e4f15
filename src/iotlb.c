/* SPDX-License-Identifier: MIT */
/*
 * The IOTLB (vhost-user.rst "IOMMU support") and the translation the
 * ring code does through it: see internal.h for what it holds and what a
 * concurrent invalidation guarantees.
 *
 * A sorted array of disjoint entries with binary search: the front-end
 * maps what the guest's IOMMU maps, usually page by page, so lookups
 * dominate and changes are session-thread work.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define LOCK(t) ((pthread_rwlock_t *)(t)->lock)

int vhu__iotlb_init(struct vhu__iotlb *t)
{
	memset(t, 0, sizeof(*t));
	pthread_rwlock_t *l = malloc(sizeof(*l));
	if (!l)
		return -ENOMEM;
	int r = pthread_rwlock_init(l, NULL);
	if (r) {
		free(l);
		return -r;
	}
	t->lock = l;
	return 0;
}

void vhu__iotlb_destroy(struct vhu__iotlb *t)
{
	if (t->lock) {
		pthread_rwlock_destroy(LOCK(t));
		free(t->lock);
	}
	free(t->e);
	memset(t, 0, sizeof(*t));
}

void vhu__iotlb_clear(struct vhu__iotlb *t)
{
	pthread_rwlock_wrlock(LOCK(t));
	t->n = 0;
	pthread_rwlock_unlock(LOCK(t));
}

unsigned vhu__iotlb_count(struct vhu__iotlb *t)
{
	pthread_rwlock_rdlock(LOCK(t));
	unsigned n = t->n;
	pthread_rwlock_unlock(LOCK(t));
	return n;
}

/* Index of the first entry whose iova is greater than a (0..n). */
static unsigned upper_bound(const struct vhu__iotlb *t, uint64_t a)
{
	unsigned lo = 0, hi = t->n;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (t->e[mid].iova <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Room for extra more entries (write lock held). */
static int reserve(struct vhu__iotlb *t, unsigned extra)
{
	if (t->n + extra > VHU__IOTLB_MAX)
		return -ENOSPC;
	if (t->n + extra <= t->cap)
		return 0;
	unsigned cap = t->cap ? t->cap * 2 : 64;
	while (cap < t->n + extra)
		cap *= 2;
	if (cap > VHU__IOTLB_MAX)
		cap = VHU__IOTLB_MAX;
	struct vhu__iotlb_entry *e = realloc(t->e, cap * sizeof(*e));
	if (!e)
		return -ENOMEM;
	t->e = e;
	t->cap = cap;
	return 0;
}

/* Would removing [first, last] split an entry in two? */
static bool needs_split(const struct vhu__iotlb *t, uint64_t first,
			uint64_t last)
{
	unsigned i = upper_bound(t, first);
	return i > 0 && t->e[i - 1].iova < first && t->e[i - 1].last > last;
}

/* Remove [first, last] from the table; room for one more entry (a split)
 * is reserved by the caller. */
static void cut(struct vhu__iotlb *t, uint64_t first, uint64_t last)
{
	unsigned i = upper_bound(t, first);
	if (i > 0 && t->e[i - 1].last >= first)
		i--; /* the entry holding first, if any */
	while (i < t->n && t->e[i].iova <= last) {
		struct vhu__iotlb_entry *e = &t->e[i];
		if (e->iova < first && e->last > last) {
			/* Covered in the middle: keep both ends. */
			struct vhu__iotlb_entry tail = *e;
			tail.uaddr += last + 1 - e->iova;
			tail.iova = last + 1;
			e->last = first - 1;
			memmove(&t->e[i + 2], &t->e[i + 1],
				(t->n - i - 1) * sizeof(*e));
			t->e[i + 1] = tail;
			t->n++;
			return;
		}
		if (e->iova < first) {
			e->last = first - 1; /* keep the head */
			i++;
			continue;
		}
		if (e->last > last) {
			/* keep the tail */
			e->uaddr += last + 1 - e->iova;
			e->iova = last + 1;
			return;
		}
		memmove(&t->e[i], &t->e[i + 1], (t->n - i - 1) * sizeof(*e));
		t->n--;
	}
}

int vhu__iotlb_update(struct vhu__iotlb *t, uint64_t iova, uint64_t size,
		      uint64_t uaddr, uint8_t perm)
{
	if (size == 0 || iova > UINT64_MAX - (size - 1) ||
	    uaddr > UINT64_MAX - (size - 1))
		return -EINVAL;
	if (perm != VHU_IOTLB_PERM_RO && perm != VHU_IOTLB_PERM_WO &&
	    perm != VHU_IOTLB_PERM_RW)
		return -EINVAL;
	uint64_t last = iova + (size - 1);
	pthread_rwlock_wrlock(LOCK(t));
	/* Room for the new entry, and one more when it splits an entry (what
	 * the cut frees is not counted).  The table is a cache of the
	 * front-end's IOMMU: when it is full everything is dropped, which
	 * costs misses (answered again) and nothing else - a ring or a
	 * popped request keeps the pointers it was translated to. */
	unsigned need = 1 + needs_split(t, iova, last);
	int r = reserve(t, need);
	if (r == -ENOSPC) {
		t->n = 0;
		r = reserve(t, 1);
	}
	if (r == 0) {
		cut(t, iova, last);
		unsigned i = upper_bound(t, iova);
		memmove(&t->e[i + 1], &t->e[i], (t->n - i) * sizeof(t->e[0]));
		t->e[i] = (struct vhu__iotlb_entry){
			.iova = iova, .last = last, .uaddr = uaddr, .perm = perm,
		};
		t->n++;
	}
	pthread_rwlock_unlock(LOCK(t));
	return r;
}

int vhu__iotlb_invalidate(struct vhu__iotlb *t, uint64_t iova, uint64_t size)
{
	uint64_t last = size == 0 || iova > UINT64_MAX - (size - 1)
				? UINT64_MAX
				: iova + (size - 1);
	pthread_rwlock_wrlock(LOCK(t));
	/* Only a split needs room; a full table drops the whole entry
	 * instead (a cache: more is forgotten, nothing wrong is kept). */
	int r = needs_split(t, iova, last) ? reserve(t, 1) : 0;
	if (r == -ENOSPC) {
		unsigned i = upper_bound(t, iova);
		memmove(&t->e[i - 1], &t->e[i], (t->n - i) * sizeof(t->e[0]));
		t->n--;
		r = 0;
	}
	if (r == 0)
		cut(t, iova, last);
	pthread_rwlock_unlock(LOCK(t));
	return r;
}

int vhu__iotlb_lookup(struct vhu__iotlb *t, uint64_t iova, uint8_t perm,
		      uint64_t *uaddr, uint64_t *len)
{
	int r = -ENOENT;
	pthread_rwlock_rdlock(LOCK(t));
	unsigned i = upper_bound(t, iova);
	if (i > 0 && t->e[i - 1].last >= iova) {
		const struct vhu__iotlb_entry *e = &t->e[i - 1];
		if ((e->perm & perm) != perm) {
			r = -EACCES;
		} else {
			uint64_t span = e->last - iova; /* bytes - 1 */
			*uaddr = e->uaddr + (iova - e->iova);
			*len = span == UINT64_MAX ? UINT64_MAX : span + 1;
			r = 0;
		}
	}
	pthread_rwlock_unlock(LOCK(t));
	return r;
}

/* ------------------------------------------------ the ring's translation */

int vhu__vq_xlate_iov(const struct vhu_vq *vq, uint64_t addr, uint64_t len,
		      uint8_t perm, struct iovec *iov, unsigned cap,
		      uint64_t *miss)
{
	if (!vq->iotlb)
		return vhu__mem_gpa_to_iov(vq->mem, addr, len, iov, cap);
	if (len == 0)
		return 0;
	if (addr > UINT64_MAX - len)
		return -EFAULT;
	unsigned n = 0;
	while (len > 0) {
		uint64_t uaddr, avail;
		int r = vhu__iotlb_lookup(vq->iotlb, addr, perm, &uaddr, &avail);
		if (r == -ENOENT && miss)
			*miss = addr;
		if (r < 0)
			return r;
		uint64_t chunk = avail < len ? avail : len;
		if (uaddr > UINT64_MAX - chunk)
			return -EFAULT;
		addr += chunk;
		len -= chunk;
		/* One IOTLB entry may cross memory regions. */
		while (chunk > 0) {
			uint8_t *host;
			uint64_t got;
			r = vhu__mem_uva_span(vq->mem, uaddr, chunk, &host, &got);
			if (r < 0)
				return r;
			if (n > 0 && (uint8_t *)iov[n - 1].iov_base +
						 iov[n - 1].iov_len == host &&
			    iov[n - 1].iov_len <= SIZE_MAX - got) {
				iov[n - 1].iov_len += (size_t)got;
			} else {
				if (n >= cap)
					return -E2BIG;
				iov[n].iov_base = host;
				iov[n].iov_len = (size_t)got;
				n++;
			}
			uaddr += got;
			chunk -= got;
		}
	}
	return (int)n;
}

int vhu__vq_xlate_ptr(const struct vhu_vq *vq, uint64_t addr, uint64_t len,
		      uint8_t perm, void **out, uint64_t *miss)
{
	if (!vq->iotlb) {
		*out = vhu__mem_gpa_to_va(vq->mem, addr, len);
		return *out ? 0 : -EFAULT;
	}
	struct iovec v;
	if (len == 0)
		return -EFAULT;
	int r = vhu__vq_xlate_iov(vq, addr, len, perm, &v, 1, miss);
	if (r == -E2BIG || r == 0)
		return -EFAULT; /* not contiguous here */
	if (r < 0)
		return r;
	*out = v.iov_base;
	return 0;
}

void *vhu__vq_xlate_va(const struct vhu_vq *vq, uint64_t addr, uint64_t len,
		       uint8_t perm)
{
	void *p;
	return vhu__vq_xlate_ptr(vq, addr, len, perm, &p, NULL) == 0 ? p : NULL;
}

void *vhu__vq_ring_va(const struct vhu_vq *vq, uint64_t addr, uint64_t len,
		      uint8_t perm)
{
	if (!vq->iotlb)
		return vhu__mem_uva_to_va(vq->mem, addr, len);
	return vhu__vq_xlate_va(vq, addr, len, perm);
}

/*
 * Waiting for a translation.  The queue's thread and the session's meet
 * on two flags, each side writing its part and then reading the other's
 * after a full barrier:
 *   queue:   waiting = 1;  barrier;  look the IOVA up again
 *   session: update the table;  barrier;  if waiting: clear it, kick
 * so either the queue's second look finds the update, or the session
 * finds the queue waiting and kicks it: a wait never outlives the update
 * that ends it.  A miss already reported is not reported again while the
 * queue waits (a driver kicking a waiting queue sends no miss storm).
 */
void vhu__vq_iotlb_wait(struct vhu_vq *vq, uint64_t iova, uint8_t perm)
{
	if (__atomic_load_n(&vq->iotlb_waiting, __ATOMIC_ACQUIRE) &&
	    __atomic_load_n(&vq->iotlb_miss_iova, __ATOMIC_RELAXED) == iova &&
	    __atomic_load_n(&vq->iotlb_miss_perm, __ATOMIC_RELAXED) == perm)
		return;
	__atomic_store_n(&vq->iotlb_miss_iova, iova, __ATOMIC_RELAXED);
	__atomic_store_n(&vq->iotlb_miss_perm, perm, __ATOMIC_RELAXED);
	__atomic_store_n(&vq->iotlb_miss_pending, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&vq->iotlb_waiting, 1, __ATOMIC_SEQ_CST);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint64_t u, l;
	if (vhu__iotlb_lookup(vq->iotlb, iova, perm, &u, &l) == 0) {
		/* The update came in between: look at the ring again. */
		if (__atomic_exchange_n(&vq->iotlb_waiting, 0, __ATOMIC_SEQ_CST))
			(void)vhu__eventfd_signal(vq->kick_fd);
		return;
	}
	(void)vhu__eventfd_signal(vq->iotlb_miss_fd);
}

bool vhu__vq_iotlb_take_miss(struct vhu_vq *vq, uint64_t *iova,
			     uint8_t *perm)
{
	if (!__atomic_exchange_n(&vq->iotlb_miss_pending, 0, __ATOMIC_ACQUIRE))
		return false;
	/* A newer miss may overwrite these meanwhile: at worst the front-end
	 * is asked for one IOVA with the other's access, and the newer miss
	 * is reported on its own (pending set again). */
	*iova = __atomic_load_n(&vq->iotlb_miss_iova, __ATOMIC_RELAXED);
	*perm = __atomic_load_n(&vq->iotlb_miss_perm, __ATOMIC_RELAXED);
	return true;
}

bool vhu__vq_iotlb_resume(struct vhu_vq *vq)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!__atomic_exchange_n(&vq->iotlb_waiting, 0, __ATOMIC_SEQ_CST))
		return false;
	(void)vhu__eventfd_signal(vq->kick_fd);
	return true;
}
