/* SPDX-License-Identifier: MIT */
/*
 * The checker's front-end: raw messages over the vhost-user socket, the
 * QEMU-order handshake, memfd guest memory and a split ring driven by
 * hand (descriptors written directly, so that cases can also write
 * descriptors no driver would).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "check.h"

_Static_assert(CHK_WHY == VHU_TOOL_WHY, "the device modules write why texts");

#define WANT_PF (VHU_BIT(VHU_PF_MQ) | VHU_BIT(VHU_PF_REPLY_ACK) |             \
		 VHU_BIT(VHU_PF_BACKEND_REQ) | VHU_BIT(VHU_PF_CONFIG) |      \
		 VHU_BIT(VHU_PF_CONFIGURE_MEM_SLOTS))
/* virtio-blk device bits 0-23 that change nothing in how we drive the
 * ring (no EVENT_IDX, packed ring, IOMMU or IN_ORDER). */
#define WANT_F (0x00ffffffull | VHU_BIT(VHU_F_VERSION_1) |                    \
		VHU_BIT(VHU_F_PROTOCOL_FEATURES) |                            \
		VHU_BIT(VHU_F_INDIRECT_DESC))

int chk_fail(char *why, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, CHK_WHY, fmt, ap);
	va_end(ap);
	return -1;
}

int chk_pass(char *why, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, CHK_WHY, fmt, ap);
	va_end(ap);
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void chk_sess_init(struct chk_sess *s, int timeout_ms)
{
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	s->breq_fd = -1;
	s->memfd = -1;
	s->kick_fd = -1;
	s->call_fd = -1;
	s->timeout_ms = timeout_ms;
}

void chk_sess_close(struct chk_sess *s)
{
	int *fds[] = { &s->fd, &s->breq_fd, &s->memfd, &s->kick_fd,
		       &s->call_fd };
	for (size_t i = 0; i < VHU__ARRAY_SIZE(fds); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
	if (s->mem)
		munmap(s->mem, CHK_MEM_SIZE);
	s->mem = NULL;
}

int chk_connect(struct chk_sess *s, const char *path, char *why)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return chk_fail(why, "socket path too long"), -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	/* A back-end that serves one front-end at a time may still be
	 * tearing the previous connection down: retry for a while. */
	int64_t deadline = now_ms() + s->timeout_ms + 2000;
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return chk_fail(why, "socket: %s", strerror(errno)), -errno;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			int r = vhu__set_nonblock(fd);
			if (r < 0) {
				close(fd);
				return chk_fail(why, "fcntl: %s", strerror(-r)), r;
			}
			s->fd = fd;
			s->dropped = false;
			return 0;
		}
		int e = errno;
		close(fd);
		if ((e != ECONNREFUSED && e != ENOENT && e != EAGAIN) ||
		    now_ms() > deadline) {
			chk_fail(why, "connect %s: %s", path, strerror(e));
			return -e;
		}
		usleep(20000);
	}
}

int chk_open(struct chk_sess *s, const char *path, bool handshake, char *why)
{
	int64_t deadline = now_ms() + s->timeout_ms + 2000;
	int timeout = s->timeout_ms;
	for (;;) {
		int r = chk_connect(s, path, why);
		if (r < 0)
			return r;
		if (handshake) {
			r = chk_handshake(s, why);
		} else {
			uint64_t f;
			r = chk_get_u64(s, VHU_REQ_GET_FEATURES, &f, why);
		}
		if (r == 0)
			return 0;
		/* A back-end that serves one front-end at a time may close
		 * a new connection until it has noticed that the previous
		 * one went away. */
		if (r != -EPIPE || s->replies || now_ms() > deadline)
			return r;
		bool want_log = s->want_log;
		chk_sess_close(s);
		chk_sess_init(s, timeout);
		s->want_log = want_log;
		usleep(20000);
	}
}

int chk_send_raw(int fd, const void *buf, size_t len, const int *fds,
		 unsigned nfds)
{
	return vhu__sock_send_bytes(fd, buf, len, fds, nfds);
}

