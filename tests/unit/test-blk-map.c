/* SPDX-License-Identifier: MIT */
/*
 * Images in memory (tmpfs): vhu-blk copies their data through a mapping
 * (devices/blk/imgmap.c).  The mapping must be invisible except for the
 * CPU it saves: the same data, no page allocated for a read of a hole,
 * an image truncated from outside answered IOERR (not SIGBUS), a full
 * tmpfs answered IOERR, a grown image served in its new part.
 */
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "blk-harness.h"
#include "blk-int.h"

/* libvhu's guard of shared memory (src/sigbus.c; the library is linked
 * statically here), to stand for guest memory a front-end truncated. */
int vhu__guard_add(void *addr, size_t len, size_t granule);
void vhu__guard_del(int slot);
bool vhu__guard_take_thread_fault(void);
bool vhu__guard_lost(const void *addr, size_t len);
#include "tap.h"

#define SHM_DIR "/dev/shm"

/* An image of n bytes in /dev/shm: dense (every byte written, seeded
 * pattern) or sparse (a hole). */
static void make_img(char *path, size_t plen, const char *dir, size_t n,
		     bool dense)
{
	int fd;

	snprintf(path, plen, "%s/vhu-blk-map-XXXXXX", dir);
	fd = mkstemp(path);
	CHECK(fd >= 0);
	CHECK_EQ(ftruncate(fd, (off_t)n), 0);
	if (dense) {
		uint8_t *buf = malloc(n);

		CHECK(buf != NULL);
		fill(buf, n, 7);
		CHECK_EQ(pwrite(fd, buf, n, 0), (ssize_t)n);
		free(buf);
	}
	close(fd);
}

static uint64_t allocated(const char *path)
{
	struct stat st;

	CHECK_EQ(stat(path, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

/* Is the image mapped in this process (/proc/self/maps names it)? */
static bool mapped(const char *path)
{
	char line[512];
	bool found = false;
	FILE *f = fopen("/proc/self/maps", "r");

	CHECK(f != NULL);
	while (fgets(line, sizeof(line), f))
		if (strstr(line, path))
			found = true;
	fclose(f);
	return found;
}

static void open_img(struct ctx *c, const char *path)
{
	struct vhu_blk_opts o = { .path = path, .blk_size = 512 };

	ctx_open(c, &o, true);
}

TEST(dense_image_is_mapped_and_reads_writes_match_the_file)
{
	char path[128];
	uint8_t want[8192], buf[8192];
	struct ctx c;

	make_img(path, sizeof(path), SHM_DIR, IMG_SIZE, true);
	open_img(&c, path);
	CHECK(mapped(path));
	/* reads see what the file holds */
	pread_img(&c, want, sizeof(want), 40 * 512);
	memset(c.data, 0, sizeof(want));
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 40, sizeof(want), true, NULL), VHU_BLK_S_OK);
	CHECK_MEM(c.data, want, sizeof(want));
	/* writes land in the file, for its readers too */
	fill(c.data, sizeof(buf), 11);
	memcpy(want, c.data, sizeof(want));
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 1000, sizeof(want), false, NULL),
		 VHU_BLK_S_OK);
	pread_img(&c, buf, sizeof(buf), 1000 * 512);
	CHECK_MEM(buf, want, sizeof(want));
	/* the last sector of the image */
	CHECK_EQ(one(&c, VHU_BLK_T_IN, IMG_SIZE / 512 - 1, 512, true, NULL),
		 VHU_BLK_S_OK);
	CHECK_EQ(one(&c, VHU_BLK_T_IN, IMG_SIZE / 512 - 1, 1024, true, NULL),
		 VHU_BLK_S_IOERR);
	ctx_close(&c);
	CHECK(!mapped(path));
	unlink(path);
}

TEST(reading_holes_allocates_nothing)
{
	char path[128];
	struct ctx c;

	make_img(path, sizeof(path), SHM_DIR, IMG_SIZE, false);
	open_img(&c, path);
	for (uint64_t s = 0; s < IMG_SIZE / 512; s += DATA_SIZE / 512) {
		memset(c.data, 0xee, DATA_SIZE);
		CHECK_EQ(one(&c, VHU_BLK_T_IN, s, DATA_SIZE, true, NULL),
			 VHU_BLK_S_OK);
		CHECK_EQ(c.data[0], 0);
		CHECK_EQ(c.data[DATA_SIZE - 1], 0);
	}
	CHECK_EQ(allocated(path), 0);
	/* a write allocates its pages, and only those */
	fill(c.data, 4096, 3);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 8, 4096, false, NULL), VHU_BLK_S_OK);
	CHECK_EQ(allocated(path), 4096);
	ctx_close(&c);
	unlink(path);
}

