/* SPDX-License-Identifier: MIT */
/*
 * Fuzz the inflight record parser (vhost-user.rst "Inflight I/O
 * tracking"), both layouts: a queue starts on a record the input fills
 * (as a hostile front-end or a corrupted region would have it) next to
 * rings the input fills too, then pops everything it hands out and
 * pushes it back.
 *
 * Input (little-endian):
 *   u8  flags   bit 0 packed ring, bit 1 INDIRECT_DESC, bit 2 the record
 *               header is made valid (version 1, desc_num = size) so the
 *               fuzzer reaches recovery quickly
 *   u8  size    split: 1 << (size % 7); packed: 1 + size % 64
 *   u16 used    split: the used ring's idx
 *   the rest    the record (exactly its size, in its own heap block),
 *               then guest memory (one 64 KiB region: rings at its
 *               start, buffers anywhere)
 *
 * Invariants: every resubmitted head is within the ring and appears
 * once; the queue hands out at most those plus what the ring holds, each
 * buffer id below the size and not twice while in flight; nothing reads
 * or writes outside the record or guest memory (ASan).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "fuzz-common.h"

#define FZ_GPA 0x10000u
#define FZ_MEM 0x10000u
#define FZ_UVA_OFF 0x7f0000000000ull

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	static bool quiet;
	if (!quiet) {
		fz_quiet_logs();
		quiet = true;
	}
	struct fz_in in = { data, n };
	uint8_t flags = fz_u8(&in);
	uint8_t sz = fz_u8(&in);
	uint16_t used = fz_u16(&in);
	bool packed = flags & 1;
	unsigned size = packed ? 1u + sz % 64u : 1u << (sz % 7u);
	size_t rec_bytes = packed ? vhu__inflight_queue_bytes_packed(size)
				  : vhu__inflight_queue_bytes(size);

	uint8_t *rec = malloc(rec_bytes);
	uint8_t *mem = malloc(FZ_MEM);
	if (!rec || !mem)
		abort();
	fz_take(&in, rec, rec_bytes);
	fz_take(&in, mem, FZ_MEM);
	if (flags & 4) {
		/* version and desc_num sit at the same offsets in both. */
		struct vhu__inflight_split *h = (void *)rec;
		h->version = 1;
		h->desc_num = (uint16_t)size;
	}

	struct vhu__mem m;
	vhu__mem_init(&m);
	if (vhu__mem_add_host(&m, FZ_GPA, FZ_MEM, FZ_GPA + FZ_UVA_OFF, mem))
		abort();
	struct vhu_vq vq;
	vhu__vq_init(&vq, 0, &m);
	vq.packed = packed;
	vq.size = (uint16_t)size;
	vq.indirect = (flags & 2) != 0;
	uint64_t desc = FZ_GPA, avail, usedr;
	if (packed) {
		avail = desc + vhu__packed_ring_bytes(size);
		usedr = avail + VHU__PEVENT_BYTES;
		vhu__packed_set_base(&vq, 0x80008000u);
	} else {
		avail = desc + vhu__vring_desc_bytes(size);
		usedr = (avail + vhu__vring_avail_bytes(size) + 3) & ~3ull;
		/* The used idx the test asks for. */
		memcpy(mem + (usedr - FZ_GPA) + 2, &used, 2);
		vq.last_avail_idx = vq.shadow_avail_idx = vq.used_idx = used;
	}
	vq.desc_uva = desc + FZ_UVA_OFF;
	vq.avail_uva = avail + FZ_UVA_OFF;
	vq.used_uva = usedr + FZ_UVA_OFF;
	vq.addr_set = true;
	if (vhu__vq_map(&vq) < 0)
		abort();
	if (packed)
		vq.infp = (void *)rec;
	else
		vq.inf = (void *)rec;

	int r = vhu__inflight_vq_start(&vq);
	FZ_ASSERT(r == 0, "start failed: %d", r);
	static uint8_t seen[VHU_MAX_QUEUE_SIZE];
	memset(seen, 0, size);
	for (unsigned i = 0; i < vq.inf_n; i++) {
		uint16_t h = vq.inf_resubmit[i];
		FZ_ASSERT(h < size, "resubmitted head %u beyond %u", h, size);
		FZ_ASSERT(!seen[h], "head %u resubmitted twice", h);
		seen[h] = 1;
	}
	FZ_ASSERT(vq.inf_n <= size, "%u resubmissions", vq.inf_n);
	if (packed && vq.infp && vq.pk_next) {
		/* The free list (ours and the region's) ends out of range
		 * without meeting an entry twice: a later recovery walks it. */
		static uint8_t on[VHU_MAX_QUEUE_SIZE];
		memset(on, 0, size);
		unsigned e = vq.pk_free, steps = 0;
		for (; e < size; e = vq.pk_next[e], steps++) {
			FZ_ASSERT(!on[e] && steps < size, "free list loops at %u", e);
			FZ_ASSERT(vq.infp->desc[e].next == vq.pk_next[e],
				  "region's free link differs at %u", e);
			on[e] = 1;
		}
	}

	/* Hand out everything (bounded), then give it all back. */
	static struct vhu_vq_elem held[2 * 64 + 4];
	unsigned nheld = 0;
	memset(seen, 0, size);
	for (unsigned k = 0; k < 2 * size + 4; k++) {
		struct iovec iov[16];
		struct vhu_vq_elem e;
		r = vhu_vq_pop(&vq, &e, iov, 16);
		if (r <= 0 && r != -E2BIG)
			break;
		if (r != 1)
			continue;
		FZ_ASSERT(e.id < size, "id %u beyond %u", e.id, size);
		FZ_ASSERT(!packed || !seen[e.id], "id %u twice in flight",
			  e.id);
		seen[e.id] = 1;
		held[nheld++] = e;
	}
	for (unsigned i = 0; i < nheld; i++)
		vhu_vq_push(&vq, &held[i], 0);

	vhu__vq_reset(&vq);
	vhu__mem_clear(&m);
	free(rec);
	free(mem);
	return 0;
}
