/* SPDX-License-Identifier: MIT */
/* Names of feature bits and request ids, for logs and the command-line
 * tool.  Front-end request names come from the request table (msg.c). */
#include "internal.h"
#include "msg.h"

/* A table row: the constant's name after its prefix. */
#define PF(n) [VHU_PF_##n] = #n
#define BR(n) [VHU_BREQ_##n] = #n

const char *vhu_feature_name(unsigned bit)
{
	/* virtio 1.3, 6 "Reserved Feature Bits", plus vhost's bits 26
	 * (VHOST_F_LOG_ALL) and 30 (VHOST_USER_F_PROTOCOL_FEATURES); named
	 * as the VHU_F_ constants are. */
	switch (bit) {
	case VHU_F_NOTIFY_ON_EMPTY: return "NOTIFY_ON_EMPTY";
	case VHU_F_LOG_ALL: return "LOG_ALL";
	case VHU_F_ANY_LAYOUT: return "ANY_LAYOUT";
	case VHU_F_INDIRECT_DESC: return "INDIRECT_DESC";
	case VHU_F_EVENT_IDX: return "EVENT_IDX";
	case VHU_F_PROTOCOL_FEATURES: return "PROTOCOL_FEATURES";
	case VHU_F_VERSION_1: return "VERSION_1";
	case VHU_F_ACCESS_PLATFORM: return "ACCESS_PLATFORM";
	case VHU_F_RING_PACKED: return "RING_PACKED";
	case VHU_F_IN_ORDER: return "IN_ORDER";
	case VHU_F_ORDER_PLATFORM: return "ORDER_PLATFORM";
	case VHU_F_SR_IOV: return "SR_IOV";
	case VHU_F_NOTIFICATION_DATA: return "NOTIFICATION_DATA";
	case VHU_F_NOTIF_CONFIG_DATA: return "NOTIF_CONFIG_DATA";
	case VHU_F_RING_RESET: return "RING_RESET";
	case VHU_F_ADMIN_VQ: return "ADMIN_VQ";
	default: return NULL;
	}
}

static const char *const protocol_names[] = {
	PF(MQ), PF(LOG_SHMFD), PF(RARP), PF(REPLY_ACK), PF(MTU),
	PF(BACKEND_REQ), PF(CROSS_ENDIAN), PF(CRYPTO_SESSION), PF(PAGEFAULT),
	PF(CONFIG), PF(BACKEND_SEND_FD), PF(HOST_NOTIFIER), PF(INFLIGHT_SHMFD),
	PF(RESET_DEVICE), PF(INBAND_NOTIFICATIONS), PF(CONFIGURE_MEM_SLOTS),
	PF(STATUS), PF(XEN_MMAP), PF(SHARED_OBJECT), PF(DEVICE_STATE),
	PF(GET_VRING_BASE_INFLIGHT), PF(GPA_ADDRESSES), PF(SHMEM),
	PF(GET_VRING_BASE_SKIP_DRAIN),
};

const char *vhu_protocol_feature_name(unsigned bit)
{
	if (bit >= VHU__ARRAY_SIZE(protocol_names))
		return NULL;
	return protocol_names[bit];
}

const char *vhu_request_name(uint32_t id)
{
	const struct vhu__req_info *in = vhu__req_lookup(id);
	return in ? in->name : NULL;
}

static const char *const backend_names[VHU_BREQ_MAX] = {
	BR(IOTLB_MSG), BR(CONFIG_CHANGE_MSG), BR(VRING_HOST_NOTIFIER_MSG),
	BR(VRING_CALL), BR(VRING_ERR), BR(SHARED_OBJECT_ADD),
	BR(SHARED_OBJECT_REMOVE), BR(SHARED_OBJECT_LOOKUP), BR(SHMEM_MAP),
	BR(SHMEM_UNMAP),
};

const char *vhu_backend_request_name(uint32_t id)
{
	if (id >= VHU_BREQ_MAX)
		return NULL;
	return backend_names[id];
}
