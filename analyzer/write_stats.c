/*
 * write_stats.c - top and diff (struct stats) as text, in tracemalloc's own
 * layout, or as JSON.
 */
#include "write.h"
#include "util.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---- source lines for --by traceback ------------------------------- */

struct source {
	char *path;
	char *text;
	char **lines;
	int nlines;
};

static struct source *sources;
static size_t nsources;

static const char *source_line(const char *path, int line)
{
	struct source *src = NULL;

	for (size_t i = 0; i < nsources; i++)
		if (strcmp(sources[i].path, path) == 0)
			src = &sources[i];
	if (!src) {
		sources = xrealloc(sources, (nsources + 1) * sizeof *sources);
		src = &sources[nsources++];
		memset(src, 0, sizeof *src);
		src->path = xstrdup(path);
		FILE *f = fopen(path, "r");
		if (f) {
			struct strbuf sb = STRBUF_INIT;
			char buf[65536];
			size_t n;
			while ((n = fread(buf, 1, sizeof buf, f)) > 0)
				strbuf_add(&sb, buf, n);
			fclose(f);
			src->text = sb.buf;
			for (char *p = src->text; p && *p;) {
				src->lines = xrealloc(src->lines, (size_t)(src->nlines + 1) * sizeof *src->lines);
				src->lines[src->nlines++] = p;
				char *nl = strchr(p, '\n');
				if (!nl)
					break;
				*nl = 0;
				p = nl + 1;
			}
		}
	}
	if (line < 1 || line > src->nlines)
		return NULL;
	const char *l = src->lines[line - 1];
	while (*l == ' ' || *l == '\t')
		l++;
	return l;
}

/* ---- text ----------------------------------------------------------- */

static void text_entry(FILE *out, const struct stats *r, const struct stat_entry *e)
{
	char size[32], diff[32], avg[32];

	/* A traceback's key spans lines: its first line is the site. */
	char *site = r->by == BY_TRACEBACK ? frame_location(e->site) : NULL;
	fprintf(out, "%s: size=%s", site ? site : e->key, format_size(size, (double)e->size, 0));
	free(site);
	if (r->diff)
		fprintf(out, " (%s)", format_size(diff, (double)(e->size - e->old_size), 1));
	fprintf(out, ", count=%" PRId64, e->count);
	if (r->diff)
		fprintf(out, " (%+" PRId64 ")", e->count - e->old_count);
	if (e->count)
		fprintf(out, ", average=%s", format_size(avg, (double)e->size / (double)e->count, 0));
	fputc('\n', out);

	if (r->by != BY_TRACEBACK)
		return;
	for (int i = 0; i < e->tb.n; i++) {
		const struct sym_frame *f = e->tb.frames[i];
		const char *inl = f->inlined ? " (inlined)" : "";
		if (f->file) {
			fprintf(out, "  File \"%s\", line %d, in %s%s\n", f->file, f->line, f->function, inl);
			const char *src = source_line(f->file, f->line);
			if (src && *src)
				fprintf(out, "    %s\n", src);
		} else {
			fprintf(out, "  %s+0x%" PRIx64 ", in %s%s\n", f->module, f->offset, f->function, inl);
		}
	}
}

void write_stats_text(FILE *out, const struct stats *r)
{
	char a[32], b[32];
	size_t shown = r->limit && r->limit < r->n ? r->limit : r->n;
	int64_t rest_size = 0, rest_count = 0, rest_old_size = 0, rest_old_count = 0;

	for (size_t i = 0; i < shown; i++)
		text_entry(out, r, r->entries[i]);
	for (size_t i = shown; i < r->n; i++) {
		rest_size += r->entries[i]->size;
		rest_count += r->entries[i]->count;
		rest_old_size += r->entries[i]->old_size;
		rest_old_count += r->entries[i]->old_count;
	}
	if (shown < r->n) {
		fprintf(out, "%zu other: size=%s", r->n - shown, format_size(a, (double)rest_size, 0));
		if (r->diff)
			fprintf(out, " (%s)", format_size(b, (double)(rest_size - rest_old_size), 1));
		fprintf(out, ", count=%" PRId64, rest_count);
		if (r->diff)
			fprintf(out, " (%+" PRId64 ")", rest_count - rest_old_count);
		fputc('\n', out);
	}
	fprintf(out, "Total: size=%s", format_size(a, (double)r->cur.total_size, 0));
	if (r->diff)
		fprintf(out, " (%s)", format_size(b, (double)(r->cur.total_size - r->old.total_size), 1));
	fprintf(out, ", count=%" PRId64, r->cur.total_count);
	if (r->diff)
		fprintf(out, " (%+" PRId64 ")", r->cur.total_count - r->old.total_count);
	fputc('\n', out);
	fprintf(out, "Peak: %s\n", format_size(a, (double)r->cur.snap->meta[HD_META_PEAK_BYTES], 0));
	const uint64_t *m = r->cur.snap->meta;
	if (m[HD_META_SAMPLE_BYTES])
		fprintf(out, "Estimates: one allocation sampled per %s on average, each weighted by its sampling odds\n",
			format_size(a, (double)m[HD_META_SAMPLE_BYTES], 0));
	if (m[HD_META_DROPPED_ALLOCS] || m[HD_META_DROPPED_STACKS])
		fprintf(out, "Warning: %" PRIu64 " allocations were not recorded (tables full): figures are lower bounds\n",
			m[HD_META_DROPPED_ALLOCS]);
}

