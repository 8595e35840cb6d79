/*
 * test_models.c - the analyzer's pure logic on synthetic input: the trend
 * model's figures and ranking, suppression matching, site keys and
 * baseline fingerprints, the gate's verdicts and baseline comparison, and
 * the JSON emitter, and the teardown of a run set apart from its steady
 * state.  No snapshot files, no symbols, no timers: every series, stack and
 * snapshot is built here, so every expected value is exact.  Built with
 * ASan and UBSan.
 */
#include "alloc_fns.h"
#include "cmd.h"
#include "gate.h"
#include "json.h"
#include "site.h"
#include "suppress.h"
#include "testhelp.h"
#include "trend.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#define ASSERT_NEAR(a, b, eps) do { \
	double _a = (a), _b = (b); \
	if (!(fabs(_a - _b) <= (eps))) { \
		printf("  %s:%d: %s == %s: %.9g != %.9g\n", __FILE__, __LINE__, #a, #b, _a, _b); \
		test_failed = 1; \
		return; \
	} } while (0)

/* ---- synthetic frames ---------------------------------------------------- */

static struct sym_frame frame(const char *function, const char *file, int line, const char *module, uint64_t offset)
{
	return (struct sym_frame){ function, file, line, module, 0x400000 + offset, offset, 0 };
}

/* ---- trend --------------------------------------------------------------- */

#define N 30

/* One trend site over y[0 .. n) at times t. */
static struct trend_site trend_of(struct series *s, int64_t *y, const double *t, int n)
{
	struct trend_site ts = { .s = s };

	s->bytes = y;
	trend_compute(&ts, t, n);
	return ts;
}

static void ticks(double *t, int n, double dt)
{
	for (int i = 0; i < n; i++)
		t[i] = dt * i;
}

static void a_steady_leak_has_its_exact_rate_full_steadiness_and_linearity(void)
{
	double t[N];
	int64_t y[N];
	struct series s = { .key = "leak" };

	ticks(t, N, 0.1);
	for (int i = 0; i < N; i++)
		y[i] = 1000 + 500 * i;   /* 500 bytes per 0.1 s */
	struct trend_site ts = trend_of(&s, y, t, N);
	ASSERT_NEAR(ts.rate, 5000, 1e-6);
	ASSERT_NEAR(ts.recent, 5000, 1e-6);
	ASSERT_NEAR(ts.steadiness, 1, 0);
	ASSERT_NEAR(ts.linearity, 1, 1e-12);
	ASSERT_EQ(ts.growth, 500 * (N - 1));
	ASSERT_EQ(ts.plateaued, 0);
	ASSERT_NEAR(ts.score, 5000, 1e-6);
}

static void uneven_intervals_do_not_bias_the_rate(void)
{
	static const double t[] = { 0, 0.05, 0.3, 0.31, 0.9, 1.0, 1.7, 2.0, 2.05 };
	int64_t y[9];
	struct series s = { .key = "leak" };

	for (int i = 0; i < 9; i++)
		y[i] = (int64_t)llround(2000 * t[i]);
	struct trend_site ts = trend_of(&s, y, t, 9);
	ASSERT_NEAR(ts.rate, 2000, 1e-6);
	ASSERT_NEAR(ts.recent, 2000, 1e-6);   /* the last 3 points */
	ASSERT_NEAR(ts.linearity, 1, 1e-12);
}

static void the_recent_rate_is_the_slope_of_the_last_third(void)
{
	double t[N];
	int64_t y[N];
	struct series s = { .key = "late" };

	ticks(t, N, 0.1);
	for (int i = 0; i < N; i++)
		y[i] = i < 20 ? 1000 : 1000 + 100 * (i - 19);   /* flat, then 1000 B/s */
	struct trend_site ts = trend_of(&s, y, t, N);
	ASSERT_NEAR(ts.recent, 1000, 1e-6);
	ASSERT_TRUE(ts.rate > 0 && ts.rate < 1000);
	ASSERT_NEAR(ts.steadiness, 10.0 / 29, 1e-12);
	ASSERT_EQ(ts.plateaued, 0);
}

static void a_cache_that_filled_up_is_plateaued_and_scores_nothing(void)
{
	double t[N];
	int64_t y[N];
	struct series s = { .key = "cache" };

	ticks(t, N, 0.1);
	for (int i = 0; i < N; i++)
		y[i] = (i < 12 ? i + 1 : 12) * 20 * 1024;
	struct trend_site ts = trend_of(&s, y, t, N);
	ASSERT_TRUE(ts.rate > 0);
	ASSERT_NEAR(ts.recent, 0, 1e-9);
	ASSERT_EQ(ts.plateaued, 1);
	ASSERT_NEAR(ts.score, 0, 1e-9);
}

static void a_flat_or_single_point_series_is_all_zero(void)
{
	double t[N];
	int64_t y[N];
	struct series s = { .key = "flat" };

	ticks(t, N, 0.1);
	for (int i = 0; i < N; i++)
		y[i] = 4096;
	struct trend_site ts = trend_of(&s, y, t, N);
	ASSERT_NEAR(ts.rate, 0, 0);
	ASSERT_NEAR(ts.linearity, 0, 0);
	ASSERT_NEAR(ts.score, 0, 0);
	ts = trend_of(&s, y, t, 1);
	ASSERT_NEAR(ts.rate, 0, 0);
	ASSERT_NEAR(ts.steadiness, 0, 0);
	ASSERT_EQ(ts.growth, 0);
}

/* The slowleak fixture's three kinds of memory, one snapshot per 0.1 s:
 * a leak of 10,000 bytes per snapshot, a cache of 256 KiB filled in the
 * first 13 snapshots, and noise of 0 to 60 blocks of 20 KiB, the number
 * drawn anew every snapshot (a fixed linear congruential sequence); and a
 * sawtooth that climbs 60 KiB a snapshot for 11 snapshots and drops back
 * at once: as steady as noise gets (86% of its intervals grow) and rising
 * fast over the last third, so without linearity it would outrank the
 * leak five times over. */
static void a_steady_leak_ranks_above_noise_a_sawtooth_and_a_plateaued_cache(void)
{
	double t[N];
	int64_t leak[N], cache[N], noise[N], saw[N];
	struct series s[4] = { { .key = "cache" }, { .key = "noise" }, { .key = "saw" }, { .key = "leak" } };
	struct trend_site ts[4];
	uint32_t r = 12345;

	ticks(t, N, 0.1);
	for (int i = 0; i < N; i++) {
		leak[i] = 10000 * (i + 1);
		cache[i] = (i < 13 ? 20 * (i + 1) : 256) * 1024;
		r = r * 1103515245u + 12345u;
		noise[i] = (int64_t)((r >> 16) % 61) * 20 * 1024;
		saw[i] = (i + 5) % 12 * 60 * 1024;
	}
	ts[0] = trend_of(&s[0], cache, t, N);
	ts[1] = trend_of(&s[1], noise, t, N);
	ts[2] = trend_of(&s[2], saw, t, N);
	ts[3] = trend_of(&s[3], leak, t, N);
	ASSERT_NEAR(ts[3].rate, 100000, 1e-6);
	ASSERT_NEAR(ts[3].score, 100000, 1e-6);
	ASSERT_TRUE(ts[2].recent * ts[2].steadiness > 5 * ts[3].score);
	for (int i = 0; i < 3; i++)
		ASSERT_TRUE(ts[i].score < ts[3].score / 10);
	trend_rank(ts, 4);
	ASSERT_STR(ts[0].s->key, "leak");
	ASSERT_EQ(ts[0].plateaued, 0);
}

static void equal_scores_rank_by_growth_then_key(void)
{
	struct series s[3] = { { .key = "b" }, { .key = "a" }, { .key = "c" } };
	struct trend_site ts[3] = {
		{ .s = &s[0], .score = 0, .growth = 10 },
		{ .s = &s[1], .score = 0, .growth = 10 },
		{ .s = &s[2], .score = 0, .growth = 20 },
	};

	trend_rank(ts, 3);
	ASSERT_STR(ts[0].s->key, "c");
	ASSERT_STR(ts[1].s->key, "a");
	ASSERT_STR(ts[2].s->key, "b");
}

/* ---- teardown ------------------------------------------------------------ */

/* A heap that climbs 1 MiB a snapshot for n - tail snapshots, then falls
 * along tail[0 .. ntail). */
static void climb_then(uint64_t *live, int n, const uint64_t *tail, int ntail)
{
	for (int i = 0; i < n - ntail; i++)
		live[i] = (uint64_t)(i + 1) << 20;
	for (int i = 0; i < ntail; i++)
		live[n - ntail + i] = tail[i];
}

static void an_exit_snapshot_after_the_program_freed_its_heap_is_the_teardown(void)
{
	uint64_t live[N];
	static const uint64_t tail[] = { 99 << 10 };

	climb_then(live, N, tail, 1);
	ASSERT_EQ(trend_steady_count(live, N, 1, NULL, 0), N - 1);
}

