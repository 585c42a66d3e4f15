/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk request parsing and validation (virtio 1.2, 5.2.6).
 *
 * A request is a 16-byte header the device reads, data, and a status byte
 * the device writes.  The driver may split these across descriptors in any
 * way (5.2.6: no framing assumptions), so everything is located by byte
 * offset: the header at offset 0 of the readable buffers, the status at the
 * last byte of the writable buffers, data in between.  Nothing here does
 * I/O, so it is tested over plain iovecs.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include <vhu/iov.h>

#include "blk.h"

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

/* The last byte of the writable buffers, or NULL when there is none. */
static uint8_t *find_status(const struct iovec *win, unsigned n_in)
{
	for (unsigned i = n_in; i > 0; i--) {
		const struct iovec *v = &win[i - 1];

		if (v->iov_len > 0)
			return (uint8_t *)v->iov_base + v->iov_len - 1;
	}
	return NULL;
}

static int slice(const struct iovec *src, unsigned n, size_t off, size_t len,
		 struct vhu_blk_req *req, struct iovec *data_iov, unsigned cap)
{
	int r;

	req->data = data_iov;
	req->data_len = len;
	req->n_data = 0;
	if (len == 0)
		return VHU_BLK_S_OK;
	r = vhu_iov_slice(src, n, off, len, data_iov, cap);
	if (r < 0)
		return VHU_BLK_S_IOERR;
	req->n_data = (unsigned)r;
	return VHU_BLK_S_OK;
}

int vhu_blk_req_parse(const struct iovec *iov, unsigned n_out, unsigned n_in,
		      struct vhu_blk_req *req, struct iovec *data_iov,
		      unsigned cap)
{
	const struct iovec *win = iov + n_out;
	uint8_t hdr[VHU_BLK_HDR_SIZE];
	size_t out_size, in_size;

	req->type = 0;
	req->sector = 0;
	req->data = data_iov;
	req->n_data = 0;
	req->data_len = 0;
	req->n_segs = 0;
	req->status = find_status(win, n_in);
	if (!req->status)
		return -EINVAL;

	/* Header copied once; only the copy is used from here on. */
	if (vhu_iov_to_buf(iov, n_out, 0, hdr, sizeof(hdr)) != sizeof(hdr)) {
		req->type = UINT32_MAX;
		return VHU_BLK_S_IOERR;
	}
	req->type = get_le32(hdr);
	req->sector = get_le64(hdr + 8);

	out_size = vhu_iov_size(iov, n_out);
	in_size = vhu_iov_size(win, n_in);

	switch (req->type) {
	case VHU_BLK_T_IN:
	case VHU_BLK_T_GET_ID:
		/* Device-writable data: every writable byte but the status. */
		return slice(win, n_in, 0, in_size - 1, req, data_iov, cap);
	default:
		/* Device-readable data: whatever follows the header. */
		return slice(iov, n_out, VHU_BLK_HDR_SIZE,
			     out_size - VHU_BLK_HDR_SIZE, req, data_iov, cap);
	}
}

/* [sector, sector + n) lies inside capacity; no addition can overflow. */
static bool range_ok(uint64_t sector, uint64_t n, uint64_t capacity)
{
	return sector <= capacity && n <= capacity - sector;
}

static int check_rw(const struct vhu_blk_req *req,
		    const struct vhu_blk_limits *lim)
{
	uint64_t lbs = lim->blk_size >> VHU_BLK_SECTOR_SHIFT; /* sectors */

	if (req->type == VHU_BLK_T_OUT && lim->read_only)
		return VHU_BLK_S_IOERR;
	/* Transfers are whole logical blocks at block-aligned sectors
	 * (5.2.5: blk_size is the logical block size). */
	if (req->data_len > VHU_BLK_MAX_TRANSFER)
		return VHU_BLK_S_IOERR;
	if (req->data_len % lim->blk_size != 0 || lbs == 0 ||
	    req->sector % lbs != 0)
		return VHU_BLK_S_IOERR;
	if (!range_ok(req->sector, req->data_len >> VHU_BLK_SECTOR_SHIFT,
		      lim->capacity))
		return VHU_BLK_S_IOERR;
	return VHU_BLK_S_OK;
}

