/* SPDX-License-Identifier: MIT */
/* Feature-bit names for probe output: device bits from the device's
 * module (tools/devices), the transport and protocol bits from the
 * library. */
#include <stddef.h>

#include "cli.h"

/* The library's names first; the transport bits it may not name (virtio
 * 1.3, 6) after them, so that probe names every bit the spec defines. */
static const char *transport_name(unsigned bit)
{
	const char *n = vhu_feature_name(bit);
	if (n)
		return n;
	switch (bit) {
	case 36: return "ORDER_PLATFORM";
	case 37: return "SR_IOV";
	case 38: return "NOTIFICATION_DATA";
	case 39: return "NOTIF_CONFIG_DATA";
	case 40: return "RING_RESET";
	case 41: return "ADMIN_VQ";
	default: return NULL;
	}
}

const char *tool_protocol_feature_name(unsigned bit)
{
	return vhu_protocol_feature_name(bit);
}

const char *tool_feature_name(unsigned bit, const struct vhu_tool_device *dev)
{
	/* Bits 0-23 are device-specific (virtio 1.2, 2.2). */
	if (bit < 24)
		return dev && dev->feature_name ? dev->feature_name(bit) : NULL;
	/* vhost's own bit 26: dirty logging (vhost-user.rst "Migration") */
	if (bit == 26)
		return "LOG_ALL";
	return transport_name(bit);
}
