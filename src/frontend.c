/* SPDX-License-Identifier: MIT */
/*
 * Front-end session: connection, handshake, request/reply matching,
 * configuration space and the back-end channel.
 *
 * Every reply is checked against what was asked (vhost-user.rst "Header":
 * a reply carries the request's id and flags REPLY | version 1; QEMU
 * rejects anything else, and so do we).  Once a reply was malformed or
 * late, the byte stream can no longer be trusted, so the session is
 * marked broken and every later request fails with -ENOTCONN.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "frontend-priv.h"

#define REPLY_FLAGS (VHU_MSG_VERSION | VHU_MSG_REPLY)

static bool has_pf(const struct vhu_fe *fe, unsigned bit)
{
	return fe->protocol & VHU_BIT(bit);
}

static int fail(struct vhu_fe *fe, int r)
{
	/* Framing errors poison the stream; a reported failure does not. */
	if (r != -EIO && r != -EOPNOTSUPP && r != -EINVAL)
		fe->broken = true;
	return r;
}

static int send_locked(struct vhu_fe *fe, uint32_t req, uint32_t flags,
		       const void *payload, uint32_t size, const int *fds,
		       unsigned nfds)
{
	struct vhu_msg m;
	if (size > VHU_MAX_PAYLOAD)
		return -EINVAL;
	memset(&m.hdr, 0, sizeof(m.hdr));
	m.hdr.request = req;
	m.hdr.flags = VHU_MSG_VERSION | flags;
	m.hdr.size = size;
	if (size)
		memcpy(&m.p, payload, size);
	return vhu__sock_send(fe->fd, &m, fds, nfds);
}

/* Receive the reply to req; checks id, flags and that no fd came along.
 * The payload size is the caller's to check. */
static int recv_reply_locked(struct vhu_fe *fe, uint32_t req, struct vhu_msg *m)
{
	int fds[VHU_MAX_FDS];
	unsigned nfds = 0;
	int r = vhu__sock_recv_timeout(fe->fd, m, fds, &nfds, fe->timeout_ms);
	if (r == 0)
		return -ECONNRESET;
	if (r == -EMSGSIZE)
		return -EPROTO;
	if (r < 0)
		return r;
	if (nfds) {
		vhu__close_fds(fds, nfds);
		vhu__warn("front-end: reply to %u carried %u fds", req, nfds);
		return -EPROTO;
	}
	if (m->hdr.request != req) {
		vhu__warn("front-end: reply id %u to request %u", m->hdr.request, req);
		return -EPROTO;
	}
	if (m->hdr.flags != REPLY_FLAGS) {
		vhu__warn("front-end: reply to %u has flags 0x%x", req, m->hdr.flags);
		return -EPROTO;
	}
	return 0;
}

/* What a request's reply means: 0, or -errno. */
typedef int (*reply_fn)(uint32_t req, const struct vhu_msg *m, void *arg);

/* One request under the lock: send it and, with on_reply, receive its
 * reply and judge it.  A failure goes through fail(); a broken connection
 * answers -ENOTCONN. */
static int exchange(struct vhu_fe *fe, uint32_t req, uint32_t flags,
		    const void *payload, uint32_t size, const int *fds,
		    unsigned nfds, reply_fn on_reply, void *arg)
{
	struct vhu_msg m;
	pthread_mutex_lock(&fe->lock);
	int r = -ENOTCONN;
	if (fe->broken)
		goto out;
	r = send_locked(fe, req, flags, payload, size, fds, nfds);
	if (r == 0 && on_reply) {
		r = recv_reply_locked(fe, req, &m);
		if (r == 0)
			r = on_reply(req, &m, arg);
	}
	if (r < 0)
		r = fail(fe, r);
out:
	pthread_mutex_unlock(&fe->lock);
	return r;
}

