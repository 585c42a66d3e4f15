/* SPDX-License-Identifier: MIT */
/*
 * Back-end session: the listening socket, the one connected front-end, the
 * epoll set behind vhu_backend_fd(), and the dispatcher
 * (read -> validate -> handler -> reply / REPLY_ACK).
 *
 * One front-end at a time: a second connection while one is active is
 * accepted and closed at once (logged), so the listening socket never
 * stays readable and an external poll loop never spins on it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "backend-internal.h"

/* Messages handled per readiness round before giving others a turn. */
#define VHU__BE_BATCH 64

static uint64_t tag(enum vhu__be_src src, unsigned idx)
{
	return ((uint64_t)src << 32) | idx;
}

int vhu__be_epoll_add(struct vhu_backend *b, int fd, enum vhu__be_src src,
		      unsigned idx)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag(src, idx) };
	if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	return 0;
}

void vhu__be_epoll_del(struct vhu_backend *b, int fd)
{
	if (fd >= 0)
		epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, NULL);
}

/* What a program built against the first release (0.1) passes. */
#define OPTS_SIZE_0_1 VHU__SIZE_THROUGH(struct vhu_backend_opts, no_dirty_log)
#define OPS_SIZE_0_1 VHU__SIZE_THROUGH(struct vhu_device_ops, config_change_acked)

static int backend_new(const struct vhu_backend_opts *opts,
		       struct vhu_backend **out);

int vhu_backend_new_sized(const struct vhu_backend_opts *opts, size_t opts_size,
			  size_t ops_size, struct vhu_backend **out)
{
	struct vhu_backend_opts o;
	struct vhu_device_ops ops;
	int r;

	if (!opts || !out)
		return -EINVAL;
	*out = NULL;
	r = vhu__struct_in(&o, sizeof(o), opts, opts_size, OPTS_SIZE_0_1);
	if (r < 0)
		return r;
	if (o.ops) {
		r = vhu__struct_in(&ops, sizeof(ops), o.ops, ops_size, OPS_SIZE_0_1);
		if (r < 0)
			return r;
		o.ops = &ops;
	}
	return backend_new(&o, out);
}

/* The 0.1 entry point (the header's vhu_backend_new() macro passes the
 * caller's sizes instead). */
int (vhu_backend_new)(const struct vhu_backend_opts *opts, struct vhu_backend **out)
{
	return vhu_backend_new_sized(opts, OPTS_SIZE_0_1, OPS_SIZE_0_1, out);
}

/* opts and opts->ops are full-size copies here. */
static int backend_new(const struct vhu_backend_opts *opts,
		       struct vhu_backend **out)
{
	static const struct vhu_device_ops no_ops;
	struct vhu_backend *b;
	unsigned qs;

	/* The caller's mistakes, each logged with the limit it broke. */
	if (opts->num_queues < 1 || opts->num_queues > VHU_BACKEND_MAX_QUEUES) {
		vhu__err("vhu_backend_new: num_queues %u outside 1 .. %u",
			 opts->num_queues, VHU_BACKEND_MAX_QUEUES);
		return -EINVAL;
	}
	qs = opts->max_queue_size ? opts->max_queue_size : VHU_MAX_QUEUE_SIZE;
	if (qs > VHU_MAX_QUEUE_SIZE || (qs & (qs - 1)) != 0) {
		vhu__err("vhu_backend_new: max_queue_size %u is not a power of "
			 "two in 1 .. %u (0: %u)", qs, VHU_MAX_QUEUE_SIZE,
			 VHU_MAX_QUEUE_SIZE);
		return -EINVAL;
	}
	if (opts->config_size > VHU_MAX_CONFIG_SIZE) {
		vhu__err("vhu_backend_new: config_size %u above %u",
			 opts->config_size, VHU_MAX_CONFIG_SIZE);
		return -EINVAL;
	}
	if (opts->flags & ~VHU_BACKEND_OPT_ACCESS_PLATFORM) {
		vhu__err("vhu_backend_new: unknown flags 0x%llx",
			 (unsigned long long)(opts->flags &
					      ~VHU_BACKEND_OPT_ACCESS_PLATFORM));
		return -EINVAL;
	}

	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->ops = opts->ops ? *opts->ops : no_ops;
	b->opaque = opts->opaque;
	b->dev_features = opts->features;
	b->dev_protocol_features = opts->protocol_features;
	b->num_queues = opts->num_queues;
	b->max_queue_size = qs;
	b->config_size = opts->config_size;
	if (opts->config_writable)
		memcpy(b->config_writable, opts->config_writable, opts->config_size);
	b->listen_fd = b->conn_fd = b->chan_fd = -1;
	b->inflight_fd = b->reply_fd = -1;
	b->log.signal_fd = -1;
	b->log_guard = -1;
	b->inflight_guard = -1;
	vhu__rx_init(&b->conn_rx);
	vhu__rx_init(&b->chan_rx);
	b->stall_ms = VHU__SOCK_TIMEOUT_MS;
	b->stall_due = -1;

