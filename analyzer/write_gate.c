/*
 * write_gate.c - the gate model (leaks, check, run --check) as text, JSON,
 * JUnit XML, SARIF 2.1.0 or GitHub workflow commands.
 */
#include "write.h"
#include "util.h"

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

static void frames_text(struct strbuf *sb, const struct sym_frame *const *v, int n)
{
	for (int i = 0; i < n; i++) {
		const struct sym_frame *f = v[i];
		strbuf_addf(sb, "    #%d 0x%" PRIx64 " in %s", i, f->address, f->function);
		if (f->file)
			strbuf_addf(sb, " %s:%d", f->file, f->line);
		else
			strbuf_addf(sb, " (%s+0x%" PRIx64 ")", f->module, f->offset);
		strbuf_adds(sb, f->inlined ? " (inlined)\n" : "\n");
	}
}

static void stack_text(struct strbuf *sb, const struct gate_site *s)
{
	frames_text(sb, (const struct sym_frame *const *)s->e->tb.frames, s->e->tb.n);
}

/* valgrind's "Mismatched free() / delete / delete []", each with the
 * releasing stack, then the allocating one. */
static void mismatches_text(struct strbuf *sb, const struct gate *g)
{
	for (size_t i = 0; i < g->nmismatches; i++) {
		const struct gate_mismatch *m = &g->mismatches[i];
		strbuf_addf(sb, "Mismatched release: %s of %" PRIu64 " bytes from %s, released at:\n", m->released_with,
			    m->size, m->allocated_with);
		frames_text(sb, m->released_at.v, m->released_at.n);
		strbuf_adds(sb, "  allocated at:\n");
		frames_text(sb, m->allocated_at.v, m->allocated_at.n);
		strbuf_adds(sb, "\n");
	}
	if (g->mismatched_frees > g->nmismatches)
		strbuf_addf(sb, "(%" PRIu64 " mismatched releases in all; the first %zu are shown)\n\n",
			    g->mismatched_frees, g->nmismatches);
}

