/* SPDX-License-Identifier: MIT */
/*
 * Vring messages (SET_VRING_NUM/ADDR/BASE, GET_VRING_BASE,
 * SET_VRING_KICK/CALL/ERR, SET_VRING_ENABLE) and the queue life cycle
 * (vhost-user.rst "Ring states"): a queue is handed to the device when it
 * has a size, mapped rings, a kick (fd or polling) and is enabled.  Any
 * change to a started queue first takes it back from the device, so the
 * device's thread never sees a queue change under it.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "backend-internal.h"

static void unwatch_kick(struct vhu_backend *b, struct vhu_vq *vq)
{
	if (b->kick_watched[vq->index]) {
		vhu__be_epoll_del(b, vq->kick_fd);
		b->kick_watched[vq->index] = false;
	}
}

int vhu__be_vq_remap(struct vhu_backend *b, struct vhu_vq *vq)
{
	vq->desc = NULL;
	vq->avail = NULL;
	vq->used = NULL;
	/* The layout follows the negotiated features (virtio 1.2, 2.8). */
	vq->packed = (b->features & VHU_BIT(VHU_F_RING_PACKED)) != 0;
	vhu__be_iotlb_attach(b, vq);
	if (!vq->addr_set || !vq->size || b->mem.n == 0)
		return 0;
	int r = vhu__vq_map(vq);
	/* Rings behind an IOMMU wait for their translations. */
	if (r == -EFAULT && vq->iotlb && vhu__be_iotlb_ring_miss(b, vq))
		r = 0;
	if (r < 0) {
		vq->desc = NULL;
		vq->avail = NULL;
		vq->used = NULL;
	}
	return r;
}

void vhu__be_vq_try_start(struct vhu_backend *b, struct vhu_vq *vq)
{
	if (vq->started)
		return;
	/* "If VHOST_USER_F_PROTOCOL_FEATURES has not been negotiated, the
	 * ring starts directly in the enabled state." */
	if (!(b->features & VHU_BIT(VHU_F_PROTOCOL_FEATURES)))
		vq->enabled = true;
	/* Features changed the ring layout since the rings were mapped. */
	if (vq->packed != ((b->features & VHU_BIT(VHU_F_RING_PACKED)) != 0) ||
	    vq->iotlb != vhu__be_vq_iotlb(b))
		vhu__be_vq_remap(b, vq);
	if (!vq->size || !vq->addr_set || !vq->desc || !vq->kick_set ||
	    !vq->enabled)
		return;
	vq->event_idx = (b->features & VHU_BIT(VHU_F_EVENT_IDX)) != 0;
	vq->indirect = (b->features & VHU_BIT(VHU_F_INDIRECT_DESC)) != 0;
	if (b->ops.queue_kick && vq->kick_fd >= 0) {
		int r = vhu__be_epoll_add(b, vq->kick_fd, VHU__SRC_KICK, vq->index);
		if (r < 0) {
			vhu__err("queue %u: cannot watch its kick fd: %s",
				 vq->index, strerror(-r));
			return;
		}
		b->kick_watched[vq->index] = true;
	}
	/* The ring may hold a previous session's suppression state (used
	 * flags NO_NOTIFY or a stale avail_event): ask for kicks afresh. */
	vhu__be_inflight_attach(b, vq);
	vhu__be_log_attach(b, vq);
	/* A queue that took over a record may follow a back-end that died
	 * between publishing used entries and signalling them, or that
	 * signalled a call fd the front-end has since torn down (QEMU
	 * replaces it when it restarts the device): the driver would wait
	 * for an interrupt that never comes.  One interrupt per such start;
	 * a spurious one only makes the driver look at its used ring. */
	if (vq->inf_resumed && vq->call_fd >= 0)
		(void)vhu__eventfd_signal(vq->call_fd);
	bool pending = vhu_vq_enable_notify(vq) || vhu_vq_has_work(vq) ||
		       vq->inf_pos < vq->inf_n;
	vq->started = true;
	vhu__debug("queue %u started (size %u)", vq->index, vq->size);
	if (b->ops.queue_started)
		b->ops.queue_started(b->opaque, vq);
	/* Requests made before the start produce no further kick: serve
	 * them now when the library is the one watching kicks. */
	if (pending && b->ops.queue_kick && b->kick_watched[vq->index])
		b->ops.queue_kick(b->opaque, vq);
}

