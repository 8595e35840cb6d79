/*
 * write_trend.c - the trend model as text (one line per site, with a
 * sparkline, and the teardown apart), JSON (every figure, and each site's
 * series), or a frame of `heapdelta watch` (the heap and RSS now, then the
 * same site lines as trend's).
 */
#include "json.h"
#include "util.h"
#include "write.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

/* "+9251 KiB/s, steady 94%, ..." : one site as trend ranks it, over the
 * steady state. */
static void site_line(FILE *out, const struct trend *tr, const struct trend_site *ts)
{
	const struct series *s = ts->s;
	struct strbuf spark = STRBUF_INIT;
	char *site = s->site && strchr(s->key, '\n') ? site_frame_location(s->site) : NULL;
	int k = tr->steady;
	char a[32], b[32], c[32];

	sparkline(&spark, s->bytes, k, 20);
	format_size(a, ts->rate, 1);
	fprintf(out, "%s: %s/s, steady %d%%, %s over %.1f s, size=%s %s%s\n", site ? site : s->key, a,
		(int)lround(ts->steadiness * 100), format_size(b, (double)ts->growth, 1), tr->t[k - 1],
		format_size(c, (double)s->bytes[k - 1], 0), spark.buf ? spark.buf : "",
		ts->plateaued ? " plateaued" : "");
	free(site);
	strbuf_release(&spark);
}

/* The first `limit` sites (0: all), then how many are left. */
static void site_lines(FILE *out, const struct trend *tr, size_t limit)
{
	size_t shown = limit && limit < tr->nsites ? limit : tr->nsites;

	for (size_t i = 0; i < shown; i++)
		site_line(out, tr, &tr->sites[i]);
	if (shown < tr->nsites)
		fprintf(out, "%zu other sites\n", tr->nsites - shown);
}

/* "teardown: ..." when the last snapshots are the process's teardown. */
static void teardown_line(FILE *out, const struct trend *tr)
{
	int k = tr->steady, n = tr->n;
	char a[32], b[32];

	if (k >= n)
		return;
	format_size(a, (double)tr->pts[k - 1].live_bytes, 0);
	format_size(b, (double)tr->pts[n - 1].live_bytes, 0);
	if (n - k == 1)
		fprintf(out, "teardown: the exit snapshot, at %.1f s: heap %s -> %s (not ranked)\n", tr->t[n - 1], a, b);
	else
		fprintf(out, "teardown: the last %d snapshots, %.1f s to %.1f s, the exit snapshot last: heap %s -> %s "
			"(not ranked)\n", n - k, tr->t[k], tr->t[n - 1], a, b);
}

void write_trend_text(FILE *out, const struct trend *tr, size_t limit)
{
	fprintf(out, "%d snapshots of pid %" PRIu64 " over %.1f s, sites ranked by steady growth", tr->n, tr->pid,
		tr->t[tr->n - 1]);
	if (tr->steady < tr->n)
		fprintf(out, " over the first %d (%.1f s)", tr->steady, tr->t[tr->steady - 1]);
	fprintf(out, ":\n");
	site_lines(out, tr, limit);
	teardown_line(out, tr);
}

void write_trend_teardown_json(struct json *j, const struct trend *tr)
{
	int k = tr->steady, n = tr->n;

	json_key(j, "teardown");
	if (k < n) {
		json_object_begin(j);
		json_kv_int(j, "snapshots", n - k);
		json_kv_double(j, "from", tr->t[k], 6);
		json_kv_double(j, "to", tr->t[n - 1], 6);
		json_kv_uint(j, "heap_before", tr->pts[k - 1].live_bytes);
		json_kv_uint(j, "heap_after", tr->pts[n - 1].live_bytes);
		json_object_end(j);
	} else {
		json_null(j);
	}
}

void write_trend_json(FILE *out, const struct trend *tr, size_t limit)
{
	size_t shown = limit && limit < tr->nsites ? limit : tr->nsites;
	int k = tr->steady, n = tr->n;
	struct json j;

	json_init(&j, out);
	json_object_begin(&j);
	json_kv_uint(&j, "pid", tr->pid);
	json_kv_int(&j, "snapshots", n);
	json_kv_double(&j, "duration", tr->t[n - 1], 6);
	json_kv_int(&j, "steady_snapshots", k);
	json_kv_double(&j, "steady_duration", tr->t[k - 1], 6);
	write_trend_teardown_json(&j, tr);
	json_key(&j, "sites");
	json_array_begin(&j);
	for (size_t i = 0; i < shown; i++) {
		const struct trend_site *ts = &tr->sites[i];
		const struct series *s = ts->s;
		json_break(&j, 2);
		json_object_begin(&j);
		json_kv_string(&j, "key", s->key);
		json_kv_string(&j, "file", s->site->file);
		json_kv_int(&j, "line", s->site->line);
		json_kv_string(&j, "function", s->site->function);
		json_kv_double(&j, "rate", ts->rate, 3);
		json_kv_double(&j, "recent_rate", ts->recent, 3);
		json_kv_double(&j, "steadiness", ts->steadiness, 4);
		json_kv_double(&j, "linearity", ts->linearity, 4);
		json_kv_int(&j, "growth", ts->growth);
		json_kv_int(&j, "size", s->bytes[k - 1]);
		json_kv_int(&j, "count", s->count[k - 1]);
		json_kv_bool(&j, "plateaued", ts->plateaued);
		json_kv_double(&j, "score", ts->score, 3);
		json_key(&j, "series");
		json_array_begin(&j);
		for (int p = 0; p < n; p++) {
			json_array_begin(&j);
			json_double(&j, tr->t[p], 6);
			json_int(&j, s->bytes[p]);
			json_array_end(&j);
		}
		json_array_end(&j);
		json_object_end(&j);
	}
	json_array_end(&j);
	json_object_end(&j);
	json_end_line(&j);
}

/* A sparkline of a per-point META column. */
static void point_sparkline(struct strbuf *sb, const struct trend *tr, int rss)
{
	int64_t *y = xcalloc((size_t)tr->n + 1, sizeof *y);

	for (int i = 0; i < tr->n; i++)
		y[i] = (int64_t)(rss ? tr->pts[i].rss_bytes : tr->pts[i].live_bytes);
	sparkline(sb, y, tr->n, 20);
	free(y);
}

void write_watch_text(FILE *out, const struct trend *tr, size_t limit, const char *dir)
{
	const struct trend_point *last = &tr->pts[tr->n - 1];
	struct strbuf heap = STRBUF_INIT, rss = STRBUF_INIT;
	char a[32], b[32];

	fprintf(out, "heapdelta watch %s: pid %" PRIu64 " %s, %d snapshots over %.1f s, the latest #%" PRIu64 " (%s)\n",
		dir, tr->pid, tr->exe, tr->n, tr->t[tr->n - 1], last->seq, hd_trigger_name(last->trigger));
	point_sparkline(&heap, tr, 0);
	point_sparkline(&rss, tr, 1);
	fprintf(out, "heap %s %s  rss %s %s\n", format_size(a, (double)last->live_bytes, 0), heap.buf ? heap.buf : "",
		format_size(b, (double)last->rss_bytes, 0), rss.buf ? rss.buf : "");
	strbuf_release(&heap);
	strbuf_release(&rss);
	fprintf(out, "sites growing fastest:\n");
	site_lines(out, tr, limit);
	teardown_line(out, tr);
}
