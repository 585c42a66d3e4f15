/* SPDX-License-Identifier: MIT */
/*
 * Front-end tests against back-ends written here, speaking the raw
 * protocol over a socketpair: an honest one (handshake, memory, a ring
 * that copies readable bytes into writable ones, config space,
 * CONFIG_CHANGE_MSG) and hostile ones that answer with wrong ids, flags,
 * sizes, truncated messages, stray fds, or not at all.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vhu/frontend.h>

#include "frontend-priv.h"
#include "internal.h"
#include "tap.h"
#include "util.h"

#define RF (VHU_MSG_VERSION | VHU_MSG_REPLY)

/* Raw write of bytes (and fds); errors are the test's to notice. */
static void raw_send(int fd, const void *buf, size_t len, const int *fds,
		     unsigned nfds)
{
	(void)vhu__sock_send_bytes(fd, buf, len, fds, nfds);
}

static void reply(int fd, uint32_t req, uint32_t flags, const void *p, uint32_t size)
{
	struct vhu_msg m;
	memset(&m, 0, sizeof(m));
	m.hdr.request = req;
	m.hdr.flags = flags;
	m.hdr.size = size;
	if (size)
		memcpy(&m.p, p, size);
	raw_send(fd, &m, 12 + size, NULL, 0);
}

static void reply_u64(int fd, uint32_t req, uint64_t v)
{
	reply(fd, req, RF, &v, 8);
}

/* Receive one request (fds closed unless kept). */
static int be_recv(int fd, struct vhu_msg *m, int *fds, unsigned *nfds)
{
	int tmp[VHU_MAX_FDS];
	unsigned n = 0;
	int r = vhu__sock_recv_timeout(fd, m, fds ? fds : tmp, &n, 5000);
	if (!fds)
		vhu__close_fds(tmp, n);
	if (nfds)
		*nfds = n;
	return r;
}

/* ------------------------------------------------------------ hostile */

enum bad {
	BAD_ID, BAD_FLAGS_NOREPLY, BAD_FLAGS_NEED, BAD_FLAGS_VERSION, BAD_SIZE,
	BAD_SHORT, BAD_FD, BAD_HANG, BAD_HUGE,
};

struct hostile {
	int fd;
	enum bad bad;
	int stray_fd;
};

/* Misbehave on the very first reply (GET_FEATURES). */
static void *hostile_main(void *arg)
{
	struct hostile *h = arg;
	struct vhu_msg m;
	if (be_recv(h->fd, &m, NULL, NULL) != 1)
		return NULL;
	uint64_t f = VHU_BIT(VHU_F_VERSION_1);
	switch (h->bad) {
	case BAD_ID: reply(h->fd, VHU_REQ_GET_PROTOCOL_FEATURES, RF, &f, 8); break;
	case BAD_FLAGS_NOREPLY: reply(h->fd, m.hdr.request, 0x1, &f, 8); break;
	case BAD_FLAGS_NEED: reply(h->fd, m.hdr.request, RF | VHU_MSG_NEED_REPLY, &f, 8); break;
	case BAD_FLAGS_VERSION: reply(h->fd, m.hdr.request, 0x6, &f, 8); break;
	case BAD_SIZE: reply(h->fd, m.hdr.request, RF, &f, 4); break;
	case BAD_SHORT: {
		struct vhu_msg_hdr hdr = { m.hdr.request, RF, 8 };
		raw_send(h->fd, &hdr, sizeof(hdr), NULL, 0);
		raw_send(h->fd, &f, 3, NULL, 0);
		shutdown(h->fd, SHUT_WR); /* EOF mid-message */
		break;
	}
	case BAD_FD: {
		struct vhu_msg r = { .hdr = { m.hdr.request, RF, 8 } };
		r.p.u64 = f;
		raw_send(h->fd, &r, 20, &h->stray_fd, 1);
		break;
	}
	case BAD_HANG: {
		/* Stay silent until the front-end gives up and closes. */
		struct pollfd p = { .fd = h->fd, .events = POLLIN };
		poll(&p, 1, 3000);
		break;
	}
	case BAD_HUGE: {
		struct vhu_msg_hdr hdr = { m.hdr.request, RF, 1u << 20 };
		raw_send(h->fd, &hdr, sizeof(hdr), NULL, 0);
		break;
	}
	}
	return NULL;
}

static int run_hostile(enum bad bad, int timeout_ms, int *fds_before, int *fds_after)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -999;
	struct hostile h = { .fd = sv[1], .bad = bad, .stray_fd = -1 };
	if (bad == BAD_FD)
		h.stray_fd = eventfd(0, EFD_CLOEXEC);
	*fds_before = tl_count_fds();
	pthread_t t;
	pthread_create(&t, NULL, hostile_main, &h);
	struct vhu_fe_opts o = { .timeout_ms = timeout_ms };
	struct vhu_fe *fe = NULL;
	int r = vhu_fe_connect_fd(&fe, sv[0], &o);
	if (fe)
		vhu_fe_close(fe);
	pthread_join(t, NULL);
	if (h.stray_fd >= 0)
		close(h.stray_fd);
	close(sv[1]);
	*fds_after = tl_count_fds();
	return r;
}

TEST(reply_with_wrong_id_is_rejected)
{
	int a, b;
	CHECK_EQ(run_hostile(BAD_ID, 1000, &a, &b), -EPROTO);
	CHECK_EQ(a - 2, b); /* both socket ends closed, nothing else left */
}

TEST(reply_with_wrong_flags_is_rejected)
{
	int a, b;
	CHECK_EQ(run_hostile(BAD_FLAGS_NOREPLY, 1000, &a, &b), -EPROTO);
	CHECK_EQ(run_hostile(BAD_FLAGS_NEED, 1000, &a, &b), -EPROTO);
	CHECK_EQ(run_hostile(BAD_FLAGS_VERSION, 1000, &a, &b), -EPROTO);
}

TEST(reply_with_wrong_size_is_rejected)
{
	int a, b;
	CHECK_EQ(run_hostile(BAD_SIZE, 1000, &a, &b), -EPROTO);
	CHECK_EQ(run_hostile(BAD_HUGE, 1000, &a, &b), -EPROTO);
}

TEST(truncated_reply_is_reported)
{
	int a, b;
	CHECK_EQ(run_hostile(BAD_SHORT, 1000, &a, &b), -ECONNRESET);
}

