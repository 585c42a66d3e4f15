/* SPDX-License-Identifier: MIT */
/*
 * The public virtqueue calls, dispatched to the split (virtq-split.c) or
 * packed (virtq-packed.c) ring layout.  The layout is fixed while a queue
 * is started (it follows VIRTIO_F_RING_PACKED), so the branch below always
 * goes the same way for a queue and costs the split path one predicted
 * branch and a tail jump.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

#define PACKED(vq) __builtin_expect((vq)->packed, 0)

/* virtio 1.2, 2.8.1: both ring wrap counters start at 1. */
static void packed_initial(struct vhu_vq *vq)
{
	vq->pk_avail_wrap = true;
	vq->pk_used_wrap = true;
}

void vhu__vq_init(struct vhu_vq *vq, unsigned index, const struct vhu__mem *mem)
{
	vhu__split_init(vq, index, mem);
	packed_initial(vq);
}

int vhu__vq_map(struct vhu_vq *vq)
{
	if (vq->packed)
		return vhu__packed_map(vq);
	return vhu__split_map(vq);
}

void vhu__vq_reset(struct vhu_vq *vq)
{
	vhu__packed_release(vq);
	vhu__split_reset(vq);
	packed_initial(vq);
}

/* Does the queue depend on memory lost to a shrunk file (sigbus.c)?  One
 * load while no fault was ever absorbed; afterwards the ring areas are
 * looked up again only when another fault happened. */
static bool mem_lost(struct vhu_vq *vq)
{
	unsigned gen = vhu__guard_gen();
	if (__builtin_expect(gen == 0, 1))
		return false;
	bool lost = vhu__guard_take_thread_fault();
	if (gen != vq->guard_seen) {
		vq->guard_seen = gen;
		size_t d, a, u;
		if (vq->packed) {
			d = vhu__packed_ring_bytes(vq->size);
			a = u = VHU__PEVENT_BYTES;
		} else {
			d = vhu__vring_desc_bytes(vq->size);
			a = vhu__vring_avail_bytes(vq->size);
			u = vhu__vring_used_bytes(vq->size);
		}
		lost |= vhu__guard_lost(vq->desc, d) ||
			vhu__guard_lost((const void *)vq->avail, a) ||
			vhu__guard_lost((const void *)vq->used, u);
		if (vq->inf)
			lost |= vhu__guard_lost(vq->inf,
						vhu__inflight_queue_bytes(vq->size));
		if (vq->infp)
			lost |= vhu__guard_lost(vq->infp,
						vhu__inflight_queue_bytes_packed(vq->size));
		/* Bits written into a lost log reach nobody: the front-end
		 * would migrate without the pages they mark. */
		if (vq->log)
			lost |= vhu__guard_lost(vq->log->bits, vq->log->size);
	}
	return lost;
}

static int break_lost(struct vhu_vq *vq)
{
	if (!vq->broken) {
		vq->broken = true;
		vhu__log_rl(VHU_LOG_ERROR, "queue %u: shared memory it uses "
			    "(rings, buffers, inflight record or dirty log) was "
			    "truncated by the front-end: queue stopped",
			    vq->index);
		(void)vhu__eventfd_signal(vq->err_fd);
	}
	return -EIO;
}

bool vhu__vq_check_lost(struct vhu_vq *vq)
{
	if (!mem_lost(vq))
		return false;
	break_lost(vq);
	return true;
}

int vhu_vq_pop_flags(struct vhu_vq *vq, struct vhu_vq_elem *elem,
		     struct iovec *iov, unsigned iov_cap, unsigned flags)
{
	int r;

	flags &= VHU_VQ_POP_TRUNCATED | VHU_VQ_POP_NO_REARM | VHU_VQ_POP_PARTIAL;
	if (flags & VHU_VQ_POP_PARTIAL)
		flags &= ~VHU_VQ_POP_TRUNCATED;
	if (mem_lost(vq))
		return break_lost(vq);
	r = PACKED(vq) ? vhu__packed_pop(vq, elem, iov, iov_cap, flags)
		       : vhu__split_pop(vq, elem, iov, iov_cap, flags);
	/* The walk itself may have faulted: what it read is zeros. */
	if (mem_lost(vq))
		return break_lost(vq);
	return r;
}