/* A stop in two halves: stop_begin tells the device (it may start
 * winding the queue down, without waiting), stop_end takes the queue back
 * (queue_stopped waits until the device is done with it).  Stopping
 * several queues begins them all before ending any, so the device's
 * waits overlap. */
static void stop_begin(struct vhu_backend *b, struct vhu_vq *vq)
{
	if (vq->started && b->ops.queue_stop_begin)
		b->ops.queue_stop_begin(b->opaque, vq);
}

static void stop_end(struct vhu_backend *b, struct vhu_vq *vq)
{
	if (!vq->started)
		return;
	unwatch_kick(b, vq);
	if (b->ops.queue_stopped)
		b->ops.queue_stopped(b->opaque, vq);
	vq->started = false;
	vhu__debug("queue %u stopped", vq->index);
}

void vhu__be_vq_stop(struct vhu_backend *b, struct vhu_vq *vq)
{
	stop_begin(b, vq);
	stop_end(b, vq);
}

void vhu__be_vq_pause(struct vhu_backend *b, struct vhu_vq *vq)
{
	if (!vq->started)
		return;
	vq->restarting = true;
	vhu__be_vq_stop(b, vq);
}

void vhu__be_vq_resume(struct vhu_backend *b, struct vhu_vq *vq)
{
	vhu__be_vq_try_start(b, vq);
	bool failed = vq->restarting && !vq->started;
	if (failed)
		vhu__warn("queue %u: could not start again after a change: "
			  "stopped", vq->index);
	vq->restarting = false;
	/* The device was told of a stop to restart: tell it the queue stays
	 * stopped, or it keeps what it holds for running rings. */
	if (failed && b->ops.queue_restart_failed)
		b->ops.queue_restart_failed(b->opaque, vq);
}

bool vhu_vq_is_restarting(const struct vhu_vq *vq)
{
	return vq->restarting;
}

void vhu__be_stop_all(struct vhu_backend *b)
{
	/* Every queue is told first: a device that waits in queue_stopped
	 * (vhu-blk, for storage that is slow to answer) then waits once for
	 * all of them, not once per queue. */
	for (unsigned i = 0; i < b->num_queues; i++) {
		struct vhu_vq *vq = &b->vqs[i];
		if (!vq->started)
			continue;
		vq->restarting = true;
		stop_begin(b, vq);
	}
	for (unsigned i = 0; i < b->num_queues; i++)
		stop_end(b, &b->vqs[i]);
}

void vhu__be_restart_all(struct vhu_backend *b)
{
	for (unsigned i = 0; i < b->num_queues; i++) {
		struct vhu_vq *vq = &b->vqs[i];
		int r = vhu__be_vq_remap(b, vq);
		if (r < 0)
			vhu__warn("queue %u: rings no longer mapped: %s", i,
				  strerror(-r));
		vhu__be_vq_resume(b, vq);
	}
}

void vhu__be_reset_rings(struct vhu_backend *b)
{
	/* As vhu__be_stop_all: every stop begins before the first ends. */
	for (unsigned i = 0; i < b->num_queues; i++)
		stop_begin(b, &b->vqs[i]);
	for (unsigned i = 0; i < b->num_queues; i++) {
		stop_end(b, &b->vqs[i]);
		vhu__vq_reset(&b->vqs[i]);
	}
}

void vhu__be_kick(struct vhu_backend *b, unsigned idx)
{
	if (idx >= b->num_queues)
		return;
	struct vhu_vq *vq = &b->vqs[idx];
	if (!vq->started || !b->kick_watched[idx] || !b->ops.queue_kick)
		return;
	/* The event may be stale (fd replaced this round): only read what
	 * is there now, never block. */
	struct pollfd p = { .fd = vq->kick_fd, .events = POLLIN };
	if (poll(&p, 1, 0) <= 0)
		return;
	uint64_t v;
	ssize_t n = read(vq->kick_fd, &v, sizeof(v));
	if (n != (ssize_t)sizeof(v)) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		/* Not an eventfd, or at its end: stop watching rather than
		 * spin on a descriptor that stays readable. */
		vhu__log_rl(VHU_LOG_WARN, "queue %u: kick fd unreadable, no "
			    "longer watched", idx);
		unwatch_kick(b, vq);
		return;
	}
	b->ops.queue_kick(b->opaque, vq);
}

