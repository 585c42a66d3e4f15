/* SPDX-License-Identifier: MIT */
/*
 * The RBD back-end's exclusive lock (see rbd.c): a thread of the image
 * takes it when the guest's queues start and releases it when they stop,
 * so a client that does not answer (librbd waits for a dead owner's watch
 * to time out, about 30 s; a silent cluster, for ever) never blocks the
 * control thread.  The queues see the state in im->lock.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "rbd-int.h"

#define LOCKER_JOIN_S 10    /* image close: the locker's last release */

const char *vhu__blk_rbd_state(const struct vhu_blk *blk)
{
	switch (atomic_load(&img_of(blk)->lock)) {
	case LOCK_HELD: return "locked";
	case LOCK_RELEASED: return "unlocked";
	case LOCK_TAKING: return "locking";
	case LOCK_REFUSED: return "lock-refused";
	default: return "connected";
	}
}

/* The locker, with im->mu held: take the lock for the guest's queues.
 * Exclusive mode: librbd keeps it against other clients until released
 * here (in its automatic mode it would hand it to any writer that asks).
 * An owner that died holds it until librbd breaks it, after the owner's
 * watch timed out (about 30 s); writes wait meanwhile (LOCK_TAKING). */
static void lock_take(struct img *im)
{
	char who[128];
	int e;

	atomic_store(&im->lock, LOCK_TAKING);
	pthread_mutex_unlock(&im->mu);
	/* A client that writes the image now and is no vhu-blk (a VM's
	 * librbd, in its automatic mode) would hand the lock over when asked,
	 * and its writes fail after: not asked (a vhu-blk, in exclusive mode,
	 * refuses by itself; a client gone, no longer watching, has its lock
	 * broken by librbd).  A client that takes the lock between this
	 * question and the request still loses it. */
	if (!im->force && vhu__blk_rbd_other_owner(im, who, sizeof(who)) > 0 &&
	    vhu__blk_rbd_owner_watches(im, who) &&
	    !vhu__blk_rbd_owner_is_vhu_blk(im, who)) {
		pthread_mutex_lock(&im->mu);
		atomic_store(&im->lock, LOCK_REFUSED);
		vhu__blk_log(VHU_LOG_ERROR, "rbd: '%s': another client (%s) holds "
			     "the exclusive lock and writes the image (a running "
			     "VM?): not taking it away; the guest's writes fail "
			     "until the queues restart with that client gone "
			     "(--lock off takes it)", im->name, who);
		return;
	}
	e = rbd_lock_acquire(im->rbd, RBD_LOCK_MODE_EXCLUSIVE);
	if (e == 0)
		vhu__blk_rbd_mark_writer(im);
	pthread_mutex_lock(&im->mu);
	atomic_store(&im->lock, e == 0 ? LOCK_HELD : LOCK_REFUSED);
	if (e == 0)
		vhu__blk_log(VHU_LOG_INFO, "rbd: '%s': exclusive lock taken",
			     im->name);
	else
		vhu__blk_log(VHU_LOG_ERROR, "rbd: '%s': cannot take the exclusive "
			     "lock (%s): another client writes the image; the "
			     "guest's writes fail until the queues restart",
			     im->name, e == -EROFS || e == -EBUSY
				       ? "held by another client" : strerror(-e));
}

/* The locker, with im->mu held, once the last queue stopped: what
 * librbd's cache holds reaches the cluster, then the lock goes, for the
 * next writer (a migration's destination) to take. */
static void lock_give(struct img *im)
{
	int e;

	if (atomic_load(&im->lock) == LOCK_HELD) {
		im->giving = true;
		pthread_mutex_unlock(&im->mu);
		e = rbd_flush(im->rbd);
		if (e < 0)
			vhu__blk_log(VHU_LOG_ERROR, "rbd: '%s': flush before releasing "
				     "the lock: %s", im->name, strerror(-e));
		e = rbd_lock_release(im->rbd);
		if (e < 0)
			vhu__blk_log(VHU_LOG_WARN, "rbd: '%s': releasing the exclusive "
				     "lock: %s", im->name, strerror(-e));
		else
			vhu__blk_log(VHU_LOG_INFO, "rbd: '%s': exclusive lock "
				     "released", im->name);
		pthread_mutex_lock(&im->mu);
		im->giving = false;
	}
	/* Queues that started again meanwhile wait for the next take. */
	atomic_store(&im->lock, im->want ? LOCK_TAKING : LOCK_RELEASED);
}

int vhu__blk_rbd_other_owner(struct img *im, char *who, size_t len)
{
	char *owners[8];
	size_t n = sizeof(owners) / sizeof(owners[0]);
	rbd_lock_mode_t mode;
	int mine = 0, e = rbd_is_exclusive_lock_owner(im->rbd, &mine);

	if (e < 0)
		return e;
	if (mine)
		return 0;
	e = rbd_lock_get_owners(im->rbd, &mode, owners, &n);
	if (e == -ENOENT)
		return 0;       /* nobody holds it */
	if (e < 0)
		return e;
	if (n == 0)
		return 0;
	snprintf(who, len, "%s", owners[0]);
	rbd_lock_get_owners_cleanup(owners, n);
	return 1;
}