static void interval_snapshots_inside_the_teardown_are_set_apart_with_it(void)
{
	uint64_t live[N];
	/* The steady state ends at 29 MiB; CPython's final collection: 26 MiB,
	 * then 9 MiB, then the exit snapshot's 97 KiB. */
	static const uint64_t tail[] = { 26 << 20, 9 << 20, 97 << 10 };

	climb_then(live, N, tail, 3);
	ASSERT_EQ(live[N - 4], 27u << 20);
	ASSERT_EQ(trend_steady_count(live, N, 1, NULL, 0), N - 3);
}

static void a_dip_before_the_teardown_stays_steady_unless_it_is_a_hundredth_of_the_fall(void)
{
	uint64_t live[N];
	/* The heap peaks at 27 MiB (snapshot N - 4), dips by 4 KiB (N - 3),
	 * then the teardown (N - 2, N - 1): the dip is not a hundredth of the
	 * fall, so the heap was still at its level. */
	uint64_t tail[] = { (27 << 20) - 4096, 9 << 20, 0 };

	climb_then(live, N, tail, 3);
	ASSERT_EQ(live[N - 4], 27u << 20);
	ASSERT_EQ(trend_steady_count(live, N, 1, NULL, 0), N - 2);
	/* A dip of 2% of the fall goes with the teardown. */
	live[N - 3] = (27u << 20) - (27u << 20) / 50;
	ASSERT_EQ(trend_steady_count(live, N, 1, NULL, 0), N - 3);
}

static void a_teardown_that_pauses_is_set_apart_whole_and_an_idle_heap_before_it_is_steady(void)
{
	uint64_t live[N];
	/* CPython at 0.01 s a snapshot: the heap falls, holds still, falls. */
	static const uint64_t tail[] = { 20 << 20, 8 << 20, 8 << 20, 7 << 20, 7 << 20, 7 << 20, 2 << 20, 135 << 10 };
	int nt = (int)(sizeof tail / sizeof tail[0]);

	climb_then(live, N, tail, nt);
	ASSERT_EQ(trend_steady_count(live, N, 1, NULL, 0), N - nt);
	/* Idle for 5 snapshots at its level (the same bytes, or a few less),
	 * then the teardown: the idle snapshots are the steady state's. */
	for (int i = N - nt - 5; i < N - nt; i++)
		live[i] = (24u << 20) - (uint64_t)(i % 2) * 64;
	ASSERT_EQ(trend_steady_count(live, N, 1, NULL, 0), N - nt);
}

static void without_an_exit_snapshot_there_is_no_teardown(void)
{
	uint64_t live[N];
	static const uint64_t tail[] = { 26 << 20, 97 << 10 };

	climb_then(live, N, tail, 2);
	ASSERT_EQ(trend_steady_count(live, N, 0, NULL, 0), N);   /* a running process freed it: ranked */
	ASSERT_EQ(trend_steady_count(live, N, 1, NULL, 0), N - 2);
}

static void an_exit_snapshot_holding_half_the_heap_or_more_is_no_teardown(void)
{
	uint64_t live[N];
	uint64_t tail[1] = { 0 };

	climb_then(live, N, tail, 0);   /* the heap at N - 1: N MiB */
	live[N - 1] = live[N - 2] / 2;
	ASSERT_EQ(trend_steady_count(live, N, 1, NULL, 0), N);
	live[N - 1] = live[N - 2] / 2 - 1;
	ASSERT_EQ(trend_steady_count(live, N, 1, NULL, 0), N - 1);
	live[N - 1] = live[N - 2];      /* no drop at all */
	ASSERT_EQ(trend_steady_count(live, N, 1, NULL, 0), N);
}

static void a_run_that_only_ever_shrank_is_ranked_whole(void)
{
	uint64_t live[N];

	for (int i = 0; i < N; i++)
		live[i] = (uint64_t)(N - i) << 20;
	live[N - 1] = 0;
	ASSERT_EQ(trend_steady_count(live, N, 1, NULL, 0), N);
	ASSERT_EQ(trend_steady_count(live, 2, 1, NULL, 0), 2);   /* too short to tell */
}

/* The boundary the heap cannot see: a leak (10,000 bytes a snapshot) and
 * noise (0 to 60 blocks of 20 KiB); the teardown frees part of the leak
 * before snapshot 30, but the noise grew more in the steady state's last
 * moments, so the heap holds more at 30 than at 29. */
static void a_teardown_snapshot_that_noise_holds_up_is_set_apart_by_the_steady_growers(void)
{
	int64_t leak[N + 3], noise[N + 3];
	uint64_t live[N + 3];
	struct series s[2] = { { .key = "leak", .bytes = leak }, { .key = "noise", .bytes = noise } };
	struct series *v[2] = { &s[0], &s[1] };
	uint32_t r = 12345;

	for (int i = 0; i < N; i++) {
		r = r * 1103515245u + 12345u;
		leak[i] = 10000 * (i + 1);
		noise[i] = (int64_t)((r >> 16) % 61) * 20 * 1024;
	}
	noise[N - 1] = 0;
	leak[N] = leak[N - 1] / 2;          /* the teardown has begun */
	noise[N] = 40 * 20 * 1024;          /* ... after the noise jumped */
	leak[N + 1] = leak[N - 1] / 4;
	noise[N + 1] = 0;
	leak[N + 2] = noise[N + 2] = 0;     /* the exit snapshot */
	for (int i = 0; i < N + 3; i++)
		live[i] = (uint64_t)(leak[i] + noise[i]);
	ASSERT_TRUE(live[N] > live[N - 1]);
	ASSERT_EQ(trend_steady_count(live, N + 3, 1, NULL, 0), N + 1);   /* the heap alone is fooled */
	ASSERT_EQ(trend_steady_count(live, N + 3, 1, v, 2), N);
	/* A leak that only slows down at the boundary is no teardown. */
	leak[N] = leak[N - 1] + 1;
	ASSERT_EQ(trend_steady_count(live, N + 3, 1, v, 2), N + 1);
}

/* A synthetic snapshot of pid 7 at t seconds: stack i (one frame at
 * 0x1000 * (i + 1), outside any module) holding bytes[i]. */
static struct snapshot synthetic(int seq, int trigger, double t, const int64_t *bytes, int nstacks)
{
	struct snapshot s;
	uint64_t total = 0;

	memset(&s, 0, sizeof s);
	s.path = xasprintf("heapdelta.7.%d.%s.snap", seq, hd_trigger_name((uint64_t)trigger));
	s.version = 1;
	s.label = xstrdup("");
	s.exe = xstrdup("/bin/synthetic");
	s.argv = xcalloc(1, sizeof *s.argv);
	s.stacks = xcalloc((size_t)nstacks, sizeof *s.stacks);
	s.frame_pool = xcalloc((size_t)nstacks, sizeof *s.frame_pool);
	s.nstacks = (uint32_t)nstacks;
	for (int i = 0; i < nstacks; i++) {
		struct hd_stack *st = &s.stacks[i];
		st->id = (uint32_t)i;
		st->depth = 1;
		st->frames = &s.frame_pool[i];
		s.frame_pool[i] = 0x1000 * (uint64_t)(i + 1);
		st->live_bytes = st->alloc_bytes = (uint64_t)bytes[i];
		st->live_count = st->alloc_count = bytes[i] > 0;
		total += (uint64_t)bytes[i];
	}
	s.meta[HD_META_PID] = 7;
	s.meta[HD_META_SEQ] = (uint64_t)seq;
	s.meta[HD_META_TRIGGER] = (uint64_t)trigger;
	s.meta[HD_META_MONO_NS] = 5000000000u + (uint64_t)llround(t * 1e9);
	s.meta[HD_META_LIVE_BYTES] = total;
	s.meta[HD_META_RSS_BYTES] = total + (8 << 20);
	return s;
}

static int held(const struct trend *tr)
{
	int n = 0;

	for (int k = 0; k < TREND_HELD; k++)
		n += tr->held[k].s != NULL;
	return n;
}

/* The trend model fed one snapshot at a time: a leak (stack 0) of 10,000
 * bytes a snapshot, a cache (stack 1) that fills up, noise (stack 2); then
 * two interval snapshots of the teardown and the exit snapshot, where the
 * program has freed nearly everything. */
