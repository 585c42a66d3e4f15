/* SPDX-License-Identifier: MIT */
/* The request table and the central validator (msg.c), and names.c. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend-internal.h"
#include "internal.h"
#include "msg.h"
#include "tap.h"

#define ALL_PF 0xffffffull

static struct vhu__msg_ctx ctx_all = {
	.virtio_offered = VHU_BIT(VHU_F_PROTOCOL_FEATURES),
	.protocol_acked = ALL_PF,
	.num_queues = 2,
};

static struct vhu_msg mk(uint32_t req, uint32_t flags, uint32_t size)
{
	struct vhu_msg m;
	memset(&m, 0, sizeof(m));
	m.hdr.request = req;
	m.hdr.flags = flags;
	m.hdr.size = size;
	return m;
}

static int val(const struct vhu__msg_ctx *ctx, const struct vhu_msg *m,
	       unsigned nfds)
{
	const struct vhu__req_info *info;
	const char *why;
	unsigned ring;
	/* What the back-end serves, as its dispatcher says. */
	struct vhu__msg_ctx c = *ctx;
	c.served = vhu__be_served();
	return vhu__msg_validate(&c, m, nfds, &info, &ring, &why);
}

static const uint32_t handled[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
				    15, 16, 17, 18, 21, 22, 24, 25, 31, 32, 34,
				    36, 37, 38, 39, 40 };

static bool is_handled(uint32_t id)
{
	for (unsigned i = 0; i < VHU__ARRAY_SIZE(handled); i++)
		if (handled[i] == id)
			return true;
	return false;
}

TEST(every_id_named_and_unknown_ids_absent)
{
	for (uint32_t id = 1; id <= 45; id++) {
		const struct vhu__req_info *in = vhu__req_lookup(id);
		CHECK(in != NULL);
		CHECK(in->name != NULL);
		CHECK(vhu_request_name(id) == in->name);
		CHECK_EQ(vhu__be_handler_for(id) != NULL, is_handled(id));
	}
	CHECK(vhu__req_lookup(0) == NULL);
	CHECK(vhu__req_lookup(46) == NULL);
	CHECK(vhu__req_lookup(9999) == NULL);
	CHECK(vhu__req_lookup(UINT32_MAX) == NULL);
	CHECK(!strcmp(vhu_request_name(24), "GET_CONFIG"));
	CHECK(!strcmp(vhu_request_name(25), "SET_CONFIG"));
	CHECK(!strcmp(vhu_request_name(45), "GET_VRING_BASE_SKIP_DRAIN"));
	CHECK(vhu_request_name(0) == NULL);
}

TEST(table_rules_are_coherent)
{
	for (uint32_t id = 1; id <= 45; id++) {
		const struct vhu__req_info *in = vhu__req_lookup(id);
		/* A ring index is read from the payload: it must be there. */
		if (in->ring != VHU__RING_NONE)
			CHECK(in->payload == VHU__P_EXACT && in->size >= 8);
		if (in->fds == VHU__FD_U64_NOFD)
			CHECK(in->ring == VHU__RING_U64);
		if (in->payload == VHU__P_RANGE)
			CHECK(in->size <= in->size_max &&
			      in->size_max <= VHU_MAX_PAYLOAD);
		if (in->payload == VHU__P_EXACT)
			CHECK(in->size <= VHU_MAX_PAYLOAD);
	}
	/* The specifics the back-end relies on. */
	CHECK_EQ(vhu__req_lookup(24)->gate, VHU__GATE_PROTOCOL);
	CHECK_EQ(vhu__req_lookup(24)->gate_bit, VHU_PF_CONFIG);
	CHECK(vhu__req_lookup(24)->reply);
	CHECK(!vhu__req_lookup(25)->reply);
	CHECK_EQ(vhu__req_lookup(15)->gate, VHU__GATE_VIRTIO);
	CHECK_EQ(vhu__req_lookup(16)->gate_bit, VHU_F_PROTOCOL_FEATURES);
	CHECK_EQ(vhu__req_lookup(5)->fds, VHU__FD_PER_REGION);
	CHECK_EQ(vhu__req_lookup(37)->fds, VHU__FD_ONE);
	CHECK_EQ(vhu__req_lookup(38)->fds, VHU__FD_OPTIONAL);
	CHECK_EQ(vhu__req_lookup(9)->ring, VHU__RING_ADDR);
	CHECK_EQ(vhu__req_lookup(13)->ring, VHU__RING_U64);
	CHECK(vhu__req_lookup(11)->reply);
}

