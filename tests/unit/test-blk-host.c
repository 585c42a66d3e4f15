/* SPDX-License-Identifier: MIT */
/*
 * vhu-blk on what the host storage needs: the block size chosen for a
 * host's logical block size and direct-I/O alignment, refused
 * combinations, discard granularity, DISCARD / WRITE_ZEROES on a block
 * device, and I/O without io_uring (the blocking engine).  The block-device cases run on a loop device with
 * 4096-byte sectors (a "4Kn" disk); they are skipped when this process
 * cannot make one (not root, no /dev/loop-control).
 */
#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/ioctl.h>

#include "blk-harness.h"

#define LOOP_SIZE (4u << 20)

/* ---- the choice of block size, from a geometry ---- */

TEST(pick_blk_size)
{
	struct vhu_blk_geometry g512 = { 512, 512, 512, 512 };
	struct vhu_blk_geometry g4k = { 4096, 4096, 512, 4096 };
	/* a file on a file system over a 4Kn disk: buffered I/O is fine at
	 * 512, O_DIRECT needs 4096 */
	struct vhu_blk_geometry f4k = { 512, 4096, 4, 4096 };
	struct vhu_blk_geometry g8k = { 8192, 8192, 512, 8192 };
	char why[200] = "";
	unsigned bs = 0;

	const struct {
		unsigned want;
		enum vhu_blk_cache cache;
		const struct vhu_blk_geometry *g;
		unsigned bs;
	} ok[] = {
		{ 0, VHU_BLK_CACHE_WRITEBACK, &g512, 512 },
		{ 0, VHU_BLK_CACHE_NONE, &g4k, 4096 },
		{ 0, VHU_BLK_CACHE_WRITEBACK, &g4k, 4096 },
		{ 0, VHU_BLK_CACHE_WRITEBACK, &f4k, 512 },
		{ 0, VHU_BLK_CACHE_NONE, &f4k, 4096 },
		{ 4096, VHU_BLK_CACHE_NONE, &g512, 4096 },
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		bs = 0;
		CHECK_EQ(vhu_blk_pick_blk_size(ok[i].want, ok[i].cache, ok[i].g,
					       &bs, why, sizeof(why)), 0);
		CHECK_EQ(bs, ok[i].bs);
	}

	/* impossible: said why */
	CHECK_EQ(vhu_blk_pick_blk_size(512, VHU_BLK_CACHE_NONE, &g4k, &bs, why,
				       sizeof(why)), -EINVAL);
	CHECK(strstr(why, "--cache none") && strstr(why, "4096"));
	why[0] = 0;
	CHECK_EQ(vhu_blk_pick_blk_size(512, VHU_BLK_CACHE_NONE, &f4k, &bs, why,
				       sizeof(why)), -EINVAL);
	CHECK(why[0]);
	CHECK_EQ(vhu_blk_pick_blk_size(0, VHU_BLK_CACHE_WRITEBACK, &g8k, &bs,
				       why, sizeof(why)), -EINVAL);
	/* the page cache serves 512-byte blocks over any device */
	CHECK_EQ(vhu_blk_pick_blk_size(512, VHU_BLK_CACHE_WRITEBACK, &g4k, &bs,
				       why, sizeof(why)), 0);
	CHECK_EQ(bs, 512);
}

/* ---- a 4Kn loop device ---- */

struct loopdev {
	char file[64], dev[32];
	int fd;
};

static bool loop_make(struct loopdev *l, unsigned sector)
{
	struct loop_config cfg;
	int ctl, n, bfd;

	memset(l, 0, sizeof(*l));
	l->fd = -1;
	if (geteuid() != 0)
		return false;
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return false;
	n = ioctl(ctl, LOOP_CTL_GET_FREE);
	close(ctl);
	if (n < 0)
		return false;
	strcpy(l->file, "/tmp/vhu-blk-loop-XXXXXX");
	bfd = mkstemp(l->file);
	if (bfd < 0)
		return false;
	if (ftruncate(bfd, LOOP_SIZE) < 0)
		goto fail;
	snprintf(l->dev, sizeof(l->dev), "/dev/loop%d", n);
	l->fd = open(l->dev, O_RDWR | O_CLOEXEC);
	if (l->fd < 0)
		goto fail;
	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = (uint32_t)bfd;
	cfg.block_size = sector;
	cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
	if (ioctl(l->fd, LOOP_CONFIGURE, &cfg) < 0)
		goto fail;
	close(bfd);
	return true;
fail:
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	close(bfd);
	unlink(l->file);
	return false;
}

