/* SPDX-License-Identifier: MIT */
/*
 * The front-end request table: for every request id 1..45 what its payload
 * must look like, which fds it may carry, which feature gates it, where it
 * names a ring, whether it has a reply body, and (on the back-end side) the
 * handler.  vhu__msg_validate() enforces all of that before a handler runs,
 * so handlers can trust their input (vhost-user.rst "Message types").
 */
#ifndef VHU_MSG_H
#define VHU_MSG_H

#include <stdbool.h>
#include <stdint.h>

#include "proto.h"

struct vhu_backend;
struct vhu__req;

/* How big the payload must be. */
enum vhu__payload_rule {
	VHU__P_NONE = 0,   /* hdr.size == 0 */
	VHU__P_EXACT,      /* hdr.size == size */
	VHU__P_RANGE,      /* size <= hdr.size <= size_max */
	VHU__P_CONFIG,     /* hdr.size == 12 + config.size, config.size <= 256 */
	VHU__P_MEMTABLE,   /* hdr.size == 8 + 32 * nregions, 1 <= nregions <= 8 */
};

/* Which fds the request may carry. */
enum vhu__fd_rule {
	VHU__FD_NONE = 0,    /* no fd */
	VHU__FD_U64_NOFD,    /* exactly 1, or 0 when u64 bit 8 ("no fd") is set */
	VHU__FD_PER_REGION,  /* exactly nregions */
	VHU__FD_ONE,         /* exactly 1 */
	VHU__FD_OPTIONAL,    /* 0 or 1 (closed unless a handler takes it) */
};

/* Where a ring index lives in the payload. */
enum vhu__ring_rule {
	VHU__RING_NONE = 0,
	VHU__RING_STATE,   /* struct vhu_vring_state .index (u32) */
	VHU__RING_ADDR,    /* struct vhu_vring_addr .index (u32) */
	VHU__RING_U64,     /* u64 bits 0-7; bit 8 "no fd"; other bits reserved */
};

/* What must have been negotiated. */
enum vhu__gate_kind {
	VHU__GATE_NONE = 0,
	VHU__GATE_PROTOCOL,  /* protocol feature bit `gate_bit` negotiated */
	VHU__GATE_VIRTIO,    /* virtio feature bit `gate_bit` offered (15/16) */
};

/* A request as a handler sees it: already validated. */
struct vhu__req {
	const struct vhu__req_info *info;
	struct vhu_msg *msg;        /* the request */
	int *fds;                   /* received fds; a handler that keeps
				     * one sets its slot to -1 */
	unsigned nfds;
	unsigned ring;              /* ring index when info->ring != NONE */
	struct vhu_msg *reply;      /* reply body (info->reply): fill p and
				     * hdr.size; the header is set by the
				     * dispatcher */
	bool soft_fail;             /* a refusal that must not cost the
				     * connection (a guest-triggerable one) */
};

typedef int (*vhu__req_handler)(struct vhu_backend *b, struct vhu__req *req);

struct vhu__req_info {
	const char *name;
	uint8_t payload;      /* enum vhu__payload_rule */
	uint8_t fds;          /* enum vhu__fd_rule */
	uint8_t ring;         /* enum vhu__ring_rule */
	uint8_t gate;         /* enum vhu__gate_kind */
	uint8_t gate_bit;
	bool reply;           /* has a reply body (no REPLY_ACK then) */
	uint16_t size;        /* VHU__P_EXACT / VHU__P_RANGE minimum */
	uint16_t size_max;    /* VHU__P_RANGE maximum */
	vhu__req_handler handler; /* NULL: not handled (refused) */
};

/* The table entry for id, or NULL for 0 and unknown ids. */
const struct vhu__req_info *vhu__req_lookup(uint32_t id);

/* What the validator needs to know about the session. */
struct vhu__msg_ctx {
	uint64_t virtio_offered;    /* virtio features offered */
	uint64_t protocol_acked;    /* protocol features negotiated */
	unsigned num_queues;
};

/*
 * Check a received request against the table: header flags, id, handler,
 * gate, payload size, ring index, fd count.  On success returns 0 and sets
 * *info and *ring.  On failure returns -errno and sets *why to a short
 * reason for the log (static string):
 *   -EPROTO   header flags (version, REPLY set, reserved bits) - the
 *             framing can't be trusted, the connection must go;
 *   -ENOSYS   id 0 / unknown id;   -EOPNOTSUPP  known but not handled;
 *   -EPERM    feature gate not negotiated;
 *   -EINVAL   payload size or reserved bits;   -ERANGE  ring index;
 *   -EBADF    wrong number of fds.
 * Nothing here closes fds: the caller owns them.
 */
int vhu__msg_validate(const struct vhu__msg_ctx *ctx, const struct vhu_msg *msg,
		      unsigned nfds, const struct vhu__req_info **info,
		      unsigned *ring, const char **why);

/* True when the header asks for a REPLY_ACK answer. */
static inline bool vhu__msg_need_reply(const struct vhu_msg *msg)
{
	return (msg->hdr.flags & VHU_MSG_NEED_REPLY) != 0;
}

/* Back-end handlers (backend-*.c), referenced by the table. */
int vhu__be_get_features(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_set_features(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_set_owner(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_reset_owner(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_set_mem_table(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_set_vring_num(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_set_vring_addr(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_set_vring_base(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_get_vring_base(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_set_vring_kick(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_set_vring_call(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_set_vring_err(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_get_protocol_features(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_set_protocol_features(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_get_queue_num(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_set_vring_enable(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_set_backend_req_fd(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_get_config(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_set_config(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_reset_device(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_get_max_mem_slots(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_add_mem_reg(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_rem_mem_reg(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_set_status(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_get_status(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_get_inflight_fd(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_set_inflight_fd(struct vhu_backend *b, struct vhu__req *req);

#endif
