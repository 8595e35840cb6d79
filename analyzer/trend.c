/*
 * cmd_trend.c - `heapdelta trend`: from many snapshots of one process to the
 * sites that grow steadily.
 *
 * For each site (any --by key) the live bytes over time give:
 *   rate        least-squares slope, bytes per second;
 *   recent      the same slope over the last third of the run;
 *   steadiness  (intervals that grew - intervals that shrank) / intervals;
 *   linearity   R^2 of the straight line over the run: how much of the
 *               variation the trend explains;
 *   plateaued   grew, but its recent rate is under a tenth of the whole.
 * Sites rank by score = max(recent, 0) x max(steadiness, 0) x linearity:
 * a leak grows now, nearly every interval, along a line; a cache that
 * filled up and stays flat has no recent growth; noise that goes up and
 * down has little steadiness, and what it has by chance its linearity
 * (near 0: its swings dwarf any trend) takes back.
 */
#include "cmd.h"
#include "group.h"
#include "trend.h"
#include "util.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Least-squares slope of y over t[from .. n-1]; with r2, also the share of
 * y's variance the line explains (0 when y is flat). */
static double slope(const double *t, const int64_t *y, int from, int n, double *r2)
{
	double st = 0, sy = 0, stt = 0, sty = 0, syy = 0;
	int k = n - from;

	if (r2)
		*r2 = 0;
	if (k < 2)
		return 0;
	for (int i = from; i < n; i++) {
		st += t[i];
		sy += (double)y[i];
	}
	double mt = st / k, my = sy / k;
	for (int i = from; i < n; i++) {
		stt += (t[i] - mt) * (t[i] - mt);
		sty += (t[i] - mt) * ((double)y[i] - my);
		syy += ((double)y[i] - my) * ((double)y[i] - my);
	}
	if (r2 && stt > 0 && syy > 0)
		*r2 = sty * sty / (stt * syy);
	return stt > 0 ? sty / stt : 0;
}

void trend_compute(struct trend_site *ts, const double *t, int n)
{
	const int64_t *y = ts->s->bytes;
	int up = 0, down = 0;

	for (int i = 1; i < n; i++) {
		up += y[i] > y[i - 1];
		down += y[i] < y[i - 1];
	}
	ts->rate = slope(t, y, 0, n, &ts->linearity);
	ts->recent = slope(t, y, n - (n / 3 > 3 ? n / 3 : (n >= 3 ? 3 : n)), n, NULL);
	ts->steadiness = n > 1 ? (double)(up - down) / (n - 1) : 0;
	ts->growth = n ? y[n - 1] - y[0] : 0;
	ts->plateaued = ts->growth > 0 && ts->rate > 0 && ts->recent < ts->rate / 10;
	ts->score = fmax(ts->recent, 0) * fmax(ts->steadiness, 0) * ts->linearity;
}

static int by_score(const void *a, const void *b)
{
	const struct trend_site *x = a, *y = b;

	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	if (x->growth != y->growth)
		return x->growth > y->growth ? -1 : 1;
	return strcmp(x->s->key, y->s->key);
}

static int by_seq(const void *a, const void *b)
{
	const struct snapshot *x = a, *y = b;

	if (x->meta[HD_META_SEQ] != y->meta[HD_META_SEQ])
		return x->meta[HD_META_SEQ] < y->meta[HD_META_SEQ] ? -1 : 1;
	return 0;
}

int trend_load(char **args, int nargs, long pid, struct snapshot **snaps, int *nsnaps)
{
	char **paths = NULL;
	int npaths = 0, rc = 0;

	*snaps = NULL;
	*nsnaps = 0;
	if (snapshot_paths(args, nargs, &paths, &npaths) < 0)
		return -1;
	struct snapshot *all = xcalloc((size_t)npaths + 1, sizeof *all);
	for (int i = 0; i < npaths && !rc; i++)
		if (snapshot_load(paths[i], &all[i]) < 0)
			rc = -1;
	if (!rc && !npaths)
		rc = error("no snapshots found");
	if (!rc && pid < 0) {
		/* The process with the most snapshots. */
		int best = 0;
		for (int i = 0; i < npaths; i++) {
			int c = 0;
			for (int k = 0; k < npaths; k++)
				c += all[k].meta[HD_META_PID] == all[i].meta[HD_META_PID];
			if (c > best) {
				best = c;
				pid = (long)all[i].meta[HD_META_PID];
			}
		}
	}
	if (!rc) {
		*snaps = xcalloc((size_t)npaths + 1, sizeof **snaps);
		for (int i = 0; i < npaths; i++) {
			if ((long)all[i].meta[HD_META_PID] == pid) {
				(*snaps)[(*nsnaps)++] = all[i];
				memset(&all[i], 0, sizeof all[i]);
			}
		}
		if (!*nsnaps)
			rc = error("no snapshots of pid %ld", pid);
		qsort(*snaps, (size_t)*nsnaps, sizeof **snaps, by_seq);
	}
	for (int i = 0; i < npaths; i++) {
		snapshot_release(&all[i]);
		free(paths[i]);
	}
	free(all);
	free(paths);
	return rc;
}