int chk_send(struct chk_sess *s, uint32_t req, uint32_t flags,
	     const void *payload, uint32_t size, const int *fds, unsigned nfds)
{
	/* Room for oversized payloads too (hostile cases). */
	uint8_t buf[sizeof(struct vhu_msg_hdr) + 4096];
	struct vhu_msg_hdr h = { req, flags, size };
	if (s->fd < 0)
		return -ENOTCONN;
	if (size > sizeof(buf) - sizeof(h))
		return -EINVAL;
	memcpy(buf, &h, sizeof(h));
	if (size)
		memcpy(buf + sizeof(h), payload, size);
	int r = chk_send_raw(s->fd, buf, sizeof(h) + size, fds, nfds);
	if (r == -EPIPE || r == -ECONNRESET)
		s->dropped = true;
	return r;
}

int chk_recv(struct chk_sess *s, struct vhu_msg *m, int timeout_ms,
	     unsigned *nfds_out)
{
	int fds[VHU_MAX_FDS];
	unsigned nfds = 0;
	if (s->fd < 0 || s->dropped)
		return 0;
	int r = vhu__sock_recv_timeout(s->fd, m, fds, &nfds, timeout_ms);
	if (r == 1) {
		s->replies++;
		vhu__close_fds(fds, nfds);
		if (nfds_out)
			*nfds_out = nfds;
		return 1;
	}
	if (r == 0 || r == -ECONNRESET || r == -EPIPE) {
		s->dropped = true;
		return 0;
	}
	return r;
}

int chk_check_reply(const struct vhu_msg *m, uint32_t req, uint32_t want_size,
		    unsigned nfds, char *why)
{
	if (m->hdr.request != req)
		return chk_fail(why, "reply id %u to request %u",
				m->hdr.request, req), -EPROTO;
	if (m->hdr.flags != (VHU_MSG_REPLY | VHU_MSG_VERSION))
		return chk_fail(why, "reply to %u has flags 0x%x, not 0x5",
				req, m->hdr.flags), -EPROTO;
	if (m->hdr.size != want_size)
		return chk_fail(why, "reply to %u has size %u, not %u", req,
				m->hdr.size, want_size), -EPROTO;
	if (nfds)
		return chk_fail(why, "reply to %u carries %u fds", req, nfds),
		       -EPROTO;
	return 0;
}

const char *chk_config_error(const struct vhu_msg *m, unsigned nfds)
{
	if (m->hdr.request != VHU_REQ_GET_CONFIG || nfds ||
	    m->hdr.flags != (VHU_MSG_REPLY | VHU_MSG_VERSION))
		return NULL;
	if (m->hdr.size == 0)
		return "error reply (size 0)";
	if (m->hdr.size == VHU_CONFIG_HDR_SIZE && m->p.config.size == 0)
		return "error reply (config size 0)";
	return NULL;
}

static int recv_reply(struct chk_sess *s, uint32_t req, uint32_t size,
		      struct vhu_msg *m, char *why)
{
	unsigned nfds = 0;
	int r = chk_recv(s, m, s->timeout_ms, &nfds);
	if (r == 0)
		return chk_fail(why, "connection dropped awaiting reply to %u",
				req), -EPIPE;
	if (r < 0)
		return chk_fail(why, "no valid reply to %u: %s", req,
				strerror(-r)), r;
	return chk_check_reply(m, req, size, nfds, why);
}

int chk_get(struct chk_sess *s, uint32_t req, const void *payload,
	    uint32_t size, uint32_t reply_size, struct vhu_msg *out, char *why)
{
	int r = chk_send(s, req, VHU_MSG_VERSION, payload, size, NULL, 0);
	if (r < 0)
		return chk_fail(why, "send %u: %s", req, strerror(-r)), r;
	return recv_reply(s, req, reply_size, out, why);
}

int chk_get_u64(struct chk_sess *s, uint32_t req, uint64_t *val, char *why)
{
	struct vhu_msg m;
	int r = chk_get(s, req, NULL, 0, 8, &m, why);
	if (r == 0)
		*val = m.p.u64;
	return r;
}

int chk_set(struct chk_sess *s, uint32_t req, const void *payload,
	    uint32_t size, const int *fds, unsigned nfds, char *why)
{
	bool ack = s->acked_pf & VHU_BIT(VHU_PF_REPLY_ACK);
	uint32_t flags = VHU_MSG_VERSION | (ack ? VHU_MSG_NEED_REPLY : 0);
	int r = chk_send(s, req, flags, payload, size, fds, nfds);
	if (r < 0)
		return chk_fail(why, "send %u: %s", req, strerror(-r)), r;
	if (!ack)
		return 0;
	struct vhu_msg m;
	r = recv_reply(s, req, 8, &m, why);
	if (r < 0)
		return r;
	if (m.p.u64 != 0)
		return chk_fail(why, "request %u refused (ack %llu)", req,
				(unsigned long long)m.p.u64), -EREMOTEIO;
	return 0;
}

