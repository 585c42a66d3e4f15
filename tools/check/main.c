/* SPDX-License-Identifier: MIT */
/* vhu-check: the standalone form of `vhu check`. */
#include "check.h"

int main(int argc, char **argv)
{
	return vhu_check_main(argc, argv);
}
