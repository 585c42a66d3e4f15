/* SPDX-License-Identifier: MIT */
/* vhu bench: every queue's figures merged, percentiles, the report. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "bench.h"

static double h_value(unsigned idx)
{
	if (idx < 64)
		return idx;
	unsigned k = (idx - 64) / H_SUB, m = (idx - 64) % H_SUB, msb = k + 6;
	double lo = (double)(1ull << msb) + (double)((uint64_t)m << (msb - 5));
	return lo + (double)(1ull << (msb - 5)) / 2; /* bucket middle */
}

static double percentile(const uint64_t *h, uint64_t total, double p)
{
	if (!total)
		return 0;
	uint64_t want = (uint64_t)ceil(p * (double)total);
	if (want == 0)
		want = 1;
	uint64_t acc = 0;
	for (unsigned i = 0; i < H_BUCKETS; i++) {
		acc += h[i];
		if (acc >= want)
			return h_value(i);
	}
	return h_value(H_BUCKETS - 1);
}
void bench_merge(const struct opts *o, const struct worker *ws,
			unsigned started, struct bench_totals *m)
{
	memset(m, 0, sizeof(*m));
	m->fail = started < o->queues ? -EAGAIN : 0;
	for (unsigned q = 0; q < started; q++) {
		const struct worker *w = &ws[q];
		m->done += w->done;
		m->reads += w->reads;
		m->writes += w->writes;
		m->errors += w->errors;
		m->verified += w->verified;
		m->mismatches += w->mismatches;
		m->kicks += w->kicks;
		m->lat_sum += w->lat_sum;
		if (w->lat_max > m->lat_max)
			m->lat_max = w->lat_max;
		for (unsigned i = 0; i < H_BUCKETS; i++)
			m->hist[i] += w->hist[i];
		if (w->fail && !m->fail) {
			m->fail = w->fail;
			fprintf(stderr, "vhu bench: queue %u stopped: %s\n", q,
				strerror(-w->fail));
		}
	}
}

/* Print the results (text or JSON): secs of run time, cpu back-end CPU
 * seconds (< 0: unknown), f the features. */
void bench_report(const struct opts *o, const struct bench_totals *m,
			 double secs, double cpu, double fe_cpu, uint64_t f,
			 const struct bench_dirty *dirty)
{
	uint64_t done = m->done, lat_max = m->lat_max;
	double iops = secs > 0 ? (double)done / secs : 0;
	double mbps = iops * (double)o->bs / 1e6;
	/* A bucket's middle may lie above the largest sample: clamp. */
	double maxv = (double)lat_max;
	double p50 = fmin(percentile(m->hist, done, 0.50), maxv) / 1000;
	double p99 = fmin(percentile(m->hist, done, 0.99), maxv) / 1000;
	double p999 = fmin(percentile(m->hist, done, 0.999), maxv) / 1000;
	double avg = done ? (double)m->lat_sum / (double)done / 1000 : 0;
	double iops_per_cpu = cpu > 0 ? (double)done / cpu : 0;

	if (o->json) {
		json_object *j = json_object_new_object();
		json_object_object_add(j, "pattern", json_object_new_string(pattern_names[o->pattern]));
		json_object_object_add(j, "bs", json_object_new_uint64(o->bs));
		json_object_object_add(j, "iodepth", json_object_new_int((int)o->iodepth));
		json_object_object_add(j, "queues", json_object_new_int((int)o->queues));
		json_object_object_add(j, "packed", json_object_new_boolean(
					       (f & VHU_BIT(VHU_F_RING_PACKED)) != 0));
		json_object_object_add(j, "seconds", json_object_new_double(secs));
		json_object_object_add(j, "requests", json_object_new_uint64(done));
		json_object_object_add(j, "reads", json_object_new_uint64(m->reads));
		json_object_object_add(j, "writes", json_object_new_uint64(m->writes));
		json_object_object_add(j, "errors", json_object_new_uint64(m->errors));
		json_object_object_add(j, "kicks", json_object_new_uint64(m->kicks));
		json_object_object_add(j, "iops", json_object_new_double(iops));
		json_object_object_add(j, "mbps", json_object_new_double(mbps));
		json_object_object_add(j, "lat_avg_us", json_object_new_double(avg));
		json_object_object_add(j, "lat_p50_us", json_object_new_double(p50));
		json_object_object_add(j, "lat_p99_us", json_object_new_double(p99));
		json_object_object_add(j, "lat_p999_us", json_object_new_double(p999));
		json_object_object_add(j, "lat_max_us", json_object_new_double((double)lat_max / 1000));
		json_object_object_add(j, "poll", json_object_new_boolean(o->poll));
		json_object_object_add(j, "frontend_cpu_s", json_object_new_double(fe_cpu));
		if (cpu >= 0) {
			json_object_object_add(j, "backend_cpu_s", json_object_new_double(cpu));
			json_object_object_add(j, "iops_per_backend_cpu_s",
					       json_object_new_double(iops_per_cpu));
		}
		if (dirty)
			json_object_object_add(j, "dirty_log_pages",
					       json_object_new_uint64(dirty->marked));
		if (o->verify) {
			json_object_object_add(j, "verified", json_object_new_uint64(m->verified));
			json_object_object_add(j, "mismatches", json_object_new_uint64(m->mismatches));
		}
		printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY));
		json_object_put(j);
		return;
	}
	printf("pattern %s, bs %" PRIu64 ", iodepth %u, queues %u, %.2f s%s%s\n",
	       pattern_names[o->pattern], o->bs, o->iodepth, o->queues, secs,
	       (f & VHU_BIT(VHU_F_EVENT_IDX)) ? ", event-idx" : "",
	       (f & VHU_BIT(VHU_F_RING_PACKED)) ? ", packed" : "");
	printf("requests: %" PRIu64 " (%" PRIu64 " reads, %" PRIu64 " writes), "
	       "errors: %" PRIu64 "\n", done, m->reads, m->writes, m->errors);
	printf("kicks: %" PRIu64 " (%.2f per request)\n", m->kicks,
	       done ? (double)m->kicks / (double)done : 0);
	printf("IOPS: %.0f  MB/s: %.1f\n", iops, mbps);
	printf("latency (us): avg %.1f  p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
	       avg, p50, p99, p999, (double)lat_max / 1000);
	printf("front-end CPU: %.2f s (%.0f%% of one CPU)%s\n", fe_cpu,
	       secs > 0 ? 100 * fe_cpu / secs : 0, o->poll ? ", polling" : "");
	if (cpu >= 0)
		printf("back-end CPU: %.2f s (%.0f%% of one CPU), "
		       "IOPS per back-end CPU-second: %.0f\n",
		       cpu, secs > 0 ? 100 * cpu / secs : 0, iops_per_cpu);
	if (dirty)
		printf("dirty log: %" PRIu64 " page bits read in %" PRIu64 " syncs\n",
		       dirty->marked, dirty->syncs);
	if (o->verify)
		printf("verify: %" PRIu64 " reads checked, %" PRIu64 " mismatches\n",
		       m->verified, m->mismatches);
}
