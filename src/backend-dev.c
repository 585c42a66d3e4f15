/* SPDX-License-Identifier: MIT */
/*
 * Device-level messages: feature negotiation, ownership, reset, device
 * status, queue count, the back-end channel set-up, and the device
 * configuration space (GET_CONFIG / SET_CONFIG, the seed document).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "backend-internal.h"

void vhu__be_device_reset(struct vhu_backend *b)
{
	vhu__be_reset_rings(b);
	b->status = 0;
	if (b->ops.reset)
		b->ops.reset(b->opaque);
}

int vhu__be_get_features(struct vhu_backend *b, struct vhu__req *req)
{
	return vhu__be_reply_u64(req, b->offered_features);
}

int vhu__be_set_features(struct vhu_backend *b, struct vhu__req *req)
{
	uint64_t f = req->msg->p.u64;

	/* The driver may only accept what the device offered. */
	if (f & ~b->offered_features) {
		vhu__log_rl(VHU_LOG_WARN, "SET_FEATURES 0x%llx: not offered: 0x%llx",
			    (unsigned long long)f,
			    (unsigned long long)(f & ~b->offered_features));
		return -EINVAL;
	}
	/* vhost-user.rst "IOMMU support": misses go on the back-end channel
	 * and updates want an answer (QEMU refuses the same). */
	uint64_t need = VHU_BIT(VHU_PF_REPLY_ACK) | VHU_BIT(VHU_PF_BACKEND_REQ);
	if ((f & VHU_BIT(VHU_F_ACCESS_PLATFORM)) &&
	    (b->protocol & need) != need) {
		vhu__log_rl(VHU_LOG_WARN, "SET_FEATURES 0x%llx: ACCESS_PLATFORM "
			    "needs the REPLY_ACK and BACKEND_REQ protocol "
			    "features: refused", (unsigned long long)f);
		return -EINVAL;
	}
	bool running = false;
	for (unsigned i = 0; i < b->num_queues; i++)
		running |= b->vqs[i].started;
	if (running && b->features_set) {
		/* vhost-user.rst "Migration": LOG_ALL is switched while the
		 * rings run; nothing else may change under them. */
		uint64_t diff = f ^ b->features;
		if (diff & ~VHU_BIT(VHU_F_LOG_ALL)) {
			vhu__log_rl(VHU_LOG_WARN, "SET_FEATURES 0x%llx while "
				    "rings run changes 0x%llx: refused",
				    (unsigned long long)f,
				    (unsigned long long)diff);
			return -EBUSY;
		}
		if (diff) {
			bool was[VHU_BACKEND_MAX_QUEUES];
			vhu__be_log_change_begin(b, was);
			b->features = f;
			vhu__be_log_change_end(b, was);
			vhu__info("dirty logging %s",
				  (f & VHU_BIT(VHU_F_LOG_ALL)) ? "on" : "off");
		}
		/* Bit 26 is the transport's, not the device's: the device's
		 * view (e.g. vhu-blk's cache mode) is left alone. */
		return 0;
	}
	b->features = f;
	b->features_set = true;
	/* Stopped queues pick these up when they start. */
	if (b->ops.features_set)
		b->ops.features_set(b->opaque, f);
	return 0;
}

int vhu__be_set_owner(struct vhu_backend *b, struct vhu__req *req)
{
	b->owner = true;
	return 0;
}

int vhu__be_reset_owner(struct vhu_backend *b, struct vhu__req *req)
{
	/* Deprecated (vhost-user.rst): served as a full device reset that
	 * also forgets ownership and the negotiated features. */
	vhu__be_reset_device(b, req);
	b->owner = false;
	b->features = 0;
	b->features_set = false;
	return 0;
}

int vhu__be_reset_device(struct vhu_backend *b, struct vhu__req *req)
{
	/* vhost-user.rst RESET_DEVICE: disable all rings and reset the
	 * device; ownership and the memory table stay. */
	vhu__be_device_reset(b);
	if (b->ops.device_reset)
		b->ops.device_reset(b->opaque);
	return 0;
}

int vhu__be_get_protocol_features(struct vhu_backend *b, struct vhu__req *req)
{
	return vhu__be_reply_u64(req, b->offered_protocol);
}

int vhu__be_set_protocol_features(struct vhu_backend *b, struct vhu__req *req)
{
	uint64_t f = req->msg->p.u64;

	if (f & ~b->offered_protocol) {
		vhu__log_rl(VHU_LOG_WARN,
			    "SET_PROTOCOL_FEATURES 0x%llx: not offered: 0x%llx",
			    (unsigned long long)f,
			    (unsigned long long)(f & ~b->offered_protocol));
		return -EINVAL;
	}
	b->protocol = f;
	return 0;
}

int vhu__be_get_queue_num(struct vhu_backend *b, struct vhu__req *req)
{
	return vhu__be_reply_u64(req, b->num_queues);
}