/* "1000 bytes in 10 allocations not freed at exit" and its variants. */
static void site_line(struct strbuf *sb, const struct gate *g, const struct gate_site *s)
{
	int growth = (s->fails & (FAIL_GROWTH | FAIL_SITE_GROWTH)) && !(s->fails & (FAIL_LEAKED | FAIL_BASELINE));

	if (growth)
		strbuf_addf(sb, "%+" PRId64 " bytes in %+" PRId64 " allocations since the first snapshot",
			    s->growth, s->growth_count);
	else
		strbuf_addf(sb, "%" PRId64 " bytes in %" PRId64 " allocations %s", s->e->size, s->e->count,
			    g->at_exit ? "not freed at exit" : "still allocated at the last snapshot");
	if (s->base == BASE_NEW)
		strbuf_adds(sb, " [new]");
	else if (s->base == BASE_GREW)
		strbuf_addf(sb, " [grew from %" PRId64 " bytes]", s->base_bytes);
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

/* Sites a report lists: every unsuppressed site with something to say.
 * A site of zero-byte blocks holds blocks: it is listed. */
static int listed(const struct gate *g, const struct gate_site *s)
{
	if (s->supp)
		return 0;
	if (g->o->leaks_only)
		return s->e->size > 0 || s->e->count > 0;
	return s->e->size > 0 || s->e->count > 0 || s->growth != 0 || s->growth_count != 0 || s->fails;
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

static void gate_text(FILE *out, const struct gate *g)
{
	const struct gate_opts *o = g->o;
	struct strbuf sb = STRBUF_INIT;
	char where[PATH_MAX + 256];

	for (size_t i = 0; i < g->nsites; i++) {
		const struct gate_site *s = &g->sites[i];
		if (!listed(g, s) || (!o->leaks_only && !s->fails))
			continue;
		site_line(&sb, g, s);
		strbuf_adds(&sb, ", allocated from:\n");
		stack_text(&sb, s);
		strbuf_adds(&sb, "\n");
	}
	if (o->leaks_only)
		mismatches_text(&sb, g);
	if (sb.buf)
		fputs(sb.buf, out);
	strbuf_release(&sb);
	if (o->leaks_only)
		return;
	budget_line(out, g->at_exit ? "not freed at exit" : "still allocated at the last snapshot",
		    g->leaked, o->max_leaked, 0);
	if (g->has_growth)
		budget_line(out, "growth since the first snapshot", g->growth, o->max_growth, 1);
	budget_line(out, "peak", (int64_t)g->peak, o->max_peak, 0);
	if (o->baseline) {
		for (size_t i = 0; i < g->nsites; i++) {
			const struct gate_site *s = &g->sites[i];
			if (!s->base)
				continue;
			fprintf(out, "baseline: %-9s %s: %" PRId64 " bytes in %" PRId64 " allocations (baseline %" PRId64
				" bytes) [%s]\n", base_names[s->base], site_where(s, where, sizeof where), s->e->size,
				s->e->count, s->base_bytes, s->fp);
		}
		for (size_t i = 0; i < g->ngone; i++)
			fprintf(out, "baseline: %-9s %s (baseline %" PRId64 " bytes) [%s]\n", "gone", g->gone[i].desc,
				g->gone[i].bytes, g->gone[i].fp);
	}
}

void write_gate_summary(FILE *out, const struct gate *g)
{
	char a[32], b[32];

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
		if (s->hits)
			fprintf(out, "%7" PRId64 " %10" PRId64 " leak:%s\n", s->hits, s->bytes, s->pattern);
	}
	fprintf(out, "-----------------------------------------------------\n");
}

void write_gate_gen_suppressions(FILE *out, const struct gate *g)
{
	for (size_t i = 0; i < g->nsites; i++) {
		const struct gate_site *s = &g->sites[i];
		if (!s->fails)
			continue;
		const struct sym_frame *f = s->e->site;
		if (strcmp(f->function, "??"))
			fprintf(out, "leak:%s\n", f->function);
		else
			fprintf(out, "leak:%s\n", f->module);
	}
}

/* ---- JSON -------------------------------------------------------------- */

static void json_budget(struct strbuf *sb, const char *name, int64_t v)
{
	if (v >= 0)
		strbuf_addf(sb, "\"%s\": %" PRId64, name, v);
	else
		strbuf_addf(sb, "\"%s\": null", name);
}

static void frames_json(struct strbuf *sb, const struct sym_frame *const *v, int n)
{
	strbuf_adds(sb, "[");
	for (int k = 0; k < n; k++) {
		const struct sym_frame *f = v[k];
		strbuf_adds(sb, k ? ", {\"function\": " : "{\"function\": ");
		strbuf_add_json(sb, f->function);
		strbuf_adds(sb, ", \"file\": ");
		if (f->file)
			strbuf_add_json(sb, f->file);
		else
			strbuf_adds(sb, "null");
		strbuf_addf(sb, ", \"line\": %d, \"module\": ", f->line);
		strbuf_add_json(sb, f->module);
		strbuf_addf(sb, ", \"inlined\": %s}", f->inlined ? "true" : "false");
	}
	strbuf_adds(sb, "]");
}

static void gate_json(FILE *out, const struct gate *g)
{
	const struct gate_opts *o = g->o;
	struct strbuf sb = STRBUF_INIT;
	int first = 1;

	strbuf_addf(&sb, "{\"processes\": %d, \"at_exit\": %s, \"failed\": %s,\n", g->nprocs, g->at_exit ? "true" : "false",
		    !o->leaks_only && (g->nfailing || g->fail_leaked || g->fail_growth || g->fail_peak) ? "true" : "false");
	strbuf_addf(&sb, " \"leaked\": {\"size\": %" PRId64 ", \"count\": %" PRId64 "},\n", g->leaked, g->leaked_count);
	if (g->has_growth)
		strbuf_addf(&sb, " \"growth\": {\"size\": %" PRId64 ", \"count\": %" PRId64 "},\n", g->growth, g->growth_count);
	else
		strbuf_adds(&sb, " \"growth\": null,\n");
	strbuf_addf(&sb, " \"peak\": %" PRIu64 ",\n \"suppressed\": {\"size\": %" PRId64 ", \"count\": %" PRId64 "},\n",
		    g->peak, g->suppressed, g->suppressed_count);
	strbuf_adds(&sb, " \"budgets\": {");
	json_budget(&sb, "max_leaked", o->max_leaked);
	strbuf_adds(&sb, ", ");
	json_budget(&sb, "max_growth", o->max_growth);
	strbuf_adds(&sb, ", ");
	json_budget(&sb, "max_growth_per_site", o->max_site_growth);
	strbuf_adds(&sb, ", ");
	json_budget(&sb, "max_peak", o->max_peak);
	strbuf_adds(&sb, "},\n \"sites\": [");
	for (size_t i = 0; i < g->nsites; i++) {
		const struct gate_site *s = &g->sites[i];
		if (!s->supp && !listed(g, s))
			continue;
		strbuf_adds(&sb, first ? "\n  {" : ",\n  {");
		first = 0;
		strbuf_addf(&sb, "\"fingerprint\": \"%s\", \"size\": %" PRId64 ", \"count\": %" PRId64 ", \"growth\": %" PRId64
			    ", \"growth_count\": %" PRId64 ", \"suppressed_by\": ", s->fp, s->e->size, s->e->count,
			    s->growth, s->growth_count);
		if (s->supp)
			strbuf_add_json(&sb, s->supp->pattern);
		else
			strbuf_adds(&sb, "null");
		strbuf_adds(&sb, ", \"baseline\": ");
		if (s->base)
			strbuf_addf(&sb, "\"%s\", \"baseline_size\": %" PRId64, base_names[s->base], s->base_bytes);
		else
			strbuf_adds(&sb, "null");
		strbuf_addf(&sb, ", \"fails\": [%s%s%s%s]", s->fails & FAIL_LEAKED ? "\"leaked\"," : "",
			    s->fails & FAIL_GROWTH ? "\"growth\"," : "", s->fails & FAIL_SITE_GROWTH ? "\"site-growth\"," : "",
			    s->fails & FAIL_BASELINE ? "\"baseline\"," : "");
		if (sb.buf[sb.len - 2] == ',') {   /* drop the trailing comma inside [] */
			sb.buf[sb.len - 2] = ']';
			sb.buf[--sb.len] = 0;
		}
		strbuf_adds(&sb, ", \"traceback\": ");
		frames_json(&sb, (const struct sym_frame *const *)s->e->tb.frames, s->e->tb.n);
		strbuf_adds(&sb, "}");
	}
	strbuf_adds(&sb, "],\n \"gone\": [");
	for (size_t i = 0; i < g->ngone; i++) {
		strbuf_addf(&sb, "%s{\"fingerprint\": \"%s\", \"baseline_size\": %" PRId64 ", \"site\": ", i ? ", " : "",
			    g->gone[i].fp, g->gone[i].bytes);
		strbuf_add_json(&sb, g->gone[i].desc);
		strbuf_adds(&sb, "}");
	}
	strbuf_addf(&sb, "],\n \"mismatched_frees\": %" PRIu64 ",\n \"mismatches\": [", g->mismatched_frees);
	for (size_t i = 0; i < g->nmismatches; i++) {
		const struct gate_mismatch *m = &g->mismatches[i];
		strbuf_addf(&sb, "%s{\"released_with\": \"%s\", \"allocated_with\": \"%s\", \"size\": %" PRIu64
			    ", \"released_at\": ", i ? ",\n  " : "\n  ", m->released_with, m->allocated_with, m->size);
		frames_json(&sb, m->released_at.v, m->released_at.n);
		strbuf_adds(&sb, ", \"allocated_at\": ");
		frames_json(&sb, m->allocated_at.v, m->allocated_at.n);
		strbuf_adds(&sb, "}");
	}
	strbuf_adds(&sb, "]}\n");
	fputs(sb.buf, out);
	strbuf_release(&sb);
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
		strbuf_addf(&body, "%s, allocated from:\n", line.buf);
		stack_text(&body, s);
		char *name = xasprintf("%s [%s]", site_where(s, where, sizeof where), s->fp);
		const char *type = s->fails & FAIL_BASELINE ? (s->base == BASE_NEW ? "baseline-new" : "baseline-grew")
				 : s->fails & FAIL_SITE_GROWTH ? "max-growth-per-site"
				 : s->fails & FAIL_GROWTH ? "max-growth"
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

static void sarif_location(struct strbuf *sb, const struct sym_frame *f)
{
	char p[PATH_MAX];

	strbuf_adds(sb, "{\"physicalLocation\": {\"artifactLocation\": {\"uri\": ");
	if (f->file) {
		const char *d = display_path(f->file, p, sizeof p);
		if (d[0] == '/') {
			char *uri = xasprintf("file://%s", d);
			strbuf_add_json(sb, uri);
			free(uri);
		} else {
			strbuf_add_json(sb, d);
		}
		strbuf_addf(sb, "}, \"region\": {\"startLine\": %d}}", f->line > 0 ? f->line : 1);
	} else {
		strbuf_add_json(sb, f->module);
		strbuf_adds(sb, "}}");
	}
	strbuf_adds(sb, ", \"logicalLocations\": [{\"fullyQualifiedName\": ");
	strbuf_add_json(sb, f->function);
	strbuf_adds(sb, ", \"kind\": \"function\"}]}");
}

static void gate_sarif(FILE *out, const struct gate *g)
{
	struct strbuf sb = STRBUF_INIT;
	int first = 1;

	strbuf_adds(&sb, "{\"version\": \"2.1.0\", \"$schema\": \"https://json.schemastore.org/sarif-2.1.0.json\",\n"
		    " \"runs\": [{\"tool\": {\"driver\": {\"name\": \"heapdelta\", \"version\": \"0.1\", \"rules\": [\n"
		    "  {\"id\": \"heapdelta/not-freed\", \"name\": \"MemoryNotFreedAtExit\", \"shortDescription\": "
		    "{\"text\": \"Memory not freed at exit, over budget or new since the baseline\"}},\n"
		    "  {\"id\": \"heapdelta/growth\", \"name\": \"MemoryGrowth\", \"shortDescription\": "
		    "{\"text\": \"Memory that grew between snapshots over budget\"}},\n"
		    "  {\"id\": \"heapdelta/peak\", \"name\": \"PeakMemory\", \"shortDescription\": "
		    "{\"text\": \"Peak heap over budget\"}}]}},\n"
		    "  \"results\": [");
	for (size_t i = 0; i < g->nsites; i++) {
		const struct gate_site *s = &g->sites[i];
		if (!s->fails && !(s->base && listed(g, s)))
			continue;
		struct strbuf line = STRBUF_INIT;
		site_line(&line, g, s);
		int growth = (s->fails & (FAIL_GROWTH | FAIL_SITE_GROWTH)) && !(s->fails & (FAIL_LEAKED | FAIL_BASELINE));
		strbuf_adds(&sb, first ? "\n   {" : ",\n   {");
		first = 0;
		strbuf_addf(&sb, "\"ruleId\": \"%s\", \"level\": \"%s\", \"message\": {\"text\": ",
			    growth ? "heapdelta/growth" : "heapdelta/not-freed", s->fails ? "error" : "note");
		strbuf_add_json(&sb, line.buf);
		strbuf_adds(&sb, "}, \"locations\": [");
		sarif_location(&sb, s->e->site);
		strbuf_addf(&sb, "], \"partialFingerprints\": {\"heapdeltaStack/v1\": \"%s\"}", s->fp);
		if (s->base) {
			static const char *const sarif_state[] = { NULL, "new", "updated", "unchanged", "absent" };
			strbuf_addf(&sb, ", \"baselineState\": \"%s\"", sarif_state[s->base]);
		}
		strbuf_adds(&sb, ", \"stacks\": [{\"message\": {\"text\": \"allocated from\"}, \"frames\": [");
		for (int k = 0; k < s->e->tb.n; k++) {
			const struct sym_frame *f = s->e->tb.frames[k];
			strbuf_adds(&sb, k ? ", {\"location\": " : "{\"location\": ");
			sarif_location(&sb, f);
			strbuf_adds(&sb, ", \"module\": ");
			strbuf_add_json(&sb, f->module);
			strbuf_adds(&sb, "}");
		}
		strbuf_addf(&sb, "]}], \"properties\": {\"bytes\": %" PRId64 ", \"allocations\": %" PRId64
			    ", \"growth\": %" PRId64 "}}", s->e->size, s->e->count, s->growth);
		strbuf_release(&line);
	}
	for (size_t i = 0; i < g->ngone; i++) {
		strbuf_adds(&sb, first ? "\n   {" : ",\n   {");
		first = 0;
		strbuf_adds(&sb, "\"ruleId\": \"heapdelta/not-freed\", \"level\": \"none\", \"kind\": \"pass\", \"message\": {\"text\": ");
		char *msg = xasprintf("gone since the baseline: %s", g->gone[i].desc);
		strbuf_add_json(&sb, msg);
		free(msg);
		strbuf_addf(&sb, "}, \"partialFingerprints\": {\"heapdeltaStack/v1\": \"%s\"}, \"baselineState\": \"absent\"}",
			    g->gone[i].fp);
	}
	if (g->fail_peak) {
		char a[32], b[32];
		char *msg = xasprintf("peak %s over budget %s", format_size(a, (double)g->peak, 0),
				      format_size(b, (double)g->o->max_peak, 0));
		strbuf_adds(&sb, first ? "\n   {" : ",\n   {");
		strbuf_adds(&sb, "\"ruleId\": \"heapdelta/peak\", \"level\": \"error\", \"message\": {\"text\": ");
		strbuf_add_json(&sb, msg);
		strbuf_adds(&sb, "}}");
		free(msg);
	}
	strbuf_adds(&sb, "]}]}\n");
	fputs(sb.buf, out);
	strbuf_release(&sb);
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
