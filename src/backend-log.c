/* SPDX-License-Identifier: MIT */
/*
 * Dirty logging, the session's side (vhost-user.rst "Migration",
 * SET_LOG_BASE, SET_LOG_FD; facts in the project's protocol notes,
 * section 7): map the bitmap the front-end shares, own it, and hand it
 * down to each starting queue (vq->log) while VHOST_F_LOG_ALL is
 * negotiated.  The ring code (virtq-log.c) marks pages in it and never
 * sees this file.
 *
 * Every change a running queue depends on (a new log, the log eventfd,
 * LOG_ALL on or off, a ring's LOG flag) stops the started queues through
 * the device's queue_stopped (which completes everything popped), changes
 * the state and starts them again at the same ring positions: the rings
 * keep running for the front-end, nothing is lost or served twice, and a
 * replaced log is unmapped only once no queue can write to it.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend-internal.h"

void vhu__be_log_attach(struct vhu_backend *b, struct vhu_vq *vq)
{
	bool on = (b->features & VHU_BIT(VHU_F_LOG_ALL)) && b->log.bits;
	vq->log = on ? &b->log : NULL;
	vq->log_used = on && (vq->addr_flags & VHU_VRING_F_LOG);
	vq->log_n = 0;
	if ((b->features & VHU_BIT(VHU_F_LOG_ALL)) && !b->log.bits)
		vhu__log_rl(VHU_LOG_WARN, "queue %u: LOG_ALL negotiated without a log "
			  "(SET_LOG_BASE): nothing can be logged", vq->index);
}

void vhu__be_log_change_begin(struct vhu_backend *b, bool *was)
{
	for (unsigned i = 0; i < b->num_queues; i++)
		was[i] = b->vqs[i].started;
	vhu__be_stop_all(b);
}

void vhu__be_log_change_end(struct vhu_backend *b, const bool *was)
{
	for (unsigned i = 0; i < b->num_queues; i++)
		if (was[i])
			vhu__be_vq_resume(b, &b->vqs[i]);
}

void vhu__be_log_drop(struct vhu_backend *b)
{
	for (unsigned i = 0; i < b->num_queues; i++)
		b->vqs[i].log = NULL;
	vhu__guard_del(b->log_guard);
	b->log_guard = -1;
	vhu__shm_release(b->log_map, b->log_map_size, b->log.signal_fd);
	b->log_map = NULL;
	b->log_map_size = 0;
	b->log.bits = NULL;
	b->log.size = 0;
	b->log.signal_fd = -1;
}

/* Bytes of log the memory table needs: a bit per page up to the end of
 * the highest region. */
static uint64_t log_bytes_needed(const struct vhu__mem *m)
{
	uint64_t end = 0;
	for (unsigned i = 0; i < m->n; i++)
		if (m->r[i].gpa + m->r[i].size > end)
			end = m->r[i].gpa + m->r[i].size; /* checked at add */
	return vhu__log_bytes_for(end);
}

static int map_log(struct vhu_backend *b, struct vhu__req *req)
{
	uint64_t size = req->msg->p.log.mmap_size;
	uint64_t off = req->msg->p.log.mmap_offset;
	int fd = req->fds[0];
	struct stat st;

	if (size == 0) {
		vhu__err("SET_LOG_BASE: empty log");
		return -EINVAL;
	}
	if (off > UINT64_MAX - size) {
		vhu__err("SET_LOG_BASE: offset + size overflows");
		return -EINVAL;
	}
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_size < 0 || off + size > (uint64_t)st.st_size) {
		vhu__err("SET_LOG_BASE: %llu bytes at %llu beyond the fd's %lld",
			 (unsigned long long)size, (unsigned long long)off,
			 (long long)st.st_size);
		return -EINVAL;
	}
	uint64_t need = log_bytes_needed(&b->mem);
	if (size < need) {
		vhu__err("SET_LOG_BASE: %llu bytes cannot cover guest memory "
			 "(%llu needed)", (unsigned long long)size,
			 (unsigned long long)need);
		return -ENOSPC;
	}
	uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t aoff = off & ~(pg - 1), len = size + (off - aoff);
	if (len > SIZE_MAX)
		return -EINVAL;
	void *map = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED,
			 fd, (off_t)aoff);
	if (map == MAP_FAILED)
		return -errno;
	/* A log the front-end sent may be shrunk under us later: without
	 * the SIGBUS guard over it, it is not used (the old one stays). */
	int guard = vhu__guard_add(map, (size_t)len, 0);
	if (guard < 0) {
		vhu__err("SET_LOG_BASE: the log cannot be protected against "
			 "truncation: %s", strerror(-guard));
		munmap(map, (size_t)len);
		return guard;
	}

	/* Switch, then release the old log: no queue writes to it then. */
	bool was[VHU_BACKEND_MAX_QUEUES];
	vhu__be_log_change_begin(b, was);
	void *old = b->log_map;
	size_t old_size = b->log_map_size;
	int old_guard = b->log_guard;
	b->log_guard = guard;
	b->log_map = map;
	b->log_map_size = (size_t)len;
	b->log.bits = (uint8_t *)map + (off - aoff);
	b->log.size = size;
	vhu__be_log_change_end(b, was);
	vhu__guard_del(old_guard);
	if (old)
		munmap(old, old_size);
	vhu__info("dirty log: %llu bytes (guest memory up to %llu MiB)",
		  (unsigned long long)size,
		  (unsigned long long)(size >> 5));
	return 0;
}

int vhu__be_set_log_base(struct vhu_backend *b, struct vhu__req *req)
{
	int r = map_log(b, req);
	if (r < 0) {
		/* A front-end that asked for an ack gets a failing one and
		 * keeps its session and its old log; one that did not (QEMU)
		 * would take any reply for success and migrate with bits
		 * missing, so it is disconnected instead. */
		req->soft_fail = (b->protocol & VHU_BIT(VHU_PF_REPLY_ACK)) &&
				 vhu__msg_need_reply(req->msg);
		return r;
	}
	/* vhost-user.rst: with LOG_SHMFD the front-end waits for a reply
	 * (QEMU checks only its request id); a u64 0 like REPLY_ACK's. */
	req->reply->hdr.size = sizeof(uint64_t);
	req->reply->p.u64 = 0;
	return 0;
}

int vhu__be_set_log_fd(struct vhu_backend *b, struct vhu__req *req)
{
	/* vhost-user.rst: "an optional message with an eventfd"; without
	 * one, nothing is signalled. */
	int fd = req->nfds ? req->fds[0] : -1;
	bool was[VHU_BACKEND_MAX_QUEUES];

	vhu__be_log_change_begin(b, was);
	if (b->log.signal_fd >= 0)
		close(b->log.signal_fd);
	b->log.signal_fd = fd;
	if (req->nfds)
		req->fds[0] = -1;
	vhu__be_log_change_end(b, was);
	return 0;
}
