/* SPDX-License-Identifier: MIT */
/*
 * The public virtqueue calls, dispatched to the split (virtq-split.c) or
 * packed (virtq-packed.c) ring layout.  The layout is fixed while a queue
 * is started (it follows VIRTIO_F_RING_PACKED), so the branch below always
 * goes the same way for a queue and costs the split path one predicted
 * branch and a tail jump.
 */
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

int vhu_vq_pop_flags(struct vhu_vq *vq, struct vhu_vq_elem *elem,
		     struct iovec *iov, unsigned iov_cap, unsigned flags)
{
	flags &= VHU_VQ_POP_TRUNCATED;
	if (PACKED(vq))
		return vhu__packed_pop(vq, elem, iov, iov_cap, flags);
	return vhu__split_pop(vq, elem, iov, iov_cap, flags);
}

int vhu_vq_pop(struct vhu_vq *vq, struct vhu_vq_elem *elem, struct iovec *iov,
	       unsigned iov_cap)
{
	return vhu_vq_pop_flags(vq, elem, iov, iov_cap, 0);
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
	    vhu__mem_gpa_to_iov(vq->mem, wr_addr + wr_len - 1, 1, iov, 1) == 1)
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
	if (PACKED(vq))
		vhu__packed_notify(vq);
	else
		vhu__split_notify(vq);
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

bool vhu_vq_enable_notify(struct vhu_vq *vq)
{
	if (PACKED(vq))
		return vhu__packed_enable_notify(vq);
	return vhu__split_enable_notify(vq);
}

bool vhu_vq_has_work(struct vhu_vq *vq)
{
	if (PACKED(vq))
		return vhu__packed_has_work(vq);
	return vhu__split_has_work(vq);
}
