/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk (device id 2): feature names, the config space (virtio 1.2,
 * 5.2.4) and a verified write and read back as "the session serves".
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "blk.h"
#include "device.h"
#include "tool-common.h"

#define BIT(b) (1ull << (b))

static const char *blk_feature_name(unsigned bit)
{
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

/* The fields by offset */
struct blk_cfg {
	unsigned len;
	uint64_t capacity;
	uint32_t size_max, seg_max, blk_size;
	uint8_t wce;
	uint16_t num_queues;
	uint32_t max_discard_sectors, max_discard_seg, discard_align;
	uint32_t max_wz_sectors, max_wz_seg;
	uint8_t wz_may_unmap;
};

static void blk_decode(const uint8_t *b, unsigned len, struct blk_cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->len = len;
	if (len >= 8)
		c->capacity = le64_at(b, 0);
	if (len >= 16) {
		c->size_max = le32_at(b, 8);
		c->seg_max = le32_at(b, 12);
	}
	if (len >= 24)
		c->blk_size = le32_at(b, 20);
	if (len >= 33)
		c->wce = b[32];
	if (len >= 36)
		c->num_queues = le16_at(b, 34);
	if (len >= 48) {
		c->max_discard_sectors = le32_at(b, 36);
		c->max_discard_seg = le32_at(b, 40);
		c->discard_align = le32_at(b, 44);
	}
	if (len >= 57) {
		c->max_wz_sectors = le32_at(b, 48);
		c->max_wz_seg = le32_at(b, 52);
		c->wz_may_unmap = b[56];
	}
}

static void blk_fields(const uint8_t *b, unsigned len, vhu_tool_emit_fn emit,
		       void *ctx)
{
	struct blk_cfg c;
	blk_decode(b, len, &c);
	emit(ctx, "config_bytes", c.len);
	emit(ctx, "capacity_sectors", c.capacity);
	emit(ctx, "capacity_bytes", c.capacity * 512);
	emit(ctx, "size_max", c.size_max);
	emit(ctx, "seg_max", c.seg_max);
	emit(ctx, "blk_size", c.blk_size);
	emit(ctx, "wce", c.wce);
	emit(ctx, "num_queues", c.num_queues);
	emit(ctx, "max_discard_sectors", c.max_discard_sectors);
	emit(ctx, "max_discard_seg", c.max_discard_seg);
	emit(ctx, "discard_sector_alignment", c.discard_align);
	emit(ctx, "max_write_zeroes_sectors", c.max_wz_sectors);
	emit(ctx, "max_write_zeroes_seg", c.max_wz_seg);
	emit(ctx, "write_zeroes_may_unmap", c.wz_may_unmap);
}

static const char *offered(uint64_t features, unsigned bit)
{
	return features & BIT(bit) ? "" : " (feature not offered)";
}

static void blk_print(FILE *f, const uint8_t *b, unsigned len,
		      uint64_t features)
{
	struct blk_cfg c;
	blk_decode(b, len, &c);
	fprintf(f, "config (virtio-blk, %u bytes read):\n", c.len);
	fprintf(f, "  capacity: %" PRIu64 " sectors (%" PRIu64 " bytes, %.2f GiB)\n",
		c.capacity, c.capacity * 512,
		(double)c.capacity * 512 / (1024.0 * 1024 * 1024));
	if (c.len >= 16) {
		fprintf(f, "  size_max: %" PRIu32 "%s\n", c.size_max,
			offered(features, BLK_F_SIZE_MAX));
		fprintf(f, "  seg_max: %" PRIu32 "%s\n", c.seg_max,
			offered(features, BLK_F_SEG_MAX));
	}
	if (c.len >= 24)
		fprintf(f, "  blk_size: %" PRIu32 "%s\n", c.blk_size,
			offered(features, BLK_F_BLK_SIZE));
	if (c.len >= 33)
		fprintf(f, "  wce: %u (%s)\n", c.wce,
			c.wce ? "writeback" : "writethrough");
	if (c.len >= 36)
		fprintf(f, "  num_queues: %u\n", c.num_queues);
	if (c.len >= 48)
		fprintf(f, "  discard: max_sectors %" PRIu32 ", max_seg %" PRIu32
			", sector_alignment %" PRIu32 "%s\n",
			c.max_discard_sectors, c.max_discard_seg,
			c.discard_align, offered(features, BLK_F_DISCARD));
	if (c.len >= 57)
		fprintf(f, "  write_zeroes: max_sectors %" PRIu32 ", max_seg %" PRIu32
			", may_unmap %u%s\n", c.max_wz_sectors, c.max_wz_seg,
			c.wz_may_unmap, offered(features, BLK_F_WRITE_ZEROES));
}

/* ----------------------------------------------------- verified I/O */

static int fail(char *why, int err, const char *what, uint64_t sector,
		unsigned st)
{
	snprintf(why, VHU_TOOL_WHY, "%s at sector %llu: status %u", what,
		 (unsigned long long)sector, st);
	return err;
}

/* Header, data, status in three buffers (the layout every driver uses). */
static int blk_rw(struct vhu_tool_io *io, uint32_t type, uint64_t sector,
		  uint32_t len, uint8_t *status, char *why)
{
	struct blk_hdr hdr = { type, 0, sector };
	memcpy(io->hdr, &hdr, sizeof(hdr));
	io->hdr[16] = 0xff;
	struct vhu_tool_seg seg[3] = {
		{ io->hdr, 16, false },
		{ io->data, len, type == BLK_T_IN },
		{ io->hdr + 16, 1, true },
	};
	uint32_t written;
	int r = io->request(io, seg, 3, &written, why);
	if (r == 0)
		*status = io->hdr[16];
	return r;
}

/* OUT a seeded pattern, IN it back, compare. */
static int blk_serves(struct vhu_tool_io *io, unsigned seed, char *why)
{
	enum { LEN = 8192 };
	static uint8_t want[LEN];
	uint64_t sectors = LEN / 512, capacity;
	if (io->data_cap < LEN) {
		snprintf(why, VHU_TOOL_WHY, "a data buffer of %u bytes is too "
			 "small", io->data_cap);
		return -EINVAL;
	}
	int r = io->get_config(io, 0, &capacity, 8, why);
	if (r < 0)
		return r;
	if (capacity < sectors) {
		snprintf(why, VHU_TOOL_WHY, "capacity %llu sectors is too small",
			 (unsigned long long)capacity);
		return -ENOSPC;
	}
	uint64_t slots = capacity / sectors;
	if (slots > 64)
		slots = 64;
	uint64_t sector = (seed % slots) * sectors;
	uint8_t st;

	vhu_tool_pattern(want, LEN, seed);
	memcpy(io->data, want, LEN);
	if (io->null_disk)
		memset(want, 0, LEN);
	r = blk_rw(io, BLK_T_OUT, sector, LEN, &st, why);
	if (r < 0)
		return r;
	if (st != BLK_S_OK)
		return fail(why, -EIO, "write", sector, st);
	memset(io->data, io->null_disk ? 0xa5 : 0, LEN);
	r = blk_rw(io, BLK_T_IN, sector, LEN, &st, why);
	if (r < 0)
		return r;
	if (st != BLK_S_OK)
		return fail(why, -EIO, "read", sector, st);
	if (memcmp(io->data, want, LEN) != 0) {
		snprintf(why, VHU_TOOL_WHY, "data read back at sector %llu differs",
			 (unsigned long long)sector);
		return -EIO;
	}
	return 0;
}

/* Back-ends refuse sizes beyond their config struct: the common layouts
 * from the largest down (virtio 1.2, 5.2.4). */
static const unsigned blk_sizes[] = { 96, 72, 60, 57, 48, 36, 24, 8, 0 };

const struct vhu_tool_device vhu_tool_dev_blk = {
	.name = "blk",
	.id = VHU_TOOL_ID_BLK,
	.title = "virtio-blk",
	.config_sizes = blk_sizes,
	.feature_name = blk_feature_name,
	.config_print = blk_print,
	.config_fields = blk_fields,
	.serves = blk_serves,
	.blk = true,
};