static void the_streamed_trend_ranks_the_steady_state_and_holds_few_snapshots(void)
{
	struct group_opts g = { .by = BY_LINENO };
	struct symbolizer *sym = symbolizer_new();
	struct trend *tr = trend_new(&g, sym, 4, 1);   /* a hint too small: the series grow */
	uint32_t r = 12345;
	const int steady = 30, n = 33;

	int64_t noise = 0;

	for (int i = 0; i < n; i++) {
		int64_t b[3];
		r = r * 1103515245u + 12345u;
		b[0] = 10000 * (i + 1);
		b[1] = (i < 13 ? 20 * (i + 1) : 256) * 1024;
		/* The noise holds still at the last steady snapshot, so that
		 * the heap grows into it and the teardown starts after it. */
		b[2] = i == steady - 1 ? noise : (int64_t)((r >> 16) % 61) * 20 * 1024;
		noise = b[2];
		if (i == steady) {          /* the teardown: the cache and noise go first */
			b[0] = 10000 * steady;
			b[1] = b[2] = 0;
		} else if (i == steady + 1) {
			b[0] = 10000 * steady / 4;
			b[1] = b[2] = 0;
		} else if (i == steady + 2) {
			b[0] = b[1] = 0;
			b[2] = 512;
		}
		struct snapshot s = synthetic(i + 1, i == n - 1 ? HD_TRIGGER_EXIT : HD_TRIGGER_INTERVAL, 0.1 * i, b, 3);
		trend_add(tr, &s);
		ASSERT_TRUE(s.stacks == NULL);   /* taken */
		ASSERT_TRUE(held(tr) <= TREND_HELD);
		if (i == 5) {
			trend_finish(tr);
			ASSERT_EQ(tr->steady, 6);
			ASSERT_EQ(tr->end->meta[HD_META_SEQ], 6);
		}
	}
	trend_finish(tr);
	ASSERT_EQ(tr->n, n);
	ASSERT_EQ(tr->steady, steady);
	ASSERT_EQ(tr->first->meta[HD_META_SEQ], 1);
	ASSERT_EQ(tr->end->meta[HD_META_SEQ], steady);
	ASSERT_EQ(tr->nsites, 3);
	ASSERT_STR(tr->sites[0].s->key, "?+0x1000");
	ASSERT_NEAR(tr->sites[0].rate, 100000, 1e-6);
	ASSERT_NEAR(tr->sites[0].score, 100000, 1e-6);
	ASSERT_EQ(tr->sites[0].growth, 10000 * (steady - 1));
	ASSERT_EQ(tr->sites[0].s->bytes[n - 1], 0);      /* the series keeps the teardown */
	for (size_t i = 1; i < 3; i++)
		ASSERT_TRUE(tr->sites[i].score < tr->sites[0].score / 10);

	/* The same run killed before its exit snapshot: the drop is ranked,
	 * and the leak no longer ranks first by growth now. */
	tr->pts[n - 1].trigger = HD_TRIGGER_INTERVAL;
	trend_finish(tr);
	ASSERT_EQ(tr->steady, n);
	ASSERT_TRUE(tr->sites[0].s->bytes[0] != 10000 || tr->sites[0].score == 0);
	trend_free(tr);
	symbolizer_free(sym);
}

/* ---- suppressions ---------------------------------------------------------- */

static void suppression_templates_match_as_leak_sanitizer_does(void)
{
	ASSERT_TRUE(suppression_template_match("cache", "intentional_cache_fill"));
	ASSERT_TRUE(suppression_template_match("^intentional", "intentional_cache"));
	ASSERT_TRUE(!suppression_template_match("^cache", "intentional_cache"));
	ASSERT_TRUE(suppression_template_match("cache$", "intentional_cache"));
	ASSERT_TRUE(!suppression_template_match("cache$", "cache_fill"));
	ASSERT_TRUE(suppression_template_match("^known_leak$", "known_leak"));
	ASSERT_TRUE(!suppression_template_match("^known_leak$", "known_leak2"));
	ASSERT_TRUE(suppression_template_match("intentional_*", "intentional_cache"));
	ASSERT_TRUE(suppression_template_match("a*c*e", "abcde"));
	ASSERT_TRUE(!suppression_template_match("a*c*e", "abcd"));
	ASSERT_TRUE(suppression_template_match("*", "x"));
	ASSERT_TRUE(!suppression_template_match("x", ""));
	ASSERT_TRUE(!suppression_template_match("x", NULL));
}

static void a_suppression_matches_any_frame_by_function_file_or_module(void)
{
	struct sym_frame f[3] = {
		frame("make_record", "/src/app/records.c", 10, "app", 0x1000),
		frame("main", "/src/app/main.c", 20, "app", 0x2000),
		frame("??", NULL, 0, "libplugin.so", 0x30),
	};
	const struct sym_frame *v[3] = { &f[0], &f[1], &f[2] };
	struct site_stack st = { v, 3 };
	struct suppression pats[] = {
		{ .pattern = "nothing_here" },
		{ .pattern = "^main.c$" },       /* the file's base name */
		{ .pattern = "records" },
	};
	struct suppressions s = { pats, 3 };

	ASSERT_TRUE(suppressions_match(&s, &st) == &pats[1]);   /* the first that matches */
	s.n = 1;
	ASSERT_TRUE(suppressions_match(&s, &st) == NULL);
	pats[0].pattern = "libplugin";
	ASSERT_TRUE(suppressions_match(&s, &st) == &pats[0]);   /* a module, in the last frame */
	pats[0].pattern = "/src/app/";
	ASSERT_TRUE(suppressions_match(&s, &st) == &pats[0]);   /* the full path too */
}

static char *temp_file(const char *text)
{
	char *path = xstrdup("/tmp/heapdelta-unit-XXXXXX");
	int fd = mkstemp(path);

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
		free(path);
		return NULL;
	}
	close(fd);
	return path;
}

static void a_suppression_file_keeps_leak_lines_and_skips_the_rest(void)
{
	char *path = temp_file("# comment\n\n  leak:known_leak  \ninterceptor_via_fun:foo\nleak:^cache$\n");
	struct suppressions s = { NULL, 0 };

	ASSERT_TRUE(path != NULL);
	int rc = suppressions_load(&s, path);
	unlink(path);
	free(path);
	ASSERT_EQ(rc, 0);
	ASSERT_EQ(s.n, 2);
	ASSERT_STR(s.v[0].pattern, "known_leak");
	ASSERT_EQ(s.v[0].line, 3);
	ASSERT_STR(s.v[1].pattern, "^cache$");
	ASSERT_EQ(s.v[1].line, 5);
	suppressions_release(&s);

	path = temp_file("leak:ok\nthis is not a suppression\n");
	ASSERT_TRUE(path != NULL);
	rc = suppressions_load(&s, path);
	unlink(path);
	free(path);
	suppressions_release(&s);
	ASSERT_EQ(rc, -1);
}

/* ---- sites ------------------------------------------------------------------ */

static void a_site_starts_at_the_first_frame_that_is_not_an_allocator(void)
{
	struct sym_frame f[5] = {
		frame("hds_malloc_slow", "/src/heapdelta/shim/entry.c", 50, "libheapdelta.so", 0x50),
		frame("malloc", NULL, 0, "libc.so.6", 0x99),
		frame("operator new(unsigned long)", NULL, 0, "libstdc++.so.6", 0x77),
		frame("make_record", "/src/app.c", 10, "app", 0x1000),
		frame("main", "/src/app.c", 20, "app", 0x2000),
	};
	const struct sym_frame *v[5] = { &f[0], &f[1], &f[2], &f[3], &f[4] };

	struct site_stack st = site_of_frames(v, 5, NULL);
	ASSERT_EQ(st.n, 2);
	ASSERT_EQ(st.site, 0);
	ASSERT_STR(st.frames[0]->function, "make_record");
	/* Nothing but allocators: the whole stack. */
	st = site_of_frames(v, 3, NULL);
	ASSERT_EQ(st.n, 3);
	ASSERT_TRUE(st.frames == v);
	st = site_of_frames(NULL, 0, NULL);
	ASSERT_EQ(st.n, 0);
}

/* ---- allocation wrappers ---------------------------------------------------- */

/* usage_error() is main.c's; alloc_fns_option() reports through it. */
static int usage_errors;

int usage_error(const char *cmd, const char *fmt, ...)
{
	(void)cmd;
	(void)fmt;
	usage_errors++;
	return EXIT_USAGE;
}

