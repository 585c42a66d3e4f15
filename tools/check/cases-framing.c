/* SPDX-License-Identifier: MIT */
/*
 * Hostile single messages: framing (vhost-user.rst "Header": size, version
 * bits, REPLY flag, reserved bits, ids, fds) and device configuration
 * requests (the seed: offset + size bounds, size <= 256, read-only
 * fields).  Each runs on a fresh connection.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "check.h"

#define ACK UINT32_MAX
#define SAME UINT32_MAX
#define F1 VHU_MSG_VERSION
#define FACK (VHU_MSG_VERSION | VHU_MSG_NEED_REPLY)

struct msg_case {
	enum chk_level level;
	uint32_t req, flags, size; /* header as sent */
	uint32_t send_len;         /* payload bytes sent (SAME: size) */
	unsigned nfds;             /* eventfds attached */
	uint32_t body;             /* ACK, or the size of a valid reply */
	enum chk_expect exp;
	bool halfclose;            /* shutdown(SHUT_WR) after sending */
	uint8_t payload[24];       /* first bytes of the payload */
	uint8_t hdr_len;           /* header bytes sent, 0: all 12 */
};

static int c_msg(struct chk_ctx *c, const void *arg, char *why)
{
	const struct msg_case *m = arg;
	struct chk_sess s;
	static uint8_t buf[sizeof(struct vhu_msg_hdr) + 4096];
	int fds[16];
	unsigned n = 0;

	if (chk_fresh(c, &s, m->level, why) < 0)
		return chk_done(&s, -1);
	uint32_t len = m->send_len == SAME ? m->size : m->send_len;
	if (len > sizeof(buf) - 12)
		len = sizeof(buf) - 12;
	struct vhu_msg_hdr h = { m->req, m->flags, m->size };
	memset(buf, 0, sizeof(buf));
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + 12, m->payload, len < sizeof(m->payload) ?
	       len : sizeof(m->payload));
	for (; n < m->nfds && n < 16; n++) {
		fds[n] = eventfd(0, EFD_CLOEXEC);
		if (fds[n] < 0) {
			vhu__close_fds(fds, n);
			return chk_done(&s, chk_fail(why, "eventfd: %s",
						     strerror(errno)));
		}
	}
	size_t total = m->hdr_len ? m->hdr_len : 12 + len;
	int r = chk_send_raw(s.fd, buf, total, fds, n);
	vhu__close_fds(fds, n);
	if (r < 0)
		return chk_done(&s, r == -EPIPE || r == -ECONNRESET ?
				chk_pass(why, "connection dropped while sending") :
				chk_fail(why, "send: %s", strerror(-r)));
	if (m->halfclose) {
		shutdown(s.fd, SHUT_WR);
		return chk_done(&s, chk_judge_eof(&s, why));
	}
	return chk_done(&s, chk_judge(&s, m->req, m->body, m->exp, why));
}

#define U32LE(v) (uint8_t)(v), (uint8_t)((v) >> 8), (uint8_t)((v) >> 16),    \
		 (uint8_t)((v) >> 24)

static const struct msg_case f_over_max = {
	CHK_CONNECTED, VHU_REQ_GET_FEATURES, F1, 4096, SAME, 0, 8,
	CHK_EXPECT_REJECT, false, { 0 }, 0 };
static const struct msg_case f_huge = {
	CHK_CONNECTED, VHU_REQ_SET_FEATURES, FACK, 0xffffffffu, 0, 0, ACK,
	CHK_EXPECT_REJECT, false, { 0 }, 0 };
static const struct msg_case f_trunc_hdr = {
	CHK_CONNECTED, VHU_REQ_GET_FEATURES, F1, 0, 0, 0, 8,
	CHK_EXPECT_REJECT, true, { 0 }, 6 };
static const struct msg_case f_trunc_payload = {
	CHK_NEGOTIATED, VHU_REQ_SET_VRING_NUM, FACK, 8, 4, 0, ACK,
	CHK_EXPECT_REJECT, true, { 0 }, 0 };
static const struct msg_case f_ver0 = {
	CHK_CONNECTED, VHU_REQ_GET_FEATURES, 0, 0, SAME, 0, 8,
	CHK_EXPECT_REJECT, false, { 0 }, 0 };
