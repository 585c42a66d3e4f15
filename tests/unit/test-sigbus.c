/* SPDX-License-Identifier: MIT */
/*
 * A front-end that shrinks (ftruncate) the guest memory, inflight file or
 * dirty log it passed, while a queue runs: with vhu_sigbus_guard_install()
 * the back-end's next touch of the vanished pages does not kill the
 * process, however many regions there are; the queue that touched them is
 * reported broken, and other queues and other sessions keep working.  A
 * mapping that cannot be protected is refused, and so is memory a dirty
 * log in use cannot cover.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fe-driver.h"
#include "internal.h"
#include "tap.h"
#include "util.h"

#define QSIZE 64u
#define NQ 2u

struct dev {
	struct vhu_vq *vqs[NQ];
};
static void t_started(void *o, struct vhu_vq *vq)
{
	((struct dev *)o)->vqs[vhu_vq_index(vq)] = vq;
}
static void t_stopped(void *o, struct vhu_vq *vq)
{
	((struct dev *)o)->vqs[vhu_vq_index(vq)] = NULL;
}
static struct vhu_device_ops ops = {
	.queue_started = t_started,
	.queue_stopped = t_stopped,
};

static struct fe fe, fe2;
static struct dev dev, dev2;
static int fds_at_start;

static void before(void)
{
	fe_init(&fe);
	fe_init(&fe2);
	memset(&dev, 0, sizeof(dev));
	memset(&dev2, 0, sizeof(dev2));
	fds_at_start = tl_count_fds();
}
static void after(void)
{
	fe_close(&fe);
	fe_close(&fe2);
	CHECK_EQ(tl_count_fds(), fds_at_start);
}

/* A session with guest memory: pf and features negotiated on top of
 * REPLY_ACK, VERSION_1 and PROTOCOL_FEATURES. */
static void session_with(struct fe *f, struct dev *d, uint64_t pf,
			 uint64_t features)
{
	struct vhu_backend_opts o = {
		.ops = &ops,
		.opaque = d,
		.features = VHU_BIT(VHU_F_VERSION_1),
		.protocol_features = VHU_BIT(VHU_PF_INFLIGHT_SHMFD),
		.num_queues = NQ,
		.max_queue_size = 256,
	};
	CHECK_EQ(fe_open(f, &o), 0);
	CHECK_EQ(fe_negotiate(f, VHU_BIT(VHU_F_VERSION_1) |
				    VHU_BIT(VHU_F_PROTOCOL_FEATURES) | features,
			      VHU_BIT(VHU_PF_REPLY_ACK) | pf), 0);
	CHECK_EQ(fe_set_mem(f), 0);
}

static void session(struct fe *f, struct dev *d, bool inflight)
{
	session_with(f, d, inflight ? VHU_BIT(VHU_PF_INFLIGHT_SHMFD) : 0, 0);
}

static void start_queues(struct fe *f, struct dev *d)
{
	for (unsigned i = 0; i < NQ; i++) {
		int kick;
		CHECK_EQ(fe_setup_vring(f, i, QSIZE, &kick), 0);
		close(kick);
		CHECK_EQ(fe_enable(f, i, true), 0);
		CHECK(d->vqs[i] != NULL);
	}
}

/* Make a one-descriptor request available on queue q (head 0, buffer at
 * buf_gpa, device-readable or, with flags VHU_VRING_DESC_F_WRITE,
 * writable), fe_setup_vring's layout. */
static void post_flags(struct fe *f, unsigned q, uint64_t buf_gpa,
		       uint16_t flags)
{
	uint8_t *ring = f->mem + FE_RING_GPA(q);
	struct vhu_vring_desc *d = (struct vhu_vring_desc *)ring;
	d[0].addr = buf_gpa;
	d[0].len = 64;
	d[0].flags = flags;
	d[0].next = 0;
	uint16_t *a = (uint16_t *)(ring + 0x2000);
	uint16_t idx = a[1];
	a[2 + idx % QSIZE] = 0;
	__atomic_store_n(&a[1], (uint16_t)(idx + 1), __ATOMIC_RELEASE);
}

static void post(struct fe *f, unsigned q, uint64_t buf_gpa)
{
	post_flags(f, q, buf_gpa, 0);
}

static int pop(struct vhu_vq *vq)
{
	struct vhu_vq_elem e;
	struct iovec iov[4];
	int r = vhu_vq_pop(vq, &e, iov, 4);
	if (r == 1) {
		vhu_vq_push(vq, &e, 0);
		vhu_vq_notify(vq);
	}
	return r;
}

