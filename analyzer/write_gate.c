/*
 * write_gate.c - the gate model (leaks, check, run --check) as text, JSON,
 * JUnit XML, SARIF 2.1.0 or GitHub workflow commands.  An entry of a kind
 * of reachability is worded as LeakSanitizer words its leaks ("Direct leak
 * of 48 byte(s) in 3 object(s)"); an entry of blocks not classified as
 * before reachability existed ("48 bytes in 3 allocations not freed at
 * exit").
 */
#include "json.h"
#include "util.h"
#include "write.h"

#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const base_names[] = { NULL, "new", "grew", "unchanged", "gone" };

/* A source path as CI systems want it: relative to the current directory
 * when it lies below it. */
static const char *display_path(const char *file, char *buf, size_t len)
{
	char cwd[PATH_MAX];

	if (file && getcwd(cwd, sizeof cwd)) {
		size_t l = strlen(cwd);
		if (!strncmp(file, cwd, l) && file[l] == '/') {
			snprintf(buf, len, "%s", file + l + 1);
			return buf;
		}
	}
	return file;
}

/* Frames v[0 .. n), the first `wrappers` of them marked as wrappers. */
static void frames_text(struct strbuf *sb, const struct sym_frame *const *v, int n, int wrappers)
{
	for (int i = 0; i < n; i++) {
		const struct sym_frame *f = v[i];
		strbuf_addf(sb, "    #%d 0x%" PRIx64 " in %s", i, f->address, f->function);
		if (f->file)
			strbuf_addf(sb, " %s:%d", f->file, f->line);
		else
			strbuf_addf(sb, " (%s+0x%" PRIx64 ")", f->module, f->offset);
		if (f->inlined)
			strbuf_adds(sb, " (inlined)");
		strbuf_adds(sb, i < wrappers ? " " WRAPPER_MARK "\n" : "\n");
	}
}

static void stack_text(struct strbuf *sb, const struct gate_site *s)
{
	frames_text(sb, (const struct sym_frame *const *)s->e->tb.frames, s->e->tb.n, s->e->tb.site);
}

/* valgrind's "Mismatched free() / delete / delete []", each with the
 * releasing stack, then the allocating one. */
static void mismatches_text(struct strbuf *sb, const struct gate *g)
{
	for (size_t i = 0; i < g->nmismatches; i++) {
		const struct gate_mismatch *m = &g->mismatches[i];
		strbuf_addf(sb, "Mismatched release: %s of %" PRIu64 " bytes from %s, released at:\n", m->released_with,
			    m->size, m->allocated_with);
		frames_text(sb, m->released_at.v, m->released_at.n, 0);
		strbuf_adds(sb, "  allocated at:\n");
		frames_text(sb, m->allocated_at.v, m->allocated_at.n, 0);
		strbuf_adds(sb, "\n");
	}
	if (g->mismatched_frees > g->nmismatches)
		strbuf_addf(sb, "(%" PRIu64 " mismatched releases in all; the first %zu are shown)\n\n",
			    g->mismatched_frees, g->nmismatches);
}

/* Whether s is worded by its kind: not by growth, and classified. */
static int by_kind(const struct gate_site *s)
{
	return s->kind != GROUP_UNCLASSIFIED && !gate_site_by_growth(s);
}

/* "1000 bytes in 10 allocations not freed at exit", "Direct leak of 48
 * byte(s) in 3 object(s)" and their variants. */
static void site_line(struct strbuf *sb, const struct gate *g, const struct gate_site *s)
{
	static const char *const lead[HD_REACH_NKINDS] = {
		"Direct leak of ", "Indirect leak of ", "Possible leak of ", "Still reachable: "
	};

	if (gate_site_by_growth(s))
		strbuf_addf(sb, "%+" PRId64 " bytes in %+" PRId64 " allocations since the first snapshot",
			    s->growth, s->growth_count);
	else if (by_kind(s))
		strbuf_addf(sb, "%s%" PRId64 " byte(s) in %" PRId64 " object(s)", lead[s->kind], s->size, s->count);
	else
		strbuf_addf(sb, "%" PRId64 " bytes in %" PRId64 " allocations %s", s->size, s->count,
			    g->at_exit ? "not freed at exit" : "still allocated at the last snapshot");
	if (s->base == BASE_NEW)
		strbuf_adds(sb, " [new]");
	else if (s->base == BASE_GREW)
		strbuf_addf(sb, " [grew from %" PRId64 " bytes]", s->base_bytes);
}

