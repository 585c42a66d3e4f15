/* SPDX-License-Identifier: MIT */
/*
 * The one request table and the central validator (vhost-user.rst
 * "Front-end message types").  Every rule a handler relies on is stated
 * here and checked before the handler runs.
 */
#include <errno.h>
#include <stddef.h>

#include "msg.h"
#include "internal.h"

/* One row: the request's name, then its rules. */
#define ROW(n, ...) [VHU_REQ_##n] = { .name = #n, __VA_ARGS__ }
#define PF(bit) .gate = VHU__GATE_PROTOCOL, .gate_bit = VHU_PF_##bit
#define VF(bit) .gate = VHU__GATE_VIRTIO, .gate_bit = VHU_F_##bit
#define NONE .payload = VHU__P_NONE
#define EXACT(n) .payload = VHU__P_EXACT, .size = (n)
#define RANGE(lo, hi) .payload = VHU__P_RANGE, .size = (lo), .size_max = (hi)
#define EITHER(a, b) .payload = VHU__P_EITHER, .size = (a), .size_max = (b)
#define VALUE(rule, max) .value = VHU__V_##rule, .value_max = (max)

static const struct vhu__req_info table[VHU_REQ_MAX] = {
	ROW(GET_FEATURES, NONE, .reply = true),
	ROW(SET_FEATURES, EXACT(8)),
	ROW(SET_OWNER, NONE),
	/* Deprecated; served as a device reset. */
	ROW(RESET_OWNER, NONE),
	ROW(SET_MEM_TABLE, .payload = VHU__P_MEMTABLE,
		.fds = VHU__FD_PER_REGION),
	/* Dirty logging (vhost-user.rst "Migration"): the log is a shared
	 * memory fd, answered even without REPLY_ACK. */
	ROW(SET_LOG_BASE, EXACT(sizeof(struct vhu_log)), .fds = VHU__FD_ONE,
		PF(LOG_SHMFD), .reply = true),
	/* "An optional message with an eventfd": 0 fds clears it. */
	ROW(SET_LOG_FD, NONE, .fds = VHU__FD_OPTIONAL),
	ROW(SET_VRING_NUM, EXACT(8), .ring = VHU__RING_STATE),
	/* Flag bit 0 (log) is the only one defined. */
	ROW(SET_VRING_ADDR, EXACT(sizeof(struct vhu_vring_addr)),
		.ring = VHU__RING_ADDR, VALUE(ADDR_FLAGS, VHU_VRING_F_LOG)),
	ROW(SET_VRING_BASE, EXACT(8), .ring = VHU__RING_STATE),
	ROW(GET_VRING_BASE, EXACT(8), .ring = VHU__RING_STATE, .reply = true),
	ROW(SET_VRING_KICK, EXACT(8), .ring = VHU__RING_U64,
		.fds = VHU__FD_U64_NOFD),
	ROW(SET_VRING_CALL, EXACT(8), .ring = VHU__RING_U64,
		.fds = VHU__FD_U64_NOFD),
	ROW(SET_VRING_ERR, EXACT(8), .ring = VHU__RING_U64,
		.fds = VHU__FD_U64_NOFD),
	ROW(GET_PROTOCOL_FEATURES, NONE, VF(PROTOCOL_FEATURES), .reply = true),
	ROW(SET_PROTOCOL_FEATURES, EXACT(8), VF(PROTOCOL_FEATURES)),
	ROW(GET_QUEUE_NUM, NONE, PF(MQ), .reply = true),
	ROW(SET_VRING_ENABLE, EXACT(8), .ring = VHU__RING_STATE,
		VALUE(NUM_MAX, 1)),
	ROW(SEND_RARP, EXACT(8), PF(RARP)),
	ROW(NET_SET_MTU, EXACT(8), PF(MTU)),
	ROW(SET_BACKEND_REQ_FD, NONE, .fds = VHU__FD_ONE, PF(BACKEND_REQ)),
	/* Offered only to a device that asks for ACCESS_PLATFORM; the
	 * handler also wants it negotiated.  vhost-user.rst: always a u64
	 * answer, 0 for success. */
	ROW(IOTLB_MSG, EXACT(sizeof(struct vhu_iotlb_msg)), VF(ACCESS_PLATFORM),
		.reply = true),
	ROW(SET_VRING_ENDIAN, EXACT(8), .ring = VHU__RING_STATE,
		PF(CROSS_ENDIAN)),
	/* The front-end's payload bytes mean nothing for a read: only the
	 * 12-byte head is required; the handler answers size 0 for a bad
	 * window (seed: "zero length of payload to indicate an error"). */
	ROW(GET_CONFIG, RANGE(VHU_CONFIG_HDR_SIZE, sizeof(struct vhu_config)),
		PF(CONFIG), .reply = true),
	ROW(SET_CONFIG, .payload = VHU__P_CONFIG, PF(CONFIG)),
	ROW(CREATE_CRYPTO_SESSION, RANGE(0, VHU_MAX_PAYLOAD), PF(CRYPTO_SESSION),
		.reply = true),
	ROW(CLOSE_CRYPTO_SESSION, EXACT(8), PF(CRYPTO_SESSION)),
	ROW(POSTCOPY_ADVISE, NONE, PF(PAGEFAULT), .reply = true),
	ROW(POSTCOPY_LISTEN, NONE, PF(PAGEFAULT)),
	ROW(POSTCOPY_END, NONE, PF(PAGEFAULT), .reply = true),
	/* The spec's 20 bytes, or QEMU's 24 (its struct is not packed, so
	 * its size rounds up to 8); nothing in between. */
	ROW(GET_INFLIGHT_FD, EITHER(sizeof(struct vhu_inflight), 24),
		PF(INFLIGHT_SHMFD), .reply = true),
	ROW(SET_INFLIGHT_FD, EITHER(sizeof(struct vhu_inflight), 24),
		.fds = VHU__FD_ONE, PF(INFLIGHT_SHMFD)),
	ROW(GPU_SET_SOCKET, NONE, .fds = VHU__FD_ONE),
	ROW(RESET_DEVICE, NONE, PF(RESET_DEVICE)),
	ROW(VRING_KICK, EXACT(8), .ring = VHU__RING_STATE,
		PF(INBAND_NOTIFICATIONS)),
	ROW(GET_MAX_MEM_SLOTS, NONE, PF(CONFIGURE_MEM_SLOTS), .reply = true),
	ROW(ADD_MEM_REG, EXACT(sizeof(struct vhu_mem_single)),
		.fds = VHU__FD_ONE, PF(CONFIGURE_MEM_SLOTS)),
	/* QEMU attaches the region's fd to REM_MEM_REG too; it is closed. */
	ROW(REM_MEM_REG, EXACT(sizeof(struct vhu_mem_single)),
		.fds = VHU__FD_OPTIONAL, PF(CONFIGURE_MEM_SLOTS)),
	/* virtio 1.2, 2.1: the device status field is one byte. */
	ROW(SET_STATUS, EXACT(8), PF(STATUS), VALUE(U64_MAX, 0xff)),
	ROW(GET_STATUS, NONE, PF(STATUS), .reply = true),
	ROW(GET_SHARED_OBJECT, EXACT(16), PF(SHARED_OBJECT), .reply = true),
	ROW(SET_DEVICE_STATE_FD, EXACT(8), .fds = VHU__FD_ONE, PF(DEVICE_STATE),
		.reply = true),
	ROW(CHECK_DEVICE_STATE, NONE, PF(DEVICE_STATE), .reply = true),
	ROW(GET_SHMEM_CONFIG, NONE, PF(SHMEM), .reply = true),
	ROW(GET_VRING_BASE_SKIP_DRAIN, EXACT(8), .ring = VHU__RING_STATE,
		PF(GET_VRING_BASE_SKIP_DRAIN), .reply = true),
};

