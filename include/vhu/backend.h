/* SPDX-License-Identifier: MIT */
/*
 * The back-end side of vhost-user: what device authors build on.
 *
 * A session owns a listening (or connected) Unix socket, serves one
 * front-end at a time, and hands virtqueues to the device through a const
 * ops table.  The library owns no thread: vhu_backend_fd() is one pollable
 * fd (an epoll set inside) that becomes readable when something is ready,
 * and vhu_backend_process() handles what is ready without blocking.
 * vhu_backend_attach() plugs the session into a vhu_loop.
 *
 * Everything here is called from one thread (the control thread); only
 * the vhu_vq_* calls on a started queue belong to the device's own thread.
 */
#ifndef VHU_BACKEND_H
#define VHU_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vhu/vhu.h>
#include <vhu/virtq.h>
#include <vhu/loop.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vhu_backend;

/*
 * Device callbacks.  Every member may be NULL, and so may opts.ops (a
 * device with no callbacks at all).  The table is append-only across
 * versions.  All callbacks run on the control thread.
 */
struct vhu_device_ops {
	/* SET_FEATURES was accepted: the negotiated virtio features. */
	void (*features_set)(void *opaque, uint64_t features);

	/*
	 * A queue may now be served: its ring is mapped, it is enabled and
	 * has a kick fd (or polls).  The device serves it from any thread.
	 */
	void (*queue_started)(void *opaque, struct vhu_vq *vq);

	/*
	 * The queue must stop: on return, the device no longer touches it and
	 * every request it popped has been pushed back.  Called for
	 * GET_VRING_BASE, SET_VRING_ENABLE 0, memory-table changes (followed by
	 * queue_started again), reset and disconnect.  vhu_vq_is_restarting()
	 * tells a stop followed at once by a restart at the same positions
	 * (dirty-logging switches, memory changes...) from a real one.
	 */
	void (*queue_stopped)(void *opaque, struct vhu_vq *vq);

	/*
	 * The driver kicked a started queue.  When this member is non-NULL the
	 * session watches the kick fds itself and calls it on the control
	 * thread (the kick is already consumed).  When NULL, the device watches
	 * vhu_vq_kick_fd() in its own threads.
	 *
	 * It runs inside vhu_backend_process(): while it blocks, the session
	 * reads no message and serves no other queue, and a front-end waiting
	 * for a reply may give up.  Serve what can be served now and return.
	 * A device may keep popped requests across calls (answer them at a
	 * later kick, a timer, when data arrives...) as long as it pushes them
	 * from the thread serving the queue and pushes all of them before
	 * queue_stopped returns.
	 */
	void (*queue_kick)(void *opaque, struct vhu_vq *vq);

	/*
	 * Read len bytes of the config space at offset into buf.  The library
	 * has already checked offset + len <= config_size.  Return 0 or -errno.
	 */
	int (*get_config)(void *opaque, uint32_t offset, void *buf, uint32_t len);

	/*
	 * Write len bytes at offset.  The library has checked bounds and, for
	 * flags == 0 (a guest write), that only writable bytes are touched.
	 * flags == VHU_CONFIG_MIGRATION: a migration restore.
	 */
	int (*set_config)(void *opaque, uint32_t offset, const void *buf,
			  uint32_t len, uint32_t flags);

	/* Reset the device to its initial state (disconnect, RESET_DEVICE,
	 * RESET_OWNER).  Queues have already been stopped.  A disconnect is
	 * not a reset of the guest's device: state the driver chose through
	 * the config space (set_config) outlives a reconnect and is returned
	 * to its default in device_reset, not here. */
	void (*reset)(void *opaque);

	/* A front-end connected / disconnected. */
	void (*connected)(void *opaque);
	void (*disconnected)(void *opaque);

	/* SET_STATUS: the driver's virtio device status byte. */
	void (*set_status)(void *opaque, uint8_t status);

	/* The front-end answered a CONFIG_CHANGE_MSG that asked for an ack:
	 * result 0 = success, else the front-end's non-zero u64 (or -errno
	 * when the channel failed). */
	void (*config_change_acked)(void *opaque, int64_t result);

