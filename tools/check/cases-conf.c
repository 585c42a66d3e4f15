/* SPDX-License-Identifier: MIT */
/*
 * Part one: conformance.  The handshake as QEMU runs it, the
 * configuration-space rules (vhost-user.rst GET_CONFIG/SET_CONFIG: exact
 * size replies, size 0 = error, read-only fields refused), REPLY_ACK, ring
 * stop/restart through GET_VRING_BASE and verified block I/O.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "check.h"

static int c_handshake(struct chk_ctx *c, const void *arg, char *why)
{
	struct chk_sess s;
	CHK_FRESH(c, &s, CHK_NEGOTIATED, why);
	if (!s.have_pf)
		return chk_done(&s, chk_fail(why, "PROTOCOL_FEATURES not offered"));
	/* QEMU's vhost-user-blk needs the config space; other devices
	 * (virtio-rng) may have none. */
	if (chk_dev->blk && !(s.acked_pf & VHU_BIT(VHU_PF_CONFIG)))
		return chk_done(&s, chk_fail(why, "protocol feature CONFIG not "
					 "offered (QEMU needs it for blk)"));
	return chk_done(&s, chk_pass(why, "features 0x%llx, protocol 0x%llx, "
				 "queues %u, mem slots %u, capacity %llu",
				 (unsigned long long)s.features,
				 (unsigned long long)s.pfeatures, s.queue_num,
				 s.max_slots, (unsigned long long)s.capacity));
}

struct cfg_arg { uint32_t off, size; };

static int c_config(struct chk_ctx *c, const void *arg, char *why)
{
	const struct cfg_arg *a = arg;
	struct chk_sess s;
	uint8_t full[60], part[60];
	CHK_FRESH(c, &s, CHK_NEGOTIATED, why);
	if (chk_get_config(&s, 0, 60, full, why) < 0)
		return chk_done(&s, -1);
	if (chk_get_config(&s, a->off, a->size, part, why) < 0)
		return chk_done(&s, -1);
	if (memcmp(full + a->off, part, a->size) != 0)
		return chk_done(&s, chk_fail(why, "bytes %u..%u differ from the "
					 "0/60 read", a->off,
					 a->off + a->size - 1));
	return chk_done(&s, chk_pass(why, "exact-size reply, consistent with "
				 "0/60"));
}

/* Out of range: a size-0 reply is required (vhost-user.rst GET_CONFIG). */
static int c_config_range(struct chk_ctx *c, const void *arg, char *why)
{
	struct chk_sess s;
	CHK_FRESH(c, &s, CHK_NEGOTIATED, why);
	struct vhu_config q = { .offset = 200, .size = 8 };
	chk_send(&s, VHU_REQ_GET_CONFIG, VHU_MSG_VERSION, &q, 12 + 8, NULL, 0);
	/* Without CONFIG negotiated (a device with no config space, such as
	 * virtio-rng) GET_CONFIG is a request the back-end need not serve:
	 * any refusal passes, a drop included, as for other requests whose
	 * feature was not negotiated. */
	if (!(s.acked_pf & VHU_BIT(VHU_PF_CONFIG)))
		return chk_done(&s, chk_judge(&s, VHU_REQ_GET_CONFIG, 12 + 8,
					      CHK_EXPECT_REJECT, why));
	struct vhu_msg m;
	unsigned nfds = 0;
	int r = chk_recv(&s, &m, s.timeout_ms, &nfds);
	if (r == 0)
		return chk_done(&s, chk_fail(why, "connection dropped instead of a "
					 "size-0 reply"));
	if (r < 0)
		return chk_done(&s, chk_fail(why, "no reply: %s", strerror(-r)));
	const char *e = chk_config_error(&m, nfds);
	if (!e) {
		if (chk_check_reply(&m, VHU_REQ_GET_CONFIG, 0, nfds, why) < 0)
			return chk_done(&s, -1);
		return chk_done(&s, chk_fail(why, "reply is not an error"));
	}
	uint64_t f;
	if (chk_get_u64(&s, VHU_REQ_GET_FEATURES, &f, why) < 0)
		return chk_done(&s, -1);
	return chk_done(&s, chk_pass(why, "%s, connection still serving", e));
}