/* site_line() and what leads to its stack. */
static void site_head(struct strbuf *sb, const struct gate *g, const struct gate_site *s)
{
	site_line(sb, g, s);
	strbuf_adds(sb, by_kind(s) ? " allocated from:\n" : ", allocated from:\n");
}

static const char *site_where(const struct gate_site *s, char *buf, size_t len)
{
	const struct sym_frame *f = s->e->site;
	char p[PATH_MAX];

	if (f->file)
		snprintf(buf, len, "%s %s:%d", f->function, display_path(f->file, p, sizeof p), f->line);
	else
		snprintf(buf, len, "%s %s+0x%" PRIx64, f->function, f->module, f->offset);
	return buf;
}

/* Entries a report lists: every unsuppressed entry with something to say
 * (leaks: of a kind it shows).  An entry of zero-byte blocks holds blocks:
 * it is listed. */
static int listed(const struct gate *g, const struct gate_site *s)
{
	if (s->supp)
		return 0;
	if (g->o->leaks_only)
		return (s->size > 0 || s->count > 0) && gate_shows_kind(g->o, s->kind);
	return s->size > 0 || s->count > 0 || s->growth != 0 || s->growth_count != 0 || s->fails;
}

/* ", definitely lost" after an entry of a kind, nothing after others. */
static const char *kind_suffix(int kind, char *buf, size_t len)
{
	if (kind < 0 || kind >= HD_REACH_NKINDS)
		return "";
	snprintf(buf, len, ", %s", gate_kind_words(kind));
	return buf;
}

/* ---- text -------------------------------------------------------------- */

static void budget_line(FILE *out, const char *what, int64_t v, int64_t budget, int sign)
{
	char a[32], b[32];

	fprintf(out, "%s: %s", what, format_size(a, (double)v, sign));
	if (budget >= 0)
		fprintf(out, " (budget %s)%s", format_size(b, (double)budget, 0), v > budget ? ": over budget" : "");
	fputc('\n', out);
}

/* The sites the text lists, by how much of them has no file and line. */
static void tally_listed(const struct gate *g, struct debuginfo_tally *t)
{
	for (size_t i = 0; i < g->nsites; i++) {
		const struct gate_site *s = &g->sites[i];
		if (!listed(g, s) || (!g->o->leaks_only && !s->fails))
			continue;
		debuginfo_tally_add(t, s->e->site, gate_site_by_growth(s) ? s->growth : s->size);
	}
}

static void debuginfo_text(FILE *out, const struct gate *g)
{
	struct debuginfo_tally t = { 0 };

	tally_listed(g, &t);
	write_debuginfo_line(out, &t);
	debuginfo_tally_release(&t);
}

/* Why the blocks were not classified by reachability, in one line. */
static void unclassified_text(FILE *out, const struct gate *g)
{
	if (!g->unclassified)
		return;
	fprintf(out, "Not classified by reachability");
	if (g->nprocs > 1)
		fprintf(out, " in %d of %d processes (pid %" PRIu64 ")", g->nprocs - g->nclassified, g->nprocs,
			g->unclassified->meta[HD_META_PID]);
	fprintf(out, ": %s\n", g->unclassified_why);
}

static void gate_text(FILE *out, const struct gate *g)
{
	const struct gate_opts *o = g->o;
	struct strbuf sb = STRBUF_INIT;
	char where[PATH_MAX + 256], kind[64];

	for (size_t i = 0; i < g->nsites; i++) {
		const struct gate_site *s = &g->sites[i];
		if (!listed(g, s) || (!o->leaks_only && !s->fails))
			continue;
		site_head(&sb, g, s);
		stack_text(&sb, s);
		strbuf_adds(&sb, "\n");
	}
	if (o->leaks_only)
		mismatches_text(&sb, g);
	if (sb.buf)
		fputs(sb.buf, out);
	strbuf_release(&sb);
	if (o->leaks_only) {
		unclassified_text(out, g);
		write_hint_line(out, &g->hint);
		debuginfo_text(out, g);
		return;
	}
	budget_line(out, g->at_exit ? "not freed at exit" : "still allocated at the last snapshot",
		    g->leaked, o->max_leaked, 0);
	if (gate_classified(g))
		budget_line(out, "definitely and indirectly lost", g->lost, o->max_lost, 0);
	if (g->has_growth)
		budget_line(out, "growth since the first snapshot", g->growth, o->max_growth, 1);
	budget_line(out, "peak", (int64_t)g->peak, o->max_peak, 0);
	if (o->baseline) {
		for (size_t i = 0; i < g->nsites; i++) {
			const struct gate_site *s = &g->sites[i];
			if (!s->base)
				continue;
			fprintf(out, "baseline: %-9s %s: %" PRId64 " bytes in %" PRId64 " allocations%s (baseline %" PRId64
				" bytes) [%s]\n", base_names[s->base], site_where(s, where, sizeof where), s->size,
				s->count, kind_suffix(s->kind, kind, sizeof kind), s->base_bytes, s->fp);
		}
		for (size_t i = 0; i < g->ngone; i++)
			fprintf(out, "baseline: %-9s %s%s (baseline %" PRId64 " bytes) [%s]\n", "gone", g->gone[i].desc,
				kind_suffix(g->gone[i].kind, kind, sizeof kind), g->gone[i].bytes, g->gone[i].fp);
	}
	write_hint_line(out, &g->hint);
	debuginfo_text(out, g);
}