/* A REPLY_ACK: a u64, 0 for success. */
static int ack_reply(uint32_t req, const struct vhu_msg *m, void *arg)
{
	(void)arg;
	if (m->hdr.size != sizeof(uint64_t)) {
		vhu__warn("front-end: ack to %u has size %u", req, m->hdr.size);
		return -EPROTO;
	}
	return m->p.u64 == 0 ? 0 : -EIO;
}

int vhu__fe_cmd(struct vhu_fe *fe, uint32_t req, const void *payload,
		uint32_t size, const int *fds, unsigned nfds)
{
	bool ack = has_pf(fe, VHU_PF_REPLY_ACK);
	return exchange(fe, req, ack ? VHU_MSG_NEED_REPLY : 0, payload, size,
			fds, nfds, ack ? ack_reply : NULL, NULL);
}

/* Where a reply's body goes, and its size. */
struct reply_buf {
	void *p;
	uint32_t size;
};

static int copy_reply(uint32_t req, const struct vhu_msg *m, void *arg)
{
	const struct reply_buf *out = arg;
	if (m->hdr.size != out->size) {
		vhu__warn("front-end: reply to %u has size %u, want %u", req,
			  m->hdr.size, out->size);
		return -EPROTO;
	}
	memcpy(out->p, &m->p, out->size);
	return 0;
}

int vhu__fe_call(struct vhu_fe *fe, uint32_t req, const void *payload,
		 uint32_t size, void *reply, uint32_t reply_size)
{
	struct reply_buf out = { reply, reply_size };
	return exchange(fe, req, 0, payload, size, NULL, 0, copy_reply, &out);
}

/* An empty reply or a u64 0 (vhost-user.rst leaves it open). */
static int empty_or_ack(uint32_t req, const struct vhu_msg *m, void *arg)
{
	(void)req;
	(void)arg;
	if (m->hdr.size == sizeof(uint64_t))
		return m->p.u64 == 0 ? 0 : -EIO;
	return m->hdr.size != 0 ? -EPROTO : 0;
}

int vhu__fe_cmd_answered(struct vhu_fe *fe, uint32_t req, const void *payload,
			 uint32_t size, const int *fds, unsigned nfds)
{
	return exchange(fe, req, 0, payload, size, fds, nfds, empty_or_ack,
			NULL);
}

static int get_u64(struct vhu_fe *fe, uint32_t req, uint64_t *v)
{
	return vhu__fe_call(fe, req, NULL, 0, v, sizeof(*v));
}

static int dial(const char *path, int retry_ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	int64_t deadline = vhu__now_ms() + (retry_ms > 0 ? retry_ms : 0);
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		int e = errno;
		close(fd);
		if (e == EINTR)
			continue;
		if ((e != ENOENT && e != ECONNREFUSED && e != EAGAIN) ||
		    vhu__now_ms() >= deadline)
			return -e;
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

static int open_backend_channel(struct vhu_fe *fe)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	int r = vhu__set_nonblock(sv[0]);
	if (r == 0)
		r = vhu__fe_cmd(fe, VHU_REQ_SET_BACKEND_REQ_FD, NULL, 0, &sv[1], 1);
	close(sv[1]);
	if (r < 0) {
		close(sv[0]);
		return r;
	}
	fe->backend_fd = sv[0];
	return 0;
}

