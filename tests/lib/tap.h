/* SPDX-License-Identifier: MIT */
/*
 * Minimal TAP test harness shared by the unit tests.
 *
 *   TEST(parses_header) { CHECK(x == 1); CHECK_EQ(a, b); }
 *   int main(void) { return tap_run(); }
 *
 * Each TEST prints "ok N - name" or "not ok N - name"; a CHECK failure
 * prints the expression, file and line, and ends that test.  tap_skip()
 * inside a test reports "ok N - name # SKIP reason".
 *
 *   TEST_LAYOUTS(pops_a_chain) { ... tap_packed ... }
 *
 * is one body run twice, as the cases "name/split" and "name/packed",
 * with tap_packed false and then true: the test's set-up picks the ring
 * layout from it.
 */
#ifndef VHU_TAP_H
#define VHU_TAP_H

#include <inttypes.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*tap_fn)(void);
enum tap_layout { TAP_ANY, TAP_SPLIT, TAP_PACKED };
struct tap_case {
	const char *name;
	tap_fn fn;
	enum tap_layout layout;
};

#define TAP_MAX_CASES 1024
static struct tap_case tap_cases[TAP_MAX_CASES];
static unsigned tap_ncases;
static jmp_buf tap_jmp;
/* The ring layout of the running case (TEST_LAYOUTS). */
static bool tap_packed __attribute__((unused));
static int tap_failed_now;
static const char *tap_skip_reason;

static inline void tap_register_layout(const char *name, tap_fn fn,
				       enum tap_layout layout)
{
	if (tap_ncases < TAP_MAX_CASES)
		tap_cases[tap_ncases++] = (struct tap_case){ name, fn, layout };
}

static inline void tap_register(const char *name, tap_fn fn)
{
	tap_register_layout(name, fn, TAP_ANY);
}

#define TEST(name)                                                            \
	static void test_##name(void);                                        \
	__attribute__((constructor)) static void tap_reg_##name(void)         \
	{                                                                     \
		tap_register(#name, test_##name);                             \
	}                                                                     \
	static void test_##name(void)

#define TEST_LAYOUTS(name)                                                    \
	static void test_##name(void);                                        \
	__attribute__((constructor)) static void tap_reg_##name(void)         \
	{                                                                     \
		tap_register_layout(#name "/split", test_##name, TAP_SPLIT);   \
		tap_register_layout(#name "/packed", test_##name, TAP_PACKED); \
	}                                                                     \
	static void test_##name(void)

#define TAP_FAIL(...)                                                         \
	do {                                                                  \
		printf("# %s:%d: ", __FILE__, __LINE__);                      \
		printf(__VA_ARGS__);                                          \
		printf("\n");                                                 \
		fflush(stdout);                                               \
		tap_failed_now = 1;                                           \
		longjmp(tap_jmp, 1);                                          \
	} while (0)

#define CHECK(cond)                                                           \
	do {                                                                  \
		if (!(cond))                                                  \
			TAP_FAIL("check failed: %s", #cond);                  \
	} while (0)

#define CHECK_EQ(a, b)                                                        \
	do {                                                                  \
		long long tap_a_ = (long long)(a), tap_b_ = (long long)(b);   \
		if (tap_a_ != tap_b_)                                         \
			TAP_FAIL("%s == %s: %lld != %lld", #a, #b, tap_a_,     \
				 tap_b_);                                     \
	} while (0)

#define CHECK_MEM(a, b, n)                                                    \
	do {                                                                  \
		if (memcmp((a), (b), (n)) != 0)                               \
			TAP_FAIL("memory differs: %s vs %s (%zu bytes)", #a,   \
				 #b, (size_t)(n));                            \
	} while (0)

#define tap_skip(reason)                                                      \
	do {                                                                  \
		tap_skip_reason = (reason);                                   \
		longjmp(tap_jmp, 2);                                          \
	} while (0)

/* Optional hooks run around every case (e.g. fd-leak checks). */
static void (*tap_before_each)(void);
static void (*tap_after_each)(void);

static inline int tap_run(void)
{
	volatile unsigned failed = 0;
	const char *only = getenv("TAP_ONLY");
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("1..%u\n", tap_ncases);
	for (volatile unsigned i = 0; i < tap_ncases; i++) {
		if (only && strcmp(only, tap_cases[i].name)) {
			printf("ok %u - %s # SKIP not selected\n", i + 1,
			       tap_cases[i].name);
			continue;
		}
		tap_failed_now = 0;
		tap_skip_reason = NULL;
		tap_packed = tap_cases[i].layout == TAP_PACKED;
		int j = setjmp(tap_jmp);
		if (j == 0) {
			if (tap_before_each)
				tap_before_each();
			tap_cases[i].fn();
			if (tap_after_each)
				tap_after_each();
		}
		if (j == 2) {
			printf("ok %u - %s # SKIP %s\n", i + 1, tap_cases[i].name,
			       tap_skip_reason);
		} else if (tap_failed_now) {
			failed++;
			printf("not ok %u - %s\n", i + 1, tap_cases[i].name);
		} else {
			printf("ok %u - %s\n", i + 1, tap_cases[i].name);
		}
	}
	return failed ? 1 : 0;
}

#endif
