/* SPDX-License-Identifier: MIT */
/*
 * virtio-vsock (device id 19; virtio 1.2, 5.10): the guest's CID in the
 * config space.  Its queues carry packets to and from a peer the tools do
 * not have, so "the session serves" stops at a started queue 0.
 */
#include <inttypes.h>
#include <stdio.h>

#include "device.h"
#include "tool-common.h"

static const char *vsock_feature_name(unsigned bit)
{
	switch (bit) {
	case 0: return "VSOCK_STREAM";
	case 1: return "VSOCK_SEQPACKET";
	default: return NULL;
	}
}

static void vsock_print(FILE *f, const uint8_t *b, unsigned len,
			uint64_t features)
{
	(void)features;
	fprintf(f, "config (virtio-vsock, %u bytes read):\n", len);
	if (len >= 8)
		fprintf(f, "  guest_cid: %" PRIu64 "\n", le64_at(b, 0));
}

static void vsock_fields(const uint8_t *b, unsigned len, vhu_tool_emit_fn emit,
			 void *ctx)
{
	emit(ctx, "config_bytes", len);
	if (len >= 8)
		emit(ctx, "guest_cid", le64_at(b, 0));
}

static const unsigned vsock_sizes[] = { 8, 0 };

const struct vhu_tool_device vhu_tool_dev_vsock = {
	.name = "vsock",
	.id = VHU_TOOL_ID_VSOCK,
	.title = "virtio-vsock",
	.config_sizes = vsock_sizes,
	.feature_name = vsock_feature_name,
	.config_print = vsock_print,
	.config_fields = vsock_fields,
	.ring_start = true,
};
