/* SPDX-License-Identifier: MIT */
/*
 * vhost-user wire format: message header, payloads and constants.
 * Host byte order, packed. Normative text: QEMU docs/interop/vhost-user.rst.
 * No code here, only layout.
 */
#ifndef VHU_PROTO_H
#define VHU_PROTO_H

#include <stdint.h>

#define VHU_PACKED __attribute__((packed))

/* Header flags (vhost-user.rst "Header") */
#define VHU_MSG_VERSION      0x1u
#define VHU_MSG_VERSION_MASK 0x3u
#define VHU_MSG_REPLY        0x4u
#define VHU_MSG_NEED_REPLY   0x8u
#define VHU_MSG_KNOWN_FLAGS  (VHU_MSG_VERSION_MASK | VHU_MSG_REPLY | VHU_MSG_NEED_REPLY)

#define VHU_MAX_FDS          8      /* at most 8 fds per message */
#define VHU_MAX_REGIONS      8      /* SET_MEM_TABLE limit */
#define VHU_MAX_MEM_SLOTS    509    /* advertised by GET_MAX_MEM_SLOTS */
#define VHU_MAX_CONFIG_SIZE  256    /* device config payload limit */
#define VHU_MAX_QUEUE_SIZE   32768
#define VHU_MAX_QUEUES       256    /* ring index lives in 8 bits of a u64 */

/* Front-end -> back-end requests */
enum vhu_req {
	VHU_REQ_NONE = 0,
	VHU_REQ_GET_FEATURES = 1,
	VHU_REQ_SET_FEATURES = 2,
	VHU_REQ_SET_OWNER = 3,
	VHU_REQ_RESET_OWNER = 4,
	VHU_REQ_SET_MEM_TABLE = 5,
	VHU_REQ_SET_LOG_BASE = 6,
	VHU_REQ_SET_LOG_FD = 7,
	VHU_REQ_SET_VRING_NUM = 8,
	VHU_REQ_SET_VRING_ADDR = 9,
	VHU_REQ_SET_VRING_BASE = 10,
	VHU_REQ_GET_VRING_BASE = 11,
	VHU_REQ_SET_VRING_KICK = 12,
	VHU_REQ_SET_VRING_CALL = 13,
	VHU_REQ_SET_VRING_ERR = 14,
	VHU_REQ_GET_PROTOCOL_FEATURES = 15,
	VHU_REQ_SET_PROTOCOL_FEATURES = 16,
	VHU_REQ_GET_QUEUE_NUM = 17,
	VHU_REQ_SET_VRING_ENABLE = 18,
	VHU_REQ_SEND_RARP = 19,
	VHU_REQ_NET_SET_MTU = 20,
	VHU_REQ_SET_BACKEND_REQ_FD = 21,
	VHU_REQ_IOTLB_MSG = 22,
	VHU_REQ_SET_VRING_ENDIAN = 23,
	VHU_REQ_GET_CONFIG = 24,
	VHU_REQ_SET_CONFIG = 25,
	VHU_REQ_CREATE_CRYPTO_SESSION = 26,
	VHU_REQ_CLOSE_CRYPTO_SESSION = 27,
	VHU_REQ_POSTCOPY_ADVISE = 28,
	VHU_REQ_POSTCOPY_LISTEN = 29,
	VHU_REQ_POSTCOPY_END = 30,
	VHU_REQ_GET_INFLIGHT_FD = 31,
	VHU_REQ_SET_INFLIGHT_FD = 32,
	VHU_REQ_GPU_SET_SOCKET = 33,
	VHU_REQ_RESET_DEVICE = 34,
	VHU_REQ_VRING_KICK = 35,
	VHU_REQ_GET_MAX_MEM_SLOTS = 36,
	VHU_REQ_ADD_MEM_REG = 37,
	VHU_REQ_REM_MEM_REG = 38,
	VHU_REQ_SET_STATUS = 39,
	VHU_REQ_GET_STATUS = 40,
	VHU_REQ_GET_SHARED_OBJECT = 41,
	VHU_REQ_SET_DEVICE_STATE_FD = 42,
	VHU_REQ_CHECK_DEVICE_STATE = 43,
	VHU_REQ_GET_SHMEM_CONFIG = 44,
	VHU_REQ_GET_VRING_BASE_SKIP_DRAIN = 45,
	VHU_REQ_MAX = 46 /* one past the last known id */
};

/* Back-end -> front-end requests (on the SET_BACKEND_REQ_FD channel) */
enum vhu_backend_req {
	VHU_BREQ_NONE = 0,
	VHU_BREQ_IOTLB_MSG = 1,
	VHU_BREQ_CONFIG_CHANGE_MSG = 2,
	VHU_BREQ_VRING_HOST_NOTIFIER_MSG = 3,
	VHU_BREQ_VRING_CALL = 4,
	VHU_BREQ_VRING_ERR = 5,
	VHU_BREQ_SHARED_OBJECT_ADD = 6,
	VHU_BREQ_SHARED_OBJECT_REMOVE = 7,
	VHU_BREQ_SHARED_OBJECT_LOOKUP = 8,
	VHU_BREQ_SHMEM_MAP = 9,
	VHU_BREQ_SHMEM_UNMAP = 10,
	VHU_BREQ_MAX = 11
};

struct vhu_msg_hdr {
	uint32_t request;
	uint32_t flags;
	uint32_t size;
} VHU_PACKED;

struct vhu_vring_state {
	uint32_t index;
	uint32_t num;
} VHU_PACKED;