TEST(fds_on_a_reply_are_closed)
{
	int a, b;
	/* before: both socket ends + the stray eventfd; after: none of them */
	CHECK_EQ(run_hostile(BAD_FD, 1000, &a, &b), -EPROTO);
	CHECK_EQ(a - 3, b);
}

TEST(silent_backend_times_out)
{
	int a, b;
	int64_t t0 = tl_now_ms();
	CHECK_EQ(run_hostile(BAD_HANG, 200, &a, &b), -ETIMEDOUT);
	double s = (double)(tl_now_ms() - t0) / 1e3;
	CHECK(s >= 0.15 && s < 2.5);
}

TEST(connect_to_missing_socket_fails_cleanly)
{
	struct vhu_fe *fe = (struct vhu_fe *)1;
	CHECK_EQ(vhu_fe_connect(&fe, "/nonexistent/vhu-test.sock", NULL), -ENOENT);
	CHECK(fe == NULL);
	struct vhu_fe_opts o = { .connect_timeout_ms = 100 };
	CHECK_EQ(vhu_fe_connect(&fe, "/nonexistent/vhu-test.sock", &o), -ENOENT);
}

/* ------------------------------------------ scripted config back-end */

enum cfg_bad { CB_EMPTY, CB_SIZE, CB_OFFSET, CB_LEN, CB_ACK_FAIL, CB_ACK_SIZE };

struct cfgbe {
	int fd;
	enum cfg_bad bad;
	int served_after;     /* honest GET_CONFIG replies after the bad one */
};

/* Handshake: PROTOCOL_FEATURES with CONFIG and REPLY_ACK; then one bad
 * answer, then honest GET_CONFIG answers. */
static void *cfgbe_main(void *arg)
{
	struct cfgbe *c = arg;
	struct vhu_msg m;
	bool bad_done = false;
	while (be_recv(c->fd, &m, NULL, NULL) == 1) {
		bool need = m.hdr.flags & VHU_MSG_NEED_REPLY;
		switch (m.hdr.request) {
		case VHU_REQ_GET_FEATURES:
			reply_u64(c->fd, m.hdr.request, VHU_BIT(VHU_F_PROTOCOL_FEATURES) |
				  VHU_BIT(VHU_F_VERSION_1));
			continue;
		case VHU_REQ_GET_PROTOCOL_FEATURES:
			reply_u64(c->fd, m.hdr.request, VHU_BIT(VHU_PF_CONFIG) |
				  VHU_BIT(VHU_PF_REPLY_ACK));
			continue;
		case VHU_REQ_SET_PROTOCOL_FEATURES:
			continue;
		case VHU_REQ_GET_CONFIG: {
			struct vhu_config cfg = m.p.config;
			for (uint32_t i = 0; i < cfg.size && i < 256; i++)
				cfg.payload[i] = (uint8_t)(cfg.offset + i);
			uint32_t size = 12 + cfg.size;
			if (!bad_done && c->bad <= CB_LEN) {
				bad_done = true;
				if (c->bad == CB_EMPTY)
					size = 0;
				else if (c->bad == CB_SIZE)
					size--;
				else if (c->bad == CB_OFFSET)
					cfg.offset++;
				else
					cfg.size++;
			} else {
				c->served_after++;
			}
			reply(c->fd, m.hdr.request, RF, &cfg, size);
			continue;
		}
		case VHU_REQ_SET_CONFIG:
			if (need && c->bad == CB_ACK_FAIL) {
				reply_u64(c->fd, m.hdr.request, 1);
				continue;
			}
			if (need && c->bad == CB_ACK_SIZE) {
				uint32_t v = 0;
				reply(c->fd, m.hdr.request, RF, &v, 4);
				continue;
			}
			break;
		default:
			break;
		}
		if (need)
			reply_u64(c->fd, m.hdr.request, 0);
	}
	return NULL;
}

static struct vhu_fe *cfg_session(struct cfgbe *c, pthread_t *t, enum cfg_bad bad)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return NULL;
	*c = (struct cfgbe){ .fd = sv[1], .bad = bad };
	pthread_create(t, NULL, cfgbe_main, c);
	struct vhu_fe_opts o = { .timeout_ms = 1000 };
	struct vhu_fe *fe = NULL;
	if (vhu_fe_connect_fd(&fe, sv[0], &o) < 0)
		return NULL;
	return fe;
}

/* The config back-end of the current test and its thread. */
static struct cfgbe cfg;
static pthread_t cfg_thread;

/* A session with it, behaving as bad says; must succeed. */
static struct vhu_fe *cfg_open(enum cfg_bad bad)
{
	struct vhu_fe *fe = cfg_session(&cfg, &cfg_thread, bad);
	CHECK(fe);
	return fe;
}

static void cfg_end(struct vhu_fe *fe)
{
	vhu_fe_close(fe);
	pthread_join(cfg_thread, NULL);
	close(cfg.fd);
}

TEST(get_config_empty_reply_is_backend_error)
{
	struct vhu_fe *fe = cfg_open(CB_EMPTY);
	uint8_t b[16];
	CHECK_EQ(vhu_fe_get_config(fe, 4, b, sizeof(b)), -EIO);
	/* A reported error leaves the session usable. */
	CHECK_EQ(vhu_fe_get_config(fe, 4, b, sizeof(b)), 0);
	CHECK_EQ(b[0], 4);
	CHECK_EQ(b[15], 19);
	CHECK_EQ(cfg.served_after, 1);
	cfg_end(fe);
}

static void cfg_bad_case(enum cfg_bad bad)
{
	struct vhu_fe *fe = cfg_open(bad);
	uint8_t b[16];
	CHECK_EQ(vhu_fe_get_config(fe, 8, b, sizeof(b)), -EPROTO);
	/* Framing is suspect now: no further request goes out. */
	CHECK_EQ(vhu_fe_get_config(fe, 8, b, sizeof(b)), -ENOTCONN);
	CHECK_EQ(cfg.served_after, 0);
	cfg_end(fe);
}

TEST(get_config_wrong_size_is_rejected) { cfg_bad_case(CB_SIZE); }
TEST(get_config_wrong_offset_is_rejected) { cfg_bad_case(CB_OFFSET); }
TEST(get_config_wrong_len_is_rejected) { cfg_bad_case(CB_LEN); }