static const struct msg_case f_ver2 = {
	CHK_CONNECTED, VHU_REQ_GET_FEATURES, 2, 0, SAME, 0, 8,
	CHK_EXPECT_REJECT, false, { 0 }, 0 };
static const struct msg_case f_ver3 = {
	CHK_CONNECTED, VHU_REQ_GET_FEATURES, 3, 0, SAME, 0, 8,
	CHK_EXPECT_REJECT, false, { 0 }, 0 };
static const struct msg_case f_reply_flag = {
	CHK_CONNECTED, VHU_REQ_GET_FEATURES, VHU_MSG_REPLY | F1, 0, SAME, 0, 8,
	CHK_EXPECT_REJECT, false, { 0 }, 0 };
static const struct msg_case f_unknown_flags = {
	CHK_CONNECTED, VHU_REQ_GET_FEATURES, F1 | 0x100 | 0x80000000u, 0, SAME,
	0, 8, CHK_EXPECT_ANY, false, { 0 }, 0 };
static const struct msg_case f_need_reply_get = {
	CHK_CONNECTED, VHU_REQ_GET_FEATURES, FACK, 0, SAME, 0, 8,
	CHK_EXPECT_ANY, false, { 0 }, 0 };
static const struct msg_case f_id0 = {
	CHK_NEGOTIATED, 0, FACK, 0, SAME, 0, ACK, CHK_EXPECT_REJECT, false,
	{ 0 }, 0 };
static const struct msg_case f_id46 = {
	CHK_NEGOTIATED, 46, FACK, 0, SAME, 0, ACK, CHK_EXPECT_REJECT, false,
	{ 0 }, 0 };
static const struct msg_case f_id9999 = {
	CHK_NEGOTIATED, 9999, FACK, 8, SAME, 0, ACK, CHK_EXPECT_REJECT, false,
	{ 0 }, 0 };
static const struct msg_case f_id_max = {
	CHK_NEGOTIATED, 0xffffffffu, FACK, 0, SAME, 0, ACK, CHK_EXPECT_REJECT,
	false, { 0 }, 0 };
static const struct msg_case f_extra_fd = {
	CHK_CONNECTED, VHU_REQ_GET_FEATURES, F1, 0, SAME, 1, 8,
	CHK_EXPECT_ANY, false, { 0 }, 0 };
static const struct msg_case f_nine_fds = {
	CHK_CONNECTED, VHU_REQ_GET_FEATURES, F1, 0, SAME, 9, 8,
	CHK_EXPECT_ANY, false, { 0 }, 0 };
static const struct msg_case f_sixteen_fds = {
	CHK_NEGOTIATED, VHU_REQ_SET_MEM_TABLE, FACK, 8, SAME, 16, ACK,
	CHK_EXPECT_REJECT, false, { 1 }, 0 };
static const struct msg_case f_fd_on_set_features = {
	CHK_NEGOTIATED, VHU_REQ_SET_OWNER, FACK, 0, SAME, 2, ACK,
	CHK_EXPECT_ANY, false, { 0 }, 0 };
static const struct msg_case f_u64_short = {
	CHK_NEGOTIATED, VHU_REQ_SET_FEATURES, FACK, 4, SAME, 0, ACK,
	CHK_EXPECT_REJECT, false, { 0 }, 0 };
static const struct msg_case f_u64_long = {
	CHK_NEGOTIATED, VHU_REQ_SET_FEATURES, FACK, 16, SAME, 0, ACK,
	CHK_EXPECT_ANY, false, { 0 }, 0 };
static const struct msg_case f_get_with_payload = {
	CHK_CONNECTED, VHU_REQ_GET_FEATURES, F1, 8, SAME, 0, 8,
	CHK_EXPECT_ANY, false, { 0 }, 0 };
static const struct msg_case f_state_short = {
	CHK_NEGOTIATED, VHU_REQ_SET_VRING_NUM, FACK, 4, SAME, 0, ACK,
	CHK_EXPECT_REJECT, false, { 0 }, 0 };