/* 5.2.6.2: unknown flags -> UNSUPP; the unmap flag on DISCARD -> UNSUPP;
 * out-of-range or oversized segments -> IOERR. */
static int check_segs(struct vhu_blk_req *req, const struct vhu_blk_limits *lim)
{
	bool discard = req->type == VHU_BLK_T_DISCARD;
	unsigned max_seg = discard ? lim->max_discard_seg : lim->max_write_zeroes_seg;
	uint32_t max_sectors = discard ? lim->max_discard_sectors :
					 lim->max_write_zeroes_sectors;
	uint64_t lbs = lim->blk_size >> VHU_BLK_SECTOR_SHIFT;
	size_t n;

	if (lim->read_only)
		return VHU_BLK_S_IOERR;
	if (req->data_len == 0 || req->data_len % VHU_BLK_SEG_SIZE != 0)
		return VHU_BLK_S_IOERR;
	n = req->data_len / VHU_BLK_SEG_SIZE;
	if (n > max_seg || n > VHU_BLK_MAX_DISCARD_SEG)
		return VHU_BLK_S_UNSUPP;
	if (lbs == 0)
		return VHU_BLK_S_IOERR;

	for (size_t i = 0; i < n; i++) {
		uint8_t raw[VHU_BLK_SEG_SIZE];
		struct vhu_blk_seg *s = &req->segs[i];

		if (vhu_iov_to_buf(req->data, req->n_data, i * VHU_BLK_SEG_SIZE,
				   raw, sizeof(raw)) != sizeof(raw))
			return VHU_BLK_S_IOERR;
		s->sector = get_le64(raw);
		s->num_sectors = get_le32(raw + 8);
		s->flags = get_le32(raw + 12);

		if (s->flags & ~VHU_BLK_SEG_F_UNMAP)
			return VHU_BLK_S_UNSUPP;
		if (discard && (s->flags & VHU_BLK_SEG_F_UNMAP))
			return VHU_BLK_S_UNSUPP;
		if (s->num_sectors > max_sectors)
			return VHU_BLK_S_IOERR;
		if (s->sector % lbs != 0 || s->num_sectors % lbs != 0)
			return VHU_BLK_S_IOERR;
		if (!range_ok(s->sector, s->num_sectors, lim->capacity))
			return VHU_BLK_S_IOERR;
	}
	req->n_segs = (unsigned)n;
	return VHU_BLK_S_OK;
}

int vhu_blk_req_check(struct vhu_blk_req *req, const struct vhu_blk_limits *lim)
{
	req->n_segs = 0;
	switch (req->type) {
	case VHU_BLK_T_IN:
	case VHU_BLK_T_OUT:
		return check_rw(req, lim);
	case VHU_BLK_T_FLUSH:
		return VHU_BLK_S_OK;
	case VHU_BLK_T_GET_ID:
		return req->data_len > 0 ? VHU_BLK_S_OK : VHU_BLK_S_IOERR;
	case VHU_BLK_T_DISCARD:
	case VHU_BLK_T_WRITE_ZEROES:
		return check_segs(req, lim);
	default:
		return VHU_BLK_S_UNSUPP;
	}
}

uint32_t vhu_blk_req_written(const struct vhu_blk_req *req, int st,
			     size_t data_done)
{
	/* Data bytes only count for device-writable requests that
	 * succeeded; the status byte always counts.  A chain is at most
	 * 2^32 bytes, so the cast cannot lose a valid count. */
	if (st == VHU_BLK_S_OK &&
	    (req->type == VHU_BLK_T_IN || req->type == VHU_BLK_T_GET_ID) &&
	    data_done < UINT32_MAX)
		return (uint32_t)data_done + 1;
	return 1;
}

size_t vhu_blk_req_get_id(const struct vhu_blk_req *req, const char *serial)
{
	char id[VHU_BLK_ID_BYTES];
	size_t len = serial ? strnlen(serial, sizeof(id)) : 0;
	size_t n = req->data_len < sizeof(id) ? req->data_len : sizeof(id);

	/* 5.2.6: 20 bytes, NUL-padded, no terminator when all are used. */
	memset(id, 0, sizeof(id));
	if (len)
		memcpy(id, serial, len);
	return vhu_iov_from_buf(req->data, req->n_data, 0, id, n);
}