/* leaks' SUMMARY of classified blocks: bytes and blocks of every kind, as
 * valgrind's LEAK SUMMARY, then those not classified and those
 * suppressed. */
static void kinds_summary(FILE *out, const struct gate *g)
{
	const char *sep = "";

	fprintf(out, "SUMMARY: heapdelta: ");
	for (int k = 0; k < GROUP_NKINDS; k++) {
		if (k == GROUP_UNCLASSIFIED && !g->kind_size[k] && !g->kind_count[k])
			continue;
		fprintf(out, "%s%s %" PRId64 " bytes in %" PRId64 " blocks", k ? ", " : "", gate_kind_words(k),
			g->kind_size[k], g->kind_count[k]);
	}
	if (g->suppressed || g->suppressed_count) {
		fprintf(out, " (suppressed: ");
		for (int k = 0; k < GROUP_NKINDS; k++) {
			if (!g->supp_kind_size[k] && !g->supp_kind_count[k])
				continue;
			fprintf(out, "%s%s %" PRId64 " bytes in %" PRId64 " blocks", sep, gate_kind_words(k),
				g->supp_kind_size[k], g->supp_kind_count[k]);
			sep = ", ";
		}
		fputc(')', out);
	}
	fputc('\n', out);
}

void write_gate_summary(FILE *out, const struct gate *g)
{
	char a[32], b[32];

	if (g->o->leaks_only && g->nclassified) {
		kinds_summary(out, g);
		return;
	}
	if (g->o->leaks_only) {
		fprintf(out, "SUMMARY: heapdelta: %" PRId64 " bytes in %" PRId64 " allocations %s",
			g->leaked, g->leaked_count, g->at_exit ? "not freed at exit" : "still allocated at the last snapshot");
		if (g->suppressed)
			fprintf(out, " (%" PRId64 " bytes suppressed)", g->suppressed);
		fputc('\n', out);
		return;
	}
	if (g->nfailing) {
		fprintf(out, "SUMMARY: heapdelta: %zu site%s over budget, %s in %" PRId64 " allocation%s",
			g->nfailing, g->nfailing == 1 ? "" : "s", format_size(a, (double)g->failing_bytes, 1),
			g->failing_count, g->failing_count == 1 ? "" : "s");
		if (g->fail_peak)
			fprintf(out, "; peak %s over budget %s", format_size(a, (double)g->peak, 0),
				format_size(b, (double)g->o->max_peak, 0));
		fputc('\n', out);
	} else if (g->fail_peak) {
		fprintf(out, "SUMMARY: heapdelta: peak %s over budget %s\n", format_size(a, (double)g->peak, 0),
			format_size(b, (double)g->o->max_peak, 0));
	} else {
		fprintf(out, "SUMMARY: heapdelta: within budget: %s in %" PRId64 " allocations %s",
			format_size(a, (double)g->leaked, 0), g->leaked_count,
			g->at_exit ? "not freed at exit" : "still allocated at the last snapshot");
		if (gate_classified(g))
			fprintf(out, ", %s in %" PRId64 " definitely or indirectly lost", format_size(b, (double)g->lost, 0),
				g->lost_count);
		if (g->has_growth)
			fprintf(out, ", growth %s", format_size(b, (double)g->growth, 1));
		fprintf(out, ", peak %s\n", format_size(a, (double)g->peak, 0));
	}
}

