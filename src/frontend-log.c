/* SPDX-License-Identifier: MIT */
/*
 * Dirty logging from the front-end's side (vhost-user.rst "Migration"):
 * what a migrating front-end sends, in QEMU's order (SET_LOG_BASE with a
 * sealed memfd and its answer, SET_FEATURES with VHOST_F_LOG_ALL, then
 * SET_VRING_ADDR with the LOG flag per queue), and reading the bitmap
 * while the back-end keeps setting bits in it.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "frontend-priv.h"

void vhu__fe_log_free(struct vhu_fe *fe)
{
	vhu__shm_release(fe->log_words, fe->log_bytes, fe->log_fd);
	fe->log_words = NULL;
	fe->log_bytes = 0;
	fe->log_fd = -1;
}

/* A bitmap for guest memory up to the end of the highest region, whole
 * 64-bit words (as QEMU sizes it), in a memfd whose size is sealed: the
 * back-end maps it and must never see it shrink. */
static int log_create(struct vhu_fe *fe)
{
	uint64_t end = 0;
	for (unsigned i = 0; i < fe->nregions; i++)
		if (fe->regions[i].gpa + fe->regions[i].size > end)
			end = fe->regions[i].gpa + fe->regions[i].size;
	uint64_t pages = (end + 4095) / 4096;
	size_t bytes = (size_t)((pages + 63) / 64 * 8);
	if (bytes == 0)
		bytes = 8;
	void *map;
	int fd = vhu__memfd_mapped("vhu-dirty-log", bytes, &map);
	if (fd < 0)
		return fd;
	vhu__fe_log_free(fe);
	fe->log_fd = fd;
	fe->log_words = map;
	fe->log_bytes = bytes;
	return 0;
}

static bool log_offered(const struct vhu_fe *fe)
{
	return (fe->protocol & VHU_BIT(VHU_PF_LOG_SHMFD)) &&
	       (fe->features_offered & VHU_BIT(VHU_F_LOG_ALL));
}

static int set_features(struct vhu_fe *fe, uint64_t f)
{
	return vhu__fe_cmd(fe, VHU_REQ_SET_FEATURES, &f, sizeof(f), NULL, 0);
}

static int vrings_log(struct vhu_fe *fe, bool on)
{
	for (unsigned i = 0; i < VHU_MAX_QUEUES; i++) {
		if (!fe->vqs[i])
			continue;
		struct vhu_vring_addr a;
		vhu__fe_vring_addr(fe, fe->vqs[i], on, &a);
		int r = vhu__fe_cmd(fe, VHU_REQ_SET_VRING_ADDR, &a, sizeof(a),
				    NULL, 0);
		if (r < 0)
			return r;
	}
	return 0;
}

int vhu_fe_log_start(struct vhu_fe *fe)
{
	if (!log_offered(fe))
		return -EOPNOTSUPP;
	if (!fe->features_set)
		return -EINVAL;
	int r = log_create(fe);
	if (r < 0)
		return r;
	struct vhu_log lg = { fe->log_bytes, 0 };
	r = vhu__fe_cmd_answered(fe, VHU_REQ_SET_LOG_BASE, &lg, sizeof(lg),
				 &fe->log_fd, 1);
	if (r < 0 || fe->logging)
		return r;
	r = set_features(fe, fe->features | VHU_BIT(VHU_F_LOG_ALL));
	if (r < 0)
		return r;
	fe->features |= VHU_BIT(VHU_F_LOG_ALL);
	fe->logging = true;
	return vrings_log(fe, true);
}

int vhu_fe_log_stop(struct vhu_fe *fe)
{
	if (!fe->logging)
		return 0;
	uint64_t f = fe->features & ~VHU_BIT(VHU_F_LOG_ALL);
	int r = set_features(fe, f);
	if (r < 0)
		return r;
	fe->features = f;
	fe->logging = false;
	return vrings_log(fe, false);
}

size_t vhu_fe_log_size(const struct vhu_fe *fe)
{
	return fe->log_bytes;
}

long vhu_fe_log_read(struct vhu_fe *fe, uint8_t *out, size_t len)
{
	if (!fe->log_words)
		return -ENODATA;
	if (len % 8 || len > fe->log_bytes)
		return -EINVAL;
	long set = 0;
	for (size_t i = 0; i < len / 8; i++) {
		/* The back-end ORs bits in meanwhile: take and clear at once. */
		uint64_t w = __atomic_exchange_n(&fe->log_words[i], 0,
						 __ATOMIC_ACQ_REL);
		memcpy(out + 8 * i, &w, 8);
		set += __builtin_popcountll(w);
	}
	return set;
}

bool vhu_fe_log_test(const uint8_t *bits, size_t len, uint64_t gpa)
{
	uint64_t page = gpa / 4096;
	if (page / 8 >= len)
		return false;
	return (bits[page / 8] >> (page % 8)) & 1;
}
