/* SPDX-License-Identifier: MIT */
/*
 * Shared memory the library creates and hands to a peer (the front-end's
 * guest memory, the back-end's inflight region).  The size is sealed
 * (F_SEAL_SHRINK | F_SEAL_GROW) once set: a peer that ftruncate()s a file
 * we map would otherwise make our next access past its new end raise
 * SIGBUS.  With the seals the peer's ftruncate fails with EPERM.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

int vhu__memfd_sealed(const char *name, size_t size)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

void vhu__shm_release(void *addr, size_t size, int fd)
{
	if (addr)
		munmap(addr, size);
	if (fd >= 0)
		close(fd);
}

int vhu__memfd_mapped(const char *name, size_t size, void **addr)
{
	int fd = vhu__memfd_sealed(name, size);

	if (fd < 0)
		return fd;
	*addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (*addr == MAP_FAILED) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}