	/* Transport bits the library does not serve are never offered. */
	uint64_t transport = 0;
	for (unsigned i = VHU__TRANSPORT_FIRST; i <= VHU__TRANSPORT_LAST; i++)
		transport |= VHU_BIT(i);
	b->offered_features = (opts->features | VHU_BIT(VHU_F_PROTOCOL_FEATURES)) &
			      (~transport | VHU__TRANSPORT_OK);
	/* ACCESS_PLATFORM: only for a device that asks with the option (a
	 * program that listed the bit before it was served keeps what it
	 * had); REPLY_ACK and BACKEND_REQ, which it needs, are always
	 * offered. */
	if (opts->flags & VHU_BACKEND_OPT_ACCESS_PLATFORM)
		b->offered_features |= VHU_BIT(VHU_F_ACCESS_PLATFORM);
	b->offered_protocol = VHU__PF_BASE |
			      (opts->protocol_features & VHU__PF_IMPLEMENTED);
	/* Dirty logging for live migration, unless the device opts out. */
	if (opts->no_dirty_log) {
		b->offered_features &= ~VHU_BIT(VHU_F_LOG_ALL);
		b->offered_protocol &= ~VHU_BIT(VHU_PF_LOG_SHMFD);
	} else {
		b->offered_features |= VHU_BIT(VHU_F_LOG_ALL);
		b->offered_protocol |= VHU_BIT(VHU_PF_LOG_SHMFD);
	}
	if (opts->config_size > 0)
		b->offered_protocol |= VHU_BIT(VHU_PF_CONFIG);
	else
		b->offered_protocol &= ~VHU_BIT(VHU_PF_CONFIG);

	b->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (b->epfd < 0) {
		int e = -errno;
		free(b);
		return e;
	}
	b->stall_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	int e = b->stall_fd < 0 ? -errno
				: vhu__be_epoll_add(b, b->stall_fd, VHU__SRC_STALL, 0);
	if (e < 0) {
		if (b->stall_fd >= 0)
			close(b->stall_fd);
		close(b->epfd);
		free(b);
		return e;
	}
	e = vhu__iotlb_init(&b->iotlb);
	if (e == 0) {
		b->iotlb_miss_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		e = b->iotlb_miss_fd < 0
			    ? -errno
			    : vhu__be_epoll_add(b, b->iotlb_miss_fd,
						VHU__SRC_IOTLB, 0);
		if (e < 0) {
			if (b->iotlb_miss_fd >= 0)
				close(b->iotlb_miss_fd);
			vhu__iotlb_destroy(&b->iotlb);
		}
	}
	if (e < 0) {
		close(b->stall_fd);
		close(b->epfd);
		free(b);
		return e;
	}
	vhu__mem_init(&b->mem);
	for (unsigned i = 0; i < b->num_queues; i++)
		vhu__vq_init(&b->vqs[i], i, &b->mem);
	*out = b;
	return 0;
}