static int handshake(struct vhu_fe *fe)
{
	int r = get_u64(fe, VHU_REQ_GET_FEATURES, &fe->features_offered);
	if (r < 0)
		return r;
	if (fe->features_offered & VHU_BIT(VHU_F_PROTOCOL_FEATURES)) {
		r = get_u64(fe, VHU_REQ_GET_PROTOCOL_FEATURES,
			    &fe->protocol_offered);
		if (r < 0)
			return r;
		uint64_t want = fe->protocol_offered & VHU_FE_PROTOCOL_FEATURES &
				~fe->opts.protocol_features_disable;
		/* No NEED_REPLY yet: REPLY_ACK is what this negotiates. */
		pthread_mutex_lock(&fe->lock);
		r = send_locked(fe, VHU_REQ_SET_PROTOCOL_FEATURES, 0, &want,
				sizeof(want), NULL, 0);
		if (r < 0)
			r = fail(fe, r);
		pthread_mutex_unlock(&fe->lock);
		if (r < 0)
			return r;
		fe->protocol = want;
	}
	if (has_pf(fe, VHU_PF_MQ)) {
		uint64_t n;
		r = get_u64(fe, VHU_REQ_GET_QUEUE_NUM, &n);
		if (r < 0)
			return r;
		fe->queue_num = n > VHU_MAX_QUEUES ? VHU_MAX_QUEUES : (unsigned)n;
	}
	if (has_pf(fe, VHU_PF_CONFIGURE_MEM_SLOTS)) {
		uint64_t n;
		r = get_u64(fe, VHU_REQ_GET_MAX_MEM_SLOTS, &n);
		if (r < 0)
			return r;
		fe->max_mem_slots = n > VHU_MAX_MEM_SLOTS ? VHU_MAX_MEM_SLOTS
							  : (unsigned)n;
	}
	if (has_pf(fe, VHU_PF_BACKEND_REQ)) {
		r = open_backend_channel(fe);
		if (r < 0)
			return r;
	}
	return vhu__fe_cmd(fe, VHU_REQ_SET_OWNER, NULL, 0, NULL, 0);
}

/* What a program built against the first release (0.1) passes. */
#define FE_OPTS_SIZE_0_1 VHU__SIZE_THROUGH(struct vhu_fe_opts, no_add_mem_reg)

int vhu_fe_connect_fd_sized(struct vhu_fe **out, int fd,
			    const struct vhu_fe_opts *opts, size_t opts_size)
{
	struct vhu_fe_opts o = { 0 };
	*out = NULL;
	if (opts) {
		int r = vhu__struct_in(&o, sizeof(o), opts, opts_size,
				       FE_OPTS_SIZE_0_1);
		if (r < 0) {
			close(fd);
			return r;
		}
	}
	struct vhu_fe *fe = calloc(1, sizeof(*fe));
	if (!fe) {
		close(fd);
		return -ENOMEM;
	}
	pthread_mutex_init(&fe->lock, NULL);
	fe->fd = fd;
	fe->backend_fd = -1;
	fe->log_fd = -1;
	fe->opts = o;
	fe->timeout_ms = fe->opts.timeout_ms > 0 ? fe->opts.timeout_ms
						 : VHU_FE_DEFAULT_TIMEOUT_MS;
	int r = vhu__set_nonblock(fd);
	if (r == 0)
		r = handshake(fe);
	if (r < 0) {
		vhu_fe_close(fe);
		return r;
	}
	*out = fe;
	return 0;
}

int vhu_fe_connect_sized(struct vhu_fe **out, const char *path,
			 const struct vhu_fe_opts *opts, size_t opts_size)
{
	struct vhu_fe_opts o = { 0 };
	*out = NULL;
	if (opts) {
		int r = vhu__struct_in(&o, sizeof(o), opts, opts_size,
				       FE_OPTS_SIZE_0_1);
		if (r < 0)
			return r;
	}
	int fd = dial(path, o.connect_timeout_ms);
	if (fd < 0)
		return fd;
	return vhu_fe_connect_fd_sized(out, fd, &o, sizeof(o));
}

/* The 0.1 entry points (the header's macros pass the caller's size). */
int (vhu_fe_connect_fd)(struct vhu_fe **out, int fd,
			const struct vhu_fe_opts *opts)
{
	return vhu_fe_connect_fd_sized(out, fd, opts, FE_OPTS_SIZE_0_1);
}

int (vhu_fe_connect)(struct vhu_fe **out, const char *path,
		     const struct vhu_fe_opts *opts)
{
	return vhu_fe_connect_sized(out, path, opts, FE_OPTS_SIZE_0_1);
}