TEST(discard_then_reads_allocate_nothing)
{
	char path[128];
	struct ctx c;
	uint8_t *seg;

	make_img(path, sizeof(path), SHM_DIR, IMG_SIZE, true);
	open_img(&c, path);
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 0, 4096, true, NULL), VHU_BLK_S_OK);
	/* discard the second half */
	seg = c.data;
	put_seg(seg, IMG_SIZE / 1024, IMG_SIZE / 1024, 0);
	CHECK_EQ(one(&c, VHU_BLK_T_DISCARD, 0, 16, false, NULL), VHU_BLK_S_OK);
	CHECK_EQ(allocated(path), IMG_SIZE / 2);
	for (uint64_t s = IMG_SIZE / 1024; s < IMG_SIZE / 512; s += DATA_SIZE / 512)
		CHECK_EQ(one(&c, VHU_BLK_T_IN, s, DATA_SIZE, true, NULL),
			 VHU_BLK_S_OK);
	CHECK_EQ(allocated(path), IMG_SIZE / 2);
	ctx_close(&c);
	unlink(path);
}

TEST(image_truncated_outside_is_ioerr_not_sigbus)
{
	char path[128];
	uint8_t want[4096];
	struct ctx c;

	make_img(path, sizeof(path), SHM_DIR, IMG_SIZE, true);
	open_img(&c, path);
	CHECK(mapped(path));
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 1500, 4096, true, NULL), VHU_BLK_S_OK);
	/* someone else cuts the file to a quarter under the device */
	CHECK_EQ(truncate(path, IMG_SIZE / 4), 0);
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 1500, 4096, true, NULL), VHU_BLK_S_IOERR);
	/* below the cut, reads go on */
	pread_img(&c, want, sizeof(want), 8 * 512);
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 8, 4096, true, NULL), VHU_BLK_S_OK);
	CHECK_MEM(c.data, want, sizeof(want));
	/* a write past the cut goes to the file as a write call would
	 * (extending it), never into a page that is gone */
	fill(c.data, sizeof(want), 5);
	memcpy(want, c.data, sizeof(want));
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 1500, 4096, false, NULL), VHU_BLK_S_OK);
	uint8_t buf[4096];
	pread_img(&c, buf, sizeof(buf), 1500 * 512);
	CHECK_MEM(buf, want, sizeof(want));
	/* The file has a hole now between the cut and that write: reading
	 * it allocates nothing (the mapping, which would, is dropped) */
	uint64_t before = allocated(path);
	memset(c.data, 0xaa, 4096);
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 1000, 4096, true, NULL), VHU_BLK_S_OK);
	CHECK_EQ(c.data[0], 0);
	CHECK_EQ(c.data[4095], 0);
	CHECK_EQ(allocated(path), before);
	ctx_close(&c);
	unlink(path);
}

/* A copy that faults in guest memory (the front-end truncated it), not
 * in the image: libvhu's guard must see the fault (it records the loss
 * and breaks the queue), not the image mapping's handler. */
