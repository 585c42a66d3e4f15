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

int vhu_vq_pop(struct vhu_vq *vq, struct vhu_vq_elem *elem, struct iovec *iov,
	       unsigned iov_cap)
{
	if (PACKED(vq))
		return vhu__packed_pop(vq, elem, iov, iov_cap);
	return vhu__split_pop(vq, elem, iov, iov_cap);
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
	/* should_notify also updates the layout's suppression bookkeeping:
	 * it runs even when there is no call fd. */
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