void write_gate_suppressions_used(FILE *out, const struct gate *g)
{
	fprintf(out, "-----------------------------------------------------\n");
	fprintf(out, "Suppressions used:\n");
	fprintf(out, "  count      bytes template\n");
	for (int i = 0; i < g->o->supp.n; i++) {
		const struct suppression *s = &g->o->supp.v[i];
		if (!s->hits)
			continue;
		if (s->kind_hits[GROUP_UNCLASSIFIED] == s->hits) {
			fprintf(out, "%7" PRId64 " %10" PRId64 " leak:%s\n", s->hits, s->bytes, s->pattern);
			continue;
		}
		/* One line per kind it suppressed. */
		for (int k = 0; k < GROUP_NKINDS; k++)
			if (s->kind_hits[k])
				fprintf(out, "%7" PRId64 " %10" PRId64 " leak:%s (%s)\n", s->kind_hits[k], s->kind_bytes[k],
					s->pattern, gate_kind_words(k));
	}
	fprintf(out, "-----------------------------------------------------\n");
}

void write_gate_gen_suppressions(FILE *out, const struct gate *g)
{
	/* A line per failing site, however many of its entries fail. */
	char *done = xcalloc(g->nsite_keys + 1, 1);

	for (size_t i = 0; i < g->nsites; i++) {
		const struct gate_site *s = &g->sites[i];
		if (!s->fails || done[s->site])
			continue;
		done[s->site] = 1;
		const struct sym_frame *f = s->e->site;
		if (strcmp(f->function, "??"))
			fprintf(out, "leak:%s\n", f->function);
		else
			fprintf(out, "leak:%s\n", f->module);
	}
	free(done);
}

/* ---- JSON -------------------------------------------------------------- */

static void json_budget(struct json *j, const char *name, int64_t v)
{
	json_key(j, name);
	if (v >= 0)
		json_int(j, v);
	else
		json_null(j);
}

static void json_frames(struct json *j, const struct sym_frame *const *v, int n)
{
	json_array_begin(j);
	for (int k = 0; k < n; k++) {
		const struct sym_frame *f = v[k];
		json_object_begin(j);
		json_kv_string(j, "function", f->function);
		json_kv_string(j, "file", f->file);
		json_kv_int(j, "line", f->line);
		json_kv_string(j, "module", f->module);
		json_kv_bool(j, "inlined", f->inlined);
		json_object_end(j);
	}
	json_array_end(j);
}

static void json_size_count(struct json *j, const char *key, int64_t size, int64_t count)
{
	json_key(j, key);
	json_object_begin(j);
	json_kv_int(j, "size", size);
	json_kv_int(j, "count", count);
	json_object_end(j);
}

/* Each kind's bytes and blocks: {"definite": {"size": N, "count": N}, ...,
 * "unclassified": ...}. */
static void json_kinds(struct json *j, const char *key, const int64_t *size, const int64_t *count)
{
	json_key(j, key);
	json_object_begin(j);
	for (int k = 0; k < GROUP_NKINDS; k++)
		json_size_count(j, snapshot_reach_kind_name(k), size[k], count[k]);
	json_object_end(j);
}

static void json_site(struct json *j, const struct gate_site *s)
{
	json_object_begin(j);
	json_kv_string(j, "fingerprint", s->fp);
	json_kv_string(j, "kind", snapshot_reach_kind_name(s->kind));
	json_kv_string(j, "function", s->e->site->function);
	json_kv_string(j, "file", s->e->site->file);
	json_kv_int(j, "line", s->e->site->line);
	json_kv_string(j, "module", s->e->site->module);
	json_kv_int(j, "size", s->size);
	json_kv_int(j, "count", s->count);
	json_kv_int(j, "growth", s->growth);
	json_kv_int(j, "growth_count", s->growth_count);
	json_kv_string(j, "suppressed_by", s->supp ? s->supp->pattern : NULL);
	json_kv_string(j, "baseline", base_names[s->base]);
	if (s->base)
		json_kv_int(j, "baseline_size", s->base_bytes);
	json_key(j, "fails");
	json_array_begin(j);
	json_compact(j);
	if (s->fails & FAIL_LEAKED)
		json_string(j, "leaked");
	if (s->fails & FAIL_LOST)
		json_string(j, "lost");
	if (s->fails & FAIL_GROWTH)
		json_string(j, "growth");
	if (s->fails & FAIL_SITE_GROWTH)
		json_string(j, "site-growth");
	if (s->fails & FAIL_BASELINE)
		json_string(j, "baseline");
	json_array_end(j);
	json_kv_int(j, "wrapper_frames", s->e->tb.site);
	json_key(j, "traceback");
	json_frames(j, (const struct sym_frame *const *)s->e->tb.frames, s->e->tb.n);
	json_object_end(j);
}

