/* SPDX-License-Identifier: MIT */
/*
 * The back-end session shared by backend.c (connection, dispatch),
 * backend-mem.c, backend-vring.c and backend-dev.c (features, config,
 * status, back-end channel).
 */
#ifndef VHU_BACKEND_INTERNAL_H
#define VHU_BACKEND_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <vhu/backend.h>

#include "internal.h"
#include "msg.h"

/* Protocol features always offered, and everything implemented. */
#define VHU__PF_BASE                                                          \
	(VHU_BIT(VHU_PF_MQ) | VHU_BIT(VHU_PF_REPLY_ACK) |                     \
	 VHU_BIT(VHU_PF_BACKEND_REQ) | VHU_BIT(VHU_PF_CONFIGURE_MEM_SLOTS) |  \
	 VHU_BIT(VHU_PF_RESET_DEVICE) | VHU_BIT(VHU_PF_STATUS))
#define VHU__PF_IMPLEMENTED                                                   \
	(VHU__PF_BASE | VHU_BIT(VHU_PF_CONFIG) | VHU_BIT(VHU_PF_INFLIGHT_SHMFD) | \
	 VHU_BIT(VHU_PF_LOG_SHMFD))

/* virtio 1.2, 6: bits 24..49 belong to the transport; of those the
 * library serves only these. */
#define VHU__TRANSPORT_FIRST 24
#define VHU__TRANSPORT_LAST  49
#define VHU__TRANSPORT_OK                                                     \
	(VHU_BIT(VHU_F_NOTIFY_ON_EMPTY) | VHU_BIT(VHU_F_ANY_LAYOUT) |         \
	 VHU_BIT(VHU_F_INDIRECT_DESC) | VHU_BIT(VHU_F_EVENT_IDX) |            \
	 VHU_BIT(VHU_F_PROTOCOL_FEATURES) | VHU_BIT(VHU_F_VERSION_1) |        \
	 VHU_BIT(VHU_F_RING_PACKED) | VHU_BIT(VHU_F_LOG_ALL))

/* epoll tags: kind in the high 32 bits, ring index in the low ones. */
enum vhu__be_src {
	VHU__SRC_LISTEN = 1,
	VHU__SRC_CONN,
	VHU__SRC_CHAN,
	VHU__SRC_KICK,
	VHU__SRC_STALL,   /* timer: a partial message waited too long */
	VHU__SRC_IOTLB,   /* eventfd: a queue waits for a translation */
};

enum vhu__be_mode {
	VHU__MODE_NONE = 0,
	VHU__MODE_LISTEN,     /* listen() or listen_fd(): serves front-ends in turn */
	VHU__MODE_CONNECTED,  /* connected_fd(): one front-end, then done */
};

struct vhu_backend {
	struct vhu_device_ops ops;   /* copy; NULL members allowed */
	void *opaque;
	uint64_t dev_features;
	uint64_t dev_protocol_features;
	unsigned num_queues;
	unsigned max_queue_size;
	uint32_t config_size;
	uint8_t config_writable[VHU_MAX_CONFIG_SIZE];

	int epfd;
	enum vhu__be_mode mode;
	int listen_fd;
	int conn_fd;
	int chan_fd;              /* back-end channel (SET_BACKEND_REQ_FD) */
	char *path;               /* socket path we created, unlinked on free */
	bool ended;               /* connected_fd session lost its peer */
	/* Partial messages kept between vhu_backend_process() calls, and
	 * the timer that drops a peer which stops half-way (sock-rx.c). */
	struct vhu__rx conn_rx;
	struct vhu__rx chan_rx;
	int stall_fd;             /* timerfd in epfd */
	int stall_ms;             /* how long a message may stay partial */
	int64_t stall_due;        /* when the timer is armed for, -1 off */
	struct vhu_loop *loop;

	/* negotiated state, reset on disconnect */
	uint64_t offered_features;
	uint64_t offered_protocol;
	uint64_t features;
	uint64_t protocol;
	bool features_set;
	bool owner;
	uint8_t status;
	unsigned acks_pending;    /* CONFIG_CHANGE_MSGs waiting for an ack */

	struct vhu__mem mem;
	/* ACCESS_PLATFORM (backend-iotlb.c): what IOTLB_MSG updates; the
	 * queues translate through it while the feature is negotiated. */
	struct vhu__iotlb iotlb;
	int iotlb_miss_fd;        /* eventfd in epfd, the queues signal it */
	struct vhu_vq vqs[VHU_BACKEND_MAX_QUEUES];
	bool kick_watched[VHU_BACKEND_MAX_QUEUES]; /* kick fd in epfd */

	/* inflight region (backend-inflight.c), kept until the front-end goes */
	int inflight_fd;          /* owned, -1 none */
	void *inflight_addr;
	size_t inflight_size;
	int inflight_guard;       /* sigbus.c slot, -1 none */
	unsigned inflight_queues;
	unsigned inflight_queue_size;
	int reply_fd;             /* sent with the next reply, not owned */