struct trend *trend_build(struct snapshot *snaps, int n, const struct group_opts *opts, struct symbolizer *sym)
{
	struct trend *tr = xcalloc(1, sizeof *tr);

	tr->snaps = snaps;
	tr->n = n;
	tr->t = xcalloc((size_t)n + 1, sizeof *tr->t);
	tr->table = series_new(opts, sym, n);
	for (int i = 0; i < n; i++) {
		tr->t[i] = (double)(snaps[i].meta[HD_META_MONO_NS] - snaps[0].meta[HD_META_MONO_NS]) / 1e9;
		series_add(tr->table, &snaps[i], i);
	}
	size_t ns;
	struct series **all = series_all(tr->table, &ns);
	tr->sites = xcalloc(ns + 1, sizeof *tr->sites);
	for (size_t i = 0; i < ns; i++) {
		tr->sites[i].s = all[i];
		trend_compute(&tr->sites[i], tr->t, n);
	}
	tr->nsites = ns;
	free(all);
	qsort(tr->sites, ns, sizeof *tr->sites, by_score);
	return tr;
}

void trend_free(struct trend *tr)
{
	if (!tr)
		return;
	series_free(tr->table);
	free(tr->sites);
	free(tr->t);
	free(tr);
}

/* An 8-level sparkline of y over at most `width` buckets. */
static void sparkline(struct strbuf *sb, const int64_t *y, int n, int width)
{
	static const char *const bars[] = { "\u2581", "\u2582", "\u2583", "\u2584", "\u2585", "\u2586", "\u2587", "\u2588" };
	int w = n < width ? n : width;
	double v[64], lo = INFINITY, hi = -INFINITY;

	for (int b = 0; b < w; b++) {
		int from = (int)((long)b * n / w), to = (int)((long)(b + 1) * n / w);
		double sum = 0;
		for (int i = from; i < to; i++)
			sum += (double)y[i];
		v[b] = to > from ? sum / (to - from) : 0;
		lo = fmin(lo, v[b]);
		hi = fmax(hi, v[b]);
	}
	for (int b = 0; b < w; b++)
		strbuf_adds(sb, bars[hi > lo ? (int)((v[b] - lo) / (hi - lo) * 7.999) : 0]);
}

static void print_text(FILE *out, const struct trend *tr, size_t limit)
{
	const struct snapshot *first = &tr->snaps[0];
	size_t shown = limit && limit < tr->nsites ? limit : tr->nsites;
	char a[32], b[32], c[32];

	fprintf(out, "%d snapshots of pid %" PRIu64 " over %.1f s, sites ranked by steady growth:\n", tr->n,
		first->meta[HD_META_PID], tr->t[tr->n - 1]);
	for (size_t i = 0; i < shown; i++) {
		const struct trend_site *ts = &tr->sites[i];
		const struct series *s = ts->s;
		struct strbuf spark = STRBUF_INIT;
		char *site = s->site && strchr(s->key, '\n') ? frame_location(s->site) : NULL;
		sparkline(&spark, s->bytes, tr->n, 20);
		format_size(a, ts->rate, 1);
		fprintf(out, "%s: %s/s, steady %d%%, %s over %.1f s, size=%s %s%s\n", site ? site : s->key, a,
			(int)lround(ts->steadiness * 100), format_size(b, (double)ts->growth, 1), tr->t[tr->n - 1],
			format_size(c, (double)s->bytes[tr->n - 1], 0), spark.buf ? spark.buf : "",
			ts->plateaued ? " plateaued" : "");
		free(site);
		strbuf_release(&spark);
	}
	if (shown < tr->nsites)
		fprintf(out, "%zu other sites\n", tr->nsites - shown);
}

