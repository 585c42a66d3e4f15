/* SPDX-License-Identifier: MIT */
/*
 * ACCESS_PLATFORM in a back-end session, against the raw test front-end:
 * the option that offers it, what its negotiation requires, IOTLB_MSG
 * (refusals, update, invalidate), rings that wait for their translations
 * (BACKEND_IOTLB_MSG misses) and buffers popped through IOVAs.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <vhu/iov.h>

#include "fe-case.h"
#include "internal.h"

static struct vhu_vq *started_vq, *vqs[2];
static unsigned started;

static void t_started(void *o, struct vhu_vq *vq)
{
	started++;
	started_vq = vq;
	vqs[vhu_vq_index(vq)] = vq;
}

static struct vhu_device_ops ops = { .queue_started = t_started };

#define AP VHU_BIT(VHU_F_ACCESS_PLATFORM)
#define NEEDED_PF (VHU_BIT(VHU_PF_REPLY_ACK) | VHU_BIT(VHU_PF_BACKEND_REQ))

static void open_dev(uint64_t flags)
{
	started = 0;
	started_vq = NULL;
	struct vhu_backend_opts o = {
		.ops = &ops,
		.features = VHU_RING_FEATURES | AP,
		.num_queues = 2,
		.max_queue_size = 256,
		.flags = flags,
	};
	CHECK_EQ(fe_open(&fe, &o), 0);
}

static long long iotlb(uint8_t type, uint64_t iova, uint64_t size,
		       uint64_t uaddr, uint8_t perm)
{
	struct vhu_iotlb_msg m = {
		.iova = iova, .size = size, .uaddr = uaddr, .perm = perm,
		.type = type,
	};
	return fe_acked(&fe, VHU_REQ_IOTLB_MSG, &m, sizeof(m), NULL, 0);
}

TEST(offered_only_with_the_option)
{
	uint64_t f;
	/* the bit in features alone is dropped, as before */
	open_dev(0);
	CHECK_EQ(fe_get_u64(&fe, VHU_REQ_GET_FEATURES, &f), 0);
	CHECK(!(f & AP));
	fe_close(&fe);
	open_dev(VHU_BACKEND_OPT_ACCESS_PLATFORM);
	CHECK_EQ(fe_get_u64(&fe, VHU_REQ_GET_FEATURES, &f), 0);
	CHECK(f & AP);
	uint64_t pf;
	CHECK_EQ(fe_get_u64(&fe, VHU_REQ_GET_PROTOCOL_FEATURES, &pf), 0);
	CHECK_EQ(pf & NEEDED_PF, NEEDED_PF);
	fe_close(&fe);
	/* an unknown option bit is refused */
	struct vhu_backend *b = NULL;
	struct vhu_backend_opts o = { .num_queues = 1, .flags = 1ull << 1 };
	CHECK_EQ(vhu_backend_new(&o, &b), -EINVAL);
	CHECK(b == NULL);
}

TEST(negotiation_needs_reply_ack_and_backend_req)
{
	open_dev(VHU_BACKEND_OPT_ACCESS_PLATFORM);
	uint64_t pf = VHU_BIT(VHU_PF_REPLY_ACK);
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_PROTOCOL_FEATURES, &pf, 8, NULL, 0),
		 0);
	uint64_t f = VHU_BIT(VHU_F_VERSION_1) | AP;
	CHECK(fe_acked(&fe, VHU_REQ_SET_FEATURES, &f, 8, NULL, 0) > 0);
	CHECK(!(vhu_backend_features(fe.b) & AP));
	pf = NEEDED_PF;
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_PROTOCOL_FEATURES, &pf, 8, NULL, 0),
		 0);
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_FEATURES, &f, 8, NULL, 0), 0);
	CHECK(vhu_backend_features(fe.b) & AP);
}

