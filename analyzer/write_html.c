/*
 * write_html.c - the trend model as one self-contained HTML page
 * (`heapdelta report`): live memory over time (the top sites stacked, the
 * traced heap, the process's RSS), the sites ranked by growth (each
 * expandable to its stack), and two flame graphs (live at the last
 * snapshot; growth from the first to the last), zoomable and searchable.
 * The page is html_template.html with the data (JSON) put in its place.
 * When the process's last snapshots are its teardown (trend.c), the chart
 * shows them in a band of their own, and the table, the sparklines and the
 * flame graphs are of the steady state, as `heapdelta trend` ranks it.
 *
 * The page stays light whatever the run: series are cut to at most 400
 * points, sparklines to 20, stacks are indexes into one table of frame
 * names, and the flame graphs are compact arrays.
 */
#include "json.h"
#include "util.h"
#include "write.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The page template (report.html), linked in as bytes. */
__asm__(".section .rodata\n"
	".global heapdelta_report_template\n"
	"heapdelta_report_template:\n"
	".incbin \"analyzer/html_template.html\"\n"
	".byte 0\n"
	".previous\n");
extern const char heapdelta_report_template[];

#define MAX_POINTS 400
#define SPARK_POINTS 20
#define TOP_SITES 6

struct frames {
	struct strmap map;
	char **names;
	size_t n;
};

static uint64_t frame_index(struct frames *f, const char *name)
{
	int fresh;
	uint64_t i = strmap_get(&f->map, name, f->n, &fresh);

	if (fresh) {
		f->names = xrealloc(f->names, (f->n + 1) * sizeof *f->names);
		f->names[f->n++] = xstrdup(name);
	}
	return i;
}

static uint64_t frame_long(struct frames *fr, const struct sym_frame *f)
{
	char *s = f->file ? xasprintf("%s  %s:%d%s", f->function, f->file, f->line, f->inlined ? " (inlined)" : "")
			  : xasprintf("%s  %s+0x%" PRIx64, f->function, f->module, f->offset);
	uint64_t i = frame_index(fr, s);
	free(s);
	return i;
}

static uint64_t frame_short(struct frames *fr, const struct sym_frame *f)
{
	if (strcmp(f->function, "??"))
		return frame_index(fr, f->function);
	char *s = xasprintf("%s+0x%" PRIx64, f->module, f->offset);
	uint64_t i = frame_index(fr, s);
	free(s);
	return i;
}

/* A flame graph: nodes in parent-before-child order; node 0 is the root. */
struct flame {
	int64_t *name, *value;
	size_t *parent;
	size_t n;
	struct strmap children;   /* "parent:frame" -> node */
};

static size_t flame_node(struct flame *fl, size_t parent, int64_t name)
{
	char key[48];
	int fresh;

	snprintf(key, sizeof key, "%zu:%" PRId64, parent, name);
	size_t i = (size_t)strmap_get(&fl->children, key, fl->n, &fresh);
	if (fresh) {
		fl->name = xrealloc(fl->name, (fl->n + 1) * sizeof *fl->name);
		fl->value = xrealloc(fl->value, (fl->n + 1) * sizeof *fl->value);
		fl->parent = xrealloc(fl->parent, (fl->n + 1) * sizeof *fl->parent);
		fl->name[fl->n] = name;
		fl->value[fl->n] = 0;
		fl->parent[fl->n] = parent;
		fl->n++;
	}
	return i;
}

/* Add `value` along a stack (site outwards: walked from the root in). */
static void flame_add(struct flame *fl, struct frames *fr, const struct site_stack *st, int64_t value)
{
	size_t node = 0;

	if (value <= 0)
		return;
	fl->value[0] += value;
	for (int k = st->n - 1; k >= 0; k--) {
		node = flame_node(fl, node, (int64_t)frame_short(fr, st->frames[k]));
		fl->value[node] += value;
	}
}

static void flame_init(struct flame *fl)
{
	memset(fl, 0, sizeof *fl);
	fl->name = xcalloc(1, sizeof *fl->name);
	fl->value = xcalloc(1, sizeof *fl->value);
	fl->parent = xcalloc(1, sizeof *fl->parent);
	fl->name[0] = -1;
	fl->n = 1;
}