static void print_json(FILE *out, const struct trend *tr, size_t limit)
{
	struct strbuf sb = STRBUF_INIT;
	size_t shown = limit && limit < tr->nsites ? limit : tr->nsites;

	strbuf_addf(&sb, "{\"pid\": %" PRIu64 ", \"snapshots\": %d, \"duration\": %.6f, \"sites\": [",
		    tr->snaps[0].meta[HD_META_PID], tr->n, tr->t[tr->n - 1]);
	for (size_t i = 0; i < shown; i++) {
		const struct trend_site *ts = &tr->sites[i];
		const struct series *s = ts->s;
		strbuf_adds(&sb, i ? ",\n  {\"key\": " : "\n  {\"key\": ");
		strbuf_add_json(&sb, s->key);
		strbuf_adds(&sb, ", \"file\": ");
		if (s->site->file)
			strbuf_add_json(&sb, s->site->file);
		else
			strbuf_adds(&sb, "null");
		strbuf_addf(&sb, ", \"line\": %d, \"function\": ", s->site->line);
		strbuf_add_json(&sb, s->site->function);
		strbuf_addf(&sb, ", \"rate\": %.3f, \"recent_rate\": %.3f, \"steadiness\": %.4f, \"linearity\": %.4f, \"growth\": %" PRId64
			    ", \"size\": %" PRId64 ", \"count\": %" PRId64 ", \"plateaued\": %s, \"score\": %.3f, \"series\": [",
			    ts->rate, ts->recent, ts->steadiness, ts->linearity, ts->growth, s->bytes[tr->n - 1], s->count[tr->n - 1],
			    ts->plateaued ? "true" : "false", ts->score);
		for (int k = 0; k < tr->n; k++)
			strbuf_addf(&sb, "%s[%.6f, %" PRId64 "]", k ? ", " : "", tr->t[k], s->bytes[k]);
		strbuf_adds(&sb, "]}");
	}
	strbuf_adds(&sb, "]}\n");
	fputs(sb.buf, out);
	strbuf_release(&sb);
}

int cmd_trend(int argc, char **argv)
{
	enum { O_BY = 256, O_LIMIT, O_FORMAT, O_PID };
	static const struct option opts[] = {
		{ "by", required_argument, NULL, O_BY },
		{ "limit", required_argument, NULL, O_LIMIT },
		{ "format", required_argument, NULL, O_FORMAT },
		{ "pid", required_argument, NULL, O_PID },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct group_opts g = { .by = BY_LINENO };
	const char *output = NULL;
	long limit = 10, pid = -1;
	int json = 0, c;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
		switch (c) {
		case O_BY:
			if (group_by_parse(optarg, &g.by) < 0)
				return usage_error("trend", "--by must be lineno, filename, function or traceback, not '%s'", optarg);
			break;
		case O_LIMIT:
			if (parse_count(optarg, 1L << 30, &limit) < 0)
				return usage_error("trend", "--limit takes a number, not '%s'", optarg);
			break;
		case O_FORMAT:
			if (!strcmp(optarg, "json")) json = 1;
			else if (strcmp(optarg, "text")) return usage_error("trend", "--format must be text or json, not '%s'", optarg);
			break;
		case O_PID:
			if (parse_count(optarg, 1L << 30, &pid) < 0)
				return usage_error("trend", "--pid takes a process id, not '%s'", optarg);
			break;
		case 'o': output = optarg; break;
		case 'h': return show_help("trend");
		case ':': return usage_error("trend", "option '%s' needs a value", argv[optind - 1]);
		default: return usage_error("trend", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error("trend", "expected snapshot files or a directory of them");

	struct snapshot *snaps;
	int n;
	if (trend_load(argv + optind, argc - optind, pid, &snaps, &n) < 0)
		return EXIT_USAGE;
	if (n < 2) {
		snapshot_release(&snaps[0]);
		free(snaps);
		return usage_error("trend", "a trend needs at least two snapshots of the process");
	}
	struct symbolizer *sym = symbolizer_new();
	struct trend *tr = trend_build(snaps, n, &g, sym);
	FILE *out = output_open(output);
	int rc = out ? 0 : -1;
	if (out) {
		if (json)
			print_json(out, tr, (size_t)limit);
		else
			print_text(out, tr, (size_t)limit);
		rc = output_close(out, output);
	}
	trend_free(tr);
	symbolizer_free(sym);
	for (int i = 0; i < n; i++)
		snapshot_release(&snaps[i]);
	free(snaps);
	return rc ? EXIT_USAGE : EXIT_OK;
}
