/* SPDX-License-Identifier: MIT */
/*
 * Message transport over a Unix stream socket: header, payload and up to
 * VHU_MAX_FDS descriptors as SCM_RIGHTS on the first byte of the message.
 * Every received fd is CLOEXEC and has exactly one owner; on failure the
 * fds are closed here.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

void vhu__close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
	}
}

int vhu__eventfd_signal(int fd)
{
	uint64_t one = 1;

	if (fd < 0)
		return -EBADF;
	for (;;) {
		ssize_t w = write(fd, &one, sizeof(one));
		if (w == (ssize_t)sizeof(one))
			return 0;
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return 0;
		return w < 0 ? -errno : -EIO;
	}
}

int vhu__set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	fl = fcntl(fd, F_GETFD);
	if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
		return -errno;
	return 0;
}

int64_t vhu__now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for fd to become ready for events until deadline (ms, -1 never). */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		int timeout = -1;
		if (deadline >= 0) {
			int64_t left = deadline - vhu__now_ms();
			if (left <= 0)
				return -ETIMEDOUT;
			timeout = left > 1000000 ? 1000000 : (int)left;
		}
		struct pollfd p = { .fd = fd, .events = events };
		int r = poll(&p, 1, timeout);
		if (r > 0)
			return 0;
		if (r == 0)
			continue; /* deadline checked above */
		if (errno != EINTR)
			return -errno;
	}
}

/* Collect SCM_RIGHTS fds from a received control buffer. */
static void take_fds(struct msghdr *mh, int *fds, unsigned *nfds, bool *extra)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		const unsigned char *data = CMSG_DATA(c);
		for (size_t i = 0; i < n; i++) {
			int f;
			memcpy(&f, data + i * sizeof(int), sizeof(int));
			if (*nfds < VHU_MAX_FDS) {
				fds[(*nfds)++] = f;
			} else {
				close(f);
				*extra = true;
			}
		}
	}
}

/*
 * Read exactly len bytes into buf.  Ancillary fds are accepted with any
 * read (a peer may split the message; fds ride with the first byte).
 * first: nothing of the message has arrived yet, so EAGAIN / EOF here mean
 * "no message" rather than a broken one.
 */
static int read_full(int fd, void *buf, size_t len, int *fds, unsigned *nfds,
		     bool *extra, bool first, int64_t *deadline, int first_timeout)
{
	size_t got = 0;
	while (got < len) {
		ssize_t r = vhu__sock_recv_some(fd, (char *)buf + got, len - got,
						fds, nfds, extra);
		if (r > 0) {
			got += (size_t)r;
			if (first && got > 0 && *deadline < 0)
				*deadline = vhu__now_ms() + VHU__SOCK_TIMEOUT_MS;
			continue;
		}
		if (r == 0)
			return (first && got == 0) ? 0 : -ECONNRESET;
		if (r == -EINTR)
			continue;
		if (r != -EAGAIN && r != -EWOULDBLOCK)
			return (int)r;
		if (first && got == 0) {
			if (first_timeout == 0)
				return -EAGAIN;
			int64_t dl = first_timeout < 0 ? -1 : vhu__now_ms() + first_timeout;
			int w = wait_fd(fd, POLLIN, dl);
			if (w < 0)
				return w;
			continue;
		}
		if (*deadline < 0)
			*deadline = vhu__now_ms() + VHU__SOCK_TIMEOUT_MS;
		int w = wait_fd(fd, POLLIN, *deadline);
		if (w < 0)
			return w;
	}
	return 1;
}

ssize_t vhu__sock_recv_some(int fd, void *buf, size_t len, int *fds,
			    unsigned *nfds, bool *extra)
{
	union {
		char buf[CMSG_SPACE(VHU_MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { buf, len };
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctl.buf,
		.msg_controllen = sizeof(ctl.buf),
	};
	ssize_t r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);

	if (r < 0)
		return -errno;
	if (r > 0) {
		take_fds(&mh, fds, nfds, extra);
		if (mh.msg_flags & MSG_CTRUNC)
			*extra = true;
	}
	return r;
}

int vhu__sock_recv_timeout(int fd, struct vhu_msg *msg, int *fds,
			   unsigned *nfds, int timeout_ms)
{
	bool extra = false;
	int64_t deadline = -1;
	*nfds = 0;
	memset(&msg->hdr, 0, sizeof(msg->hdr));

	int r = read_full(fd, &msg->hdr, sizeof(msg->hdr), fds, nfds, &extra,
			  true, &deadline, timeout_ms);
	if (r <= 0)
		goto fail;
	if (msg->hdr.size > VHU_MAX_PAYLOAD) {
		/* Framing can't be trusted past this point: the caller drops
		 * the connection. */
		r = -EMSGSIZE;
		goto fail;
	}
	if (deadline < 0)
		deadline = vhu__now_ms() + VHU__SOCK_TIMEOUT_MS;
	if (msg->hdr.size) {
		r = read_full(fd, &msg->p, msg->hdr.size, fds, nfds, &extra,
			      false, &deadline, 0);
		if (r < 0)
			goto fail;
	}
	if (extra) {
		r = -EMSGSIZE;
		goto fail;
	}
	return 1;
fail:
	vhu__close_fds(fds, *nfds);
	*nfds = 0;
	return r;
}

int vhu__sock_recv(int fd, struct vhu_msg *msg, int *fds, unsigned *nfds)
{
	return vhu__sock_recv_timeout(fd, msg, fds, nfds, 0);
}

int vhu__sock_send_bytes(int fd, const void *buf, size_t len, const int *fds,
			 unsigned nfds)
{
	if (nfds > VHU__SOCK_SEND_MAX_FDS)
		return -EINVAL;
	size_t sent = 0;
	int64_t deadline = -1;
	while (sent < len) {
		union {
			char buf[CMSG_SPACE(VHU__SOCK_SEND_MAX_FDS * sizeof(int))];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = { (char *)buf + sent, len - sent };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		if (sent == 0 && nfds) {
			memset(&ctl, 0, sizeof(ctl));
			mh.msg_control = ctl.buf;
			mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
			struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
			memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
		}
		ssize_t r = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r > 0) {
			sent += (size_t)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (deadline < 0)
				deadline = vhu__now_ms() + VHU__SOCK_TIMEOUT_MS;
			int w = wait_fd(fd, POLLOUT, deadline);
			if (w < 0)
				return w;
			continue;
		}
		return r < 0 ? -errno : -EIO;
	}
	return 0;
}

int vhu__sock_send(int fd, const struct vhu_msg *msg, const int *fds,
		   unsigned nfds)
{
	if (nfds > VHU_MAX_FDS || msg->hdr.size > VHU_MAX_PAYLOAD)
		return -EINVAL;
	return vhu__sock_send_bytes(fd, msg, sizeof(msg->hdr) + msg->hdr.size,
				    fds, nfds);
}