	/* The front-end reset the guest's device (RESET_DEVICE, RESET_OWNER),
	 * called right after reset.  Never called for a disconnect: a
	 * front-end that reconnects (QEMU after a back-end or VM restart)
	 * finds what the driver chose still in force, while a device reset
	 * returns it to its default. */
	void (*device_reset)(void *opaque);

	/*
	 * The session is about to stop this started queue: queue_stopped
	 * follows for it, with nothing between but other queues' begins and
	 * stops (the queue is still the device's until then).  Called before
	 * every queue_stopped; when the session stops several queues at once
	 * (disconnect, reset, memory-table and dirty-log changes,
	 * SET_INFLIGHT_FD) it is called for each of them before the first
	 * queue_stopped.  vhu_vq_is_restarting() already tells which kind of
	 * stop it is.  A device whose
	 * stop waits on something (its storage finishing what it popped)
	 * starts winding the queue down here without waiting, so those waits
	 * overlap and a stop of every queue takes about as long as the
	 * slowest one instead of their sum.  NULL: queue_stopped alone.
	 */
	void (*queue_stop_begin)(void *opaque, struct vhu_vq *vq);

	/*
	 * A queue the session stopped to restart (vhu_vq_is_restarting() was
	 * true in its queue_stopped) could not start again: the change left
	 * its rings unmapped (a memory table without them), so the stop
	 * turned out to be a real one.  vhu_vq_is_restarting() is false from
	 * here on.  A device that keeps something while rings run (vhu-blk's
	 * image write lock) lets go of it here as at any real stop.  NULL:
	 * nothing is said; the next reset or disconnect says it.
	 */
	void (*queue_restart_failed)(void *opaque, struct vhu_vq *vq);
};

#define VHU_CONFIG_MIGRATION 1u

struct vhu_backend_opts {
	const struct vhu_device_ops *ops;
	void *opaque;

	/* virtio features the device offers: its own bits, plus the ring
	 * (transport) bits it takes, usually all of VHU_RING_FEATURES.  The
	 * library adds VHU_F_PROTOCOL_FEATURES, and VHU_F_LOG_ALL unless
	 * no_dirty_log; of the transport bits (24..49) it offers only those
	 * of VHU_RING_FEATURES and NOTIFY_ON_EMPTY (see there) and drops the
	 * others (ACCESS_PLATFORM, IN_ORDER...) without a word. */
	uint64_t features;

	/* protocol features the device wants offered; the library masks them
	 * with what it implements and adds what it always offers (REPLY_ACK,
	 * MQ, CONFIGURE_MEM_SLOTS, RESET_DEVICE, STATUS, BACKEND_REQ, and
	 * LOG_SHMFD unless no_dirty_log). CONFIG is offered when
	 * config_size > 0. */
	uint64_t protocol_features;

	unsigned num_queues;      /* 1 .. VHU_BACKEND_MAX_QUEUES */
	unsigned max_queue_size;  /* 0 = 32768; power of two */

	/* Config space: its size (0..256) and which bytes a guest may write
	 * (config_writable[i] != 0); NULL = nothing writable.  Copied. */
	uint32_t config_size;
	const uint8_t *config_writable;

	/* Live migration: the library offers VHOST_F_LOG_ALL and LOG_SHMFD
	 * and marks every guest page a queue writes in the front-end's dirty
	 * log: the rings, and all the writable buffers of each pushed element
	 * (every byte offered, not only the `written` ones).  A
	 * device that writes guest memory any other way sets this to opt
	 * out.  queue_stopped must complete every popped request: the
	 * front-end migrates only the ring positions. */
	bool no_dirty_log;

	/* Added after release 0.1 (a 0.1 program passes none):
	 * VHU_BACKEND_OPT_* bits; any other bit is refused
	 * (-EINVAL). */
	uint64_t flags;
};

