/*
 * testhelp.h - a minimal unit-test harness: tests are functions named by a
 * sentence; a failed check prints both values with file:line and ends that
 * test.  The runner prints one line per test and "# N passed, M failed".
 */
#ifndef HD_TESTHELP_H
#define HD_TESTHELP_H

#include <stdio.h>
#include <string.h>

struct unit_test {
	const char *name;
	void (*fn)(void);
};

static int test_failed;

#define ASSERT_EQ(a, b) do { \
	long long _a = (long long)(a), _b = (long long)(b); \
	if (_a != _b) { \
		printf("  %s:%d: %s == %s: %lld != %lld\n", __FILE__, __LINE__, #a, #b, _a, _b); \
		test_failed = 1; \
		return; \
	} } while (0)

#define ASSERT_TRUE(c) do { \
	if (!(c)) { \
		printf("  %s:%d: expected %s\n", __FILE__, __LINE__, #c); \
		test_failed = 1; \
		return; \
	} } while (0)

#define ASSERT_STR(a, b) do { \
	const char *_a = (a), *_b = (b); \
	if (strcmp(_a, _b) != 0) { \
		printf("  %s:%d: %s == %s: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a, #b, _a, _b); \
		test_failed = 1; \
		return; \
	} } while (0)

static inline int run_unit_tests(const char *suite, const struct unit_test *t, size_t n)
{
	int passed = 0, failed = 0;

	for (size_t i = 0; i < n; i++) {
		test_failed = 0;
		t[i].fn();
		printf("%s - %s: %s\n", test_failed ? "FAIL" : "ok", suite, t[i].name);
		fflush(stdout);
		if (test_failed)
			failed++;
		else
			passed++;
	}
	printf("# %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}

#endif /* HD_TESTHELP_H */