TEST(header_flags)
{
	struct vhu_msg m = mk(1, 1, 0);
	CHECK_EQ(val(&ctx_all, &m, 0), 0);
	m.hdr.flags = 1 | VHU_MSG_NEED_REPLY;
	CHECK_EQ(val(&ctx_all, &m, 0), 0);
	for (uint32_t v = 0; v < 4; v++) {
		if (v == 1)
			continue;
		m.hdr.flags = v;
		CHECK_EQ(val(&ctx_all, &m, 0), -EPROTO);
	}
	m.hdr.flags = 1 | VHU_MSG_REPLY;
	CHECK_EQ(val(&ctx_all, &m, 0), -EPROTO);
	m.hdr.flags = 1 | 0x10;
	CHECK_EQ(val(&ctx_all, &m, 0), -EPROTO);
	m.hdr.flags = 1 | 0x80000000u;
	CHECK_EQ(val(&ctx_all, &m, 0), -EPROTO);
}

TEST(ids_handlers_and_gates)
{
	struct vhu_msg m = mk(0, 1, 0);
	CHECK_EQ(val(&ctx_all, &m, 0), -ENOSYS);
	m.hdr.request = 9999;
	CHECK_EQ(val(&ctx_all, &m, 0), -ENOSYS);
	m.hdr.request = 46;
	CHECK_EQ(val(&ctx_all, &m, 0), -ENOSYS);
	/* Known but not served, even when the gate is open. */
	m = mk(VHU_REQ_SEND_RARP, 1, 8);
	CHECK_EQ(val(&ctx_all, &m, 0), -EOPNOTSUPP);
	m = mk(VHU_REQ_SET_DEVICE_STATE_FD, 1, 8);
	CHECK_EQ(val(&ctx_all, &m, 1), -EOPNOTSUPP);

	struct vhu__msg_ctx none = { .num_queues = 2 };
	m = mk(VHU_REQ_GET_QUEUE_NUM, 1, 0);
	CHECK_EQ(val(&none, &m, 0), -EPERM);
	CHECK_EQ(val(&ctx_all, &m, 0), 0);
	m = mk(VHU_REQ_GET_CONFIG, 1, 12);
	CHECK_EQ(val(&none, &m, 0), -EPERM);
	struct vhu__msg_ctx only_cfg = { .protocol_acked = VHU_BIT(VHU_PF_CONFIG),
					  .num_queues = 1 };
	CHECK_EQ(val(&only_cfg, &m, 0), 0);
	m = mk(VHU_REQ_GET_PROTOCOL_FEATURES, 1, 0);
	CHECK_EQ(val(&none, &m, 0), -EPERM);
	CHECK_EQ(val(&ctx_all, &m, 0), 0);
	/* Ungated requests pass with nothing negotiated. */
	m = mk(VHU_REQ_GET_FEATURES, 1, 0);
	CHECK_EQ(val(&none, &m, 0), 0);
}