TEST(get_config_checks_arguments)
{
	struct vhu_fe *fe = cfg_open(CB_ACK_FAIL);
	uint8_t b[300];
	CHECK_EQ(vhu_fe_get_config(fe, 0, b, 0), -EINVAL);
	CHECK_EQ(vhu_fe_get_config(fe, 0, b, 257), -EINVAL);
	CHECK_EQ(vhu_fe_get_config(fe, 0, b, 256), 0);
	CHECK_EQ(b[255], 255);
	cfg_end(fe);
}

TEST(reply_ack_failure_is_eio)
{
	struct vhu_fe *fe = cfg_open(CB_ACK_FAIL);
	uint8_t v = 1;
	CHECK_EQ(vhu_fe_set_config(fe, 32, &v, 1, 0), -EIO);
	uint8_t b[4];
	CHECK_EQ(vhu_fe_get_config(fe, 0, b, 4), 0);
	cfg_end(fe);
}

TEST(reply_ack_with_wrong_size_is_rejected)
{
	struct vhu_fe *fe = cfg_open(CB_ACK_SIZE);
	uint8_t v = 1;
	CHECK_EQ(vhu_fe_set_config(fe, 32, &v, 1, 0), -EPROTO);
	cfg_end(fe);
}

/* ------------------------------------------------ honest back-end */

#define HB_QUEUES 2
struct honest {
	int fd;
	int chan;                 /* back-end channel (from SET_BACKEND_REQ_FD) */
	int trigger;              /* eventfd: send CONFIG_CHANGE_MSG */
	int stop;                 /* eventfd */
	uint8_t config[64];
	uint64_t features;
	uint64_t protocol;
	bool owner;
	/* memory */
	unsigned nregions;
	struct { uint64_t gpa, size; uint8_t *host; } reg[8];
	/* rings */
	struct {
		unsigned num, base;
		uint64_t desc, avail, used;
		int kick, call;
		bool enabled;
		uint16_t last_avail;
	} vq[HB_QUEUES];
	unsigned reqs_with_need_reply;
	unsigned mem_tables;
	/* memory fds the back-end tried to shrink: refused with EPERM, or
	 * (unsealed) shrunk and grown back */
	unsigned shrink_eperm, shrink_done;
	/* config change bookkeeping */
	bool change_sent;
	bool get_after_change;
	bool acked;
	uint64_t ack_value;
	bool ack_after_get;
};

/* A hostile back-end's move: shrink the guest memory file by a page.
 * Sealed memory refuses; otherwise the size is put back at once (the
 * page reads as zeros, nothing faults). */
static void hb_try_shrink(struct honest *h, int fd)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size < 4096)
		return;
	if (ftruncate(fd, st.st_size - 4096) == 0) {
		h->shrink_done++;
		/* Grown back at once; only the shrink is counted, so a
		 * failure here changes nothing the test looks at (an
		 * assignment: glibc's fortified ftruncate warns on a cast). */
		int grown = ftruncate(fd, st.st_size);
		(void)grown;
	} else if (errno == EPERM) {
		h->shrink_eperm++;
	}
}

static uint8_t *hb_gpa(struct honest *h, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < h->nregions; i++) {
		if (gpa >= h->reg[i].gpa && gpa - h->reg[i].gpa <= h->reg[i].size &&
		    len <= h->reg[i].size - (gpa - h->reg[i].gpa))
			return h->reg[i].host + (gpa - h->reg[i].gpa);
	}
	return NULL;
}

/* The front-end gives ring addresses in its own virtual space, which for
 * the test is also ours: translate uva -> gpa -> our mapping. */
static uint8_t *hb_uva(struct honest *h, uint64_t uva)
{
	(void)h;
	return (uint8_t *)(uintptr_t)uva;
}

/* Serve a queue: copy each chain's readable bytes into its writable ones. */
static void hb_serve(struct honest *h, unsigned q)
{
	unsigned num = h->vq[q].num;
	struct vhu_vring_desc *desc = (void *)hb_uva(h, h->vq[q].desc);
	volatile uint16_t *avail = (void *)hb_uva(h, h->vq[q].avail);
	volatile uint16_t *used = (void *)hb_uva(h, h->vq[q].used);
	bool ev = h->features & VHU_BIT(VHU_F_EVENT_IDX);
	uint16_t aidx = __atomic_load_n(&avail[1], __ATOMIC_ACQUIRE);
	uint16_t old_used = used[1];
	while (h->vq[q].last_avail != aidx) {
		uint16_t head = avail[2 + h->vq[q].last_avail % num];
		h->vq[q].last_avail++;
		uint8_t tmp[4096];
		size_t have = 0, wrote = 0, rd = 0;
		uint16_t d = head;
		for (unsigned hop = 0; hop < num; hop++) {
			struct vhu_vring_desc dd = desc[d];
			uint8_t *p = hb_gpa(h, dd.addr, dd.len);
			if (p && !(dd.flags & VHU_VRING_DESC_F_WRITE)) {
				size_t n = dd.len < sizeof(tmp) - have ? dd.len : sizeof(tmp) - have;
				memcpy(tmp + have, p, n);
				have += n;
			} else if (p) {
				size_t n = dd.len < have - rd ? dd.len : have - rd;
				memcpy(p, tmp + rd, n);
				rd += n;
				wrote += n;
			}
			if (!(dd.flags & VHU_VRING_DESC_F_NEXT))
				break;
			d = dd.next;
		}
		uint16_t u = used[1];
		struct vhu_vring_used_elem *ue = (void *)&used[2];
		ue[u % num].id = head;
		ue[u % num].len = (uint32_t)wrote;
		__atomic_store_n(&used[1], (uint16_t)(u + 1), __ATOMIC_RELEASE);
	}
	if (ev)
		used[2 + 4 * num] = h->vq[q].last_avail; /* avail_event */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint16_t nu = used[1];
	bool notify;
	if (ev) {
		uint16_t ue = avail[2 + num];
		notify = (uint16_t)(nu - ue - 1) < (uint16_t)(nu - old_used);
	} else {
		notify = !(avail[0] & VHU_VRING_AVAIL_F_NO_INTERRUPT);
	}
	if (notify && nu != old_used) {
		uint64_t one = 1;
		(void)!write(h->vq[q].call, &one, 8);
	}
}