void vhu_fe_close(struct vhu_fe *fe)
{
	if (!fe)
		return;
	vhu__fe_vqs_free(fe);
	if (fe->fd >= 0)
		close(fe->fd);
	if (fe->backend_fd >= 0)
		close(fe->backend_fd);
	vhu__fe_mem_free(fe);
	vhu__fe_log_free(fe);
	pthread_mutex_destroy(&fe->lock);
	free(fe);
}

uint64_t vhu_fe_features_offered(const struct vhu_fe *fe) { return fe->features_offered; }
uint64_t vhu_fe_protocol_features_offered(const struct vhu_fe *fe) { return fe->protocol_offered; }
uint64_t vhu_fe_protocol_features(const struct vhu_fe *fe) { return fe->protocol; }
uint64_t vhu_fe_features(const struct vhu_fe *fe) { return fe->features; }
unsigned vhu_fe_queue_num(const struct vhu_fe *fe) { return fe->queue_num; }
unsigned vhu_fe_max_mem_slots(const struct vhu_fe *fe) { return fe->max_mem_slots; }

int vhu_fe_set_features_dropped(struct vhu_fe *fe, uint64_t features,
				uint64_t *dropped)
{
	int r = vhu_fe_set_features(fe, features);
	if (r == 0 && dropped)
		*dropped = features & ~fe->features;
	return r;
}

int vhu_fe_set_features(struct vhu_fe *fe, uint64_t features)
{
	/* LOG_ALL belongs to vhu_fe_log_start()/stop(). */
	uint64_t f = features & fe->features_offered &
		     ~VHU_BIT(VHU_F_LOG_ALL);
	/* vhost-user.rst: bit 30 stays set once protocol features are in use. */
	f |= fe->features_offered & VHU_BIT(VHU_F_PROTOCOL_FEATURES);
	int r = vhu__fe_cmd(fe, VHU_REQ_SET_FEATURES, &f, sizeof(f), NULL, 0);
	if (r < 0)
		return r;
	fe->features = f;
	fe->features_set = true;
	return 0;
}

/* ---------------------------------------------------- config space */

/* The header of a config request for size bytes at offset: 0, or
 * -EOPNOTSUPP without the CONFIG protocol feature, -EINVAL for a size
 * out of 1..VHU_MAX_CONFIG_SIZE. */
static int config_msg(struct vhu_fe *fe, struct vhu_config *c,
		      uint32_t offset, uint32_t size, uint32_t flags)
{
	if (!has_pf(fe, VHU_PF_CONFIG))
		return -EOPNOTSUPP;
	if (size == 0 || size > VHU_MAX_CONFIG_SIZE)
		return -EINVAL;
	memset(c, 0, sizeof(*c));
	c->offset = offset;
	c->size = size;
	c->flags = flags;
	return 0;
}

/* Where GET_CONFIG's answer goes: what was asked and the caller's buffer. */
struct config_out {
	uint32_t offset, size;
	void *buf;
};

static int config_reply(uint32_t req, const struct vhu_msg *m, void *arg)
{
	const struct config_out *out = arg;
	(void)req;
	/* vhost-user.rst GET_CONFIG: an empty payload reports an error. */
	if (m->hdr.size == 0 ||
	    (m->hdr.size == VHU_CONFIG_HDR_SIZE && m->p.config.size == 0))
		return -EIO;
	if (m->hdr.size != VHU_CONFIG_HDR_SIZE + out->size ||
	    m->p.config.offset != out->offset ||
	    m->p.config.size != out->size) {
		vhu__warn("front-end: GET_CONFIG reply size %u offset %u len %u, "
			  "asked offset %u len %u", m->hdr.size,
			  m->p.config.offset, m->p.config.size, out->offset,
			  out->size);
		return -EPROTO;
	}
	memcpy(out->buf, m->p.config.payload, out->size);
	return 0;
}

