/* SPDX-License-Identifier: MIT */
/*
 * The virtio-vsock device: queues, the connection table and the host
 * sockets (see vsock.h for the conventions).
 *
 * Flow control, both ways, without unbounded buffers:
 *   - host to guest: bytes are read from the host socket straight into a
 *     guest rx buffer, never more than the guest's credit allows; without
 *     credit or rx buffers the socket is simply not read (the host writer
 *     blocks in its kernel buffer).  Nothing is buffered here.
 *   - guest to host: the guest may send what we advertised (buf_alloc per
 *     connection); a payload the host socket does not take at once waits
 *     in the connection's buffer of that size, and fwd_cnt advances only
 *     as the host takes bytes, so a slow host reader holds the guest back.
 *     A guest that sends past its credit is reset.
 *
 * Packets to the guest need rx buffers; what cannot go out yet is kept as
 * bits per connection (REQUEST, RESPONSE, CREDIT_UPDATE, SHUTDOWN, RST),
 * so the backlog is bounded by the number of connections.  Resets for
 * packets that name no connection go through a small ring and are
 * dropped when it is full.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <vhu/backend.h>
#include <vhu/iov.h>
#include <vhu/vhu.h>

#include "pkt.h"
#include "vsock.h"

#define Q_RX 0u
#define Q_TX 1u
#define Q_EVENT 2u
#define NUM_QUEUES 3u
#define MAX_QUEUE_SIZE 1024u
#define IOV_CAP 256u
#define HASH_BUCKETS 4096u
#define ORPHAN_RST_MAX 64u
/* Packets read from one host socket per turn: the others get theirs. */
#define PUMP_BURST 16
/* Bytes of a "CONNECT <port>\n" line, at most. */
#define CONNECT_LINE_MAX 32
/* Ports for connections the host opens: above what guests bind. */
#define HOST_PORT_FIRST (1u << 30)
#define CONNECT_TIMEOUT_MS_DEFAULT 10000u
/* The largest record a host seqpacket socket may hand the guest. */
#define SEQ_RECORD_MAX (4u << 20)

enum conn_state {
	C_HANDSHAKE,   /* host socket accepted, CONNECT line not read yet */
	C_CONNECTING,  /* host-initiated: REQUEST pending or sent */
	C_ESTABLISHED,
	C_DEAD,        /* host side closed; an RST for the guest pending */
};

/* Control packets a connection still owes the guest. */
#define PEND_REQUEST 1u
#define PEND_RESPONSE 2u
#define PEND_CREDIT 4u
#define PEND_SHUTDOWN 8u
#define PEND_RST 16u

struct conn {
	struct vhu_vsock *v;
	struct conn *hnext;               /* hash chain */
	struct conn *all_prev, *all_next; /* every connection */
	struct conn *pend_prev, *pend_next;
	struct conn *wait_prev, *wait_next;
	bool on_pend, on_wait, hashed;
	enum conn_state st;
	bool host_initiated;
	bool guest_knows;      /* the guest has heard of it (RST owed) */
	uint32_t local_port, peer_port;
	uint16_t type;         /* VSOCK_TYPE_STREAM or _SEQPACKET */
	int fd;                /* host socket, -1 once closed */
	uint32_t events;       /* watched on fd */
	bool watched;
	bool hup;              /* the host closed both directions */
	bool host_eof;         /* the host shut its sending side */
	bool host_wr_shut;     /* we shut the host socket's sending side */
	unsigned pend;
	/* Monotonic ms by which a host connection must have sent its CONNECT
	 * line, or the guest answered its REQUEST; 0: none. */
	int64_t deadline;
	uint32_t shut_to_send; /* SHUTDOWN flags owed */
	uint32_t peer_shut;    /* SHUTDOWN flags the guest sent */
	/* guest -> host */
	uint8_t *buf;          /* buf_alloc bytes, allocated when needed */
	uint32_t buf_head, buf_len;
	uint32_t rx_cnt, fwd_cnt, last_adv;
	/* seqpacket, guest -> host: the lengths of the complete messages at
	 * the head of buf (a ring of msgq_cap), and the bytes of the message
	 * being assembled after them */
	uint32_t *msgq;
	uint32_t msgq_cap, msgq_head, msgq_n, partial;
	/* seqpacket, host -> guest: the record being handed over */
	uint8_t *rec;
	uint32_t rec_len, rec_off;
	bool rec_have;
	/* host -> guest */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
};

struct vhu_vsock {
	struct vhu_loop *loop;
	uint64_t guest_cid;
	uint8_t config[8];           /* le64 guest_cid */
	char *uds_path;
	int listen_fd;
	/* Out of fds or memory: the listener is not watched (its backlog
	 * would wake the loop at once, forever) until a host socket closes. */
	bool listen_paused;
	/* Checks connection deadlines while any is set. */
	int timer_fd;
	bool timer_armed;
	unsigned connect_timeout_ms;
	uint32_t buf_alloc;
	struct vhu_vq *rx, *tx, *ev;
	bool seqpacket;              /* VIRTIO_VSOCK_F_SEQPACKET negotiated */
	/* The connection table was dropped (a new process, a reset or a
	 * disconnect): the guest's sockets of an earlier life are dead, and
	 * the event queue's next buffer says so (TRANSPORT_RESET). */
	bool reset_owed;
	/* An rx buffer popped and not used yet (the host socket had nothing
	 * after all); it goes back at queue_stopped. */
	bool rx_held;
	struct vhu_vq_elem rx_elem;
	struct iovec rx_iov[IOV_CAP];
	bool rx_pushed;
	struct conn *hash[HASH_BUCKETS];
	struct conn *all, *pend, *wait;
	struct { uint32_t local, peer; uint16_t type; } orphan[ORPHAN_RST_MAX];
	unsigned orphan_head, orphan_n;
	uint32_t next_host_port;
	struct vhu_vsock_stats st;
	bool in_flush;
};

