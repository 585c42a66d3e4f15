/* SPDX-License-Identifier: MIT */
/*
 * Inflight I/O tracking (vhost-user.rst "Inflight I/O tracking"):
 * GET_INFLIGHT_FD / SET_INFLIGHT_FD over a real back-end session, the
 * marks the split ring leaves in the region, and a back-end restart that
 * resubmits what the previous session popped and never completed.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"
#include "fe-driver.h"
#include "internal.h"

#define QSIZE 64u
#define NQ 2u

static struct vhu_vq *vqs[NQ];
static void t_started(void *o, struct vhu_vq *vq) { vqs[vhu_vq_index(vq)] = vq; }

/* A device that completes, when its queue stops, the request it still
 * holds (stop_id >= 0), as vhu-blk does; stop_probe >= 0: the front-end's
 * end of the connection, looked at when that happens. */
static int stop_id = -1, stop_probe = -1;
static bool stop_saw_close;
static void t_stopped(void *o, struct vhu_vq *vq)
{
	vqs[vhu_vq_index(vq)] = NULL;
	if (stop_id < 0 || vhu_vq_index(vq) != 0)
		return;
	if (stop_probe >= 0) {
		struct pollfd p = { .fd = stop_probe, .events = POLLRDHUP };
		stop_saw_close = poll(&p, 1, 0) == 1 &&
				 (p.revents & (POLLRDHUP | POLLHUP));
	}
	struct vhu_vq_elem e = { .id = (uint16_t)stop_id };
	vhu_vq_push(vq, &e, 0);
	vhu_vq_notify(vq);
	stop_id = -1;
}
static struct vhu_device_ops ops = {
	.queue_started = t_started,
	.queue_stopped = t_stopped,
};

static struct vhu_backend_opts opts(void)
{
	struct vhu_backend_opts o = {
		.ops = &ops,
		.features = VHU_BIT(VHU_F_VERSION_1),
		.protocol_features = VHU_BIT(VHU_PF_INFLIGHT_SHMFD),
		.num_queues = NQ,
		.max_queue_size = 256,
	};
	return o;
}

static size_t page_round(size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	return (n + pg - 1) / pg * pg;
}

static int session_with(struct fe *fe, uint64_t extra)
{
	struct vhu_backend_opts o = opts();
	o.features |= extra;
	if (fe_open(fe, &o) < 0)
		return -1;
	if (fe_negotiate(fe, VHU_BIT(VHU_F_VERSION_1) | extra |
				     VHU_BIT(VHU_F_PROTOCOL_FEATURES),
			 VHU_BIT(VHU_PF_INFLIGHT_SHMFD) |
				 VHU_BIT(VHU_PF_REPLY_ACK)) < 0)
		return -1;
	return fe_set_mem(fe);
}

static int session(struct fe *fe) { return session_with(fe, 0); }

/* GET_INFLIGHT_FD: the reply and the fds that came with it. */
static int get_inflight(struct fe *fe, unsigned nq, unsigned qs,
			struct vhu_inflight *out, int *fd)
{
	struct vhu_inflight in = { 0, 0, (uint16_t)nq, (uint16_t)qs };
	struct vhu_msg m;
	int fds[VHU_MAX_FDS];
	unsigned nfds = 0;

	*fd = -1;
	if (fe_send(fe, VHU_REQ_GET_INFLIGHT_FD, VHU_MSG_VERSION, &in,
		    sizeof(in), NULL, 0) < 0)
		return -1;
	fe_process(fe);
	if (vhu__sock_recv_timeout(fe->sock, &m, fds, &nfds, 1000) != 1)
		return -1;
	if (m.hdr.request != VHU_REQ_GET_INFLIGHT_FD || m.hdr.flags != 0x5 ||
	    m.hdr.size != sizeof(*out)) {
		vhu__close_fds(fds, nfds);
		return -1;
	}
	*out = m.p.inflight;
	if (nfds)
		*fd = fds[0];
	for (unsigned i = 1; i < nfds; i++)
		close(fds[i]);
	return (int)nfds;
}