TEST(payload_sizes)
{
	struct vhu_msg m = mk(VHU_REQ_GET_FEATURES, 1, 8);
	CHECK_EQ(val(&ctx_all, &m, 0), -EINVAL);
	m = mk(VHU_REQ_SET_FEATURES, 1, 4);
	CHECK_EQ(val(&ctx_all, &m, 0), -EINVAL);
	m = mk(VHU_REQ_SET_FEATURES, 1, 16);
	CHECK_EQ(val(&ctx_all, &m, 0), -EINVAL);
	m = mk(VHU_REQ_SET_FEATURES, 1, 8);
	CHECK_EQ(val(&ctx_all, &m, 0), 0);
	m = mk(VHU_REQ_SET_VRING_ADDR, 1, 39);
	CHECK_EQ(val(&ctx_all, &m, 0), -EINVAL);

	/* SET_CONFIG: 12 + size, size <= 256. */
	m = mk(VHU_REQ_SET_CONFIG, 1, 12 + 4);
	m.p.config.size = 4;
	CHECK_EQ(val(&ctx_all, &m, 0), 0);
	m.p.config.size = 5;
	CHECK_EQ(val(&ctx_all, &m, 0), -EINVAL);
	m = mk(VHU_REQ_SET_CONFIG, 1, 11);
	CHECK_EQ(val(&ctx_all, &m, 0), -EINVAL);
	m = mk(VHU_REQ_SET_CONFIG, 1, 12 + 256);
	m.p.config.size = 256;
	CHECK_EQ(val(&ctx_all, &m, 0), 0);
	m.p.config.size = 0xffffffffu;
	CHECK_EQ(val(&ctx_all, &m, 0), -EINVAL);

	/* GET_CONFIG: the 12-byte head at least. */
	m = mk(VHU_REQ_GET_CONFIG, 1, 11);
	CHECK_EQ(val(&ctx_all, &m, 0), -EINVAL);
	m = mk(VHU_REQ_GET_CONFIG, 1, 12);
	CHECK_EQ(val(&ctx_all, &m, 0), 0);
	m = mk(VHU_REQ_GET_CONFIG, 1, 12 + 256);
	CHECK_EQ(val(&ctx_all, &m, 0), 0);

	/* Memory table: 8 + 32 n, 1 <= n <= 8, n fds. */
	for (uint32_t n = 0; n <= 9; n++) {
		m = mk(VHU_REQ_SET_MEM_TABLE, 1, 8 + 32 * (n > 8 ? 8 : n));
		m.p.mem.nregions = n;
		int want = (n >= 1 && n <= 8) ? 0 : -EINVAL;
		CHECK_EQ(val(&ctx_all, &m, n), want);
	}
	m = mk(VHU_REQ_SET_MEM_TABLE, 1, 8 + 32 * 2);
	m.p.mem.nregions = 1;
	CHECK_EQ(val(&ctx_all, &m, 1), -EINVAL);
	m = mk(VHU_REQ_SET_MEM_TABLE, 1, 4);
	CHECK_EQ(val(&ctx_all, &m, 0), -EINVAL);
}

TEST(ring_indices)
{
	struct vhu_msg m = mk(VHU_REQ_SET_VRING_NUM, 1, 8);
	m.p.state.index = 1;
	CHECK_EQ(val(&ctx_all, &m, 0), 0);
	m.p.state.index = 2; /* == num_queues */
	CHECK_EQ(val(&ctx_all, &m, 0), -ERANGE);
	m.p.state.index = 256;
	CHECK_EQ(val(&ctx_all, &m, 0), -ERANGE);
	/* Would be 0 if truncated to 16 bits before the check. */
	m.p.state.index = 0x10000;
	CHECK_EQ(val(&ctx_all, &m, 0), -ERANGE);

	m = mk(VHU_REQ_SET_VRING_ADDR, 1, 40);
	m.p.addr.index = 0x10001;
	CHECK_EQ(val(&ctx_all, &m, 0), -ERANGE);
	m.p.addr.index = 1;
	CHECK_EQ(val(&ctx_all, &m, 0), 0);

	m = mk(VHU_REQ_SET_VRING_CALL, 1, 8);
	m.p.u64 = 1;
	CHECK_EQ(val(&ctx_all, &m, 1), 0);
	m.p.u64 = 2;
	CHECK_EQ(val(&ctx_all, &m, 1), -ERANGE);
	m.p.u64 = 0x200; /* reserved bit 9 */
	CHECK_EQ(val(&ctx_all, &m, 1), -EINVAL);
	m.p.u64 = 1ull << 63;
	CHECK_EQ(val(&ctx_all, &m, 1), -EINVAL);

	struct vhu__msg_ctx big = ctx_all;
	big.num_queues = 256;
	big.served = vhu__be_served();
	m.p.u64 = 255;
	CHECK_EQ(val(&big, &m, 1), 0);

	const struct vhu__req_info *info;
	const char *why;
	unsigned ring = 99;
	m.p.u64 = 7 | VHU_VRING_NOFD;
	CHECK_EQ(vhu__msg_validate(&big, &m, 0, &info, &ring, &why), 0);
	CHECK_EQ(ring, 7);
	CHECK(info == vhu__req_lookup(VHU_REQ_SET_VRING_CALL));
}

