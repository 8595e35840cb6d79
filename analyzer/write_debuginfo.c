/*
 * write_debuginfo.c - the line under a text report that says how much of
 * what it shows has no file and line, in which modules and why, and what
 * would give them: debug packages, debuginfod, --debug-dir for missing
 * debug information; --sysroot, --map-path, --debug-dir for binaries not
 * found.  A report whose sites all have their lines gets no line.
 */
#include "util.h"
#include "write.h"

#include <stdlib.h>
#include <string.h>

#define MODULES_NAMED 3

void debuginfo_tally_add(struct debuginfo_tally *t, const struct sym_frame *site, int64_t bytes)
{
	if (!site)
		return;
	if (bytes < 0)
		bytes = -bytes;
	t->shown += bytes;
	t->entries++;
	if (site->file || site->lacks == SYM_LACKS_NOTHING)
		return;
	t->lacking += bytes;
	t->lacking_entries++;
	for (size_t i = 0; i < t->nmods; i++)
		if (t->mods[i].why == site->lacks && !strcmp(t->mods[i].module, site->module)) {
			t->mods[i].bytes += bytes;
			return;
		}
	t->mods = xrealloc(t->mods, (t->nmods + 1) * sizeof *t->mods);
	t->mods[t->nmods++] = (struct debuginfo_module){ site->module, site->lacks, bytes };
}

void debuginfo_tally_release(struct debuginfo_tally *t)
{
	free(t->mods);
	memset(t, 0, sizeof *t);
}

static int by_bytes(const void *a, const void *b)
{
	const struct debuginfo_module *x = a, *y = b;

	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	return strcmp(x->module, y->module);
}

static const char *why_text(enum sym_lack why)
{
	switch (why) {
	case SYM_LACKS_LINES: return "no line information there";
	case SYM_LACKS_DEBUG_INFO: return "no debug information";
	case SYM_LACKS_MODULE: return "no file with its build-id";
	case SYM_LACKS_NOTHING: break;
	}
	return "";
}

void write_debuginfo_line(FILE *out, struct debuginfo_tally *t)
{
	struct strbuf sb = STRBUF_INIT;
	int lacks[SYM_LACKS_MODULE + 1] = { 0 };

	if (!t->lacking_entries)
		return;
	qsort(t->mods, t->nmods, sizeof *t->mods, by_bytes);
	for (size_t i = 0; i < t->nmods; i++)
		lacks[t->mods[i].why] = 1;
	if (t->shown > 0) {
		int pct = (int)(100 * (double)t->lacking / (double)t->shown);
		if (pct == 0)
			strbuf_adds(&sb, "No file and line for less than 1% of the bytes shown, in ");
		else
			strbuf_addf(&sb, "No file and line for %d%% of the bytes shown, in ", pct);
	} else {
		strbuf_addf(&sb, "No file and line for %zu of the %zu sites shown, in ", t->lacking_entries, t->entries);
	}
	for (size_t i = 0; i < t->nmods && i < MODULES_NAMED; i++) {
		if (i)
			strbuf_adds(&sb, i + 1 == t->nmods ? " and " : ", ");
		strbuf_addf(&sb, "%s (%s)", t->mods[i].module, why_text(t->mods[i].why));
	}
	if (t->nmods > MODULES_NAMED)
		strbuf_addf(&sb, " and %zu more modules", t->nmods - MODULES_NAMED);
	const char *sep = ": ";
	if (lacks[SYM_LACKS_DEBUG_INFO]) {
		strbuf_addf(&sb, "%sinstall the distro's debug packages, set DEBUGINFOD_URLS or give --debug-dir DIR", sep);
		sep = "; ";
	}
	if (lacks[SYM_LACKS_MODULE]) {
		strbuf_addf(&sb, "%sgive --sysroot DIR, --map-path OLD=NEW or --debug-dir DIR where the snapshot's files are",
			    sep);
		sep = "; ";
	}
	if (lacks[SYM_LACKS_LINES])
		strbuf_addf(&sb, "%sbuild that code with -g", sep);
	fprintf(out, "%s%s\n", out == stderr ? "heapdelta: " : "", sb.buf);
	strbuf_release(&sb);
}

void write_trend_debuginfo_line(FILE *out, const struct trend *tr, size_t limit)
{
	size_t shown = limit && limit < tr->nsites ? limit : tr->nsites;
	struct debuginfo_tally t = { 0 };

	for (size_t i = 0; i < shown && tr->steady > 0; i++) {
		const struct series *s = tr->sites[i].s;
		debuginfo_tally_add(&t, s->site, s->bytes[tr->steady - 1]);
	}
	write_debuginfo_line(out, &t);
	debuginfo_tally_release(&t);
}

void write_debuginfo_json(struct json *j, struct debuginfo_tally *t)
{
	static const char *const lacks[] = { NULL, "lines", "debug_info", "file" };

	json_key(j, "missing_debug_info");
	if (!t->lacking_entries) {
		json_null(j);
		return;
	}
	qsort(t->mods, t->nmods, sizeof *t->mods, by_bytes);
	json_object_begin(j);
	json_kv_int(j, "size", t->lacking);
	json_kv_int(j, "of", t->shown);
	json_kv_uint(j, "sites", t->lacking_entries);
	json_key(j, "modules");
	json_array_begin(j);
	for (size_t i = 0; i < t->nmods; i++) {
		json_object_begin(j);
		json_kv_string(j, "module", t->mods[i].module);
		json_kv_string(j, "lacks", lacks[t->mods[i].why]);
		json_kv_int(j, "size", t->mods[i].bytes);
		json_object_end(j);
	}
	json_array_end(j);
	json_object_end(j);
}