static void hb_request(struct honest *h, struct vhu_msg *m, int *fds, unsigned nfds)
{
	uint32_t req = m->hdr.request;
	bool need = m->hdr.flags & VHU_MSG_NEED_REPLY;
	if (need)
		h->reqs_with_need_reply++;
	unsigned idx = m->p.state.index;
	switch (req) {
	case VHU_REQ_GET_FEATURES:
		reply_u64(h->fd, req, VHU_BIT(VHU_F_PROTOCOL_FEATURES) |
			  VHU_BIT(VHU_F_VERSION_1) | VHU_BIT(VHU_F_EVENT_IDX) | 0x6);
		return;
	case VHU_REQ_GET_PROTOCOL_FEATURES:
		reply_u64(h->fd, req, VHU_BIT(VHU_PF_MQ) | VHU_BIT(VHU_PF_REPLY_ACK) |
			  VHU_BIT(VHU_PF_BACKEND_REQ) | VHU_BIT(VHU_PF_CONFIG) |
			  VHU_BIT(VHU_PF_CONFIGURE_MEM_SLOTS) | VHU_BIT(VHU_PF_LOG_SHMFD));
		return;
	case VHU_REQ_SET_PROTOCOL_FEATURES:
		h->protocol = m->p.u64;
		return; /* no ack: REPLY_ACK only applies afterwards */
	case VHU_REQ_GET_QUEUE_NUM:
		reply_u64(h->fd, req, HB_QUEUES);
		return;
	case VHU_REQ_GET_MAX_MEM_SLOTS:
		reply_u64(h->fd, req, 8);
		return;
	case VHU_REQ_SET_BACKEND_REQ_FD:
		if (nfds == 1) {
			h->chan = fds[0];
			fds[0] = -1;
		}
		break;
	case VHU_REQ_SET_OWNER:
		h->owner = true;
		break;
	case VHU_REQ_SET_FEATURES:
		h->features = m->p.u64;
		break;
	case VHU_REQ_ADD_MEM_REG:
		if (nfds == 1 && h->nregions < 8) {
			struct vhu_mem_region *r = &m->p.mem_reg.region;
			hb_try_shrink(h, fds[0]);
			void *p = mmap(NULL, r->memory_size, PROT_READ | PROT_WRITE,
				       MAP_SHARED, fds[0], (off_t)r->mmap_offset);
			if (p != MAP_FAILED) {
				h->reg[h->nregions].gpa = r->guest_phys_addr;
				h->reg[h->nregions].size = r->memory_size;
				h->reg[h->nregions].host = p;
				h->nregions++;
			}
		}
		break;
	case VHU_REQ_SET_MEM_TABLE: {
		/* replaces the whole table: one fd per region */
		struct vhu_mem_table *t = &m->p.mem;
		if (t->nregions > 8 || t->nregions != nfds)
			break;
		for (unsigned i = 0; i < h->nregions; i++)
			munmap(h->reg[i].host, h->reg[i].size);
		h->nregions = 0;
		h->mem_tables++;
		for (unsigned i = 0; i < t->nregions; i++) {
			struct vhu_mem_region *r = &t->regions[i];
			hb_try_shrink(h, fds[i]);
			void *p = mmap(NULL, r->memory_size, PROT_READ | PROT_WRITE,
				       MAP_SHARED, fds[i], (off_t)r->mmap_offset);
			if (p == MAP_FAILED)
				break;
			h->reg[h->nregions].gpa = r->guest_phys_addr;
			h->reg[h->nregions].size = r->memory_size;
			h->reg[h->nregions].host = p;
			h->nregions++;
		}
		break;
	}
	case VHU_REQ_SET_VRING_NUM:
		if (idx < HB_QUEUES)
			h->vq[idx].num = m->p.state.num;
		break;
	case VHU_REQ_SET_VRING_BASE:
		if (idx < HB_QUEUES)
			h->vq[idx].base = h->vq[idx].last_avail = (uint16_t)m->p.state.num;
		break;
	case VHU_REQ_SET_VRING_ADDR:
		if (m->p.addr.index < HB_QUEUES) {
			h->vq[m->p.addr.index].desc = m->p.addr.desc_user_addr;
			h->vq[m->p.addr.index].avail = m->p.addr.avail_user_addr;
			h->vq[m->p.addr.index].used = m->p.addr.used_user_addr;
		}
		break;
	case VHU_REQ_SET_VRING_KICK:
	case VHU_REQ_SET_VRING_CALL:
		idx = m->p.u64 & 0xff;
		if (idx < HB_QUEUES && nfds == 1) {
			int *slot = req == VHU_REQ_SET_VRING_KICK ? &h->vq[idx].kick
								   : &h->vq[idx].call;
			*slot = fds[0];
			fds[0] = -1;
		}
		break;
	case VHU_REQ_SET_VRING_ENABLE:
		if (idx < HB_QUEUES)
			h->vq[idx].enabled = m->p.state.num;
		break;
	case VHU_REQ_GET_VRING_BASE:
		if (idx < HB_QUEUES) {
			struct vhu_vring_state st = { idx, h->vq[idx].last_avail };
			reply(h->fd, req, RF, &st, sizeof(st));
		}
		return;
	case VHU_REQ_GET_CONFIG: {
		struct vhu_config c = m->p.config;
		if (c.offset > sizeof(h->config) || c.size > sizeof(h->config) - c.offset) {
			reply(h->fd, req, RF, NULL, 0);
			return;
		}
		if (h->change_sent && !h->acked)
			h->get_after_change = true;
		memcpy(c.payload, h->config + c.offset, c.size);
		reply(h->fd, req, RF, &c, 12 + c.size);
		return;
	}
	case VHU_REQ_SET_CONFIG: {
		struct vhu_config *c = &m->p.config;
		bool ok = c->offset == 32 && c->size == 1;
		if (ok)
			h->config[32] = c->payload[0];
		if (need)
			reply_u64(h->fd, req, ok ? 0 : 1);
		return;
	}
	default:
		break;
	}
	if (need)
		reply_u64(h->fd, req, 0);
}

