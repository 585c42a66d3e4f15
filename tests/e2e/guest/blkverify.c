/*
 * blkverify: write a region of a block device with self-describing blocks
 * and read it back, counting every block that is missing, stale or torn.
 *
 *   blkverify write|verify DEVICE OFFSET LENGTH GEN [options]
 *     --chunk BYTES   bytes per read/write call (multiple of 4096, default 65536)
 *     --cpu N         run on CPU N only (so that its I/O goes to queue N)
 *     --until OFFSET  repeat passes until the 4 KiB block at OFFSET starts
 *                     with "VHU-GO" (checked after each pass), at most
 *                     --max-passes; write passes use GEN, GEN+1, ...
 *     --max-passes N  (default 1000)
 *                     With --until, "PASS MODE N" is printed after each pass.
 *
 * Each 4096-byte block carries a header (magic, its own device offset, the
 * generation of the pass that wrote it, a CRC-32C of the rest) and
 * pseudo-random bytes derived from offset and generation.  I/O is
 * O_DIRECT, so it goes to the device and not the page cache.  A verify
 * pass reads the whole region into a region-sized buffer (see pass()) and
 * then checks it: a read whose data never reached guest memory (or reached
 * it and was lost, e.g. by a migration that did not copy the page again)
 * leaves poison or another block and fails the check.
 *
 * Prints one line: "BLKVERIFY mode=M passes=P gen=G blocks=B errors=E
 * missing=Z stale=S corrupt=C ioerr=I" (gen: the last generation written
 * or checked).  Exit status 0 when E == 0.
 *
 * Busybox has no fio; this is linked statically on the host and copied
 * into the guest image, as blkzero is.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLK 4096u
#define MAGIC 0x31564b4c42554856ull /* "VHUBLKV1" */

struct hdr {
	uint64_t magic;
	uint64_t offset;
	uint64_t gen;
	uint32_t crc;
	uint32_t pad;
};

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82f63b78u & -(c & 1)); /* Castagnoli */
		crc_table[i] = c;
	}
}

