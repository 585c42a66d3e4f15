/* SPDX-License-Identifier: MIT */
/* Feature-bit names for probe output: virtio-blk device bits here, the
 * transport and protocol bits from the library. */
#include <stddef.h>

#include "cli.h"

static const char *transport_name(unsigned bit)
{
	return vhu_feature_name(bit);
}

const char *tool_protocol_feature_name(unsigned bit)
{
	return vhu_protocol_feature_name(bit);
}

static const char *blk_name(unsigned bit)
{
	/* virtio 1.2, 5.2.3 */
	switch (bit) {
	case BLK_F_SIZE_MAX: return "BLK_SIZE_MAX";
	case BLK_F_SEG_MAX: return "BLK_SEG_MAX";
	case BLK_F_GEOMETRY: return "BLK_GEOMETRY";
	case BLK_F_RO: return "BLK_RO";
	case BLK_F_BLK_SIZE: return "BLK_BLK_SIZE";
	case BLK_F_FLUSH: return "BLK_FLUSH";
	case BLK_F_TOPOLOGY: return "BLK_TOPOLOGY";
	case BLK_F_CONFIG_WCE: return "BLK_CONFIG_WCE";
	case BLK_F_MQ: return "BLK_MQ";
	case BLK_F_DISCARD: return "BLK_DISCARD";
	case BLK_F_WRITE_ZEROES: return "BLK_WRITE_ZEROES";
	case BLK_F_LIFETIME: return "BLK_LIFETIME";
	case BLK_F_SECURE_ERASE: return "BLK_SECURE_ERASE";
	case BLK_F_ZONED: return "BLK_ZONED";
	default: return NULL;
	}
}

const char *tool_feature_name(unsigned bit, bool blk)
{
	/* Bits 0-23 are device-specific (virtio 1.2, 2.2). */
	if (bit < 24)
		return blk ? blk_name(bit) : NULL;
	/* vhost's own bit 26: dirty logging (vhost-user.rst "Migration") */
	if (bit == 26)
		return "LOG_ALL";
	return transport_name(bit);
}