static void flame_json(struct json *j, const struct flame *fl)
{
	json_object_begin(j);
	json_key(j, "n");
	json_array_begin(j);
	json_compact(j);
	for (size_t i = 0; i < fl->n; i++)
		json_int(j, fl->name[i]);
	json_array_end(j);
	json_key(j, "v");
	json_array_begin(j);
	json_compact(j);
	for (size_t i = 0; i < fl->n; i++)
		json_int(j, fl->value[i]);
	json_array_end(j);
	json_key(j, "p");
	json_array_begin(j);
	json_compact(j);
	for (size_t i = 0; i < fl->n; i++)
		json_uint(j, fl->parent[i]);
	json_array_end(j);
	json_object_end(j);
}

static void flame_release(struct flame *fl)
{
	free(fl->name);
	free(fl->value);
	free(fl->parent);
	strmap_release(&fl->children);
}

/* Indexes of at most m points spread over 0 .. n-1, first and last kept. */
static size_t pick(size_t k, size_t m, size_t n)
{
	return m <= 1 ? n - 1 : (size_t)((double)k * (double)(n - 1) / (double)(m - 1) + 0.5);
}

enum column { COL_Y, COL_HEAP, COL_RSS };

/* A member holding m of the first n points of a series, spread (pick()),
 * as a compact array: y, or a column of the points (the traced heap, the
 * RSS). */
static void json_points(struct json *j, const char *key, const struct trend *tr, enum column col, const int64_t *y,
			size_t m, size_t n)
{
	json_key(j, key);
	json_array_begin(j);
	json_compact(j);
	for (size_t k = 0; k < m; k++) {
		size_t i = pick(k, m, n);
		if (col == COL_HEAP)
			json_uint(j, tr->pts[i].live_bytes);
		else if (col == COL_RSS)
			json_uint(j, tr->pts[i].rss_bytes);
		else
			json_int(j, y[i]);
	}
	json_array_end(j);
}

/* A series' label: its key, or for a traceback key its site's location. */
static void json_label(struct json *j, const char *key, const struct series *s)
{
	char *site = strchr(s->key, '\n') ? site_frame_location(s->site) : NULL;

	json_kv_string(j, key, site ? site : s->key);
	free(site);
}

/* "top": the chart stacks the sites that are largest at the end of the
 * steady state. */
static void json_top(struct json *j, const struct trend *tr, size_t m)
{
	size_t n = (size_t)tr->n, e = (size_t)tr->steady - 1;
	struct trend_site **bysize = xcalloc(tr->nsites + 1, sizeof *bysize);

	for (size_t i = 0; i < tr->nsites; i++)
		bysize[i] = &tr->sites[i];
	for (size_t a = 0; a < tr->nsites && a < TOP_SITES; a++)
		for (size_t b = a + 1; b < tr->nsites; b++)
			if (bysize[b]->s->bytes[e] > bysize[a]->s->bytes[e]) {
				struct trend_site *x = bysize[a];
				bysize[a] = bysize[b];
				bysize[b] = x;
			}
	json_key(j, "top");
	json_array_begin(j);
	for (size_t i = 0; i < tr->nsites && i < TOP_SITES; i++) {
		json_break(j, 2);
		json_object_begin(j);
		json_label(j, "key", bysize[i]->s);
		json_points(j, "series", tr, COL_Y, bysize[i]->s->bytes, m, n);
		json_object_end(j);
	}
	json_array_end(j);
	free(bysize);
}

/* "sites": every site as trend ranks it, its figures and sparkline over
 * the steady state, its stack as indexes into fr. */
static void json_sites(struct json *j, const struct trend *tr, struct frames *fr)
{
	size_t n = (size_t)tr->steady, sm = n < SPARK_POINTS ? n : SPARK_POINTS;

	json_key(j, "sites");
	json_array_begin(j);
	for (size_t i = 0; i < tr->nsites; i++) {
		const struct trend_site *ts = &tr->sites[i];
		const struct series *s = ts->s;
		json_break(j, 2);
		json_object_begin(j);
		json_label(j, "k", s);
		json_kv_double(j, "r", ts->rate, 1);
		json_kv_double(j, "s", ts->steadiness, 3);
		json_kv_int(j, "g", ts->growth);
		json_kv_int(j, "z", s->bytes[n - 1]);
		json_kv_int(j, "p", ts->plateaued);
		json_points(j, "sp", tr, COL_Y, s->bytes, sm, n);
		json_key(j, "st");
		json_array_begin(j);
		json_compact(j);
		for (int k = 0; k < s->tb.n; k++)
			json_uint(j, frame_long(fr, s->tb.frames[k]));
		json_array_end(j);
		json_object_end(j);
	}
	json_array_end(j);
}

