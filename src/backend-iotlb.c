/* SPDX-License-Identifier: MIT */
/*
 * ACCESS_PLATFORM, the session's side (vhost-user.rst "IOMMU support"):
 * IOTLB_MSG updates and invalidates the session's IOTLB (iotlb.c), which
 * the queues translate every ring and buffer address through while the
 * feature is negotiated; a ring that cannot be mapped yet asks the
 * front-end for the missing translations (BACKEND_IOTLB_MSG miss) and
 * starts when an update brings them.
 *
 * A pop that misses a buffer's or an indirect table's translation takes
 * nothing and leaves the queue waiting (iotlb.c): the queue signals the
 * session's miss eventfd, the session sends the miss, and the update
 * that answers it kicks every waiting queue.  Other queues, the session
 * and the control socket never wait for a front-end that does not
 * answer; that queue stalls until a disconnect resets it.
 *
 * What is not done yet: an invalidation does not reach requests already
 * popped (their buffers stay inside the memory table's regions) nor the
 * ring pointers of a started queue (see docs/api.md).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "backend-internal.h"

struct vhu__iotlb *vhu__be_vq_iotlb(struct vhu_backend *b)
{
	return (b->features & VHU_BIT(VHU_F_ACCESS_PLATFORM)) ? &b->iotlb
							     : NULL;
}

void vhu__be_iotlb_attach(struct vhu_backend *b, struct vhu_vq *vq)
{
	vq->iotlb = vhu__be_vq_iotlb(b);
	vq->iotlb_miss_fd = b->iotlb_miss_fd;
	/* Stopped: the device pops again from where the ring stands. */
	__atomic_store_n(&vq->iotlb_waiting, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&vq->iotlb_miss_pending, 0, __ATOMIC_SEQ_CST);
}

static int send_miss(struct vhu_backend *b, uint64_t iova, uint8_t perm)
{
	if (b->chan_fd < 0)
		return -ENOTCONN;
	struct vhu_msg msg = {
		.hdr = {
			.request = VHU_BREQ_IOTLB_MSG,
			.flags = VHU_MSG_VERSION,
			.size = sizeof(struct vhu_iotlb_msg),
		},
	};
	msg.p.iotlb = (struct vhu_iotlb_msg){
		.iova = iova,
		.perm = perm,
		.type = VHU_IOTLB_MISS,
	};
	vhu__debug("IOTLB miss: iova 0x%llx perm %u", (unsigned long long)iova,
		   perm);
	int r = vhu__sock_send(b->chan_fd, &msg, NULL, 0);
	if (r < 0) {
		vhu__err("sending BACKEND_IOTLB_MSG: %s", strerror(-r));
		vhu__be_close_channel(b, r);
	}
	return r;
}

/* Ask for the first byte of [iova, iova + len) the IOTLB has no
 * translation of: true when there was one.  (A translation that lacks
 * perm is not asked for again: the ring stays unmapped.) */
static bool ask_range(struct vhu_backend *b, uint64_t iova, uint64_t len,
		      uint8_t perm)
{
	while (len > 0) {
		uint64_t uaddr, got;
		int r = vhu__iotlb_lookup(&b->iotlb, iova, perm, &uaddr, &got);
		if (r == -ENOENT) {
			(void)send_miss(b, iova, perm);
			return true;
		}
		if (r < 0 || got >= len || iova > UINT64_MAX - got)
			return false;
		iova += got;
		len -= got;
	}
	return false;
}

void vhu__be_iotlb_misses(struct vhu_backend *b)
{
	uint64_t n;
	while (read(b->iotlb_miss_fd, &n, sizeof(n)) == (ssize_t)sizeof(n))
		;
	for (unsigned i = 0; i < b->num_queues; i++) {
		struct vhu_vq *vq = &b->vqs[i];
		uint64_t iova;
		uint8_t perm;
		if (vq->started && vhu__vq_iotlb_take_miss(vq, &iova, &perm))
			(void)send_miss(b, iova, perm);
	}
}

