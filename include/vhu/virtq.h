/* SPDX-License-Identifier: MIT */
/*
 * The device side of a virtqueue: take requests the driver made available,
 * give them back as used, and notify the driver.
 *
 * A queue is served by one thread at a time.  The library never touches a
 * started queue from another thread: control messages that affect a running
 * queue first stop it through the device's queue_stopped callback.
 */
#ifndef VHU_VIRTQ_H
#define VHU_VIRTQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vhu_vq;

/*
 * One request (a descriptor chain), as the device sees it.
 * iov[0 .. n_out) are the driver's readable buffers (device reads them),
 * iov[n_out .. n_out + n_in) the writable ones (device writes them).
 * The storage for iov is the caller's: see vhu_vq_pop().
 */
struct vhu_vq_elem {
	uint16_t id;         /* head descriptor index, handed back on push */
	uint16_t n_out;
	uint16_t n_in;
	uint16_t flags;      /* VHU_VQ_ELEM_F_*; was reserved (always 0) */
	struct iovec *iov;
};

/* The chain needed more than iov_cap entries (vhu_vq_pop_flags() with
 * VHU_VQ_POP_TRUNCATED or VHU_VQ_POP_PARTIAL): see there. */
#define VHU_VQ_ELEM_F_TRUNCATED 1u

/*
 * How many iovecs a pop needs at most for a queue of queue_size
 * descriptors, for a stack array or an allocation.  A chain has at most
 * queue_size descriptors ("A driver MUST NOT create a descriptor chain
 * longer than the Queue Size of the device", virtio 1.2, 2.7.5.3.1: an
 * indirect table's entries count, so indirect tables do not make chains
 * longer than the ring could), and each buffer becomes one
 * iovec per guest memory region it touches: two cover a buffer that
 * crosses one region boundary.  A chain that still needs more (a driver
 * that ignores the limit, or a buffer over three regions) takes the pop's
 * overflow path: -E2BIG, or VHU_VQ_POP_PARTIAL / VHU_VQ_POP_TRUNCATED.
 * The ring size is what the device allows in opts.max_queue_size (or
 * vhu_vq_size() of a started queue).
 */
#define VHU_VQ_MAX_IOV(queue_size) (2u * (unsigned)(queue_size))

/*
 * Take the next available request.
 *   iov, iov_cap: caller-provided storage for the element's buffers.
 * Returns 1 when *elem was filled, 0 when the ring has no new request,
 * -E2BIG when a chain needs more than iov_cap entries (that request is
 * consumed and completed with 0 bytes and no notification: a device that
 * wants to answer it uses vhu_vq_pop_flags()), and -EIO when the driver broke the
 * ring (loop, bad index, unmapped memory...): the queue is then marked
 * broken, logs why, and returns -EIO until it is reset.
 *
 * Guest-memory ranges that cross two mapped regions produce two iovecs.
 * Every guest field is read once (copied, checked, then used).
 */
int vhu_vq_pop(struct vhu_vq *vq, struct vhu_vq_elem *elem,
	       struct iovec *iov, unsigned iov_cap);

/*
 * vhu_vq_pop() with flags (0 behaves exactly like it).
 *
 * VHU_VQ_POP_TRUNCATED: a chain that needs more than iov_cap entries is
 * not completed by the library but handed to the device, so it can answer
 * with an error the driver sees: the call returns 1 with elem->flags =
 * VHU_VQ_ELEM_F_TRUNCATED, n_out = 0, and n_in = 1 with iov[0] the
 * chain's last writable byte (where virtio-blk, -scsi... put their status),
 * or n_in = 0 when the chain has no writable byte (or iov_cap is 0).  The
 * rest of the chain is not described.  The device writes its error status
 * there and pushes the element as usual (written = 1 or 0), then notifies.
 * The chain was checked as any other (a malformed one still breaks the
 * queue with -EIO).
 */
#define VHU_VQ_POP_TRUNCATED 1u
/*
 * VHU_VQ_POP_PARTIAL: a chain that needs more than iov_cap entries is
 * handed to the device cut short: the call returns 1 with elem->flags =
 * VHU_VQ_ELEM_F_TRUNCATED and iov[] filled with the chain's buffers in
 * order, as many whole buffers as fit (n_out readable ones, then n_in
 * writable ones; n_in is 0 when the readable part already filled iov[]).
 * The rest of the chain is not described and must not be reported
 * written.  For devices that may answer with fewer bytes than offered
 * (virtio-rng fills what it got, a network receive...), where completing
 * the chain with 0 bytes is wrong.  Checked as any other chain.  With
 * both flags, PARTIAL wins.
 */
