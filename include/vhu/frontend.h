/* SPDX-License-Identifier: MIT */
/*
 * The front-end side of vhost-user: connect to a back-end, negotiate, give
 * it guest memory and virtqueues, and drive those queues as the driver
 * would (no VM needed).  Used by test programs and load generators.
 *
 * Threading: control calls (everything taking a struct vhu_fe) are
 * serialised by an internal lock and may be made from any thread.  The
 * data-path calls (vhu_fe_vq_*) on one queue belong to one thread at a
 * time; different queues may be driven from different threads.
 *
 * Every reply is checked (request id, flags exactly REPLY|version 1, exact
 * size, no fds).  A broken or hostile back-end yields -EPROTO,
 * -ECONNRESET or -ETIMEDOUT, and the connection is then unusable
 * (-ENOTCONN) because its framing can no longer be trusted.
 */
#ifndef VHU_FRONTEND_H
#define VHU_FRONTEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vhu/vhu.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vhu_fe;
struct vhu_fe_vq;

/* Protocol features this front-end implements (and negotiates by default). */
#define VHU_FE_PROTOCOL_FEATURES                                              \
	(VHU_BIT(VHU_PF_MQ) | VHU_BIT(VHU_PF_REPLY_ACK) |                     \
	 VHU_BIT(VHU_PF_BACKEND_REQ) | VHU_BIT(VHU_PF_CONFIG) |              \
	 VHU_BIT(VHU_PF_CONFIGURE_MEM_SLOTS) | VHU_BIT(VHU_PF_LOG_SHMFD))

#define VHU_FE_DEFAULT_TIMEOUT_MS 5000

/* Options; a zero-initialised struct means the defaults.  Members are only
 * ever added at the end (see vhu_fe_connect_sized()). */
struct vhu_fe_opts {
	/* Keep retrying connect() while the socket is missing or refuses,
	 * for up to this many ms (0: one attempt). */
	int connect_timeout_ms;
	/* How long to wait for each reply (0: VHU_FE_DEFAULT_TIMEOUT_MS). */
	int timeout_ms;
	/* Protocol features not to negotiate even when both sides have them. */
	uint64_t protocol_features_disable;
	/* Register memory with SET_MEM_TABLE even when ADD_MEM_REG exists. */
	bool no_add_mem_reg;
};

/*
 * Connect to the back-end at path and run the initial handshake:
 * GET_FEATURES; with PROTOCOL_FEATURES: GET_PROTOCOL_FEATURES,
 * SET_PROTOCOL_FEATURES (offered & VHU_FE_PROTOCOL_FEATURES & ~disabled);
 * GET_QUEUE_NUM (MQ), GET_MAX_MEM_SLOTS (CONFIGURE_MEM_SLOTS);
 * SET_BACKEND_REQ_FD (BACKEND_REQ); SET_OWNER.
 * Errors: -ENOENT / -EACCES / -ECONNREFUSED from connect, -ETIMEDOUT when
 * the peer does not answer, -EPROTO when it answers garbage.
 */
int vhu_fe_connect(struct vhu_fe **out, const char *path,
		   const struct vhu_fe_opts *opts);
/* Same over an already connected stream socket (taken over, even on
 * failure). */
int vhu_fe_connect_fd(struct vhu_fe **out, int fd,
		      const struct vhu_fe_opts *opts);
/*
 * vhu_fe_connect() and vhu_fe_connect_fd() are macros over these, passing
 * sizeof(struct vhu_fe_opts) as the caller was compiled: the library takes
 * the members the caller knows and defaults the rest, so a program built
 * against an older header keeps working; -E2BIG when opts sets members
 * this library does not know.  opts (may be NULL: defaults) is copied.
 * The functions named vhu_fe_connect / vhu_fe_connect_fd themselves
 * assume the 0.1 layout (for bindings).
 */
int vhu_fe_connect_sized(struct vhu_fe **out, const char *path,
			 const struct vhu_fe_opts *opts, size_t opts_size);
int vhu_fe_connect_fd_sized(struct vhu_fe **out, int fd,
			    const struct vhu_fe_opts *opts, size_t opts_size);
#define vhu_fe_connect(out, path, opts)                                       \
	vhu_fe_connect_sized((out), (path), (opts), sizeof(struct vhu_fe_opts))
#define vhu_fe_connect_fd(out, fd, opts)                                      \
	vhu_fe_connect_fd_sized((out), (fd), (opts), sizeof(struct vhu_fe_opts))
/* Close the connection, the queues, the memory and every fd.  Pointers
 * from vhu_fe_alloc() and every vhu_fe_vq are invalid afterwards.  NULL
 * is allowed. */
void vhu_fe_close(struct vhu_fe *fe);

