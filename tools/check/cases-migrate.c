/* SPDX-License-Identifier: MIT */
/*
 * Dirty logging for live migration (vhost-user.rst "Migration", LOG_SHMFD,
 * SET_LOG_BASE, VHOST_F_LOG_ALL, the LOG flag of SET_VRING_ADDR), driven
 * as QEMU drives it: SET_LOG_BASE with a memfd and its reply, SET_FEATURES
 * adding bit 26 while the ring runs, SET_VRING_ADDR with the LOG flag and
 * log_guest_addr = the used ring.  Conformance: the pages the device wrote
 * are marked; logging switched on and off while requests run loses none.
 * Robustness: malformed logs and feature changes while running.  Every
 * case skips unless the back-end offers LOG_SHMFD, LOG_ALL and REPLY_ACK.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "check.h"

/* Bytes of log for the checker's memory (up to CHK_GPA_BASE +
 * CHK_MEM_SIZE), in whole 64-bit words as QEMU sizes it. */
static uint64_t log_need(void)
{
	uint64_t pages = (CHK_GPA_BASE + CHK_MEM_SIZE + 4095) / 4096;
	return (pages + 63) / 64 * 8;
}

static bool log_offered(const struct chk_sess *s)
{
	return (s->pfeatures & VHU_BIT(VHU_PF_LOG_SHMFD)) &&
	       (s->features & VHU_BIT(VHU_F_LOG_ALL)) &&
	       (s->acked_pf & VHU_BIT(VHU_PF_REPLY_ACK));
}

/* A session that negotiated LOG_SHMFD, up to level.  1 = skip (not
 * offered), 0 ready, -1 failed. */
static int log_session(struct chk_ctx *c, struct chk_sess *s,
		       enum chk_level level, char *why)
{
	chk_sess_init(s, c->timeout_ms);
	s->want_log = true;
	if (chk_open(s, c->path, true, why) < 0)
		return -1;
	if (!log_offered(s)) {
		snprintf(why, CHK_WHY, "LOG_SHMFD, LOG_ALL or REPLY_ACK not offered");
		return 1;
	}
	if (level >= CHK_MEMFD && chk_mem_create(s, why) < 0)
		return -1;
	if (level >= CHK_MAPPED && chk_mem_register(s, why) < 0)
		return -1;
	if (level >= CHK_RUNNING && chk_ring_setup(s, CHK_QSIZE, 0, why) < 0)
		return -1;
	return 0;
}