/* ---- handlers (input already validated by msg.c) ---- */

/* After a size or position change: map the rings again when they can
 * be (their address may come later) and start the queue if it is ready. */
static int remap_and_try_start(struct vhu_backend *b, struct vhu_vq *vq)
{
	int r = vhu__be_vq_remap(b, vq);
	if (r < 0)
		vhu__debug("queue %u: rings not mapped yet: %s", vq->index,
			   strerror(-r));
	vhu__be_vq_try_start(b, vq);
	return 0;
}

int vhu__be_set_vring_num(struct vhu_backend *b, struct vhu__req *req)
{
	struct vhu_vq *vq = &b->vqs[req->ring];
	uint32_t num = req->msg->p.state.num;

	/* virtio 1.2, 2.7: split queue size is a power of 2, at most 32768;
	 * 2.8: a packed one need not be. */
	bool packed = (b->features & VHU_BIT(VHU_F_RING_PACKED)) != 0;
	if (num == 0 || num > b->max_queue_size ||
	    (!packed && (num & (num - 1)) != 0))
		return -EINVAL;
	vhu__be_vq_stop(b, vq);
	vq->size = (uint16_t)num; /* <= 32768 */
	return remap_and_try_start(b, vq);
}

int vhu__be_set_vring_addr(struct vhu_backend *b, struct vhu__req *req)
{
	const struct vhu_vring_addr *a = &req->msg->p.addr;
	struct vhu_vq *vq = &b->vqs[req->ring];

	/* A running ring is stopped (everything popped completes) and
	 * started again at the same positions: turning its LOG flag on or
	 * off (vhost-user.rst "Migration") loses and repeats nothing. */
	vhu__be_vq_pause(b, vq);
	vq->addr_flags = a->flags;
	vq->desc_uva = a->desc_user_addr;
	vq->avail_uva = a->avail_user_addr;
	vq->used_uva = a->used_user_addr;
	vq->log_gpa = a->log_guest_addr;
	vq->addr_set = true;
	int r = vhu__be_vq_remap(b, vq);
	if (r < 0) {
		/* Rings outside the memory the front-end gave us. */
		vq->addr_set = false;
		vhu__be_vq_resume(b, vq);
		return r;
	}
	vhu__be_vq_resume(b, vq);
	return 0;
}

int vhu__be_set_vring_base(struct vhu_backend *b, struct vhu__req *req)
{
	struct vhu_vq *vq = &b->vqs[req->ring];
	uint32_t num = req->msg->p.state.num;

	bool packed = (b->features & VHU_BIT(VHU_F_RING_PACKED)) != 0;

	/* Split rings use bits 0-15 only. */
	if (!packed && num > 0xffff)
		return -EINVAL;
	vhu__be_vq_stop(b, vq);
	if (packed) {
		/* Positions and wrap counters (checked against the size
		 * when the ring is mapped). */
		vhu__packed_set_base(vq, num);
		return remap_and_try_start(b, vq);
	}
	vq->last_avail_idx = (uint16_t)num;
	vq->shadow_avail_idx = (uint16_t)num;
	vq->used_idx = (uint16_t)num;
	vq->signalled_used_valid = false;
	vq->inflight = 0;
	vhu__be_vq_try_start(b, vq);
	return 0;
}