bool vhu__be_iotlb_ring_miss(struct vhu_backend *b, struct vhu_vq *vq)
{
	uint64_t d, a, u;
	if (vq->packed) {
		d = vhu__packed_ring_bytes(vq->size);
		a = VHU__PEVENT_BYTES;
		u = VHU__PEVENT_BYTES;
	} else {
		d = vhu__vring_desc_bytes(vq->size);
		a = vhu__vring_avail_bytes(vq->size);
		u = vhu__vring_used_bytes(vq->size);
	}
	/* The permissions the ring code asks for (virtq-split.c,
	 * virtq-packed.c). */
	bool miss = ask_range(b, vq->desc_uva, d,
			      vq->packed ? VHU_IOTLB_PERM_RW
					 : VHU_IOTLB_PERM_RO);
	miss |= ask_range(b, vq->avail_uva, a, VHU_IOTLB_PERM_RO);
	miss |= ask_range(b, vq->used_uva, u, VHU_IOTLB_PERM_WO);
	return miss;
}

int vhu__be_iotlb_msg(struct vhu_backend *b, struct vhu__req *req)
{
	struct vhu_iotlb_msg m;
	memcpy(&m, &req->msg->p.iotlb, sizeof(m));
	/* A refusal is answered (u64 1), the connection stays. */
	req->soft_fail = true;
	if (!(b->features & VHU_BIT(VHU_F_ACCESS_PLATFORM))) {
		vhu__log_rl(VHU_LOG_WARN, "IOTLB_MSG without ACCESS_PLATFORM "
			    "negotiated: refused");
		return -EPROTO;
	}
	int r;
	switch (m.type) {
	case VHU_IOTLB_UPDATE:
		r = vhu__iotlb_update(&b->iotlb, m.iova, m.size, m.uaddr,
				      m.perm);
		if (r < 0) {
			vhu__log_rl(VHU_LOG_WARN, "IOTLB_MSG update iova 0x%llx "
				    "size 0x%llx perm %u: %s",
				    (unsigned long long)m.iova,
				    (unsigned long long)m.size, m.perm,
				    r == -EINVAL ? "size 0, a range that wraps "
						   "or a bad permission"
						 : strerror(-r));
			return r;
		}
		/* Queues waiting for a translation look again (iotlb.c:
		 * after the table changed, before anything else). */
		for (unsigned i = 0; i < b->num_queues; i++)
			if (b->vqs[i].started)
				(void)vhu__vq_iotlb_resume(&b->vqs[i]);
		/* Rings that could not map for want of a translation may
		 * map now (QEMU pushes each used ring at start and answers
		 * misses for the rest). */
		for (unsigned i = 0; i < b->num_queues; i++) {
			struct vhu_vq *vq = &b->vqs[i];
			if (vq->started || vq->desc || !vq->addr_set ||
			    !vq->size)
				continue;
			if (vhu__be_vq_remap(b, vq) == 0)
				vhu__be_vq_try_start(b, vq);
		}
		break;
	case VHU_IOTLB_INVALIDATE:
		r = vhu__iotlb_invalidate(&b->iotlb, m.iova, m.size);
		if (r < 0) {
			vhu__log_rl(VHU_LOG_WARN, "IOTLB_MSG invalidate iova "
				    "0x%llx size 0x%llx: %s",
				    (unsigned long long)m.iova,
				    (unsigned long long)m.size, strerror(-r));
			return r;
		}
		break;
	default:
		/* MISS and ACCESS_FAIL go from the back-end, never to it. */
		vhu__log_rl(VHU_LOG_WARN, "IOTLB_MSG type %u: only update (2) "
			    "and invalidate (3) are requests: refused", m.type);
		return -EINVAL;
	}
	return vhu__be_reply_u64(req, 0);
}