/* GET_INFLIGHT_FD with QEMU's 24-byte payload for nq queues of qs: a
 * 24-byte reply with one fd, which lands in *fd. */
static void get_inflight24(struct fe *fe, unsigned nq, unsigned qs,
			   struct vhu_msg *m, int *fd)
{
	uint8_t in[24] = { 0 };
	int fds[VHU_MAX_FDS];
	unsigned nfds = 0;

	in[16] = (uint8_t)nq;  /* num_queues */
	in[18] = (uint8_t)qs;  /* queue_size */
	CHECK_EQ(fe_send(fe, VHU_REQ_GET_INFLIGHT_FD, VHU_MSG_VERSION, in,
			 sizeof(in), NULL, 0), 0);
	fe_process(fe);
	CHECK_EQ(vhu__sock_recv_timeout(fe->sock, m, fds, &nfds, 1000), 1);
	CHECK_EQ(m->hdr.size, 24);
	CHECK_EQ(nfds, 1);
	*fd = nfds ? fds[0] : -1;
}

static long long set_inflight(struct fe *fe, int fd, uint64_t size,
			      uint64_t off, unsigned nq, unsigned qs)
{
	struct vhu_inflight in = { size, off, (uint16_t)nq, (uint16_t)qs };
	return fe_acked(fe, VHU_REQ_SET_INFLIGHT_FD, &in, sizeof(in), &fd, 1);
}

/* Guest side of queue 0 in fe->mem (fe_setup_vring's layout). */
static struct vhu_vring_desc *desc0(struct fe *fe)
{
	return (struct vhu_vring_desc *)(fe->mem + FE_RING_GPA(0));
}
static uint16_t *avail0(struct fe *fe)
{
	return (uint16_t *)(fe->mem + FE_RING_GPA(0) + 0x2000);
}
static uint16_t *used0(struct fe *fe)
{
	return (uint16_t *)(fe->mem + FE_RING_GPA(0) + 0x3000);
}

/* Make a one-descriptor request with head h and make it available. */
static void post(struct fe *fe, uint16_t h)
{
	struct vhu_vring_desc *d = desc0(fe);
	d[h].addr = 0x80000 + (uint64_t)h * 0x100;
	d[h].len = 16 + h;
	d[h].flags = 0;
	d[h].next = 0;
	uint16_t *a = avail0(fe);
	uint16_t idx = a[1];
	a[2 + idx % QSIZE] = h;
	__atomic_store_n(&a[1], (uint16_t)(idx + 1), __ATOMIC_RELEASE);
}

static int start_q0(struct fe *fe)
{
	int kick;
	if (fe_setup_vring(fe, 0, QSIZE, &kick) < 0)
		return -1;
	close(kick);
	return fe_enable(fe, 0, true);
}

/* start_q0 with a call eventfd of ours (*call, nonblocking). */
static int start_q0_call(struct fe *fe, int *call)
{
	int kick;
	uint64_t u = 0;
	*call = -1;
	if (fe_setup_vring(fe, 0, QSIZE, &kick) < 0)
		return -1;
	close(kick);
	*call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (*call < 0 ||
	    fe_send(fe, VHU_REQ_SET_VRING_CALL, 1, &u, 8, call, 1) < 0)
		return -1;
	fe_process(fe);
	/* A new call fd on a queue with rings is signalled once, as
	 * libvhost-user does; taken here, so what the start sends shows
	 * alone. */
	uint64_t v = 0;
	if (read(*call, &v, sizeof(v)) != sizeof(v) || v != 1)
		return -1;
	return fe_enable(fe, 0, true);
}