TEST(fd_counts)
{
	struct vhu_msg m = mk(VHU_REQ_GET_FEATURES, 1, 0);
	CHECK_EQ(val(&ctx_all, &m, 3), -EBADF);
	m = mk(VHU_REQ_SET_VRING_KICK, 1, 8);
	m.p.u64 = 0;
	CHECK_EQ(val(&ctx_all, &m, 0), -EBADF);
	CHECK_EQ(val(&ctx_all, &m, 1), 0);
	CHECK_EQ(val(&ctx_all, &m, 2), -EBADF);
	m.p.u64 = VHU_VRING_NOFD;
	CHECK_EQ(val(&ctx_all, &m, 0), 0);
	CHECK_EQ(val(&ctx_all, &m, 1), -EBADF);

	m = mk(VHU_REQ_SET_MEM_TABLE, 1, 8 + 64);
	m.p.mem.nregions = 2;
	CHECK_EQ(val(&ctx_all, &m, 1), -EBADF);
	CHECK_EQ(val(&ctx_all, &m, 2), 0);
	CHECK_EQ(val(&ctx_all, &m, 3), -EBADF);

	m = mk(VHU_REQ_ADD_MEM_REG, 1, 40);
	CHECK_EQ(val(&ctx_all, &m, 0), -EBADF);
	CHECK_EQ(val(&ctx_all, &m, 1), 0);
	m = mk(VHU_REQ_REM_MEM_REG, 1, 40);
	CHECK_EQ(val(&ctx_all, &m, 0), 0);
	CHECK_EQ(val(&ctx_all, &m, 1), 0);
	CHECK_EQ(val(&ctx_all, &m, 2), -EBADF);
	m = mk(VHU_REQ_SET_BACKEND_REQ_FD, 1, 0);
	CHECK_EQ(val(&ctx_all, &m, 0), -EBADF);
	CHECK_EQ(val(&ctx_all, &m, 1), 0);
}

TEST(check_order_flags_before_id_before_gate)
{
	/* Bad flags win over an unknown id; an unknown id over payload. */
	struct vhu_msg m = mk(9999, 0, 5);
	CHECK_EQ(val(&ctx_all, &m, 0), -EPROTO);
	m.hdr.flags = 1;
	CHECK_EQ(val(&ctx_all, &m, 0), -ENOSYS);
	/* The gate is checked before the payload. */
	struct vhu__msg_ctx none = { .num_queues = 1 };
	m = mk(VHU_REQ_SET_CONFIG, 1, 3);
	CHECK_EQ(val(&none, &m, 0), -EPERM);
}