int vhu__be_get_vring_base(struct vhu_backend *b, struct vhu__req *req)
{
	struct vhu_vq *vq = &b->vqs[req->ring];

	/* vhost-user.rst: GET_VRING_BASE stops the ring; the device has
	 * pushed back what it popped once queue_stopped returns. */
	vhu__be_vq_stop(b, vq);
	/* Project notes, section 7: the front-end migrates this position
	 * only; anything still in flight would be lost. */
	if (vq->inflight)
		vhu__err("queue %u: stopped with %u request%s still in flight",
			 vq->index, vq->inflight, vq->inflight == 1 ? "" : "s");
	req->reply->hdr.size = sizeof(struct vhu_vring_state);
	req->reply->p.state.index = vq->index;
	req->reply->p.state.num = vq->packed ? vhu__packed_get_base(vq)
					     : vq->last_avail_idx;
	/* The kick fd of a stopped ring is dropped; a restart sends a new
	 * SET_VRING_KICK. */
	if (vq->kick_fd >= 0)
		close(vq->kick_fd);
	vq->kick_fd = -1;
	vq->kick_set = false;
	return 0;
}

/* Install fd (or "none") in *slot, closing what was there. */
static void replace_fd(int *slot, int fd)
{
	if (*slot >= 0)
		close(*slot);
	*slot = fd;
}

static int take_u64_fd(struct vhu__req *req)
{
	if (req->msg->p.u64 & VHU_VRING_NOFD)
		return -1;
	int fd = req->fds[0];
	req->fds[0] = -1;
	return fd;
}

int vhu__be_set_vring_kick(struct vhu_backend *b, struct vhu__req *req)
{
	struct vhu_vq *vq = &b->vqs[req->ring];

	vhu__be_vq_pause(b, vq);
	/* Bit 8: no fd, the device polls the ring instead. */
	replace_fd(&vq->kick_fd, take_u64_fd(req));
	vq->kick_set = true;
	vhu__be_vq_resume(b, vq);
	return 0;
}

/* The device signals call_fd and err_fd from its own thread: swap one
 * only while the queue is stopped, and restart it if it was started.
 * A new call fd is signalled once, before the queue runs again (as
 * libvhost-user does): the device may have signalled the old one for
 * used entries the driver has not seen, and an interrupt that went to a
 * torn-down fd (a reconnect, QEMU switching between its masked notifier
 * and the irqfd) would leave the driver waiting for ever.  The stop
 * completed and signalled what the device popped, so everything used so
 * far is covered.  A spurious interrupt only makes the driver look at its
 * used ring.  Only a queue with a ring address gets one: without it the
 * driver has set up no ring to look at, and the front-end may still be
 * wiring its interrupts. */
static int swap_signal_fd(struct vhu_backend *b, struct vhu__req *req,
			  struct vhu_vq *vq, int *slot)
{
	bool was = vq->started;

	vhu__be_vq_pause(b, vq);
	replace_fd(slot, take_u64_fd(req));
	if (slot == &vq->call_fd && vq->call_fd >= 0 && vq->addr_set) {
		/* The fd is the front-end's and may be no eventfd at all (a
		 * full pipe): the control thread must not block on it. */
		struct pollfd p = { .fd = vq->call_fd, .events = POLLOUT };
		if (poll(&p, 1, 0) == 1 && (p.revents & POLLOUT))
			(void)vhu__eventfd_signal(vq->call_fd);
	}
	if (was)
		vhu__be_vq_resume(b, vq);
	return 0;
}

int vhu__be_set_vring_call(struct vhu_backend *b, struct vhu__req *req)
{
	struct vhu_vq *vq = &b->vqs[req->ring];
	return swap_signal_fd(b, req, vq, &vq->call_fd);
}

int vhu__be_set_vring_err(struct vhu_backend *b, struct vhu__req *req)
{
	struct vhu_vq *vq = &b->vqs[req->ring];
	return swap_signal_fd(b, req, vq, &vq->err_fd);
}

int vhu__be_set_vring_enable(struct vhu_backend *b, struct vhu__req *req)
{
	struct vhu_vq *vq = &b->vqs[req->ring];
	uint32_t num = req->msg->p.state.num;

	/* 0 or 1: checked by the table. */
	if (num) {
		vq->enabled = true;
		vhu__be_vq_try_start(b, vq);
	} else {
		vhu__be_vq_stop(b, vq);
		vq->enabled = false;
	}
	return 0;
}