static void loop_free(struct loopdev *l)
{
	if (l->fd < 0)
		return;
	ioctl(l->fd, LOOP_CLR_FD, 0);
	close(l->fd);
	unlink(l->file);
	l->fd = -1;
}

static struct loopdev lo = { .fd = -1 };

static void after(void)
{
	loop_free(&lo);
}

#define NEED_LOOP()                                                           \
	do {                                                                  \
		loop_free(&lo); /* a failed case skips the after hook */      \
		if (!loop_make(&lo, 4096)) {                                  \
			tap_skip("no loop device (needs root and "            \
				 "/dev/loop-control)");                       \
		}                                                             \
	} while (0)

TEST(loop4k_block_size_chosen_and_refused)
{
	struct vhu_blk_opts o = { .num_queues = 1, .cache = VHU_BLK_CACHE_NONE };
	struct vhu_blk *blk;

	NEED_LOOP();
	o.path = lo.dev;
	CHECK_EQ(vhu_blk_new(&o, &blk), 0);
	CHECK_EQ(vhu_blk_geometry(blk)->logical, 4096);
	CHECK_EQ(vhu_blk_blk_size(blk), 4096);
	CHECK_EQ(vhu_blk_capacity(blk), LOOP_SIZE / 512);
	vhu_blk_free(blk);

	/* 512-byte blocks with O_DIRECT on 4096-byte sectors: refused */
	o.blk_size = 512;
	CHECK_EQ(vhu_blk_new(&o, &blk), -EINVAL);
	/* buffered: the page cache serves 512-byte blocks */
	o.cache = VHU_BLK_CACHE_WRITEBACK;
	CHECK_EQ(vhu_blk_new(&o, &blk), 0);
	CHECK_EQ(vhu_blk_blk_size(blk), 512);
	vhu_blk_free(blk);
	o.blk_size = 0;
	CHECK_EQ(vhu_blk_new(&o, &blk), 0);
	CHECK_EQ(vhu_blk_blk_size(blk), 4096);
	vhu_blk_free(blk);
}

static void dev_read(void *buf, size_t len, off_t off)
{
	int fd = open(lo.dev, O_RDONLY | O_CLOEXEC);

	CHECK(fd >= 0);
	CHECK_EQ(pread(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

/* O_DIRECT I/O at 4096 bytes, aligned and bounced. */
TEST(loop4k_direct_io)
{
	struct vhu_blk_opts o = { .cache = VHU_BLK_CACHE_NONE };
	uint8_t want[8192], got[8192];
	struct ctx c;

	NEED_LOOP();
	o.path = lo.dev;
	ctx_open(&c, &o, true);
	CHECK_EQ(vhu_blk_blk_size(c.blk), 4096);
	fill(c.data, 8192, 9);
	memcpy(want, c.data, 8192);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 8, 8192, false, NULL), VHU_BLK_S_OK);
	memset(c.data, 0, 8192);
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 8, 8192, true, NULL), VHU_BLK_S_OK);
	CHECK_MEM(c.data, want, 8192);
	/* a buffer that is not block-aligned goes through a bounce buffer */
	add_req(&c, 0, VHU_BLK_T_IN, 8, c.data_gpa + 100, 4096, true);
	run(&c, 1, NULL);
	CHECK_EQ(c.status[0], VHU_BLK_S_OK);
	CHECK_MEM(c.data + 100, want, 4096);
	/* misaligned for the guest's 4096-byte blocks: IOERR */
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 1, 4096, true, NULL), VHU_BLK_S_IOERR);
	dev_read(got, 8192, 8 * 512);
	CHECK_MEM(got, want, 8192);
	ctx_close(&c);
}

/* 512-byte guest blocks over 4096-byte sectors (write-back): discards are
 * advertised at the host's granularity, finer ones do what they can, and
 * write-zeroes zeroes exactly its range. */
