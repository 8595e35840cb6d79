/*
 * write_trend.c - the trend model as text (one line per site, with a
 * sparkline) or JSON (every figure, and each site's series).
 */
#include "write.h"
#include "util.h"

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

void write_trend_json(FILE *out, const struct trend *tr, size_t limit)
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
