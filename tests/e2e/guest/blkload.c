/*
 * blkload write|verify DEVICE GEN BLOCKS WORKERS: a write+verify load
 * for the restart test (tests/e2e/test-restart.sh), linked statically on
 * the host and copied into the guest image (busybox has no fio).
 *
 * The first BLOCKS 4096-byte blocks of DEVICE are split among WORKERS
 * processes (block b belongs to worker b % WORKERS; worker w runs on CPU
 * w % online CPUs, so every hardware queue carries I/O).  All I/O is
 * O_DIRECT, 4 blocks per request.  Each block holds
 *
 *   u32 magic "VHUR" | u32 gen | u64 block | payload | u32 crc32
 *
 * where the payload is a pseudo-random function of (block, gen) and the
 * crc32 (zlib's) covers everything before it.  "write" formats every block
 * for GEN and ends with fdatasync (a FLUSH); "verify" reads every block and
 * classifies what it finds:
 *   unwritten   no magic: a write that never reached the disk
 *   stale       an older generation: a write that was lost
 *   future      a newer generation than asked (cannot happen)
 *   misplaced   a block carrying another block's number
 *   torn        header right but crc or payload wrong: a partial write
 *   ioerr       a read or write the kernel failed
 * The parent prints "PROGRESS <mode> <gen> <percent>" every 10 % and, at the
 * end, "PASS <mode> <gen> blocks=N ioerr=N unwritten=N stale=N future=N
 * misplaced=N torn=N"; exit status 0 only when every count is 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BS 4096u
#define MAGIC 0x52554856u /* "VHUR" little-endian */
#define WRITE_BLOCKS 4u
#define READ_BLOCKS 4u
#define MAX_WORKERS 64

enum { C_DONE, C_IOERR, C_UNWRITTEN, C_STALE, C_FUTURE, C_MISPLACED, C_TORN, C_N };
static const char *const names[C_N] = { "blocks", "ioerr", "unwritten", "stale",
					"future", "misplaced", "torn" };

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc32(const uint8_t *p, size_t n)
{
	uint32_t c = 0xFFFFFFFFu;
	while (n--)
		c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
	return c ^ 0xFFFFFFFFu;
}

/* The whole expected content of BLOCK in generation GEN. */
static void format(uint8_t *buf, uint64_t block, uint32_t gen)
{
	uint64_t x = (block + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)gen << 32 | gen);
	uint32_t magic = MAGIC;

	memcpy(buf, &magic, 4);
	memcpy(buf + 4, &gen, 4);
	memcpy(buf + 8, &block, 8);
	for (unsigned i = 16; i < BS - 4; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(buf + i, &x, BS - 4 - i < 8 ? BS - 4 - i : 8);
	}
	uint32_t c = crc32(buf, BS - 4);
	memcpy(buf + BS - 4, &c, 4);
}

static int classify(const uint8_t *got, uint8_t *want, uint64_t block, uint32_t gen)
{
	uint32_t magic, g, c;
	uint64_t b;

	memcpy(&magic, got, 4);
	memcpy(&g, got + 4, 4);
	memcpy(&b, got + 8, 8);
	memcpy(&c, got + BS - 4, 4);
	if (magic != MAGIC)
		return C_UNWRITTEN;
	if (crc32(got, BS - 4) != c)
		return C_TORN;
	if (b != block)
		return C_MISPLACED;
	if (g < gen)
		return C_STALE;
	if (g > gen)
		return C_FUTURE;
	format(want, block, gen);
	return memcmp(got, want, BS) ? C_TORN : C_DONE;
}

static void report_bad(int kind, uint64_t block, const uint8_t *got)
{
	uint32_t g;

	memcpy(&g, got + 4, 4);
	/* Only the first few, so a broken run does not flood the console. */
	static int shown;
	if (shown++ < 5)
		printf("BAD %s block %llu (header gen %u)\n", names[kind],
		       (unsigned long long)block, g);
}

