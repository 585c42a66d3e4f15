/* SPDX-License-Identifier: MIT */
/*
 * The raw front-end of a session test, one per case: fe_case_before and
 * fe_case_after are the tap hooks that start each case with nothing open
 * and, after it, close everything and check that the process holds the
 * fds it held before.  Header-only: CHECK (tap.h) and the static fe
 * belong to the test program that includes it.
 */
#ifndef VHU_TEST_FE_CASE_H
#define VHU_TEST_FE_CASE_H

#include "fe-driver.h"
#include "tap.h"
#include "util.h"

static struct fe fe;
static int fe_fds_at_start;

static void fe_case_before(void)
{
	fe_init(&fe);
	fe_fds_at_start = tl_count_fds();
}

static void fe_case_after(void)
{
	fe_close(&fe);
	CHECK_EQ(tl_count_fds(), fe_fds_at_start);
}

#endif
