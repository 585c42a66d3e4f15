/* SPDX-License-Identifier: MIT */
/*
 * Any other device: nothing known of its features or requests; its config
 * space (if any) is shown raw, and "the session serves" is a handshake.
 */
#include <stddef.h>

#include "device.h"

/* The vhost-user limit (256 bytes) down to small structs. */
static const unsigned generic_sizes[] = { 256, 128, 96, 64, 60, 32, 16, 8, 4, 0 };

const struct vhu_tool_device vhu_tool_dev_generic = {
	.name = "generic",
	.id = 0,
	.title = "unknown device",
	.config_sizes = generic_sizes,
};