/* A migration's destination starts while the source holds the lock; a
 * VM's librbd (automatic mode) holds it too, and would lose it to this
 * vhu-blk with its writes failing after.  librbd does not tell the two
 * apart (its lock records neither the mode nor the program), so the lock
 * holder records itself; a stale record names an address no longer the
 * owner's (an address is unique to a client instance). */
void vhu__blk_rbd_mark_writer(struct img *im)
{
	char *owners[8];
	size_t n = sizeof(owners) / sizeof(owners[0]);
	rbd_lock_mode_t mode;
	/* Our own address: the owner's, now that we are it. */
	int e = rbd_lock_get_owners(im->rbd, &mode, owners, &n);

	if (e == 0 && n > 0) {
		e = rbd_metadata_set(im->rbd, VHU_BLK_RBD_WRITER_KEY, owners[0]);
		rbd_lock_get_owners_cleanup(owners, n);
	} else if (e == 0) {
		e = -ENOENT;
	}
	if (e < 0)
		vhu__blk_log(VHU_LOG_WARN, "rbd: '%s': cannot record this client "
			     "as a vhu-blk writer (%s): another vhu-blk started on "
			     "the image meanwhile (a migration's destination) is "
			     "refused unless it has --lock off", im->name,
			     strerror(-e));
}

bool vhu__blk_rbd_owner_watches(struct img *im, const char *who)
{
	rbd_image_watcher_t ws[64];
	size_t n = sizeof(ws) / sizeof(ws[0]);
	bool found = false;

	if (rbd_watchers_list(im->rbd, ws, &n) < 0)
		return true;    /* cannot tell: alive */
	for (size_t i = 0; i < n && !found; i++)
		found = ws[i].addr && (strstr(ws[i].addr, who) ||
				       strstr(who, ws[i].addr));
	rbd_watchers_list_cleanup(ws, n);
	return found;
}

bool vhu__blk_rbd_owner_is_vhu_blk(struct img *im, const char *who)
{
	char v[256];
	size_t len = sizeof(v);

	if (rbd_metadata_get(im->rbd, VHU_BLK_RBD_WRITER_KEY, v, &len) < 0)
		return false;
	v[sizeof(v) - 1] = 0;
	return strcmp(v, who) == 0;
}

static void *locker_main(void *arg)
{
	struct img *im = arg;

	pthread_mutex_lock(&im->mu);
	for (;;) {
		int l = atomic_load(&im->lock);

		if (im->want && im->done_gen != im->want_gen) {
			im->done_gen = im->want_gen;
			if (l != LOCK_HELD)
				lock_take(im);
		} else if (!im->want && l != LOCK_RELEASED) {
			lock_give(im);
		} else if (im->quit) {
			break;
		} else {
			pthread_cond_wait(&im->cv, &im->mu);
		}
	}
	pthread_mutex_unlock(&im->mu);
	return NULL;
}

int vhu__blk_rbd_locker_start(struct img *im)
{
	int e = -pthread_create(&im->locker, NULL, locker_main, im);

	im->locker_ok = e == 0;
	return e;
}

/* Image close: the locker gives the lock back and ends.  false: it is
 * still inside librbd after LOCKER_JOIN_S (the cluster does not answer). */
bool vhu__blk_rbd_locker_stop(struct img *im)
{
	struct timespec until;

	if (!im->locker_ok)
		return true;
	pthread_mutex_lock(&im->mu);
	im->want = false;
	im->quit = true;
	pthread_cond_signal(&im->cv);
	pthread_mutex_unlock(&im->mu);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += LOCKER_JOIN_S;
	if (pthread_timedjoin_np(im->locker, NULL, &until) != 0)
		return false;
	im->locker_ok = false;
	return true;
}

/* The guest's first queue starts (a restart at the same positions keeps
 * the lock): the locker takes the lock; writes wait until it has. */
void vhu__blk_rbd_queues_on(struct vhu_blk *blk)
{
	struct img *im = img_of(blk);
	int l;

	if (!im->locker_ok)
		return;
	/* Read under mu: the locker sets the state there. */
	pthread_mutex_lock(&im->mu);
	l = atomic_load(&im->lock);
	im->want = true;
	im->want_gen++;
	/* Writes wait from now on until the lock is (again) ours: also
	 * while the locker still releases it for the queues that stopped. */
	if (l == LOCK_RELEASED || l == LOCK_REFUSED || im->giving)
		atomic_store(&im->lock, LOCK_TAKING);
	pthread_cond_signal(&im->cv);
	pthread_mutex_unlock(&im->mu);
}

/* The last queue stopped for real: the locker gives the lock back. */
void vhu__blk_rbd_queues_off(struct vhu_blk *blk)
{
	struct img *im = img_of(blk);

	if (!im->locker_ok)
		return;
	pthread_mutex_lock(&im->mu);
	im->want = false;
	pthread_cond_signal(&im->cv);
	pthread_mutex_unlock(&im->mu);
}
