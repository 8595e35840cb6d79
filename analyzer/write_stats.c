/*
 * write_stats.c - top and diff (struct stats) as text, in tracemalloc's own
 * layout, or as JSON.
 */
#include "alloc_fns.h"
#include "json.h"
#include "util.h"
#include "write.h"

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
	char *site = r->by == BY_TRACEBACK ? site_frame_location(e->site) : NULL;
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
		const char *wrapper = i < e->tb.site ? " " WRAPPER_MARK : "";
		if (f->file) {
			fprintf(out, "  File \"%s\", line %d, in %s%s%s\n", f->file, f->line, f->function, inl, wrapper);
			const char *src = source_line(f->file, f->line);
			if (src && *src)
				fprintf(out, "    %s\n", src);
		} else {
			fprintf(out, "  %s+0x%" PRIx64 ", in %s%s%s\n", f->module, f->offset, f->function, inl, wrapper);
		}
	}
}

void write_hint_line(FILE *out, const struct wrapper_hint *h)
{
	if (!h->function)
		return;
	char *bare = alloc_fns_bare_name(h->function), *re = alloc_fns_regex_for(h->function);
	fprintf(out, "Hint: %d%% of these bytes are allocated in %s, called from %zu places; if it allocates for its "
		"callers, --alloc-fn '%s' makes them the sites\n", (int)(100 * h->size / h->total), bare, h->callers, re);
	free(bare);
	free(re);
}

void write_hint_json(struct json *j, const struct wrapper_hint *h)
{
	json_key(j, "wrapper_hint");
	if (!h->function) {
		json_null(j);
		return;
	}
	char *re = alloc_fns_regex_for(h->function);
	json_object_begin(j);
	json_kv_string(j, "function", h->function);
	json_kv_int(j, "size", h->size);
	json_kv_int(j, "callers", (int64_t)h->callers);
	json_kv_string(j, "alloc_fn", re);
	json_object_end(j);
	free(re);
}

/* The first `shown` entries of r, by how much of them lacks file and line:
 * what they hold, or for a diff what changed. */
static void tally_shown(const struct stats *r, size_t shown, struct debuginfo_tally *t)
{
	for (size_t i = 0; i < shown; i++)
		debuginfo_tally_add(t, r->entries[i]->site, r->entries[i]->size - (r->diff ? r->entries[i]->old_size : 0));
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
	write_hint_line(out, &r->hint);
	struct debuginfo_tally t = { 0 };
	tally_shown(r, shown, &t);
	write_debuginfo_line(out, &t);
	debuginfo_tally_release(&t);
}

/* ---- JSON ----------------------------------------------------------- */

static void json_snap(struct json *j, const struct snapshot *s)
{
	const uint64_t *m = s->meta;

	json_object_begin(j);
	json_kv_string(j, "path", s->path);
	json_kv_uint(j, "pid", m[HD_META_PID]);
	json_kv_string(j, "trigger", hd_trigger_name(m[HD_META_TRIGGER]));
	json_kv_string(j, "label", s->label);
	json_kv_uint(j, "seq", m[HD_META_SEQ]);
	json_kv_double(j, "time", (double)m[HD_META_WALL_NS] / 1e9, 9);
	json_kv_double(j, "uptime", (double)(m[HD_META_MONO_NS] - m[HD_META_START_MONO_NS]) / 1e9, 9);
	json_kv_string(j, "exe", s->exe);
	json_kv_uint(j, "sampled", m[HD_META_SAMPLE_BYTES]);
	json_kv_uint(j, "peak", m[HD_META_PEAK_BYTES]);
	json_kv_uint(j, "rss", m[HD_META_RSS_BYTES]);
	json_kv_uint(j, "shim_bytes", m[HD_META_SHIM_BYTES]);
	json_kv_uint(j, "unknown_frees", m[HD_META_UNKNOWN_FREES]);
	json_kv_uint(j, "dropped_allocs", m[HD_META_DROPPED_ALLOCS]);
	json_object_end(j);
}

static void json_frame(struct json *j, const struct sym_frame *f)
{
	json_object_begin(j);
	json_kv_string(j, "function", f->function);
	json_kv_string(j, "file", f->file);
	json_kv_int(j, "line", f->line);
	json_kv_string(j, "module", f->module);
	json_kv_hex(j, "address", f->address);
	json_kv_hex(j, "offset", f->offset);
	json_kv_bool(j, "inlined", f->inlined);
	json_object_end(j);
}

static void json_entry(struct json *j, const struct stats *r, const struct stat_entry *e)
{
	json_object_begin(j);
	json_kv_string(j, "key", e->key);
	json_kv_string(j, "file", e->site->file);
	json_kv_int(j, "line", e->site->line);
	json_kv_string(j, "function", e->site->function);
	json_kv_int(j, "size", e->size);
	json_kv_int(j, "count", e->count);
	if (r->diff) {
		json_kv_int(j, "size_diff", e->size - e->old_size);
		json_kv_int(j, "count_diff", e->count - e->old_count);
	}
	json_kv_int(j, "wrapper_frames", e->tb.site);
	json_key(j, "traceback");
	json_array_begin(j);
	for (int k = 0; k < e->tb.n; k++)
		json_frame(j, e->tb.frames[k]);
	json_array_end(j);
	json_object_end(j);
}

void write_stats_json(FILE *out, const struct stats *r)
{
	size_t shown = r->limit && r->limit < r->n ? r->limit : r->n;
	int64_t rest_size = 0, rest_count = 0;
	struct json j;

	json_init(&j, out);
	json_object_begin(&j);
	json_key(&j, "snapshot");
	json_snap(&j, r->cur.snap);
	if (r->diff) {
		json_break(&j, 1);
		json_key(&j, "old_snapshot");
		json_snap(&j, r->old.snap);
	}
	json_break(&j, 1);
	json_kv_string(&j, "by", site_by_name(r->by));
	json_kv_bool(&j, "cumulative", r->cumulative);
	json_break(&j, 1);
	json_key(&j, "total");
	json_object_begin(&j);
	json_kv_int(&j, "size", r->cur.total_size);
	json_kv_int(&j, "count", r->cur.total_count);
	if (r->diff) {
		json_kv_int(&j, "size_diff", r->cur.total_size - r->old.total_size);
		json_kv_int(&j, "count_diff", r->cur.total_count - r->old.total_count);
	}
	json_object_end(&j);
	json_break(&j, 1);
	json_kv_uint(&j, "peak", r->cur.snap->meta[HD_META_PEAK_BYTES]);
	json_break(&j, 1);
	json_key(&j, "stats");
	json_array_begin(&j);
	for (size_t i = 0; i < shown; i++) {
		json_break(&j, 2);
		json_entry(&j, r, r->entries[i]);
	}
	if (shown)
		json_break(&j, 1);
	json_array_end(&j);
	for (size_t i = shown; i < r->n; i++) {
		rest_size += r->entries[i]->size;
		rest_count += r->entries[i]->count;
	}
	json_break(&j, 1);
	json_key(&j, "not_shown");
	json_object_begin(&j);
	json_kv_uint(&j, "entries", r->n - shown);
	json_kv_int(&j, "size", rest_size);
	json_kv_int(&j, "count", rest_count);
	json_object_end(&j);
	json_break(&j, 1);
	write_hint_json(&j, &r->hint);
	json_break(&j, 1);
	struct debuginfo_tally t = { 0 };
	tally_shown(r, shown, &t);
	write_debuginfo_json(&j, &t);
	debuginfo_tally_release(&t);
	json_object_end(&j);
	json_end_line(&j);
}