/* The front-end went away (or was dropped): everything it set up goes. */
static void disconnect(struct vhu_backend *b, const char *why)
{
	if (b->conn_fd < 0)
		return;
	vhu__info("front-end disconnected: %s", why);
	vhu__be_epoll_del(b, b->conn_fd);
	vhu__rx_reset(&b->conn_rx);
	vhu__be_close_channel(b, -ECONNRESET);

	/* The device completes what it popped (and signals it) before the
	 * connection closes: a front-end that sees the close tears down
	 * its call fds, and an interrupt sent after that is lost - the
	 * guest would wait forever for requests the ring shows complete.
	 * This is what makes a graceful stop (vhu_backend_free) lose
	 * nothing; a front-end that went away first loses nothing by it. */
	vhu__be_device_reset(b);
	close(b->conn_fd);
	b->conn_fd = -1;
	vhu__be_inflight_drop(b);
	vhu__be_log_drop(b);
	vhu__mem_clear(&b->mem);
	vhu__iotlb_clear(&b->iotlb);
	b->features = 0;
	b->protocol = 0;
	b->features_set = false;
	b->owner = false;
	b->status = 0;
	if (b->ops.disconnected)
		b->ops.disconnected(b->opaque);
	if (b->mode == VHU__MODE_CONNECTED) {
		b->ended = true;
		if (b->loop)
			vhu_loop_stop(b->loop);
	}
}

void vhu_backend_free(struct vhu_backend *b)
{
	if (!b)
		return;
	vhu_backend_detach(b);
	disconnect(b, "session closed");
	if (b->listen_fd >= 0)
		close(b->listen_fd);
	if (b->path) {
		unlink(b->path);
		free(b->path);
	}
	for (unsigned i = 0; i < b->num_queues; i++)
		vhu__vq_reset(&b->vqs[i]);
	vhu__be_inflight_drop(b);
	vhu__mem_clear(&b->mem);
	vhu__iotlb_destroy(&b->iotlb);
	close(b->iotlb_miss_fd);
	close(b->stall_fd);
	close(b->epfd);
	free(b);
}

static int attach_conn(struct vhu_backend *b, int fd)
{
	int r = vhu__set_nonblock(fd);
	if (r == 0)
		r = vhu__be_epoll_add(b, fd, VHU__SRC_CONN, 0);
	if (r < 0)
		return r;
	b->conn_fd = fd;
	if (b->ops.connected)
		b->ops.connected(b->opaque);
	return 0;
}

int vhu_backend_connected_fd(struct vhu_backend *b, int fd)
{
	int r;

	if (fd < 0)
		return -EBADF;
	if (b->mode != VHU__MODE_NONE) {
		close(fd);
		return -EBUSY;
	}
	r = attach_conn(b, fd);
	if (r < 0) {
		close(fd);
		return r;
	}
	b->mode = VHU__MODE_CONNECTED;
	vhu__info("serving a connected front-end on fd %d", fd);
	return 0;
}

int vhu_backend_listen_fd(struct vhu_backend *b, int fd)
{
	int acc = 0, r;
	socklen_t len = sizeof(acc);

	if (fd < 0)
		return -EBADF;
	if (b->mode != VHU__MODE_NONE) {
		close(fd);
		return -EBUSY;
	}
	/* Only a listening socket is accepted (systemd passes one). */
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0 || !acc) {
		close(fd);
		return -EINVAL;
	}
	r = vhu__set_nonblock(fd);
	if (r == 0)
		r = vhu__be_epoll_add(b, fd, VHU__SRC_LISTEN, 0);
	if (r < 0) {
		close(fd);
		return r;
	}
	b->listen_fd = fd;
	b->mode = VHU__MODE_LISTEN;
	return 0;
}

/* Does something accept connections at path?  1 yes, 0 no (stale or
 * absent), -errno when path is something else. */