static void worker(int fd, const char *mode, uint32_t gen, uint64_t blocks,
		   unsigned w, unsigned nw, volatile uint64_t *count)
{
	unsigned chunk = mode[0] == 'w' ? WRITE_BLOCKS : READ_BLOCKS;
	uint8_t *buf, *want;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;

	if (ncpu > 0) {
		CPU_ZERO(&set);
		CPU_SET(w % (unsigned)ncpu, &set);
		sched_setaffinity(0, sizeof(set), &set);
	}
	if (posix_memalign((void **)&buf, BS, (size_t)BS * chunk) ||
	    posix_memalign((void **)&want, BS, BS))
		_exit(3);
	/* Worker w owns the chunks c with c % nw == w. */
	for (uint64_t first = (uint64_t)w * chunk; first < blocks;
	     first += (uint64_t)nw * chunk) {
		unsigned n = blocks - first < chunk ? (unsigned)(blocks - first) : chunk;
		off_t off = (off_t)(first * BS);
		ssize_t r;

		if (mode[0] == 'w') {
			for (unsigned i = 0; i < n; i++)
				format(buf + (size_t)i * BS, first + i, gen);
			r = pwrite(fd, buf, (size_t)n * BS, off);
		} else {
			r = pread(fd, buf, (size_t)n * BS, off);
		}
		if (r != (ssize_t)(n * BS)) {
			printf("BAD ioerr at block %llu: %s\n", (unsigned long long)first,
			       r < 0 ? strerror(errno) : "short transfer");
			__atomic_fetch_add(&count[C_IOERR], 1, __ATOMIC_RELAXED);
		} else if (mode[0] == 'v') {
			for (unsigned i = 0; i < n; i++) {
				const uint8_t *got = buf + (size_t)i * BS;
				int k = classify(got, want, first + i, gen);
				if (k != C_DONE) {
					report_bad(k, first + i, got);
					__atomic_fetch_add(&count[k], 1, __ATOMIC_RELAXED);
				}
			}
		}
		__atomic_fetch_add(&count[C_DONE], n, __ATOMIC_RELAXED);
	}
	if (mode[0] == 'w' && fdatasync(fd) < 0) {
		printf("BAD ioerr: fdatasync: %s\n", strerror(errno));
		__atomic_fetch_add(&count[C_IOERR], 1, __ATOMIC_RELAXED);
	}
	fflush(stdout);
	_exit(0);
}

int main(int argc, char **argv)
{
	if (argc != 6 || (strcmp(argv[1], "write") && strcmp(argv[1], "verify"))) {
		fprintf(stderr, "usage: %s write|verify DEVICE GEN BLOCKS WORKERS\n", argv[0]);
		return 2;
	}
	const char *mode = argv[1];
	uint32_t gen = (uint32_t)strtoul(argv[3], NULL, 0);
	uint64_t blocks = strtoull(argv[4], NULL, 0);
	unsigned nw = (unsigned)strtoul(argv[5], NULL, 0);
	if (gen == 0 || blocks == 0 || nw == 0 || nw > MAX_WORKERS) {
		fprintf(stderr, "blkverify: GEN, BLOCKS and WORKERS must be positive "
			"(WORKERS at most %d)\n", MAX_WORKERS);
		return 2;
	}
	int fd = open(argv[2], (mode[0] == 'w' ? O_WRONLY : O_RDONLY) | O_DIRECT);
	if (fd < 0) {
		fprintf(stderr, "blkverify: %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	crc_init();
	volatile uint64_t *count = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
					MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (count == MAP_FAILED)
		return 1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	pid_t pids[MAX_WORKERS];
	for (unsigned w = 0; w < nw; w++) {
		pids[w] = fork();
		if (pids[w] < 0) {
			perror("fork");
			return 1;
		}
		if (pids[w] == 0)
			worker(fd, mode, gen, blocks, w, nw, count);
	}
	unsigned left = nw, step = 1;
	int failed = 0;
	while (left) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		int st;
		pid_t p;
		while (left && (p = waitpid(-1, &st, WNOHANG)) > 0) {
			left--;
			if (!WIFEXITED(st) || WEXITSTATUS(st))
				failed = 1;
		}
		uint64_t done = __atomic_load_n(&count[C_DONE], __ATOMIC_RELAXED);
		while (step < 10 && done * 10 >= blocks * step) {
			printf("PROGRESS %s %u %u\n", mode, gen, step * 10);
			step++;
		}
	}
	printf("PASS %s %u", mode, gen);
	for (int k = 0; k < C_N; k++) {
		printf(" %s=%llu", names[k], (unsigned long long)count[k]);
		if (k != C_DONE && count[k])
			failed = 1;
	}
	printf("\n");
	if (count[C_DONE] != blocks)
		failed = 1;
	return failed;
}