/* 0/300 exceeds the 256-byte limit: size-0 reply or drop. */
static int c_config_oversize(struct chk_ctx *c, const void *arg, char *why)
{
	struct chk_sess s;
	CHK_FRESH(c, &s, CHK_NEGOTIATED, why);
	uint8_t buf[12 + 300] = { 0 };
	struct vhu_config q = { .offset = 0, .size = 300 };
	memcpy(buf, &q, 12);
	chk_send(&s, VHU_REQ_GET_CONFIG, VHU_MSG_VERSION, buf, sizeof(buf),
		 NULL, 0);
	struct vhu_msg m;
	unsigned nfds = 0;
	int r = chk_recv(&s, &m, s.timeout_ms, &nfds);
	if (r == 0)
		return chk_done(&s, chk_pass(why, "connection dropped"));
	if (r < 0)
		return chk_done(&s, chk_fail(why, "no reply and no drop: %s",
					 strerror(-r)));
	const char *e = chk_config_error(&m, nfds);
	if (!e) {
		if (chk_check_reply(&m, VHU_REQ_GET_CONFIG, 0, nfds, why) < 0)
			return chk_done(&s, -1);
		return chk_done(&s, chk_fail(why, "reply is not an error"));
	}
	return chk_done(&s, chk_pass(why, "%s", e));
}

/* A negotiated session for a case that needs REPLY_ACK, or the case is
 * skipped (or failed, when there is no session). */
#define ACKED_SESSION(c, s, why)                                        \
	do {                                                            \
		CHK_FRESH((c), (s), CHK_NEGOTIATED, (why));             \
		if (!((s)->acked_pf & VHU_BIT(VHU_PF_REPLY_ACK))) {     \
			chk_pass((why), "REPLY_ACK not offered");       \
			return chk_done((s), 1);                        \
		}                                                       \
	} while (0)

/* SET_CONFIG of len bytes at off (flags 0), acked: chk_set's result. */
static int set_config(struct chk_sess *s, uint32_t off, const void *v,
		      uint32_t len, char *why)
{
	uint8_t buf[12 + 8];
	struct vhu_config q = { .offset = off, .size = len, .flags = 0 };
	memcpy(buf, &q, 12);
	memcpy(buf + 12, v, len);
	return chk_set(s, VHU_REQ_SET_CONFIG, buf, 12 + len, NULL, 0, why);
}

static int c_set_capacity(struct chk_ctx *c, const void *arg, char *why)
{
	struct chk_sess s;
	ACKED_SESSION(c, &s, why);
	uint64_t cap = s.capacity + 1024;
	int r = set_config(&s, 0, &cap, 8, why);
	if (r == 0)
		return chk_done(&s, chk_fail(why, "write to capacity acknowledged "
					 "with 0"));
	if (r != -EREMOTEIO)
		return chk_done(&s, -1);
	uint64_t now;
	if (chk_get_config(&s, 0, 8, &now, why) < 0)
		return chk_done(&s, -1);
	if (now != s.capacity)
		return chk_done(&s, chk_fail(why, "capacity changed to %llu",
					 (unsigned long long)now));
	return chk_done(&s, chk_pass(why, "refused with a failing ack, capacity "
				 "unchanged"));
}

/* Write wce v, read it back: 0, or -1 with why ("WHAT wce v, read
 * back ..."). */
static int wce_written(struct chk_sess *s, uint8_t v, const char *what,
		       char *why)
{
	uint8_t now;
	if (set_config(s, 32, &v, 1, why) < 0 ||
	    chk_get_config(s, 32, 1, &now, why) < 0)
		return -1;
	if (now != v)
		return chk_fail(why, "%s wce %u, read back %u", what, v, now);
	return 0;
}

static int c_set_wce(struct chk_ctx *c, const void *arg, char *why)
{
	struct chk_sess s;
	ACKED_SESSION(c, &s, why);
	if (!(s.acked & VHU_BIT(CHK_BLK_F_CONFIG_WCE))) {
		chk_pass(why, "CONFIG_WCE not offered");
		return chk_done(&s, 1);
	}
	uint8_t orig;
	if (chk_get_config(&s, 32, 1, &orig, why) < 0)
		return chk_done(&s, -1);
	uint8_t want = orig ? 0 : 1;
	if (wce_written(&s, want, "wrote", why) < 0 ||
	    wce_written(&s, orig, "restored", why) < 0)
		return chk_done(&s, -1);
	return chk_done(&s, chk_pass(why, "wce %u -> %u -> %u read back", orig,
				 want, orig));
}

/* REPLY_ACK: every body-less request answered with a u64 of the same id
 * (chk_set checks id, flags 0x5, size 8 and the value). */
