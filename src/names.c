/* SPDX-License-Identifier: MIT */
/* Names of feature bits and request ids, for logs and the command-line
 * tool.  Front-end request names come from the request table (msg.c). */
#include "internal.h"
#include "msg.h"

const char *vhu_feature_name(unsigned bit)
{
	/* virtio 1.2, 6 "Reserved Feature Bits", plus vhost's bit 30. */
	switch (bit) {
	case VHU_F_NOTIFY_ON_EMPTY: return "NOTIFY_ON_EMPTY";
	case VHU_F_ANY_LAYOUT: return "ANY_LAYOUT";
	case VHU_F_INDIRECT_DESC: return "RING_INDIRECT_DESC";
	case VHU_F_EVENT_IDX: return "RING_EVENT_IDX";
	case VHU_F_PROTOCOL_FEATURES: return "PROTOCOL_FEATURES";
	case VHU_F_VERSION_1: return "VERSION_1";
	case VHU_F_ACCESS_PLATFORM: return "ACCESS_PLATFORM";
	case VHU_F_RING_PACKED: return "RING_PACKED";
	case VHU_F_IN_ORDER: return "IN_ORDER";
	default: return NULL;
	}
}

static const char *const protocol_names[] = {
	[VHU_PF_MQ] = "MQ",
	[VHU_PF_LOG_SHMFD] = "LOG_SHMFD",
	[VHU_PF_RARP] = "RARP",
	[VHU_PF_REPLY_ACK] = "REPLY_ACK",
	[VHU_PF_MTU] = "MTU",
	[VHU_PF_BACKEND_REQ] = "BACKEND_REQ",
	[VHU_PF_CROSS_ENDIAN] = "CROSS_ENDIAN",
	[VHU_PF_CRYPTO_SESSION] = "CRYPTO_SESSION",
	[VHU_PF_PAGEFAULT] = "PAGEFAULT",
	[VHU_PF_CONFIG] = "CONFIG",
	[VHU_PF_BACKEND_SEND_FD] = "BACKEND_SEND_FD",
	[VHU_PF_HOST_NOTIFIER] = "HOST_NOTIFIER",
	[VHU_PF_INFLIGHT_SHMFD] = "INFLIGHT_SHMFD",
	[VHU_PF_RESET_DEVICE] = "RESET_DEVICE",
	[VHU_PF_INBAND_NOTIFICATIONS] = "INBAND_NOTIFICATIONS",
	[VHU_PF_CONFIGURE_MEM_SLOTS] = "CONFIGURE_MEM_SLOTS",
	[VHU_PF_STATUS] = "STATUS",
	[VHU_PF_XEN_MMAP] = "XEN_MMAP",
	[VHU_PF_SHARED_OBJECT] = "SHARED_OBJECT",
	[VHU_PF_DEVICE_STATE] = "DEVICE_STATE",
	[VHU_PF_GET_VRING_BASE_INFLIGHT] = "GET_VRING_BASE_INFLIGHT",
	[VHU_PF_GPA_ADDRESSES] = "GPA_ADDRESSES",
	[VHU_PF_SHMEM] = "SHMEM",
	[VHU_PF_GET_VRING_BASE_SKIP_DRAIN] = "GET_VRING_BASE_SKIP_DRAIN",
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
	[VHU_BREQ_IOTLB_MSG] = "IOTLB_MSG",
	[VHU_BREQ_CONFIG_CHANGE_MSG] = "CONFIG_CHANGE_MSG",
	[VHU_BREQ_VRING_HOST_NOTIFIER_MSG] = "VRING_HOST_NOTIFIER_MSG",
	[VHU_BREQ_VRING_CALL] = "VRING_CALL",
	[VHU_BREQ_VRING_ERR] = "VRING_ERR",
	[VHU_BREQ_SHARED_OBJECT_ADD] = "SHARED_OBJECT_ADD",
	[VHU_BREQ_SHARED_OBJECT_REMOVE] = "SHARED_OBJECT_REMOVE",
	[VHU_BREQ_SHARED_OBJECT_LOOKUP] = "SHARED_OBJECT_LOOKUP",
	[VHU_BREQ_SHMEM_MAP] = "SHMEM_MAP",
	[VHU_BREQ_SHMEM_UNMAP] = "SHMEM_UNMAP",
};

const char *vhu_backend_request_name(uint32_t id)
{
	if (id >= VHU_BREQ_MAX)
		return NULL;
	return backend_names[id];
}
