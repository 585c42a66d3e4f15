/* SPDX-License-Identifier: MIT */
/*
 * The URI of an RBD image (rbd-uri.c, built with or without librbd; the
 * back-end itself is rbd.c, built with librbd).
 *
 *   rbd:POOL/IMAGE[@SNAP][:conf=FILE][:id=NAME]
 *
 * POOL, IMAGE and SNAP are non-empty and hold no '/', '@' or ':'; each
 * option at most once, with a non-empty value without ':'.  A snapshot is
 * read-only.
 */
#ifndef VHU_BLK_RBD_H
#define VHU_BLK_RBD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VHU__BLK_RBD_PREFIX "rbd:"

struct vhu__blk_rbd_spec {
	char *pool;
	char *image;
	char *snap;   /* NULL: the image itself */
	char *conf;   /* NULL: librados' default search (CEPH_CONF, /etc/ceph) */
	char *id;     /* NULL: "admin" */
};

/* Is path an rbd: URI (whatever follows)? */
bool vhu__blk_rbd_is_uri(const char *path);
/* 0, or -EINVAL with a one-line reason in err. */
int vhu__blk_rbd_parse(const char *uri, struct vhu__blk_rbd_spec *spec,
		       char *err, size_t err_len);
void vhu__blk_rbd_spec_free(struct vhu__blk_rbd_spec *spec);

#endif