TEST(iotlb_msg_refusals)
{
	open_dev(VHU_BACKEND_OPT_ACCESS_PLATFORM);
	CHECK_EQ(fe_negotiate(&fe, VHU_BIT(VHU_F_VERSION_1), NEEDED_PF), 0);
	/* offered but not negotiated */
	CHECK_EQ(iotlb(VHU_IOTLB_UPDATE, 0x1000, 0x1000, FE_UVA, 3), 1);
	uint64_t f = VHU_BIT(VHU_F_VERSION_1) | AP;
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_FEATURES, &f, 8, NULL, 0), 0);
	CHECK_EQ(iotlb(VHU_IOTLB_UPDATE, 0x1000, 0x1000, FE_UVA, 3), 0);
	/* types the front-end does not send, or that do not exist */
	CHECK_EQ(iotlb(VHU_IOTLB_MISS, 0x1000, 0x1000, FE_UVA, 3), 1);
	CHECK_EQ(iotlb(VHU_IOTLB_ACCESS_FAIL, 0x1000, 0x1000, FE_UVA, 3), 1);
	CHECK_EQ(iotlb(0, 0x1000, 0x1000, FE_UVA, 3), 1);
	CHECK_EQ(iotlb(9, 0x1000, 0x1000, FE_UVA, 3), 1);
	/* permissions, sizes, wrapping ranges */
	CHECK_EQ(iotlb(VHU_IOTLB_UPDATE, 0x2000, 0x1000, FE_UVA, 0), 1);
	CHECK_EQ(iotlb(VHU_IOTLB_UPDATE, 0x2000, 0x1000, FE_UVA, 7), 1);
	CHECK_EQ(iotlb(VHU_IOTLB_UPDATE, 0x2000, 0, FE_UVA, 3), 1);
	CHECK_EQ(iotlb(VHU_IOTLB_UPDATE, UINT64_MAX - 0xfff, 0x2000, FE_UVA, 3),
		 1);
	CHECK_EQ(iotlb(VHU_IOTLB_UPDATE, 0x2000, 0x1000, UINT64_MAX - 0x10, 3),
		 1);
	/* a payload of the wrong size */
	struct vhu_iotlb_msg m = { .type = VHU_IOTLB_INVALIDATE, .size = 1 };
	CHECK_EQ(fe_acked(&fe, VHU_REQ_IOTLB_MSG, &m, sizeof(m) - 1, NULL, 0),
		 1);
	CHECK_EQ(iotlb(VHU_IOTLB_INVALIDATE, 0x1000, 0x1000, 0, 0), 0);
	CHECK(!fe_dropped(&fe));
}

/* Buffers live at IOVA BUF_IOVA + off for guest-physical off. */
#define BUF_IOVA 0x500000000ull
#define BUF_GPA 0x80000ull

static void put_request_q(unsigned q, uint16_t n, uint64_t addr,
			  uint32_t len, uint16_t flags)
{
	uint8_t *ring = fe.mem + FE_RING_GPA(q);
	struct vhu_vring_desc d = { .addr = addr, .len = len, .flags = flags };
	memcpy(ring + 16 * n, &d, sizeof(d));
	uint16_t *avail = (uint16_t *)(ring + 0x2000);
	avail[2 + n] = n;
	__atomic_store_n(&avail[1], (uint16_t)(n + 1), __ATOMIC_RELEASE);
}

static void put_request(uint16_t n, uint64_t addr, uint32_t len,
			uint16_t flags)
{
	put_request_q(0, n, addr, len, flags);
}