static void *honest_main(void *arg)
{
	struct honest *h = arg;
	for (;;) {
		struct pollfd p[4 + HB_QUEUES];
		unsigned n = 0;
		p[n++] = (struct pollfd){ .fd = h->fd, .events = POLLIN };
		p[n++] = (struct pollfd){ .fd = h->stop, .events = POLLIN };
		p[n++] = (struct pollfd){ .fd = h->trigger, .events = POLLIN };
		p[n++] = (struct pollfd){ .fd = h->chan, .events = POLLIN };
		/* (a negative fd is ignored by poll) */
		for (unsigned q = 0; q < HB_QUEUES; q++)
			p[n++] = (struct pollfd){ .fd = h->vq[q].kick, .events = POLLIN };
		if (poll(p, n, 5000) <= 0)
			return NULL;
		if (p[1].revents)
			return NULL;
		if (p[0].revents) {
			struct vhu_msg m;
			int fds[VHU_MAX_FDS];
			unsigned nfds;
			if (vhu__sock_recv(h->fd, &m, fds, &nfds) != 1)
				return NULL;
			hb_request(h, &m, fds, nfds);
			vhu__close_fds(fds, nfds);
		}
		if (p[2].revents) {
			uint64_t v;
			(void)!read(h->trigger, &v, 8);
			/* the disk grew: capacity doubles */
			uint64_t cap;
			memcpy(&cap, h->config, 8);
			cap *= 2;
			memcpy(h->config, &cap, 8);
			struct vhu_msg_hdr hdr = { VHU_BREQ_CONFIG_CHANGE_MSG,
						   VHU_MSG_VERSION | VHU_MSG_NEED_REPLY, 0 };
			h->change_sent = true;
			raw_send(h->chan, &hdr, sizeof(hdr), NULL, 0);
		}
		if (h->chan >= 0 && p[3].revents) {
			struct vhu_msg m;
			int fds[VHU_MAX_FDS];
			unsigned nfds;
			int r = vhu__sock_recv(h->chan, &m, fds, &nfds);
			if (r == 1) {
				vhu__close_fds(fds, nfds);
				h->acked = m.hdr.request == VHU_BREQ_CONFIG_CHANGE_MSG &&
					   m.hdr.flags == RF && m.hdr.size == 8;
				h->ack_value = m.p.u64;
				h->ack_after_get = h->get_after_change;
			} else if (r != -EAGAIN) {
				close(h->chan); /* the front-end closed it */
				h->chan = -1;
			}
		}
		for (unsigned q = 0; q < HB_QUEUES; q++) {
			if (p[4 + q].fd >= 0 && p[4 + q].revents) {
				uint64_t v;
				(void)!read(h->vq[q].kick, &v, 8);
				hb_serve(h, q);
			}
		}
	}
}

static struct vhu_fe *honest_start_opts(struct honest *h, pthread_t *t,
					const struct vhu_fe_opts *o)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return NULL;
	memset(h, 0, sizeof(*h));
	h->fd = sv[1];
	h->chan = -1;
	h->trigger = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	h->stop = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	for (unsigned q = 0; q < HB_QUEUES; q++)
		h->vq[q].kick = h->vq[q].call = -1;
	uint64_t cap = 2048;
	memcpy(h->config, &cap, 8);
	vhu__set_nonblock(sv[1]);
	pthread_create(t, NULL, honest_main, h);
	struct vhu_fe *fe = NULL;
	if (vhu_fe_connect_fd(&fe, sv[0], o) < 0)
		return NULL;
	return fe;
}

static void honest_stop(struct honest *h, pthread_t t, struct vhu_fe *fe)
{
	uint64_t one = 1;
	(void)!write(h->stop, &one, 8);
	pthread_join(t, NULL);
	vhu_fe_close(fe);
	close(h->fd);
	close(h->stop);
	close(h->trigger);
	if (h->chan >= 0)
		close(h->chan);
	for (unsigned q = 0; q < HB_QUEUES; q++) {
		if (h->vq[q].kick >= 0)
			close(h->vq[q].kick);
		if (h->vq[q].call >= 0)
			close(h->vq[q].call);
	}
	for (unsigned i = 0; i < h->nregions; i++)
		munmap(h->reg[i].host, h->reg[i].size);
}

/* The honest back-end of the current test and its thread. */
static struct honest hb;
static pthread_t hb_thread;

/* A session with it (front-end options o, may be NULL); must succeed. */
static struct vhu_fe *hb_open(const struct vhu_fe_opts *o)
{
	struct vhu_fe *fe = honest_start_opts(&hb, &hb_thread, o);
	CHECK(fe);
	return fe;
}

static void hb_close(struct vhu_fe *fe)
{
	honest_stop(&hb, hb_thread, fe);
}

TEST(handshake_negotiates_what_both_sides_have)
{
	struct vhu_fe *fe = hb_open(NULL);
	CHECK(vhu_fe_features_offered(fe) & VHU_BIT(VHU_F_EVENT_IDX));
	CHECK(vhu_fe_protocol_features_offered(fe) & VHU_BIT(VHU_PF_LOG_SHMFD));
	/* LOG_SHMFD is offered but not implemented by the front-end */
	CHECK_EQ(vhu_fe_protocol_features(fe), VHU_FE_PROTOCOL_FEATURES);
	CHECK_EQ(vhu_fe_queue_num(fe), HB_QUEUES);
	CHECK_EQ(vhu_fe_max_mem_slots(fe), 8);
	CHECK(vhu_fe_backend_fd(fe) >= 0);
	CHECK_EQ(vhu_fe_set_features(fe, VHU_BIT(VHU_F_VERSION_1) | VHU_BIT(VHU_F_RING_PACKED)), 0);
	/* RING_PACKED was not offered; PROTOCOL_FEATURES stays */
	CHECK_EQ(vhu_fe_features(fe), VHU_BIT(VHU_F_VERSION_1) | VHU_BIT(VHU_F_PROTOCOL_FEATURES));
	uint8_t v = 1;
	CHECK_EQ(vhu_fe_set_config(fe, 32, &v, 1, 0), 0);
	CHECK_EQ(vhu_fe_set_config(fe, 30, &v, 1, 0), -EIO);
	uint8_t b[64];
	CHECK_EQ(vhu_fe_get_config(fe, 0, b, 64), 0);
	CHECK_EQ(b[32], 1);
	CHECK_EQ(vhu_fe_get_config(fe, 60, b, 8), -EIO);
	hb_close(fe);
	CHECK(hb.owner);
	CHECK_EQ(hb.protocol, VHU_FE_PROTOCOL_FEATURES);
	/* everything after SET_PROTOCOL_FEATURES without a reply body asked
	 * for an ack: BACKEND_REQ_FD, OWNER, FEATURES, 2x SET_CONFIG */
	CHECK_EQ(hb.reqs_with_need_reply, 5);
}

