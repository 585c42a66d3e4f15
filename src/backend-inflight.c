/* SPDX-License-Identifier: MIT */
/*
 * Inflight I/O tracking, the session's side (vhost-user.rst "Inflight I/O
 * tracking", GET_INFLIGHT_FD / SET_INFLIGHT_FD): a shared-memory record of
 * which descriptor heads the device popped and has not completed, kept by
 * the front-end across a back-end restart so the next back-end process can
 * resubmit them instead of losing them.  This file maps the region and
 * points each starting queue at its record; the record itself is ring
 * state (virtq-inflight.c), which checks everything it reads from it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend-internal.h"

static size_t page_round(size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	return (n + pg - 1) / pg * pg;
}

/* ------------------------------------------------ session side */

/* Bytes per queue record in the layout the negotiated features choose. */
static size_t queue_bytes(const struct vhu_backend *b, unsigned qs)
{
	return (b->features & VHU_BIT(VHU_F_RING_PACKED))
		       ? vhu__inflight_queue_bytes_packed(qs)
		       : vhu__inflight_queue_bytes(qs);
}

void vhu__be_inflight_attach(struct vhu_backend *b, struct vhu_vq *vq)
{
	vq->inf = NULL;
	vq->infp = NULL;
	if (!b->inflight_addr || vq->index >= b->inflight_queues) {
		/* Untracked: nothing left over from an earlier start. */
		vhu__inflight_vq_start(vq);
		return;
	}
	/* The record must lie inside the mapping, in this queue's layout
	 * (the features may have changed since the region was set). */
	size_t stride = vq->packed
		? vhu__inflight_queue_bytes_packed(b->inflight_queue_size)
		: vhu__inflight_queue_bytes(b->inflight_queue_size);
	if (vq->size > b->inflight_queue_size ||
	    (vq->index + 1) * stride > b->inflight_size) {
		vhu__warn("queue %u: size %u does not fit the inflight "
			  "record (%u entries, %zu bytes): not tracked",
			  vq->index, vq->size, b->inflight_queue_size,
			  b->inflight_size);
		vhu__inflight_vq_start(vq);
		return;
	}
	void *rec = (uint8_t *)b->inflight_addr + vq->index * stride;
	if (vq->packed)
		vq->infp = rec;
	else
		vq->inf = rec;
	int r = vhu__inflight_vq_start(vq);
	if (r < 0) {
		vhu__err("queue %u: inflight recovery failed: %s", vq->index,
			 strerror(-r));
		vhu__inflight_vq_release(vq);
	}
}

void vhu__be_inflight_drop(struct vhu_backend *b)
{
	for (unsigned i = 0; i < b->num_queues; i++)
		vhu__inflight_vq_release(&b->vqs[i]);
	vhu__guard_del(b->inflight_guard);
	b->inflight_guard = -1;
	vhu__shm_release(b->inflight_addr, b->inflight_size, b->inflight_fd);
	b->inflight_addr = NULL;
	b->inflight_size = 0;
	b->inflight_fd = -1;
	b->inflight_queues = 0;
	b->inflight_queue_size = 0;
}

/* Queues stop before the region changes and start again after it, so
 * the device's thread never sees the pointer move.  Fails, with nothing
 * changed and addr and fd still the caller's, when the region cannot be
 * protected against truncation. */
static int install(struct vhu_backend *b, int fd, void *addr, size_t size,
		   unsigned nq, unsigned qs)
{
	/* A region the front-end sent may be shrunk under us later. */
	int guard = vhu__guard_add(addr, size, 0);
	if (guard < 0) {
		vhu__err("inflight region: cannot be protected against "
			 "truncation: %s", strerror(-guard));
		return guard;
	}
	vhu__be_stop_all(b);
	vhu__be_inflight_drop(b);
	b->inflight_fd = fd;
	b->inflight_addr = addr;
	b->inflight_size = size;
	b->inflight_queues = nq;
	b->inflight_queue_size = qs;
	b->inflight_guard = guard;
	vhu__be_restart_all(b);
	return 0;
}