int chk_set_u64(struct chk_sess *s, uint32_t req, uint64_t val, char *why)
{
	return chk_set(s, req, &val, 8, NULL, 0, why);
}

/*
 * QEMU's order: GET_FEATURES, GET/SET_PROTOCOL_FEATURES, GET_QUEUE_NUM,
 * SET_OWNER, SET_BACKEND_REQ_FD, SET_FEATURES, GET_MAX_MEM_SLOTS.
 * SET_PROTOCOL_FEATURES itself goes without NEED_REPLY: REPLY_ACK is not
 * in force before it is acknowledged.
 */
int chk_handshake(struct chk_sess *s, char *why)
{
	int r = chk_get_u64(s, VHU_REQ_GET_FEATURES, &s->features, why);
	if (r < 0)
		return r;
	s->have_pf = s->features & VHU_BIT(VHU_F_PROTOCOL_FEATURES);
	if (s->have_pf) {
		r = chk_get_u64(s, VHU_REQ_GET_PROTOCOL_FEATURES, &s->pfeatures,
				why);
		if (r < 0)
			return r;
		uint64_t pf = s->pfeatures &
			      (WANT_PF | (s->want_log ? VHU_BIT(VHU_PF_LOG_SHMFD) : 0));
		r = chk_send(s, VHU_REQ_SET_PROTOCOL_FEATURES, VHU_MSG_VERSION,
			     &pf, 8, NULL, 0);
		if (r < 0)
			return chk_fail(why, "send SET_PROTOCOL_FEATURES: %s",
					strerror(-r)), r;
		s->acked_pf = pf;
	}
	if (s->acked_pf & VHU_BIT(VHU_PF_MQ)) {
		uint64_t q;
		r = chk_get_u64(s, VHU_REQ_GET_QUEUE_NUM, &q, why);
		if (r < 0)
			return r;
		if (q == 0 || q > VHU_MAX_QUEUES)
			return chk_fail(why, "GET_QUEUE_NUM answered %llu",
					(unsigned long long)q), -EPROTO;
		s->queue_num = (unsigned)q;
	}
	r = chk_set(s, VHU_REQ_SET_OWNER, NULL, 0, NULL, 0, why);
	if (r < 0)
		return r;
	if (s->acked_pf & VHU_BIT(VHU_PF_BACKEND_REQ)) {
		int sp[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
			return chk_fail(why, "socketpair: %s", strerror(errno)),
			       -errno;
		r = chk_set(s, VHU_REQ_SET_BACKEND_REQ_FD, NULL, 0, &sp[1], 1,
			    why);
		close(sp[1]);
		s->breq_fd = sp[0];
		if (r < 0)
			return r;
	}
	if (!(s->features & VHU_BIT(VHU_F_VERSION_1)))
		return chk_fail(why, "VIRTIO_F_VERSION_1 not offered"), -EPROTO;
	s->acked = s->features & WANT_F;
	r = chk_set_u64(s, VHU_REQ_SET_FEATURES, s->acked, why);
	if (r < 0)
		return r;
	if (s->acked_pf & VHU_BIT(VHU_PF_CONFIGURE_MEM_SLOTS)) {
		uint64_t n;
		r = chk_get_u64(s, VHU_REQ_GET_MAX_MEM_SLOTS, &n, why);
		if (r < 0)
			return r;
		if (n == 0 || n > 4096)
			return chk_fail(why, "GET_MAX_MEM_SLOTS answered %llu",
					(unsigned long long)n), -EPROTO;
		s->max_slots = (unsigned)n;
	}
	/* The capacity, for block devices only: another device may have no
	 * config space at all. */
	if ((s->acked_pf & VHU_BIT(VHU_PF_CONFIG)) && chk_dev->blk) {
		uint64_t cap;
		r = chk_get_config(s, 0, 8, &cap, why);
		if (r < 0)
			return r;
		s->capacity = cap;
	}
	return 0;
}

int chk_get_config(struct chk_sess *s, uint32_t off, uint32_t size,
		   void *buf, char *why)
{
	struct vhu_config c = { .offset = off, .size = size, .flags = 0 };
	struct vhu_msg m;
	if (size > VHU_MAX_CONFIG_SIZE)
		return -EINVAL;
	int r = chk_send(s, VHU_REQ_GET_CONFIG, VHU_MSG_VERSION, &c,
			 VHU_CONFIG_HDR_SIZE + size, NULL, 0);
	if (r < 0)
		return chk_fail(why, "send GET_CONFIG: %s", strerror(-r)), r;
	unsigned nfds = 0;
	r = chk_recv(s, &m, s->timeout_ms, &nfds);
	if (r == 0)
		return chk_fail(why, "connection dropped on GET_CONFIG %u/%u",
				off, size), -EPIPE;
	if (r < 0)
		return chk_fail(why, "GET_CONFIG %u/%u: %s", off, size,
				strerror(-r)), r;
	const char *e = size ? chk_config_error(&m, nfds) : NULL;
	if (e)
		return chk_fail(why, "GET_CONFIG %u/%u: %s", off, size, e),
		       -EREMOTEIO;
	r = chk_check_reply(&m, VHU_REQ_GET_CONFIG, VHU_CONFIG_HDR_SIZE + size,
			    nfds, why);
	if (r < 0)
		return r;
	if (m.p.config.offset != off || m.p.config.size != size)
		return chk_fail(why, "GET_CONFIG %u/%u answered %u/%u", off,
				size, m.p.config.offset, m.p.config.size),
		       -EPROTO;
	memcpy(buf, m.p.config.payload, size);
	return 0;
}

uint64_t chk_gpa(const struct chk_sess *s, uint32_t off)
{
	(void)s;
	return CHK_GPA_BASE + off;
}

uint64_t chk_uva(const struct chk_sess *s, uint32_t off)
{
	return (uint64_t)(uintptr_t)s->mem + off;
}

int chk_mem_create(struct chk_sess *s, char *why)
{
	s->memfd = memfd_create("vhu-check", MFD_CLOEXEC);
	if (s->memfd < 0)
		return chk_fail(why, "memfd_create: %s", strerror(errno)), -errno;
	if (ftruncate(s->memfd, CHK_MEM_SIZE) < 0)
		return chk_fail(why, "ftruncate: %s", strerror(errno)), -errno;
	void *p = mmap(NULL, CHK_MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
		       s->memfd, 0);
	if (p == MAP_FAILED)
		return chk_fail(why, "mmap: %s", strerror(errno)), -errno;
	s->mem = p;
	return 0;
}

int chk_mem_register(struct chk_sess *s, char *why)
{
	struct vhu_mem_table t;
	memset(&t, 0, sizeof(t));
	t.nregions = 1;
	t.regions[0].guest_phys_addr = CHK_GPA_BASE;
	t.regions[0].memory_size = CHK_MEM_SIZE;
	t.regions[0].userspace_addr = chk_uva(s, 0);
	t.regions[0].mmap_offset = 0;
	return chk_set(s, VHU_REQ_SET_MEM_TABLE, &t, 8 + 32, &s->memfd, 1, why);
}

int chk_ring_setup(struct chk_sess *s, unsigned qsize, uint16_t base,
		   char *why)
{
	if (base == 0) {
		memset(s->mem + CHK_OFF_DESC, 0, CHK_OFF_INDIRECT);
		s->used_seen = 0;
	}
	s->qsize = qsize;
	s->avail_idx = base;
	struct vhu_vring_state st = { 0, qsize };
	int r = chk_set(s, VHU_REQ_SET_VRING_NUM, &st, 8, NULL, 0, why);
	if (r < 0)
		return r;
	st.num = base;
	r = chk_set(s, VHU_REQ_SET_VRING_BASE, &st, 8, NULL, 0, why);
	if (r < 0)
		return r;
	struct vhu_vring_addr a = {
		.index = 0,
		.desc_user_addr = chk_uva(s, CHK_OFF_DESC),
		.used_user_addr = chk_uva(s, CHK_OFF_USED),
		.avail_user_addr = chk_uva(s, CHK_OFF_AVAIL),
	};
	r = chk_set(s, VHU_REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0, why);
	if (r < 0)
		return r;
	if (s->kick_fd >= 0)
		close(s->kick_fd);
	if (s->call_fd >= 0)
		close(s->call_fd);
	s->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->kick_fd < 0 || s->call_fd < 0)
		return chk_fail(why, "eventfd: %s", strerror(errno)), -errno;
	uint64_t idx = 0;
	r = chk_set(s, VHU_REQ_SET_VRING_CALL, &idx, 8, &s->call_fd, 1, why);
	if (r < 0)
		return r;
	r = chk_set(s, VHU_REQ_SET_VRING_KICK, &idx, 8, &s->kick_fd, 1, why);
	if (r < 0)
		return r;
	if (s->acked & VHU_BIT(VHU_F_PROTOCOL_FEATURES)) {
		st.num = 1;
		r = chk_set(s, VHU_REQ_SET_VRING_ENABLE, &st, 8, NULL, 0, why);
		if (r < 0)
			return r;
	}
	return 0;
}