/*
 * Offer VIRTIO_F_ACCESS_PLATFORM (guests behind an IOMMU; vhost-user.rst
 * "IOMMU support"), with REPLY_ACK and BACKEND_REQ.  When the front-end
 * negotiates it, every ring and buffer address is an I/O virtual address
 * the queues translate through the IOTLB the front-end fills
 * (IOTLB_MSG), with its read/write permissions.  A missing translation
 * is asked for: the pop returns 0 and the queue reports no work until
 * the answer comes, then its kick fd is signalled.  An access the
 * mapping forbids breaks the queue (-EIO), never happens.  An
 * invalidation does not reach elements already popped; see docs/api.md.
 * A device that reaches guest memory only through the popped iovecs
 * needs nothing else.
 * QEMU negotiates the bit only when the guest has a virtual IOMMU; with
 * iommu_platform=on and none (confidential guests), addresses are as
 * without it.
 */
#define VHU_BACKEND_OPT_ACCESS_PLATFORM (1ull << 0)

#define VHU_BACKEND_MAX_QUEUES 256

/*
 * The ring features the library serves in full, for any device: a device
 * puts all of them in opts.features (with its own bits) unless it has a
 * reason to refuse one.  VERSION_1 (virtio 1.x), INDIRECT_DESC (chains
 * through an indirect table), EVENT_IDX (notification suppression by
 * index), RING_PACKED (the packed layout, 2.8) and ANY_LAYOUT (the device
 * never assumes where a header ends and data begins: pops hand out
 * iovecs).  Not in it:
 *   NOTIFY_ON_EMPTY (24): passed through when a device lists it, but the
 *     library does not send the extra interrupt it asks for; it is for
 *     legacy drivers only and a VERSION_1 driver does not accept it.
 *   ACCESS_PLATFORM (33): dropped here; a device asks for it with
 *     VHU_BACKEND_OPT_ACCESS_PLATFORM (see there);
 *   IN_ORDER (35): the driver could rely on in-order completion, which
 *     the library does not enforce;
 *   RING_RESET (40) and the other transport bits: not implemented.
 * The library never offers these, even when a device lists them.
 */
#define VHU_RING_FEATURES                                                     \
	(VHU_BIT(VHU_F_VERSION_1) | VHU_BIT(VHU_F_INDIRECT_DESC) |            \
	 VHU_BIT(VHU_F_EVENT_IDX) | VHU_BIT(VHU_F_RING_PACKED) |              \
	 VHU_BIT(VHU_F_ANY_LAYOUT))

/*
 * Create a session (no socket yet: see vhu_backend_listen() and friends).
 * opts and the ops table are copied; neither needs to outlive the call.
 * *out is NULL on failure.
 * Errors: -EINVAL for a NULL argument, num_queues outside 1 ..
 * VHU_BACKEND_MAX_QUEUES, a max_queue_size that is not a power of two or
 * above 32768, config_size above 256; -E2BIG when the caller's structures
 * set members this library does not know (a program built against a newer
 * libvhu); -ENOMEM, or -errno from epoll/timerfd creation.
 *
 * Growing structures: vhu_backend_opts and vhu_device_ops only ever gain
 * members at their end.  vhu_backend_new() is a macro that passes the
 * sizes the caller was compiled with to vhu_backend_new_sized(); the
 * library copies what the caller knows and treats the rest as zero/NULL,
 * so a program built against an older header keeps working.
 */
int vhu_backend_new_sized(const struct vhu_backend_opts *opts, size_t opts_size,
			  size_t ops_size, struct vhu_backend **out);
/* The entry point of release 0.1, for callers that cannot use the macro
 * (bindings): it assumes the 0.1 layouts. */
int vhu_backend_new(const struct vhu_backend_opts *opts, struct vhu_backend **out);
#define vhu_backend_new(opts, out)                                            \
	vhu_backend_new_sized((opts), sizeof(struct vhu_backend_opts),        \
			      sizeof(struct vhu_device_ops), (out))
/* Closes the connection (stopping queues, resetting the device) and
 * everything the session owns.  Unlinks a socket path it created.  NULL
 * is allowed (does nothing). */
void vhu_backend_free(struct vhu_backend *b);

/*
 * Where the front-end comes from (call one):
 *   listen: create a Unix socket at path.  A path that exists and accepts
 *           connections is in use (-EADDRINUSE); a stale socket is replaced.
 *   listen_fd: an already-listening socket (systemd LISTEN_FDS).
 *   connected_fd: an already-connected socket (QEMU's --fd).  When it
 *           disconnects the session has nothing more to serve:
 *           vhu_backend_process() returns -ENOTCONN from then on.
 * The session takes ownership of fd (also on failure).  Errors: -EBUSY
 * when the session already has a socket, -ENAMETOOLONG for a path longer
 * than sun_path, -EADDRINUSE (above), -errno from socket/bind/listen.
 */
