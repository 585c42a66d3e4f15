/* SPDX-License-Identifier: MIT */
/*
 * vhu_backend_run(): the main loop every simple device would otherwise
 * write (a loop, the session attached, SIGINT/SIGTERM stopping it).
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>

#include <vhu/backend.h>
#include <vhu/loop.h>

#include "backend-internal.h"

/* The loop the signal handler stops; one run at a time per process. */
static _Atomic(struct vhu_loop *) run_loop;
static atomic_flag run_busy = ATOMIC_FLAG_INIT;

static void on_stop_signal(int sig)
{
	(void)sig;
	struct vhu_loop *l = atomic_load(&run_loop);
	if (l)
		vhu_loop_stop(l);  /* async-signal-safe */
}

int vhu_backend_run(struct vhu_backend *b)
{
	if (!b || b->mode == VHU__MODE_NONE)
		return -EINVAL;
	if (b->loop)
		return -EBUSY;
	if (b->ended)
		return 0;
	if (atomic_flag_test_and_set(&run_busy))
		return -EBUSY;

	struct vhu_loop *loop = NULL;
	int r = vhu_loop_new(&loop);
	if (r == 0)
		r = vhu_backend_attach(b, loop);
	if (r < 0) {
		vhu_loop_free(loop);
		atomic_flag_clear(&run_busy);
		return r;
	}
	atomic_store(&run_loop, loop);
	struct sigaction sa = { .sa_handler = on_stop_signal }, old_int, old_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);

	vhu__info("serving until SIGINT or SIGTERM");
	r = vhu_loop_run(loop);

	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	atomic_store(&run_loop, NULL);
	vhu_backend_detach(b);
	vhu_loop_free(loop);
	atomic_flag_clear(&run_busy);
	return r;
}