/* What was asked for and not negotiated is reported. */
TEST(set_features_dropped_reports_the_bits_left_out)
{
	struct vhu_fe *fe = hb_open(NULL);
	uint64_t dropped = 12345;
	uint64_t want = VHU_BIT(VHU_F_VERSION_1) | VHU_BIT(VHU_F_RING_PACKED) |
			VHU_BIT(VHU_F_LOG_ALL) | VHU_BIT(5);
	CHECK(!(vhu_fe_features_offered(fe) & (VHU_BIT(VHU_F_RING_PACKED) | VHU_BIT(5))));
	CHECK_EQ(vhu_fe_set_features_dropped(fe, want, &dropped), 0);
	CHECK_EQ(dropped, VHU_BIT(VHU_F_RING_PACKED) | VHU_BIT(VHU_F_LOG_ALL) | VHU_BIT(5));
	CHECK_EQ(vhu_fe_features(fe), VHU_BIT(VHU_F_VERSION_1) | VHU_BIT(VHU_F_PROTOCOL_FEATURES));
	/* everything offered: nothing dropped; NULL is allowed */
	CHECK_EQ(vhu_fe_set_features_dropped(fe, VHU_BIT(VHU_F_VERSION_1), &dropped), 0);
	CHECK_EQ(dropped, 0);
	CHECK_EQ(vhu_fe_set_features_dropped(fe, VHU_BIT(VHU_F_VERSION_1), NULL), 0);
	hb_close(fe);
}

/* Memory from vhu_fe_alloc() can be given back and is reused. */
TEST(alloc_free_reuses_memory)
{
	struct vhu_fe *fe = hb_open(NULL);
	CHECK_EQ(vhu_fe_set_features(fe, VHU_BIT(VHU_F_VERSION_1)), 0);
	CHECK_EQ(vhu_fe_add_memory(fe, 1 << 16), 0);
	uint64_t g1, g2, g3, g;
	/* The region fills up... */
	uint8_t *a = vhu_fe_alloc(fe, 1 << 14, 8, &g1);
	uint8_t *b = vhu_fe_alloc(fe, 1 << 14, 8, &g2);
	uint8_t *c = vhu_fe_alloc(fe, 1 << 15, 8, &g3);
	CHECK(a && b && c);
	CHECK(vhu_fe_alloc(fe, 64, 8, &g) == NULL);
	/* ...a block in the middle comes back, zeroed, with its address */
	memset(b, 0x77, 1 << 14);
	vhu_fe_free(fe, b, 1 << 14);
	uint8_t *d = vhu_fe_alloc(fe, 4096, 4096, &g);
	CHECK(d != NULL);
	CHECK(d >= b && d + 4096 <= b + (1 << 14));
	CHECK_EQ(g, vhu_fe_gpa(fe, d));
	CHECK_EQ(d[0], 0);
	CHECK_EQ(d[4095], 0);
	/* the top of the region lowers the bump pointer, over the free
	 * rest of b's block too: as large a block fits again, lower down */
	vhu_fe_free(fe, c, 1 << 15);
	uint8_t *e = vhu_fe_alloc(fe, 1 << 15, 8, &g);
	CHECK(e != NULL && e > d && e < c);
	CHECK_EQ(g, vhu_fe_gpa(fe, e));
	CHECK(g < g3);
	/* freeing everything makes the whole region available */
	vhu_fe_free(fe, e, 1 << 15);
	vhu_fe_free(fe, d, 4096);
	vhu_fe_free(fe, a, 1 << 14);
	/* what is left of b's block merges down too */
	uint8_t *all = vhu_fe_alloc(fe, 1 << 16, 8, &g);
	CHECK(all == a);
	/* ignored: NULL, zero length, outside guest memory */
	vhu_fe_free(fe, NULL, 16);
	vhu_fe_free(fe, a, 0);
	uint8_t local[16];
	vhu_fe_free(fe, local, sizeof(local));
	CHECK(vhu_fe_alloc(fe, 1, 1, &g) == NULL);
	hb_close(fe);
}

static void ring_roundtrip(bool event_idx)
{
	struct vhu_fe *fe = hb_open(NULL);
	uint64_t f = VHU_BIT(VHU_F_VERSION_1) | (event_idx ? VHU_BIT(VHU_F_EVENT_IDX) : 0);
	CHECK_EQ(vhu_fe_set_features(fe, f), 0);
	CHECK_EQ(vhu_fe_add_memory(fe, 1 << 20), 0);
	struct vhu_fe_vq *vq[HB_QUEUES];
	for (unsigned q = 0; q < HB_QUEUES; q++)
		CHECK_EQ(vhu_fe_vq_setup(fe, q, 16, &vq[q]), 0);
	struct vhu_fe_vq *again;
	CHECK_EQ(vhu_fe_vq_setup(fe, 0, 16, &again), -EBUSY);
	CHECK(again == NULL);
	CHECK_EQ(vhu_fe_vq_num_free(vq[0]), 16);

	/* 200 requests on a 16-entry ring, 4 at a time: indices wrap. */
	uint64_t in_gpa[4], out_gpa[4];
	uint8_t *in[4], *out[4];
	for (unsigned i = 0; i < 4; i++) {
		out[i] = vhu_fe_alloc(fe, 64, 8, &out_gpa[i]);
		in[i] = vhu_fe_alloc(fe, 64, 8, &in_gpa[i]);
		CHECK(out[i] && in[i]);
		CHECK_EQ(vhu_fe_gpa(fe, in[i]), in_gpa[i]);
	}
	unsigned q = 1;
	for (unsigned round = 0; round < 50; round++) {
		for (unsigned i = 0; i < 4; i++) {
			memset(out[i], (int)(round * 4 + i), 64);
			memset(in[i], 0, 64);
			struct vhu_fe_buf o[2] = { { out_gpa[i], 24 }, { out_gpa[i] + 24, 16 } };
			struct vhu_fe_buf w = { in_gpa[i], 64 };
			CHECK(vhu_fe_vq_add(vq[q], o, 2, &w, 1, out[i]) >= 0);
		}
		CHECK_EQ(vhu_fe_vq_num_free(vq[q]), 4);
		CHECK(vhu_fe_vq_kick(vq[q]) >= 0);
		unsigned got = 0;
		while (got < 4) {
			void *data;
			uint32_t len;
			int r = vhu_fe_vq_get_used(vq[q], &data, &len);
			CHECK(r >= 0);
			if (r == 0) {
				CHECK_EQ(vhu_fe_vq_wait(vq[q], 2000), 1);
				continue;
			}
			unsigned i = 0;
			while (i < 4 && out[i] != data)
				i++;
			CHECK(i < 4);
			CHECK_EQ(len, 40);
			CHECK_EQ(in[i][0], (uint8_t)(round * 4 + i));
			CHECK_EQ(in[i][39], (uint8_t)(round * 4 + i));
			CHECK_EQ(in[i][40], 0);
			got++;
		}
		CHECK_EQ(vhu_fe_vq_inflight(vq[q]), 0);
		CHECK_EQ(vhu_fe_vq_num_free(vq[q]), 16);
	}
	/* Nothing more: waiting times out. */
	CHECK_EQ(vhu_fe_vq_wait(vq[q], 50), 0);
	uint32_t base = 0;
	CHECK_EQ(vhu_fe_vq_stop(fe, q, &base), 0);
	CHECK_EQ(base, 200);
	CHECK_EQ(vhu_fe_vq_stop(fe, 7, &base), -EINVAL);
	hb_close(fe);
	CHECK_EQ(hb.nregions, 1);
	CHECK(hb.vq[1].enabled);
}