TEST(rings_and_buffers_through_the_iotlb)
{
	open_dev(VHU_BACKEND_OPT_ACCESS_PLATFORM);
	CHECK_EQ(fe_negotiate(&fe, VHU_BIT(VHU_F_VERSION_1) | AP, NEEDED_PF), 0);
	CHECK(vhu_backend_features(fe.b) & AP);
	CHECK_EQ(fe_set_channel(&fe), 0);
	CHECK_EQ(fe_set_mem(&fe), 0);
	int kick = -1;
	/* Ring addresses are IOVAs now (here equal to the front-end
	 * addresses fe_setup_vring sends): nothing translates them yet. */
	CHECK_EQ(fe_setup_vring(&fe, 0, 8, &kick), 0);
	CHECK_EQ(started, 0);
	struct vhu_msg m;
	uint64_t ring = FE_UVA + FE_RING_GPA(0);
	CHECK_EQ(fe_chan_recv(&fe, &m), 1);
	CHECK_EQ(m.hdr.request, VHU_BREQ_IOTLB_MSG);
	CHECK_EQ(m.hdr.flags, VHU_MSG_VERSION);
	CHECK_EQ(m.hdr.size, sizeof(struct vhu_iotlb_msg));
	CHECK_EQ(m.p.iotlb.type, VHU_IOTLB_MISS);
	CHECK_EQ(m.p.iotlb.iova, ring);
	CHECK_EQ(m.p.iotlb.perm, VHU_IOTLB_PERM_RO);
	/* the driver's area read, the device's written */
	CHECK_EQ(fe_chan_recv(&fe, &m), 1);
	CHECK_EQ(m.p.iotlb.type, VHU_IOTLB_MISS);
	CHECK_EQ(m.p.iotlb.iova, ring + 0x2000);
	CHECK_EQ(m.p.iotlb.perm, VHU_IOTLB_PERM_RO);
	CHECK_EQ(fe_chan_recv(&fe, &m), 1);
	CHECK_EQ(m.p.iotlb.iova, ring + 0x3000);
	CHECK_EQ(m.p.iotlb.perm, VHU_IOTLB_PERM_WO);
	/* an update that leaves a ring area out starts nothing, and asks
	 * for what is still missing */
	CHECK_EQ(iotlb(VHU_IOTLB_UPDATE, ring, 0x3000, ring, 3), 0);
	CHECK_EQ(started, 0);
	CHECK_EQ(fe_chan_recv(&fe, &m), 1);
	CHECK_EQ(m.p.iotlb.iova, ring + 0x3000);
	CHECK_EQ(fe_chan_recv(&fe, &m), -EAGAIN);
	/* the front-end answers with the rings' pages, the queue starts */
	CHECK_EQ(iotlb(VHU_IOTLB_UPDATE, ring, 0x4000, ring, 3), 0);
	CHECK_EQ(started, 1);
	struct vhu_vq *vq = started_vq;
	CHECK(vq != NULL);

	/* a buffer at an IOVA mapped read-only */
	memcpy(fe.mem + BUF_GPA, "through", 7);
	CHECK_EQ(iotlb(VHU_IOTLB_UPDATE, BUF_IOVA, 0x1000, FE_UVA + BUF_GPA,
		       VHU_IOTLB_PERM_RO), 0);
	put_request(0, BUF_IOVA, 7, 0);
	struct vhu_vq_elem el;
	struct iovec iov[4];
	CHECK_EQ(vhu_vq_pop(vq, &el, iov, 4), 1);
	CHECK_EQ(el.n_out, 1);
	CHECK_EQ(iov[0].iov_len, 7);
	CHECK_MEM(iov[0].iov_base, "through", 7);
	vhu_vq_push(vq, &el, 0);

	/* the device may not write into it */
	put_request(1, BUF_IOVA, 7, VHU_VRING_DESC_F_WRITE);
	CHECK_EQ(vhu_vq_pop(vq, &el, iov, 4), -EIO);
	CHECK(vhu_vq_is_broken(vq));
	CHECK_MEM(fe.mem + BUF_GPA, "through", 7);
	close(kick);
}

TEST(missing_buffer_translation_asked_then_served)
{
	open_dev(VHU_BACKEND_OPT_ACCESS_PLATFORM);
	CHECK_EQ(fe_negotiate(&fe, VHU_BIT(VHU_F_VERSION_1) | AP, NEEDED_PF), 0);
	CHECK_EQ(fe_set_channel(&fe), 0);
	CHECK_EQ(fe_set_mem(&fe), 0);
	uint64_t ring = FE_UVA + FE_RING_GPA(0);
	/* translations first: the queue starts at once, no miss */
	CHECK_EQ(iotlb(VHU_IOTLB_UPDATE, ring, 0x4000, ring, 3), 0);
	CHECK_EQ(iotlb(VHU_IOTLB_UPDATE, BUF_IOVA, 0x2000, FE_UVA + BUF_GPA, 3),
		 0);
	int kick = -1;
	CHECK_EQ(fe_setup_vring(&fe, 0, 8, &kick), 0);
	CHECK_EQ(started, 1);
	struct vhu_msg m;
	CHECK_EQ(fe_chan_recv(&fe, &m), -EAGAIN);
	struct vhu_vq *vq = started_vq;
	struct vhu_vq_elem el;
	struct iovec iov[4];
	/* a buffer over two IOTLB pages of which the second is gone */
	CHECK_EQ(iotlb(VHU_IOTLB_INVALIDATE, BUF_IOVA + 0x1000, 0x1000, 0, 0),
		 0);
	put_request(0, BUF_IOVA + 0xff0, 0x20, VHU_VRING_DESC_F_WRITE);
	CHECK_EQ(vhu_vq_pop(vq, &el, iov, 4), 0);
	CHECK(!vhu_vq_is_broken(vq));
	/* the session sends the miss on the back-end channel */
	fe_process(&fe);
	CHECK_EQ(fe_chan_recv(&fe, &m), 1);
	CHECK_EQ(m.hdr.request, VHU_BREQ_IOTLB_MSG);
	CHECK_EQ(m.p.iotlb.type, VHU_IOTLB_MISS);
	CHECK_EQ(m.p.iotlb.iova, BUF_IOVA + 0x1000);
	CHECK_EQ(m.p.iotlb.perm, VHU_IOTLB_PERM_WO);
	CHECK_EQ(fe_chan_recv(&fe, &m), -EAGAIN);
	/* a driver kick meanwhile: no second miss */
	CHECK_EQ(vhu_vq_pop(vq, &el, iov, 4), 0);
	fe_process(&fe);
	CHECK_EQ(fe_chan_recv(&fe, &m), -EAGAIN);
	/* the answer kicks the queue (the front-end's end of the kick fd
	 * is the same eventfd), and the request pops whole */
	uint64_t v;
	while (read(kick, &v, 8) == 8)
		;
	CHECK_EQ(iotlb(VHU_IOTLB_UPDATE, BUF_IOVA + 0x1000, 0x1000,
		       FE_UVA + BUF_GPA + 0x1000, 3), 0);
	CHECK_EQ(read(kick, &v, 8), 8);
	CHECK_EQ(vhu_vq_pop(vq, &el, iov, 4), 1);
	CHECK_EQ(el.n_in, 1);
	CHECK_EQ(iov[0].iov_len, 0x20);
	memset(iov[0].iov_base, 'w', 0x20);
	char want[0x20];
	memset(want, 'w', sizeof(want));
	CHECK_MEM(fe.mem + BUF_GPA + 0xff0, want, sizeof(want));
	close(kick);
}

