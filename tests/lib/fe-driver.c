/* SPDX-License-Identifier: MIT */
/* The test front-end: raw vhost-user messages over a socketpair. */
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fe-driver.h"
#include "internal.h"

int fe_open(struct fe *fe, const struct vhu_backend_opts *opts)
{
	int sv[2];
	memset(fe, 0, sizeof(*fe));
	fe->sock = fe->chan = fe->mem_fd = -1;
	if (vhu_backend_new(opts, &fe->b) < 0)
		return -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		vhu_backend_free(fe->b);
		fe->b = NULL;
		return -1;
	}
	if (vhu_backend_connected_fd(fe->b, sv[1]) < 0) {
		close(sv[0]);
		vhu_backend_free(fe->b);
		fe->b = NULL;
		return -1;
	}
	fe->sock = sv[0];
	return 0;
}

void fe_init(struct fe *fe)
{
	memset(fe, 0, sizeof(*fe));
	fe->sock = fe->chan = fe->mem_fd = -1;
}

void fe_close(struct fe *fe)
{
	if (fe->sock >= 0)
		close(fe->sock);
	if (fe->chan >= 0)
		close(fe->chan);
	if (fe->mem)
		munmap(fe->mem, fe->mem_size);
	if (fe->mem_fd >= 0)
		close(fe->mem_fd);
	vhu_backend_free(fe->b);
	fe_init(fe);
}

int fe_send(struct fe *fe, uint32_t req, uint32_t flags, const void *payload,
	    uint32_t size, const int *fds, unsigned nfds)
{
	struct vhu_msg m;
	if (size > VHU_MAX_PAYLOAD)
		return -EINVAL;
	m.hdr.request = req;
	m.hdr.flags = flags;
	m.hdr.size = size;
	if (size)
		memcpy(&m.p, payload, size);
	return vhu__sock_send(fe->sock, &m, fds, nfds);
}

int fe_process(struct fe *fe)
{
	return vhu_backend_process(fe->b);
}

static int recv_closing_fds(int sock, struct vhu_msg *msg)
{
	int fds[VHU_MAX_FDS];
	unsigned nfds = 0;
	int r = vhu__sock_recv_timeout(sock, msg, fds, &nfds, 0);
	if (r == 1)
		vhu__close_fds(fds, nfds);
	return r;
}

int fe_recv(struct fe *fe, struct vhu_msg *msg)
{
	return recv_closing_fds(fe->sock, msg);
}

int fe_chan_recv(struct fe *fe, struct vhu_msg *msg)
{
	return recv_closing_fds(fe->chan, msg);
}

int fe_call(struct fe *fe, uint32_t req, uint32_t flags, const void *payload,
	    uint32_t size, const int *fds, unsigned nfds, struct vhu_msg *reply)
{
	int r = fe_send(fe, req, flags, payload, size, fds, nfds);
	if (r < 0)
		return r;
	fe_process(fe);
	return fe_recv(fe, reply);
}

int fe_get_u64(struct fe *fe, uint32_t req, uint64_t *v)
{
	struct vhu_msg m;
	if (fe_call(fe, req, VHU_MSG_VERSION, NULL, 0, NULL, 0, &m) != 1)
		return -1;
	if (m.hdr.request != req || m.hdr.flags != 0x5 || m.hdr.size != 8)
		return -1;
	*v = m.p.u64;
	return 0;
}

long long fe_acked(struct fe *fe, uint32_t req, const void *payload,
		   uint32_t size, const int *fds, unsigned nfds)
{
	struct vhu_msg m;
	int r = fe_call(fe, req, VHU_MSG_VERSION | VHU_MSG_NEED_REPLY, payload,
			size, fds, nfds, &m);
	if (r == 0)
		return -2;
	if (r != 1)
		return -1;
	if (m.hdr.request != req || m.hdr.flags != 0x5 || m.hdr.size != 8)
		return -1;
	return (long long)(m.p.u64 > 0x7fffffff ? 0x7fffffff : m.p.u64);
}

bool fe_dropped(struct fe *fe)
{
	struct vhu_msg m;
	/* Anything still queued before the EOF is skipped. */
	for (int i = 0; i < 16; i++) {
		int r = fe_recv(fe, &m);
		if (r == 0 || r == -ECONNRESET)
			return true;
		if (r != 1)
			return false;
	}
	return false;
}

