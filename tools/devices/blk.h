/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk on the wire (virtio 1.2, 5.2): the constants the blk module,
 * vhu bench and the checker's block cases share, in one place.
 */
#ifndef VHU_TOOL_BLK_H
#define VHU_TOOL_BLK_H

#include <stdint.h>

/* feature bits (5.2.3) */
#define BLK_F_SIZE_MAX      1
#define BLK_F_SEG_MAX       2
#define BLK_F_GEOMETRY      4
#define BLK_F_RO            5
#define BLK_F_BLK_SIZE      6
#define BLK_F_FLUSH         9
#define BLK_F_TOPOLOGY     10
#define BLK_F_CONFIG_WCE   11
#define BLK_F_MQ           12
#define BLK_F_DISCARD      13
#define BLK_F_WRITE_ZEROES 14
#define BLK_F_LIFETIME     15
#define BLK_F_SECURE_ERASE 16
#define BLK_F_ZONED        17

/* request types and status values (5.2.6) */
#define BLK_T_IN            0u
#define BLK_T_OUT           1u
#define BLK_T_FLUSH         4u
#define BLK_T_GET_ID        8u
#define BLK_T_DISCARD      11u
#define BLK_T_WRITE_ZEROES 13u
#define BLK_S_OK            0u
#define BLK_S_IOERR         1u
#define BLK_S_UNSUPP        2u

/* the request header */
struct blk_hdr {
	uint32_t type;
	uint32_t ioprio;
	uint64_t sector;
};

#endif
