/* SPDX-License-Identifier: MIT */
/* The table of the devices the tools know. */
#include <stddef.h>
#include <string.h>

#include "device.h"

static const struct vhu_tool_device *const all[] = {
	&vhu_tool_dev_blk, &vhu_tool_dev_rng, &vhu_tool_dev_vsock,
	&vhu_tool_dev_generic,
};

const struct vhu_tool_device *vhu_tool_device_find(const char *name)
{
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (!strcmp(all[i]->name, name))
			return all[i];
	return NULL;
}

const char *vhu_tool_device_names(void)
{
	return "blk|rng|vsock|generic";
}

const struct vhu_tool_device *vhu_tool_device_arg(const char *cmd,
						  const char *name)
{
	const struct vhu_tool_device *d = vhu_tool_device_find(name);
	if (!d)
		fprintf(stderr, "vhu %s: unknown --device %s (one of %s)\n", cmd,
			name, vhu_tool_device_names());
	return d;
}