static int log_memfd(uint64_t size, char *why)
{
	int fd = memfd_create("vhu-check-log", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
		chk_fail(why, "log memfd: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* SET_LOG_BASE as QEMU sends it (no NEED_REPLY: the back-end answers
 * anyway, and QEMU waits for that answer). */
static int log_base(struct chk_sess *s, int fd, uint64_t size, char *why)
{
	struct vhu_log lg = { size, 0 };
	int r = chk_send(s, VHU_REQ_SET_LOG_BASE, VHU_MSG_VERSION, &lg,
			 sizeof(lg), &fd, 1);
	if (r < 0)
		return chk_fail(why, "send SET_LOG_BASE: %s", strerror(-r));
	struct vhu_msg m;
	unsigned n = 0;
	r = chk_recv(s, &m, s->timeout_ms, &n);
	if (r == 0)
		return chk_fail(why, "SET_LOG_BASE: connection dropped");
	if (r < 0)
		return chk_fail(why, "SET_LOG_BASE: no reply (%s); QEMU waits "
				"for one", strerror(-r));
	if (m.hdr.request != VHU_REQ_SET_LOG_BASE ||
	    !(m.hdr.flags & VHU_MSG_REPLY) || n)
		return chk_fail(why, "SET_LOG_BASE: bad reply (id %u, flags "
				"0x%x, %u fds)", m.hdr.request, m.hdr.flags, n);
	/* QEMU looks at the request id only (libvhost-user answers with
	 * the payload's first word): any body counts as done. */
	return 0;
}

static int ring_log_flag(struct chk_sess *s, bool on, char *why)
{
	struct vhu_vring_addr a = {
		.index = 0,
		.flags = on ? 1u : 0u,
		.desc_user_addr = chk_uva(s, CHK_OFF_DESC),
		.used_user_addr = chk_uva(s, CHK_OFF_USED),
		.avail_user_addr = chk_uva(s, CHK_OFF_AVAIL),
		.log_guest_addr = chk_gpa(s, CHK_OFF_USED),
	};
	return chk_set(s, VHU_REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0, why);
}

/* QEMU's order while the ring runs: log, LOG_ALL, the ring's LOG flag. */
static int log_on(struct chk_sess *s, int fd, char *why)
{
	char w[CHK_WHY];
	if (log_base(s, fd, log_need(), why) < 0)
		return -1;
	if (chk_set_u64(s, VHU_REQ_SET_FEATURES,
			s->acked | VHU_BIT(VHU_F_LOG_ALL), w) < 0)
		return chk_fail(why, "SET_FEATURES with LOG_ALL: %s", w);
	if (ring_log_flag(s, true, w) < 0)
		return chk_fail(why, "SET_VRING_ADDR with LOG: %s", w);
	return 0;
}

static int log_off(struct chk_sess *s, char *why)
{
	char w[CHK_WHY];
	if (chk_set_u64(s, VHU_REQ_SET_FEATURES, s->acked, w) < 0)
		return chk_fail(why, "SET_FEATURES without LOG_ALL: %s", w);
	if (ring_log_flag(s, false, w) < 0)
		return chk_fail(why, "SET_VRING_ADDR without LOG: %s", w);
	return 0;
}

static bool marked(const uint8_t *log, uint64_t gpa)
{
	uint64_t page = gpa / 4096;
	return (__atomic_load_n(&log[page / 8], __ATOMIC_ACQUIRE) >> (page % 8)) & 1;
}

static void pattern(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
}

/* ---- conformance ---- */

/* The most data a conformance case writes (its pattern buffer). */
enum { LOG_CASE_MAX = 65536 };

/* A running session with LOG_SHMFD (see log_session), a log memfd of
 * log_need() bytes in *fd, and len bytes of pattern seed written at
 * sector 0, also left in want.  0 ready, 1 skip, -1 failed (*fd closed). */
static int log_written(struct chk_ctx *c, struct chk_sess *s, uint8_t *want,
		       uint32_t len, unsigned seed, int *fd, char *why)
{
	int r = log_session(c, s, CHK_RUNNING, why);
	if (r)
		return r;
	if (c->capacity < len / 512)
		return chk_fail(why, "disk too small");
	*fd = log_memfd(log_need(), why);
	if (*fd < 0)
		return -1;
	uint8_t st = 0;
	pattern(want, len, seed);
	memcpy(s->mem + CHK_OFF_DATA, want, len);
	r = chk_blk_req(s, CHK_BLK_T_OUT, 0, len, &st, why);
	if (r == 0 && st != CHK_BLK_S_OK)
		r = chk_fail(why, "write: status %u", st);
	if (r) {
		close(*fd);
		*fd = -1;
	}
	return r;
}

/* A conformance case after log_written: the session, the pattern on the
 * disk and the log's fd (closed by the caller). */
struct log_case {
	uint32_t len;
	unsigned seed;
	int (*body)(struct chk_sess *s, uint8_t *want, int fd, char *why);
};

static int c_logged(struct chk_ctx *c, const void *arg, char *why)
{
	const struct log_case *lc = arg;
	static uint8_t want[LOG_CASE_MAX];
	struct chk_sess s;
	int fd = -1;
	int r = log_written(c, &s, want, lc->len, lc->seed, &fd, why);
	if (r)
		return chk_done(&s, r);
	r = lc->body(&s, want, fd, why);
	close(fd);
	return chk_done(&s, r);
}

/* A 64 KiB read with logging on marks its data pages, its status page
 * and the used ring's page. */
static int reads_marked(struct chk_sess *s, uint8_t *want, int fd, char *why)
{
	enum { LEN = LOG_CASE_MAX };
	uint64_t need = log_need();
	uint8_t *log = mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (log == MAP_FAILED)
		return chk_fail(why, "mmap log: %s", strerror(errno));
	uint8_t st = 0;
	if (chk_null_disk)
		memset(want, 0, LEN);
	int r = log_on(s, fd, why);
	if (r == 0) {
		memset(log, 0, need);
		memset(s->mem + CHK_OFF_DATA, chk_null_disk ? 0xa5 : 0, LEN);
		r = chk_blk_req(s, CHK_BLK_T_IN, 0, LEN, &st, why);
		if (r == 0 && st != CHK_BLK_S_OK)
			r = chk_fail(why, "read: status %u", st);
		if (r == 0 && memcmp(s->mem + CHK_OFF_DATA, want, LEN) != 0)
			r = chk_fail(why, "read: data differs");
	}
	unsigned missing = 0;
	uint64_t first = 0;
	for (uint32_t off = 0; r == 0 && off < LEN; off += 4096)
		if (!marked(log, chk_gpa(s, CHK_OFF_DATA + off)) && !missing++)
			first = chk_gpa(s, CHK_OFF_DATA + off);
	if (r == 0 && missing)
		r = chk_fail(why, "%u of %u data pages the device wrote not "
			     "marked (first gpa 0x%llx)", missing, LEN / 4096,
			     (unsigned long long)first);
	if (r == 0 && !marked(log, chk_gpa(s, CHK_OFF_HDR + 16)))
		r = chk_fail(why, "the status byte's page is not marked");
	if (r == 0 && !marked(log, chk_gpa(s, CHK_OFF_USED)))
		r = chk_fail(why, "the used ring's page (log_guest_addr) is "
			     "not marked");
	if (r == 0)
		r = log_off(s, why);
	munmap(log, need);
	if (r < 0)
		return -1;
	return chk_pass(why, "64 KiB read: its 16 data pages, the status page "
			"and the used ring page marked");
}

enum { TOG_K = 16, TOG_ROUNDS = 8, TOG_LEN = 4096 };
_Static_assert(TOG_K * TOG_LEN <= LOG_CASE_MAX, "toggle's data fits");

/* TOG_K reads of 4 KiB in flight: request i reads sector 8 i into its
 * own buffer, descriptors 3 i .. 3 i + 2. */
static int tog_publish(struct chk_sess *s, char *why)
{
	for (unsigned i = 0; i < TOG_K; i++) {
		uint32_t h = CHK_OFF_HDR + 32 * i, d = CHK_OFF_DATA + TOG_LEN * i;
		struct { uint32_t type, ioprio; uint64_t sector; } hdr = {
			CHK_BLK_T_IN, 0, 8ull * i };
		memcpy(s->mem + h, &hdr, sizeof(hdr));
		s->mem[h + 16] = 0xff;
		memset(s->mem + d, 0, TOG_LEN);
		chk_set_desc(s, CHK_OFF_DESC, 3 * i, chk_gpa(s, h), 16,
			     VHU_VRING_DESC_F_NEXT, (uint16_t)(3 * i + 1));
		chk_set_desc(s, CHK_OFF_DESC, 3 * i + 1, chk_gpa(s, d), TOG_LEN,
			     VHU_VRING_DESC_F_NEXT | VHU_VRING_DESC_F_WRITE,
			     (uint16_t)(3 * i + 2));
		chk_set_desc(s, CHK_OFF_DESC, 3 * i + 2, chk_gpa(s, h + 16), 1,
			     VHU_VRING_DESC_F_WRITE, 0);
	}
	for (unsigned i = 0; i < TOG_K; i++) {
		int r = chk_publish(s, (uint16_t)(3 * i), 1);
		if (r < 0)
			return chk_fail(why, "kick: %s", strerror(-r));
	}
	return 0;
}

static int tog_collect(struct chk_sess *s, const uint8_t *want, unsigned round,
		       char *why)
{
	static const uint8_t zeros[TOG_LEN];
	bool seen[TOG_K] = { false };
	for (unsigned n = 0; n < TOG_K; n++) {
		uint32_t id, len;
		int r = chk_wait_used(s, s->timeout_ms, &id, &len);
		if (r == 0)
			return chk_fail(why, "round %u: %u of %u requests lost "
					"(not completed within %d ms)", round,
					TOG_K - n, TOG_K, s->timeout_ms);
		if (r < 0)
			return chk_fail(why, "round %u: connection dropped", round);
		if (id % 3 || id / 3 >= TOG_K || seen[id / 3])
			return chk_fail(why, "round %u: used id %u unknown or "
					"completed twice", round, id);
		seen[id / 3] = true;
	}
	for (unsigned i = 0; i < TOG_K; i++) {
		uint8_t st = s->mem[CHK_OFF_HDR + 32 * i + 16];
		if (st != CHK_BLK_S_OK)
			return chk_fail(why, "round %u: request %u status %u",
					round, i, st);
		if (memcmp(s->mem + CHK_OFF_DATA + TOG_LEN * i,
			   chk_null_disk ? zeros : want + TOG_LEN * i, TOG_LEN) != 0)
			return chk_fail(why, "round %u: request %u data differs",
					round, i);
	}
	return 0;
}

/* TOG_ROUNDS rounds of TOG_K reads in flight, logging switched on or off
 * during each: every request completes once with the right data. */
static int toggle(struct chk_sess *s, uint8_t *want, int fd, char *why)
{
	int r = 0;
	for (unsigned round = 0; r == 0 && round < TOG_ROUNDS; round++) {
		r = tog_publish(s, why);
		/* Switch while the round's requests are being served. */
		if (r == 0)
			r = round % 2 == 0 ? log_on(s, fd, why) : log_off(s, why);
		if (r == 0)
			r = tog_collect(s, want, round, why);
	}
	if (r < 0)
		return -1;
	return chk_pass(why, "%u rounds of %u reads in flight, logging "
			"switched on or off during each: all completed once "
			"with the right data", TOG_ROUNDS, TOG_K);
}

/* ---- robustness ---- */

enum mig_id {
	G_NOFD, G_TWO_FDS, G_PAYLOAD_8, G_SIZE0, G_SIZE_BEYOND, G_OFF_BEYOND,
	G_OFF_OVF, G_TOO_SMALL, G_PIPE, G_FEAT_OTHER, G_FEAT_LOG_AND_OTHER,
};

/* A feature bit to flip that is not LOG_ALL: INDIRECT_DESC when offered
 * (the checker acks it), else VERSION_1. */
static uint64_t other_bit(const struct chk_sess *s)
{
	return (s->acked & VHU_BIT(VHU_F_INDIRECT_DESC)) ?
	       VHU_BIT(VHU_F_INDIRECT_DESC) : VHU_BIT(VHU_F_VERSION_1);
}

static int c_hostile(struct chk_ctx *c, const void *arg, char *why)
{
	enum mig_id id = chk_case_id(arg);
	struct chk_sess s;
	int r = log_session(c, &s, CHK_RUNNING, why);
	if (r)
		return chk_done(&s, r);
	uint64_t need = log_need();
	int fds[2] = { -1, -1 }, pfd[2] = { -1, -1 };
	fds[0] = log_memfd(need, why);
	if (fds[0] < 0)
		return chk_done(&s, -1);
	fds[1] = fds[0];
	struct vhu_log lg = { need, 0 };
	uint32_t req = VHU_REQ_SET_LOG_BASE, size = sizeof(lg);
	unsigned nfds = 1;
	uint64_t f = 0;
	const void *payload = &lg;

	switch (id) {
	case G_NOFD: nfds = 0; break;
	case G_TWO_FDS: nfds = 2; break;
	case G_PAYLOAD_8: size = 8; break;
	case G_SIZE0: lg.mmap_size = 0; break;
	case G_SIZE_BEYOND: lg.mmap_size = need + 4096; break;
	case G_OFF_BEYOND: lg.mmap_offset = need; lg.mmap_size = 4096; break;
	case G_OFF_OVF:
		lg.mmap_offset = 0xfffffffffffff000ull;
		lg.mmap_size = 0x2000;
		break;
	case G_TOO_SMALL: lg.mmap_size = 4096; break;
	case G_PIPE:
		if (pipe2(pfd, O_CLOEXEC) < 0) {
			close(fds[0]);
			return chk_done(&s, chk_fail(why, "pipe: %s", strerror(errno)));
		}
		fds[1] = pfd[0];
		break;
	case G_FEAT_OTHER:
	case G_FEAT_LOG_AND_OTHER:
		req = VHU_REQ_SET_FEATURES;
		f = s.acked ^ other_bit(&s);
		if (id == G_FEAT_LOG_AND_OTHER)
			f |= VHU_BIT(VHU_F_LOG_ALL);
		payload = &f;
		size = 8;
		nfds = 0;
		break;
	}
	const int *send_fds = id == G_PIPE ? &fds[1] : fds;
	if (id == G_PIPE)
		nfds = 1;
	r = chk_send_judge(&s, req, payload, size, send_fds, nfds,
			   CHK_EXPECT_REJECT, why);
	close(fds[0]);
	if (pfd[0] >= 0) {
		close(pfd[0]);
		close(pfd[1]);
	}
	return chk_done(&s, r);
}

#define MIG(name, i) CHK_CASE(name, c_hostile, i)

const struct chk_case chk_cases_migrate[] = {
	{ "migrate/reads-marked-in-log", c_logged,
	  &(const struct log_case){ LOG_CASE_MAX, 7, reads_marked },
	  CHK_PROBE_NONE, true },
	{ "migrate/log-toggled-under-load", c_logged,
	  &(const struct log_case){ TOG_K * TOG_LEN, 11, toggle },
	  CHK_PROBE_IO, true },
	MIG("migrate/log-base-without-fd", G_NOFD),
	MIG("migrate/log-base-two-fds", G_TWO_FDS),
	MIG("migrate/log-base-payload-8", G_PAYLOAD_8),
	MIG("migrate/log-base-size-0", G_SIZE0),
	MIG("migrate/log-base-size-beyond-fd", G_SIZE_BEYOND),
	MIG("migrate/log-base-offset-beyond-fd", G_OFF_BEYOND),
	MIG("migrate/log-base-offset-overflow", G_OFF_OVF),
	MIG("migrate/log-base-too-small-for-memory", G_TOO_SMALL),
	MIG("migrate/log-base-fd-not-mappable", G_PIPE),
	MIG("migrate/features-other-bit-while-running", G_FEAT_OTHER),
	MIG("migrate/features-log-all-and-other-bit-while-running",
	    G_FEAT_LOG_AND_OTHER),
	{ NULL, NULL, NULL, CHK_PROBE_NONE, false },
};