TEST(install_is_idempotent)
{
	CHECK_EQ(vhu_sigbus_guard_install(), 0);
	CHECK_EQ(vhu_sigbus_guard_install(), 0);
}

TEST(guest_memory_shrunk_under_a_running_queue)
{
	session(&fe, &dev, false);
	start_queues(&fe, &dev);
	session(&fe2, &dev2, false);
	start_queues(&fe2, &dev2);

	/* Queue 0's rings and buffer stay below the new end; queue 1's
	 * rings (FE_RING_GPA(1) = 0x20000) and buffer lie past it. */
	post(&fe, 0, 0x18000);
	post(&fe, 1, 0x28000);
	post(&fe2, 1, 0x28000);
	CHECK_EQ(ftruncate(fe.mem_fd, 0x1c000), 0);

	/* Our own view of the file is gone past 0x1c000 too: stop using it
	 * (the test's mapping would fault like anyone else's). */
	CHECK_EQ(pop(dev.vqs[1]), -EIO);
	CHECK(vhu_vq_is_broken(dev.vqs[1]));
	CHECK_EQ(pop(dev.vqs[1]), -EIO); /* stays broken */

	/* The other queue of the same session still works. */
	CHECK_EQ(pop(dev.vqs[0]), 1);
	CHECK(!vhu_vq_is_broken(dev.vqs[0]));
	post(&fe, 0, 0x18100);
	CHECK_EQ(pop(dev.vqs[0]), 1);

	/* Another session is untouched. */
	CHECK_EQ(pop(dev2.vqs[1]), 1);
	CHECK_EQ(pop(dev2.vqs[0]), 0);
	CHECK(!vhu_vq_is_broken(dev2.vqs[1]));

	/* The session itself is alive and answers. */
	uint64_t f;
	CHECK_EQ(fe_get_u64(&fe, VHU_REQ_GET_FEATURES, &f), 0);

	/* fe_close() unmaps its view: only the part still in the file. */
	munmap(fe.mem + 0x1c000, fe.mem_size - 0x1c000);
	fe.mem_size = 0x1c000;
}

TEST(new_memory_table_after_a_loss_serves_again)
{
	session(&fe, &dev, false);
	start_queues(&fe, &dev);
	post(&fe, 1, 0x28000);
	CHECK_EQ(ftruncate(fe.mem_fd, 0x1c000), 0);
	CHECK_EQ(pop(dev.vqs[1]), -EIO);
	munmap(fe.mem, fe.mem_size);
	fe.mem = NULL;
	close(fe.mem_fd);
	fe.mem_fd = -1;

	/* The front-end sends a fresh table (it may be mapped where the
	 * lost one was): the untouched queue pops from it. */
	CHECK_EQ(fe_set_mem(&fe), 0);
	CHECK(dev.vqs[0] != NULL);
	post(&fe, 0, 0x18000);
	CHECK_EQ(pop(dev.vqs[0]), 1);
	CHECK(!vhu_vq_is_broken(dev.vqs[0]));
}

TEST(inflight_file_shrunk_under_a_running_queue)
{
	session(&fe, &dev, true);
	session(&fe2, &dev2, false);
	start_queues(&fe2, &dev2);

	/* The front-end's own (unsealed) inflight file. */
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t size = (NQ * vhu__inflight_queue_bytes(256) + pg - 1) / pg * pg;
	int ifd = memfd_create("test-inflight", MFD_CLOEXEC);
	CHECK(ifd >= 0);
	CHECK_EQ(ftruncate(ifd, (off_t)size), 0);
	struct vhu_inflight in = { size, 0, NQ, 256 };
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_INFLIGHT_FD, &in, sizeof(in), &ifd, 1), 0);
	start_queues(&fe, &dev);

	post(&fe, 0, 0x18000);
	CHECK_EQ(pop(dev.vqs[0]), 1); /* tracked in the record */
	CHECK_EQ(ftruncate(ifd, 0), 0);
	close(ifd);

	post(&fe, 0, 0x18100);
	CHECK_EQ(pop(dev.vqs[0]), -EIO);
	CHECK(vhu_vq_is_broken(dev.vqs[0]));
	/* Queue 1's record was in the same file: it breaks at its next pop
	 * without having faulted itself. */
	post(&fe, 1, 0x28000);
	CHECK_EQ(pop(dev.vqs[1]), -EIO);

	post(&fe2, 0, 0x18000);
	CHECK_EQ(pop(dev2.vqs[0]), 1);
	CHECK(!vhu_vq_is_broken(dev2.vqs[0]));
	uint64_t f;
	CHECK_EQ(fe_get_u64(&fe, VHU_REQ_GET_FEATURES, &f), 0);
}

