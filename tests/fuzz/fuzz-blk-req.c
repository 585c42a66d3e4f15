/* SPDX-License-Identifier: MIT */
/*
 * Fuzz the virtio-blk request parser and validator (virtio 1.2, 5.2.6):
 * a descriptor chain as the ring hands it over (readable iovecs, then
 * writable ones), each buffer its own heap block of exactly its length so
 * AddressSanitizer sees any byte read or written outside it.
 *
 * Input (little-endian):
 *   u8 n_out (% 9), u8 n_in (% 9), u8 cap (1 + % 16), u8 limits flags
 *   (bit 0 read-only, bit 1 4096-byte blocks), u64 capacity (sectors),
 *   u8 max_discard_seg, u8 max_write_zeroes_seg, u32 max_discard_sectors,
 *   u32 max_write_zeroes_sectors, u32 data_done,
 *   then per buffer u16 length (% 1024) and the rest fills the buffers.
 *
 * Invariants: the status pointer is the last writable byte; data iovecs
 * lie inside the chain's buffers, on the right side of it, never cover
 * the status byte and add up to data_len; n_data <= cap; segments copied
 * only for DISCARD / WRITE_ZEROES, within the limits; written bytes never
 * exceed the writable bytes; GET_ID writes at most 20 bytes.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <vhu/iov.h>

#include "blk.h"
#include "fuzz-common.h"

#define FZ_MAX_BUFS 16u

static bool fz_within(const struct iovec *src, unsigned n, const struct iovec *v)
{
	uintptr_t p = (uintptr_t)v->iov_base;

	for (unsigned i = 0; i < n; i++) {
		uintptr_t lo = (uintptr_t)src[i].iov_base;

		if (p >= lo && p <= lo + src[i].iov_len &&
		    v->iov_len <= lo + src[i].iov_len - p)
			return true;
	}
	return false;
}

static void fz_one(const struct iovec *iov, unsigned n_out, unsigned n_in,
		   unsigned cap, const struct vhu_blk_limits *lim,
		   uint32_t data_done)
{
	struct iovec *data = calloc(cap, sizeof(*data));
	struct vhu_blk_req *req = calloc(1, sizeof(*req));
	const struct iovec *win = iov + n_out;
	size_t in_size = vhu_iov_size(win, n_in);
	int st;

	FZ_ASSERT(data && req, "calloc");
	st = vhu_blk_req_parse(iov, n_out, n_in, req, data, cap);
	if (st == -EINVAL) {
		FZ_ASSERT(in_size == 0, "-EINVAL with %zu writable bytes", in_size);
		goto out;
	}
	FZ_ASSERT(in_size > 0, "parsed a chain without a status byte");
	FZ_ASSERT(st == VHU_BLK_S_OK || st == VHU_BLK_S_IOERR, "parse -> %d", st);

	/* The status byte is the last writable byte. */
	for (unsigned i = n_in; i > 0; i--) {
		if (win[i - 1].iov_len == 0)
			continue;
		FZ_ASSERT(req->status == (uint8_t *)win[i - 1].iov_base +
					 win[i - 1].iov_len - 1, "status pointer");
		break;
	}
	*req->status = 0xee;

	if (st == VHU_BLK_S_OK) {
		bool dev_writes = req->type == VHU_BLK_T_IN ||
				  req->type == VHU_BLK_T_GET_ID;
		const struct iovec *side = dev_writes ? win : iov;
		unsigned side_n = dev_writes ? n_in : n_out;

		FZ_ASSERT(req->data == data && req->n_data <= cap, "data %u/%u",
			  req->n_data, cap);
		FZ_ASSERT(vhu_iov_size(data, req->n_data) == req->data_len,
			  "data_len %zu vs iovecs %zu", req->data_len,
			  vhu_iov_size(data, req->n_data));
		for (unsigned i = 0; i < req->n_data; i++) {
			uintptr_t p = (uintptr_t)data[i].iov_base;
			uintptr_t s = (uintptr_t)req->status;

			FZ_ASSERT(fz_within(side, side_n, &data[i]),
				  "data iovec %u outside the %s buffers", i,
				  dev_writes ? "writable" : "readable");
			FZ_ASSERT(!dev_writes || s < p || s >= p + data[i].iov_len,
				  "data iovec %u covers the status byte", i);
			if (data[i].iov_len)
				((volatile uint8_t *)data[i].iov_base)[data[i].iov_len - 1];
		}

		st = vhu_blk_req_check(req, lim);
		FZ_ASSERT(st == VHU_BLK_S_OK || st == VHU_BLK_S_IOERR ||
			  st == VHU_BLK_S_UNSUPP, "check -> %d", st);
		bool segs = req->type == VHU_BLK_T_DISCARD ||
			    req->type == VHU_BLK_T_WRITE_ZEROES;
		if (!segs || st != VHU_BLK_S_OK)
			FZ_ASSERT(req->n_segs == 0, "%u segments kept for type %u, status %d",
				  req->n_segs, req->type, st);
		if (st == VHU_BLK_S_OK && segs) {
			bool dz = req->type == VHU_BLK_T_DISCARD;
			unsigned max_seg = dz ? lim->max_discard_seg :
					       lim->max_write_zeroes_seg;
			uint32_t max_sec = dz ? lim->max_discard_sectors :
					       lim->max_write_zeroes_sectors;

			FZ_ASSERT(req->n_segs >= 1 && req->n_segs <= max_seg &&
				  req->n_segs <= VHU_BLK_MAX_DISCARD_SEG,
				  "%u segments", req->n_segs);
			for (unsigned i = 0; i < req->n_segs; i++) {
				const struct vhu_blk_seg *g = &req->segs[i];

				FZ_ASSERT(g->num_sectors <= max_sec &&
					  g->sector <= lim->capacity &&
					  g->num_sectors <= lim->capacity - g->sector,
					  "segment %u out of range", i);
			}
		}
		if (st == VHU_BLK_S_OK && (req->type == VHU_BLK_T_IN ||
					   req->type == VHU_BLK_T_OUT)) {
			FZ_ASSERT(!(lim->read_only && req->type == VHU_BLK_T_OUT),
				  "write accepted on a read-only device");
			FZ_ASSERT(req->sector <= lim->capacity &&
				  (req->data_len >> VHU_BLK_SECTOR_SHIFT) <=
				  lim->capacity - req->sector, "I/O out of range");
		}
		if (st == VHU_BLK_S_OK && req->type == VHU_BLK_T_GET_ID) {
			size_t n = vhu_blk_req_get_id(req, "fuzz-serial");

			FZ_ASSERT(n <= VHU_BLK_ID_BYTES && n <= req->data_len,
				  "GET_ID wrote %zu", n);
		}
	}
	uint32_t done = data_done;
	if (done > req->data_len)
		done = (uint32_t)req->data_len;
	uint32_t w = vhu_blk_req_written(req, st, done);
	FZ_ASSERT(w >= 1 && w <= in_size, "written %u of %zu writable", w, in_size);