	/* dirty log (backend-log.c), kept until the front-end goes */
	struct vhu__dirty_log log; /* bits NULL: none; signal_fd owned */
	void *log_map;
	size_t log_map_size;
	int log_guard;            /* sigbus.c slot, -1 none */
};

/* The request handlers (backend-*.c), paired with the requests in
 * backend-table.c.  Each runs only after vhu__msg_validate() passed. */
typedef int (*vhu__be_handler)(struct vhu_backend *b, struct vhu__req *req);
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
int vhu__be_set_log_base(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_set_log_fd(struct vhu_backend *b, struct vhu__req *req);
int vhu__be_iotlb_msg(struct vhu_backend *b, struct vhu__req *req);


/* A u64 reply body (the GET_* requests): always 0. */
static inline int vhu__be_reply_u64(struct vhu__req *req, uint64_t v)
{
	req->reply->hdr.size = sizeof(uint64_t);
	req->reply->p.u64 = v;
	return 0;
}

/* backend-table.c: the handler for a request id (NULL: not served), and
 * the mask of served ids for struct vhu__msg_ctx. */
vhu__be_handler vhu__be_handler_for(uint32_t id);
uint64_t vhu__be_served(void);

/* backend.c */
int vhu__be_epoll_add(struct vhu_backend *b, int fd, enum vhu__be_src src,
		      unsigned idx);
void vhu__be_epoll_del(struct vhu_backend *b, int fd);
void vhu__be_close_channel(struct vhu_backend *b, int64_t pending_result);
void vhu__be_read_channel(struct vhu_backend *b);

/* backend-vring.c */
/* Hand the queue to the device if it is ready and not yet started. */
void vhu__be_vq_try_start(struct vhu_backend *b, struct vhu_vq *vq);
/* Take a started queue back from the device. */
void vhu__be_vq_stop(struct vhu_backend *b, struct vhu_vq *vq);
/* Stop a started queue that the caller starts again at once, at the same
 * positions (vhu_vq_is_restarting() is true meanwhile); resume starts it
 * if it is ready and ends the restart either way. */
void vhu__be_vq_pause(struct vhu_backend *b, struct vhu_vq *vq);
void vhu__be_vq_resume(struct vhu_backend *b, struct vhu_vq *vq);
/* Recompute ring pointers after a size/address/memory change. */
int vhu__be_vq_remap(struct vhu_backend *b, struct vhu_vq *vq);
/* Stop every started queue (before a memory-table change). */
void vhu__be_stop_all(struct vhu_backend *b);
/* Remap every ring and start each one that is ready. */
void vhu__be_restart_all(struct vhu_backend *b);
/* Stop and reset every ring (fds closed, state initial). */
void vhu__be_reset_rings(struct vhu_backend *b);
/* A kick arrived on a watched kick fd. */
void vhu__be_kick(struct vhu_backend *b, unsigned idx);

/* backend-inflight.c */
/* Point a starting queue at its record (or NULL) and recover it. */
void vhu__be_inflight_attach(struct vhu_backend *b, struct vhu_vq *vq);
/* Unmap and close the region; no queue may be started. */
void vhu__be_inflight_drop(struct vhu_backend *b);

/* backend-log.c */
/* Point a starting queue at the log when LOG_ALL is negotiated. */
void vhu__be_log_attach(struct vhu_backend *b, struct vhu_vq *vq);
/* Stop the started queues (was[] records which) / start them again. */
void vhu__be_log_change_begin(struct vhu_backend *b, bool *was);
void vhu__be_log_change_end(struct vhu_backend *b, const bool *was);
/* Unmap the log and close its eventfd; no queue may be started. */
void vhu__be_log_drop(struct vhu_backend *b);

/* backend-iotlb.c */
/* The IOTLB a queue translates through under the negotiated features
 * (NULL: no ACCESS_PLATFORM). */
struct vhu__iotlb *vhu__be_vq_iotlb(struct vhu_backend *b);
/* Point a stopped queue at it (and at the miss eventfd), no wait
 * pending. */
void vhu__be_iotlb_attach(struct vhu_backend *b, struct vhu_vq *vq);
/* The miss eventfd fired: send each waiting queue's miss. */
void vhu__be_iotlb_misses(struct vhu_backend *b);
/* A ring that did not map with ACCESS_PLATFORM: ask the front-end
 * (BACKEND_IOTLB_MSG miss) for each ring area the IOTLB lacks a
 * translation of; true when one lacked one (the ring then waits for an
 * update, vhu__be_iotlb_msg()), false when the fault is elsewhere. */
bool vhu__be_iotlb_ring_miss(struct vhu_backend *b, struct vhu_vq *vq);

/* backend-dev.c */
/* The full device reset: queues stopped, rings reset, ops->reset. */
void vhu__be_device_reset(struct vhu_backend *b);

#endif