/* What the back-end offered, and what was negotiated (features: 0 before
 * vhu_fe_set_features()).  These never fail. */
uint64_t vhu_fe_features_offered(const struct vhu_fe *fe);
uint64_t vhu_fe_protocol_features_offered(const struct vhu_fe *fe);
uint64_t vhu_fe_protocol_features(const struct vhu_fe *fe);
uint64_t vhu_fe_features(const struct vhu_fe *fe);
/* GET_QUEUE_NUM answer (0 without MQ), GET_MAX_MEM_SLOTS answer (0
 * without CONFIGURE_MEM_SLOTS: then 8 regions via SET_MEM_TABLE). */
unsigned vhu_fe_queue_num(const struct vhu_fe *fe);
unsigned vhu_fe_max_mem_slots(const struct vhu_fe *fe);

/*
 * SET_FEATURES with features & offered (VHU_F_PROTOCOL_FEATURES is kept
 * when it was offered, as the protocol requires; VHU_F_LOG_ALL is left
 * to vhu_fe_log_start()).  Call once, before
 * setting up queues.  Returns 0 or -errno.
 */
int vhu_fe_set_features(struct vhu_fe *fe, uint64_t features);
/* vhu_fe_set_features() that also tells, in *dropped (may be NULL; set on
 * success only), which of the requested bits were not negotiated: those
 * the back-end did not offer, and LOG_ALL. */
int vhu_fe_set_features_dropped(struct vhu_fe *fe, uint64_t features,
				uint64_t *dropped);

/*
 * Guest memory.  vhu_fe_add_memory() creates a shared memory region of
 * size bytes (rounded up to pages) and registers it with the back-end
 * (ADD_MEM_REG, or SET_MEM_TABLE with all regions).  vhu_fe_alloc()
 * returns len bytes aligned to align (a power of two) from the regions,
 * zeroed, and its guest-physical address in *gpa; NULL when no region has
 * room.  Not thread-safe: allocate during setup.
 */
int vhu_fe_add_memory(struct vhu_fe *fe, size_t size);
void *vhu_fe_alloc(struct vhu_fe *fe, size_t len, size_t align, uint64_t *gpa);
/* Guest-physical address of a pointer returned by vhu_fe_alloc(), or
 * UINT64_MAX when p is not in guest memory. */
uint64_t vhu_fe_gpa(const struct vhu_fe *fe, const void *p);
/* Give back len bytes at p, exactly as one vhu_fe_alloc() returned them
 * (a pointer not from it, or a range already free, must not be passed;
 * one outside guest memory is ignored, as are NULL and len 0).  Later
 * allocations reuse the space; the back-end may still hold the buffer's
 * address, so free only what no request in flight refers to.  Not
 * thread-safe, as vhu_fe_alloc(). */
void vhu_fe_free(struct vhu_fe *fe, void *p, size_t len);

/*
 * Set up queue index with size descriptors (power of two, <= 32768):
 * allocates the rings in guest memory, kick and call eventfds, sends
 * SET_VRING_NUM/BASE(0)/ADDR/KICK/CALL and, with PROTOCOL_FEATURES,
 * SET_VRING_ENABLE 1.  Needs vhu_fe_set_features() first (-EINVAL) and
 * memory for the rings (-ENOMEM).  The queue lives until vhu_fe_close().
 *
 * When VHU_F_RING_PACKED was negotiated the queue is a packed ring
 * (virtio 1.2, 2.8) of any size 1 .. 32768, driven by the same calls
 * below; its SET_VRING_BASE carries both wrap counters set, and a chain
 * is visible to the device as soon as vhu_fe_vq_add() returns.
 */
int vhu_fe_vq_setup(struct vhu_fe *fe, unsigned index, unsigned size,
		    struct vhu_fe_vq **out);
/* Stop a queue: GET_VRING_BASE; *base receives the back-end's next avail
 * index (packed rings: avail position | wrap << 15 | used position << 16 |
 * used wrap << 31) (may be NULL). */
int vhu_fe_vq_stop(struct vhu_fe *fe, unsigned index, uint32_t *base);

/* ---- driver side of a split or packed ring (one thread per queue) ---- */

/* One buffer of a chain: guest-physical address and length. */
struct vhu_fe_buf {
	uint64_t gpa;
	uint32_t len;
};

/*
 * Add a chain: out[0..n_out) device-readable, then in[0..n_in)
 * device-writable; either array may be NULL when its count is 0.  data is handed back by vhu_fe_vq_get_used().  The
 * chain becomes visible to the device at the next vhu_fe_vq_kick().
 * Returns the head id, -ENOSPC when fewer than n_out + n_in descriptors
 * are free, -EINVAL for an empty chain.
 */