out:
	free(req);
	free(data);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t size)
{
	struct fz_in in = { d, size };
	struct iovec iov[FZ_MAX_BUFS];
	unsigned n_out = fz_u8(&in) % 9;
	unsigned n_in = fz_u8(&in) % 9;
	unsigned cap = 1 + fz_u8(&in) % 16;
	uint8_t lf = fz_u8(&in);
	struct vhu_blk_limits lim;
	uint32_t data_done;
	uint8_t c8[8];

	memset(&lim, 0, sizeof(lim));
	lim.read_only = lf & 1;
	lim.blk_size = (lf & 2) ? 4096 : 512;
	fz_take(&in, c8, 8);
	for (int i = 7; i >= 0; i--)
		lim.capacity = lim.capacity << 8 | c8[i];
	lim.max_discard_seg = fz_u8(&in);
	lim.max_write_zeroes_seg = fz_u8(&in);
	lim.max_discard_sectors = fz_u32(&in);
	lim.max_write_zeroes_sectors = fz_u32(&in);
	data_done = fz_u32(&in);

	unsigned lens[FZ_MAX_BUFS];
	for (unsigned i = 0; i < n_out + n_in; i++)
		lens[i] = fz_u16(&in) % 1024;
	for (unsigned i = 0; i < n_out + n_in; i++) {
		/* malloc(0) may return NULL; keep a 1-byte block then. */
		iov[i].iov_base = malloc(lens[i] ? lens[i] : 1);
		FZ_ASSERT(iov[i].iov_base, "malloc");
		iov[i].iov_len = lens[i];
		fz_take(&in, iov[i].iov_base, lens[i]);
	}
	fz_one(iov, n_out, n_in, cap, &lim, data_done);
	for (unsigned i = 0; i < n_out + n_in; i++)
		free(iov[i].iov_base);
	return 0;
}