/* Interrupts the back-end sent on a call eventfd since the last look. */
static uint64_t calls(int call)
{
	uint64_t v = 0;
	if (read(call, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

static int pop_id(void)
{
	struct vhu_vq_elem e;
	struct iovec iov[4];
	int r = vhu_vq_pop(vqs[0], &e, iov, 4);
	if (r != 1)
		return r == 0 ? -1000 : r;
	/* The chain is rebuilt from the descriptor table. */
	if (e.n_out != 1 || e.n_in != 0 || iov[0].iov_len != 16u + e.id)
		return -2000;
	return e.id;
}

static void push_id(uint16_t id)
{
	struct vhu_vq_elem e = { .id = id };
	vhu_vq_push(vqs[0], &e, 0);
}

static struct vhu__inflight_split *q0(void *region)
{
	return region;
}

TEST(get_inflight_fd_size_and_no_fd_leak)
{
	struct fe fe;
	int base = tl_count_fds();
	CHECK_EQ(session(&fe), 0);
	int with_session = tl_count_fds();
	struct vhu_inflight r;
	int fd;
	CHECK_EQ(get_inflight(&fe, NQ, 256, &r, &fd), 1);
	size_t want = page_round(NQ * vhu__inflight_queue_bytes(256));
	CHECK(vhu__inflight_queue_bytes(256) >= 16 + 16 * 256);
	CHECK_EQ(r.mmap_size, want);
	CHECK_EQ(r.mmap_offset, 0);
	CHECK_EQ(r.num_queues, NQ);
	CHECK_EQ(r.queue_size, 256);
	struct stat st;
	CHECK_EQ(fstat(fd, &st), 0);
	CHECK_EQ((uint64_t)st.st_size, want);
	/* Fresh: all zero (version 0, nothing in flight). */
	uint8_t *p = mmap(NULL, want, PROT_READ, MAP_SHARED, fd, 0);
	CHECK(p != MAP_FAILED);
	size_t nz = 0;
	for (size_t i = 0; i < want; i++)
		nz += p[i] != 0;
	CHECK_EQ(nz, 0);
	munmap(p, want);
	close(fd);
	/* The back-end keeps exactly one region, however often asked. */
	CHECK_EQ(tl_count_fds(), with_session + 1);
	for (int i = 0; i < 5; i++) {
		CHECK_EQ(get_inflight(&fe, 1, 128, &r, &fd), 1);
		CHECK_EQ(r.mmap_size, page_round(vhu__inflight_queue_bytes(128)));
		close(fd);
	}
	CHECK_EQ(tl_count_fds(), with_session + 1);
	CHECK(!fe_dropped(&fe));
	fe_close(&fe);
	CHECK_EQ(tl_count_fds(), base);
}

/* The region we hand out is size-sealed: a front-end cannot shrink it
 * under our mapping (our next touch past the new end would be SIGBUS). */
TEST(get_inflight_fd_region_cannot_be_resized)
{
	struct fe fe;
	CHECK_EQ(session(&fe), 0);
	struct vhu_inflight r;
	int fd;
	CHECK_EQ(get_inflight(&fe, NQ, 256, &r, &fd), 1);
	errno = 0;
	CHECK_EQ(ftruncate(fd, 0), -1);
	CHECK_EQ(errno, EPERM);
	errno = 0;
	CHECK_EQ(ftruncate(fd, (off_t)r.mmap_size * 2), -1);
	CHECK_EQ(errno, EPERM);
	struct stat st;
	CHECK_EQ(fstat(fd, &st), 0);
	CHECK_EQ((uint64_t)st.st_size, r.mmap_size);
	close(fd);
	fe_close(&fe);
}

/* QEMU sends (and wants back) its unpacked 24-byte struct. */
TEST(qemu_24_byte_payload)
{
	struct fe fe;
	CHECK_EQ(session(&fe), 0);
	uint8_t in[24] = { 0 };
	struct vhu_msg m;
	int fds[1];
	get_inflight24(&fe, 1, 128, &m, &fds[0]);
	CHECK_EQ(m.p.inflight.mmap_size,
		 page_round(vhu__inflight_queue_bytes(128)));
	CHECK_EQ(m.p.inflight.queue_size, 128);
	struct vhu_inflight set = m.p.inflight;
	memset(in, 0, sizeof(in));
	memcpy(in, &set, sizeof(set));
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_INFLIGHT_FD, in, sizeof(in),
			  fds, 1), 0);
	close(fds[0]);
	/* Neither 20 nor 24: the connection goes. */
	CHECK_EQ(fe_send(&fe, VHU_REQ_GET_INFLIGHT_FD, VHU_MSG_VERSION, in,
			 22, NULL, 0), 0);
	fe_process(&fe);
	CHECK(fe_dropped(&fe));
	fe_close(&fe);
}

/* With packed rings negotiated the region has the packed layout (32-byte
 * header and entries per queue), answered in QEMU's 24 bytes too; a SET
 * sized for split records is too small for it. */
TEST(packed_layout_sizes)
{
	struct fe fe;
	CHECK_EQ(session_with(&fe, VHU_BIT(VHU_F_RING_PACKED)), 0);
	CHECK_EQ(vhu__inflight_queue_bytes_packed(256), 8256); /* 8224, to 64 */
	CHECK_EQ(vhu__inflight_queue_bytes_packed(100), 3264);
	struct vhu_msg m;
	int fds[1];
	get_inflight24(&fe, NQ, 128, &m, &fds[0]);
	size_t want = page_round(NQ * vhu__inflight_queue_bytes_packed(128));
	CHECK_EQ(m.p.inflight.mmap_size, want);
	struct stat st;
	CHECK_EQ(fstat(fds[0], &st), 0);
	CHECK_EQ((uint64_t)st.st_size, want);
	uint64_t split = NQ * vhu__inflight_queue_bytes(128);
	CHECK(set_inflight(&fe, fds[0], split, 0, NQ, 128) > 0);
	CHECK_EQ(set_inflight(&fe, fds[0], want, 0, NQ, 128), 0);
	CHECK(!fe_dropped(&fe));
	close(fds[0]);
	fe_close(&fe);
}

TEST(impossible_dimensions_refused)
{
	struct fe fe;
	struct vhu_inflight r;
	int fd;
	CHECK_EQ(session(&fe), 0);
	int before = tl_count_fds();
	/* GET: no region, no fd, the connection stays. */
	CHECK_EQ(get_inflight(&fe, NQ + 1, 64, &r, &fd), 0);
	CHECK_EQ(r.mmap_size, 0);
	CHECK_EQ(get_inflight(&fe, 1, 512, &r, &fd), 0);
	CHECK_EQ(get_inflight(&fe, 0, 64, &r, &fd), 0);
	CHECK_EQ(get_inflight(&fe, 1, 0, &r, &fd), 0);
	CHECK_EQ(tl_count_fds(), before);

	CHECK_EQ(get_inflight(&fe, 1, 64, &r, &fd), 1);
	uint64_t sz = r.mmap_size;
	/* SET beyond the rings, too small, outside the file, unaligned. */
	CHECK(set_inflight(&fe, fd, sz, 0, NQ + 1, 64) > 0);
	CHECK(set_inflight(&fe, fd, sz, 0, 1, 257) > 0);
	CHECK(set_inflight(&fe, fd, 16, 0, 1, 64) > 0);
	CHECK(set_inflight(&fe, fd, sz, sz, 1, 64) > 0);
	CHECK(set_inflight(&fe, fd, sz, 8, 1, 64) > 0);
	CHECK(set_inflight(&fe, fd, UINT64_MAX, 4096, 1, 64) > 0);
	CHECK(!fe_dropped(&fe));
	/* Every refused fd was closed: only ours and the back-end's GET
	 * region are open. */
	CHECK_EQ(tl_count_fds(), before + 2);
	CHECK_EQ(set_inflight(&fe, fd, sz, 0, 1, 64), 0);
	/* The back-end dropped its GET region and keeps the SET one. */
	CHECK_EQ(tl_count_fds(), before + 2);
	close(fd);
	fe_close(&fe);
}

/* A session with a fresh inflight region (*r, *fd: ours to close) of
 * NQ queues of QSIZE, queue 0 started. */
static void tracked_session(struct fe *fe, struct vhu_inflight *r, int *fd)
{
	CHECK_EQ(session(fe), 0);
	CHECK_EQ(get_inflight(fe, NQ, QSIZE, r, fd), 1);
	CHECK_EQ(set_inflight(fe, *fd, r->mmap_size, 0, NQ, QSIZE), 0);
	CHECK_EQ(start_q0(fe), 0);
}

TEST(pop_marks_push_clears)
{
	struct fe fe;
	struct vhu_inflight r;
	int fd;
	tracked_session(&fe, &r, &fd);
	CHECK(vqs[0] != NULL);
	uint8_t *reg = mmap(NULL, r.mmap_size, PROT_READ, MAP_SHARED, fd, 0);
	CHECK(reg != MAP_FAILED);
	struct vhu__inflight_split *q = q0(reg);
	CHECK_EQ(q->version, 1);
	CHECK_EQ(q->desc_num, QSIZE);

	post(&fe, 5);
	post(&fe, 2);
	post(&fe, 9);
	CHECK_EQ(pop_id(), 5);
	CHECK_EQ(pop_id(), 2);
	CHECK_EQ(q->desc[5].inflight, 1);
	CHECK_EQ(q->desc[2].inflight, 1);
	CHECK_EQ(q->desc[9].inflight, 0);
	CHECK_EQ(q->desc[2].counter, q->desc[5].counter + 1);
	push_id(2);
	CHECK_EQ(q->desc[2].inflight, 0);
	CHECK_EQ(q->desc[5].inflight, 1);
	CHECK_EQ(q->last_batch_head, 2);
	CHECK_EQ(q->used_idx, 1);
	CHECK_EQ(used0(&fe)[1], 1);
	/* Queue 1's record is untouched. */
	struct vhu__inflight_split *q1 =
		(void *)(reg + vhu__inflight_queue_bytes(QSIZE));
	CHECK_EQ(q1->version, 0);
	munmap(reg, r.mmap_size);
	close(fd);
	fe_close(&fe);
}

/* Session A pops 5, 2, 9, 7 and completes only 2, then its process goes
 * away.  Session B, a new back-end, gets the same region: its first pops
 * are 5, 9, 7 (pop order), then the request that was never popped. */
static void restart(bool torn_push)
{
	struct fe a, b;
	struct vhu_inflight r;
	int fd;
	tracked_session(&a, &r, &fd);
	post(&a, 5);
	post(&a, 2);
	post(&a, 9);
	post(&a, 7);
	CHECK_EQ(pop_id(), 5);
	CHECK_EQ(pop_id(), 2);
	CHECK_EQ(pop_id(), 9);
	CHECK_EQ(pop_id(), 7);
	push_id(2);
	if (torn_push) {
		/* The process died between publishing 9's used entry and
		 * clearing its mark. */
		struct vhu__inflight_split *q = vqs[0]->inf;
		q->desc[9].next = q->last_batch_head;
		q->last_batch_head = 9;
		uint32_t *ue = (uint32_t *)(used0(&a) + 2) + 2;
		ue[0] = 9;
		ue[1] = 0;
		used0(&a)[1] = 2;
	}
	post(&a, 11);

	/* Guest memory outlives the back-end: session B sees the same. */
	CHECK_EQ(session(&b), 0);
	memcpy(b.mem, a.mem, FE_MEM_SIZE);
	fe_close(&a);
	CHECK(vqs[0] == NULL);
	CHECK_EQ(set_inflight(&b, fd, r.mmap_size, 0, NQ, QSIZE), 0);
	CHECK_EQ(start_q0(&b), 0);
	CHECK(vqs[0] != NULL);
	CHECK_EQ(pop_id(), 5);
	if (!torn_push)
		CHECK_EQ(pop_id(), 9);
	CHECK_EQ(pop_id(), 7);
	CHECK_EQ(pop_id(), 11);
	CHECK_EQ(pop_id(), -1000);
	/* New pops count on after the old ones. */
	struct vhu__inflight_split *q = vqs[0]->inf;
	CHECK(q->desc[11].counter > q->desc[7].counter);
	CHECK(q->desc[7].counter > q->desc[5].counter);
	push_id(7);
	push_id(5);
	push_id(11);
	CHECK_EQ(used0(&b)[1], (torn_push ? 5 : 4));
	CHECK_EQ(q->desc[5].inflight + q->desc[7].inflight +
			 q->desc[11].inflight,
		 0);
	close(fd);
	fe_close(&b);
}

TEST(restart_resubmits_in_counter_order) { restart(false); }
TEST(restart_after_torn_push_skips_the_published_one) { restart(true); }

/*
 * SPDK issue #3766: a record in which nothing was ever completed (as a
 * peer that zero-initialises it leaves it: used_idx 0, last_batch_head
 * 0) next to a ring whose used idx moved on without it (requests the
 * previous owner of the ring completed before tracking began, e.g. on a
 * migration source).  Heads 0 and 4 were popped and never completed; a
 * new session resubmits both and pops nothing else.  Read naively, the
 * record says "descriptor 0 was the last batch, published": clearing it
 * loses that request and pops head 4 twice.
 */
static void nothing_completed(uint16_t done_before)
{
	struct fe b;
	struct vhu_inflight r;
	int fd;
	CHECK_EQ(session(&b), 0);
	CHECK_EQ(get_inflight(&b, NQ, QSIZE, &r, &fd), 1);
	/* Guest memory: done_before requests used, then 0 and 4 posted. */
	for (uint16_t i = 0; i < done_before; i++)
		post(&b, (uint16_t)(10 + i));
	post(&b, 0);
	post(&b, 4);
	used0(&b)[1] = done_before;
	uint8_t *reg = mmap(NULL, r.mmap_size, PROT_READ | PROT_WRITE,
			    MAP_SHARED, fd, 0);
	CHECK(reg != MAP_FAILED);
	struct vhu__inflight_split *q = q0(reg);
	q->version = 1;
	q->desc_num = QSIZE;
	q->desc[0].inflight = 1;
	q->desc[0].counter = 1;
	q->desc[4].inflight = 1;
	q->desc[4].counter = 2;
	CHECK_EQ(set_inflight(&b, fd, r.mmap_size, 0, NQ, QSIZE), 0);
	CHECK_EQ(start_q0(&b), 0);
	CHECK(vqs[0] != NULL);
	CHECK_EQ(pop_id(), 0);
	CHECK_EQ(pop_id(), 4);
	CHECK_EQ(pop_id(), -1000);
	push_id(0);
	push_id(4);
	CHECK_EQ(used0(&b)[1], done_before + 2);
	CHECK_EQ(q->desc[0].inflight + q->desc[4].inflight, 0);
	munmap(reg, r.mmap_size);
	close(fd);
	fe_close(&b);
}

TEST(nothing_completed_keeps_descriptor_0_batch_of_1) { nothing_completed(1); }
TEST(nothing_completed_keeps_descriptor_0_batch_of_3) { nothing_completed(3); }

/* The other side of that rule: in a record this library initialised,
 * a push of head 0 that died between publishing and clearing (the very
 * first batch, used index 0 -> 1) is still recognised and not redone. */
TEST(torn_first_push_of_head_0_is_cleared)
{
	struct fe a, b;
	struct vhu_inflight r;
	int fd;
	CHECK_EQ(session(&a), 0);
	CHECK_EQ(get_inflight(&a, NQ, QSIZE, &r, &fd), 1);
	CHECK_EQ(set_inflight(&a, fd, r.mmap_size, 0, NQ, QSIZE), 0);
	CHECK_EQ(start_q0(&a), 0);
	post(&a, 0);
	post(&a, 3);
	CHECK_EQ(pop_id(), 0);
	CHECK_EQ(pop_id(), 3);
	/* vhu__split_push's first two steps, then the process died. */
	struct vhu__inflight_split *q = vqs[0]->inf;
	q->desc[0].next = q->last_batch_head;
	q->last_batch_head = 0;
	uint32_t *ue = (uint32_t *)(used0(&a) + 2);
	ue[0] = 0;
	ue[1] = 0;
	used0(&a)[1] = 1;

	CHECK_EQ(session(&b), 0);
	memcpy(b.mem, a.mem, FE_MEM_SIZE);
	fe_close(&a);
	CHECK_EQ(set_inflight(&b, fd, r.mmap_size, 0, NQ, QSIZE), 0);
	CHECK_EQ(start_q0(&b), 0);
	CHECK_EQ(pop_id(), 3);
	CHECK_EQ(pop_id(), -1000);
	push_id(3);
	CHECK_EQ(used0(&b)[1], 2);
	close(fd);
	fe_close(&b);
}

/*
 * A back-end died between publishing a used entry and signalling it (or
 * signalled a call fd the front-end tore down when it saw the back-end
 * go: QEMU does).  The driver waits for that interrupt; the next
 * back-end, taking over the record, must send one when its queue starts.
 * A fresh record needs none.
 */
TEST(resumed_record_signals_the_driver_once)
{
	struct fe a, b;
	struct vhu_inflight r;
	int fd, call_a, call_b;
	CHECK_EQ(session(&a), 0);
	CHECK_EQ(get_inflight(&a, NQ, QSIZE, &r, &fd), 1);
	CHECK_EQ(set_inflight(&a, fd, r.mmap_size, 0, NQ, QSIZE), 0);
	CHECK_EQ(start_q0_call(&a, &call_a), 0);
	CHECK_EQ(calls(call_a), 0);
	post(&a, 5);
	post(&a, 6);
	CHECK_EQ(pop_id(), 5);
	CHECK_EQ(pop_id(), 6);
	push_id(5);	/* published, never signalled */
	CHECK_EQ(used0(&a)[1], 1);

	CHECK_EQ(session(&b), 0);
	memcpy(b.mem, a.mem, FE_MEM_SIZE);
	fe_close(&a);
	CHECK_EQ(set_inflight(&b, fd, r.mmap_size, 0, NQ, QSIZE), 0);
	CHECK_EQ(start_q0_call(&b, &call_b), 0);
	CHECK_EQ(calls(call_b), 1);
	/* And the request still in flight comes again, only it. */
	CHECK_EQ(pop_id(), 6);
	CHECK_EQ(pop_id(), -1000);
	close(call_a);
	close(call_b);
	close(fd);
	fe_close(&b);
}

/*
 * A graceful stop (vhu_backend_free with the front-end still connected,
 * vhu-blk's SIGTERM): the device completes what it holds while the
 * connection is still open.  A front-end that saw the close first would
 * have torn down its call fds, and the completion's interrupt would be
 * lost with the guest waiting for it.
 */
TEST(graceful_stop_completes_before_the_connection_closes)
{
	struct fe a;
	struct vhu_inflight r;
	int fd, call;
	CHECK_EQ(session(&a), 0);
	CHECK_EQ(get_inflight(&a, NQ, QSIZE, &r, &fd), 1);
	CHECK_EQ(set_inflight(&a, fd, r.mmap_size, 0, NQ, QSIZE), 0);
	CHECK_EQ(start_q0_call(&a, &call), 0);
	post(&a, 3);
	CHECK_EQ(pop_id(), 3);
	stop_id = 3;
	stop_probe = a.sock;
	stop_saw_close = true;
	vhu_backend_free(a.b);
	a.b = NULL;
	CHECK_EQ(stop_id, -1);
	CHECK(!stop_saw_close);
	CHECK_EQ(calls(call), 1);
	CHECK_EQ(used0(&a)[1], 1);
	/* Closed afterwards. */
	CHECK(fe_dropped(&a));
	stop_probe = -1;
	close(call);
	close(fd);
	fe_close(&a);
}

int main(void) { return tap_run(); }