int vhu_fe_get_config(struct vhu_fe *fe, uint32_t offset, void *buf,
		      uint32_t size)
{
	struct vhu_config req;
	int r = config_msg(fe, &req, offset, size, 0);
	if (r < 0)
		return r;
	struct config_out out = { offset, size, buf };
	return exchange(fe, VHU_REQ_GET_CONFIG, 0, &req,
			VHU_CONFIG_HDR_SIZE + size, NULL, 0, config_reply, &out);
}

int vhu_fe_set_config(struct vhu_fe *fe, uint32_t offset, const void *buf,
		      uint32_t size, uint32_t flags)
{
	struct vhu_config c;
	int r = config_msg(fe, &c, offset, size, flags);
	if (r < 0)
		return r;
	memcpy(c.payload, buf, size);
	return vhu__fe_cmd(fe, VHU_REQ_SET_CONFIG, &c, VHU_CONFIG_HDR_SIZE + size,
			   NULL, 0);
}

/* ---------------------------------------------------- back-end channel */

void vhu_fe_set_config_change_cb(struct vhu_fe *fe, vhu_fe_config_change_fn fn,
				 void *opaque)
{
	fe->cc_fn = fn;
	fe->cc_opaque = opaque;
}

int vhu_fe_backend_fd(const struct vhu_fe *fe)
{
	return fe->backend_fd;
}

static void close_channel(struct vhu_fe *fe)
{
	close(fe->backend_fd);
	fe->backend_fd = -1;
}

int vhu_fe_process_backend(struct vhu_fe *fe)
{
	if (fe->backend_fd < 0)
		return -ENOTCONN;
	int handled = 0;
	/* Bounded: a back-end flooding the channel cannot keep us here. */
	for (int round = 0; round < 64; round++) {
		struct vhu_msg m;
		int fds[VHU_MAX_FDS];
		unsigned nfds = 0;
		int r = vhu__sock_recv(fe->backend_fd, &m, fds, &nfds);
		if (r == -EAGAIN)
			break;
		if (r == 0) {
			close_channel(fe);
			return handled ? handled : -ENOTCONN;
		}
		if (r < 0) {
			close_channel(fe);
			return r == -EMSGSIZE ? -EPROTO : r;
		}
		if ((m.hdr.flags & ~VHU_MSG_NEED_REPLY) != VHU_MSG_VERSION) {
			vhu__close_fds(fds, nfds);
			vhu__warn("front-end: back-end request %u has flags 0x%x",
				  m.hdr.request, m.hdr.flags);
			close_channel(fe);
			return -EPROTO;
		}
		/* No back-end request we accept carries an fd. */
		int res = -EINVAL;
		if (nfds) {
			vhu__close_fds(fds, nfds);
		} else if (m.hdr.request == VHU_BREQ_CONFIG_CHANGE_MSG &&
			   m.hdr.size == 0) {
			/* vhost-user.rst CONFIG_CHANGE_MSG: the front-end re-reads
			 * the config; the ack goes out after that. */
			res = fe->cc_fn ? fe->cc_fn(fe, fe->cc_opaque) : 0;
		} else {
			vhu__warn("front-end: unsupported back-end request %u",
				  m.hdr.request);
		}
		handled++;
		if (m.hdr.flags & VHU_MSG_NEED_REPLY) {
			struct vhu_msg rep;
			memset(&rep.hdr, 0, sizeof(rep.hdr));
			rep.hdr.request = m.hdr.request;
			rep.hdr.flags = REPLY_FLAGS;
			rep.hdr.size = sizeof(uint64_t);
			rep.p.u64 = res < 0 ? 1 : 0;
			r = vhu__sock_send(fe->backend_fd, &rep, NULL, 0);
			if (r < 0) {
				close_channel(fe);
				return r;
			}
		}
	}
	return handled;
}
