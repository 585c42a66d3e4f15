/* SPDX-License-Identifier: MIT */
/*
 * vhu-blk's image locking and its hand-over (docs/vhu-blk.md, Locking):
 * read permission while the queues are stopped, write permission while
 * they run, kept across a dirty-logging switch; a second writer gets no
 * access; what an open still refuses.  The locks are observed as another
 * process sees them (F_OFD_GETLK from a descriptor of our own), QEMU's
 * holders emulated with the same byte ranges.
 */
#include "blk-harness.h"

/* QEMU's file driver: byte 100 + permission held, 200 + permission not
 * shared; 300: a vhu-blk writer that hands over. */
enum { READ = 100, WRITE = 101, RESIZE = 103,
       NOSHARE_READ = 200, NOSHARE_WRITE = 201, NOSHARE_RESIZE = 203,
       HANDOVER = 300 };

/* Another open file's view: is the byte locked by anyone? */
static bool held(const char *path, off_t byte)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
			    .l_start = byte, .l_len = 1 };
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	CHECK(fd >= 0);
	CHECK_EQ(fcntl(fd, F_OFD_GETLK, &fl), 0);
	close(fd);
	return fl.l_type != F_UNLCK;
}

/* Lock bytes as another process would (an open file of its own). */
static int holder(const char *path, const int *bytes, unsigned n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	CHECK(fd >= 0);
	for (unsigned i = 0; i < n; i++) {
		struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET,
				    .l_start = bytes[i], .l_len = 1 };

		CHECK_EQ(fcntl(fd, F_OFD_SETLK, &fl), 0);
	}
	return fd;
}

/* Lock transitions as the device reports them (log sink). */
static _Atomic unsigned taken, released;

static void sink(enum vhu_log_level level, const char *msg, void *opaque)
{
	(void)level;
	(void)opaque;
	if (strstr(msg, "write lock taken"))
		atomic_fetch_add(&taken, 1);
	if (strstr(msg, "write lock released"))
		atomic_fetch_add(&released, 1);
}

static uint8_t img_byte(struct ctx *c, off_t off)
{
	uint8_t v;

	pread_img(c, &v, 1, off);
	return v;
}

TEST(read_while_stopped_write_while_running)
{
	struct vhu_blk_opts o = { 0 };
	struct ctx c;

	ctx_open(&c, &o, false);
	CHECK_EQ(vhu_blk_lock_state(c.blk), VHU_BLK_LOCK_SHARED);
	CHECK(held(c.img, READ));
	CHECK(!held(c.img, WRITE) && !held(c.img, NOSHARE_WRITE));
	ctx_connect(&c);                       /* the queue starts */
	CHECK_EQ(vhu_blk_lock_state(c.blk), VHU_BLK_LOCK_WRITE);
	CHECK(held(c.img, WRITE) && held(c.img, RESIZE));
	CHECK(held(c.img, NOSHARE_WRITE) && held(c.img, HANDOVER));
	CHECK(!held(c.img, NOSHARE_READ));
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 8, 4096, false, NULL), VHU_BLK_S_OK);
	/* GET_VRING_BASE, as the source of a migration gets it */
	CHECK_EQ(vhu_fe_vq_stop(c.fe, 0, NULL), 0);
	CHECK_EQ(vhu_blk_lock_state(c.blk), VHU_BLK_LOCK_SHARED);
	CHECK(held(c.img, READ));
	CHECK(!held(c.img, WRITE) && !held(c.img, NOSHARE_WRITE) &&
	      !held(c.img, HANDOVER));
	ctx_close(&c);
}

/* Dirty logging switched on and off while the queue runs stops and
 * restarts the ring: the write lock is not given back meanwhile. */
TEST(dirty_logging_switch_keeps_the_write_lock)
{
	struct vhu_blk_opts o = { 0 };
	struct ctx c;

	vhu_set_log_level(VHU_LOG_INFO);
	vhu_set_log_fn(sink, NULL);
	ctx_open(&c, &o, true);
	CHECK_EQ(atomic_load(&taken), 1);
	CHECK_EQ(atomic_load(&released), 0);
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(vhu_fe_log_start(c.fe), 0);
		CHECK_EQ(one(&c, VHU_BLK_T_OUT, 8, 4096, false, NULL), VHU_BLK_S_OK);
		CHECK_EQ(vhu_fe_log_start(c.fe), 0);   /* a new log */
		CHECK_EQ(vhu_fe_log_stop(c.fe), 0);
		CHECK_EQ(one(&c, VHU_BLK_T_IN, 8, 4096, true, NULL), VHU_BLK_S_OK);
	}
	CHECK_EQ(atomic_load(&released), 0);
	CHECK_EQ(atomic_load(&taken), 1);
	CHECK_EQ(vhu_blk_lock_state(c.blk), VHU_BLK_LOCK_WRITE);
	CHECK(held(c.img, WRITE));
	/* a disconnect is a real stop */
	vhu_fe_close(c.fe);
	c.fe = NULL;
	for (int i = 0; i < 2000 && !atomic_load(&released); i++)
		usleep(1000);
	CHECK_EQ(atomic_load(&released), 1);
	CHECK(!held(c.img, WRITE));
	ctx_close(&c);
	vhu_set_log_fn(NULL, NULL);
	vhu_set_log_level(VHU_LOG_WARN);
}

