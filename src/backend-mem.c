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

/*
 * While logging is on, every guest page must have its bit in the log: a
 * region above the log's end would break its queue at the first write
 * there.  The front-end grows the log before it adds memory (QEMU's
 * vhost_commit), so memory the log does not cover is refused instead.
 * end: the highest guest-physical end the new memory reaches.
 */
static int log_covers(const struct vhu_backend *b, const char *what,
		      uint64_t end)
{
	if (!(b->features & VHU_BIT(VHU_F_LOG_ALL)) || !b->log.bits)
		return 0;
	uint64_t need = vhu__log_bytes_for(end);
	if (need <= b->log.size)
		return 0;
	vhu__err("%s: guest memory up to 0x%llx needs %llu bytes of dirty log, "
		 "the log has %llu (SET_LOG_BASE a larger one first): refused",
		 what, (unsigned long long)end, (unsigned long long)need,
		 (unsigned long long)b->log.size);
	return -ENOSPC;
}

/* gpa + size, or 0 when it wraps (vhu__mem_add refuses the region). */
static uint64_t region_end(const struct vhu_mem_region *wr)
{
	return wr->guest_phys_addr > UINT64_MAX - wr->memory_size
		       ? 0 : wr->guest_phys_addr + wr->memory_size;
}

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
	if (r == 0) {
		uint64_t end = 0; /* the regions were checked not to wrap */
		for (unsigned i = 0; i < next->n; i++)
			if (next->r[i].gpa + next->r[i].size > end)
				end = next->r[i].gpa + next->r[i].size;
		r = log_covers(b, "SET_MEM_TABLE", end);
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
	r = log_covers(b, "ADD_MEM_REG", region_end(&wr));
	if (r < 0)
		return r;
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
