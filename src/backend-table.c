/* SPDX-License-Identifier: MIT */
/*
 * The back-end's side of the request table: which handler serves each
 * request.  The rules (payload, fds, gate, ring, values, reply) live in
 * msg.c; a request without a handler here is refused by the validator
 * (-EOPNOTSUPP) before anything else about it is looked at.
 */
#include "backend-internal.h"

static const vhu__be_handler handlers[VHU_REQ_MAX] = {
	[VHU_REQ_GET_FEATURES] = vhu__be_get_features,
	[VHU_REQ_SET_FEATURES] = vhu__be_set_features,
	[VHU_REQ_SET_OWNER] = vhu__be_set_owner,
	[VHU_REQ_RESET_OWNER] = vhu__be_reset_owner,
	[VHU_REQ_SET_MEM_TABLE] = vhu__be_set_mem_table,
	[VHU_REQ_SET_LOG_BASE] = vhu__be_set_log_base,
	[VHU_REQ_SET_LOG_FD] = vhu__be_set_log_fd,
	[VHU_REQ_SET_VRING_NUM] = vhu__be_set_vring_num,
	[VHU_REQ_SET_VRING_ADDR] = vhu__be_set_vring_addr,
	[VHU_REQ_SET_VRING_BASE] = vhu__be_set_vring_base,
	[VHU_REQ_GET_VRING_BASE] = vhu__be_get_vring_base,
	[VHU_REQ_SET_VRING_KICK] = vhu__be_set_vring_kick,
	[VHU_REQ_SET_VRING_CALL] = vhu__be_set_vring_call,
	[VHU_REQ_SET_VRING_ERR] = vhu__be_set_vring_err,
	[VHU_REQ_GET_PROTOCOL_FEATURES] = vhu__be_get_protocol_features,
	[VHU_REQ_SET_PROTOCOL_FEATURES] = vhu__be_set_protocol_features,
	[VHU_REQ_GET_QUEUE_NUM] = vhu__be_get_queue_num,
	[VHU_REQ_SET_VRING_ENABLE] = vhu__be_set_vring_enable,
	[VHU_REQ_SET_BACKEND_REQ_FD] = vhu__be_set_backend_req_fd,
	[VHU_REQ_IOTLB_MSG] = vhu__be_iotlb_msg,
	[VHU_REQ_GET_CONFIG] = vhu__be_get_config,
	[VHU_REQ_SET_CONFIG] = vhu__be_set_config,
	[VHU_REQ_GET_INFLIGHT_FD] = vhu__be_get_inflight_fd,
	[VHU_REQ_SET_INFLIGHT_FD] = vhu__be_set_inflight_fd,
	[VHU_REQ_RESET_DEVICE] = vhu__be_reset_device,
	[VHU_REQ_GET_MAX_MEM_SLOTS] = vhu__be_get_max_mem_slots,
	[VHU_REQ_ADD_MEM_REG] = vhu__be_add_mem_reg,
	[VHU_REQ_REM_MEM_REG] = vhu__be_rem_mem_reg,
	[VHU_REQ_SET_STATUS] = vhu__be_set_status,
	[VHU_REQ_GET_STATUS] = vhu__be_get_status,
};

vhu__be_handler vhu__be_handler_for(uint32_t id)
{
	return id < VHU_REQ_MAX ? handlers[id] : NULL;
}

uint64_t vhu__be_served(void)
{
	uint64_t mask = 0;
	for (uint32_t id = 0; id < VHU_REQ_MAX; id++)
		if (handlers[id])
			mask |= VHU_BIT(id);
	return mask;
}
