/* SPDX-License-Identifier: MIT */
/*
 * What the split (virtq-split.c) and packed (virtq-packed.c) rings share
 * once a descriptor is copied and decoded: adding its buffer to the chain
 * being popped (order, length and address checks, translation), and the
 * broken-queue path.
 */
#include <errno.h>

#include "internal.h"

int vhu__chain_add(const struct vhu_vq *vq, struct vhu__chain *c,
		   uint64_t addr, uint32_t len, bool wr)
{
	if (len == 0)
		return 0;
	/* 2.7.4.2, 2.8: device-readable descriptors come before writable
	 * ones. */
	if (!wr && c->seen_write) {
		c->why = "readable descriptor after a writable one";
		return -EIO;
	}
	c->seen_write |= wr;
	c->bytes += len; /* at most (ring + table) * 2^32: no wrap */
	if (c->bytes > VHU__CHAIN_MAX_BYTES) {
		c->why = "chain longer than 4 GiB";
		return -EIO;
	}
	if (addr > UINT64_MAX - len) {
		c->why = "buffer address + length wraps";
		return -EIO;
	}
	if (wr) {
		c->wr_addr = addr;
		c->wr_len = len;
	}
	if (c->overflow)
		return 0;
	uint8_t perm = wr ? VHU_IOTLB_PERM_WO : VHU_IOTLB_PERM_RO;
	int r = vhu__vq_xlate_iov(vq, addr, len, perm, c->iov + c->n,
				  c->cap - c->n, &c->miss_iova);
	if (r == -E2BIG && c->walk_on) {
		c->overflow = true;
		return 0;
	}
	if (r == -E2BIG)
		return r;
	if (r == -ENOENT) {
		/* The front-end is asked; the pop waits for its answer. */
		c->miss_perm = perm;
		return -EAGAIN;
	}
	if (r == -EACCES) {
		/* Never a write into a read-only mapping. */
		c->why = "buffer access the IOTLB permission forbids";
		return -EIO;
	}
	if (r < 0) {
		c->why = "buffer outside guest memory";
		return -EIO;
	}
	c->n += (unsigned)r;
	if (!wr)
		c->n_out += (unsigned)r;
	return 0;
}

int vhu__chain_table(const struct vhu_vq *vq, struct vhu__chain *c,
		     uint64_t addr, uint32_t len, const void **table)
{
	void *p;
	int r = vhu__vq_xlate_ptr(vq, addr, len, VHU_IOTLB_PERM_RO, &p,
				  &c->miss_iova);
	if (r == -ENOENT) {
		c->miss_perm = VHU_IOTLB_PERM_RO;
		return -EAGAIN;
	}
	if (r == -EACCES) {
		c->why = "indirect table access the IOTLB permission forbids";
		return -EIO;
	}
	if (r < 0) {
		c->why = "indirect table outside one region";
		return -EIO;
	}
	*table = p;
	return 0;
}

void vhu__vq_break(struct vhu_vq *vq, const char *why)
{
	if (vq->broken)
		return;
	vq->broken = true;
	vhu__log_rl(VHU_LOG_ERROR, "queue %u: driver broke the %s: %s",
		    vq->index, vq->packed ? "packed ring" : "ring", why);
	/* vhost-user.rst SET_VRING_ERR: tell the front-end. */
	(void)vhu__eventfd_signal(vq->err_fd);
}