static uint32_t v_min(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- lists and the table ---------------------------------------------- */

#define LIST_ADD(head, c, p, n)                                               \
	do {                                                                  \
		(c)->p = NULL;                                                \
		(c)->n = (head);                                              \
		if (head)                                                     \
			(head)->p = (c);                                      \
		(head) = (c);                                                 \
	} while (0)
#define LIST_DEL(head, c, p, n)                                               \
	do {                                                                  \
		if ((c)->p)                                                   \
			(c)->p->n = (c)->n;                                   \
		else                                                          \
			(head) = (c)->n;                                      \
		if ((c)->n)                                                   \
			(c)->n->p = (c)->p;                                   \
		(c)->p = (c)->n = NULL;                                       \
	} while (0)

static unsigned bucket(uint32_t local, uint32_t peer)
{
	uint32_t h = local * 0x9e3779b1u ^ (peer + 0x7f4a7c15u) * 0x85ebca6bu;

	return (h ^ h >> 16) % HASH_BUCKETS;
}

static struct conn *lookup(struct vhu_vsock *v, uint32_t local, uint32_t peer)
{
	for (struct conn *c = v->hash[bucket(local, peer)]; c; c = c->hnext)
		if (c->local_port == local && c->peer_port == peer)
			return c;
	return NULL;
}

static void hash_add(struct conn *c)
{
	struct conn **b = &c->v->hash[bucket(c->local_port, c->peer_port)];

	c->hnext = *b;
	*b = c;
	c->hashed = true;
	c->v->st.conns_open++;
}

static void hash_del(struct conn *c)
{
	struct conn **pp = &c->v->hash[bucket(c->local_port, c->peer_port)];

	if (!c->hashed)
		return;
	while (*pp && *pp != c)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = c->hnext;
	c->hashed = false;
	c->v->st.conns_open--;
}

static void pend_set(struct conn *c, unsigned bits)
{
	c->pend |= bits;
	if (!c->on_pend) {
		LIST_ADD(c->v->pend, c, pend_prev, pend_next);
		c->on_pend = true;
	}
}

static void wait_add(struct conn *c)
{
	if (!c->on_wait) {
		LIST_ADD(c->v->wait, c, wait_prev, wait_next);
		c->on_wait = true;
	}
}

static void wait_del(struct conn *c)
{
	if (c->on_wait) {
		LIST_DEL(c->v->wait, c, wait_prev, wait_next);
		c->on_wait = false;
	}
}

/* ---- host sockets ------------------------------------------------------ */

static void on_conn_fd(struct vhu_loop *loop, int fd, uint32_t events, void *opaque);

static void close_fd(struct conn *c)
{
	if (c->fd < 0)
		return;
	if (c->watched)
		vhu_loop_del(c->v->loop, c->fd);
	close(c->fd);
	c->fd = -1;
	c->watched = false;
	if (c->v->listen_paused &&
	    vhu_loop_mod(c->v->loop, c->v->listen_fd, EPOLLIN) == 0)
		c->v->listen_paused = false;
	free(c->buf);
	c->buf = NULL;
	c->buf_len = 0;
	free(c->msgq);
	c->msgq = NULL;
	c->msgq_cap = c->msgq_n = c->msgq_head = c->partial = 0;
	free(c->rec);
	c->rec = NULL;
	c->rec_have = false;
}

static void conn_free(struct conn *c)
{
	struct vhu_vsock *v = c->v;

	close_fd(c);
	hash_del(c);
	if (c->on_pend)
		LIST_DEL(v->pend, c, pend_prev, pend_next);
	wait_del(c);
	LIST_DEL(v->all, c, all_prev, all_next);
	free(c);
}

/* Drop the host side and tell the guest (RST) if it knows of the
 * connection; otherwise forget it at once. */
static void conn_reset(struct conn *c)
{
	close_fd(c);
	wait_del(c);
	if (!c->guest_knows) {
		conn_free(c);
		return;
	}
	c->st = C_DEAD;
	c->pend = 0;
	pend_set(c, PEND_RST);
}

static uint32_t peer_credit(const struct conn *c)
{
	return vsock_credit_free(c->peer_buf_alloc, c->peer_fwd_cnt, c->tx_cnt);
}

/* Would the host socket be read now (credit, the guest still receives,
 * the host still sends)? */
static bool wants_read(const struct conn *c)
{
	/* Data never overtakes the RESPONSE that opens the stream. */
	return c->st == C_ESTABLISHED && c->fd >= 0 && !c->host_eof &&
	       !(c->pend & (PEND_REQUEST | PEND_RESPONSE)) &&
	       !(c->peer_shut & VSOCK_SHUTDOWN_RCV) && peer_credit(c) > 0;
}

/* Watch what the connection can act on.  EPOLLHUP cannot be masked, so a
 * socket whose host side is gone for good leaves the set: it is then read
 * when credit or rx buffers come (conn_pump), not on readiness. */
static void update_watch(struct conn *c)
{
	uint32_t ev = 0;

	if (c->fd < 0)
		return;
	if (c->st == C_HANDSHAKE || (wants_read(c) && !c->on_wait))
		ev |= EPOLLIN;
	/* Bytes to write (for a seqpacket, a complete message: a partial one
	 * waits for the guest, and a writable socket would wake us for
	 * nothing). */
	if (c->type == VSOCK_TYPE_SEQPACKET ? c->msgq_n : c->buf_len)
		ev |= EPOLLOUT;
	if (c->hup) {
		if (c->watched) {
			vhu_loop_del(c->v->loop, c->fd);
			c->watched = false;
		}
		return;
	}
	if (!c->watched) {
		if (vhu_loop_add(c->v->loop, c->fd, ev, on_conn_fd, c) == 0) {
			c->watched = true;
			c->events = ev;
		}
		return;
	}
	if (ev != c->events && vhu_loop_mod(c->v->loop, c->fd, ev) == 0)
		c->events = ev;
}

/* ---- packets to the guest ---------------------------------------------- */

/* Make sure an rx buffer is held: 1, or 0 when the guest gave none. */
static int rx_get(struct vhu_vsock *v)
{
	int r;

	if (v->rx_held)
		return 1;
	if (!v->rx)
		return 0;
	for (;;) {
		r = vhu_vq_pop(v->rx, &v->rx_elem, v->rx_iov, IOV_CAP);
		if (r == -E2BIG)
			continue;
		if (r <= 0)
			return 0;
		/* Room for a header in the writable part, or the buffer is
		 * useless: give it back empty (the driver drops it). */
		if (vhu_iov_size(v->rx_iov + v->rx_elem.n_out, v->rx_elem.n_in) <
		    VSOCK_HDR_SIZE) {
			vhu_vq_push(v->rx, &v->rx_elem, 0);
			v->rx_pushed = true;
			continue;
		}
		v->rx_held = true;
		return 1;
	}
}

static void hdr_for(const struct vhu_vsock *v, struct conn *c, struct vsock_hdr *h,
		    uint16_t op)
{
	memset(h, 0, sizeof(*h));
	h->src_cid = VSOCK_HOST_CID;
	h->dst_cid = v->guest_cid;
	h->type = c ? c->type : VSOCK_TYPE_STREAM;
	h->op = op;
	if (c) {
		h->src_port = c->local_port;
		h->dst_port = c->peer_port;
		h->buf_alloc = v->buf_alloc;
		h->fwd_cnt = c->fwd_cnt;
		c->last_adv = c->fwd_cnt;
	}
}

/* Write the header into the held buffer and give it to the guest. */
static void rx_put(struct vhu_vsock *v, const struct vsock_hdr *h)
{
	uint8_t raw[VSOCK_HDR_SIZE];
	const struct iovec *in = v->rx_iov + v->rx_elem.n_out;

	vsock_hdr_encode(h, raw);
	vhu_iov_from_buf(in, v->rx_elem.n_in, 0, raw, sizeof(raw));
	vhu_vq_push(v->rx, &v->rx_elem, VSOCK_HDR_SIZE + h->len);
	v->rx_held = false;
	v->rx_pushed = true;
	if (h->op == VSOCK_OP_RST)
		v->st.rst_sent++;
}

/* Send what the connection owes; false when rx buffers ran out.  May free
 * the connection (after its RST). */
static bool conn_send_ctrl(struct conn *c)
{
	struct vhu_vsock *v = c->v;
	struct vsock_hdr h;

	while (c->pend) {
		if (!rx_get(v))
			return false;
		if (c->pend & PEND_RST) {
			hdr_for(v, c, &h, VSOCK_OP_RST);
			rx_put(v, &h);
			conn_free(c);
			return true;
		}
		if (c->pend & PEND_REQUEST) {
			c->pend &= ~PEND_REQUEST;
			hdr_for(v, c, &h, VSOCK_OP_REQUEST);
			c->guest_knows = true;
		} else if (c->pend & PEND_RESPONSE) {
			c->pend &= ~PEND_RESPONSE;
			hdr_for(v, c, &h, VSOCK_OP_RESPONSE);
		} else if (c->pend & PEND_CREDIT) {
			c->pend &= ~PEND_CREDIT;
			hdr_for(v, c, &h, VSOCK_OP_CREDIT_UPDATE);
		} else {
			c->pend &= ~PEND_SHUTDOWN;
			hdr_for(v, c, &h, VSOCK_OP_SHUTDOWN);
			h.flags = c->shut_to_send;
		}
		rx_put(v, &h);
	}
	LIST_DEL(v->pend, c, pend_prev, pend_next);
	c->on_pend = false;
	update_watch(c);   /* a RESPONSE sent opens the way for data */
	return true;
}

/* A reset for a packet that has no connection, in the packet's own
 * socket type (Linux ignores a reset of another type than the socket's). */
static void orphan_rst(struct vhu_vsock *v, const struct vsock_hdr *h)
{
	if (v->orphan_n == ORPHAN_RST_MAX)
		return;   /* a guest that floods: the rest are dropped */
	unsigned i = (v->orphan_head + v->orphan_n++) % ORPHAN_RST_MAX;

	v->orphan[i].local = h->dst_port;
	v->orphan[i].peer = h->src_port;
	v->orphan[i].type = h->type;
}

/*
 * Read the host socket into rx buffers while credit, buffers and data
 * last (at most PUMP_BURST packets).  Returns false when the connection
 * was reset (and possibly freed).
 */
/* The host side of a seqpacket connection ended?  A zero-length read is
 * either its end or an empty record; only the end shows POLLRDHUP. */
static bool seq_eof(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Take the next host record whole (a seqpacket socket cannot be read in
 * parts): 1 when one is held, 0 when none is there, -1 when the
 * connection was reset or the host ended (then host_eof). */
static int seq_take_record(struct conn *c)
{
	ssize_t len = recv(c->fd, NULL, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);

	if (len < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (len < 0 || (size_t)len > SEQ_RECORD_MAX || (uint32_t)len > c->peer_buf_alloc) {
		/* a record the guest could never take */
		conn_reset(c);
		return -1;
	}
	if (len == 0 && seq_eof(c->fd)) {
		c->host_eof = true;
		c->shut_to_send |= VSOCK_SHUTDOWN_SEND;
		pend_set(c, PEND_SHUTDOWN);
		return -1;
	}
	c->rec = len ? malloc((size_t)len) : NULL;
	if ((len && !c->rec) ||
	    recv(c->fd, c->rec, (size_t)len, MSG_DONTWAIT) != len) {
		conn_reset(c);
		return -1;
	}
	c->rec_len = (uint32_t)len;
	c->rec_off = 0;
	c->rec_have = true;
	return 1;
}

/* Hand host records to the guest in packets, the last of each marked
 * EOM, as credit and buffers allow.  false when the connection was
 * reset. */
static bool seq_pump(struct conn *c)
{
	struct vhu_vsock *v = c->v;

	for (int i = 0; i < PUMP_BURST && wants_read(c); i++) {
		if (!c->rec_have) {
			int r = seq_take_record(c);
			if (r == 0)
				break;
			if (r < 0) {
				if (c->st == C_DEAD || c->fd < 0)
					return false;
				break;   /* the host ended */
			}
		}
		if (!rx_get(v)) {
			wait_add(c);
			break;
		}
		const struct iovec *in = v->rx_iov + v->rx_elem.n_out;
		size_t room = vhu_iov_size(in, v->rx_elem.n_in) - VSOCK_HDR_SIZE;
		uint32_t n = v_min(c->rec_len - c->rec_off, peer_credit(c));
		n = v_min(n, (uint32_t)(room < VSOCK_MAX_PKT_PAYLOAD ? room : VSOCK_MAX_PKT_PAYLOAD));
		if (n)
			vhu_iov_from_buf(in, v->rx_elem.n_in, VSOCK_HDR_SIZE,
					 c->rec + c->rec_off, n);
		struct vsock_hdr h;
		hdr_for(v, c, &h, VSOCK_OP_RW);
		h.len = n;
		c->rec_off += n;
		if (c->rec_off == c->rec_len)
			h.flags = VSOCK_SEQ_EOM;
		rx_put(v, &h);
		c->tx_cnt += n;
		v->st.bytes_to_guest += n;
		if (c->rec_off == c->rec_len) {
			free(c->rec);
			c->rec = NULL;
			c->rec_have = false;
		}
	}
	if (c->hup && c->st == C_ESTABLISHED && !c->rec_have &&
	    (c->host_eof || c->buf_len || (c->peer_shut & VSOCK_SHUTDOWN_RCV))) {
		conn_reset(c);
		return false;
	}
	return true;
}

static bool conn_pump(struct conn *c)
{
	struct vhu_vsock *v = c->v;
	struct iovec slice[IOV_CAP];

	if (c->type == VSOCK_TYPE_SEQPACKET)
		return seq_pump(c);
	for (int i = 0; i < PUMP_BURST && wants_read(c); i++) {
		if (!rx_get(v)) {
			wait_add(c);
			break;
		}
		const struct iovec *in = v->rx_iov + v->rx_elem.n_out;
		size_t room = vhu_iov_size(in, v->rx_elem.n_in) - VSOCK_HDR_SIZE;
		uint32_t credit = peer_credit(c);
		size_t want = room < credit ? room : credit;

		if (want > VSOCK_MAX_PKT_PAYLOAD)
			want = VSOCK_MAX_PKT_PAYLOAD;
		int n = vhu_iov_slice(in, v->rx_elem.n_in, VSOCK_HDR_SIZE, want,
				      slice, IOV_CAP);
		if (n < 0)
			break;
		ssize_t got = readv(c->fd, slice, n);
		if (got < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (got < 0) {
			conn_reset(c);
			return false;
		}
		if (got == 0) {
			/* The host will send no more: tell the guest. */
			c->host_eof = true;
			c->shut_to_send |= VSOCK_SHUTDOWN_SEND;
			pend_set(c, PEND_SHUTDOWN);
			break;
		}
		struct vsock_hdr h;
		hdr_for(v, c, &h, VSOCK_OP_RW);
		h.len = (uint32_t)got;
		rx_put(v, &h);
		c->tx_cnt += (uint32_t)got;
		v->st.bytes_to_guest += (uint64_t)got;
	}
	/* A host that closed both ways: once the guest has all it sent (or
	 * wants none), or when bytes wait for a host that will never read
	 * them, the connection is over; the guest reads what it got, then
	 * sees the reset as the end of the stream. */
	if (c->hup && c->st == C_ESTABLISHED &&
	    (c->host_eof || c->buf_len || (c->peer_shut & VSOCK_SHUTDOWN_RCV))) {
		conn_reset(c);
		return false;
	}
	return true;
}

/* Give the guest everything that can go now: orphan resets, control
 * packets, then host data for connections that waited for buffers. */
static void rx_flush(struct vhu_vsock *v)
{
	if (v->in_flush || !v->rx)
		return;
	v->in_flush = true;
	while (v->orphan_n && rx_get(v)) {
		struct vsock_hdr h;
		hdr_for(v, NULL, &h, VSOCK_OP_RST);
		h.src_port = v->orphan[v->orphan_head].local;
		h.dst_port = v->orphan[v->orphan_head].peer;
		h.type = v->orphan[v->orphan_head].type;
		rx_put(v, &h);
		v->orphan_head = (v->orphan_head + 1) % ORPHAN_RST_MAX;
		v->orphan_n--;
	}
	while (v->pend) {
		if (!conn_send_ctrl(v->pend))
			break;
	}
	/* Those waiting for buffers: each gets a turn while buffers last. */
	struct conn *c = v->wait, *next;
	for (; c && v->rx; c = next) {
		next = c->wait_next;
		wait_del(c);
		if (!conn_pump(c))
			continue;
		update_watch(c);
		if (c->on_wait)
			break;     /* out of buffers again */
	}
	/* Resets the turns above caused. */
	while (v->pend) {
		if (!conn_send_ctrl(v->pend))
			break;
	}
	if (v->rx_pushed && v->rx)
		vhu_vq_notify(v->rx);
	v->rx_pushed = false;
	v->in_flush = false;
}

/* ---- guest -> host ----------------------------------------------------- */

/* Seqpacket: send each complete message as one record. */
static bool seq_drain(struct conn *c)
{
	uint32_t cap = c->v->buf_alloc;

	while (c->msgq_n) {
		uint32_t len = c->msgq[c->msgq_head];
		uint32_t first = v_min(len, cap - c->buf_head);
		struct iovec iov[2] = {
			{ len ? c->buf + c->buf_head : NULL, first },
			{ c->buf, len - first },
		};
		struct msghdr m = { .msg_iov = iov,
				    .msg_iovlen = !len ? 0 : iov[1].iov_len ? 2 : 1 };
		ssize_t w = sendmsg(c->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (w != (ssize_t)len) {
			conn_reset(c);   /* EMSGSIZE, the host gone... */
			return false;
		}
		if (len)
			c->buf_head = (c->buf_head + len) % cap;
		c->buf_len -= len;
		c->fwd_cnt += len;
		c->v->st.bytes_to_host += len;
		c->msgq_head = (c->msgq_head + 1) % c->msgq_cap;
		c->msgq_n--;
	}
	if (!c->buf_len) {
		free(c->buf);
		c->buf = NULL;
		c->buf_head = 0;
	}
	return true;
}

/* Write what the buffer holds; false when the connection was reset. */
static bool conn_drain(struct conn *c)
{
	if (c->type == VSOCK_TYPE_SEQPACKET)
		return seq_drain(c);
	while (c->buf_len) {
		uint32_t first = v_min(c->buf_len, c->v->buf_alloc - c->buf_head);
		struct iovec iov[2] = {
			{ c->buf + c->buf_head, first },
			{ c->buf, c->buf_len - first },
		};
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = iov[1].iov_len ? 2 : 1 };
		ssize_t w = sendmsg(c->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (w < 0) {
			conn_reset(c);
			return false;
		}
		c->buf_head = (uint32_t)((c->buf_head + (size_t)w) % c->v->buf_alloc);
		c->buf_len -= (uint32_t)w;
		c->fwd_cnt += (uint32_t)w;
		c->v->st.bytes_to_host += (uint64_t)w;
	}
	if (!c->buf_len) {
		free(c->buf);
		c->buf = NULL;
		c->buf_head = 0;
	}
	return true;
}

/* After the guest's SHUTDOWN and once its bytes reached the host: pass
 * the half-close on, or end the connection when both ways are shut. */
static bool conn_settle(struct conn *c)
{
	if (c->st != C_ESTABLISHED || !(c->peer_shut & VSOCK_SHUTDOWN_SEND))
		return true;
	/* A message the guest never finished cannot become a record. */
	if (c->type == VSOCK_TYPE_SEQPACKET && c->partial && c->buf_len == c->partial) {
		c->buf_len = 0;
		c->partial = 0;
		free(c->buf);
		c->buf = NULL;
		c->buf_head = 0;
	}
	if (c->buf_len)
		return true;
	if ((c->peer_shut & VSOCK_SHUTDOWN_BOTH) == VSOCK_SHUTDOWN_BOTH) {
		/* The guest closed: the host reads the rest, then EOF; the
		 * guest waits for our RST to finish its close. */
		conn_reset(c);
		return false;
	}
	if (!c->host_wr_shut) {
		shutdown(c->fd, SHUT_WR);
		c->host_wr_shut = true;
	}
	return true;
}

static void maybe_credit_update(struct conn *c)
{
	if (vsock_credit_update_due(c->v->buf_alloc, c->fwd_cnt, c->rx_cnt, c->last_adv))
		pend_set(c, PEND_CREDIT);
}

/* An RW payload at offset VSOCK_HDR_SIZE of the readable buffers; false
 * when the connection was reset (and maybe freed). */
static bool seq_queue_msg(struct conn *c, uint32_t len)
{
	if (c->msgq_n == c->msgq_cap) {
		/* Every message but an empty one takes credit, so a Linux
		 * guest has at most buf_alloc of them waiting (4 bytes of
		 * length each); more is a flood of empty ones. */
		uint32_t max = c->v->buf_alloc;
		uint32_t cap = c->msgq_cap ? c->msgq_cap * 2 : 16;
		if (c->msgq_cap >= max)
			return false;
		if (cap > max)
			cap = max;
		uint32_t *q = malloc(cap * sizeof(*q));
		if (!q)
			return false;
		for (uint32_t i = 0; i < c->msgq_n; i++)
			q[i] = c->msgq[(c->msgq_head + i) % c->msgq_cap];
		free(c->msgq);
		c->msgq = q;
		c->msgq_cap = cap;
		c->msgq_head = 0;
	}
	c->msgq[(c->msgq_head + c->msgq_n++) % c->msgq_cap] = len;
	return true;
}

static bool conn_rw(struct conn *c, const struct iovec *out, unsigned n_out,
		    uint32_t len, uint32_t flags)
{
	struct vhu_vsock *v = c->v;
	struct iovec slice[IOV_CAP];
	size_t done = 0;
	bool seq = c->type == VSOCK_TYPE_SEQPACKET;
	bool eom = seq && (flags & VSOCK_SEQ_EOM);

	if (c->st != C_ESTABLISHED || (c->peer_shut & VSOCK_SHUTDOWN_SEND) ||
	    !vsock_credit_fits(v->buf_alloc, c->fwd_cnt, c->rx_cnt, len)) {
		v->st.pkts_dropped++;
		conn_reset(c);
		return false;
	}
	if (!len && !eom)
		return true;
	c->rx_cnt += len;
	/* Nothing queued before it (for a seqpacket: a whole message):
	 * straight from guest memory to the host. */
	if (!c->buf_len && (!seq || (eom && !c->msgq_n))) {
		int n = len ? vhu_iov_slice(out, n_out, VSOCK_HDR_SIZE, len, slice, IOV_CAP) : 0;
		if (n >= 0) {
			struct msghdr m = { .msg_iov = slice, .msg_iovlen = (size_t)n };
			ssize_t w = sendmsg(c->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
			if ((w < 0 && errno != EAGAIN && errno != EINTR) ||
			    (seq && w >= 0 && w != (ssize_t)len)) {
				conn_reset(c);
				return false;
			}
			if (w >= 0) {
				done = (size_t)w;
				c->fwd_cnt += (uint32_t)w;
				v->st.bytes_to_host += (uint64_t)w;
				if (seq) {
					maybe_credit_update(c);
					return true;
				}
			}
		}
	}
	if (done < len) {
		/* Within credit, so it fits the buffer. */
		if (!c->buf) {
			c->buf = malloc(v->buf_alloc);
			if (!c->buf) {
				conn_reset(c);
				return false;
			}
			c->buf_head = 0;
		}
		size_t rest = len - done, off = VSOCK_HDR_SIZE + done;
		while (rest) {
			uint32_t tail = (c->buf_head + c->buf_len) % v->buf_alloc;
			size_t chunk = v->buf_alloc - tail;
			if (chunk > rest)
				chunk = rest;
			vhu_iov_to_buf(out, n_out, off, c->buf + tail, chunk);
			c->buf_len += (uint32_t)chunk;
			off += chunk;
			rest -= chunk;
		}
		if (seq)
			c->partial += len;
	}
	if (eom) {
		if (!seq_queue_msg(c, c->partial)) {
			v->st.pkts_dropped++;
			conn_reset(c);
			return false;
		}
		c->partial = 0;
		if (!seq_drain(c))
			return false;
	}
	maybe_credit_update(c);
	return true;
}

/* ---- connections from the host ----------------------------------------- */

static void timer_arm(struct vhu_vsock *v, bool on)
{
	unsigned tick = v->connect_timeout_ms / 4;
	struct itimerspec its = { 0 };

	if (on == v->timer_armed || v->timer_fd < 0)
		return;
	if (on) {
		if (tick < 10)
			tick = 10;
		if (tick > 1000)
			tick = 1000;
		its.it_interval.tv_sec = tick / 1000;
		its.it_interval.tv_nsec = (long)(tick % 1000) * 1000000;
		its.it_value = its.it_interval;
	}
	if (timerfd_settime(v->timer_fd, 0, &its, NULL) == 0)
		v->timer_armed = on;
}

static void set_deadline(struct conn *c)
{
	c->deadline = now_ms() + c->v->connect_timeout_ms;
	timer_arm(c->v, true);
}

/* A host program that never finished its CONNECT line, or a guest that
 * never answered the REQUEST: the host socket closes (and the guest
 * hears RST if it knew). */
static void on_timer(struct vhu_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct vhu_vsock *v = opaque;
	uint64_t ticks;
	int64_t now = now_ms();
	bool any = false;

	if (read(fd, &ticks, sizeof(ticks)) < 0 && errno == EAGAIN)
		return;
	for (struct conn *c = v->all, *next; c; c = next) {
		next = c->all_next;
		if (!c->deadline)
			continue;
		if (now < c->deadline) {
			any = true;
		} else if (c->st == C_HANDSHAKE) {
			conn_free(c);
		} else if (c->st == C_CONNECTING) {
			c->deadline = 0;
			conn_reset(c);
		} else {
			c->deadline = 0;
		}
	}
	if (!any)
		timer_arm(v, false);
	rx_flush(v);
}

static uint32_t alloc_host_port(struct vhu_vsock *v, uint32_t peer)
{
	for (;;) {
		uint32_t p = v->next_host_port++;
		if (v->next_host_port == UINT32_MAX)
			v->next_host_port = HOST_PORT_FIRST;
		if (!lookup(v, p, peer))
			return p;
	}
}

/* Read "CONNECT <port>\n" without taking a byte past it: what the host
 * writes after the line is the stream's first data. */
static void conn_handshake(struct conn *c)
{
	char line[CONNECT_LINE_MAX + 1];
	ssize_t n = recv(c->fd, line, CONNECT_LINE_MAX, MSG_PEEK | MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_free(c);
		return;
	}
	line[n] = '\0';
	char *nl = memchr(line, '\n', (size_t)n);
	if (!nl) {
		if (n == CONNECT_LINE_MAX || c->hup)
			conn_free(c);
		return;   /* the rest of the line is still coming */
	}
	size_t used = (size_t)(nl - line) + 1;
	*nl = '\0';
	if (nl > line && nl[-1] == '\r')
		nl[-1] = '\0';
	char *end;
	unsigned long port = 0;
	bool ok = strncasecmp(line, "CONNECT ", 8) == 0 && line[8] >= '0' &&
		  line[8] <= '9';
	if (ok) {
		errno = 0;
		port = strtoul(line + 8, &end, 10);
		ok = !errno && *end == '\0' && port <= UINT32_MAX;
	}
	if (!ok || recv(c->fd, line, used, MSG_DONTWAIT) != (ssize_t)used) {
		conn_free(c);
		return;
	}
	c->peer_port = (uint32_t)port;
	c->local_port = alloc_host_port(c->v, c->peer_port);
	c->st = C_CONNECTING;
	set_deadline(c);
	hash_add(c);
	pend_set(c, PEND_REQUEST);
	update_watch(c);
}

static struct conn *conn_new(struct vhu_vsock *v, int fd)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->v = v;
	c->fd = fd;
	LIST_ADD(v->all, c, all_prev, all_next);
	return c;
}

static void on_conn_fd(struct vhu_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct conn *c = opaque;
	struct vhu_vsock *v = c->v;

	if (events & (EPOLLHUP | EPOLLERR))
		c->hup = true;
	switch (c->st) {
	case C_HANDSHAKE:
		conn_handshake(c);
		break;
	case C_CONNECTING:
		/* Before the guest answered, only a hang-up wakes us. */
		if (c->hup)
			conn_reset(c);
		break;
	case C_ESTABLISHED:
		if ((events & EPOLLOUT) || (c->hup && c->buf_len)) {
			if (!conn_drain(c) || !conn_settle(c))
				break;
			maybe_credit_update(c);
		}
		if (!conn_pump(c))
			break;
		update_watch(c);
		break;
	case C_DEAD:
		break;
	}
	rx_flush(v);
}

static void on_listen(struct vhu_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct vhu_vsock *v = opaque;

	for (int i = 0; i < 16; i++) {
		int s = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (s < 0 && (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED))
			return;
		struct conn *c = s >= 0 ? conn_new(v, s) : NULL;
		if (c) {
			c->st = C_HANDSHAKE;
			c->type = VSOCK_TYPE_STREAM;
			c->host_initiated = true;
			set_deadline(c);
			update_watch(c);
			if (c->watched)
				continue;
			conn_free(c);
		} else if (s >= 0) {
			close(s);
		}
		/* Out of fds (EMFILE...) or memory: wait for a host socket to
		 * close rather than spin on a backlog we cannot take. */
		if (vhu_loop_mod(v->loop, fd, 0) == 0 && !v->listen_paused) {
			v->listen_paused = true;
			vhu_log(VHU_LOG_WARN, "vhu-vsock: cannot take host connections "
				"(%s): paused until one closes", strerror(errno ? errno : ENOMEM));
		}
		return;
	}
}

/* ---- the tx queue ------------------------------------------------------ */

/* A guest REQUEST to host port h->dst_port: connect to uds_path_PORT. */
static void guest_request(struct vhu_vsock *v, const struct vsock_hdr *h)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = -1;

	/* A seqpacket connects to a seqpacket listener (a stream one refuses
	 * it, and the other way round). */
	if (v->uds_path &&
	    (size_t)snprintf(a.sun_path, sizeof(a.sun_path), "%s_%u", v->uds_path,
			     h->dst_port) < sizeof(a.sun_path))
		fd = socket(AF_UNIX, (h->type == VSOCK_TYPE_SEQPACKET ? SOCK_SEQPACKET
									: SOCK_STREAM) |
				     SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	/* A listener's full backlog (EAGAIN) is a refusal too: the guest
	 * may try again. */
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		if (fd >= 0)
			close(fd);
		orphan_rst(v, h);
		return;
	}
	struct conn *c = conn_new(v, fd);
	if (!c) {
		close(fd);
		orphan_rst(v, h);
		return;
	}
	c->local_port = h->dst_port;
	c->peer_port = h->src_port;
	c->type = h->type;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	c->guest_knows = true;
	c->st = C_ESTABLISHED;
	hash_add(c);
	v->st.conns_total++;
	pend_set(c, PEND_RESPONSE);
	update_watch(c);
}

static void tx_packet(struct vhu_vsock *v, const struct vhu_vq_elem *e)
{
	struct vsock_hdr h;

	if (vsock_pkt_parse(e->iov, e->n_out, &h) != VSOCK_PARSE_OK ||
	    h.src_cid != v->guest_cid || h.dst_cid != VSOCK_HOST_CID) {
		v->st.pkts_dropped++;
		return;
	}
	struct conn *c = lookup(v, h.dst_port, h.src_port);
	if (c && !c->guest_knows) {
		/* Our REQUEST has not gone out: the guest cannot know this
		 * connection, and a packet that guessed its ports must not
		 * touch it (an early RESPONSE would send the host "OK"). */
		v->st.pkts_dropped++;
		if (h.op != VSOCK_OP_RST)
			orphan_rst(v, &h);
		return;
	}
	bool served = h.type == VSOCK_TYPE_STREAM ||
		      (h.type == VSOCK_TYPE_SEQPACKET && v->seqpacket);
	if (!served || !c || c->type != h.type || c->st == C_DEAD) {
		if (served && !c && h.op == VSOCK_OP_REQUEST) {
			guest_request(v, &h);
			return;
		}
		/* Nobody to talk to, or a type this device does not serve: a
		 * reset unless it is one (a stream connection with the same
		 * ports is left alone, as Linux does).  A connection being torn
		 * down has its RST on the way: nothing more. */
		if (h.op != VSOCK_OP_RST && (!c || h.type != c->type)) {
			v->st.pkts_dropped++;
			orphan_rst(v, &h);
		} else if (c && h.op == VSOCK_OP_RST && h.type == c->type) {
			conn_free(c);   /* both sides reset: nothing owed */
		}
		return;
	}
	bool starved = peer_credit(c) == 0;
	c->peer_buf_alloc = h.buf_alloc;
	c->peer_fwd_cnt = h.fwd_cnt;
	switch (h.op) {
	case VSOCK_OP_RESPONSE:
		if (c->st != C_CONNECTING || !c->host_initiated) {
			conn_reset(c);
			return;
		}
		{
			char ok[24];
			int n = snprintf(ok, sizeof(ok), "OK %u\n", c->local_port);
			/* A fresh socket's buffer takes a line. */
			if (send(c->fd, ok, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) != n) {
				conn_reset(c);
				return;
			}
		}
		c->st = C_ESTABLISHED;
		c->deadline = 0;
		v->st.conns_total++;
		break;
	case VSOCK_OP_RST:
		conn_free(c);
		return;
	case VSOCK_OP_SHUTDOWN:
		c->peer_shut |= h.flags & VSOCK_SHUTDOWN_BOTH;
		if (!conn_settle(c))
			return;
		break;
	case VSOCK_OP_RW:
		if (!conn_rw(c, e->iov, e->n_out, h.len, h.flags))
			return;
		break;
	case VSOCK_OP_CREDIT_UPDATE:
		break;
	case VSOCK_OP_CREDIT_REQUEST:
		pend_set(c, PEND_CREDIT);
		break;
	default:
		/* REQUEST on a live connection, or an op that does not exist */
		v->st.pkts_dropped++;
		conn_reset(c);
		return;
	}
	if (starved && c->st == C_ESTABLISHED && !conn_pump(c))
		return;
	update_watch(c);
}

static void tx_process(struct vhu_vsock *v)
{
	struct iovec iov[IOV_CAP];
	struct vhu_vq_elem e;
	int r;

	while (v->tx && (r = vhu_vq_pop(v->tx, &e, iov, IOV_CAP)) != 0) {
		if (r == -E2BIG) {
			v->st.pkts_dropped++;
			continue;
		}
		if (r < 0)
			break;
		tx_packet(v, &e);
		vhu_vq_push(v->tx, &e, 0);
	}
	if (v->tx)
		vhu_vq_notify(v->tx);
	rx_flush(v);
}

/* ---- the event queue --------------------------------------------------- */

#define VSOCK_EVENT_TRANSPORT_RESET 0u

static void event_flush(struct vhu_vsock *v)
{
	struct iovec iov[IOV_CAP];
	struct vhu_vq_elem e;
	int r;

	while (v->reset_owed && v->ev && (r = vhu_vq_pop(v->ev, &e, iov, IOV_CAP)) != 0) {
		if (r < 0 && r != -E2BIG)
			break;
		if (r < 0)
			continue;
		const struct iovec *in = iov + e.n_out;
		uint8_t id[4] = { VSOCK_EVENT_TRANSPORT_RESET, 0, 0, 0 }; /* le32 */
		if (vhu_iov_size(in, e.n_in) < sizeof(id)) {
			vhu_vq_push(v->ev, &e, 0);   /* too small: given back */
			continue;
		}
		vhu_iov_from_buf(in, e.n_in, 0, id, sizeof(id));
		vhu_vq_push(v->ev, &e, sizeof(id));
		v->reset_owed = false;
	}
	if (v->ev)
		vhu_vq_notify(v->ev);
}

/* ---- device callbacks -------------------------------------------------- */

static void queue_started(void *opaque, struct vhu_vq *vq)
{
	struct vhu_vsock *v = opaque;

	switch (vhu_vq_index(vq)) {
	case Q_RX:
		v->rx = vq;
		rx_flush(v);
		break;
	case Q_TX:
		v->tx = vq;
		tx_process(v);
		break;
	case Q_EVENT:
		v->ev = vq;
		event_flush(v);
		break;
	}
}

static void queue_stopped(void *opaque, struct vhu_vq *vq)
{
	struct vhu_vsock *v = opaque;

	switch (vhu_vq_index(vq)) {
	case Q_RX:
		if (v->rx_held) {
			vhu_vq_push(vq, &v->rx_elem, 0);
			vhu_vq_notify(vq);
			v->rx_held = false;
		}
		v->rx = NULL;
		break;
	case Q_TX:
		v->tx = NULL;
		break;
	case Q_EVENT:
		v->ev = NULL;
		break;
	}
}

static void queue_kick(void *opaque, struct vhu_vq *vq)
{
	struct vhu_vsock *v = opaque;

	switch (vhu_vq_index(vq)) {
	case Q_RX:
		rx_flush(v);
		break;
	case Q_TX:
		tx_process(v);
		break;
	case Q_EVENT:
		event_flush(v);
		break;
	}
}

/* The driver is gone or reset: its sockets with it.  Host programs see
 * their connections close. */
static void reset(void *opaque)
{
	struct vhu_vsock *v = opaque;

	while (v->all)
		conn_free(v->all);
	v->orphan_n = 0;
	v->rx_held = false;
	v->reset_owed = true;
	v->seqpacket = false;
}

static int get_config(void *opaque, uint32_t offset, void *buf, uint32_t len)
{
	struct vhu_vsock *v = opaque;

	memcpy(buf, v->config + offset, len);
	return 0;
}

/* Read-only for the guest (nothing is writable, so the library refuses
 * those); a migration restore may only confirm the CID. */
static int set_config(void *opaque, uint32_t offset, const void *buf, uint32_t len,
		      uint32_t flags)
{
	struct vhu_vsock *v = opaque;

	if (!(flags & VHU_CONFIG_MIGRATION))
		return -EPERM;
	return memcmp(v->config + offset, buf, len) ? -EINVAL : 0;
}

static void features_set(void *opaque, uint64_t features)
{
	struct vhu_vsock *v = opaque;

	v->seqpacket = features & VHU_BIT(VSOCK_F_SEQPACKET);
}

static const struct vhu_device_ops vsock_ops = {
	.features_set = features_set,
	.queue_started = queue_started,
	.queue_stopped = queue_stopped,
	.queue_kick = queue_kick,
	.get_config = get_config,
	.set_config = set_config,
	.reset = reset,
};

void vhu_vsock_backend_opts(struct vhu_vsock *v, struct vhu_backend_opts *bo)
{
	memset(bo, 0, sizeof(*bo));
	bo->ops = &vsock_ops;
	bo->opaque = v;
	bo->features = VHU_BIT(VHU_F_VERSION_1) | VHU_BIT(VHU_F_INDIRECT_DESC) |
		       VHU_BIT(VHU_F_EVENT_IDX) | VHU_BIT(VHU_F_RING_PACKED) |
		       VHU_BIT(VSOCK_F_SEQPACKET);
	bo->protocol_features = VHU_BIT(VHU_PF_CONFIG);
	bo->num_queues = NUM_QUEUES;
	bo->max_queue_size = MAX_QUEUE_SIZE;
	bo->config_size = sizeof(v->config);
}

/* ---- creation ---------------------------------------------------------- */

static int bind_listen(int fd, const struct sockaddr_un *a)
{
	if (bind(fd, (const struct sockaddr *)a, sizeof(*a)) < 0 ||
	    listen(fd, 128) < 0)
		return -errno;
	return 0;
}

static int listen_at(const char *path, int *out)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct stat s;
	int fd, r;

	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = bind_listen(fd, &a);
	if (r == -EADDRINUSE && lstat(path, &s) == 0 && S_ISSOCK(s.st_mode)) {
		/* A socket nobody serves any more is replaced; a live one
		 * is someone else's. */
		int t = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool live = t >= 0 && connect(t, (struct sockaddr *)&a, sizeof(a)) == 0;
		if (t >= 0)
			close(t);
		if (!live && unlink(path) == 0)
			r = bind_listen(fd, &a);
	}
	if (r < 0) {
		close(fd);
		return r;
	}
	*out = fd;
	return 0;
}

int vhu_vsock_new(const struct vhu_vsock_opts *o, struct vhu_loop *loop,
		  struct vhu_vsock **out)
{
	struct vhu_vsock *v;
	int r;

	*out = NULL;
	if (!o || !loop || o->guest_cid < 3 || o->guest_cid >= UINT32_MAX ||
	    o->buf_alloc > VHU_VSOCK_BUF_ALLOC_MAX)
		return -EINVAL;
	/* "<uds_path>_<port>" must fit a socket address. */
	if (o->uds_path && strlen(o->uds_path) + 11 >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -ENAMETOOLONG;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->loop = loop;
	v->listen_fd = -1;
	v->timer_fd = -1;
	v->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms
						      : CONNECT_TIMEOUT_MS_DEFAULT;
	v->guest_cid = o->guest_cid;
	v->buf_alloc = o->buf_alloc ? o->buf_alloc : VHU_VSOCK_BUF_ALLOC_DEFAULT;
	v->next_host_port = HOST_PORT_FIRST;
	v->reset_owed = true;
	for (int i = 0; i < 8; i++)
		v->config[i] = (uint8_t)(o->guest_cid >> (8 * i));
	if (o->uds_path) {
		v->uds_path = strdup(o->uds_path);
		if (!v->uds_path) {
			r = -ENOMEM;
			goto fail;
		}
		r = listen_at(v->uds_path, &v->listen_fd);
		if (r < 0)
			goto fail;
		v->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		r = v->timer_fd < 0 ? -errno : 0;
		if (r == 0)
			r = vhu_loop_add(loop, v->timer_fd, EPOLLIN, on_timer, v);
		if (r == 0) {
			r = vhu_loop_add(loop, v->listen_fd, EPOLLIN, on_listen, v);
			if (r < 0)
				vhu_loop_del(loop, v->timer_fd);
		}
		if (r < 0) {
			if (v->timer_fd >= 0)
				close(v->timer_fd);
			close(v->listen_fd);
			unlink(v->uds_path);
			goto fail;
		}
	}
	*out = v;
	return 0;
fail:
	free(v->uds_path);
	free(v);
	return r;
}

void vhu_vsock_free(struct vhu_vsock *v)
{
	if (!v)
		return;
	while (v->all)
		conn_free(v->all);
	if (v->listen_fd >= 0) {
		vhu_loop_del(v->loop, v->listen_fd);
		close(v->listen_fd);
		unlink(v->uds_path);
	}
	if (v->timer_fd >= 0) {
		vhu_loop_del(v->loop, v->timer_fd);
		close(v->timer_fd);
	}
	free(v->uds_path);
	free(v);
}

void vhu_vsock_get_stats(const struct vhu_vsock *v, struct vhu_vsock_stats *s)
{
	*s = v->st;
}