/* Two vhu-blk on one image (a migration's source A and destination B):
 * B opens while A serves, gets no access while A writes, and takes the
 * image once A's queue stopped. */
TEST(second_writer_waits_for_the_hand_over)
{
	struct vhu_blk_opts oa = { 0 }, ob = { .blk_size = 512 };
	struct ctx a, b;

	ctx_open(&a, &oa, true);
	fill(a.data, 4096, 1);
	CHECK_EQ(one(&a, VHU_BLK_T_OUT, 16, 4096, false, NULL), VHU_BLK_S_OK);
	ob.path = a.img;
	ctx_open(&b, &ob, false);
	CHECK_EQ(vhu_blk_lock_state(b.blk), VHU_BLK_LOCK_SHARED);
	ctx_connect(&b);
	CHECK_EQ(vhu_blk_lock_state(b.blk), VHU_BLK_LOCK_CONFLICT);
	CHECK_EQ(vhu_blk_lock_state(a.blk), VHU_BLK_LOCK_WRITE);
	/* nothing served, nothing written */
	memset(b.data, 0xee, 4096);
	CHECK_EQ(one(&b, VHU_BLK_T_OUT, 16, 4096, false, NULL), VHU_BLK_S_IOERR);
	CHECK_EQ(one(&b, VHU_BLK_T_IN, 16, 4096, true, NULL), VHU_BLK_S_IOERR);
	CHECK_EQ(img_byte(&a, 16 * 512), a.data[0]);
	/* A's guest stops: the next start of B's queue takes the lock */
	CHECK_EQ(vhu_fe_vq_stop(a.fe, 0, NULL), 0);
	CHECK_EQ(vhu_blk_lock_state(a.blk), VHU_BLK_LOCK_SHARED);
	vhu_fe_close(b.fe);
	for (int i = 0; i < 2000 &&
	     vhu_blk_lock_state(b.blk) != VHU_BLK_LOCK_SHARED; i++)
		usleep(1000);
	CHECK_EQ(vhu_blk_lock_state(b.blk), VHU_BLK_LOCK_SHARED);
	ctx_connect(&b);
	CHECK_EQ(vhu_blk_lock_state(b.blk), VHU_BLK_LOCK_WRITE);
	memset(b.data, 0xee, 4096);
	CHECK_EQ(one(&b, VHU_BLK_T_OUT, 16, 4096, false, NULL), VHU_BLK_S_OK);
	CHECK_EQ(img_byte(&a, 16 * 512), 0xee);
	ctx_close(&b);
	ctx_close(&a);
}

/* Other processes' locks, as QEMU's file driver sets them (-1 ends). */
#define QEMU_WRITER { READ, WRITE, RESIZE, NOSHARE_WRITE, NOSHARE_WRITE + 2, -1 }
#define VHU_WRITER { READ, WRITE, RESIZE, NOSHARE_WRITE, HANDOVER, -1 }

static const struct {
	const char *what;
	bool ro, no_lock;
	int bytes[6];
	const char *refusal;     /* NULL: opens */
} opens[] = {
	{ "a QEMU writer", false, false, QEMU_WRITER,
	  "with the write permission, and is no vhu-blk" },
	{ "a reader that does not share write", false, false,
	  { READ, NOSHARE_WRITE, -1 }, "read-only and does not share the write" },
	{ "a process that does not share read", false, false,
	  { NOSHARE_READ, -1 }, "consistent read" },
	/* qemu-storage-daemon, qemu-io: share write, keep it while they run */
	{ "a writer sharing write", false, false, { READ, WRITE, -1 },
	  "with the write permission" },
	{ "a writer, for a read-only open", true, false, { READ, WRITE, -1 },
	  "holds the write permission" },
	/* a migration's source: it hands over */
	{ "a vhu-blk writing now", false, false, VHU_WRITER, NULL },
	{ "a QEMU writer, with --lock off", false, true, QEMU_WRITER, NULL },
};