TEST(guest_memory_fault_in_a_copy_goes_to_the_guard)
{
	char path[128];
	struct ctx c;
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);

	make_img(path, sizeof(path), SHM_DIR, IMG_SIZE, true);
	open_img(&c, path);
	CHECK(mapped(path));
	int mfd = memfd_create("vhu-test-guest", MFD_CLOEXEC);
	CHECK(mfd >= 0);
	CHECK_EQ(ftruncate(mfd, (off_t)(2 * pg)), 0);
	uint8_t *g = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED,
			  mfd, 0);
	CHECK(g != MAP_FAILED);
	int slot = vhu__guard_add(g, 2 * pg, 0);
	CHECK(slot >= 0);
	CHECK_EQ(ftruncate(mfd, 0), 0);
	(void)vhu__guard_take_thread_fault();

	struct iovec iov = { g, 4096 };
	struct vhu_blk_req req = {
		.type = VHU_BLK_T_IN, .sector = 8, .data = &iov, .n_data = 1,
		.data_len = 4096,
	};
	/* The guard absorbed it (the copy went on into zero pages)... */
	CHECK_EQ(vhu__blk_map_copy(c.blk, &req), 4096);
	/* ...and knows this thread faulted: the ring code breaks the queue */
	CHECK(vhu__guard_take_thread_fault());
	CHECK(vhu__guard_lost(g, 2 * pg));
	vhu__guard_del(slot);
	munmap(g, 2 * pg);
	close(mfd);
	/* the image mapping is untouched: reads still go through it */
	uint8_t want[4096];
	pread_img(&c, want, sizeof(want), 8 * 512);
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 8, 4096, true, NULL), VHU_BLK_S_OK);
	CHECK_MEM(c.data, want, sizeof(want));
	ctx_close(&c);
	unlink(path);
}

TEST(grown_image_is_served_in_its_new_part)
{
	char path[128];
	uint8_t want[4096], buf[4096];
	struct ctx c;

	make_img(path, sizeof(path), SHM_DIR, IMG_SIZE, true);
	open_img(&c, path);
	resize_async(&c, IMG_SIZE * 4, 0);
	CHECK_EQ(resize_wait(&c, 1), 0);
	/* the new part reads as zeros and allocates nothing */
	CHECK_EQ(one(&c, VHU_BLK_T_IN, IMG_SIZE * 3 / 512, 4096, true, NULL),
		 VHU_BLK_S_OK);
	CHECK_EQ(c.data[0], 0);
	CHECK_EQ(allocated(path), IMG_SIZE);
	fill(c.data, sizeof(want), 9);
	memcpy(want, c.data, sizeof(want));
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, IMG_SIZE * 4 / 512 - 8, 4096, false,
		     NULL), VHU_BLK_S_OK);
	pread_img(&c, buf, sizeof(buf), IMG_SIZE * 4 - 4096);
	CHECK_MEM(buf, want, sizeof(want));
	memset(c.data, 0, sizeof(want));
	CHECK_EQ(one(&c, VHU_BLK_T_IN, IMG_SIZE * 4 / 512 - 8, 4096, true, NULL),
		 VHU_BLK_S_OK);
	CHECK_MEM(c.data, want, sizeof(want));
	ctx_close(&c);
	unlink(path);
}

/* A tmpfs of its own, too small for the image's holes to be filled: the
 * write that finds no space is IOERR, and the device goes on. */
TEST(full_tmpfs_write_is_ioerr)
{
	char dir[] = "/tmp/vhu-blk-map-fs-XXXXXX", path[128];
	struct ctx c;

	if (geteuid() != 0)
		tap_skip("needs root to mount a small tmpfs");
	CHECK(mkdtemp(dir) != NULL);
	CHECK_EQ(unshare(CLONE_NEWNS), 0);
	CHECK_EQ(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
	CHECK_EQ(mount("vhu-test", dir, "tmpfs", 0, "size=256k"), 0);
	make_img(path, sizeof(path), dir, 128 << 10, true);
	/* grow the file past the space left: the new part is a hole */
	CHECK_EQ(truncate(path, IMG_SIZE), 0);
	open_img(&c, path);
	CHECK(mapped(path));
	fill(c.data, DATA_SIZE, 4);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 0, DATA_SIZE, false, NULL), VHU_BLK_S_OK);
	uint8_t st = VHU_BLK_S_OK;
	for (uint64_t s = 256; s < IMG_SIZE / 512 && st == VHU_BLK_S_OK;
	     s += DATA_SIZE / 512)
		st = one(&c, VHU_BLK_T_OUT, s, DATA_SIZE, false, NULL);
	CHECK_EQ(st, VHU_BLK_S_IOERR);
	/* the device still serves what fits */
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 0, DATA_SIZE, true, NULL), VHU_BLK_S_OK);
	ctx_close(&c);
	unlink(path);
	CHECK_EQ(umount(dir), 0);
	rmdir(dir);
}

int main(void)
{
	/* As vhu-blk does: libvhu's guard first, the image mapping's
	 * handler on top of it when an image is mapped. */
	if (vhu_sigbus_guard_install() < 0)
		return 1;
	return tap_run();
}