int vhu_backend_listen(struct vhu_backend *b, const char *path);
int vhu_backend_listen_fd(struct vhu_backend *b, int fd);
int vhu_backend_connected_fd(struct vhu_backend *b, int fd);

/* One pollable fd (readable when there is work) for external loops.  It
 * belongs to the session (do not close it) and lives until
 * vhu_backend_free(); poll it for input only. */
int vhu_backend_fd(const struct vhu_backend *b);

/*
 * Handle everything ready now, without blocking.  A message that arrived
 * only in part (header, payload or fds) is kept until the rest comes; a
 * front-end that leaves one incomplete for 5 s is disconnected (a timer in
 * vhu_backend_fd() wakes the caller for that).  A broken or hostile
 * front-end is disconnected (logged) and the session waits for the next:
 * that is not an error here.  Returns 0, or -ENOTCONN once a connected_fd
 * session has lost its peer, or another -errno on a local failure.
 */
int vhu_backend_process(struct vhu_backend *b);

/* Register vhu_backend_fd() with a loop (processing on readiness); a
 * connected_fd session that ends stops the loop.  The loop is not owned:
 * it must outlive the attachment (vhu_backend_free() detaches).
 * attach: -EINVAL without a loop, -EBUSY when already attached, or what
 * vhu_loop_add() returns.  detach: -ENOENT when not attached. */
int vhu_backend_attach(struct vhu_backend *b, struct vhu_loop *loop);
int vhu_backend_detach(struct vhu_backend *b);

/*
 * Serve until SIGINT or SIGTERM (or, for a connected_fd session, until the
 * front-end leaves): the whole main loop of a simple device, after
 * vhu_backend_new() and one of the listen/connected calls:
 *
 *	r = vhu_backend_run(b);     // 0 after a signal
 *	vhu_backend_free(b);        // unlinks the socket
 *
 * It runs a vhu_loop of its own on the calling thread (the control
 * thread) with the session attached, and for the duration of the call
 * handles SIGINT and SIGTERM in the whole process (the handler only stops
 * the loop; the previous dispositions are restored on return, so a
 * signal after it acts as before).  One call at a time per process (-EBUSY for a second, concurrent one).
 * Returns 0 when a signal stopped it or the connected_fd session ended,
 * -EINVAL for a session without a socket, -EBUSY when the session is
 * attached to another loop, -errno from the loop.
 */
int vhu_backend_run(struct vhu_backend *b);

/* State queries; control thread, never fail.  The feature masks are what
 * the current front-end negotiated (0 before SET_FEATURES and after a
 * disconnect). */
bool vhu_backend_is_connected(const struct vhu_backend *b);
uint64_t vhu_backend_features(const struct vhu_backend *b);
uint64_t vhu_backend_protocol_features(const struct vhu_backend *b);
/* Queue index (0 .. num_queues - 1), or NULL out of range.  The queue
 * belongs to the session and lives until vhu_backend_free(); it is only
 * served between queue_started and queue_stopped (see virtq.h). */
struct vhu_vq *vhu_backend_vq(struct vhu_backend *b, unsigned index);
unsigned vhu_backend_num_queues(const struct vhu_backend *b);

/*
 * The config space changed: send CONFIG_CHANGE_MSG on the back-end
 * channel.  With REPLY_ACK negotiated and want_ack, NEED_REPLY is set and
 * the answer arrives later through ops->config_change_acked; the session
 * keeps serving the main socket meanwhile (the front-end reads the config
 * before it acks), so this never blocks.
 * Returns 0 when sent, -ENOTCONN without a front-end, -EOPNOTSUPP when the
 * front-end set up no back-end channel (BACKEND_REQ + CONFIG).
 */
int vhu_backend_config_changed(struct vhu_backend *b, bool want_ack);

#ifdef __cplusplus
}
#endif
#endif
