/* SPDX-License-Identifier: MIT */
/*
 * Memory messages: SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG,
 * GET_MAX_MEM_SLOTS (vhost-user.rst "Memory regions description" and
 * CONFIGURE_MEM_SLOTS).  Started queues are taken back from the device
 * around every change, their rings re-mapped, then handed back.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend-internal.h"

int vhu__be_set_mem_table(struct vhu_backend *b, struct vhu__req *req)
{
	const struct vhu_mem_table *t = &req->msg->p.mem;
	struct vhu__mem *next;
	int r = 0;

	/* Build the new table aside so a bad region leaves the old one. */
	next = malloc(sizeof(*next));
	if (!next)
		return -ENOMEM;
	vhu__mem_init(next);
	for (unsigned i = 0; i < t->nregions; i++) {
		struct vhu_mem_region wr;
		memcpy(&wr, &t->regions[i], sizeof(wr));
		r = vhu__mem_add(next, &wr, req->fds[i]);
		if (r < 0) {
			vhu__log_rl(VHU_LOG_WARN,
				    "SET_MEM_TABLE: region %u (gpa 0x%llx size "
				    "0x%llx) refused: %s", i,
				    (unsigned long long)wr.guest_phys_addr,
				    (unsigned long long)wr.memory_size,
				    strerror(-r));
			break;
		}
		req->fds[i] = -1; /* the table owns it now */
	}
	if (r < 0) {
		vhu__mem_clear(next);
		free(next);
		return r;
	}

	vhu__be_stop_all(b);
	vhu__mem_clear(&b->mem);
	memcpy(&b->mem, next, sizeof(*next));
	free(next);
	vhu__be_restart_all(b);
	return 0;
}

int vhu__be_add_mem_reg(struct vhu_backend *b, struct vhu__req *req)
{
	struct vhu_mem_region wr;
	int r;

	memcpy(&wr, &req->msg->p.mem_reg.region, sizeof(wr));
	vhu__be_stop_all(b);
	r = vhu__mem_add(&b->mem, &wr, req->fds[0]);
	if (r == 0)
		req->fds[0] = -1;
	else
		vhu__log_rl(VHU_LOG_WARN, "ADD_MEM_REG (gpa 0x%llx size 0x%llx) "
			    "refused: %s",
			    (unsigned long long)wr.guest_phys_addr,
			    (unsigned long long)wr.memory_size, strerror(-r));
	vhu__be_restart_all(b);
	return r;
}

int vhu__be_rem_mem_reg(struct vhu_backend *b, struct vhu__req *req)
{
	struct vhu_mem_region wr;
	int r;

	/* An fd sent along (QEMU does) is closed by the dispatcher. */
	memcpy(&wr, &req->msg->p.mem_reg.region, sizeof(wr));
	vhu__be_stop_all(b);
	r = vhu__mem_remove(&b->mem, &wr);
	if (r < 0)
		vhu__log_rl(VHU_LOG_WARN, "REM_MEM_REG (gpa 0x%llx size 0x%llx): "
			    "%s", (unsigned long long)wr.guest_phys_addr,
			    (unsigned long long)wr.memory_size, strerror(-r));
	vhu__be_restart_all(b);
	return r;
}

int vhu__be_get_max_mem_slots(struct vhu_backend *b, struct vhu__req *req)
{
	return vhu__be_reply_u64(req, VHU_MAX_MEM_SLOTS);
}