static int c_reply_ack(struct chk_ctx *c, const void *arg, char *why)
{
	struct chk_sess s;
	ACKED_SESSION(c, &s, why);
	struct vhu_vring_state st = { 0, CHK_QSIZE };
	if (chk_set(&s, VHU_REQ_SET_VRING_NUM, &st, 8, NULL, 0, why) < 0)
		return chk_done(&s, -1);
	if (chk_set_u64(&s, VHU_REQ_SET_FEATURES, s.acked, why) < 0)
		return chk_done(&s, -1);
	return chk_done(&s, chk_pass(why, "SET_VRING_NUM and SET_FEATURES acked "
				 "with 0"));
}

static int c_verified_io(struct chk_ctx *c, const void *arg, char *why)
{
	struct chk_sess s;
	chk_sess_init(&s, c->timeout_ms);
	if (chk_session_ready(&s, c->path, why) < 0)
		return chk_done(&s, -1);
	for (unsigned i = 1; i <= 4; i++)
		if (chk_verified_io(&s, i * 7, why) < 0)
			return chk_done(&s, -1);
	uint8_t st;
	if (chk_blk_req(&s, CHK_BLK_T_FLUSH, 0, 0, &st, why) < 0)
		return chk_done(&s, -1);
	if (st != CHK_BLK_S_OK && st != CHK_BLK_S_UNSUPP)
		return chk_done(&s, chk_fail(why, "FLUSH status %u", st));
	return chk_done(&s, chk_pass(why, "4 x 8 KiB written and read back, "
				 "flush status %u", st));
}

static int c_stop_restart(struct chk_ctx *c, const void *arg, char *why)
{
	struct chk_sess s;
	chk_sess_init(&s, c->timeout_ms);
	if (chk_session_ready(&s, c->path, why) < 0)
		return chk_done(&s, -1);
	if (chk_verified_io(&s, 3, why) < 0)
		return chk_done(&s, -1);
	struct vhu_vring_state st = { 0, 0 };
	struct vhu_msg m;
	if (chk_get(&s, VHU_REQ_GET_VRING_BASE, &st, 8, 8, &m, why) < 0)
		return chk_done(&s, -1);
	if (m.p.state.index != 0 || m.p.state.num != s.avail_idx)
		return chk_done(&s, chk_fail(why, "GET_VRING_BASE answered %u/%u, "
					 "expected 0/%u", m.p.state.index,
					 m.p.state.num, s.avail_idx));
	uint16_t base = (uint16_t)m.p.state.num;
	if (chk_ring_setup(&s, CHK_QSIZE, base, why) < 0)
		return chk_done(&s, -1);
	if (chk_verified_io(&s, 4, why) < 0)
		return chk_done(&s, -1);
	uint16_t used;
	memcpy(&used, s.mem + CHK_OFF_USED + 2, 2);
	if (used != s.avail_idx)
		return chk_done(&s, chk_fail(why, "used index %u after restart, "
					 "expected %u", used, s.avail_idx));
	return chk_done(&s, chk_pass(why, "stopped at %u, restarted, used index "
				 "continued to %u", base, used));
}

static const struct cfg_arg cfg[] = {
	{ 0, 60 }, { 0, 8 }, { 8, 4 }, { 20, 4 }, { 32, 1 }, { 34, 2 },
};

const struct chk_case chk_cases_conf[] = {
	{ "conf/handshake", c_handshake, NULL, CHK_PROBE_NONE, false },
	{ "conf/get-config-0-60", c_config, &cfg[0], CHK_PROBE_NONE, true },
	{ "conf/get-config-0-8", c_config, &cfg[1], CHK_PROBE_NONE, true },
	{ "conf/get-config-8-4", c_config, &cfg[2], CHK_PROBE_NONE, true },
	{ "conf/get-config-20-4", c_config, &cfg[3], CHK_PROBE_NONE, true },
	{ "conf/get-config-32-1", c_config, &cfg[4], CHK_PROBE_NONE, true },
	{ "conf/get-config-34-2", c_config, &cfg[5], CHK_PROBE_NONE, true },
	{ "conf/get-config-out-of-range", c_config_range, NULL, CHK_PROBE_NONE, false },
	{ "conf/get-config-oversize", c_config_oversize, NULL, CHK_PROBE_IO, false },
	{ "conf/set-config-capacity-refused", c_set_capacity, NULL,
	  CHK_PROBE_NONE, true },
	{ "conf/set-config-wce", c_set_wce, NULL, CHK_PROBE_NONE, true },
	{ "conf/reply-ack", c_reply_ack, NULL, CHK_PROBE_NONE, false },
	{ "conf/verified-io", c_verified_io, NULL, CHK_PROBE_NONE, true },
	{ "conf/ring-stop-restart", c_stop_restart, NULL, CHK_PROBE_NONE,
	  true },
	{ NULL, NULL, NULL, CHK_PROBE_NONE, false },
};
