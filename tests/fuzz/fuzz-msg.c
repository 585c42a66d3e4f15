/* SPDX-License-Identifier: MIT */
/*
 * Fuzz the back-end message dispatcher: a session with a small device
 * (2 queues, a 60-byte config space with one writable byte) serves a
 * socketpair; the input is a sequence of records, each sent as one
 * vhost-user message with real fds attached, followed by
 * vhu_backend_process().
 *
 * Input records (little-endian):
 *   u8 ctl   bits 7-6 = 10: a memory-image record, 11: an event record
 *            (both below); otherwise a message:
 *            bits 0-3: fds to attach (mod 9), bits 4-5: their kind
 *            (0 by request, 1 eventfd, 2 memfd, 3 socket),
 *            bit 6: send the header's size unclamped, close our write
 *            side, process once and stop (a truncated final message).
 *   u32 request, u32 flags, u32 size, then min(size, left) payload bytes;
 *   the header's size is rewritten to the bytes actually sent.
 * Memory-image record (ctl bits 7-6 = 10): u16 offset, u8 len, len bytes
 * copied into the template every later memfd starts from, so rings placed
 * there by SET_VRING_ADDR have content.
 * Event record (ctl bits 7-6 = 11): u8 what, then
 *   what % 4 == 0: the device calls vhu_backend_config_changed(want_ack =
 *                  bit 2 of what);
 *               1: the front-end answers on the first back-end channel:
 *                  u32 request, u32 flags, u64 value (a config-change ack
 *                  when request 2, flags 5);
 *               2: the driver kicks queue (what >> 2) & 1 (its kick fd);
 *               3: the session is processed once more with nothing sent.
 *
 * Invariants checked: the library never calls set_config for a read-only
 * byte with flags 0, never passes config ranges beyond the config space,
 * never starts a started queue, stops every queue before it is freed,
 * negotiates only offered features, answers every config-change ack it
 * asked for exactly once (a result, or an error when the channel or
 * session goes), and every fd created for one input is closed when the
 * session is freed (open-fd count unchanged), and nothing is ever
 * written to a dirty-log memfd outside the window its SET_LOG_BASE named
 * (each log memfd starts zeroed and is checked when the session ends).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <vhu/backend.h>
#include <vhu/virtq.h>

#include "internal.h"
#include "fuzz-common.h"

#define FZ_CFG_SIZE      60u
#define FZ_CFG_WRITABLE  32u   /* the one byte a guest may write */
#define FZ_NQ            2u
#define FZ_MEMFD_SIZE    (64u * 1024u)
#define FZ_MAX_RECORDS   64u
#define FZ_MAX_LOGS      4u
#define FZ_MAX_PEERS     16u
#define FZ_POP_BOUND     64u

/* The packed ring is offered when the library has it. */
#ifdef FZ_HAVE_PACKED
#define FZ_F_PACKED VHU_BIT(VHU_F_RING_PACKED)
#else
#define FZ_F_PACKED 0
#endif
#define FZ_FEATURES (VHU_BIT(VHU_F_VERSION_1) | VHU_BIT(VHU_F_INDIRECT_DESC) | \
		     VHU_BIT(VHU_F_EVENT_IDX) | FZ_F_PACKED)

struct fz_dev {
	uint8_t cfg[FZ_CFG_SIZE];
	bool started[FZ_NQ];
	struct vhu_vq *vq[FZ_NQ];
	unsigned acks_wanted;          /* config changes sent with NEED_REPLY */
	unsigned acks_seen;            /* config_change_acked calls */
};

static uint8_t fz_mem_template[FZ_MEMFD_SIZE];

static unsigned fz_vq_slot(struct vhu_vq *vq)
{
	unsigned i = vhu_vq_index(vq);

	FZ_ASSERT(i < FZ_NQ, "queue index %u", i);
	return i;
}