TEST(what_an_open_still_refuses)
{
	char dir[] = "/tmp/vhu-blk-lock-XXXXXX", img[64], err[300];
	struct vhu_blk *blk;
	int fd;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(img, sizeof(img), "%s/img", dir);
	fd = open(img, O_CREAT | O_RDWR, 0600);
	CHECK(fd >= 0 && ftruncate(fd, IMG_SIZE) == 0);
	close(fd);
	for (size_t i = 0; i < sizeof(opens) / sizeof(opens[0]); i++) {
		struct vhu_blk_opts o = { .path = img, .num_queues = 1,
					  .blk_size = 512, .read_only = opens[i].ro,
					  .no_lock = opens[i].no_lock,
					  .err = err, .err_len = sizeof(err) };
		unsigned n = 0;
		int r;

		while (opens[i].bytes[n] >= 0)
			n++;
		fd = holder(img, opens[i].bytes, n);
		err[0] = 0;
		blk = NULL;
		r = vhu_blk_new(&o, &blk);
		close(fd);
		printf("# %s: %d %s\n", opens[i].what, r, err);
		if (opens[i].refusal) {
			CHECK_EQ(r, -EBUSY);
			CHECK(strstr(err, opens[i].refusal));
			continue;
		}
		CHECK_EQ(r, 0);
		CHECK_EQ(vhu_blk_lock_state(blk), opens[i].no_lock ?
			 VHU_BLK_LOCK_OFF : VHU_BLK_LOCK_SHARED);
		CHECK_EQ(held(img, READ), !opens[i].no_lock);
		vhu_blk_free(blk);
	}
	/* after the device is gone, nothing is left locked */
	CHECK(!held(img, READ) && !held(img, WRITE));
	unlink(img);
	rmdir(dir);
}

/* A writer that came after the open (QEMU with share-rw=on, which an
 * idle vhu-blk lets in) is there at the queue start: no access. */
TEST(a_writer_present_at_queue_start_means_no_access)
{
	static const int shared_writer[] = { READ, WRITE };
	struct vhu_blk_opts o = { 0 };
	struct ctx c;
	int fd;

	ctx_open(&c, &o, false);
	fd = holder(c.img, shared_writer, 2);
	ctx_connect(&c);
	CHECK_EQ(vhu_blk_lock_state(c.blk), VHU_BLK_LOCK_CONFLICT);
	CHECK(!held(c.img, NOSHARE_WRITE) && !held(c.img, HANDOVER));
	CHECK_EQ(one(&c, VHU_BLK_T_FLUSH, 0, 0, false, NULL), VHU_BLK_S_IOERR);
	close(fd);
	ctx_close(&c);
}

/* A resize needs the resize permission for its whole length: refused
 * (the image unchanged, the reason said) while another process does not
 * share it, done once it is gone, and given back after. */
TEST(resize_needs_the_resize_permission)
{
	static const int qemu_writer[] = { READ, WRITE, RESIZE, NOSHARE_WRITE,
					   NOSHARE_RESIZE };
	struct vhu_blk_opts o = { 0 };
	struct stat st;
	struct ctx c;
	int fd;

	ctx_open(&c, &o, false);
	fd = holder(c.img, qemu_writer, 5);
	CHECK_EQ(vhu_blk_resize(c.blk, IMG_SIZE / 2, VHU_BLK_RESIZE_SHRINK),
		 -EBUSY);
	CHECK(vhu_blk_resize_error(c.blk) &&
	      strstr(vhu_blk_resize_error(c.blk), "does not share the resize"));
	CHECK_EQ(vhu_blk_resize(c.blk, IMG_SIZE * 2, 0), -EBUSY);
	CHECK(stat(c.img, &st) == 0 && st.st_size == IMG_SIZE);
	CHECK_EQ(vhu_blk_size(c.blk), (uint64_t)IMG_SIZE);
	close(fd);
	CHECK_EQ(vhu_blk_resize(c.blk, IMG_SIZE / 2, VHU_BLK_RESIZE_SHRINK), 0);
	CHECK(vhu_blk_resize_error(c.blk) == NULL);
	CHECK(stat(c.img, &st) == 0 && st.st_size == IMG_SIZE / 2);
	CHECK(!held(c.img, RESIZE));
	CHECK_EQ(vhu_blk_resize(c.blk, IMG_SIZE, 0), 0);
	/* with its queue running it holds the permission, and keeps it */
	ctx_connect(&c);
	CHECK_EQ(vhu_blk_lock_state(c.blk), VHU_BLK_LOCK_WRITE);
	CHECK_EQ(vhu_blk_resize(c.blk, IMG_SIZE / 2, VHU_BLK_RESIZE_SHRINK), 0);
	CHECK(held(c.img, RESIZE) && held(c.img, WRITE));
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 8, 4096, false, NULL), VHU_BLK_S_OK);
	ctx_close(&c);
}

int main(void)
{
	return tap_run();
}