TEST(loop4k_discard_and_zeroes_512)
{
	struct vhu_blk_opts o = { .blk_size = 512 };
	uint8_t pat[16384], buf[16384], zero[16384] = { 0 };
	uint32_t align;
	struct ctx c;

	NEED_LOOP();
	o.path = lo.dev;
	ctx_open(&c, &o, true);
	CHECK_EQ(vhu_fe_get_config(c.fe, 44, &align, 4), 0);
	CHECK_EQ(le32toh(align), 8); /* discard_sector_alignment: 4 KiB */

	fill(pat, sizeof(pat), 1);
	memcpy(c.data, pat, sizeof(pat));
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 64, 16384, false, NULL), VHU_BLK_S_OK);
	memset(c.data, 0, 4096);

	/* DISCARD of sectors 65..95 (512-granular): the whole 4 KiB blocks
	 * inside it, 72..87, are discarded (a loop device reads them back
	 * as zeroes); the partial blocks keep their data */
	put_seg(c.data, 65, 23, 0);
	CHECK_EQ(one(&c, VHU_BLK_T_DISCARD, 0, 16, false, NULL), VHU_BLK_S_OK);
	dev_read(buf, sizeof(buf), 64 * 512);
	CHECK_MEM(buf, pat, 4096);
	CHECK_MEM(buf + 4096, zero, 8192);
	CHECK_MEM(buf + 12288, pat + 12288, 4096);
	/* a discard smaller than one host block: nothing to do, OK */
	put_seg(c.data, 97, 2, 0);
	CHECK_EQ(one(&c, VHU_BLK_T_DISCARD, 0, 16, false, NULL), VHU_BLK_S_OK);

	/* WRITE_ZEROES at 512 granularity inside the block 88..95, with
	 * and without unmap */
	put_seg(c.data, 89, 3, 0);
	put_seg(c.data + 16, 93, 2, 1);
	CHECK_EQ(one(&c, VHU_BLK_T_WRITE_ZEROES, 0, 32, false, NULL),
		 VHU_BLK_S_OK);
	dev_read(buf, 4096, 88 * 512);
	CHECK_MEM(buf, pat + 12288, 512);
	CHECK_MEM(buf + 512, zero, 1536);
	CHECK_MEM(buf + 2048, pat + 12288 + 2048, 512);
	CHECK_MEM(buf + 2560, zero, 1024);
	CHECK_MEM(buf + 3584, pat + 12288 + 3584, 512);
	/* a whole block: BLKZEROOUT */
	put_seg(c.data, 64, 8, 0);
	CHECK_EQ(one(&c, VHU_BLK_T_WRITE_ZEROES, 0, 16, false, NULL),
		 VHU_BLK_S_OK);
	dev_read(buf, 4096, 64 * 512);
	CHECK_MEM(buf, zero, 4096);
	ctx_close(&c);
}

/* ---- without io_uring: the blocking engine ---- */

static void threads_engine(enum vhu_blk_cache cache)
{
	struct vhu_blk_opts o = { .cache = cache, .aio = VHU_BLK_AIO_THREADS };
	const uint32_t seg = 64u << 10;
	struct vhu_fe_buf out[9], in[1];
	struct vhu_blk_qstats st;
	uint8_t want[8192], buf[8192], zero[4096] = { 0 }, zero8 = 0;
	struct ctx c;

	ctx_open(&c, &o, true);
	CHECK_EQ(vhu_blk_aio(c.blk), VHU_BLK_AIO_THREADS);
	fill(c.data, 8192, 21);
	memcpy(want, c.data, 8192);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 16, 8192, false, NULL), VHU_BLK_S_OK);
	CHECK_EQ(one(&c, VHU_BLK_T_FLUSH, 0, 0, false, NULL), VHU_BLK_S_OK);
	pread_img(&c, buf, 8192, 16 * 512);
	CHECK_MEM(buf, want, 8192);
	memset(c.data, 0, 8192);
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 16, 8192, true, NULL), VHU_BLK_S_OK);
	CHECK_MEM(c.data, want, 8192);
	/* 8 x 64 KiB from an odd address: bounced in chunks under O_DIRECT */
	fill(c.data + 1, seg, 22);
	set_hdr(&c, 0, VHU_BLK_T_OUT, 1024);
	out[0] = (struct vhu_fe_buf){ c.hdr_gpa, 16 };
	for (unsigned i = 1; i <= 8; i++)
		out[i] = (struct vhu_fe_buf){ c.data_gpa + 1, seg };
	in[0] = (struct vhu_fe_buf){ c.status_gpa, 1 };
	CHECK(vhu_fe_vq_add(c.vq, out, 9, in, 1, (void *)(uintptr_t)1) >= 0);
	run(&c, 1, NULL);
	CHECK_EQ(c.status[0], VHU_BLK_S_OK);
	pread_img(&c, buf, 4096, 1024 * 512 + 7 * seg);
	CHECK_MEM(buf, c.data + 1, 4096);
	/* write zeroes, and write-through writes */
	pwrite_img(&c, want, 4096, 64 * 512);
	memset(c.data, 0, 16);
	c.data[0] = 64;
	c.data[8] = 8;
	CHECK_EQ(one(&c, VHU_BLK_T_WRITE_ZEROES, 0, 16, false, NULL), VHU_BLK_S_OK);
	pread_img(&c, buf, 4096, 64 * 512);
	CHECK_MEM(buf, zero, 4096);
	CHECK_EQ(vhu_fe_set_config(c.fe, VHU_BLK_CONFIG_WCE_OFFSET, &zero8, 1, 0), 0);
	fill(c.data, 4096, 23);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 0, 4096, false, NULL), VHU_BLK_S_OK);
	CHECK_EQ(vhu_blk_queue_stats(c.blk, 0, &st), 0);
	CHECK_EQ(st.writes_through, 1);
	CHECK_EQ(st.errors, 0);
	ctx_close(&c);
}