static void json_mismatch(struct json *j, const struct gate_mismatch *m)
{
	json_object_begin(j);
	json_kv_string(j, "released_with", m->released_with);
	json_kv_string(j, "allocated_with", m->allocated_with);
	json_kv_uint(j, "size", m->size);
	json_key(j, "released_at");
	json_frames(j, m->released_at.v, m->released_at.n);
	json_key(j, "allocated_at");
	json_frames(j, m->allocated_at.v, m->allocated_at.n);
	json_object_end(j);
}

static void gate_json(FILE *out, const struct gate *g)
{
	const struct gate_opts *o = g->o;
	struct json j;

	json_init(&j, out);
	json_object_begin(&j);
	json_kv_int(&j, "processes", g->nprocs);
	json_kv_bool(&j, "at_exit", g->at_exit);
	json_kv_bool(&j, "failed", gate_verdict(g) == GATE_FAIL);
	json_break(&j, 1);
	json_size_count(&j, "leaked", g->leaked, g->leaked_count);
	json_break(&j, 1);
	json_key(&j, "reachability");
	json_object_begin(&j);
	json_kv_bool(&j, "classified", gate_classified(g));
	json_kv_string(&j, "reason", g->unclassified ? g->unclassified_why : NULL);
	json_kv_string(&j, "snapshot", g->unclassified ? g->unclassified->path : NULL);
	json_object_end(&j);
	json_break(&j, 1);
	json_kinds(&j, "kinds", g->kind_size, g->kind_count);
	json_break(&j, 1);
	if (gate_classified(g)) {
		json_size_count(&j, "lost", g->lost, g->lost_count);
	} else {
		json_key(&j, "lost");
		json_null(&j);
	}
	json_break(&j, 1);
	if (g->has_growth) {
		json_size_count(&j, "growth", g->growth, g->growth_count);
	} else {
		json_key(&j, "growth");
		json_null(&j);
	}
	json_break(&j, 1);
	json_kv_uint(&j, "peak", g->peak);
	json_break(&j, 1);
	json_key(&j, "suppressed");
	json_object_begin(&j);
	json_kv_int(&j, "size", g->suppressed);
	json_kv_int(&j, "count", g->suppressed_count);
	json_kinds(&j, "kinds", g->supp_kind_size, g->supp_kind_count);
	json_object_end(&j);
	json_break(&j, 1);
	json_key(&j, "budgets");
	json_object_begin(&j);
	json_budget(&j, "max_leaked", o->max_leaked);
	json_budget(&j, "max_lost", o->max_lost);
	json_budget(&j, "max_growth", o->max_growth);
	json_budget(&j, "max_growth_per_site", o->max_site_growth);
	json_budget(&j, "max_peak", o->max_peak);
	json_object_end(&j);
	json_break(&j, 1);
	json_key(&j, "sites");
	json_array_begin(&j);
	for (size_t i = 0; i < g->nsites; i++) {
		const struct gate_site *s = &g->sites[i];
		if ((!s->supp && !listed(g, s)) || (o->leaks_only && !gate_shows_kind(o, s->kind)))
			continue;
		json_break(&j, 2);
		json_site(&j, s);
	}
	json_array_end(&j);
	json_break(&j, 1);
	json_key(&j, "gone");
	json_array_begin(&j);
	for (size_t i = 0; i < g->ngone; i++) {
		json_object_begin(&j);
		json_kv_string(&j, "fingerprint", g->gone[i].fp);
		json_kv_string(&j, "kind", snapshot_reach_kind_name(g->gone[i].kind));
		json_kv_int(&j, "baseline_size", g->gone[i].bytes);
		json_kv_string(&j, "site", g->gone[i].desc);
		json_object_end(&j);
	}
	json_array_end(&j);
	json_break(&j, 1);
	json_kv_uint(&j, "mismatched_frees", g->mismatched_frees);
	json_break(&j, 1);
	json_key(&j, "mismatches");
	json_array_begin(&j);
	for (size_t i = 0; i < g->nmismatches; i++) {
		json_break(&j, 2);
		json_mismatch(&j, &g->mismatches[i]);
	}
	json_array_end(&j);
	json_break(&j, 1);
	write_hint_json(&j, &g->hint);
	json_break(&j, 1);
	struct debuginfo_tally t = { 0 };
	tally_listed(g, &t);
	write_debuginfo_json(&j, &t);
	debuginfo_tally_release(&t);
	json_object_end(&j);
	json_end_line(&j);
}

