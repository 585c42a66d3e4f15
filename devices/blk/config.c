/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk config space (virtio 1.2, 5.2.4), little endian, 96 bytes.
 * Built from the device state on every read so that capacity and wce are
 * never stale.
 */
#include <endian.h>
#include <string.h>

#include "blk.h"

static void put16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

void vhu_blk_config_build(const struct vhu_blk_config_in *in,
			  uint8_t out[VHU_BLK_CONFIG_SIZE])
{
	uint32_t lbs = in->blk_size >> VHU_BLK_SECTOR_SHIFT;
	/* Discards finer than the host's granularity do nothing there. */
	uint32_t dalign = in->discard_align > in->blk_size ?
				  in->discard_align >> VHU_BLK_SECTOR_SHIFT : lbs;

	memset(out, 0, VHU_BLK_CONFIG_SIZE);
	put64(out + 0, in->capacity);
	put32(out + 8, VHU_BLK_SIZE_MAX);        /* size_max */
	put32(out + 12, VHU_BLK_SEG_MAX);        /* seg_max */
	/* 16..19: geometry, not offered */
	put32(out + 20, in->blk_size);           /* blk_size */
	out[24] = 0;                             /* physical_block_exp */
	out[25] = 0;                             /* alignment_offset */
	put16(out + 26, 1);                      /* min_io_size (blocks) */
	put32(out + 28, 0);                      /* opt_io_size: no hint */
	out[32] = in->wce ? 1 : 0;               /* writeback */
	put16(out + 34, (uint16_t)in->num_queues);
	put32(out + 36, VHU_BLK_MAX_DISCARD_SECTORS);
	put32(out + 40, VHU_BLK_MAX_DISCARD_SEG);
	put32(out + 44, dalign);                 /* discard_sector_alignment */
	put32(out + 48, VHU_BLK_MAX_DISCARD_SECTORS);
	put32(out + 52, VHU_BLK_MAX_DISCARD_SEG);
	out[56] = 1;                             /* write_zeroes_may_unmap */
}