/* ---- JSON ----------------------------------------------------------- */

static void json_snap(struct strbuf *sb, const struct snapshot *s)
{
	strbuf_adds(sb, "{\"path\": ");
	strbuf_add_json(sb, s->path);
	strbuf_addf(sb, ", \"pid\": %" PRIu64 ", \"trigger\": ", s->meta[HD_META_PID]);
	strbuf_add_json(sb, hd_trigger_name(s->meta[HD_META_TRIGGER]));
	strbuf_adds(sb, ", \"label\": ");
	strbuf_add_json(sb, s->label);
	strbuf_addf(sb, ", \"seq\": %" PRIu64 ", \"time\": %.9f, \"uptime\": %.9f, \"exe\": ",
		    s->meta[HD_META_SEQ], (double)s->meta[HD_META_WALL_NS] / 1e9,
		    (double)(s->meta[HD_META_MONO_NS] - s->meta[HD_META_START_MONO_NS]) / 1e9);
	strbuf_add_json(sb, s->exe);
	strbuf_addf(sb, ", \"sampled\": %" PRIu64, s->meta[HD_META_SAMPLE_BYTES]);
	strbuf_addf(sb, ", \"peak\": %" PRIu64 ", \"rss\": %" PRIu64 ", \"shim_bytes\": %" PRIu64
		    ", \"unknown_frees\": %" PRIu64 ", \"dropped_allocs\": %" PRIu64 "}",
		    s->meta[HD_META_PEAK_BYTES], s->meta[HD_META_RSS_BYTES], s->meta[HD_META_SHIM_BYTES],
		    s->meta[HD_META_UNKNOWN_FREES], s->meta[HD_META_DROPPED_ALLOCS]);
}

static void json_frame(struct strbuf *sb, const struct sym_frame *f)
{
	strbuf_adds(sb, "{\"function\": ");
	strbuf_add_json(sb, f->function);
	strbuf_adds(sb, ", \"file\": ");
	if (f->file)
		strbuf_add_json(sb, f->file);
	else
		strbuf_adds(sb, "null");
	strbuf_addf(sb, ", \"line\": %d, \"module\": ", f->line);
	strbuf_add_json(sb, f->module);
	strbuf_addf(sb, ", \"address\": \"0x%" PRIx64 "\", \"offset\": \"0x%" PRIx64 "\", \"inlined\": %s}",
		    f->address, f->offset, f->inlined ? "true" : "false");
}

void write_stats_json(FILE *out, const struct stats *r)
{
	struct strbuf sb = STRBUF_INIT;
	size_t shown = r->limit && r->limit < r->n ? r->limit : r->n;

	strbuf_adds(&sb, "{\"snapshot\": ");
	json_snap(&sb, r->cur.snap);
	if (r->diff) {
		strbuf_adds(&sb, ",\n \"old_snapshot\": ");
		json_snap(&sb, r->old.snap);
	}
	strbuf_addf(&sb, ",\n \"by\": \"%s\", \"cumulative\": %s,\n \"total\": {\"size\": %" PRId64 ", \"count\": %" PRId64,
		    group_by_name(r->by), r->cumulative ? "true" : "false", r->cur.total_size, r->cur.total_count);
	if (r->diff)
		strbuf_addf(&sb, ", \"size_diff\": %" PRId64 ", \"count_diff\": %" PRId64,
			    r->cur.total_size - r->old.total_size, r->cur.total_count - r->old.total_count);
	strbuf_addf(&sb, "},\n \"peak\": %" PRIu64 ",\n \"stats\": [", r->cur.snap->meta[HD_META_PEAK_BYTES]);
	for (size_t i = 0; i < shown; i++) {
		const struct stat_entry *e = r->entries[i];
		strbuf_adds(&sb, i ? ",\n  {\"key\": " : "\n  {\"key\": ");
		strbuf_add_json(&sb, e->key);
		strbuf_adds(&sb, ", \"file\": ");
		if (e->site->file)
			strbuf_add_json(&sb, e->site->file);
		else
			strbuf_adds(&sb, "null");
		strbuf_addf(&sb, ", \"line\": %d, \"function\": ", e->site->line);
		strbuf_add_json(&sb, e->site->function);
		strbuf_addf(&sb, ", \"size\": %" PRId64 ", \"count\": %" PRId64, e->size, e->count);
		if (r->diff)
			strbuf_addf(&sb, ", \"size_diff\": %" PRId64 ", \"count_diff\": %" PRId64,
				    e->size - e->old_size, e->count - e->old_count);
		strbuf_adds(&sb, ", \"traceback\": [");
		for (int k = 0; k < e->tb.n; k++) {
			if (k)
				strbuf_adds(&sb, ", ");
			json_frame(&sb, e->tb.frames[k]);
		}
		strbuf_adds(&sb, "]}");
	}
	int64_t rest_size = 0, rest_count = 0;
	for (size_t i = shown; i < r->n; i++) {
		rest_size += r->entries[i]->size;
		rest_count += r->entries[i]->count;
	}
	strbuf_addf(&sb, "%s],\n \"not_shown\": {\"entries\": %zu, \"size\": %" PRId64 ", \"count\": %" PRId64 "}}\n",
		    shown ? "\n " : "", r->n - shown, rest_size, rest_count);
	fputs(sb.buf, out);
	strbuf_release(&sb);
}