/* ---- JUnit ------------------------------------------------------------- */

static void xml_escaped(struct strbuf *sb, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': strbuf_adds(sb, "&amp;"); break;
		case '<': strbuf_adds(sb, "&lt;"); break;
		case '>': strbuf_adds(sb, "&gt;"); break;
		case '"': strbuf_adds(sb, "&quot;"); break;
		case '\'': strbuf_adds(sb, "&apos;"); break;
		default:
			if ((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t')
				strbuf_adds(sb, " ");
			else
				strbuf_add(sb, s, 1);
		}
	}
}

static void junit_case(struct strbuf *sb, const char *cls, const char *name, const char *type,
		       const char *message, const char *body)
{
	strbuf_adds(sb, "    <testcase classname=\"");
	xml_escaped(sb, cls);
	strbuf_adds(sb, "\" name=\"");
	xml_escaped(sb, name);
	strbuf_adds(sb, "\" time=\"0\"");
	if (!type) {
		strbuf_adds(sb, "/>\n");
		return;
	}
	strbuf_adds(sb, ">\n      <failure type=\"");
	xml_escaped(sb, type);
	strbuf_adds(sb, "\" message=\"");
	xml_escaped(sb, message);
	strbuf_adds(sb, "\">");
	xml_escaped(sb, body);
	strbuf_adds(sb, "</failure>\n    </testcase>\n");
}