TEST(threads_engine_writeback)
{
	threads_engine(VHU_BLK_CACHE_WRITEBACK);
}

TEST(threads_engine_direct)
{
	threads_engine(VHU_BLK_CACHE_NONE);
}

/* Two queues on one shared thread, each watched through its engine's
 * epoll fd, and many requests in one kick. */
TEST(threads_engine_shared_thread)
{
	struct vhu_blk_opts o = { .num_queues = 2, .threads = 1,
				  .aio = VHU_BLK_AIO_THREADS };
	struct vhu_fe_vq *vq1;
	struct ctx c;

	ctx_open(&c, &o, true);
	CHECK_EQ(vhu_fe_vq_setup(c.fe, 1, QSIZE, &vq1), 0);
	for (unsigned k = 0; k < NSLOT; k++)
		add_req(&c, k, VHU_BLK_T_IN, k * 8, c.data_gpa + 4096 * (k % 16),
			4096, true);
	run(&c, NSLOT, NULL);
	for (unsigned k = 0; k < NSLOT; k++)
		CHECK_EQ(c.status[k], VHU_BLK_S_OK);
	/* the second queue */
	c.vq = vq1;
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 0, 4096, true, NULL), VHU_BLK_S_OK);
	ctx_close(&c);
}

/* Is the block device claimed exclusively (mounted, opened O_EXCL)? */
static bool claimed(const char *dev)
{
	int fd = open(dev, O_RDONLY | O_EXCL | O_CLOEXEC);

	if (fd >= 0)
		close(fd);
	return fd < 0 && errno == EBUSY;
}

/* A block device's exclusive claim is held exactly while the write lock
 * is (queues running): a second vhu-blk opens it, gets no access while
 * the first writes, and takes it over once the first stopped.  An idle
 * device does not claim it, and refuses one claimed by someone else. */
TEST(loop_claim_follows_the_write_lock)
{
	struct vhu_blk_opts oa = { 0 }, ob = { 0 };
	struct vhu_blk *blk;
	struct ctx a, b;
	int held;

	NEED_LOOP();
	oa.path = ob.path = lo.dev;
	ctx_open(&a, &oa, false);
	CHECK(!claimed(lo.dev));
	ctx_connect(&a);
	CHECK_EQ(vhu_blk_lock_state(a.blk), VHU_BLK_LOCK_WRITE);
	CHECK(claimed(lo.dev));
	fill(a.data, 4096, 5);
	CHECK_EQ(one(&a, VHU_BLK_T_OUT, 8, 4096, false, NULL), VHU_BLK_S_OK);

	ctx_open(&b, &ob, true);
	CHECK_EQ(vhu_blk_lock_state(b.blk), VHU_BLK_LOCK_CONFLICT);
	CHECK_EQ(one(&b, VHU_BLK_T_OUT, 8, 4096, false, NULL), VHU_BLK_S_IOERR);
	CHECK_EQ(vhu_fe_vq_stop(a.fe, 0, NULL), 0);
	CHECK(!claimed(lo.dev));
	vhu_fe_close(b.fe);
	b.fe = NULL;
	for (int i = 0; i < 2000 &&
	     vhu_blk_lock_state(b.blk) != VHU_BLK_LOCK_SHARED; i++)
		usleep(1000);
	ctx_connect(&b);
	CHECK_EQ(vhu_blk_lock_state(b.blk), VHU_BLK_LOCK_WRITE);
	CHECK(claimed(lo.dev));
	/* the claim is the I/O descriptor: discards work under it */
	put_seg(b.data, 8, 8, 0);
	CHECK_EQ(one(&b, VHU_BLK_T_DISCARD, 0, 16, false, NULL), VHU_BLK_S_OK);
	ctx_close(&b);
	ctx_close(&a);
	CHECK(!claimed(lo.dev));

	held = open(lo.dev, O_RDONLY | O_EXCL | O_CLOEXEC);
	CHECK(held >= 0);
	oa.num_queues = 1;
	CHECK_EQ(vhu_blk_new(&oa, &blk), -EBUSY);
	close(held);
}

int main(void)
{
	int r;

	tap_after_each = after;
	r = tap_run();
	loop_free(&lo);
	return r;
}
