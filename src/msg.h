/* SPDX-License-Identifier: MIT */
/*
 * The front-end request table: for every request id 1..45 what its payload
 * must look like, which fds it may carry, which feature gates it, where it
 * names a ring, what values its fields may take and whether it has a reply
 * body.  Rules only: the session that serves requests pairs them with its
 * handlers (backend.c) and tells the validator which ids it serves.
 * vhu__msg_validate() enforces all of that before a handler runs, so
 * handlers can trust their input (vhost-user.rst "Message types").
 */
#ifndef VHU_MSG_H
#define VHU_MSG_H

#include <stdbool.h>
#include <stdint.h>

#include "proto.h"

/* How big the payload must be. */
enum vhu__payload_rule {
	VHU__P_NONE = 0,   /* hdr.size == 0 */
	VHU__P_EXACT,      /* hdr.size == size */
	VHU__P_RANGE,      /* size <= hdr.size <= size_max */
	VHU__P_CONFIG,     /* hdr.size == 12 + config.size, config.size <= 256 */
	VHU__P_MEMTABLE,   /* hdr.size == 8 + 32 * nregions, 1 <= nregions <= 8 */
	VHU__P_EITHER,     /* hdr.size == size or hdr.size == size_max */
};

/* What a field of the payload may hold (checked after its size). */
enum vhu__value_rule {
	VHU__V_ANY = 0,
	VHU__V_U64_MAX,      /* u64 <= value_max */
	VHU__V_NUM_MAX,      /* struct vhu_vring_state .num <= value_max */
	VHU__V_ADDR_FLAGS,   /* struct vhu_vring_addr .flags within value_max */
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
				     * connection (a guest-triggerable one;
				     * with a reply body: answered u64 1) */
};

struct vhu__req_info {
	const char *name;
	uint8_t payload;      /* enum vhu__payload_rule */
	uint8_t fds;          /* enum vhu__fd_rule */
	uint8_t ring;         /* enum vhu__ring_rule */
	uint8_t gate;         /* enum vhu__gate_kind */
	uint8_t gate_bit;
	bool reply;           /* has a reply body (no REPLY_ACK then) */
	uint8_t value;        /* enum vhu__value_rule */
	uint16_t size;        /* VHU__P_EXACT / RANGE minimum / EITHER one */
	uint16_t size_max;    /* VHU__P_RANGE maximum / EITHER the other */
	uint32_t value_max;   /* the bound of the value rule */
};

/* The table entry for id, or NULL for 0 and unknown ids. */
const struct vhu__req_info *vhu__req_lookup(uint32_t id);

/* What the validator needs to know about the session. */
struct vhu__msg_ctx {
	uint64_t virtio_offered;    /* virtio features offered */
	uint64_t protocol_acked;    /* protocol features negotiated */
	unsigned num_queues;
	uint64_t served;            /* bit id: the session has a handler */
};
_Static_assert(VHU_REQ_MAX <= 64, "served is a 64-bit mask");

/*
 * Check a received request against the table: header flags, id, served,
 * gate, payload size, ring index, field values, fd count.  On success returns 0 and sets
 * *info and *ring.  On failure returns -errno and sets *why to a short
 * reason for the log (static string):
 *   -EPROTO   header flags (version, REPLY set, reserved bits) - the
 *             framing can't be trusted, the connection must go;
 *   -ENOSYS   id 0 / unknown id;   -EOPNOTSUPP  known but not handled;
 *   -EPERM    feature gate not negotiated;
 *   -EINVAL   payload size, reserved bits or a field's value;
 *   -ERANGE   ring index;
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

#endif