static bool dims_ok(const struct vhu_backend *b, uint64_t nq, uint64_t qs)
{
	return nq >= 1 && nq <= b->num_queues && qs >= 1 &&
	       qs <= b->max_queue_size && qs <= VHU_MAX_QUEUE_SIZE;
}

/* ------------------------------------------------------- requests */

/*
 * GET_INFLIGHT_FD: the front-end names num_queues and queue_size; we
 * answer with a fresh zeroed memfd (version 0: nothing in flight) and its
 * size, in the layout of the ring the negotiated features chose (QEMU
 * sets the features first).  Impossible dimensions get mmap_size 0 and no fd, which the
 * front-end reads as "no region"; the connection stays.
 */
int vhu__be_get_inflight_fd(struct vhu_backend *b, struct vhu__req *req)
{
	struct vhu_inflight in = req->msg->p.inflight;
	struct vhu_inflight *out = &req->reply->p.inflight;
	uint32_t wire = req->msg->hdr.size;

	/* Answer in the size asked in (20 or 24, checked by the table):
	 * QEMU accepts only its own 24. */
	memset(&req->reply->p, 0, wire);
	req->reply->hdr.size = wire;
	*out = in;
	out->mmap_size = 0;
	out->mmap_offset = 0;
	if (!dims_ok(b, in.num_queues, in.queue_size)) {
		vhu__log_rl(VHU_LOG_WARN, "GET_INFLIGHT_FD: %u queues of %u "
			    "refused", in.num_queues, in.queue_size);
		return 0;
	}
	size_t size = page_round(in.num_queues *
				 queue_bytes(b, in.queue_size));
	/* Sealed: the front-end cannot shrink it under our mapping. */
	void *addr;
	int fd = vhu__memfd_mapped("vhu-inflight", size, &addr);
	if (fd < 0)
		return fd;
	if (install(b, fd, addr, size, in.num_queues, in.queue_size) < 0) {
		/* No region, as for impossible dimensions: the connection
		 * stays and the queues run untracked. */
		vhu__shm_release(addr, size, fd);
		return 0;
	}
	out->mmap_size = size;
	b->reply_fd = fd;
	return 0;
}

/*
 * SET_INFLIGHT_FD: the region a back-end handed out earlier (perhaps a
 * previous process of ours).  It must hold num_queues records of
 * queue_size entries in our layout, inside the file (its real size:
 * fstat, not what the message says).
 */
int vhu__be_set_inflight_fd(struct vhu_backend *b, struct vhu__req *req)
{
	struct vhu_inflight in = req->msg->p.inflight;
	int fd = req->fds[0];
	struct stat st;

	if (!dims_ok(b, in.num_queues, in.queue_size))
		return -EINVAL;
	uint64_t need = (uint64_t)in.num_queues * queue_bytes(b, in.queue_size);
	if (in.mmap_size < need || in.mmap_size > SIZE_MAX ||
	    in.mmap_offset % (uint64_t)sysconf(_SC_PAGESIZE) ||
	    in.mmap_offset > UINT64_MAX - in.mmap_size)
		return -EINVAL;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_size < 0 ||
	    (uint64_t)st.st_size < in.mmap_offset + in.mmap_size)
		return -EINVAL;
	void *addr = mmap(NULL, (size_t)in.mmap_size, PROT_READ | PROT_WRITE,
			  MAP_SHARED, fd, (off_t)in.mmap_offset);
	if (addr == MAP_FAILED)
		return -errno;
	int r = install(b, fd, addr, (size_t)in.mmap_size, in.num_queues,
			in.queue_size);
	if (r < 0) {
		munmap(addr, (size_t)in.mmap_size);
		return r; /* the dispatcher closes fd */
	}
	req->fds[0] = -1;
	return 0;
}
