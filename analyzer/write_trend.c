/*
 * write_trend.c - the trend model as text (one line per site, with a
 * sparkline) or JSON (every figure, and each site's series).
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

void write_trend_text(FILE *out, const struct trend *tr, size_t limit)
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
		char *site = s->site && strchr(s->key, '\n') ? site_frame_location(s->site) : NULL;
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

void write_trend_json(FILE *out, const struct trend *tr, size_t limit)
{
	size_t shown = limit && limit < tr->nsites ? limit : tr->nsites;
	struct json j;

	json_init(&j, out);
	json_object_begin(&j);
	json_kv_uint(&j, "pid", tr->snaps[0].meta[HD_META_PID]);
	json_kv_int(&j, "snapshots", tr->n);
	json_kv_double(&j, "duration", tr->t[tr->n - 1], 6);
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
		json_kv_int(&j, "size", s->bytes[tr->n - 1]);
		json_kv_int(&j, "count", s->count[tr->n - 1]);
		json_kv_bool(&j, "plateaued", ts->plateaued);
		json_kv_double(&j, "score", ts->score, 3);
		json_key(&j, "series");
		json_array_begin(&j);
		for (int k = 0; k < tr->n; k++) {
			json_array_begin(&j);
			json_double(&j, tr->t[k], 6);
			json_int(&j, s->bytes[k]);
			json_array_end(&j);
		}
		json_array_end(&j);
		json_object_end(&j);
	}
	json_array_end(&j);
	json_object_end(&j);
	json_end_line(&j);
}