int vhu_fe_vq_add(struct vhu_fe_vq *vq, const struct vhu_fe_buf *out,
		  unsigned n_out, const struct vhu_fe_buf *in, unsigned n_in,
		  void *data);
/* Publish the added chains and notify the device unless it asked not to
 * be (used->flags NO_NOTIFY, or avail_event with EVENT_IDX).  Returns 1
 * when it wrote the kick eventfd, 0 when not needed, -errno. */
int vhu_fe_vq_kick(struct vhu_fe_vq *vq);
/* Take one completion: 1 with *data and *len (bytes the device wrote), 0
 * when none, -EIO when the device returned an id that is not in flight or
 * moved used->idx by more than the ring size (the queue is then broken). */
int vhu_fe_vq_get_used(struct vhu_fe_vq *vq, void **data, uint32_t *len);
/* Ask for a call (used_event with EVENT_IDX) and wait up to timeout_ms
 * (-1 forever) for completions.  Returns 1 when completions are there, 0
 * on timeout, -errno. */
int vhu_fe_vq_wait(struct vhu_fe_vq *vq, int timeout_ms);
/* Free descriptors; chains in flight; the call eventfd. */
unsigned vhu_fe_vq_num_free(const struct vhu_fe_vq *vq);
unsigned vhu_fe_vq_inflight(const struct vhu_fe_vq *vq);
int vhu_fe_vq_call_fd(const struct vhu_fe_vq *vq);

/* ---- dirty logging, as a migrating front-end does it ---- */

/*
 * Start logging (vhost-user.rst "Migration"; needs LOG_SHMFD and
 * VHOST_F_LOG_ALL offered, else -EOPNOTSUPP): a sealed memfd bitmap with
 * one bit per 4 KiB page up to the end of guest memory goes out with
 * SET_LOG_BASE, then SET_FEATURES adds LOG_ALL and every queue set up so
 * far gets SET_VRING_ADDR with the LOG flag (queues set up later get it
 * too).  The rings keep running.  Calling it again while logging sends a
 * new, empty log (as after a memory change).  vhu_fe_log_stop(): the
 * same in reverse; the bitmap stays readable until the next start.
 */
int vhu_fe_log_start(struct vhu_fe *fe);
int vhu_fe_log_stop(struct vhu_fe *fe);
/* Bytes of bitmap (0 before the first start). */
size_t vhu_fe_log_size(const struct vhu_fe *fe);
/*
 * Read and clear the bitmap as the back-end runs: len bytes (a multiple
 * of 8, at most vhu_fe_log_size()) into out, each 64-bit word taken with
 * an atomic exchange.  Bit (page % 8) of byte (page / 8), page = gpa /
 * 4096.  Returns the number of bits that were set, or -errno.
 */
long vhu_fe_log_read(struct vhu_fe *fe, uint8_t *out, size_t len);
/* Test the bit of a guest-physical address in a copy read above. */
bool vhu_fe_log_test(const uint8_t *bits, size_t len, uint64_t gpa);

/* ---- configuration space (needs the CONFIG protocol feature) ---- */

/*
 * GET_CONFIG: read size (<= 256) bytes at offset.  -EIO when the back-end
 * reports an error (empty payload), -EPROTO for a malformed reply,
 * -EOPNOTSUPP without CONFIG.
 */
int vhu_fe_get_config(struct vhu_fe *fe, uint32_t offset, void *buf,
		      uint32_t size);
/* SET_CONFIG (flags 0: a driver write, 1: migration); acknowledged with
 * REPLY_ACK when negotiated (-EIO when the back-end refuses). */
int vhu_fe_set_config(struct vhu_fe *fe, uint32_t offset, const void *buf,
		      uint32_t size, uint32_t flags);

/* ---- back-end channel ---- */

/* Called when the back-end sends CONFIG_CHANGE_MSG.  May call any control
 * function (typically vhu_fe_get_config()).  Return 0, or -errno to make
 * the acknowledgement report a failure. */
typedef int (*vhu_fe_config_change_fn)(struct vhu_fe *fe, void *opaque);
void vhu_fe_set_config_change_cb(struct vhu_fe *fe, vhu_fe_config_change_fn fn,
				 void *opaque);
/* The back-end channel's fd to poll for input, -1 when not negotiated. */
int vhu_fe_backend_fd(const struct vhu_fe *fe);
/*
 * Handle the messages waiting on the back-end channel without blocking.
 * The acknowledgement (when NEED_REPLY is set) goes out after the
 * callback has returned.  Returns the number handled, -ENOTCONN when the
 * back-end closed the channel, -EPROTO for a malformed message (the
 * channel is then closed), -errno.
 */
int vhu_fe_process_backend(struct vhu_fe *fe);

#ifdef __cplusplus
}
#endif
#endif