static void fz_features_set(void *opaque, uint64_t features)
{
	(void)opaque;
	/* The library adds VHOST_F_LOG_ALL (dirty logging) to the offer. */
	FZ_ASSERT((features & ~(FZ_FEATURES | VHU_BIT(VHU_F_PROTOCOL_FEATURES) |
				VHU_BIT(VHU_F_LOG_ALL))) == 0,
		  "negotiated 0x%llx", (unsigned long long)features);
}

static void fz_queue_started(void *opaque, struct vhu_vq *vq)
{
	struct fz_dev *d = opaque;
	unsigned i = fz_vq_slot(vq);

	FZ_ASSERT(!d->started[i], "queue %u started twice", i);
	d->started[i] = true;
	d->vq[i] = vq;
}

static void fz_queue_stopped(void *opaque, struct vhu_vq *vq)
{
	struct fz_dev *d = opaque;
	unsigned i = fz_vq_slot(vq);

	d->started[i] = false;
}

/* Serve a queue the way a device would: bounded pop/push. */
static void fz_serve(struct vhu_vq *vq)
{
	struct iovec iov[16];
	struct vhu_vq_elem e;
	unsigned k;

	for (k = 0; k < FZ_POP_BOUND; k++) {
		int r = vhu_vq_pop(vq, &e, iov, VHU__ARRAY_SIZE(iov));

		FZ_TRACE("queue %u: pop -> %d\n", vhu_vq_index(vq), r);
		if (r == -E2BIG)
			continue;
		if (r <= 0)
			break;
		FZ_ASSERT(e.n_out + e.n_in <= VHU__ARRAY_SIZE(iov), "iov count");
		/* Touch every byte: ASan catches a mapping that is too short. */
		for (unsigned j = 0; j < (unsigned)e.n_out + e.n_in; j++)
			if (iov[j].iov_len)
				((volatile uint8_t *)iov[j].iov_base)[iov[j].iov_len - 1];
		vhu_vq_push(vq, &e, 0);
	}
	vhu_vq_notify(vq);
}

static void fz_queue_kick(void *opaque, struct vhu_vq *vq)
{
	(void)opaque;
	fz_serve(vq);
}

static int fz_get_config(void *opaque, uint32_t offset, void *buf, uint32_t len)
{
	struct fz_dev *d = opaque;

	FZ_ASSERT(offset <= FZ_CFG_SIZE && len <= FZ_CFG_SIZE - offset,
		  "get_config %u+%u", offset, len);
	memcpy(buf, d->cfg + offset, len);
	return 0;
}

static int fz_set_config(void *opaque, uint32_t offset, const void *buf,
			 uint32_t len, uint32_t flags)
{
	struct fz_dev *d = opaque;

	FZ_ASSERT(offset <= FZ_CFG_SIZE && len <= FZ_CFG_SIZE - offset,
		  "set_config %u+%u", offset, len);
	if (flags == 0)
		FZ_ASSERT(len == 0 || (offset == FZ_CFG_WRITABLE && len == 1),
			  "guest write to read-only bytes %u+%u", offset, len);
	memcpy(d->cfg + offset, buf, len);
	return 0;
}

static void fz_reset(void *opaque)
{
	struct fz_dev *d = opaque;

	for (unsigned i = 0; i < FZ_NQ; i++)
		FZ_ASSERT(!d->started[i], "reset with queue %u started", i);
}

static void fz_config_change_acked(void *opaque, int64_t result)
{
	struct fz_dev *d = opaque;

	(void)result;
	d->acks_seen++;
	FZ_ASSERT(d->acks_seen <= d->acks_wanted, "%u acks for %u requests",
		  d->acks_seen, d->acks_wanted);
}

static const struct vhu_device_ops fz_ops = {
	.features_set = fz_features_set,
	.queue_started = fz_queue_started,
	.queue_stopped = fz_queue_stopped,
	.queue_kick = fz_queue_kick,
	.get_config = fz_get_config,
	.set_config = fz_set_config,
	.reset = fz_reset,
	.config_change_acked = fz_config_change_acked,
};

static const uint8_t fz_writable[FZ_CFG_SIZE] = { [FZ_CFG_WRITABLE] = 1 };