static const struct msg_case f_pf_all = {
	CHK_CONNECTED, VHU_REQ_SET_PROTOCOL_FEATURES, FACK, 8, SAME, 0, ACK,
	CHK_EXPECT_ANY, false,
	{ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, 0 };
static const struct msg_case f_features_all = {
	CHK_NEGOTIATED, VHU_REQ_SET_FEATURES, FACK, 8, SAME, 0, ACK,
	CHK_EXPECT_ANY, false,
	{ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, 0 };

#define HOSTILE(name, a) { name, c_msg, &a, CHK_PROBE_IO }

const struct chk_case chk_cases_framing[] = {
	HOSTILE("framing/size-over-max", f_over_max),
	HOSTILE("framing/size-0xffffffff", f_huge),
	HOSTILE("framing/truncated-header", f_trunc_hdr),
	HOSTILE("framing/truncated-payload", f_trunc_payload),
	HOSTILE("framing/version-0", f_ver0),
	HOSTILE("framing/version-2", f_ver2),
	HOSTILE("framing/version-3", f_ver3),
	HOSTILE("framing/reply-flag-on-request", f_reply_flag),
	HOSTILE("framing/unknown-flag-bits", f_unknown_flags),
	HOSTILE("framing/need-reply-on-get", f_need_reply_get),
	HOSTILE("framing/unknown-id-0", f_id0),
	HOSTILE("framing/unknown-id-46", f_id46),
	HOSTILE("framing/unknown-id-9999", f_id9999),
	HOSTILE("framing/unknown-id-0xffffffff", f_id_max),
	HOSTILE("framing/extra-fd-on-get-features", f_extra_fd),
	HOSTILE("framing/nine-fds", f_nine_fds),
	HOSTILE("framing/sixteen-fds-on-mem-table", f_sixteen_fds),
	HOSTILE("framing/fds-on-set-owner", f_fd_on_set_features),
	HOSTILE("framing/u64-payload-short", f_u64_short),
	HOSTILE("framing/u64-payload-long", f_u64_long),
	HOSTILE("framing/payload-on-get-features", f_get_with_payload),
	HOSTILE("framing/vring-state-short", f_state_short),
	HOSTILE("framing/protocol-features-all-bits", f_pf_all),
	HOSTILE("framing/features-all-bits", f_features_all),
	{ NULL, NULL, NULL, CHK_PROBE_NONE },
};

/* ------------------------------------------------------------- config */

#define CFG(off, size, flags) { U32LE(off), U32LE(size), U32LE(flags) }

static const struct msg_case g_size0 = {
	CHK_NEGOTIATED, VHU_REQ_GET_CONFIG, F1, 12, SAME, 0, 12,
	CHK_EXPECT_ANY, false, CFG(0, 0, 0), 0 };
static const struct msg_case g_size257 = {
	CHK_NEGOTIATED, VHU_REQ_GET_CONFIG, F1, 12 + 257, SAME, 0, 12 + 257,
	CHK_EXPECT_REJECT, false, CFG(0, 257, 0), 0 };
static const struct msg_case g_off_max = {
	CHK_NEGOTIATED, VHU_REQ_GET_CONFIG, F1, 12 + 4, SAME, 0, 12 + 4,
	CHK_EXPECT_REJECT, false, CFG(0xffffffffu, 4, 0), 0 };
static const struct msg_case g_off_ovf = {
	CHK_NEGOTIATED, VHU_REQ_GET_CONFIG, F1, 12 + 8, SAME, 0, 12 + 8,
	CHK_EXPECT_REJECT, false, CFG(0xfffffffcu, 8, 0), 0 };
static const struct msg_case g_size_ovf = {
	CHK_NEGOTIATED, VHU_REQ_GET_CONFIG, F1, 12 + 8, SAME, 0, 12 + 8,
	CHK_EXPECT_REJECT, false, CFG(8, 0xfffffffcu, 0), 0 };
static const struct msg_case g_size_mismatch = {
	CHK_NEGOTIATED, VHU_REQ_GET_CONFIG, F1, 12 + 4, SAME, 0, 12 + 200,
	CHK_EXPECT_REJECT, false, CFG(0, 200, 0), 0 };
static const struct msg_case g_short_hdr = {
	CHK_NEGOTIATED, VHU_REQ_GET_CONFIG, F1, 8, SAME, 0, 12,
	CHK_EXPECT_REJECT, false, CFG(0, 0, 0), 0 };
static const struct msg_case g_end = {
	CHK_NEGOTIATED, VHU_REQ_GET_CONFIG, F1, 12 + 16, SAME, 0, 12 + 16,
	CHK_EXPECT_REJECT, false, CFG(250, 16, 0), 0 };
static const struct msg_case s_capacity = {
	CHK_NEGOTIATED, VHU_REQ_SET_CONFIG, FACK, 12 + 8, SAME, 0, ACK,
	CHK_EXPECT_REJECT, false, { U32LE(0), U32LE(8), U32LE(0), 1, 2, 3 }, 0 };
static const struct msg_case s_size257 = {
	CHK_NEGOTIATED, VHU_REQ_SET_CONFIG, FACK, 12 + 257, SAME, 0, ACK,
	CHK_EXPECT_REJECT, false, CFG(32, 257, 0), 0 };
static const struct msg_case s_beyond = {
	CHK_NEGOTIATED, VHU_REQ_SET_CONFIG, FACK, 12 + 16, SAME, 0, ACK,
	CHK_EXPECT_REJECT, false, CFG(250, 16, 0), 0 };
static const struct msg_case s_off_max = {
	CHK_NEGOTIATED, VHU_REQ_SET_CONFIG, FACK, 12 + 1, SAME, 0, ACK,
	CHK_EXPECT_REJECT, false, CFG(0xffffffffu, 1, 0), 0 };
static const struct msg_case s_short_payload = {
	CHK_NEGOTIATED, VHU_REQ_SET_CONFIG, FACK, 12 + 1, SAME, 0, ACK,
	CHK_EXPECT_REJECT, false, CFG(32, 8, 0), 0 };
static const struct msg_case s_short_hdr = {
	CHK_NEGOTIATED, VHU_REQ_SET_CONFIG, FACK, 6, SAME, 0, ACK,
	CHK_EXPECT_REJECT, false, CFG(32, 1, 0), 0 };
static const struct msg_case s_num_queues = {
	CHK_NEGOTIATED, VHU_REQ_SET_CONFIG, FACK, 12 + 2, SAME, 0, ACK,
	CHK_EXPECT_REJECT, false, { U32LE(34), U32LE(2), U32LE(0), 0x40 }, 0 };
static const struct msg_case s_flags_unknown = {
	CHK_NEGOTIATED, VHU_REQ_SET_CONFIG, FACK, 12 + 1, SAME, 0, ACK,
	CHK_EXPECT_ANY, false, CFG(32, 1, 0xff), 0 };

const struct chk_case chk_cases_config[] = {
	HOSTILE("config/get-size-0", g_size0),
	HOSTILE("config/get-size-257", g_size257),
	HOSTILE("config/get-offset-0xffffffff", g_off_max),
	HOSTILE("config/get-offset-size-overflow", g_off_ovf),
	HOSTILE("config/get-size-overflow", g_size_ovf),
	HOSTILE("config/get-size-exceeds-payload", g_size_mismatch),
	HOSTILE("config/get-short-header", g_short_hdr),
	HOSTILE("config/get-beyond-end", g_end),
	HOSTILE("config/set-capacity-flags-0", s_capacity),
	HOSTILE("config/set-size-257", s_size257),
	HOSTILE("config/set-beyond-end", s_beyond),
	HOSTILE("config/set-offset-0xffffffff", s_off_max),
	HOSTILE("config/set-size-exceeds-payload", s_short_payload),
	HOSTILE("config/set-short-header", s_short_hdr),
	HOSTILE("config/set-num-queues", s_num_queues),
	HOSTILE("config/set-unknown-flags", s_flags_unknown),
	{ NULL, NULL, NULL, CHK_PROBE_NONE },
};

/* ------------------------------------------------- other requests */
/*
 * Requests the checker never negotiates the feature for (they must be
 * refused), and body-less control requests sent with broken fds.  Notes
 * section 6: inflight fds leaked by repeated requests, queue counts beyond
 * the rings, fds on requests that take none.
 */
#define INFL(nq) { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,      \
		   (uint8_t)(nq), (uint8_t)((nq) >> 8), 128, 0 }

static const struct msg_case q_get_inflight = {
	CHK_NEGOTIATED, VHU_REQ_GET_INFLIGHT_FD, F1, 20, SAME, 0, 20,
	CHK_EXPECT_REJECT, false, INFL(1), 0 };
static const struct msg_case q_set_inflight = {
	CHK_NEGOTIATED, VHU_REQ_SET_INFLIGHT_FD, FACK, 20, SAME, 1, ACK,
	CHK_EXPECT_REJECT, false, INFL(1000), 0 };
static const struct msg_case q_log_base_nofd = {
	CHK_NEGOTIATED, VHU_REQ_SET_LOG_BASE, FACK, 16, SAME, 0, ACK,
	CHK_EXPECT_REJECT, false, { 0, 0x10 }, 0 };
static const struct msg_case q_log_fd = {
	CHK_NEGOTIATED, VHU_REQ_SET_LOG_FD, FACK, 0, SAME, 1, ACK,
	CHK_EXPECT_ANY, false, { 0 }, 0 };
static const struct msg_case q_breq_nofd = {
	CHK_CONNECTED, VHU_REQ_SET_BACKEND_REQ_FD, FACK, 0, SAME, 0, ACK,
	CHK_EXPECT_REJECT, false, { 0 }, 0 };
static const struct msg_case q_breq_eventfd = {
	CHK_NEGOTIATED, VHU_REQ_SET_BACKEND_REQ_FD, FACK, 0, SAME, 1, ACK,
	CHK_EXPECT_ANY, false, { 0 }, 0 };
static const struct msg_case q_reset_owner = {
	CHK_RUNNING, VHU_REQ_RESET_OWNER, FACK, 0, SAME, 0, ACK,
	CHK_EXPECT_ANY, false, { 0 }, 0 };
static const struct msg_case q_reset_device = {
	CHK_RUNNING, VHU_REQ_RESET_DEVICE, FACK, 0, SAME, 0, ACK,
	CHK_EXPECT_ANY, false, { 0 }, 0 };
static const struct msg_case q_set_status = {
	CHK_RUNNING, VHU_REQ_SET_STATUS, FACK, 8, SAME, 0, ACK,
	CHK_EXPECT_ANY, false, { 0xff, 0xff, 0xff, 0xff }, 0 };
static const struct msg_case q_iotlb = {
	CHK_MAPPED, VHU_REQ_IOTLB_MSG, FACK, 64, SAME, 0, ACK,
	CHK_EXPECT_REJECT, false, { 0xff, 0xff }, 0 };
static const struct msg_case q_postcopy = {
	CHK_MAPPED, VHU_REQ_POSTCOPY_ADVISE, FACK, 0, SAME, 0, ACK,
	CHK_EXPECT_REJECT, false, { 0 }, 0 };
static const struct msg_case q_gpu_socket = {
	CHK_NEGOTIATED, VHU_REQ_GPU_SET_SOCKET, FACK, 0, SAME, 1, ACK,
	CHK_EXPECT_REJECT, false, { 0 }, 0 };
static const struct msg_case q_device_state = {
	CHK_NEGOTIATED, VHU_REQ_SET_DEVICE_STATE_FD, FACK, 8, SAME, 1, ACK,
	CHK_EXPECT_REJECT, false, { 0 }, 0 };
static const struct msg_case q_get_base_running = {
	CHK_RUNNING, VHU_REQ_GET_VRING_BASE, F1, 8, SAME, 0, 8,
	CHK_EXPECT_ANY, false, { 0 }, 0 };

const struct chk_case chk_cases_request[] = {
	HOSTILE("request/get-inflight-fd-not-negotiated", q_get_inflight),
	HOSTILE("request/set-inflight-fd-1000-queues", q_set_inflight),
	HOSTILE("request/set-log-base-without-fd", q_log_base_nofd),
	HOSTILE("request/set-log-fd", q_log_fd),
	HOSTILE("request/backend-req-fd-without-fd", q_breq_nofd),
	HOSTILE("request/backend-req-fd-not-a-socket", q_breq_eventfd),
	HOSTILE("request/reset-owner-while-running", q_reset_owner),
	HOSTILE("request/reset-device-while-running", q_reset_device),
	HOSTILE("request/set-status-all-bits", q_set_status),
	HOSTILE("request/iotlb-msg-not-negotiated", q_iotlb),
	HOSTILE("request/postcopy-advise-not-negotiated", q_postcopy),
	HOSTILE("request/gpu-set-socket", q_gpu_socket),
	HOSTILE("request/device-state-fd-not-negotiated", q_device_state),
	HOSTILE("request/get-vring-base-while-running", q_get_base_running),
	{ NULL, NULL, NULL, CHK_PROBE_NONE },
};
