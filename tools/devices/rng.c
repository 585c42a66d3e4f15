/* SPDX-License-Identifier: MIT */
/*
 * virtio-rng (device id 4; virtio 1.2, 5.4): one queue of device-writable
 * buffers, no feature bits, no config space.  It serves when a buffer
 * comes back with some bytes written.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "device.h"

static int rng_serves(struct vhu_tool_io *io, unsigned seed, char *why)
{
	(void)seed;
	enum { LEN = 64 };
	if (io->data_cap < LEN) {
		snprintf(why, VHU_TOOL_WHY, "a data buffer of %u bytes is too "
			 "small", io->data_cap);
		return -EINVAL;
	}
	memset(io->data, 0, LEN);
	struct vhu_tool_seg seg = { io->data, LEN, true };
	uint32_t written;
	int r = io->request(io, &seg, 1, &written, why);
	if (r < 0)
		return r;
	/* virtio 1.2, 5.4.6.1: the device MUST place one or more random
	 * bytes into the buffer, and not more than it holds. */
	if (written == 0 || written > LEN) {
		snprintf(why, VHU_TOOL_WHY, "a %u-byte buffer came back with "
			 "used length %u", LEN, written);
		return -EPROTO;
	}
	return 0;
}

const struct vhu_tool_device vhu_tool_dev_rng = {
	.name = "rng",
	.id = VHU_TOOL_ID_RNG,
	.title = "virtio-rng",
	.config_sizes = NULL,
	.serves = rng_serves,
};