int vhu__be_set_backend_req_fd(struct vhu_backend *b, struct vhu__req *req)
{
	int fd = req->fds[0];
	int r = vhu__set_nonblock(fd);
	if (r < 0)
		return r;
	/* A new channel replaces the old one; acks owed on the old one
	 * will not come. */
	vhu__be_close_channel(b, -ECONNRESET);
	r = vhu__be_epoll_add(b, fd, VHU__SRC_CHAN, 0);
	if (r < 0)
		return r;
	req->fds[0] = -1;
	b->chan_fd = fd;
	return 0;
}

int vhu__be_set_status(struct vhu_backend *b, struct vhu__req *req)
{
	uint64_t v = req->msg->p.u64;

	/* One byte (virtio 1.2, 2.1): checked by the table. */
	b->status = (uint8_t)v;
	if (b->ops.set_status)
		b->ops.set_status(b->opaque, b->status);
	return 0;
}

int vhu__be_get_status(struct vhu_backend *b, struct vhu__req *req)
{
	return vhu__be_reply_u64(req, b->status);
}

/* [offset, offset + size) inside the config space, size 1..256. */
static bool config_window_ok(const struct vhu_backend *b, uint32_t offset,
			     uint32_t size)
{
	uint32_t end;
	if (size == 0 || size > VHU_MAX_CONFIG_SIZE)
		return false;
	if (__builtin_add_overflow(offset, size, &end))
		return false;
	return end <= b->config_size;
}

int vhu__be_get_config(struct vhu_backend *b, struct vhu__req *req)
{
	const struct vhu_config *in = &req->msg->p.config;
	struct vhu_config *out = &req->reply->p.config;
	uint32_t offset = in->offset, size = in->size, hsz = req->msg->hdr.size;

	/* Seed: the reply has the request's offset/size/flags and exactly
	 * size bytes; size 0 tells the front-end the read failed.  The
	 * request's flags are echoed but otherwise ignored (some front-ends
	 * send 1 here). */
	out->offset = offset;
	out->flags = in->flags;
	out->size = 0;
	req->reply->hdr.size = VHU_CONFIG_HDR_SIZE;

	if (hsz != VHU_CONFIG_HDR_SIZE && hsz != VHU_CONFIG_HDR_SIZE + size) {
		vhu__log_rl(VHU_LOG_WARN, "GET_CONFIG: payload %u bytes for a "
			    "%u-byte read", hsz, size);
		return 0;
	}
	if (!config_window_ok(b, offset, size) || !b->ops.get_config) {
		vhu__log_rl(VHU_LOG_WARN, "GET_CONFIG offset %u size %u: outside "
			    "the %u-byte config space", offset, size,
			    b->config_size);
		return 0;
	}
	memset(out->payload, 0, size);
	int r = b->ops.get_config(b->opaque, offset, out->payload, size);
	if (r < 0) {
		vhu__log_rl(VHU_LOG_WARN, "GET_CONFIG offset %u size %u: %s",
			    offset, size, strerror(-r));
		return 0;
	}
	out->size = size;
	req->reply->hdr.size = VHU_CONFIG_HDR_SIZE + size;
	return 0;
}

int vhu__be_set_config(struct vhu_backend *b, struct vhu__req *req)
{
	const struct vhu_config *in = &req->msg->p.config;
	uint32_t offset = in->offset, size = in->size, flags = in->flags;

	/* Whatever the guest can make the front-end send must not cost the
	 * connection: refusals here are logged (and acked when asked). */
	req->soft_fail = true;
	if (!config_window_ok(b, offset, size)) {
		vhu__log_rl(VHU_LOG_WARN, "SET_CONFIG offset %u size %u: outside "
			    "the %u-byte config space", offset, size,
			    b->config_size);
		return -ERANGE;
	}
	switch (flags) {
	case VHU_CONFIG_FLAG_WRITABLE:
		/* Seed: "MUST NOT accept SET_CONFIG for read-only
		 * configuration space fields unless the live migration bit
		 * is set". */
		for (uint32_t i = 0; i < size; i++) {
			if (!b->config_writable[offset + i]) {
				vhu__log_rl(VHU_LOG_WARN,
					    "SET_CONFIG: byte %u is read-only",
					    offset + i);
				return -EACCES;
			}
		}
		break;
	case VHU_CONFIG_FLAG_MIGRATION:
		/* Restoring the whole space on a migration destination. */
		break;
	default:
		vhu__log_rl(VHU_LOG_WARN, "SET_CONFIG: unknown flags 0x%x", flags);
		return -EINVAL;
	}
	if (!b->ops.set_config)
		return -EOPNOTSUPP;
	uint8_t buf[VHU_MAX_CONFIG_SIZE];
	memcpy(buf, in->payload, size);
	int r = b->ops.set_config(b->opaque, offset, buf, size, flags);
	return r < 0 ? r : 0;
}