#define VHU_VQ_POP_PARTIAL 4u
/*
 * VHU_VQ_POP_NO_REARM: for polling devices.  A pop that finds the ring
 * empty leaves kick suppression as it is.  Without it (and with EVENT_IDX)
 * an empty pop asks the driver for a kick at the next request, so a device
 * that pops until empty and then sleeps on its kick fd misses nothing; a
 * device that keeps polling after the last request would then be kicked
 * for each one.  With it, the device calls vhu_vq_disable_notify() when it
 * starts polling and must call vhu_vq_enable_notify() (and pop again when
 * that returns true) before it sleeps.
 */
#define VHU_VQ_POP_NO_REARM 2u
int vhu_vq_pop_flags(struct vhu_vq *vq, struct vhu_vq_elem *elem,
		     struct iovec *iov, unsigned iov_cap, unsigned flags);

/*
 * Give a request back: `written` is the number of bytes the device wrote
 * into the writable buffers.  Does not notify; call vhu_vq_notify() after a
 * batch (or use vhu_vq_push_notify()).  elem is the element as popped (its
 * iov storage still the device's and unchanged): while dirty logging is on
 * the push marks every page of its writable buffers, all of them whatever
 * `written` says.  A device may hold popped elements across calls and push
 * them later, from the thread serving the queue, until queue_stopped.
 */
void vhu_vq_push(struct vhu_vq *vq, const struct vhu_vq_elem *elem,
		 uint32_t written);

/* Signal the call eventfd if the driver wants an interrupt (honours
 * EVENT_IDX and VRING_AVAIL_F_NO_INTERRUPT).  Safe to call with nothing
 * pushed: then it does nothing. */
void vhu_vq_notify(struct vhu_vq *vq);

/* vhu_vq_push() then vhu_vq_notify(). */
void vhu_vq_push_notify(struct vhu_vq *vq, const struct vhu_vq_elem *elem,
			uint32_t written);

/*
 * Notification suppression for polling devices.  disable: ask the driver
 * not to kick.  enable: ask for kicks again; returns true when requests
 * arrived meanwhile (the caller must pop again before sleeping).
 */
void vhu_vq_disable_notify(struct vhu_vq *vq);
bool vhu_vq_enable_notify(struct vhu_vq *vq);

/* True when the driver has made requests available that were not popped.
 * Reads the ring only (no system call, no store to guest memory): cheap
 * enough to call in a polling loop. */
bool vhu_vq_has_work(struct vhu_vq *vq);

/* Queue index, ring size (number of descriptors), kick fd (-1 if none). */
unsigned vhu_vq_index(const struct vhu_vq *vq);
unsigned vhu_vq_size(const struct vhu_vq *vq);
int vhu_vq_kick_fd(const struct vhu_vq *vq);

/* Consume pending kicks on the kick eventfd (non-blocking).  Returns the
 * number of kicks read (0 if none), or a negative errno. */
int vhu_vq_drain_kick(struct vhu_vq *vq);

/* True when the queue was marked broken by a malformed ring. */
bool vhu_vq_is_broken(const struct vhu_vq *vq);

/*
 * Inside the device's queue_stopped and the queue_started that follows
 * it: true when the session stops the queue only to start it again at
 * once at the same ring positions (dirty logging switched on or off, a new
 * log, a ring's LOG flag, a memory-table or inflight-region change, a new
 * kick or call fd), false for a stop that ends the queue's service
 * (GET_VRING_BASE, SET_VRING_ENABLE 0, a reset, a disconnect).  A device
 * keeps what it holds for running queues (an image lock...) across such a
 * restart.  If the queue then cannot start again (the front-end's new
 * rings are not mapped), it stays stopped with no further callback: the
 * device learns of it at the next reset or disconnect (reset callback).
 */
bool vhu_vq_is_restarting(const struct vhu_vq *vq);

/* Device-private pointer per queue. */
void vhu_vq_set_priv(struct vhu_vq *vq, void *priv);
void *vhu_vq_get_priv(const struct vhu_vq *vq);

#ifdef __cplusplus
}
#endif
#endif