static void a_site_looks_through_wrappers_and_keeps_their_frames(void)
{
	struct sym_frame f[6] = {
		frame("malloc", NULL, 0, "libc.so.6", 0x99),
		frame("g_malloc", "/src/glib/gmem.c", 130, "libglib-2.0.so.0", 0x500),
		frame("g_strdup", "/src/glib/gstrfuncs.c", 360, "libglib-2.0.so.0", 0x600),
		frame("xmalloc", "/src/app/util.c", 12, "app", 0x900),   /* wrappers in a row */
		frame("make_record", "/src/app/records.c", 10, "app", 0x1000),
		frame("main", "/src/app/main.c", 20, "app", 0x2000),
	};
	const struct sym_frame *v[6] = { &f[0], &f[1], &f[2], &f[3], &f[4], &f[5] };
	char *k;

	struct site_stack st = site_of_frames(v, 6, NULL);
	ASSERT_EQ(st.n, 5);                        /* malloc cut off, the wrappers kept */
	ASSERT_EQ(st.site, 3);
	ASSERT_STR(st.frames[0]->function, "g_malloc");
	ASSERT_STR(site_frame(&st)->function, "make_record");
	ASSERT_STR(k = site_key(&st, BY_LINENO), "/src/app/records.c:10");
	free(k);
	ASSERT_STR(k = site_key(&st, BY_FUNCTION), "make_record");
	free(k);
	/* The traceback key and the fingerprint start at the site. */
	ASSERT_STR(k = site_key(&st, BY_TRACEBACK), "/src/app/records.c:10 make_record\n/src/app/main.c:20 main");
	free(k);
	struct site_stack direct = { v + 4, 2, 0 };
	char a[SITE_FP_SIZE], b[SITE_FP_SIZE];
	site_fingerprint(&st, 0, a);
	site_fingerprint(&direct, 0, b);
	ASSERT_STR(a, b);
	site_fingerprint(&st, 1, a);
	site_fingerprint(&direct, 1, b);
	ASSERT_STR(a, b);
	struct site_stack from = site_from_site(&st);
	ASSERT_EQ(from.n, 2);
	ASSERT_TRUE(from.frames == v + 4);

	/* Nothing but wrappers after malloc: sited at the first of them. */
	st = site_of_frames(v, 4, NULL);
	ASSERT_EQ(st.n, 3);
	ASSERT_EQ(st.site, 0);
	ASSERT_STR(site_frame(&st)->function, "g_malloc");
}

/* Whether f is looked through by af (NULL: the built-in list). */
static int wrapper(struct alloc_fns *af, const char *function, const char *file, const char *module)
{
	struct sym_frame f = frame(function, file, 1, module, 0x10);

	return alloc_fns_match(af, &f);
}

static void the_built_in_list_knows_glibc_libstdcxx_glib_redis_sqlite_and_cpython(void)
{
	/* glibc by module, whatever its internal names, and by header. */
	ASSERT_TRUE(wrapper(NULL, "__GI___strdup", "./string/strdup.c", "libc.so.6"));
	ASSERT_TRUE(wrapper(NULL, "__GI__IO_file_doallocate", "./libio/filedoalloc.c", "libc.so.6"));
	ASSERT_TRUE(wrapper(NULL, "??", NULL, "libc.so.6"));
	ASSERT_TRUE(wrapper(NULL, "_dl_new_object", NULL, "ld-linux-x86-64.so.2"));
	ASSERT_TRUE(wrapper(NULL, "getline", "/usr/include/x86_64-linux-gnu/bits/stdio.h", "app"));
	/* A program's own getline is its own. */
	ASSERT_TRUE(!wrapper(NULL, "getline", "/src/app/input.c", "app"));
	/* libstdc++: the runtime by module, the templates by name, with
	 * or without return type and parameters. */
	ASSERT_TRUE(wrapper(NULL, "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >"
			    "::_M_mutate(unsigned long, unsigned long, char const*, unsigned long)", NULL, "libstdc++.so.6"));
	ASSERT_TRUE(wrapper(NULL, "std::__new_allocator<int>::allocate(unsigned long, void const*)",
			    "/usr/include/c++/12/bits/new_allocator.h", "app"));
	ASSERT_TRUE(wrapper(NULL, "void std::vector<int, std::allocator<int> >::_M_realloc_insert<int const&>"
			    "(__gnu_cxx::__normal_iterator<int*, std::vector<int, std::allocator<int> > >, int const&)",
			    "/usr/include/c++/12/bits/vector.tcc", "app"));
	ASSERT_TRUE(wrapper(NULL, "__gnu_cxx::new_allocator<char>::allocate(unsigned long, void const*)", NULL, "app"));
	ASSERT_TRUE(!wrapper(NULL, "app::Cache::fill(int)", "/src/app/cache.cpp", "app"));
	/* A return type is no part of the name. */
	ASSERT_TRUE(!wrapper(NULL, "std::vector<int, std::allocator<int> > app::make_list<int>(int)", "/src/app/l.cpp",
			     "app"));
	ASSERT_TRUE(!wrapper(NULL, "mystd::vector::grow()", "/src/app/vec.cpp", "app"));
	/* By name, in any module. */
	ASSERT_TRUE(wrapper(NULL, "g_malloc0", NULL, "libglib-2.0.so.0"));
	ASSERT_TRUE(wrapper(NULL, "g_strdup_printf", NULL, "libglib-2.0.so.0"));
	ASSERT_TRUE(wrapper(NULL, "xmalloc", "/src/git/wrapper.c", "git"));
	ASSERT_TRUE(wrapper(NULL, "xstrdup.constprop.0", NULL, "ld"));
	ASSERT_TRUE(wrapper(NULL, "zmalloc", NULL, "redis-check-rdb"));
	ASSERT_TRUE(wrapper(NULL, "ztrymalloc_usable", NULL, "redis-check-rdb"));
	ASSERT_TRUE(wrapper(NULL, "zcalloc_num", NULL, "redis-check-rdb"));
	ASSERT_TRUE(wrapper(NULL, "sqlite3DbMallocRawNN", NULL, "libsqlite3.so.0"));
	ASSERT_TRUE(wrapper(NULL, "sqlite3_malloc64", NULL, "libsqlite3.so.0"));
	ASSERT_TRUE(wrapper(NULL, "PyObject_Malloc", NULL, "python3.11"));
	ASSERT_TRUE(wrapper(NULL, "_PyMem_RawMalloc", NULL, "python3.11"));
	/* Whole names only. */
	ASSERT_TRUE(!wrapper(NULL, "dictAddRaw", NULL, "redis-check-rdb"));
	ASSERT_TRUE(!wrapper(NULL, "zmalloc_used_memory", NULL, "redis-check-rdb"));
	ASSERT_TRUE(!wrapper(NULL, "my_xmalloc", NULL, "app"));
	ASSERT_TRUE(!wrapper(NULL, "xmalloc_stats", NULL, "app"));
	ASSERT_TRUE(!wrapper(NULL, "main", "/src/app/main.c", "app"));
	ASSERT_TRUE(!wrapper(NULL, "??", NULL, "app"));
}

static void user_expressions_match_whole_names_with_or_without_parameters(void)
{
	struct alloc_fns af;

	alloc_fns_init(&af);
	usage_errors = 0;
	ASSERT_EQ(alloc_fns_option("top", &af, ALLOC_OPT_FN, "pool_alloc"), 0);
	ASSERT_EQ(alloc_fns_option("top", &af, ALLOC_OPT_FN, "Arena::get"), 0);
	ASSERT_EQ(alloc_fns_option("top", &af, ALLOC_OPT_FN, "("), -1);   /* invalid: a usage error */
	ASSERT_EQ(usage_errors, 1);
	ASSERT_EQ(af.npatterns, 2);
	ASSERT_TRUE(wrapper(&af, "pool_alloc", "/src/app/pool.c", "app"));
	ASSERT_TRUE(wrapper(&af, "pool_alloc.part.0", NULL, "app"));
	ASSERT_TRUE(!wrapper(&af, "pool_alloc_stats", "/src/app/pool.c", "app"));
	ASSERT_TRUE(!wrapper(&af, "my_pool_alloc", "/src/app/pool.c", "app"));
	ASSERT_TRUE(wrapper(&af, "Arena::get(unsigned long) const", "/src/app/arena.cpp", "app"));
	ASSERT_TRUE(wrapper(&af, "Arena::get", NULL, "app"));
	ASSERT_TRUE(!wrapper(&af, "Arena::get_all()", "/src/app/arena.cpp", "app"));
	alloc_fns_release(&af);
	/* With its parameters, to pick one overload. */
	alloc_fns_init(&af);
	ASSERT_EQ(alloc_fns_option("top", &af, ALLOC_OPT_FN, "Arena::get\\(unsigned long\\) const"), 0);
	ASSERT_TRUE(wrapper(&af, "Arena::get(unsigned long) const", NULL, "app"));
	ASSERT_TRUE(wrapper(&af, "Arena* Arena::get<Arena>(unsigned long) const", NULL, "app") == 0);
	ASSERT_TRUE(!wrapper(&af, "Arena::get(int) const", NULL, "app"));
	alloc_fns_release(&af);
	alloc_fns_init(&af);
	ASSERT_EQ(alloc_fns_option("top", &af, ALLOC_OPT_FN, "pool_alloc"), 0);
	/* The built-in list too, unless turned off; the user's stay. */
	ASSERT_TRUE(wrapper(&af, "zmalloc", NULL, "redis-check-rdb"));
	alloc_fns_release(&af);

	alloc_fns_init(&af);
	ASSERT_EQ(alloc_fns_option("top", &af, ALLOC_OPT_NO_DEFAULTS, NULL), 0);
	ASSERT_EQ(alloc_fns_option("top", &af, ALLOC_OPT_FN, "pool_.*"), 0);
	ASSERT_TRUE(!wrapper(&af, "__GI___strdup", "./string/strdup.c", "libc.so.6"));
	ASSERT_TRUE(!wrapper(&af, "zmalloc", NULL, "redis-check-rdb"));
	ASSERT_TRUE(wrapper(&af, "pool_get", NULL, "app"));
	alloc_fns_release(&af);
}