/* "flame_live" and "flame_growth", from every stack of the first snapshot
 * and the last of the steady state. */
static void json_flames(struct json *j, const struct trend *tr, const struct group_opts *g,
			struct symbolizer *sym, struct frames *fr)
{
	struct group_opts tb_opts = *g;
	struct flame live, growth;
	size_t ne;

	tb_opts.by = BY_TRACEBACK;
	tb_opts.cumulative = 0;
	struct stat_table *t = group_new(&tb_opts, sym);
	group_add(t, tr->end, 0);
	group_add(t, tr->first, 1);
	struct stat_entry **ents = group_sorted(t, 1, &ne);
	flame_init(&live);
	flame_init(&growth);
	for (size_t i = 0; i < ne; i++) {
		flame_add(&live, fr, &ents[i]->tb, ents[i]->size);
		flame_add(&growth, fr, &ents[i]->tb, ents[i]->size - ents[i]->old_size);
	}
	json_break(j, 1);
	json_key(j, "flame_live");
	flame_json(j, &live);
	json_break(j, 1);
	json_key(j, "flame_growth");
	flame_json(j, &growth);
	flame_release(&live);
	flame_release(&growth);
	free(ents);
	group_free(t);
}

static void build_json(struct strbuf *sb, struct trend *tr, const struct group_opts *g, struct symbolizer *sym)
{
	size_t n = (size_t)tr->n, m = n < MAX_POINTS ? n : MAX_POINTS, k = (size_t)tr->steady;
	struct frames fr = { 0 };
	struct json j;

	json_init_strbuf(&j, sb);
	json_object_begin(&j);
	json_kv_string(&j, "exe", tr->exe);
	json_kv_uint(&j, "pid", tr->pid);
	json_kv_int(&j, "snapshots", tr->n);
	json_kv_double(&j, "duration", tr->t[n - 1], 6);
	json_kv_int(&j, "steady", tr->steady);
	json_kv_double(&j, "steady_end", tr->t[k - 1], 6);
	json_kv_double(&j, "flame_at", tr->t[tr->end_at], 6);
	write_trend_teardown_json(&j, tr);
	json_kv_uint(&j, "nsites", tr->nsites);
	json_kv_string(&j, "by", site_by_name(g->by));
	json_break(&j, 1);
	json_key(&j, "times");
	json_array_begin(&j);
	json_compact(&j);
	for (size_t i = 0; i < m; i++)
		json_double(&j, tr->t[pick(i, m, n)], 3);
	json_array_end(&j);
	json_break(&j, 1);
	json_points(&j, "total", tr, COL_HEAP, NULL, m, n);
	json_break(&j, 1);
	json_points(&j, "rss", tr, COL_RSS, NULL, m, n);
	json_break(&j, 1);
	json_top(&j, tr, m);
	json_break(&j, 1);
	json_sites(&j, tr, &fr);
	json_flames(&j, tr, g, sym, &fr);
	json_break(&j, 1);
	json_key(&j, "frames");
	json_array_begin(&j);
	json_compact(&j);
	for (size_t i = 0; i < fr.n; i++) {
		json_string(&j, fr.names[i]);
		free(fr.names[i]);
	}
	json_array_end(&j);
	json_object_end(&j);
	free(fr.names);
	strmap_release(&fr.map);
}

static int write_page(const char *path, const char *json)
{
	const char *marker = strstr(heapdelta_report_template, "HEAPDELTA_DATA");
	char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
	FILE *f = fopen(tmp, "w");
	int bad;

	if (!f) {
		error("cannot write '%s': %s", path, strerror(errno));
		free(tmp);
		return -1;
	}
	fwrite(heapdelta_report_template, 1, (size_t)(marker - heapdelta_report_template), f);
	/* Inside <script>, "</" would end the element: write "<\/". */
	for (const char *c = json; *c; c++) {
		if (c[0] == '<' && c[1] == '/')
			fputs("<\\", f);
		else
			fputc(*c, f);
	}
	fputs(marker + strlen("HEAPDELTA_DATA"), f);
	bad = ferror(f);
	bad |= fclose(f) != 0;
	if (bad || rename(tmp, path) < 0) {
		error("cannot write '%s': %s", path, strerror(errno));
		unlink(tmp);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}

int write_html(const char *path, struct trend *tr, const struct group_opts *g, struct symbolizer *sym)
{
	struct strbuf json = STRBUF_INIT;

	build_json(&json, tr, g, sym);
	int rc = write_page(path, json.buf);
	strbuf_release(&json);
	return rc;
}