const struct vhu__req_info *vhu__req_lookup(uint32_t id)
{
	if (id == 0 || id >= VHU_REQ_MAX || !table[id].name)
		return NULL;
	return &table[id];
}

static int check_payload(const struct vhu__req_info *in,
			 const struct vhu_msg *msg, const char **why)
{
	uint32_t sz = msg->hdr.size;

	switch (in->payload) {
	case VHU__P_NONE:
		if (sz != 0)
			goto bad;
		return 0;
	case VHU__P_EXACT:
		if (sz != in->size)
			goto bad;
		return 0;
	case VHU__P_RANGE:
		if (sz < in->size || sz > in->size_max)
			goto bad;
		return 0;
	case VHU__P_EITHER:
		if (sz != in->size && sz != in->size_max)
			goto bad;
		return 0;
	case VHU__P_CONFIG:
		/* The 12-byte head first, then its size field (seed: size
		 * bytes follow; at most 256). */
		if (sz < VHU_CONFIG_HDR_SIZE)
			goto bad;
		if (msg->p.config.size > VHU_MAX_CONFIG_SIZE ||
		    sz != VHU_CONFIG_HDR_SIZE + msg->p.config.size)
			goto bad;
		return 0;
	case VHU__P_MEMTABLE:
		/* vhost-user.rst "Memory regions description": nregions then
		 * padding then nregions regions; at most 8 (one fd each). */
		if (sz < 8)
			goto bad;
		if (msg->p.mem.nregions < 1 ||
		    msg->p.mem.nregions > VHU_MAX_REGIONS) {
			*why = "nregions out of range 1..8";
			return -EINVAL;
		}
		if (sz != 8 + 32u * msg->p.mem.nregions)
			goto bad;
		return 0;
	}
bad:
	*why = "wrong payload size";
	return -EINVAL;
}