/* ---- many regions: every mapping is protected, or refused ---- */

#define EXTRA_GPA 0x1000000ull
#define EXTRA_SIZE 0x10000ull

/* ADD_MEM_REG (op) or REM_MEM_REG of EXTRA_SIZE bytes at gpa, its own
 * memfd.  Returns the ack. */
static long long region_op(struct fe *f, uint32_t op, uint64_t gpa)
{
	int fd = memfd_create("test-region", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, EXTRA_SIZE) < 0)
		TAP_FAIL("memfd");
	struct vhu_mem_single one = {
		.region = { gpa, EXTRA_SIZE, FE_UVA + gpa, 0 },
	};
	long long r = fe_acked(f, op, &one, sizeof(one), &fd, 1);
	close(fd); /* the session keeps its own */
	return r;
}

/* ADD_MEM_REG n regions of EXTRA_SIZE above the main memory.  Returns
 * the first failing ack (0: all added). */
static long long add_regions(struct fe *f, unsigned first, unsigned n)
{
	for (unsigned i = first; i < first + n; i++) {
		long long r = region_op(f, VHU_REQ_ADD_MEM_REG,
					EXTRA_GPA + i * EXTRA_SIZE);
		if (r != 0)
			return r;
	}
	return 0;
}

static const struct vhu_mem_single main_region = {
	.region = { 0, FE_MEM_SIZE, FE_UVA, 0 },
};

TEST(guest_memory_shrunk_past_256_regions)
{
	/* QEMU with virtio-mem or many DIMMs uses hundreds of slots.  The
	 * main memory (both queues' rings) is taken out, 300 regions go in,
	 * and the main memory comes back as the 301st mapping. */
	session_with(&fe, &dev, VHU_BIT(VHU_PF_CONFIGURE_MEM_SLOTS), 0);
	CHECK_EQ(fe_acked(&fe, VHU_REQ_REM_MEM_REG, &main_region,
			  sizeof(main_region), NULL, 0), 0);
	CHECK_EQ(add_regions(&fe, 0, 300), 0);
	CHECK_EQ(fe_acked(&fe, VHU_REQ_ADD_MEM_REG, &main_region,
			  sizeof(main_region), &fe.mem_fd, 1), 0);
	start_queues(&fe, &dev);
	session(&fe2, &dev2, false);
	start_queues(&fe2, &dev2);

	post(&fe, 0, 0x18000);
	post(&fe, 1, 0x28000);
	CHECK_EQ(ftruncate(fe.mem_fd, 0x1c000), 0);

	/* Unprotected, this pop would end the process. */
	CHECK_EQ(pop(dev.vqs[1]), -EIO);
	CHECK(vhu_vq_is_broken(dev.vqs[1]));
	CHECK_EQ(pop(dev.vqs[0]), 1);
	CHECK(!vhu_vq_is_broken(dev.vqs[0]));
	post(&fe2, 1, 0x28000);
	CHECK_EQ(pop(dev2.vqs[1]), 1);
	uint64_t f;
	CHECK_EQ(fe_get_u64(&fe, VHU_REQ_GET_FEATURES, &f), 0);

	munmap(fe.mem + 0x1c000, fe.mem_size - 0x1c000);
	fe.mem_size = 0x1c000;
}

/* Lines of /proc/self/maps: one per mapping (or more, never fewer). */
static int count_maps(void)
{
	FILE *m = fopen("/proc/self/maps", "re");
	if (!m)
		return -1;
	int n = 0, c;
	while ((c = fgetc(m)) != EOF)
		n += c == '\n';
	fclose(m);
	return n;
}