static void bare_names_drop_return_type_parameters_and_clone_suffixes(void)
{
	static const char *const cases[][2] = {
		{ "xmalloc", "xmalloc" },
		{ "xmalloc.constprop.0", "xmalloc" },
		{ "f.part.0.cold", "f" },
		{ "f.isra.0", "f" },
		{ "Pool.get", "Pool.get" },            /* a Python method */
		{ "app::Cache::fill(int)", "app::Cache::fill" },
		{ "Arena::get(unsigned long) const &", "Arena::get" },
		{ "std::__new_allocator<int>::allocate(unsigned long, void const*)", "std::__new_allocator<int>::allocate" },
		{ "void std::vector<int, std::allocator<int> >::_M_realloc_insert<int const&>(int const&)",
		  "std::vector<int, std::allocator<int> >::_M_realloc_insert<int const&>" },
		{ "std::_Rb_tree_node<std::pair<int const, int> >* std::_Rb_tree<int>::_M_create_node<int>(int&&)",
		  "std::_Rb_tree<int>::_M_create_node<int>" },
		{ "(anonymous namespace)::grow(int)", "(anonymous namespace)::grow" },
		{ "main::{lambda(int)#1}::operator()(int) const", "main::{lambda(int)#1}::operator()" },
		{ "operator new(unsigned long)", "operator new" },
		{ "Pool::operator new[](unsigned long)", "Pool::operator new[]" },
		{ "Pool::get(unsigned long) [clone .constprop.0]", "Pool::get" },
		{ "??", "??" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *b = alloc_fns_bare_name(cases[i][0]);
		ASSERT_STR(b, cases[i][1]);
		free(b);
	}
	char *re = alloc_fns_regex_for("Pool<int>::get(unsigned long)");
	ASSERT_STR(re, "Pool<int>::get");
	free(re);
	ASSERT_STR(re = alloc_fns_regex_for("main::{lambda()#1}::operator()() const"), "main::\\{lambda\\(\\)#1\\}::operator\\(\\)");
	free(re);
}

static void expressions_come_from_the_environment_and_a_file(void)
{
	struct alloc_fns af;
	char *path = temp_file("# the team's wrappers\n\n  arena_alloc  \nArena::.*\n");

	ASSERT_TRUE(path != NULL);
	alloc_fns_init(&af);
	af.file = path;
	setenv(ALLOC_FNS_ENV, "pool_alloc:Pool::get\nmy_new::", 1);
	int rc = alloc_fns_load(&af);
	unsetenv(ALLOC_FNS_ENV);
	unlink(path);
	free(path);
	ASSERT_EQ(rc, 0);
	ASSERT_EQ(af.npatterns, 5);
	ASSERT_STR(af.patterns[0], "pool_alloc");   /* single colons separate, "::" stays */
	ASSERT_STR(af.patterns[1], "Pool::get");
	ASSERT_STR(af.patterns[2], "my_new::");
	ASSERT_STR(af.patterns[3], "arena_alloc");  /* trimmed, comments and blanks skipped */
	ASSERT_STR(af.origins[0], ALLOC_FNS_ENV);
	ASSERT_TRUE(strstr(af.origins[3], "': line 3") != NULL);
	ASSERT_TRUE(wrapper(&af, "Arena::grow(int)", NULL, "app"));
	ASSERT_TRUE(wrapper(&af, "Pool::get(unsigned long)", NULL, "app"));
	alloc_fns_release(&af);

	/* An invalid expression, in either, is an error. */
	alloc_fns_init(&af);
	af.file = "/nonexistent/alloc-fns";
	ASSERT_EQ(alloc_fns_load(&af), -1);        /* a file named but missing */
	alloc_fns_release(&af);
	alloc_fns_init(&af);
	setenv(ALLOC_FNS_ENV, "ok:(", 1);
	rc = alloc_fns_load(&af);
	unsetenv(ALLOC_FNS_ENV);
	alloc_fns_release(&af);
	ASSERT_EQ(rc, -1);
	path = temp_file("fine\nbad[\n");
	ASSERT_TRUE(path != NULL);
	alloc_fns_init(&af);
	af.file = path;
	rc = alloc_fns_load(&af);
	unlink(path);
	free(path);
	alloc_fns_release(&af);
	ASSERT_EQ(rc, -1);
}

static void site_keys_are_the_location_file_function_or_traceback(void)
{
	struct sym_frame f[3] = {
		frame("make_record", "/src/app.c", 10, "app", 0x1000),
		frame("??", NULL, 0, "libplugin.so", 0x1234),
		frame("main", "/src/main.c", 20, "app", 0x2000),
	};
	const struct sym_frame *v[3] = { &f[0], &f[1], &f[2] };
	struct site_stack st = { v, 3 }, unknown = { v + 1, 2 };
	char *k;

	ASSERT_STR(k = site_key(&st, BY_LINENO), "/src/app.c:10");
	free(k);
	ASSERT_STR(k = site_key(&st, BY_FILENAME), "/src/app.c");
	free(k);
	ASSERT_STR(k = site_key(&st, BY_FUNCTION), "make_record");
	free(k);
	ASSERT_STR(k = site_key(&st, BY_TRACEBACK), "/src/app.c:10 make_record\nlibplugin.so+0x1234 ??\n/src/main.c:20 main");
	free(k);
	/* Without line information: the module and offset. */
	ASSERT_STR(k = site_key(&unknown, BY_LINENO), "libplugin.so+0x1234");
	free(k);
	ASSERT_STR(k = site_key(&unknown, BY_FILENAME), "libplugin.so");
	free(k);
	ASSERT_STR(k = site_key(&unknown, BY_FUNCTION), "libplugin.so+0x1234");
	free(k);
	ASSERT_STR(k = site_describe(&f[0]), "make_record /src/app.c:10");
	free(k);
	ASSERT_STR(k = site_describe(&f[1]), "?? libplugin.so+0x1234");
	free(k);
	enum site_by by;
	ASSERT_EQ(site_by_parse("traceback", &by), 0);
	ASSERT_EQ(by, BY_TRACEBACK);
	ASSERT_EQ(site_by_parse("line", &by), -1);
	ASSERT_STR(site_by_name(BY_FILENAME), "filename");
}

/* Values pinned: they are stored in users' baseline files.  Each is FNV-1a
 * 64 of the text in its comment. */
static void baseline_fingerprints_keep_their_values(void)
{
	struct sym_frame f[3] = {
		frame("known_leak", "/home/ci/src/leaky.c", 14, "leaky", 0x1149),
		frame("main", "/home/ci/src/leaky.c", 40, "leaky", 0x1060),
		frame("__libc_start_call_main", NULL, 0, "libc.so.6", 0x29d90),
	};
	const struct sym_frame *v[3] = { &f[0], &f[1], &f[2] };
	struct site_stack st = { v, 3 }, none = { NULL, 0 };
	char fp[SITE_FP_SIZE];

	/* "known_leak leaky.c;main leaky.c;__libc_start_call_main libc.so.6;" */
	site_fingerprint(&st, 0, fp);
	ASSERT_STR(fp, "9bbab0ed6a364a10");
	/* "known_leak leaky.c:14;main leaky.c:40;__libc_start_call_main libc.so.6;" */
	site_fingerprint(&st, 1, fp);
	ASSERT_STR(fp, "4d58ef06af0d9e87");
	/* "" */
	site_fingerprint(&none, 0, fp);
	ASSERT_STR(fp, "cbf29ce484222325");
}

static void fingerprints_ignore_directories_addresses_and_frames_past_sixteen(void)
{
	struct sym_frame f[3] = {
		frame("known_leak", "/build/a/leaky.c", 14, "leaky", 0x1149),
		frame("main", "/build/a/leaky.c", 40, "leaky", 0x1060),
		frame("__libc_start_call_main", NULL, 0, "libc.so.6", 0x29d90),
	};
	const struct sym_frame *v[3] = { &f[0], &f[1], &f[2] };
	struct site_stack st = { v, 3 };
	char a[SITE_FP_SIZE], b[SITE_FP_SIZE];

	site_fingerprint(&st, 0, a);
	f[0].file = f[1].file = "/elsewhere/leaky.c";
	f[0].address += 0x7f0000000000;
	f[0].line = 99;   /* an unrelated edit moved it */
	site_fingerprint(&st, 0, b);
	ASSERT_STR(a, b);
	site_fingerprint(&st, 1, b);
	ASSERT_TRUE(strcmp(a, b) != 0);

	struct sym_frame g = frame("f", "/x/a.c", 1, "m", 0);
	const struct sym_frame *w[17];
	for (int i = 0; i < 17; i++)
		w[i] = &g;
	struct site_stack s16 = { w, 16 }, s17 = { w, 17 };
	site_fingerprint(&s16, 0, a);
	site_fingerprint(&s17, 0, b);
	ASSERT_STR(a, b);
	ASSERT_STR(a, "7c1900f22b504fa5");   /* "f a.c;" 16 times */
}

/* ---- the gate ------------------------------------------------------------- */

struct fake_gate {
	struct gate_opts o;
	struct gate g;
	struct stat_entry e[4];
	struct gate_site s[4];
};

/* Entries of (bytes, count, growth, growth count) at the last snapshot,
 * entry i of site site[i] (fingerprint a0 + site) and kind kind[i] (NULL:
 * each its own site, not classified), and the totals gate.c would compute
 * from them. */
static void fake_gate_kinds(struct fake_gate *f, int n, const int64_t (*v)[4], const int *site, const int *kind)
{
	memset(f, 0, sizeof *f);
	f->o.max_leaked = f->o.max_lost = f->o.max_growth = f->o.max_site_growth = f->o.max_peak = -1;   /* no budgets */
	f->g.o = &f->o;
	f->g.sites = f->s;
	f->g.nsites = (size_t)n;
	f->g.has_growth = 1;
	for (int i = 0; i < n; i++) {
		int si = site ? site[i] : i, k = kind ? kind[i] : GROUP_UNCLASSIFIED;
		f->e[si].size += v[i][0];
		f->e[si].count += v[i][1];
		f->e[si].old_size += v[i][0] - v[i][2];
		f->e[si].old_count += v[i][1] - v[i][3];
		f->s[i] = (struct gate_site){ .e = &f->e[si], .site = (size_t)si, .kind = k, .size = v[i][0], .count = v[i][1],
					      .head = !site || !i || site[i - 1] != si,
					      .growth = v[i][2], .growth_count = v[i][3] };
		snprintf(f->s[i].fp, SITE_FP_SIZE, "%016x", 0xa0 + si);
		if ((size_t)si + 1 > f->g.nsite_keys)
			f->g.nsite_keys = (size_t)si + 1;
		f->g.leaked += v[i][0];
		f->g.leaked_count += v[i][1];
		if (k == HD_REACH_DEFINITE || k == HD_REACH_INDIRECT) {
			f->g.lost += v[i][0];
			f->g.lost_count += v[i][1];
		}
		f->g.growth += v[i][2];
		f->g.growth_count += v[i][3];
	}
}

static void fake_gate(struct fake_gate *f, int n, const int64_t (*v)[4])
{
	fake_gate_kinds(f, n, v, NULL, NULL);
}

static void within_every_budget_the_gate_passes(void)
{
	static const int64_t v[][4] = { { 1000, 10, 0, 0 }, { 320, 5, 0, 0 } };
	struct fake_gate f;

	fake_gate(&f, 2, v);
	f.o.max_leaked = 1320;
	f.o.max_growth = 0;
	f.o.max_peak = 4096;
	f.g.peak = 4096;
	gate_judge(&f.g);
	ASSERT_EQ(f.g.nfailing, 0);
	ASSERT_EQ(f.g.fail_leaked | f.g.fail_growth | f.g.fail_peak, 0);
	ASSERT_EQ(gate_verdict(&f.g), GATE_PASS);
}

static void a_total_over_max_leaked_fails_every_site_holding_blocks(void)
{
	static const int64_t v[][4] = { { 1000, 10, 0, 0 }, { 320, 5, 0, 0 }, { 0, 4, 0, 0 }, { 0, 0, 0, 0 } };
	struct fake_gate f;

	fake_gate(&f, 4, v);
	f.o.max_leaked = 1024;
	gate_judge(&f.g);
	ASSERT_EQ(f.g.fail_leaked, 1);
	ASSERT_EQ(f.s[0].fails, FAIL_LEAKED);
	ASSERT_EQ(f.s[1].fails, FAIL_LEAKED);
	ASSERT_EQ(f.s[2].fails, FAIL_LEAKED);   /* zero-byte blocks are blocks */
	ASSERT_EQ(f.s[3].fails, 0);
	ASSERT_EQ(f.g.nfailing, 3);
	ASSERT_EQ(f.g.failing_bytes, 1320);
	ASSERT_EQ(f.g.failing_count, 19);
	ASSERT_EQ(gate_verdict(&f.g), GATE_FAIL);
	f.o.leaks_only = 1;   /* `heapdelta leaks` reports, never gates */
	ASSERT_EQ(gate_verdict(&f.g), GATE_PASS);
}

static void a_site_growing_past_its_budget_fails_by_what_it_grew(void)
{
	static const int64_t v[][4] = { { 50000, 50, 40000, 40 }, { 20000, 20, 20000, 20 }, { 9000, 9, -1000, -1 } };
	struct fake_gate f;

	fake_gate(&f, 3, v);
	f.o.max_site_growth = 30000;
	gate_judge(&f.g);
	ASSERT_EQ(f.s[0].fails, FAIL_SITE_GROWTH);
	ASSERT_EQ(f.s[1].fails, 0);
	ASSERT_EQ(f.g.nfailing, 1);
	ASSERT_EQ(f.g.failing_bytes, 40000);
	ASSERT_EQ(f.g.failing_count, 40);
	ASSERT_EQ(gate_verdict(&f.g), GATE_FAIL);

	fake_gate(&f, 3, v);
	f.o.max_growth = 58999;   /* the total grew 59000 */
	gate_judge(&f.g);
	ASSERT_EQ(f.g.fail_growth, 1);
	ASSERT_EQ(f.s[0].fails, FAIL_GROWTH);
	ASSERT_EQ(f.s[1].fails, FAIL_GROWTH);
	ASSERT_EQ(f.s[2].fails, 0);             /* it shrank */
	ASSERT_EQ(f.g.failing_bytes, 60000);
}

static void a_peak_over_budget_fails_with_no_failing_site(void)
{
	static const int64_t v[][4] = { { 100, 1, 0, 0 } };
	struct fake_gate f;

	fake_gate(&f, 1, v);
	f.o.max_peak = 1 << 20;
	f.g.peak = (1 << 20) + 1;
	gate_judge(&f.g);
	ASSERT_EQ(f.g.fail_peak, 1);
	ASSERT_EQ(f.g.nfailing, 0);
	ASSERT_EQ(gate_verdict(&f.g), GATE_FAIL);
}

static void a_suppressed_site_never_fails(void)
{
	static const int64_t v[][4] = { { 1000, 10, 1000, 10 }, { 320, 5, 320, 5 } };
	struct suppression supp = { .pattern = "intentional" };
	struct fake_gate f;

	fake_gate(&f, 2, v);
	f.s[1].supp = &supp;
	f.g.leaked = 1000;   /* gate.c leaves suppressed sites out of the totals */
	f.g.growth = 1000;
	f.o.max_leaked = 0;
	f.o.max_site_growth = 0;
	gate_judge(&f.g);
	ASSERT_EQ(f.s[0].fails, FAIL_LEAKED | FAIL_SITE_GROWTH);
	ASSERT_EQ(f.s[1].fails, 0);
	ASSERT_EQ(f.g.nfailing, 1);
}

static struct baseline baseline_of(int n, const char (*fp)[SITE_FP_SIZE], const int64_t *bytes)
{
	struct baseline b = { xcalloc((size_t)n, sizeof *b.v), (size_t)n, 0 };

	for (int i = 0; i < n; i++) {
		memcpy(b.v[i].fp, fp[i], SITE_FP_SIZE);
		b.v[i].kind = BASELINE_ANY_KIND;
		b.v[i].bytes = bytes[i];
		b.v[i].count = 1;
		b.v[i].desc = xasprintf("site %d", i);
	}
	return b;
}

static void a_baseline_marks_sites_new_grew_unchanged_and_gone(void)
{
	/* Sites a0 .. a3: unchanged, grew, new, and one holding nothing. */
	static const int64_t v[][4] = { { 100, 1, 0, 0 }, { 500, 5, 0, 0 }, { 50, 1, 0, 0 }, { 0, 0, 0, 0 } };
	static const char fp[][SITE_FP_SIZE] = { "00000000000000a0", "00000000000000a1", "00000000000000ff" };
	static const int64_t bytes[] = { 100, 100, 700 };
	struct fake_gate f;

	fake_gate(&f, 4, v);
	struct baseline b = baseline_of(3, fp, bytes);
	baseline_compare(&f.g, &b);
	baseline_release(&b);
	ASSERT_EQ(f.s[0].base, BASE_UNCHANGED);
	ASSERT_EQ(f.s[1].base, BASE_GREW);
	ASSERT_EQ(f.s[1].base_bytes, 100);
	ASSERT_EQ(f.s[2].base, BASE_NEW);
	ASSERT_EQ(f.s[3].base, BASE_NONE);
	ASSERT_EQ(f.s[0].fails, 0);
	ASSERT_EQ(f.s[1].fails, FAIL_BASELINE);
	ASSERT_EQ(f.s[2].fails, FAIL_BASELINE);
	ASSERT_EQ(f.g.ngone, 1);
	ASSERT_STR(f.g.gone[0].fp, "00000000000000ff");
	ASSERT_STR(f.g.gone[0].desc, "site 2");
	ASSERT_EQ(f.g.gone[0].bytes, 700);
	gate_judge(&f.g);
	ASSERT_EQ(f.g.nfailing, 2);
	ASSERT_EQ(f.g.failing_bytes, 550);
	ASSERT_EQ(gate_verdict(&f.g), GATE_FAIL);
	free(f.g.gone[0].desc);
	free(f.g.gone);
}

static void baseline_slack_forgives_small_growth_and_small_new_sites(void)
{
	static const int64_t v[][4] = { { 150, 1, 0, 0 }, { 50, 1, 0, 0 }, { 250, 1, 0, 0 } };
	static const char fp[][SITE_FP_SIZE] = { "00000000000000a0" };
	static const int64_t bytes[] = { 100 };
	struct fake_gate f;

	fake_gate(&f, 3, v);
	f.o.slack = 100;
	struct baseline b = baseline_of(1, fp, bytes);
	baseline_compare(&f.g, &b);
	baseline_release(&b);
	ASSERT_EQ(f.s[0].base, BASE_UNCHANGED);   /* 150 <= 100 + 100 */
	ASSERT_EQ(f.s[1].base, BASE_UNCHANGED);   /* new, but under the slack */
	ASSERT_EQ(f.s[2].base, BASE_NEW);
	ASSERT_EQ(f.g.ngone, 0);
}

static void a_written_baseline_reads_back_with_the_same_fingerprints(void)
{
	static const int64_t v[][4] = { { 1000, 10, 0, 0 }, { 0, 0, 0, 0 }, { 0, 3, 0, 0 } };
	struct sym_frame site = frame("known_leak", "/src/leaky.c", 14, "leaky", 0x1149);
	struct fake_gate f;
	struct baseline b;
	char path[] = "/tmp/heapdelta-unit-XXXXXX";
	int fd = mkstemp(path);

	ASSERT_TRUE(fd >= 0);
	close(fd);
	fake_gate(&f, 3, v);
	for (int i = 0; i < 3; i++)
		f.e[i].site = &site;
	f.o.baseline_lines = 1;
	int wrote = baseline_write(&f.g, path);
	int read = baseline_read(&b, path);
	unlink(path);
	ASSERT_EQ(wrote, 0);
	ASSERT_EQ(read, 0);
	ASSERT_EQ(b.lines, 1);
	ASSERT_EQ(b.n, 2);   /* the site holding nothing is left out */
	ASSERT_STR(b.v[0].fp, "00000000000000a0");
	ASSERT_EQ(b.v[0].bytes, 1000);
	ASSERT_EQ(b.v[0].count, 10);
	ASSERT_STR(b.v[0].desc, "known_leak /src/leaky.c:14");
	ASSERT_STR(b.v[1].fp, "00000000000000a2");
	ASSERT_EQ(b.v[1].count, 3);
	baseline_release(&b);
}

/* Site a0: definitely lost 100 in 1 and still reachable 1000 in 10; site
 * a1: indirectly lost 50 in 2. */
static const int64_t kinds_v[][4] = { { 100, 1, 0, 0 }, { 1000, 10, 0, 0 }, { 50, 2, 0, 0 } };
static const int kinds_site[] = { 0, 0, 1 };
static const int kinds_kind[] = { HD_REACH_DEFINITE, HD_REACH_REACHABLE, HD_REACH_INDIRECT };

static void max_lost_fails_the_definitely_and_indirectly_lost_entries_only(void)
{
	struct fake_gate f;

	fake_gate_kinds(&f, 3, kinds_v, kinds_site, kinds_kind);
	f.o.max_lost = 150;
	gate_judge(&f.g);
	ASSERT_EQ(f.g.fail_lost, 0);
	ASSERT_EQ(gate_verdict(&f.g), GATE_PASS);

	fake_gate_kinds(&f, 3, kinds_v, kinds_site, kinds_kind);
	f.o.max_lost = 149;
	gate_judge(&f.g);
	ASSERT_EQ(f.g.fail_lost, 1);
	ASSERT_EQ(f.s[0].fails, FAIL_LOST);
	ASSERT_EQ(f.s[1].fails, 0);             /* still reachable */
	ASSERT_EQ(f.s[2].fails, FAIL_LOST);
	ASSERT_EQ(f.g.nfailing, 2);
	ASSERT_EQ(f.g.failing_bytes, 150);
	ASSERT_EQ(f.g.failing_count, 3);
	ASSERT_EQ(gate_verdict(&f.g), GATE_FAIL);

	/* --max-leaked counts every kind; a site failing by two entries is
	 * one site over budget. */
	fake_gate_kinds(&f, 3, kinds_v, kinds_site, kinds_kind);
	f.o.max_leaked = 1000;
	gate_judge(&f.g);
	ASSERT_EQ(f.s[1].fails, FAIL_LEAKED);
	ASSERT_EQ(f.g.nfailing, 2);
	ASSERT_EQ(f.g.failing_bytes, 1150);
}

static void a_baseline_with_kinds_tolerates_the_same_kinds_only(void)
{
	static const char fp[][SITE_FP_SIZE] = { "00000000000000a0", "00000000000000a0", "00000000000000a1" };
	static const int64_t bytes[] = { 100, 1000, 50 };
	static const int bkind[] = { HD_REACH_DEFINITE, HD_REACH_REACHABLE, HD_REACH_DEFINITE };
	struct fake_gate f;

	fake_gate_kinds(&f, 3, kinds_v, kinds_site, kinds_kind);
	struct baseline b = baseline_of(3, fp, bytes);
	for (int i = 0; i < 3; i++)
		b.v[i].kind = bkind[i];
	baseline_compare(&f.g, &b);
	baseline_release(&b);
	ASSERT_EQ(f.s[0].base, BASE_UNCHANGED);
	ASSERT_EQ(f.s[1].base, BASE_UNCHANGED);
	ASSERT_EQ(f.s[2].base, BASE_NEW);       /* indirectly lost, where the baseline had definitely lost */
	ASSERT_EQ(f.s[2].fails, FAIL_BASELINE);
	ASSERT_EQ(f.g.ngone, 1);
	ASSERT_EQ(f.g.gone[0].kind, HD_REACH_DEFINITE);
	ASSERT_STR(f.g.gone[0].fp, "00000000000000a1");
	free(f.g.gone[0].desc);
	free(f.g.gone);
}

static void a_baseline_without_kinds_holds_a_sites_entries_together(void)
{
	static const char fp[][SITE_FP_SIZE] = { "00000000000000a0", "00000000000000a1" };
	static const int64_t bytes[] = { 1100, 49 };
	static const char fpk[][SITE_FP_SIZE] = { "00000000000000a0", "00000000000000a0" };
	static const int64_t bytesk[] = { 60, 40 };
	static const int64_t v[][4] = { { 100, 3, 0, 0 } };
	struct fake_gate f;

	fake_gate_kinds(&f, 3, kinds_v, kinds_site, kinds_kind);
	struct baseline b = baseline_of(2, fp, bytes);   /* format 1: no kinds */
	baseline_compare(&f.g, &b);
	baseline_release(&b);
	ASSERT_EQ(f.s[0].base, BASE_UNCHANGED);   /* 100 + 1000 against 1100 */
	ASSERT_EQ(f.s[1].base, BASE_UNCHANGED);
	ASSERT_EQ(f.s[1].base_bytes, 1100);
	ASSERT_EQ(f.s[2].base, BASE_GREW);
	ASSERT_EQ(f.g.ngone, 0);

	/* Blocks not classified against a baseline with kinds: against the
	 * site's entries of every kind. */
	fake_gate(&f, 1, v);
	b = baseline_of(2, fpk, bytesk);
	b.v[0].kind = HD_REACH_DEFINITE;
	b.v[1].kind = HD_REACH_POSSIBLE;
	baseline_compare(&f.g, &b);
	baseline_release(&b);
	ASSERT_EQ(f.s[0].base, BASE_UNCHANGED);
	ASSERT_EQ(f.s[0].base_bytes, 100);
	ASSERT_EQ(f.g.ngone, 0);
}

static void a_baseline_with_kinds_reads_back_with_them(void)
{
	struct sym_frame site = frame("known_leak", "/src/leaky.c", 14, "leaky", 0x1149);
	struct fake_gate f;
	struct baseline b;
	char path[] = "/tmp/heapdelta-unit-XXXXXX";
	char line[256] = "";
	int fd = mkstemp(path);

	ASSERT_TRUE(fd >= 0);
	close(fd);
	fake_gate_kinds(&f, 3, kinds_v, kinds_site, kinds_kind);
	for (int i = 0; i < 2; i++)
		f.e[i].site = &site;
	int wrote = baseline_write(&f.g, path);
	FILE *in = fopen(path, "r");
	if (in) {
		if (!fgets(line, sizeof line, in))
			line[0] = 0;
		fclose(in);
	}
	int read = baseline_read(&b, path);
	unlink(path);
	ASSERT_EQ(wrote, 0);
	ASSERT_STR(line, "# heapdelta baseline 2 nolines\n");
	ASSERT_EQ(read, 0);
	ASSERT_EQ(b.n, 3);
	ASSERT_EQ(b.v[0].kind, HD_REACH_DEFINITE);
	ASSERT_EQ(b.v[1].kind, HD_REACH_REACHABLE);
	ASSERT_EQ(b.v[1].bytes, 1000);
	ASSERT_EQ(b.v[2].kind, HD_REACH_INDIRECT);
	ASSERT_STR(b.v[2].fp, "00000000000000a1");
	baseline_release(&b);
}

/* ---- the JSON emitter --------------------------------------------------------- */

static void the_json_emitter_writes_separators_breaks_and_escapes_as_asked(void)
{
	struct strbuf sb = STRBUF_INIT;
	struct json j;

	json_init_strbuf(&j, &sb);
	json_object_begin(&j);
	json_kv_int(&j, "n", -3);
	json_kv_string(&j, "s", "a\"b\\c\n\t\x01");
	json_kv_string(&j, "null", NULL);
	json_break(&j, 1);
	json_key(&j, "list");
	json_array_begin(&j);
	for (int i = 0; i < 2; i++) {
		json_break(&j, 2);
		json_object_begin(&j);
		json_kv_uint(&j, "u", 18446744073709551615u);
		json_kv_double(&j, "d", 0.5, 3);
		json_kv_bool(&j, "b", i);
		json_kv_hex(&j, "x", 0xbeef);
		json_object_end(&j);
	}
	json_break(&j, 1);
	json_array_end(&j);
	json_key(&j, "compact");
	json_array_begin(&j);
	json_compact(&j);
	json_int(&j, 1);
	json_int(&j, 2);
	json_null(&j);
	json_array_end(&j);
	json_key(&j, "empty");
	json_array_begin(&j);
	json_array_end(&j);
	json_object_end(&j);
	json_end_line(&j);
	ASSERT_STR(sb.buf, "{\"n\": -3, \"s\": \"a\\\"b\\\\c\\n\\t\\u0001\", \"null\": null,\n"
			   " \"list\": [\n"
			   "  {\"u\": 18446744073709551615, \"d\": 0.500, \"b\": false, \"x\": \"0xbeef\"},\n"
			   "  {\"u\": 18446744073709551615, \"d\": 0.500, \"b\": true, \"x\": \"0xbeef\"}\n"
			   " ], \"compact\": [1,2,null], \"empty\": []}\n");
	strbuf_release(&sb);
}

static void the_json_emitter_writes_to_a_stream_what_it_writes_to_a_string(void)
{
	struct strbuf sb = STRBUF_INIT;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct json a, b;

	ASSERT_TRUE(f != NULL);
	json_init(&a, f);
	json_init_strbuf(&b, &sb);
	for (struct json *j = &a; j; j = j == &a ? &b : NULL) {
		json_array_begin(j);
		json_string(j, "x");
		json_break(j, 1);
		json_items(j) ? json_int(j, json_items(j)) : json_null(j);
		json_array_end(j);
	}
	fclose(f);
	ASSERT_STR(buf, "[\"x\",\n 1]");
	ASSERT_STR(sb.buf, buf);
	free(buf);
	strbuf_release(&sb);
}

int main(void)
{
	static const struct unit_test tests[] = {
		{ "a steady leak has its exact rate, full steadiness and linearity",
		  a_steady_leak_has_its_exact_rate_full_steadiness_and_linearity },
		{ "uneven intervals do not bias the rate", uneven_intervals_do_not_bias_the_rate },
		{ "the recent rate is the slope of the last third",
		  the_recent_rate_is_the_slope_of_the_last_third },
		{ "a cache that filled up is plateaued and scores nothing",
		  a_cache_that_filled_up_is_plateaued_and_scores_nothing },
		{ "a flat or single-point series is all zero", a_flat_or_single_point_series_is_all_zero },
		{ "a steady leak ranks above noise, a sawtooth and a plateaued cache",
		  a_steady_leak_ranks_above_noise_a_sawtooth_and_a_plateaued_cache },
		{ "equal scores rank by growth then key", equal_scores_rank_by_growth_then_key },
		{ "an exit snapshot after the program freed its heap is the teardown",
		  an_exit_snapshot_after_the_program_freed_its_heap_is_the_teardown },
		{ "interval snapshots inside the teardown are set apart with it",
		  interval_snapshots_inside_the_teardown_are_set_apart_with_it },
		{ "a dip before the teardown stays steady unless it is a hundredth of the fall",
		  a_dip_before_the_teardown_stays_steady_unless_it_is_a_hundredth_of_the_fall },
		{ "a teardown that pauses is set apart whole, and an idle heap before it is steady",
		  a_teardown_that_pauses_is_set_apart_whole_and_an_idle_heap_before_it_is_steady },
		{ "without an exit snapshot there is no teardown", without_an_exit_snapshot_there_is_no_teardown },
		{ "an exit snapshot holding half the heap or more is no teardown",
		  an_exit_snapshot_holding_half_the_heap_or_more_is_no_teardown },
		{ "a run that only ever shrank is ranked whole", a_run_that_only_ever_shrank_is_ranked_whole },
		{ "a teardown snapshot that noise holds up is set apart by the steady growers",
		  a_teardown_snapshot_that_noise_holds_up_is_set_apart_by_the_steady_growers },
		{ "the streamed trend ranks the steady state and holds few snapshots",
		  the_streamed_trend_ranks_the_steady_state_and_holds_few_snapshots },
		{ "suppression templates match as LeakSanitizer does",
		  suppression_templates_match_as_leak_sanitizer_does },
		{ "a suppression matches any frame by function, file or module",
		  a_suppression_matches_any_frame_by_function_file_or_module },
		{ "a suppression file keeps leak lines and skips the rest",
		  a_suppression_file_keeps_leak_lines_and_skips_the_rest },
		{ "a site starts at the first frame that is not an allocator",
		  a_site_starts_at_the_first_frame_that_is_not_an_allocator },
		{ "site keys are the location, file, function or traceback",
		  site_keys_are_the_location_file_function_or_traceback },
		{ "baseline fingerprints keep their values", baseline_fingerprints_keep_their_values },
		{ "a site looks through wrappers and keeps their frames",
		  a_site_looks_through_wrappers_and_keeps_their_frames },
		{ "the built-in list knows glibc, libstdc++, GLib, redis, SQLite and CPython",
		  the_built_in_list_knows_glibc_libstdcxx_glib_redis_sqlite_and_cpython },
		{ "user expressions match whole names, with or without parameters",
		  user_expressions_match_whole_names_with_or_without_parameters },
		{ "bare names drop return type, parameters and clone suffixes",
		  bare_names_drop_return_type_parameters_and_clone_suffixes },
		{ "expressions come from the environment and a file",
		  expressions_come_from_the_environment_and_a_file },
		{ "fingerprints ignore directories, addresses and frames past sixteen",
		  fingerprints_ignore_directories_addresses_and_frames_past_sixteen },
		{ "within every budget the gate passes", within_every_budget_the_gate_passes },
		{ "a total over --max-leaked fails every site holding blocks",
		  a_total_over_max_leaked_fails_every_site_holding_blocks },
		{ "a site growing past its budget fails by what it grew",
		  a_site_growing_past_its_budget_fails_by_what_it_grew },
		{ "a peak over budget fails with no failing site",
		  a_peak_over_budget_fails_with_no_failing_site },
		{ "a suppressed site never fails", a_suppressed_site_never_fails },
		{ "a baseline marks sites new, grew, unchanged and gone",
		  a_baseline_marks_sites_new_grew_unchanged_and_gone },
		{ "baseline slack forgives small growth and small new sites",
		  baseline_slack_forgives_small_growth_and_small_new_sites },
		{ "a written baseline reads back with the same fingerprints",
		  a_written_baseline_reads_back_with_the_same_fingerprints },
		{ "--max-lost fails the definitely and indirectly lost entries only",
		  max_lost_fails_the_definitely_and_indirectly_lost_entries_only },
		{ "a baseline with kinds tolerates the same kinds only", a_baseline_with_kinds_tolerates_the_same_kinds_only },
		{ "a baseline without kinds holds a site's entries together",
		  a_baseline_without_kinds_holds_a_sites_entries_together },
		{ "a baseline with kinds reads back with them", a_baseline_with_kinds_reads_back_with_them },
		{ "the JSON emitter writes separators, breaks and escapes as asked",
		  the_json_emitter_writes_separators_breaks_and_escapes_as_asked },
		{ "the JSON emitter writes to a stream what it writes to a string",
		  the_json_emitter_writes_to_a_stream_what_it_writes_to_a_string },
	};
	return run_unit_tests("models", tests, sizeof tests / sizeof tests[0]);
}