static void gate_junit(FILE *out, const struct gate *g)
{
	const struct gate_opts *o = g->o;
	struct strbuf cases = STRBUF_INIT, doc = STRBUF_INIT;
	int tests = 0, failures = 0;
	char a[32], b[32], where[PATH_MAX + 256];

	struct { const char *name; int64_t v, budget; int fail, sign; } budgets[] = {
		{ "max-leaked", g->leaked, o->max_leaked, g->fail_leaked, 0 },
		{ "max-lost", g->lost, o->max_lost, g->fail_lost, 0 },
		{ "max-growth", g->growth, o->max_growth, g->fail_growth, 1 },
		{ "max-peak", (int64_t)g->peak, o->max_peak, g->fail_peak, 0 },
	};
	for (size_t i = 0; i < sizeof budgets / sizeof budgets[0]; i++) {
		if (budgets[i].budget < 0)
			continue;
		char *msg = xasprintf("%s %s, budget %s", budgets[i].name, format_size(a, (double)budgets[i].v, budgets[i].sign),
				      format_size(b, (double)budgets[i].budget, 0));
		junit_case(&cases, "heapdelta.budget", budgets[i].name, budgets[i].fail ? budgets[i].name : NULL, msg, msg);
		tests++;
		failures += budgets[i].fail;
		free(msg);
	}
	for (size_t i = 0; i < g->nsites; i++) {
		const struct gate_site *s = &g->sites[i];
		if (!listed(g, s))
			continue;
		struct strbuf line = STRBUF_INIT, body = STRBUF_INIT;
		site_line(&line, g, s);
		site_head(&body, g, s);
		stack_text(&body, s);
		char *name = by_kind(s) ? xasprintf("%s (%s) [%s]", site_where(s, where, sizeof where),
						    gate_kind_words(s->kind), s->fp)
				       : xasprintf("%s [%s]", site_where(s, where, sizeof where), s->fp);
		const char *type = s->fails & FAIL_BASELINE ? (s->base == BASE_NEW ? "baseline-new" : "baseline-grew")
				 : s->fails & FAIL_SITE_GROWTH ? "max-growth-per-site"
				 : s->fails & FAIL_GROWTH ? "max-growth"
				 : s->fails & FAIL_LOST ? "max-lost"
				 : s->fails & FAIL_LEAKED ? "max-leaked" : NULL;
		junit_case(&cases, "heapdelta.site", name, type, line.buf, body.buf);
		tests++;
		failures += type != NULL;
		free(name);
		strbuf_release(&line);
		strbuf_release(&body);
	}

	char host[256] = "localhost", stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	if (gethostname(host, sizeof host) != 0 || !host[0])
		strcpy(host, "localhost");
	host[sizeof host - 1] = 0;
	strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", gmtime_r(&now, &tm));
	strbuf_adds(&doc, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
	strbuf_addf(&doc, "  <testsuite package=\"heapdelta\" id=\"0\" name=\"heapdelta\" timestamp=\"%s\" hostname=\"", stamp);
	xml_escaped(&doc, host);
	strbuf_addf(&doc, "\" tests=\"%d\" failures=\"%d\" errors=\"0\" time=\"0\">\n    <properties/>\n", tests, failures);
	if (cases.buf)
		strbuf_adds(&doc, cases.buf);
	strbuf_adds(&doc, "    <system-out/>\n    <system-err/>\n  </testsuite>\n</testsuites>\n");
	fputs(doc.buf, out);
	strbuf_release(&cases);
	strbuf_release(&doc);
}

/* ---- SARIF ------------------------------------------------------------- */

static void sarif_location(struct json *j, const struct sym_frame *f)
{
	char p[PATH_MAX];

	json_object_begin(j);
	json_key(j, "physicalLocation");
	json_object_begin(j);
	json_key(j, "artifactLocation");
	json_object_begin(j);
	if (f->file) {
		const char *d = display_path(f->file, p, sizeof p);
		char *uri = d[0] == '/' ? xasprintf("file://%s", d) : NULL;
		json_kv_string(j, "uri", uri ? uri : d);
		free(uri);
		json_object_end(j);
		json_key(j, "region");
		json_object_begin(j);
		json_kv_int(j, "startLine", f->line > 0 ? f->line : 1);
		json_object_end(j);
	} else {
		json_kv_string(j, "uri", f->module);
		json_object_end(j);
	}
	json_object_end(j);
	json_key(j, "logicalLocations");
	json_array_begin(j);
	json_object_begin(j);
	json_kv_string(j, "fullyQualifiedName", f->function);
	json_kv_string(j, "kind", "function");
	json_object_end(j);
	json_array_end(j);
	json_object_end(j);
}

static void sarif_message(struct json *j, const char *text)
{
	json_key(j, "message");
	json_object_begin(j);
	json_kv_string(j, "text", text);
	json_object_end(j);
}

static void sarif_fingerprint(struct json *j, const char *fp)
{
	json_key(j, "partialFingerprints");
	json_object_begin(j);
	json_kv_string(j, "heapdeltaStack/v1", fp);
	json_object_end(j);
}

static void sarif_rule(struct json *j, const char *id, const char *name, const char *text)
{
	json_break(j, 2);
	json_object_begin(j);
	json_kv_string(j, "id", id);
	json_kv_string(j, "name", name);
	json_key(j, "shortDescription");
	json_object_begin(j);
	json_kv_string(j, "text", text);
	json_object_end(j);
	json_object_end(j);
}

/* The tool and its rules, up to the run's "results" key. */
static void sarif_head(struct json *j)
{
	json_object_begin(j);
	json_kv_string(j, "version", "2.1.0");
	json_kv_string(j, "$schema", "https://json.schemastore.org/sarif-2.1.0.json");
	json_break(j, 1);
	json_key(j, "runs");
	json_array_begin(j);
	json_object_begin(j);
	json_key(j, "tool");
	json_object_begin(j);
	json_key(j, "driver");
	json_object_begin(j);
	json_kv_string(j, "name", "heapdelta");
	json_kv_string(j, "version", "0.1");
	json_key(j, "rules");
	json_array_begin(j);
	sarif_rule(j, "heapdelta/not-freed", "MemoryNotFreedAtExit",
		   "Memory not freed at exit, over budget or new since the baseline");
	sarif_rule(j, "heapdelta/growth", "MemoryGrowth", "Memory that grew between snapshots over budget");
	sarif_rule(j, "heapdelta/peak", "PeakMemory", "Peak heap over budget");
	json_array_end(j);
	json_object_end(j);
	json_object_end(j);
	json_break(j, 2);
	json_key(j, "results");
}

static void sarif_site(struct json *j, const struct gate *g, const struct gate_site *s)
{
	static const char *const sarif_state[] = { NULL, "new", "updated", "unchanged", "absent" };
	int growth = gate_site_by_growth(s);
	struct strbuf line = STRBUF_INIT;

	site_line(&line, g, s);
	json_object_begin(j);
	json_kv_string(j, "ruleId", growth ? "heapdelta/growth" : "heapdelta/not-freed");
	json_kv_string(j, "level", s->fails ? "error" : "note");
	sarif_message(j, line.buf);
	json_key(j, "locations");
	json_array_begin(j);
	sarif_location(j, s->e->site);
	json_array_end(j);
	sarif_fingerprint(j, s->fp);
	if (s->base)
		json_kv_string(j, "baselineState", sarif_state[s->base]);
	json_key(j, "stacks");
	json_array_begin(j);
	json_object_begin(j);
	sarif_message(j, "allocated from");
	json_key(j, "frames");
	json_array_begin(j);
	for (int k = 0; k < s->e->tb.n; k++) {
		json_object_begin(j);
		json_key(j, "location");
		sarif_location(j, s->e->tb.frames[k]);
		json_kv_string(j, "module", s->e->tb.frames[k]->module);
		json_object_end(j);
	}
	json_array_end(j);
	json_object_end(j);
	json_array_end(j);
	json_key(j, "properties");
	json_object_begin(j);
	json_kv_string(j, "kind", snapshot_reach_kind_name(s->kind));
	json_kv_int(j, "bytes", s->size);
	json_kv_int(j, "allocations", s->count);
	json_kv_int(j, "growth", s->growth);
	json_object_end(j);
	json_object_end(j);
	strbuf_release(&line);
}

static void gate_sarif(FILE *out, const struct gate *g)
{
	struct json j;

	json_init(&j, out);
	sarif_head(&j);
	json_array_begin(&j);
	for (size_t i = 0; i < g->nsites; i++) {
		const struct gate_site *s = &g->sites[i];
		if (!s->fails && !(s->base && listed(g, s)))
			continue;
		json_break(&j, 3);
		sarif_site(&j, g, s);
	}
	for (size_t i = 0; i < g->ngone; i++) {
		char kind[64];
		char *msg = xasprintf("gone since the baseline: %s%s", g->gone[i].desc,
				      kind_suffix(g->gone[i].kind, kind, sizeof kind));
		json_break(&j, 3);
		json_object_begin(&j);
		json_kv_string(&j, "ruleId", "heapdelta/not-freed");
		json_kv_string(&j, "level", "none");
		json_kv_string(&j, "kind", "pass");
		sarif_message(&j, msg);
		sarif_fingerprint(&j, g->gone[i].fp);
		json_kv_string(&j, "baselineState", "absent");
		json_object_end(&j);
		free(msg);
	}
	if (g->fail_peak) {
		char a[32], b[32];
		char *msg = xasprintf("peak %s over budget %s", format_size(a, (double)g->peak, 0),
				      format_size(b, (double)g->o->max_peak, 0));
		json_break(&j, 3);
		json_object_begin(&j);
		json_kv_string(&j, "ruleId", "heapdelta/peak");
		json_kv_string(&j, "level", "error");
		sarif_message(&j, msg);
		json_object_end(&j);
		free(msg);
	}
	json_array_end(&j);   /* results */
	json_object_end(&j);  /* the run */
	json_array_end(&j);   /* runs */
	json_object_end(&j);
	json_end_line(&j);
}

/* ---- GitHub workflow commands ------------------------------------------ */

static void gh_escaped(FILE *out, const char *s, int property)
{
	for (; *s; s++) {
		if (*s == '%') fputs("%25", out);
		else if (*s == '\r') fputs("%0D", out);
		else if (*s == '\n') fputs("%0A", out);
		else if (property && *s == ':') fputs("%3A", out);
		else if (property && *s == ',') fputs("%2C", out);
		else fputc(*s, out);
	}
}

static void gate_github(FILE *out, const struct gate *g)
{
	char p[PATH_MAX];

	for (size_t i = 0; i < g->nsites; i++) {
		const struct gate_site *s = &g->sites[i];
		if (!s->fails)
			continue;
		struct strbuf line = STRBUF_INIT;
		site_line(&line, g, s);
		strbuf_addf(&line, " in %s", s->e->site->function);
		fputs("::error ", out);
		if (s->e->site->file) {
			fputs("file=", out);
			gh_escaped(out, display_path(s->e->site->file, p, sizeof p), 1);
			fprintf(out, ",line=%d,", s->e->site->line);
		}
		fputs("title=heapdelta::", out);
		gh_escaped(out, line.buf, 0);
		fputc('\n', out);
		strbuf_release(&line);
	}
	if (g->fail_peak) {
		char a[32], b[32];
		fprintf(out, "::error title=heapdelta::peak %s over budget %s\n", format_size(a, (double)g->peak, 0),
			format_size(b, (double)g->o->max_peak, 0));
	}
}

void write_gate(FILE *out, const struct gate *g)
{
	switch (g->o->format) {
	case GATE_TEXT:   gate_text(out, g); break;
	case GATE_JSON:   gate_json(out, g); break;
	case GATE_JUNIT:  gate_junit(out, g); break;
	case GATE_SARIF:  gate_sarif(out, g); break;
	case GATE_GITHUB: gate_github(out, g); break;
	}
}
