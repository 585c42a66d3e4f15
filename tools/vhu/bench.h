/* SPDX-License-Identifier: MIT */
/* vhu bench: what its files share (bench.c runs the load, bench-opts.c
 * parses the command line, bench-report.c merges and prints the figures). */
#ifndef VHU_BENCH_H
#define VHU_BENCH_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <vhu/frontend.h>

#include "bench-log.h"
#include "blk.h"

#define SECTOR 512u

enum pattern { P_READ, P_WRITE, P_RANDREAD, P_RANDWRITE, P_RW, P_RANDRW };
extern const char *const pattern_names[];

struct opts {
	enum pattern pattern;
	unsigned rwmix_read;   /* percent */
	uint64_t bs;
	unsigned iodepth;
	unsigned queues;
	unsigned queue_size;
	double time_s;
	uint64_t count;        /* 0: time-bound */
	uint64_t size;         /* bytes of the disk to use, 0 = all */
	int pid;
	bool verify;
	uint64_t seed;
	bool json;
	bool progress;
	bool no_event_idx;
	bool packed;
	bool poll;             /* spin on the used ring, never wait for a call */
	double hold_s;         /* keep the queues started this long after */
	bool dirty_log;      /* --dirty-log */
	double stall_s;
};

/* Log-linear latency histogram: exact below 64 ns, then 32 buckets per
 * power of two (about 3 % resolution), up to 2^40 ns. */
#define H_SUB 32
#define H_BUCKETS (64 + (40 - 6) * H_SUB + H_SUB)

struct slot {
	struct blk_hdr *hdr;
	uint8_t *data;
	uint8_t *status;
	uint64_t hdr_gpa, data_gpa, status_gpa;
	uint64_t t_submit;
	uint64_t block;
	bool write;
	bool check;          /* verify this read's data */
};

struct worker {
	pthread_t thread;
	unsigned index;
	const struct opts *o;
	struct vhu_fe_vq *vq;
	struct slot *slots;
	struct slot **free_slots;
	unsigned nfree;
	uint64_t first_block, nblocks, next_seq;
	uint64_t rng;
	uint8_t *written;    /* verify: blocks this run wrote (bitmap) */
	uint64_t quota;      /* requests to submit, UINT64_MAX: by time */
	uint64_t submitted;

	/* results; done is read by the progress printer */
	uint64_t done;
	uint64_t reads, writes, errors, verified, mismatches;
	uint64_t kicks;      /* kick eventfd writes (the device asked for them) */
	uint64_t lat_max;
	uint64_t lat_sum;
	uint64_t hist[H_BUCKETS];
	int fail;            /* -errno when the worker stopped on an error */
};

/* Every queue's figures together. */
struct bench_totals {
	uint64_t hist[H_BUCKETS];
	uint64_t done, reads, writes, errors, verified, mismatches, kicks;
	uint64_t lat_max, lat_sum;
	int fail;          /* the first queue's failure, -EAGAIN: not started */
};


/* 0: run; 1: --help printed; -1: bad usage (said why). */
int bench_parse_opts(int argc, char **argv, struct opts *o, const char **path);
void bench_merge(const struct opts *o, const struct worker *ws,
		 unsigned started, struct bench_totals *m);
/* Print the results (text or JSON): secs of run time, cpu back-end CPU
 * seconds (< 0: unknown), fe_cpu the front-end's, f the features. */
void bench_report(const struct opts *o, const struct bench_totals *m,
		  double secs, double cpu, double fe_cpu, uint64_t f,
		  const struct bench_dirty *dirty);

#endif
