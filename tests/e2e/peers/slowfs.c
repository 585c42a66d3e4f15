/* SPDX-License-Identifier: MIT */
/*
 * slowfs BACKING MOUNTPOINT DELAY_MS: a FUSE file system with one file,
 * MOUNTPOINT/disk.img, that is BACKING with every read and write held for
 * DELAY_MS milliseconds - storage slow enough that a back-end serving it
 * always has requests in flight.  While the file BACKING.hang exists, reads
 * and writes wait until it is removed (a disk that stopped answering).
 *
 * Used by tests/e2e/test-restart.sh: a vhu-blk killed while it serves this
 * file dies with requests taken and not completed, which the next vhu-blk
 * must resubmit.  Every I/O goes through to BACKING (direct_io: no page
 * cache in between).  Runs in the foreground; SIGTERM unmounts.
 * Build: cc slowfs.c $(pkg-config --cflags --libs fuse3)
 */
#define FUSE_USE_VERSION 31
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *backing;
static char hang_path[4096];
static long delay_ms;

static void hold(void)
{
	struct timespec ts = { delay_ms / 1000, (delay_ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
	while (access(hang_path, F_OK) == 0) {
		struct timespec t = { 0, 20 * 1000000L };
		nanosleep(&t, NULL);
	}
}

static int is_file(const char *path) { return strcmp(path, "/disk.img") == 0; }

static int s_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	(void)fi;
	if (strcmp(path, "/") == 0) {
		memset(st, 0, sizeof(*st));
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return 0;
	}
	if (!is_file(path))
		return -ENOENT;
	if (stat(backing, st) < 0)
		return -errno;
	return 0;
}

static int s_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
		     struct fuse_file_info *fi, enum fuse_readdir_flags fl)
{
	(void)off;
	(void)fi;
	(void)fl;
	if (strcmp(path, "/"))
		return -ENOENT;
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	fill(buf, "disk.img", NULL, 0, 0);
	return 0;
}

static int s_open(const char *path, struct fuse_file_info *fi)
{
	if (!is_file(path))
		return -ENOENT;
	int fd = open(backing, (fi->flags & O_ACCMODE) | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	fi->fh = (uint64_t)fd;
	fi->direct_io = 1;
	return 0;
}

static int s_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	close((int)fi->fh);
	return 0;
}

static int s_read(const char *path, char *buf, size_t n, off_t off,
		  struct fuse_file_info *fi)
{
	(void)path;
	hold();
	ssize_t r = pread((int)fi->fh, buf, n, off);
	return r < 0 ? -errno : (int)r;
}

static int s_write(const char *path, const char *buf, size_t n, off_t off,
		   struct fuse_file_info *fi)
{
	(void)path;
	hold();
	ssize_t r = pwrite((int)fi->fh, buf, n, off);
	return r < 0 ? -errno : (int)r;
}

static int s_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	return (datasync ? fdatasync((int)fi->fh) : fsync((int)fi->fh)) < 0 ? -errno : 0;
}

static int s_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	(void)fi;
	if (!is_file(path))
		return -ENOENT;
	return truncate(backing, size) < 0 ? -errno : 0;
}

static const struct fuse_operations ops = {
	.getattr = s_getattr,
	.readdir = s_readdir,
	.open = s_open,
	.release = s_release,
	.read = s_read,
	.write = s_write,
	.fsync = s_fsync,
	.truncate = s_truncate,
};

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s BACKING MOUNTPOINT DELAY_MS\n", argv[0]);
		return 2;
	}
	backing = realpath(argv[1], NULL);
	if (!backing) {
		perror(argv[1]);
		return 1;
	}
	snprintf(hang_path, sizeof(hang_path), "%s.hang", backing);
	delay_ms = strtol(argv[3], NULL, 10);
	char *fargv[] = { argv[0], "-f", "-o", "max_threads=64", argv[2], NULL };
	return fuse_main(5, fargv, &ops, NULL);
}
