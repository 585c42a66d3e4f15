/* SPDX-License-Identifier: MIT */
/*
 * Incremental message receive for callers that must never block.
 *
 * vhu_backend_process() is documented as non-blocking and shares its
 * caller's event loop with everything else the application does (vhu-blk:
 * its control socket and SIGTERM).  A front-end that sends half a message
 * and then goes quiet must not stall that loop, so the header, payload and
 * fds received so far are kept here between calls and the message is
 * handed out only once it is complete.  How long a partial message may
 * stay incomplete is the caller's business (the back-end arms a timer).
 *
 * Framing is the same as vhu__sock_recv(): exactly the header, then
 * exactly hdr.size payload bytes, never a byte of the next message; fds
 * ride with any fragment (a peer may split a message anywhere).
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

#define HDR_BYTES sizeof(struct vhu_msg_hdr)

void vhu__rx_init(struct vhu__rx *rx)
{
	rx->got = 0;
	rx->nfds = 0;
	rx->extra = false;
	rx->started_ms = 0;
}

void vhu__rx_reset(struct vhu__rx *rx)
{
	vhu__close_fds(rx->fds, rx->nfds);
	vhu__rx_init(rx);
}

void vhu__rx_done(struct vhu__rx *rx)
{
	/* The caller took (or closed) the fds. */
	vhu__rx_init(rx);
}

void vhu__rx_take(struct vhu__rx *rx, struct vhu_msg *msg, int *fds,
		  unsigned *nfds)
{
	*msg = rx->msg;
	*nfds = rx->nfds;
	memcpy(fds, rx->fds, rx->nfds * sizeof(int));
	vhu__rx_done(rx);
}

bool vhu__rx_partial(const struct vhu__rx *rx)
{
	return rx->got > 0 || rx->nfds > 0;
}

/* Bytes the current message still needs (header first, then payload). */
static size_t wanted(const struct vhu__rx *rx)
{
	if (rx->got < HDR_BYTES)
		return HDR_BYTES - rx->got;
	return HDR_BYTES + rx->msg.hdr.size - rx->got;
}

static int fail(struct vhu__rx *rx, int r)
{
	vhu__rx_reset(rx);
	return r;
}

int vhu__rx_read(int fd, struct vhu__rx *rx)
{
	/* Bounded: each pass either completes the header or the payload,
	 * or returns; a message is at most two reads that fill their part. */
	for (;;) {
		size_t want = wanted(rx);
		if (want == 0)
			break;
		bool fresh = !vhu__rx_partial(rx); /* before fds arrive */
		ssize_t r = vhu__sock_recv_some(fd, (uint8_t *)&rx->msg + rx->got,
						want, rx->fds, &rx->nfds,
						&rx->extra);
		if (r < 0) {
			if (r == -EINTR)
				continue;
			if (r == -EAGAIN || r == -EWOULDBLOCK)
				return -EAGAIN;
			return fail(rx, (int)r);
		}
		if (r == 0) {
			bool clean = !vhu__rx_partial(rx);
			return fail(rx, clean ? 0 : -ECONNRESET);
		}
		if (fresh)
			rx->started_ms = vhu__now_ms();
		bool had_hdr = rx->got >= HDR_BYTES;
		rx->got += (size_t)r;
		/* Framing can't be trusted past an oversized header: the
		 * caller drops the connection. */
		if (!had_hdr && rx->got >= HDR_BYTES &&
		    rx->msg.hdr.size > VHU_MAX_PAYLOAD)
			return fail(rx, -EMSGSIZE);
	}
	if (rx->extra)
		return fail(rx, -EMSGSIZE);
	return 1;
}