static int check_ring(const struct vhu__req_info *in, const struct vhu_msg *msg,
		      unsigned num_queues, unsigned *ring, const char **why)
{
	uint64_t idx;

	switch (in->ring) {
	case VHU__RING_NONE:
		*ring = 0;
		return 0;
	case VHU__RING_STATE:
		idx = msg->p.state.index;
		break;
	case VHU__RING_ADDR:
		idx = msg->p.addr.index;
		break;
	case VHU__RING_U64:
		/* vhost-user.rst: bits 0-7 index, bit 8 "no fd"; the rest is
		 * reserved and must be zero. */
		if (msg->p.u64 & ~(VHU_VRING_IDX_MASK | VHU_VRING_NOFD)) {
			*why = "reserved bits set in vring u64";
			return -EINVAL;
		}
		idx = msg->p.u64 & VHU_VRING_IDX_MASK;
		break;
	default:
		*why = "bad table entry";
		return -EINVAL;
	}
	/* Compare the full-width value: never truncate before checking. */
	if (idx >= num_queues) {
		*why = "ring index out of range";
		return -ERANGE;
	}
	*ring = (unsigned)idx;
	return 0;
}

static int check_value(const struct vhu__req_info *in,
		       const struct vhu_msg *msg, const char **why)
{
	switch (in->value) {
	case VHU__V_ANY:
		return 0;
	case VHU__V_U64_MAX:
		if (msg->p.u64 > in->value_max)
			break;
		return 0;
	case VHU__V_NUM_MAX:
		if (msg->p.state.num > in->value_max)
			break;
		return 0;
	case VHU__V_ADDR_FLAGS:
		if (msg->p.addr.flags & ~in->value_max)
			break;
		return 0;
	default:
		*why = "bad table entry";
		return -EINVAL;
	}
	*why = "value out of range";
	return -EINVAL;
}

static int check_fds(const struct vhu__req_info *in, const struct vhu_msg *msg,
		     unsigned nfds, const char **why)
{
	unsigned want_min, want_max;

	switch (in->fds) {
	case VHU__FD_NONE:
		want_min = want_max = 0;
		break;
	case VHU__FD_U64_NOFD:
		want_min = want_max = (msg->p.u64 & VHU_VRING_NOFD) ? 0 : 1;
		break;
	case VHU__FD_PER_REGION:
		want_min = want_max = msg->p.mem.nregions;
		break;
	case VHU__FD_ONE:
		want_min = want_max = 1;
		break;
	case VHU__FD_OPTIONAL:
		want_min = 0;
		want_max = 1;
		break;
	default:
		*why = "bad table entry";
		return -EINVAL;
	}
	if (nfds < want_min || nfds > want_max) {
		*why = "wrong number of fds";
		return -EBADF;
	}
	return 0;
}

int vhu__msg_validate(const struct vhu__msg_ctx *ctx, const struct vhu_msg *msg,
		      unsigned nfds, const struct vhu__req_info **info,
		      unsigned *ring, const char **why)
{
	uint32_t flags = msg->hdr.flags;
	const struct vhu__req_info *in;
	int r;

	*info = NULL;
	*ring = 0;
	*why = "";

	/* vhost-user.rst "Header": version 1 in bits 0-1, REPLY only on
	 * replies, NEED_REPLY optional; other bits are reserved. */
	if ((flags & VHU_MSG_VERSION_MASK) != VHU_MSG_VERSION) {
		*why = "bad protocol version";
		return -EPROTO;
	}
	if (flags & VHU_MSG_REPLY) {
		*why = "REPLY flag set on a request";
		return -EPROTO;
	}
	if (flags & ~VHU_MSG_KNOWN_FLAGS) {
		*why = "reserved header flag bits set";
		return -EPROTO;
	}

	in = vhu__req_lookup(msg->hdr.request);
	if (!in) {
		*why = "unknown request";
		return -ENOSYS;
	}
	*info = in;
	if (!(ctx->served & VHU_BIT(msg->hdr.request))) {
		*why = "request not supported";
		return -EOPNOTSUPP;
	}

	switch (in->gate) {
	case VHU__GATE_PROTOCOL:
		if (!(ctx->protocol_acked & VHU_BIT(in->gate_bit))) {
			*why = "protocol feature not negotiated";
			return -EPERM;
		}
		break;
	case VHU__GATE_VIRTIO:
		if (!(ctx->virtio_offered & VHU_BIT(in->gate_bit))) {
			*why = "virtio feature not offered";
			return -EPERM;
		}
		break;
	default:
		break;
	}

	r = check_payload(in, msg, why);
	if (r < 0)
		return r;
	r = check_ring(in, msg, ctx->num_queues, ring, why);
	if (r < 0)
		return r;
	r = check_fds(in, msg, nfds, why);
	if (r < 0)
		return r;
	return check_value(in, msg, why);
}