TEST(full_guard_registry_refuses_the_mapping)
{
	session_with(&fe, &dev, VHU_BIT(VHU_PF_CONFIGURE_MEM_SLOTS) |
				VHU_BIT(VHU_PF_INFLIGHT_SHMFD) |
				VHU_BIT(VHU_PF_LOG_SHMFD), 0);
	start_queues(&fe, &dev);

	/* Take every slot the registry has left (entries for a page of
	 * ours that never faults): what the session maps next cannot be
	 * protected. */
	static char page[4096] __attribute__((aligned(4096)));
	static int taken[1 << 17];
	unsigned n = 0;
	int r;
	while (n < sizeof(taken) / sizeof(taken[0]) &&
	       (r = vhu__guard_add(page, sizeof(page), 0)) >= 0)
		taken[n++] = r;
	CHECK_EQ(r, -ENOSPC);
	CHECK(n > 60000); /* the cap is far above one session's needs */

	int fds0 = tl_count_fds(), maps0 = count_maps();
	/* Each request fails with an error, nothing stays mapped or open,
	 * and the session goes on. */
	CHECK(add_regions(&fe, 0, 1) > 0);
	struct vhu_mem_table t = { .nregions = 1 };
	t.regions[0] = main_region.region;
	CHECK(fe_acked(&fe, VHU_REQ_SET_MEM_TABLE, &t, 8 + 32, &fe.mem_fd, 1) > 0);
	int lfd = memfd_create("test-log", MFD_CLOEXEC);
	CHECK(lfd >= 0);
	CHECK_EQ(ftruncate(lfd, 4096), 0);
	struct vhu_log lg = { 4096, 0 };
	CHECK(fe_acked(&fe, VHU_REQ_SET_LOG_BASE, &lg, sizeof(lg), &lfd, 1) > 0);
	close(lfd);
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t isize = (NQ * vhu__inflight_queue_bytes(256) + pg - 1) / pg * pg;
	int ifd = memfd_create("test-inflight", MFD_CLOEXEC);
	CHECK(ifd >= 0);
	CHECK_EQ(ftruncate(ifd, (off_t)isize), 0);
	struct vhu_inflight in = { isize, 0, NQ, 256 };
	CHECK(fe_acked(&fe, VHU_REQ_SET_INFLIGHT_FD, &in, sizeof(in), &ifd, 1) > 0);
	close(ifd);
	/* GET_INFLIGHT_FD answers no region instead. */
	struct vhu_inflight gin = { 0, 0, NQ, 256 };
	struct vhu_msg reply;
	CHECK_EQ(fe_call(&fe, VHU_REQ_GET_INFLIGHT_FD, 1, &gin, sizeof(gin),
			 NULL, 0, &reply), 1);
	CHECK_EQ(reply.hdr.request, VHU_REQ_GET_INFLIGHT_FD);
	CHECK_EQ(reply.p.inflight.mmap_size, 0);
	CHECK_EQ(tl_count_fds(), fds0);
	CHECK_EQ(count_maps(), maps0);

	/* The queues still run on the memory they had. */
	post(&fe, 0, 0x18000);
	CHECK_EQ(pop(dev.vqs[0]), 1);

	/* With room again, the same requests succeed. */
	for (unsigned i = 0; i < n; i++)
		vhu__guard_del(taken[i]);
	CHECK_EQ(add_regions(&fe, 0, 1), 0);
	CHECK_EQ(tl_count_fds(), fds0 + 1);
	CHECK_EQ(fe_call(&fe, VHU_REQ_GET_INFLIGHT_FD, 1, &gin, sizeof(gin),
			 NULL, 0, &reply), 1);
	CHECK(reply.p.inflight.mmap_size >= isize);
}

/* ---- the dirty log ---- */

#define LOG_BYTES 4096u /* covers 128 MiB of guest memory */

/* The front-end's own log file (unsealed, as on /dev/shm), sent with
 * SET_LOG_BASE.  Returns our fd. */
static int set_log(struct fe *f)
{
	int fd = memfd_create("test-log", MFD_CLOEXEC);
	CHECK(fd >= 0);
	CHECK_EQ(ftruncate(fd, LOG_BYTES), 0);
	struct vhu_log lg = { LOG_BYTES, 0 };
	CHECK_EQ(fe_acked(f, VHU_REQ_SET_LOG_BASE, &lg, sizeof(lg), &fd, 1), 0);
	return fd;
}

