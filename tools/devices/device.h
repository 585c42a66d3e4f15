/* SPDX-License-Identifier: MIT */
/*
 * What the tools know of each virtio device, one module per device
 * (blk.c, rng.c, vsock.c, generic.c): its id and name, its feature bits,
 * how to decode its config space, and how to show that a session still
 * serves it.  probe, check and bench look a device up here and never
 * decode a device themselves.
 *
 * A module knows no transport: it asks for requests through struct
 * vhu_tool_io, which the checker implements over its raw split ring.
 */
#ifndef VHU_TOOL_DEVICE_H
#define VHU_TOOL_DEVICE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Room for a why text (the checker's CHK_WHY). */
#define VHU_TOOL_WHY 256

/* virtio device ids (virtio 1.2, 5) */
#define VHU_TOOL_ID_BLK   2
#define VHU_TOOL_ID_RNG   4
#define VHU_TOOL_ID_VSOCK 19

/* One buffer of a request chain, in memory the device can reach. */
struct vhu_tool_seg {
	uint8_t *p;
	uint32_t len;
	bool writable;          /* device-writable */
};

/* Queue 0 of a running session, as its caller drives it. */
struct vhu_tool_io {
	void *opaque;
	uint8_t *hdr;           /* 64 bytes of device-visible memory */
	uint8_t *data;          /* data_cap bytes of device-visible memory */
	uint32_t data_cap;
	uint64_t features;      /* the acknowledged virtio features */
	bool null_disk;         /* blk: the disk keeps nothing, reads zeros */
	/* Submit one chain and wait for it: 0 with the used length in
	 * *written, or -errno with why set. */
	int (*request)(struct vhu_tool_io *io, const struct vhu_tool_seg *seg,
		       unsigned n, uint32_t *written, char *why);
	/* GET_CONFIG: 0 or -errno with why set. */
	int (*get_config)(struct vhu_tool_io *io, uint32_t off, void *buf,
			  uint32_t len, char *why);
};

/* A decoded config field, for JSON output. */
typedef void (*vhu_tool_emit_fn)(void *ctx, const char *name, uint64_t v);

struct vhu_tool_device {
	const char *name;       /* as --device takes it */
	uint32_t id;            /* virtio device id; 0 for generic */
	const char *title;      /* "virtio-blk" */
	/* GET_CONFIG sizes to try, largest first, 0-terminated (a back-end
	 * may refuse sizes beyond its struct); NULL: the device has no
	 * config space. */
	const unsigned *config_sizes;
	/* Device feature bits 0-23; NULL when none or unknown. */
	const char *(*feature_name)(unsigned bit);
	/* Print / emit the decoded config space; NULL: shown raw. */
	void (*config_print)(FILE *f, const uint8_t *cfg, unsigned len,
			     uint64_t features);
	void (*config_fields)(const uint8_t *cfg, unsigned len,
			      vhu_tool_emit_fn emit, void *ctx);
	/* One verified request on queue 0 (seed varies it): 0, or -errno
	 * with why set.  NULL: no request is known for the device. */
	int (*serves)(struct vhu_tool_io *io, unsigned seed, char *why);
	/* Without serves: whether starting queue 0 is still part of
	 * "the session serves" (false: the handshake alone). */
	bool ring_start;
	/* The device is virtio-blk: block-only checks, bench and watch. */
	bool blk;
};

extern const struct vhu_tool_device vhu_tool_dev_blk;
extern const struct vhu_tool_device vhu_tool_dev_rng;
extern const struct vhu_tool_device vhu_tool_dev_vsock;
extern const struct vhu_tool_device vhu_tool_dev_generic;

/* By --device name, NULL when unknown. */
const struct vhu_tool_device *vhu_tool_device_find(const char *name);
/* "blk|rng|vsock|generic", for usage texts. */
const char *vhu_tool_device_names(void);
/* --device NAME as the commands parse it: the device, or NULL after
 * printing "vhu CMD: unknown --device NAME (one of ...)". */
const struct vhu_tool_device *vhu_tool_device_arg(const char *cmd,
						  const char *name);

#endif