int fe_negotiate(struct fe *fe, uint64_t features, uint64_t pf)
{
	uint64_t offered, poffered;
	if (fe_get_u64(fe, VHU_REQ_GET_FEATURES, &offered) < 0)
		return -1;
	if (offered & VHU_BIT(VHU_F_PROTOCOL_FEATURES)) {
		if (fe_get_u64(fe, VHU_REQ_GET_PROTOCOL_FEATURES, &poffered) < 0)
			return -1;
		pf &= poffered;
		if (fe_send(fe, VHU_REQ_SET_PROTOCOL_FEATURES, 1, &pf, 8, NULL, 0))
			return -1;
		fe_process(fe);
	}
	features &= offered;
	if (fe_send(fe, VHU_REQ_SET_FEATURES, 1, &features, 8, NULL, 0) < 0 ||
	    fe_send(fe, VHU_REQ_SET_OWNER, 1, NULL, 0, NULL, 0) < 0)
		return -1;
	fe_process(fe);
	return fe_dropped(fe) ? -1 : 0;
}

int fe_set_mem(struct fe *fe)
{
	fe->mem_fd = memfd_create("vhu-fe-mem", MFD_CLOEXEC);
	if (fe->mem_fd < 0 || ftruncate(fe->mem_fd, FE_MEM_SIZE) < 0)
		return -1;
	fe->mem_size = FE_MEM_SIZE;
	fe->mem = mmap(NULL, FE_MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
		       fe->mem_fd, 0);
	if (fe->mem == MAP_FAILED) {
		fe->mem = NULL;
		return -1;
	}
	struct vhu_mem_table t = { .nregions = 1 };
	t.regions[0] = (struct vhu_mem_region){
		.guest_phys_addr = 0,
		.memory_size = FE_MEM_SIZE,
		.userspace_addr = FE_UVA,
		.mmap_offset = 0,
	};
	if (fe_send(fe, VHU_REQ_SET_MEM_TABLE, 1, &t, 8 + 32, &fe->mem_fd, 1) < 0)
		return -1;
	fe_process(fe);
	return fe_dropped(fe) ? -1 : 0;
}

int fe_setup_vring(struct fe *fe, unsigned i, unsigned size, int *kick)
{
	struct vhu_vring_state st = { .index = i, .num = size };
	uint64_t gpa = FE_RING_GPA(i);
	struct vhu_vring_addr a = {
		.index = i,
		.desc_user_addr = FE_UVA + gpa,
		.avail_user_addr = FE_UVA + gpa + 0x2000,
		.used_user_addr = FE_UVA + gpa + 0x3000,
	};
	struct vhu_vring_state base = { .index = i, .num = 0 };
	uint64_t u = i;
	int call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	*kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (call < 0 || *kick < 0)
		return -1;
	int r = fe_send(fe, VHU_REQ_SET_VRING_NUM, 1, &st, 8, NULL, 0);
	if (!r)
		r = fe_send(fe, VHU_REQ_SET_VRING_BASE, 1, &base, 8, NULL, 0);
	if (!r)
		r = fe_send(fe, VHU_REQ_SET_VRING_ADDR, 1, &a, sizeof(a), NULL, 0);
	if (!r)
		r = fe_send(fe, VHU_REQ_SET_VRING_CALL, 1, &u, 8, &call, 1);
	if (!r)
		r = fe_send(fe, VHU_REQ_SET_VRING_KICK, 1, &u, 8, kick, 1);
	close(call);
	if (r < 0)
		return -1;
	fe_process(fe);
	return fe_dropped(fe) ? -1 : 0;
}

int fe_enable(struct fe *fe, unsigned i, bool on)
{
	struct vhu_vring_state st = { .index = i, .num = on };
	return fe_acked(fe, VHU_REQ_SET_VRING_ENABLE, &st, 8, NULL, 0) == 0 ? 0 : -1;
}

int fe_set_channel(struct fe *fe)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	long long r = fe_acked(fe, VHU_REQ_SET_BACKEND_REQ_FD, NULL, 0, &sv[1], 1);
	close(sv[1]);
	if (r != 0) {
		close(sv[0]);
		return -1;
	}
	fe->chan = sv[0];
	return 0;
}
