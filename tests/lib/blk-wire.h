/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk wire structures a test driver writes (virtio 1.2, 5.2.6):
 * the request header and a discard / write-zeroes segment, little-endian.
 */
#ifndef VHU_TEST_BLK_WIRE_H
#define VHU_TEST_BLK_WIRE_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

/* 16 bytes: type, reserved (0), sector. */
static inline void put_hdr(uint8_t *p, uint32_t type, uint64_t sector)
{
	uint32_t t = htole32(type), z = 0;
	uint64_t s = htole64(sector);

	memcpy(p, &t, 4);
	memcpy(p + 4, &z, 4);
	memcpy(p + 8, &s, 8);
}

/* 16 bytes: sector, num_sectors, flags. */
static inline void put_seg(uint8_t *p, uint64_t sector, uint32_t n,
			   uint32_t flags)
{
	uint64_t s = htole64(sector);
	uint32_t nn = htole32(n), f = htole32(flags);

	memcpy(p, &s, 8);
	memcpy(p + 8, &nn, 4);
	memcpy(p + 12, &f, 4);
}

#endif