static int path_in_use(const struct sockaddr_un *sa)
{
	struct stat st;
	if (lstat(sa->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	/* Non-blocking: a server with a full backlog answers EAGAIN
	 * instead of making us wait; it is alive all the same. */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	int r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	int e = errno;
	close(fd);
	if (r == 0 || e == EAGAIN || e == EINPROGRESS)
		return 1;
	return (e == ECONNREFUSED || e == ENOENT) ? 0 : -e;
}

int vhu_backend_listen(struct vhu_backend *b, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, r;

	if (!path || !*path)
		return -EINVAL;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	if (b->mode != VHU__MODE_NONE)
		return -EBUSY;
	strcpy(sa.sun_path, path);

	r = path_in_use(&sa);
	if (r == 1)
		return -EADDRINUSE;
	if (r < 0)
		return r;
	/* A socket nobody accepts on is left over from a dead server. */
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 4) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	b->path = strdup(path);
	if (!b->path) {
		close(fd);
		unlink(path);
		return -ENOMEM;
	}
	r = vhu__be_epoll_add(b, fd, VHU__SRC_LISTEN, 0);
	if (r < 0) {
		close(fd);
		unlink(path);
		free(b->path);
		b->path = NULL;
		return r;
	}
	b->listen_fd = fd;
	b->mode = VHU__MODE_LISTEN;
	vhu__info("listening on %s", path);
	return 0;
}

static void do_accept(struct vhu_backend *b)
{
	int fd = accept4(b->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return; /* EAGAIN, or a connection that vanished */
	if (b->conn_fd >= 0) {
		vhu__log_rl(VHU_LOG_WARN,
			    "refusing a second front-end while one is connected");
		close(fd);
		return;
	}
	if (attach_conn(b, fd) < 0) {
		vhu__err("cannot watch the new front-end connection");
		close(fd);
		return;
	}
	vhu__info("front-end connected");
}

int vhu_backend_fd(const struct vhu_backend *b)
{
	return b->epfd;
}

static int send_reply(struct vhu_backend *b, struct vhu_msg *reply,
		      uint32_t request)
{
	/* QEMU rejects any reply whose flags are not exactly 0x5. */
	reply->hdr.request = request;
	reply->hdr.flags = VHU_MSG_VERSION | VHU_MSG_REPLY;
	/* GET_INFLIGHT_FD's reply carries the region's fd. */
	int fd = b->reply_fd;
	b->reply_fd = -1;
	return vhu__sock_send(b->conn_fd, reply, &fd, fd >= 0 ? 1 : 0);
}

static int send_ack(struct vhu_backend *b, uint32_t request, uint64_t value)
{
	struct vhu_msg reply;
	reply.hdr.size = sizeof(uint64_t);
	reply.p.u64 = value;
	return send_reply(b, &reply, request);
}

static bool reply_ack_on(const struct vhu_backend *b, const struct vhu_msg *msg)
{
	return (b->protocol & VHU_BIT(VHU_PF_REPLY_ACK)) &&
	       vhu__msg_need_reply(msg);
}

/* A refused request whose reason the bare errno does not tell: say what
 * was wrong and what the limit is (the handler's own checks, repeated). */
static void explain_failure(const struct vhu_backend *b,
			    const struct vhu__req *req, int r)
{
	if (req->msg->hdr.request != VHU_REQ_SET_VRING_NUM || r != -EINVAL)
		return;
	uint32_t num = req->msg->p.state.num;
	bool packed = (b->features & VHU_BIT(VHU_F_RING_PACKED)) != 0;
	if (num == 0 || num > b->max_queue_size)
		vhu__log_rl(VHU_LOG_ERROR, "SET_VRING_NUM: queue %u: ring size "
			    "%u outside 1 .. %u (the device's max_queue_size)",
			    req->ring, num, b->max_queue_size);
	else if (!packed && (num & (num - 1)) != 0)
		vhu__log_rl(VHU_LOG_ERROR, "SET_VRING_NUM: queue %u: ring size "
			    "%u is not a power of two (split ring)", req->ring,
			    num);
}

/*
 * Validate and run one request.  Returns 0 to keep the connection, or
 * -errno to drop it.  Every fd left in fds[] afterwards is closed here.
 */
static int dispatch(struct vhu_backend *b, struct vhu_msg *msg, int *fds,
		    unsigned nfds)
{
	struct vhu__msg_ctx ctx = {
		.virtio_offered = b->offered_features,
		.protocol_acked = b->protocol,
		.num_queues = b->num_queues,
		.served = vhu__be_served(),
	};
	const struct vhu__req_info *info;
	const char *why;
	unsigned ring;
	uint32_t id = msg->hdr.request;
	int r;

	r = vhu__msg_validate(&ctx, msg, nfds, &info, &ring, &why);
	if (r < 0) {
		const char *name = vhu_request_name(id);

		vhu__close_fds(fds, nfds);
		/* Bad header flags: the peer does not speak this protocol. */
		if (r != -EPROTO && reply_ack_on(b, msg)) {
			vhu__log_rl(VHU_LOG_WARN, "refused request %u (%s): %s",
				    id, name ? name : "unknown", why);
			return send_ack(b, id, 1);
		}
		/* Rate-limited too: a peer can reconnect and repeat. */
		vhu__log_rl(VHU_LOG_ERROR, "refused request %u (%s): %s", id,
			    name ? name : "unknown", why);
		return r;
	}

	struct vhu_msg reply;
	struct vhu__req req = {
		.info = info,
		.msg = msg,
		.fds = fds,
		.nfds = nfds,
		.ring = ring,
		.reply = &reply,
	};
	reply.hdr.size = 0;
	vhu__debug("request %s", info->name);
	r = vhu__be_handler_for(id)(b, &req);
	vhu__close_fds(fds, nfds);
	if (r < 0)
		explain_failure(b, &req, r);

	if (info->reply) {
		/* A reply body doubles as the ack (vhost-user.rst REPLY_ACK). */
		if (r < 0 && req.soft_fail) {
			/* SET_LOG_BASE with NEED_REPLY: its reply is a u64. */
			vhu__log_rl(VHU_LOG_WARN, "%s refused: %s", info->name,
				    strerror(-r));
			return send_ack(b, id, 1);
		}
		if (r < 0) {
			vhu__err("%s failed: %s", info->name, strerror(-r));
			return r;
		}
		return send_reply(b, &reply, id);
	}
	if (reply_ack_on(b, msg)) {
		if (r < 0)
			vhu__log_rl(VHU_LOG_WARN, "%s failed: %s", info->name,
				    strerror(-r));
		return send_ack(b, id, r < 0 ? 1 : 0);
	}
	if (r < 0) {
		if (req.soft_fail) {
			vhu__log_rl(VHU_LOG_WARN, "%s refused: %s", info->name,
				    strerror(-r));
			return 0;
		}
		vhu__err("%s failed: %s", info->name, strerror(-r));
		return r;
	}
	return 0;
}

/* What to do with one read from a socket: r is 1 with a message (msg,
 * fds[0..nfds) now the handler's), else vhu__rx_read()'s failure (0 end
 * of stream, -errno).  < 0: stop reading. */
typedef int (*rx_handler)(struct vhu_backend *b, int r, struct vhu_msg *msg,
			  int *fds, unsigned nfds);

/* Up to VHU__BE_BATCH messages from *fd (while it stays open), never
 * waiting for the rest of one: what arrived stays in rx until the next
 * round (sock-rx.c). */
static void read_batch(struct vhu_backend *b, const int *fd,
		       struct vhu__rx *rx, rx_handler on_read)
{
	for (unsigned n = 0; n < VHU__BE_BATCH && *fd >= 0; n++) {
		struct vhu_msg msg;
		int fds[VHU_MAX_FDS];
		unsigned nfds = 0;
		int r = vhu__rx_read(*fd, rx);
		if (r == -EAGAIN)
			return;
		if (r == 1)
			vhu__rx_take(rx, &msg, fds, &nfds);
		if (on_read(b, r, &msg, fds, nfds) < 0)
			return;
	}
}

static int conn_read(struct vhu_backend *b, int r, struct vhu_msg *msg,
		     int *fds, unsigned nfds)
{
	if (r == 0) {
		disconnect(b, "end of stream");
		return -1;
	}
	if (r < 0) {
		vhu__err("receiving from the front-end: %s", strerror(-r));
		disconnect(b, "receive error");
		return -1;
	}
	if (dispatch(b, msg, fds, nfds) < 0) {
		disconnect(b, "protocol error");
		return -1;
	}
	return 0;
}

static void serve_conn(struct vhu_backend *b)
{
	read_batch(b, &b->conn_fd, &b->conn_rx, conn_read);
}

/*
 * A peer that sends part of a message and stops gets stall_ms from the
 * first byte to finish it; the timer wakes the session's epoll set when
 * that runs out.  Armed for the earliest pending deadline, off otherwise.
 */
static void arm_stall(struct vhu_backend *b)
{
	int64_t due = -1;
	if (b->conn_fd >= 0 && vhu__rx_partial(&b->conn_rx))
		due = b->conn_rx.started_ms + b->stall_ms;
	if (b->chan_fd >= 0 && vhu__rx_partial(&b->chan_rx)) {
		int64_t c = b->chan_rx.started_ms + b->stall_ms;
		if (due < 0 || c < due)
			due = c;
	}
	if (due == b->stall_due)
		return;
	b->stall_due = due;
	struct itimerspec its = { 0 };
	if (due >= 0) {
		if (due <= 0)
			due = 1; /* an all-zero value would disarm */
		its.it_value.tv_sec = due / 1000;
		its.it_value.tv_nsec = (long)(due % 1000) * 1000000;
	}
	(void)timerfd_settime(b->stall_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void check_stall(struct vhu_backend *b)
{
	uint64_t ticks;
	while (read(b->stall_fd, &ticks, sizeof(ticks)) > 0)
		;
	b->stall_due = -1; /* one-shot: spent */
	int64_t now = vhu__now_ms();
	if (b->conn_fd >= 0 && vhu__rx_partial(&b->conn_rx) &&
	    now - b->conn_rx.started_ms >= b->stall_ms) {
		vhu__err("the front-end sent part of a message and nothing "
			 "more for %d ms", b->stall_ms);
		disconnect(b, "incomplete message");
	}
	if (b->chan_fd >= 0 && vhu__rx_partial(&b->chan_rx) &&
	    now - b->chan_rx.started_ms >= b->stall_ms) {
		vhu__warn("back-end channel: incomplete message for %d ms: "
			  "closing it", b->stall_ms);
		vhu__be_close_channel(b, -ETIMEDOUT);
	}
}

int vhu_backend_process(struct vhu_backend *b)
{
	struct epoll_event ev[16];
	int n;

	if (b->ended)
		return -ENOTCONN;
	do {
		n = epoll_wait(b->epfd, ev, (int)VHU__ARRAY_SIZE(ev), 0);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;

	for (int i = 0; i < n; i++) {
		enum vhu__be_src src = (enum vhu__be_src)(ev[i].data.u64 >> 32);
		unsigned idx = (unsigned)(ev[i].data.u64 & 0xffffffffu);
		/* Earlier events of this round may have closed the source:
		 * every handler checks that its fd is still there. */
		switch (src) {
		case VHU__SRC_LISTEN:
			if (b->listen_fd >= 0)
				do_accept(b);
			break;
		case VHU__SRC_CONN:
			if (b->conn_fd >= 0)
				serve_conn(b);
			break;
		case VHU__SRC_CHAN:
			if (b->chan_fd >= 0)
				vhu__be_read_channel(b);
			break;
		case VHU__SRC_KICK:
			vhu__be_kick(b, idx);
			break;
		case VHU__SRC_STALL:
			check_stall(b);
			break;
		case VHU__SRC_IOTLB:
			vhu__be_iotlb_misses(b);
			break;
		}
	}
	arm_stall(b);
	return b->ended ? -ENOTCONN : 0;
}

static void loop_cb(struct vhu_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct vhu_backend *b = opaque;
	int r = vhu_backend_process(b);
	if (r == -ENOTCONN) {
		vhu_loop_stop(loop);
	} else if (r < 0) {
		vhu__err("back-end processing failed: %s", strerror(-r));
	}
}

int vhu_backend_attach(struct vhu_backend *b, struct vhu_loop *loop)
{
	if (!loop)
		return -EINVAL;
	if (b->loop)
		return -EBUSY;
	int r = vhu_loop_add(loop, b->epfd, EPOLLIN, loop_cb, b);
	if (r < 0)
		return r;
	b->loop = loop;
	return 0;
}

int vhu_backend_detach(struct vhu_backend *b)
{
	if (!b->loop)
		return -ENOENT;
	int r = vhu_loop_del(b->loop, b->epfd);
	b->loop = NULL;
	return r;
}

bool vhu_backend_is_connected(const struct vhu_backend *b)
{
	return b->conn_fd >= 0;
}

uint64_t vhu_backend_features(const struct vhu_backend *b)
{
	return b->features;
}

uint64_t vhu_backend_protocol_features(const struct vhu_backend *b)
{
	return b->protocol;
}

struct vhu_vq *vhu_backend_vq(struct vhu_backend *b, unsigned index)
{
	if (index >= b->num_queues)
		return NULL;
	return &b->vqs[index];
}

unsigned vhu_backend_num_queues(const struct vhu_backend *b)
{
	return b->num_queues;
}

/* ---- the back-end channel (vhost-user.rst "Back-end communication") */

void vhu__be_close_channel(struct vhu_backend *b, int64_t pending_result)
{
	if (b->chan_fd < 0)
		return;
	vhu__be_epoll_del(b, b->chan_fd);
	close(b->chan_fd);
	b->chan_fd = -1;
	vhu__rx_reset(&b->chan_rx);
	/* Whoever waits for an ack learns it will not come. */
	while (b->acks_pending) {
		b->acks_pending--;
		if (b->ops.config_change_acked)
			b->ops.config_change_acked(b->opaque, pending_result);
	}
}

/* The front-end only ever answers on the back-end channel: a u64 ack,
 * flags exactly 0x5, for a request we asked an ack on. */
static int chan_read(struct vhu_backend *b, int r, struct vhu_msg *msg,
		     int *fds, unsigned nfds)
{
	if (r <= 0) {
		vhu__warn("back-end channel closed: %s",
			  r == 0 ? "end of stream" : strerror(-r));
		vhu__be_close_channel(b, r == 0 ? -ECONNRESET : r);
		return -1;
	}
	bool ok = nfds == 0 &&
		  msg->hdr.flags == (VHU_MSG_VERSION | VHU_MSG_REPLY) &&
		  msg->hdr.request == VHU_BREQ_CONFIG_CHANGE_MSG &&
		  msg->hdr.size == sizeof(uint64_t) && b->acks_pending > 0;
	vhu__close_fds(fds, nfds);
	if (!ok) {
		vhu__err("unexpected message %u (flags 0x%x, %u bytes) on "
			 "the back-end channel: closing it",
			 msg->hdr.request, msg->hdr.flags, msg->hdr.size);
		vhu__be_close_channel(b, -EPROTO);
		return -1;
	}
	b->acks_pending--;
	/* Any non-zero u64 means failure; keep it visible but positive so
	 * it never reads as -errno. */
	int64_t res = msg->p.u64 > INT64_MAX ? INT64_MAX : (int64_t)msg->p.u64;
	if (b->ops.config_change_acked)
		b->ops.config_change_acked(b->opaque, res);
	return 0;
}

void vhu__be_read_channel(struct vhu_backend *b)
{
	read_batch(b, &b->chan_fd, &b->chan_rx, chan_read);
}

int vhu_backend_config_changed(struct vhu_backend *b, bool want_ack)
{
	if (b->conn_fd < 0)
		return -ENOTCONN;
	if (b->chan_fd < 0 || !(b->protocol & VHU_BIT(VHU_PF_BACKEND_REQ)) ||
	    !(b->protocol & VHU_BIT(VHU_PF_CONFIG)))
		return -EOPNOTSUPP;

	struct vhu_msg msg = {
		.hdr = {
			.request = VHU_BREQ_CONFIG_CHANGE_MSG,
			.flags = VHU_MSG_VERSION,
			.size = 0,
		},
	};
	bool ack = want_ack && (b->protocol & VHU_BIT(VHU_PF_REPLY_ACK));
	if (ack)
		msg.hdr.flags |= VHU_MSG_NEED_REPLY;
	int r = vhu__sock_send(b->chan_fd, &msg, NULL, 0);
	if (r < 0) {
		vhu__err("sending CONFIG_CHANGE_MSG: %s", strerror(-r));
		vhu__be_close_channel(b, r);
		return r;
	}
	/* The ack comes later on the channel (the front-end first re-reads
	 * the config on the main socket): never wait for it here. */
	if (ack)
		b->acks_pending++;
	return 0;
}