int chk_session_ready(struct chk_sess *s, const char *path, char *why)
{
	int r = chk_open(s, path, true, why);
	if (r < 0)
		return r;
	r = chk_mem_create(s, why);
	if (r < 0)
		return r;
	r = chk_mem_register(s, why);
	if (r < 0)
		return r;
	return chk_ring_setup(s, CHK_QSIZE, 0, why);
}

struct vhu_vring_desc *chk_desc(struct chk_sess *s, uint32_t table_off,
				unsigned i)
{
	return (struct vhu_vring_desc *)(s->mem + table_off) + i;
}

void chk_set_desc(struct chk_sess *s, uint32_t table_off, unsigned i,
		  uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct vhu_vring_desc d = { addr, len, flags, next };
	memcpy(chk_desc(s, table_off, i), &d, sizeof(d));
}

int chk_publish(struct chk_sess *s, uint16_t head, uint16_t adv)
{
	uint16_t *avail = (uint16_t *)(s->mem + CHK_OFF_AVAIL);
	avail[2 + s->avail_idx % s->qsize] = head;
	s->avail_idx = (uint16_t)(s->avail_idx + adv);
	/* The ring entry (and the descriptors) before the index: virtio 1.2
	 * 2.7.13 "the driver performs a suitable memory barrier". */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	__atomic_store_n(&avail[1], s->avail_idx, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint64_t one = 1;
	if (write(s->kick_fd, &one, sizeof(one)) != sizeof(one))
		return -errno;
	return 0;
}

int chk_wait_used(struct chk_sess *s, int timeout_ms, uint32_t *id,
		  uint32_t *len)
{
	uint16_t *used = (uint16_t *)(s->mem + CHK_OFF_USED);
	int64_t deadline = now_ms() + timeout_ms;
	for (;;) {
		uint16_t idx = __atomic_load_n(&used[1], __ATOMIC_ACQUIRE);
		if (idx != s->used_seen) {
			struct vhu_vring_used_elem e;
			memcpy(&e, s->mem + CHK_OFF_USED + 4 +
				   8 * (s->used_seen % s->qsize), sizeof(e));
			s->used_seen++;
			*id = e.id;
			*len = e.len;
			return 1;
		}
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return 0;
		struct pollfd p[2] = {
			{ .fd = s->fd, .events = POLLIN },
			{ .fd = s->call_fd, .events = POLLIN },
		};
		int n = poll(p, 2, left > 5 ? 5 : (int)left);
		if (n > 0 && (p[1].revents & POLLIN)) {
			uint64_t v;
			if (read(s->call_fd, &v, sizeof(v)) < 0 &&
			    errno != EAGAIN)
				return -errno;
		}
		if (n > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			char c;
			ssize_t r = recv(s->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
			if (r == 0 || (r < 0 && errno != EAGAIN)) {
				s->dropped = true;
				return -EPIPE;
			}
			/* An unsolicited message: nothing to do with it here
			 * but not to spin on it either. */
			usleep(1000);
		}
	}
}

static bool device_writes(uint32_t type)
{
	return type == CHK_BLK_T_IN || type == CHK_BLK_T_GET_ID;
}

int chk_blk_req(struct chk_sess *s, uint32_t type, uint64_t sector,
		uint32_t len, uint8_t *status, char *why)
{
	struct { uint32_t type, ioprio; uint64_t sector; } hdr = {
		type, 0, sector };
	uint8_t *st = s->mem + CHK_OFF_HDR + 16;
	memcpy(s->mem + CHK_OFF_HDR, &hdr, sizeof(hdr));
	*st = 0xff;
	unsigned i = 0;
	chk_set_desc(s, CHK_OFF_DESC, i, chk_gpa(s, CHK_OFF_HDR), 16,
		     VHU_VRING_DESC_F_NEXT, (uint16_t)(i + 1));
	i++;
	if (len) {
		uint16_t f = VHU_VRING_DESC_F_NEXT |
			     (device_writes(type) ? VHU_VRING_DESC_F_WRITE : 0);
		chk_set_desc(s, CHK_OFF_DESC, i, chk_gpa(s, CHK_OFF_DATA), len,
			     f, (uint16_t)(i + 1));
		i++;
	}
	chk_set_desc(s, CHK_OFF_DESC, i, chk_gpa(s, CHK_OFF_HDR + 16), 1,
		     VHU_VRING_DESC_F_WRITE, 0);
	int r = chk_publish(s, 0, 1);
	if (r < 0)
		return chk_fail(why, "kick: %s", strerror(-r)), r;
	uint32_t id, ulen;
	r = chk_wait_used(s, s->timeout_ms, &id, &ulen);
	if (r == 0)
		return chk_fail(why, "request type %u not completed within "
				"%d ms", type, s->timeout_ms), -ETIMEDOUT;
	if (r < 0)
		return chk_fail(why, "connection dropped during request type "
				"%u", type), r;
	if (id != 0)
		return chk_fail(why, "used element id %u, not 0", id), -EPROTO;
	*status = *st;
	return 0;
}

/* The device modules' view of queue 0 (tools/devices/device.h). */
static int io_request(struct vhu_tool_io *io, const struct vhu_tool_seg *seg,
		      unsigned n, uint32_t *written, char *why)
{
	struct chk_sess *s = io->opaque;
	if (n == 0 || n > s->qsize)
		return chk_fail(why, "a chain of %u buffers", n), -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		size_t off = (size_t)(seg[i].p - s->mem);
		if (seg[i].p < s->mem || off + seg[i].len > CHK_MEM_SIZE)
			return chk_fail(why, "buffer outside guest memory"),
			       -EINVAL;
		uint16_t f = (i + 1 < n ? VHU_VRING_DESC_F_NEXT : 0) |
			     (seg[i].writable ? VHU_VRING_DESC_F_WRITE : 0);
		chk_set_desc(s, CHK_OFF_DESC, i, chk_gpa(s, (uint32_t)off),
			     seg[i].len, f, (uint16_t)(i + 1));
	}
	int r = chk_publish(s, 0, 1);
	if (r < 0)
		return chk_fail(why, "kick: %s", strerror(-r)), r;
	uint32_t id;
	r = chk_wait_used(s, s->timeout_ms, &id, written);
	if (r == 0)
		return chk_fail(why, "request not completed within %d ms",
				s->timeout_ms), -ETIMEDOUT;
	if (r < 0)
		return chk_fail(why, "connection dropped during a request"), r;
	if (id != 0)
		return chk_fail(why, "used element id %u, not 0", id), -EPROTO;
	return 0;
}

static int io_get_config(struct vhu_tool_io *io, uint32_t off, void *buf,
			 uint32_t len, char *why)
{
	return chk_get_config(io->opaque, off, len, buf, why);
}

int chk_serves(struct chk_sess *s, const struct vhu_tool_device *dev,
	       unsigned seed, char *why)
{
	struct vhu_tool_io io = {
		.opaque = s,
		.hdr = s->mem + CHK_OFF_HDR,
		.data = s->mem + CHK_OFF_DATA,
		.data_cap = CHK_OFF_DATA2 - CHK_OFF_DATA,
		.features = s->acked,
		.null_disk = chk_null_disk,
		.request = io_request,
		.get_config = io_get_config,
	};
	return dev->serves(&io, seed, why);
}

int chk_verified_io(struct chk_sess *s, unsigned seed, char *why)
{
	return chk_serves(s, &vhu_tool_dev_blk, seed, why);
}