static uint32_t crc32c(const uint8_t *p, size_t n)
{
	uint32_t c = ~0u;
	while (n--)
		c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

static void fill(uint8_t *b, uint64_t off, uint64_t gen)
{
	uint64_t x = (off * 0x9e3779b97f4a7c15ull) ^ (gen + 0x632be59bd9b4e019ull);
	for (unsigned i = sizeof(struct hdr); i < BLK; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(b + i, &x, 8);
	}
	struct hdr h = { MAGIC, off, gen, 0, 0 };
	memcpy(b, &h, sizeof(h));
	h.crc = crc32c(b + sizeof(h), BLK - sizeof(h));
	memcpy(b, &h, sizeof(h));
}

struct tally {
	unsigned long blocks, missing, stale, corrupt, ioerr;
};

static int nonzero(const uint8_t *b)
{
	for (unsigned i = 0; i < BLK; i++)
		if (b[i])
			return 1;
	return 0;
}

static void report(const char *what, uint64_t off, unsigned long *shown)
{
	if ((*shown)++ < 8)
		fprintf(stderr, "blkverify: block at %llu: %s\n",
			(unsigned long long)off, what);
}

static void check_block(const uint8_t *b, uint64_t off, uint64_t gen,
			struct tally *t, unsigned long *shown)
{
	struct hdr h;
	memcpy(&h, b, sizeof(h));
	t->blocks++;
	if (!nonzero(b)) {
		t->missing++;
		report("zeroes (never written)", off, shown);
	} else if (h.magic != MAGIC || h.offset != off) {
		t->corrupt++;
		report(h.magic == MAGIC ? "another block's data" :
		       "no header (poison: the read's data never arrived)", off, shown);
	} else if (h.crc != crc32c(b + sizeof(h), BLK - sizeof(h))) {
		t->corrupt++;
		report("checksum mismatch", off, shown);
	} else if (h.gen != gen) {
		t->stale++;
		report("stale generation", off, shown);
	}
}

static void io_error(struct tally *t, int writing, uint64_t off, ssize_t r)
{
	t->ioerr++;
	fprintf(stderr, "blkverify: %s at %llu: %s\n", writing ? "write" : "read",
		(unsigned long long)off, r < 0 ? strerror(errno) : "short");
}

/*
 * A write pass fills and writes one chunk at a time.  A read pass reads
 * the whole region into a buffer as large as it and only then checks it,
 * rotated by `shift` bytes: buffer byte i holds region byte (i + shift) %
 * len, and the caller changes the shift every pass.  So each pass the
 * device writes different data into every page of the buffer, and the
 * guest never writes to it (it is poisoned once, before the first pass).
 * Only the dirty log can tell a migration that those pages changed: a
 * page copied before the device filled it and not copied again holds
 * poison or another pass's block on the destination, and the check of
 * the pass that spans the switch-over catches it.
 */
static void pass(int fd, int writing, uint64_t off0, uint64_t len, size_t chunk,
		 uint64_t shift, uint64_t gen, uint8_t *buf, struct tally *t,
		 unsigned long *shown)
{
	for (uint64_t pos = 0, n; pos < len; pos += n) {
		n = len - pos < chunk ? (size_t)(len - pos) : chunk;
		uint64_t rel = (pos + shift) % len;
		if (rel + n > len)
			n = len - rel;
		uint64_t off = off0 + (writing ? pos : rel);
		uint8_t *p = writing ? buf : buf + pos;
		ssize_t r;
		if (writing) {
			for (size_t i = 0; i < n; i += BLK)
				fill(p + i, off + i, gen);
			r = pwrite(fd, p, (size_t)n, (off_t)off);
		} else {
			r = pread(fd, p, (size_t)n, (off_t)off);
		}
		if (r != (ssize_t)n)
			io_error(t, writing, off, r);
	}
	if (writing && fdatasync(fd) < 0)
		io_error(t, 1, off0, -1);
	if (!writing)
		for (uint64_t i = 0; i < len; i += BLK)
			check_block(buf + i, off0 + (i + shift) % len, gen, t, shown);
}

static int marker_set(int fd, uint64_t at, uint8_t *buf)
{
	if (pread(fd, buf, BLK, (off_t)at) != BLK)
		return 0;
	return memcmp(buf, "VHU-GO", 6) == 0;
}

static uint64_t num(const char *s, const char *what)
{
	char *end;
	errno = 0;
	uint64_t v = strtoull(s, &end, 0);
	if (errno || *end || end == s) {
		fprintf(stderr, "blkverify: bad %s '%s'\n", what, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	if (argc < 6 || (strcmp(argv[1], "write") && strcmp(argv[1], "verify"))) {
		fprintf(stderr, "usage: %s write|verify DEVICE OFFSET LENGTH GEN "
			"[--chunk B] [--cpu N] [--until OFFSET] [--max-passes N]\n",
			argv[0]);
		return 2;
	}
	int writing = strcmp(argv[1], "write") == 0;
	uint64_t off = num(argv[3], "offset"), len = num(argv[4], "length");
	uint64_t gen = num(argv[5], "generation"), until = 0, max_passes = 1000;
	size_t chunk = 65536;
	int use_until = 0;
	for (int i = 6; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--chunk")) {
			chunk = (size_t)num(argv[i + 1], "chunk");
		} else if (!strcmp(argv[i], "--cpu")) {
			cpu_set_t set;
			CPU_ZERO(&set);
			CPU_SET((int)num(argv[i + 1], "cpu"), &set);
			if (sched_setaffinity(0, sizeof(set), &set) < 0)
				fprintf(stderr, "blkverify: cpu %s: %s\n", argv[i + 1],
					strerror(errno));
		} else if (!strcmp(argv[i], "--until")) {
			until = num(argv[i + 1], "marker offset");
			use_until = 1;
		} else if (!strcmp(argv[i], "--max-passes")) {
			max_passes = num(argv[i + 1], "passes");
		} else {
			fprintf(stderr, "blkverify: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (off % BLK || len % BLK || !len || !chunk || chunk % BLK || chunk > (64u << 20)) {
		fprintf(stderr, "blkverify: offset, length and chunk must be multiples of 4096\n");
		return 2;
	}
	crc_init();
	int fd = open(argv[2], (writing ? O_RDWR : O_RDONLY) | O_DIRECT);
	if (fd < 0) {
		fprintf(stderr, "blkverify: open %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	uint8_t *buf;
	if (!writing && len > (256u << 20)) {
		fprintf(stderr, "blkverify: verify reads at most 256 MiB at once\n");
		return 2;
	}
	if (posix_memalign((void **)&buf, BLK, writing ? chunk : (size_t)len)) {
		fprintf(stderr, "blkverify: out of memory\n");
		return 1;
	}
	struct tally t = { 0 };
	unsigned long shown = 0, passes = 0;
	uint64_t g = gen;
	if (!writing)
		memset(buf, 0xa5, (size_t)len);
	for (;;) {
		/* 5 chunks further each pass (coprime to the usual chunk counts). */
		uint64_t shift = (passes * 5 * chunk) % len;
		pass(fd, writing, off, len, chunk, shift, g, buf, &t, &shown);
		passes++;
		if (use_until) {
			printf("PASS %s %lu\n", argv[1], passes);
			fflush(stdout);
		}
		if (!use_until || passes >= max_passes || marker_set(fd, until, buf))
			break;
		if (writing)
			g++;
	}
	unsigned long errors = t.missing + t.stale + t.corrupt + t.ioerr;
	printf("BLKVERIFY mode=%s passes=%lu gen=%llu blocks=%lu errors=%lu "
	       "missing=%lu stale=%lu corrupt=%lu ioerr=%lu\n", argv[1], passes,
	       (unsigned long long)g, t.blocks, errors, t.missing, t.stale,
	       t.corrupt, t.ioerr);
	close(fd);
	return errors ? 1 : 0;
}