TEST(unanswered_miss_stalls_only_its_queue)
{
	open_dev(VHU_BACKEND_OPT_ACCESS_PLATFORM);
	CHECK_EQ(fe_negotiate(&fe, VHU_BIT(VHU_F_VERSION_1) | AP, NEEDED_PF), 0);
	CHECK_EQ(fe_set_channel(&fe), 0);
	CHECK_EQ(fe_set_mem(&fe), 0);
	for (unsigned q = 0; q < 2; q++) {
		uint64_t ring = FE_UVA + FE_RING_GPA(q);
		CHECK_EQ(iotlb(VHU_IOTLB_UPDATE, ring, 0x4000, ring, 3), 0);
	}
	CHECK_EQ(iotlb(VHU_IOTLB_UPDATE, BUF_IOVA, 0x1000, FE_UVA + BUF_GPA, 3),
		 0);
	int kick[2] = { -1, -1 };
	CHECK_EQ(fe_setup_vring(&fe, 0, 8, &kick[0]), 0);
	CHECK_EQ(fe_setup_vring(&fe, 1, 8, &kick[1]), 0);
	CHECK_EQ(started, 2);
	struct vhu_vq_elem el;
	struct iovec iov[4];
	struct vhu_msg m;
	/* queue 0 misses; the front-end never answers */
	put_request_q(0, 0, BUF_IOVA + 0x5000, 16, 0);
	CHECK_EQ(vhu_vq_pop(vqs[0], &el, iov, 4), 0);
	fe_process(&fe);
	CHECK_EQ(fe_chan_recv(&fe, &m), 1);
	CHECK_EQ(m.p.iotlb.iova, BUF_IOVA + 0x5000);
	CHECK(!vhu_vq_has_work(vqs[0]));
	/* queue 1 and the session go on */
	memcpy(fe.mem + BUF_GPA, "q1", 2);
	put_request_q(1, 0, BUF_IOVA, 2, 0);
	CHECK_EQ(vhu_vq_pop(vqs[1], &el, iov, 4), 1);
	CHECK_MEM(iov[0].iov_base, "q1", 2);
	vhu_vq_push(vqs[1], &el, 0);
	uint64_t f;
	CHECK_EQ(fe_get_u64(&fe, VHU_REQ_GET_FEATURES, &f), 0);
	/* an update for something else leaves queue 0 waiting */
	CHECK_EQ(iotlb(VHU_IOTLB_UPDATE, BUF_IOVA + 0x9000, 0x1000,
		       FE_UVA + BUF_GPA, 3), 0);
	CHECK_EQ(vhu_vq_pop(vqs[0], &el, iov, 4), 0);
	CHECK(!vhu_vq_is_broken(vqs[0]));
	/* the disconnect (the after-hook) cleans up: no fd left behind */
	close(kick[0]);
	close(kick[1]);
}

int main(void)
{
	tap_before_each = fe_case_before;
	tap_after_each = fe_case_after;
	return tap_run();
}