TEST(dirty_log_shrunk_while_logging)
{
	session_with(&fe, &dev, VHU_BIT(VHU_PF_LOG_SHMFD), VHU_BIT(VHU_F_LOG_ALL));
	int lfd = set_log(&fe);
	start_queues(&fe, &dev);
	CHECK(dev.vqs[0]->log && dev.vqs[1]->log);
	session(&fe2, &dev2, false);
	start_queues(&fe2, &dev2);

	/* A request popped, the log truncated, then the device completes
	 * it: its page's bit has nowhere to go. */
	struct vhu_vq_elem e;
	struct iovec iov[4];
	post_flags(&fe, 0, 0x18000, VHU_VRING_DESC_F_WRITE);
	CHECK_EQ(vhu_vq_pop(dev.vqs[0], &e, iov, 4), 1);
	CHECK_EQ(ftruncate(lfd, 0), 0);
	close(lfd);
	vhu_vq_push(dev.vqs[0], &e, 64);
	/* The push that lost the bit stops the queue, not a later pop. */
	CHECK(vhu_vq_is_broken(dev.vqs[0]));
	post_flags(&fe, 0, 0x18100, VHU_VRING_DESC_F_WRITE);
	CHECK_EQ(pop(dev.vqs[0]), -EIO);

	/* The other queue of the session logs into the same lost log: it
	 * stops at its next pop, though it never faulted itself. */
	post_flags(&fe, 1, 0x28000, VHU_VRING_DESC_F_WRITE);
	CHECK_EQ(pop(dev.vqs[1]), -EIO);
	CHECK(vhu_vq_is_broken(dev.vqs[1]));

	/* Another session goes on, and this one answers. */
	post(&fe2, 0, 0x18000);
	CHECK_EQ(pop(dev2.vqs[0]), 1);
	uint64_t f;
	CHECK_EQ(fe_get_u64(&fe, VHU_REQ_GET_FEATURES, &f), 0);
}

TEST(memory_above_the_dirty_log_refused_while_logging)
{
	session_with(&fe, &dev, VHU_BIT(VHU_PF_LOG_SHMFD) |
				VHU_BIT(VHU_PF_CONFIGURE_MEM_SLOTS), 0);
	start_queues(&fe, &dev);
	close(set_log(&fe));
	const uint64_t above = (uint64_t)LOG_BYTES * 8 * 4096; /* 128 MiB */

	/* Logging off: the log is not in use, any memory goes. */
	CHECK_EQ(region_op(&fe, VHU_REQ_ADD_MEM_REG, above), 0);
	CHECK_EQ(region_op(&fe, VHU_REQ_REM_MEM_REG, above), 0);

	uint64_t feat = VHU_BIT(VHU_F_VERSION_1) |
			VHU_BIT(VHU_F_PROTOCOL_FEATURES) | VHU_BIT(VHU_F_LOG_ALL);
	CHECK_EQ(fe_acked(&fe, VHU_REQ_SET_FEATURES, &feat, 8, NULL, 0), 0);
	CHECK(dev.vqs[0] && dev.vqs[0]->log);

	/* Logging on: a region past the log's last bit is refused (its
	 * pages could never be marked), one that ends at it is taken. */
	int fds0 = tl_count_fds();
	CHECK(region_op(&fe, VHU_REQ_ADD_MEM_REG, above) > 0);
	CHECK(region_op(&fe, VHU_REQ_ADD_MEM_REG, above - EXTRA_SIZE / 2) > 0);
	CHECK_EQ(tl_count_fds(), fds0);
	CHECK_EQ(region_op(&fe, VHU_REQ_ADD_MEM_REG, above - EXTRA_SIZE), 0);
	CHECK_EQ(tl_count_fds(), fds0 + 1);

	/* A whole table reaching past it too; the old table stays. */
	struct vhu_mem_table t = { .nregions = 2 };
	t.regions[0] = main_region.region;
	t.regions[1] = (struct vhu_mem_region){ above, EXTRA_SIZE,
						FE_UVA + above, 0 };
	int fds2[2] = { fe.mem_fd, fe.mem_fd };
	CHECK(fe_acked(&fe, VHU_REQ_SET_MEM_TABLE, &t, 8 + 64, fds2, 2) > 0);
	CHECK_EQ(tl_count_fds(), fds0 + 1);

	/* The queues serve on, logging. */
	CHECK(dev.vqs[0] && !vhu_vq_is_broken(dev.vqs[0]));
	post_flags(&fe, 0, 0x18000, VHU_VRING_DESC_F_WRITE);
	CHECK_EQ(pop(dev.vqs[0]), 1);
	CHECK(!vhu_vq_is_broken(dev.vqs[0]));
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	/* Before any case: the process would die without it. */
	if (vhu_sigbus_guard_install() < 0)
		return 1;
	tap_before_each = before;
	tap_after_each = after;
	return tap_run();
}