int vhu_vq_pop(struct vhu_vq *vq, struct vhu_vq_elem *elem, struct iovec *iov,
	       unsigned iov_cap)
{
	return vhu_vq_pop_flags(vq, elem, iov, iov_cap, 0);
}

void vhu__vq_partial(const struct vhu_vq *vq, struct vhu_vq_elem *elem,
		     uint16_t id, const struct vhu__chain *c)
{
	vhu__log_rl(VHU_LOG_WARN, "queue %u: request %u needs more than %u "
		    "buffers; handed to the device cut to %u", vq->index, id,
		    c->cap, c->n);
	elem->id = id;
	elem->n_out = (uint16_t)c->n_out;
	elem->n_in = (uint16_t)(c->n - c->n_out);
	elem->flags = VHU_VQ_ELEM_F_TRUNCATED;
	elem->iov = c->iov;
}

void vhu__vq_truncated(const struct vhu_vq *vq, struct vhu_vq_elem *elem,
		       uint16_t id, struct iovec *iov, unsigned iov_cap,
		       uint64_t wr_addr, uint32_t wr_len)
{
	vhu__log_rl(VHU_LOG_WARN, "queue %u: request %u needs more than %u "
		    "buffers; handed to the device truncated", vq->index, id,
		    iov_cap);
	elem->id = id;
	elem->n_out = 0;
	elem->n_in = 0;
	elem->flags = VHU_VQ_ELEM_F_TRUNCATED;
	elem->iov = iov;
	/* The walk checked the range (or, past the overflow, its bounds):
	 * a byte that still does not map is simply not offered. */
	if (wr_len && iov_cap &&
	    vhu__vq_xlate_iov(vq, wr_addr + wr_len - 1, 1, VHU_IOTLB_PERM_WO,
			      iov, 1, NULL) == 1)
		elem->n_in = 1;
}

void vhu_vq_push(struct vhu_vq *vq, const struct vhu_vq_elem *elem,
		 uint32_t written)
{
	if (PACKED(vq))
		vhu__packed_push(vq, elem, written);
	else
		vhu__split_push(vq, elem, written);
}

void vhu_vq_notify(struct vhu_vq *vq)
{
	/* A broken or unmapped queue tells the driver nothing.
	 * should_notify also updates the layout's suppression bookkeeping:
	 * it runs even when there is no call fd. */
	if (vq->broken || !vq->desc || !vq->avail || !vq->used)
		return;
	bool notify = PACKED(vq) ? vhu__packed_should_notify(vq)
				 : vhu__split_should_notify(vq);
	if (notify && vq->call_fd >= 0)
		(void)vhu__eventfd_signal(vq->call_fd);
}

void vhu_vq_push_notify(struct vhu_vq *vq, const struct vhu_vq_elem *elem,
			uint32_t written)
{
	vhu_vq_push(vq, elem, written);
	vhu_vq_notify(vq);
}

void vhu_vq_disable_notify(struct vhu_vq *vq)
{
	if (PACKED(vq))
		vhu__packed_disable_notify(vq);
	else
		vhu__split_disable_notify(vq);
}

/* A queue waiting for a translation has nothing to pop until the
 * session kicks it (iotlb.c): the device sleeps instead of spinning. */
static bool iotlb_waiting(const struct vhu_vq *vq)
{
	return __builtin_expect(vq->iotlb != NULL, 0) &&
	       __atomic_load_n(&vq->iotlb_waiting, __ATOMIC_ACQUIRE);
}

bool vhu_vq_enable_notify(struct vhu_vq *vq)
{
	bool more = PACKED(vq) ? vhu__packed_enable_notify(vq)
			       : vhu__split_enable_notify(vq);
	return more && !iotlb_waiting(vq);
}

bool vhu_vq_has_work(struct vhu_vq *vq)
{
	if (iotlb_waiting(vq))
		return false;
	if (PACKED(vq))
		return vhu__packed_has_work(vq);
	return vhu__split_has_work(vq);
}