TEST(ring_roundtrip_with_event_idx) { ring_roundtrip(true); }
TEST(ring_roundtrip_without_event_idx) { ring_roundtrip(false); }

TEST(add_rejects_overfull_and_empty_chains)
{
	struct vhu_fe *fe = hb_open(NULL);
	CHECK_EQ(vhu_fe_set_features(fe, VHU_BIT(VHU_F_VERSION_1)), 0);
	CHECK_EQ(vhu_fe_add_memory(fe, 1 << 16), 0);
	struct vhu_fe_vq *vq;
	CHECK_EQ(vhu_fe_vq_setup(fe, 0, 3, &vq), -EINVAL);
	CHECK_EQ(vhu_fe_vq_setup(fe, 0, 4, &vq), 0);
	uint64_t g;
	CHECK(vhu_fe_alloc(fe, 16, 16, &g));
	struct vhu_fe_buf b[5] = { { g, 1 }, { g, 1 }, { g, 1 }, { g, 1 }, { g, 1 } };
	CHECK_EQ(vhu_fe_vq_add(vq, b, 0, b, 0, NULL), -EINVAL);
	CHECK_EQ(vhu_fe_vq_add(vq, b, 5, NULL, 0, NULL), -ENOSPC);
	CHECK(vhu_fe_vq_add(vq, b, 4, NULL, 0, NULL) >= 0);
	CHECK_EQ(vhu_fe_vq_add(vq, b, 1, NULL, 0, NULL), -ENOSPC);
	CHECK(vhu_fe_alloc(fe, 1 << 17, 8, &g) == NULL);
	hb_close(fe);
}

TEST(set_mem_table_carries_every_region)
{
	struct vhu_fe_opts o = { .no_add_mem_reg = true };
	struct vhu_fe *fe = hb_open(&o);
	CHECK_EQ(vhu_fe_set_features(fe, VHU_BIT(VHU_F_VERSION_1)), 0);
	CHECK_EQ(vhu_fe_add_memory(fe, 1 << 16), 0);
	CHECK_EQ(vhu_fe_add_memory(fe, 1 << 16), 0);
	struct vhu_fe_vq *vq;
	CHECK_EQ(vhu_fe_vq_setup(fe, 0, 8, &vq), 0);
	/* fill the first region so the buffer lands in the second */
	uint64_t g = 0;
	uint8_t *buf = NULL;
	for (int i = 0; i < 2048 && g < (1ull << 30); i++)
		buf = vhu_fe_alloc(fe, 64, 8, &g);
	CHECK(buf);
	CHECK(g >= (1ull << 30));
	memcpy(buf, "hello, region two", 18);
	struct vhu_fe_buf r = { g, 18 }, w = { g + 32, 32 };
	CHECK(vhu_fe_vq_add(vq, &r, 1, &w, 1, buf) >= 0);
	CHECK(vhu_fe_vq_kick(vq) >= 0);
	CHECK_EQ(vhu_fe_vq_wait(vq, 2000), 1);
	void *data;
	uint32_t len;
	CHECK_EQ(vhu_fe_vq_get_used(vq, &data, &len), 1);
	CHECK(data == buf);
	CHECK_EQ(len, 18);
	CHECK(memcmp(buf + 32, "hello, region two", 18) == 0);
	hb_close(fe);
	CHECK_EQ(hb.mem_tables, 2);
	CHECK_EQ(hb.nregions, 2);
	/* Our guest memory is sealed: the back-end could not shrink it. */
	CHECK_EQ(hb.shrink_done, 0);
	CHECK_EQ(hb.shrink_eperm, 3); /* one region, then two */
}

TEST(guest_memory_sent_with_add_mem_reg_cannot_be_shrunk)
{
	struct vhu_fe *fe = hb_open(NULL);
	CHECK_EQ(vhu_fe_set_features(fe, VHU_BIT(VHU_F_VERSION_1)), 0);
	CHECK_EQ(vhu_fe_add_memory(fe, 1 << 16), 0);
	CHECK_EQ(vhu_fe_add_memory(fe, 1 << 16), 0);
	hb_close(fe);
	CHECK_EQ(hb.nregions, 2);
	CHECK_EQ(hb.shrink_done, 0);
	CHECK_EQ(hb.shrink_eperm, 2);
}

/* The driver kicks only when the device asks for it (virtio 1.2, 2.7.10
 * and 2.7.13): the test writes the device's suppression fields itself. */
static void kick_suppression(bool event_idx)
{
	struct vhu_fe *fe = hb_open(NULL);
	CHECK_EQ(vhu_fe_set_features(fe, VHU_BIT(VHU_F_VERSION_1) |
				     (event_idx ? VHU_BIT(VHU_F_EVENT_IDX) : 0)), 0);
	CHECK_EQ(vhu_fe_add_memory(fe, 1 << 16), 0);
	struct vhu_fe_vq *vq;
	CHECK_EQ(vhu_fe_vq_setup(fe, 0, 8, &vq), 0);
	/* Stop the honest device (the session stays ours): from here on the
	 * test plays the device. */
	hb_close(NULL);
	uint64_t g;
	CHECK(vhu_fe_alloc(fe, 16, 16, &g));
	struct vhu_fe_buf b = { g, 16 };
	volatile uint16_t *used = vq->used;
	unsigned num = 8;

	CHECK_EQ(vhu_fe_vq_kick(vq), 0); /* nothing added */
	CHECK(vhu_fe_vq_add(vq, &b, 1, NULL, 0, NULL) >= 0);
	if (event_idx)
		used[2 + 4 * num] = 5; /* avail_event: kick when idx passes 5 */
	else
		used[0] = VHU_VRING_USED_F_NO_NOTIFY;
	CHECK_EQ(vhu_fe_vq_kick(vq), 0);
	CHECK_EQ(vq->avail[1], 1);
	if (event_idx) {
		used[2 + 4 * num] = 1; /* idx 1 -> 2 crosses event 1 */
	} else {
		used[0] = 0;
	}
	CHECK(vhu_fe_vq_add(vq, &b, 1, NULL, 0, NULL) >= 0);
	CHECK_EQ(vhu_fe_vq_kick(vq), 1);
	CHECK_EQ(vq->avail[1], 2);
	vhu_fe_close(fe);
}

