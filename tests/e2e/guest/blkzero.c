/*
 * blkzero DEVICE OFFSET LENGTH: issue BLKZEROOUT on a block device.
 *
 * Busybox has no "blkdiscard -z"; this tiny helper is linked statically on
 * the host and copied into the guest image.  When the device advertises
 * VIRTIO_BLK_F_WRITE_ZEROES (write_zeroes_max_bytes > 0 in sysfs) the guest
 * kernel turns the ioctl into VIRTIO_BLK_T_WRITE_ZEROES requests.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	uint64_t range[2];
	char *end;
	int fd;

	if (argc != 4) {
		fprintf(stderr, "usage: %s DEVICE OFFSET LENGTH\n", argv[0]);
		return 2;
	}
	errno = 0;
	range[0] = strtoull(argv[2], &end, 0);
	if (errno || *end) {
		fprintf(stderr, "bad offset\n");
		return 2;
	}
	range[1] = strtoull(argv[3], &end, 0);
	if (errno || *end) {
		fprintf(stderr, "bad length\n");
		return 2;
	}
	fd = open(argv[1], O_WRONLY);
	if (fd < 0) {
		fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (ioctl(fd, BLKZEROOUT, range) < 0) {
		fprintf(stderr, "BLKZEROOUT: %s\n", strerror(errno));
		close(fd);
		return 1;
	}
	if (fsync(fd) < 0) {
		fprintf(stderr, "fsync: %s\n", strerror(errno));
		close(fd);
		return 1;
	}
	close(fd);
	return 0;
}