/* Everything one input created, so it can all be closed at the end. */
struct fz_session {
	struct vhu_backend *b;
	struct fz_dev dev;
	int fe;                        /* our end of the main socket */
	int peers[FZ_MAX_PEERS];       /* our ends of back-end channels */
	unsigned n_peers;
	/* dirty-log memfds sent with SET_LOG_BASE: our mapping and the
	 * window the message named (size 0: none valid) */
	struct {
		uint8_t *map;
		uint64_t off, size;
	} logs[FZ_MAX_LOGS];
	unsigned n_logs;
};

static int fz_make_memfd(void)
{
	int fd = memfd_create("fuzz-mem", MFD_CLOEXEC);

	if (fd < 0)
		return -1;
	if (pwrite(fd, fz_mem_template, sizeof(fz_mem_template), 0) !=
	    (ssize_t)sizeof(fz_mem_template)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A zeroed memfd for SET_LOG_BASE, mapped here to check afterwards that
 * the library wrote only inside [off, off + size). */
static int fz_make_logfd(struct fz_session *s, const uint8_t *payload,
			 uint32_t len)
{
	int fd = memfd_create("fuzz-log", MFD_CLOEXEC);
	void *map;

	if (fd < 0 || s->n_logs == FZ_MAX_LOGS ||
	    ftruncate(fd, FZ_MEMFD_SIZE) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	map = mmap(NULL, FZ_MEMFD_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		close(fd);
		return -1;
	}
	s->logs[s->n_logs].map = map;
	s->logs[s->n_logs].off = s->logs[s->n_logs].size = 0;
	if (len == sizeof(struct vhu_log)) {
		struct vhu_log lg;

		memcpy(&lg, payload, sizeof(lg));
		s->logs[s->n_logs].off = lg.mmap_offset;
		s->logs[s->n_logs].size = lg.mmap_size;
	}
	s->n_logs++;
	return fd;
}

static void fz_check_logs(struct fz_session *s)
{
	for (unsigned k = 0; k < s->n_logs; k++) {
		uint64_t off = s->logs[k].off, size = s->logs[k].size;

		for (uint64_t i = 0; i < FZ_MEMFD_SIZE; i++) {
			bool inside = i >= off && i - off < size;

			FZ_ASSERT(inside || s->logs[k].map[i] == 0,
				  "log %u: byte %llu written outside its "
				  "window %llu+%llu", k, (unsigned long long)i,
				  (unsigned long long)off,
				  (unsigned long long)size);
		}
		munmap(s->logs[k].map, FZ_MEMFD_SIZE);
	}
	s->n_logs = 0;
}

/* An fd of the kind the record asks for; kind 0 picks by request. */
static int fz_make_fd(struct fz_session *s, unsigned kind, uint32_t request)
{
	if (kind == 0) {
		switch (request) {
		case VHU_REQ_SET_MEM_TABLE:
		case VHU_REQ_ADD_MEM_REG:
		case VHU_REQ_SET_LOG_BASE:
		case VHU_REQ_SET_INFLIGHT_FD:
			kind = 2;
			break;
		case VHU_REQ_SET_BACKEND_REQ_FD:
		case VHU_REQ_GPU_SET_SOCKET:
			kind = 3;
			break;
		default:
			kind = 1;
		}
	}
	if (kind == 1)
		return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (kind == 2)
		return fz_make_memfd();
	if (s->n_peers < FZ_MAX_PEERS) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
			       0, sv) < 0)
			return -1;
		s->peers[s->n_peers++] = sv[0];
		return sv[1];
	}
	return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

/* Read and discard whatever arrived on fd, closing any fds it carried. */
static void fz_drain(int fd)
{
	for (int rounds = 0; rounds < 64; rounds++) {
		char buf[4096];
		char ctl[CMSG_SPACE(sizeof(int) * VHU_MAX_FDS)];
		struct iovec iov = { buf, sizeof(buf) };
		struct msghdr mh = {
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = ctl, .msg_controllen = sizeof(ctl),
		};
		ssize_t r = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (r <= 0)
			return;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c;
		     c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < nfd; i++) {
				int rfd;

				memcpy(&rfd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				close(rfd);
			}
		}
	}
}

