/* SPDX-License-Identifier: MIT */
/* Picking the back-end for an image spec; the null back-end. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "blk-int.h"
#include "rbd.h"

const char *vhu__blk_backend_kinds(void)
{
	return "file null"
#ifdef VHU_HAVE_LIBNBD
	       " nbd"
#endif
#ifdef VHU_HAVE_LIBRBD
	       " rbd"
#endif
	       ;
}

/* libnbd's URI schemes: nbd, nbds (TLS), nbd+unix, nbds+unix, nbd+vsock,
 * nbds+vsock. */
static bool nbd_uri(const char *spec)
{
	return strncmp(spec, "nbd://", 6) == 0 || strncmp(spec, "nbds://", 7) == 0 ||
	       strncmp(spec, "nbd+", 4) == 0 || strncmp(spec, "nbds+", 5) == 0;
}

int vhu__blk_backend_open(struct vhu_blk *blk, const char *spec)
{
	if (strncmp(spec, "null:", 5) == 0) {
		blk->be = &vhu__blk_null_ops;
		return vhu__blk_null_open(blk, spec + 5);
	}
	if (nbd_uri(spec)) {
#ifdef VHU_HAVE_LIBNBD
		blk->be = &vhu__blk_nbd_ops;
		return vhu__blk_nbd_open(blk, spec);
#else
		vhu__blk_open_error(blk, "'%s': this vhu-blk was built without "
				    "NBD support (libnbd)", spec);
		return -EPROTONOSUPPORT;
#endif
	}
	if (vhu__blk_rbd_is_uri(spec)) {
#ifdef VHU_HAVE_LIBRBD
		blk->be = &vhu__blk_rbd_ops;
		return vhu__blk_rbd_open(blk, spec);
#else
		vhu__blk_open_error(blk, "'%s': this vhu-blk was built without "
				    "RBD support (librbd)", spec);
		return -EPROTONOSUPPORT;
#endif
	}
	blk->be = &vhu__blk_file_ops;
	return vhu__blk_image_open(blk, spec);
}

/* ---- null: no image; reads are zeros, the rest completes at once ---- */

struct nq {
	struct vhu__blk_worker *w;
};

static int null_q_open(struct vhu_blk *blk, struct vhu__blk_worker *w,
		       void **ctx)
{
	struct nq *q = calloc(1, sizeof(*q));

	(void)blk;
	if (!q)
		return -ENOMEM;
	q->w = w;
	*ctx = q;
	return 0;
}

static void null_q_close(void *ctx)
{
	free(ctx);
}

static void null_submit(void *ctx, struct vhu__blk_io *io)
{
	struct nq *q = ctx;

	vhu__blk_io_done(q->w, io, VHU_BLK_S_OK, vhu__blk_null_req(&io->req));
}

static int null_size(struct vhu_blk *blk, uint64_t *size)
{
	*size = atomic_load(&blk->size);
	return 0;
}

static int null_resize(struct vhu_blk *blk, uint64_t size)
{
	(void)blk;
	(void)size;
	return 0;
}

const struct vhu__blk_backend_ops vhu__blk_null_ops = {
	.kind = "null",
	.size = null_size,
	.resize = null_resize,
	.q_open = null_q_open,
	.q_close = null_q_close,
	.submit = null_submit,
};

/* ---- the public view ---- */

const char *vhu_blk_backends(void)
{
	return vhu__blk_backend_kinds();
}

const char *vhu_blk_backend_kind(const struct vhu_blk *blk)
{
	return blk->be->kind;
}

const char *vhu_blk_backend_state(const struct vhu_blk *blk)
{
	return blk->be->state ? blk->be->state(blk) : "open";
}

const char *vhu_blk_resize_refusal(const struct vhu_blk *blk)
{
	return blk->be->no_resize ? blk->be->no_resize(blk) : NULL;
}