TEST(names)
{
	CHECK(!strcmp(vhu_backend_request_name(2), "CONFIG_CHANGE_MSG"));
	CHECK(!strcmp(vhu_backend_request_name(10), "SHMEM_UNMAP"));
	CHECK(vhu_backend_request_name(0) == NULL);
	CHECK(vhu_backend_request_name(11) == NULL);
	for (unsigned b = 1; b <= 10; b++)
		CHECK(vhu_backend_request_name(b) != NULL);
	for (unsigned b = 0; b <= 23; b++)
		CHECK(vhu_protocol_feature_name(b) != NULL);
	CHECK(vhu_protocol_feature_name(24) == NULL);
	CHECK(!strcmp(vhu_protocol_feature_name(VHU_PF_CONFIG), "CONFIG"));
	CHECK(!strcmp(vhu_protocol_feature_name(VHU_PF_REPLY_ACK), "REPLY_ACK"));
	CHECK(!strcmp(vhu_feature_name(VHU_F_PROTOCOL_FEATURES),
		      "PROTOCOL_FEATURES"));
	CHECK(!strcmp(vhu_feature_name(VHU_F_VERSION_1), "VERSION_1"));
	CHECK(vhu_feature_name(0) == NULL);
	CHECK(vhu_feature_name(63) == NULL);
	/* Every transport bit the library knows, named as its constant. */
	static const struct { unsigned bit; const char *name; } f[] = {
		{ VHU_F_NOTIFY_ON_EMPTY, "NOTIFY_ON_EMPTY" },
		{ VHU_F_LOG_ALL, "LOG_ALL" },
		{ VHU_F_ANY_LAYOUT, "ANY_LAYOUT" },
		{ VHU_F_INDIRECT_DESC, "INDIRECT_DESC" },
		{ VHU_F_EVENT_IDX, "EVENT_IDX" },
		{ VHU_F_PROTOCOL_FEATURES, "PROTOCOL_FEATURES" },
		{ VHU_F_VERSION_1, "VERSION_1" },
		{ VHU_F_ACCESS_PLATFORM, "ACCESS_PLATFORM" },
		{ VHU_F_RING_PACKED, "RING_PACKED" },
		{ VHU_F_IN_ORDER, "IN_ORDER" },
		{ VHU_F_ORDER_PLATFORM, "ORDER_PLATFORM" },
		{ VHU_F_SR_IOV, "SR_IOV" },
		{ VHU_F_NOTIFICATION_DATA, "NOTIFICATION_DATA" },
		{ VHU_F_NOTIF_CONFIG_DATA, "NOTIF_CONFIG_DATA" },
		{ VHU_F_RING_RESET, "RING_RESET" },
		{ VHU_F_ADMIN_VQ, "ADMIN_VQ" },
	};
	for (unsigned i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		const char *n = vhu_feature_name(f[i].bit);
		CHECK(n != NULL && !strcmp(n, f[i].name));
	}
	CHECK_EQ(vhu_feature_name(26) != NULL, 1);
	/* Every bit a back-end offers is named (probe prints no "bit N"). */
	for (unsigned b = 0; b < 64; b++)
		if (VHU__TRANSPORT_OK & VHU_BIT(b))
			CHECK(vhu_feature_name(b) != NULL);
}

/* The default sink's lines start with the program's name. */
static char *stderr_of_log(const char *ident)
{
	static char out[256];
	int p[2];
	if (pipe(p) < 0)
		return NULL;
	fflush(stderr);
	int saved = dup(2);
	dup2(p[1], 2);
	vhu_set_log_fn(NULL, NULL);
	vhu_log_set_ident(ident);
	vhu_log(VHU_LOG_ERROR, "hello %d", 7);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(p[1]);
	ssize_t n = read(p[0], out, sizeof(out) - 1);
	close(p[0]);
	out[n > 0 ? n : 0] = 0;
	return out;
}

TEST(log_ident)
{
	CHECK(!strcmp(stderr_of_log("vhu-rng"), "vhu-rng: error: hello 7\n"));
	/* kept at 63 bytes */
	char longname[100];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[99] = 0;
	char want[128];
	snprintf(want, sizeof(want), "%.63s: error: hello 7\n", longname);
	CHECK(!strcmp(stderr_of_log(longname), want));
	CHECK(!strcmp(stderr_of_log(NULL), "vhu: error: hello 7\n"));
	CHECK(!strcmp(stderr_of_log(""), "vhu: error: hello 7\n"));
}

int main(void)
{
	return tap_run();
}