TEST(kick_honours_no_notify) { kick_suppression(false); }
TEST(kick_honours_avail_event) { kick_suppression(true); }

/* A device writing garbage into the used ring breaks the queue, never
 * the driver's own state. */
static void broken_used(uint32_t id, uint32_t len, uint16_t idx_step)
{
	struct vhu_fe *fe = hb_open(NULL);
	CHECK_EQ(vhu_fe_set_features(fe, VHU_BIT(VHU_F_VERSION_1)), 0);
	CHECK_EQ(vhu_fe_add_memory(fe, 1 << 16), 0);
	struct vhu_fe_vq *vq;
	CHECK_EQ(vhu_fe_vq_setup(fe, 0, 8, &vq), 0);
	uint64_t g;
	CHECK(vhu_fe_alloc(fe, 64, 16, &g));
	struct vhu_fe_buf r = { g, 16 }, w = { g + 16, 16 };
	int head = vhu_fe_vq_add(vq, &r, 1, &w, 1, NULL);
	CHECK(head >= 0);
	/* no kick: the honest device stays out of it; we play the device */
	struct vhu_vring_used_elem *ue = (void *)&vq->used[2];
	ue[0].id = id == UINT32_MAX ? (uint32_t)head : id;
	ue[0].len = len;
	__atomic_store_n(&vq->used[1], idx_step, __ATOMIC_RELEASE);
	void *data;
	uint32_t l;
	CHECK_EQ(vhu_fe_vq_get_used(vq, &data, &l), -EIO);
	CHECK_EQ(vhu_fe_vq_get_used(vq, &data, &l), -EIO);
	CHECK_EQ(vhu_fe_vq_add(vq, &r, 1, NULL, 0, NULL), -EIO);
	CHECK_EQ(vhu_fe_vq_wait(vq, 10), -EIO);
	hb_close(fe);
}

TEST(used_id_out_of_range_breaks_queue) { broken_used(8, 0, 1); }
TEST(used_id_not_in_flight_breaks_queue) { broken_used(3, 0, 1); }
TEST(used_len_beyond_writable_breaks_queue) { broken_used(UINT32_MAX, 17, 1); }
TEST(used_idx_jump_breaks_queue) { broken_used(UINT32_MAX, 0, 5); }

struct cc {
	unsigned calls;
	uint64_t cap_seen;
	int rc;
};

static int on_change(struct vhu_fe *fe, void *opaque)
{
	struct cc *c = opaque;
	uint8_t b[8];
	c->calls++;
	/* Re-reading the config from inside the callback must work. */
	if (vhu_fe_get_config(fe, 0, b, 8) == 0)
		memcpy(&c->cap_seen, b, 8);
	return c->rc;
}

TEST(config_change_is_acked_after_callback)
{
	struct vhu_fe *fe = hb_open(NULL);
	struct cc c = { 0 };
	vhu_fe_set_config_change_cb(fe, on_change, &c);
	CHECK_EQ(vhu_fe_process_backend(fe), 0); /* nothing there yet */
	uint64_t one = 1;
	CHECK(write(hb.trigger, &one, 8) == 8);
	struct pollfd p = { .fd = vhu_fe_backend_fd(fe), .events = POLLIN };
	CHECK_EQ(poll(&p, 1, 2000), 1);
	CHECK_EQ(vhu_fe_process_backend(fe), 1);
	CHECK_EQ(c.calls, 1);
	CHECK_EQ(c.cap_seen, 4096);
	/* let the back-end read the ack */
	for (int i = 0; i < 200 && !hb.acked; i++)
		usleep(5000);
	hb_close(fe);
	CHECK(hb.acked);
	CHECK_EQ(hb.ack_value, 0);
	CHECK(hb.ack_after_get);
}

/* A hostile back-end channel: bad flags close it; fds get closed. */
TEST(backend_channel_rejects_garbage)
{
	struct vhu_fe *fe = hb_open(NULL);
	int chan = hb.chan;
	CHECK(chan >= 0);
	int before = tl_count_fds();
	int efd = eventfd(0, EFD_CLOEXEC);
	/* an unknown request carrying an fd, NEED_REPLY: refused, fd closed */
	struct vhu_msg_hdr hdr = { 99, VHU_MSG_VERSION | VHU_MSG_NEED_REPLY, 0 };
	raw_send(chan, &hdr, sizeof(hdr), &efd, 1);
	close(efd);
	struct pollfd p = { .fd = vhu_fe_backend_fd(fe), .events = POLLIN };
	CHECK_EQ(poll(&p, 1, 2000), 1);
	CHECK_EQ(vhu_fe_process_backend(fe), 1);
	CHECK_EQ(tl_count_fds(), before);
	/* then a message with reply flags: protocol error, channel closed */
	struct vhu_msg_hdr bad = { VHU_BREQ_CONFIG_CHANGE_MSG, RF, 0 };
	raw_send(chan, &bad, sizeof(bad), NULL, 0);
	CHECK_EQ(poll(&p, 1, 2000), 1);
	CHECK_EQ(vhu_fe_process_backend(fe), -EPROTO);
	CHECK_EQ(vhu_fe_backend_fd(fe), -1);
	CHECK_EQ(vhu_fe_process_backend(fe), -ENOTCONN);
	/* the main connection still works */
	uint8_t b[8];
	CHECK_EQ(vhu_fe_get_config(fe, 0, b, 8), 0);
	hb_close(fe);
	/* the back-end saw the refusal of request 99 */
	CHECK(!hb.acked);
	CHECK_EQ(hb.ack_value, 1);
}

int main(void)
{
	return tap_run();
}