#define VHU_VRING_F_LOG 0x1u
struct vhu_vring_addr {
	uint32_t index;
	uint32_t flags;
	uint64_t desc_user_addr;
	uint64_t used_user_addr;
	uint64_t avail_user_addr;
	uint64_t log_guest_addr;
} VHU_PACKED;

struct vhu_mem_region {
	uint64_t guest_phys_addr;
	uint64_t memory_size;
	uint64_t userspace_addr;
	uint64_t mmap_offset;
} VHU_PACKED;

struct vhu_mem_table {
	uint32_t nregions;
	uint32_t padding;
	struct vhu_mem_region regions[VHU_MAX_REGIONS];
} VHU_PACKED;

struct vhu_mem_single {
	uint64_t padding;
	struct vhu_mem_region region;
} VHU_PACKED;

struct vhu_log {
	uint64_t mmap_size;
	uint64_t mmap_offset;
} VHU_PACKED;

#define VHU_CONFIG_HDR_SIZE 12u
#define VHU_CONFIG_FLAG_WRITABLE  0x0u /* a guest write */
#define VHU_CONFIG_FLAG_MIGRATION 0x1u /* live-migration restore */
struct vhu_config {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
	uint8_t payload[VHU_MAX_CONFIG_SIZE];
} VHU_PACKED;

/* 20 bytes packed as vhost-user.rst draws it; QEMU sends and expects the
 * unpacked C layout, 24 bytes (4 bytes of tail padding): both are served,
 * answering in the size asked (src/backend-inflight.c). */
struct vhu_inflight {
	uint64_t mmap_size;
	uint64_t mmap_offset;
	uint16_t num_queues;
	uint16_t queue_size;
} VHU_PACKED;

#define VHU_VRING_AREA_NOFD (1ull << 8)
struct vhu_vring_area {
	uint64_t u64;
	uint64_t size;
	uint64_t offset;
} VHU_PACKED;

/* IOTLB_MSG and BACKEND_IOTLB_MSG payload (vhost-user.rst "IOMMU
 * support"): the kernel's struct vhost_iotlb_msg, 32 bytes with its tail
 * padding.  iova/size in I/O virtual addresses, uaddr in the memory
 * table's userspace_addr space. */
#define VHU_IOTLB_PERM_RO 1u
#define VHU_IOTLB_PERM_WO 2u
#define VHU_IOTLB_PERM_RW 3u
#define VHU_IOTLB_MISS         1u
#define VHU_IOTLB_UPDATE       2u
#define VHU_IOTLB_INVALIDATE   3u
#define VHU_IOTLB_ACCESS_FAIL  4u
struct vhu_iotlb_msg {
	uint64_t iova;
	uint64_t size;
	uint64_t uaddr;
	uint8_t perm;
	uint8_t type;
	uint8_t padding[6];
} VHU_PACKED;

/* SET_VRING_KICK/CALL/ERR payload: bits 0-7 index, bit 8 "no fd" */
#define VHU_VRING_IDX_MASK 0xffull
#define VHU_VRING_NOFD     (1ull << 8)

/* Largest payload any request may carry: the memory table (8 + 8*32 = 264) */
union vhu_msg_payload {
	uint64_t u64;
	struct vhu_vring_state state;
	struct vhu_vring_addr addr;
	struct vhu_mem_table mem;
	struct vhu_mem_single mem_reg;
	struct vhu_log log;
	struct vhu_config config;
	struct vhu_inflight inflight;
	struct vhu_vring_area area;
	struct vhu_iotlb_msg iotlb;
};

struct vhu_msg {
	struct vhu_msg_hdr hdr;
	union vhu_msg_payload p;
} VHU_PACKED;

_Static_assert(sizeof(struct vhu_msg_hdr) == 12, "header");
_Static_assert(sizeof(struct vhu_vring_state) == 8, "vring state");
_Static_assert(sizeof(struct vhu_vring_addr) == 40, "vring addr");
_Static_assert(sizeof(struct vhu_mem_region) == 32, "region");
_Static_assert(sizeof(struct vhu_mem_table) == 8 + 32 * 8, "mem table");
_Static_assert(sizeof(struct vhu_mem_single) == 40, "single region");
_Static_assert(sizeof(struct vhu_log) == 16, "log");
_Static_assert(sizeof(struct vhu_config) == 12 + 256, "config");
_Static_assert(sizeof(struct vhu_inflight) == 20, "inflight");
_Static_assert(sizeof(struct vhu_vring_area) == 24, "vring area");
_Static_assert(sizeof(struct vhu_iotlb_msg) == 32, "iotlb msg");

#define VHU_MAX_PAYLOAD ((uint32_t)sizeof(union vhu_msg_payload))

/* Split ring layout (virtio 1.2, 2.7) */
#define VHU_VRING_DESC_F_NEXT     1u
#define VHU_VRING_DESC_F_WRITE    2u
#define VHU_VRING_DESC_F_INDIRECT 4u
#define VHU_VRING_USED_F_NO_NOTIFY  1u
#define VHU_VRING_AVAIL_F_NO_INTERRUPT 1u

struct vhu_vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
} VHU_PACKED;

struct vhu_vring_used_elem {
	uint32_t id;
	uint32_t len;
} VHU_PACKED;

_Static_assert(sizeof(struct vhu_vring_desc) == 16, "desc");
_Static_assert(sizeof(struct vhu_vring_used_elem) == 8, "used elem");

#endif