/* Send one message with fds; our copies of the fds are closed here. */
static int fz_send(int sock, const void *buf, size_t len, int *fds, unsigned nfds)
{
	char ctl[CMSG_SPACE(sizeof(int) * VHU_MAX_FDS)];
	struct iovec iov = { (void *)buf, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t r;

	memset(ctl, 0, sizeof(ctl));
	if (nfds) {
		mh.msg_control = ctl;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	r = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
	return r == (ssize_t)len ? 0 : -1;
}

static void fz_serve_started(struct fz_session *s)
{
	for (unsigned i = 0; i < FZ_NQ; i++)
		if (s->dev.started[i])
			fz_serve(s->dev.vq[i]);
}

static int fz_session_open(struct fz_session *s)
{
	struct vhu_backend_opts o = {
		.ops = &fz_ops,
		.opaque = &s->dev,
		.features = FZ_FEATURES,
		.protocol_features = ~0ull,
		.num_queues = FZ_NQ,
		.max_queue_size = 1024,
		.config_size = FZ_CFG_SIZE,
		.config_writable = fz_writable,
	};
	int sv[2];

	memset(s, 0, sizeof(*s));
	s->fe = -1;
	for (unsigned i = 0; i < FZ_CFG_SIZE; i++)
		s->dev.cfg[i] = (uint8_t)(i * 7 + 1);
	FZ_ASSERT(vhu_backend_new(&o, &s->b) == 0, "vhu_backend_new");
	FZ_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0,
		  "socketpair");
	FZ_ASSERT(vhu_backend_connected_fd(s->b, sv[1]) == 0, "connected_fd");
	s->fe = sv[0];
	return 0;
}

static void fz_session_close(struct fz_session *s)
{
	vhu_backend_free(s->b);
	fz_check_logs(s);
	for (unsigned i = 0; i < FZ_NQ; i++)
		FZ_ASSERT(!s->dev.started[i], "queue %u still started after free", i);
	FZ_ASSERT(s->dev.acks_seen == s->dev.acks_wanted,
		  "%u config-change acks asked, %u reported", s->dev.acks_wanted,
		  s->dev.acks_seen);
	fz_drain(s->fe);
	close(s->fe);
	for (unsigned i = 0; i < s->n_peers; i++) {
		fz_drain(s->peers[i]);
		close(s->peers[i]);
	}
}

static void fz_after_process(struct fz_session *s)
{
	fz_drain(s->fe);
	for (unsigned i = 0; i < s->n_peers; i++)
		fz_drain(s->peers[i]);
}

/* What a device or the front-end does between messages. */
static bool fz_event(struct fz_session *s, struct fz_in *in)
{
	uint8_t what = fz_u8(in);
	int r;

	switch (what % 4) {
	case 0: {
		bool ack = (what & 4) != 0;
		bool will_ack = ack && (vhu_backend_protocol_features(s->b) &
					VHU_BIT(VHU_PF_REPLY_ACK));

		r = vhu_backend_config_changed(s->b, ack);
		FZ_TRACE("config_changed(ack %d) -> %d\n", ack, r);
		if (r == 0 && will_ack)
			s->dev.acks_wanted++;
		break;
	}
	case 1: {
		uint8_t m[20];
		uint32_t req = fz_u32(in), flags = fz_u32(in);
		uint8_t val[8];

		fz_take(in, val, 8);
		memcpy(m, &req, 4);
		memcpy(m + 4, &flags, 4);
		memcpy(m + 8, &(uint32_t){ 8 }, 4);
		memcpy(m + 12, val, 8);
		if (s->n_peers)
			(void)send(s->peers[0], m, sizeof(m),
				   MSG_NOSIGNAL | MSG_DONTWAIT);
		break;
	}
	case 2: {
		unsigned q = (what >> 2) & 1;
		struct vhu_vq *vq = vhu_backend_vq(s->b, q);
		int fd = vq ? vhu_vq_kick_fd(vq) : -1;

		if (fd >= 0)
			(void)eventfd_write(fd, 1);
		break;
	}
	default:
		break;
	}
	r = vhu_backend_process(s->b);
	fz_after_process(s);
	if (r < 0)
		return false;
	fz_serve_started(s);
	return true;
}

/* One record; returns false when the input (or the session) is done. */
static bool fz_record(struct fz_session *s, struct fz_in *in)
{
	uint8_t ctl;
	struct vhu_msg_hdr h;
	uint8_t buf[sizeof(struct vhu_msg_hdr) + 4096];
	int fds[VHU_MAX_FDS];
	unsigned nfds, kind;
	uint32_t len;
	bool truncate;
	int r;

	if (fz_left(in) < 1)
		return false;
	ctl = fz_u8(in);
	if ((ctl & 0xc0) == 0xc0)
		return fz_event(s, in);
	if (ctl & 0x80) {
		uint16_t off = fz_u16(in);
		uint8_t n = fz_u8(in);
		uint8_t tmp[255];

		fz_take(in, tmp, n);
		/* The template is 64 KiB: any u16 offset is inside it. */
		size_t room = FZ_MEMFD_SIZE - (size_t)off;
		memcpy(fz_mem_template + off, tmp, n < room ? n : room);
		return true;
	}
	if (fz_left(in) < sizeof(h))
		return false;
	nfds = (ctl & 0x0f) % (VHU_MAX_FDS + 1);
	kind = (ctl >> 4) & 3;
	truncate = (ctl & 0x40) != 0;
	h.request = fz_u32(in);
	h.flags = fz_u32(in);
	h.size = fz_u32(in);
	len = h.size;
	if (len > fz_left(in))
		len = (uint32_t)fz_left(in);
	if (len > sizeof(buf) - sizeof(h))
		len = sizeof(buf) - sizeof(h);
	if (!truncate)
		h.size = len;
	memcpy(buf, &h, sizeof(h));
	fz_take(in, buf + sizeof(h), len);

	for (unsigned i = 0; i < nfds; i++) {
		if (h.request == VHU_REQ_SET_LOG_BASE && (kind == 0 || kind == 2))
			fds[i] = fz_make_logfd(s, buf + sizeof(h), len);
		else
			fds[i] = fz_make_fd(s, kind, h.request);
		if (fds[i] < 0) {
			nfds = i;
			break;
		}
	}
	if (fz_send(s->fe, buf, sizeof(h) + len, fds, nfds) < 0)
		return false;
	if (truncate)
		shutdown(s->fe, SHUT_WR);
	r = vhu_backend_process(s->b);
	FZ_TRACE("request %u flags 0x%x size %u fds %u -> process %d, "
		 "started %d%d\n", h.request, h.flags, h.size, nfds, r,
		 s->dev.started[0], s->dev.started[1]);
	fz_after_process(s);
	if (r < 0)
		return false;
	fz_serve_started(s);
	return !truncate;
}

static void fz_run(const uint8_t *data, size_t size)
{
	struct fz_session s;
	struct fz_in in = { data, size };

	memset(fz_mem_template, 0, sizeof(fz_mem_template));
	fz_session_open(&s);
	for (unsigned k = 0; k < FZ_MAX_RECORDS; k++)
		if (!fz_record(&s, &in))
			break;
	fz_session_close(&s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* A first session so that one-time allocations (log state, lazily
	 * opened files) do not count as a leak of the first real input. */
	static const uint8_t warm[] = { 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 };

	(void)argc;
	(void)argv;
	fz_quiet_logs();
	fz_run(warm, sizeof(warm));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int before = tl_count_fds();
	int after;

	fz_run(data, size);
	after = tl_count_fds();
	FZ_ASSERT(after <= before, "fd leak: %d open fds before, %d after",
		  before, after);
	return 0;
}
