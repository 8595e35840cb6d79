/*
 * write.h - the writers: every output the analyzer formats, one file per
 * family, each written from a model and nothing else (so two formats of
 * one model cannot disagree).  Sectioned by the file that defines each
 * group.  JSON is written through json.h, never by hand.
 */
#ifndef HD_WRITE_H
#define HD_WRITE_H

#include <stddef.h>
#include <stdio.h>

#include "gate.h"
#include "json.h"
#include "snapshot.h"
#include "stats.h"
#include "trend.h"

/* ---- write_stats.c: top and diff as tracemalloc's text, or JSON --------- */

void write_stats_text(FILE *out, const struct stats *r);
void write_stats_json(FILE *out, const struct stats *r);
/* The marker of a wrapper's frame in a text traceback. */
#define WRAPPER_MARK "(allocation wrapper)"
/* The wrapper hint's line ("Hint: ... --alloc-fn 'NAME' ..."), nothing when
 * there is none; every text report that chooses sites ends with it. */
void write_hint_line(FILE *out, const struct wrapper_hint *h);
/* "wrapper_hint": null, or the function, its bytes, its callers and the
 * --alloc-fn expression that would look through it. */
void write_hint_json(struct json *j, const struct wrapper_hint *h);

/* ---- write_collapsed.c: folded stacks ----------------------------------- */

/* "root;...;site BYTES" per entry (one per stack: the caller groups by
 * traceback); for a diff "root;...;site OLD NEW", the two-column form
 * differential flame graphs take (flamegraph.pl, inferno, speedscope). */
void write_collapsed(FILE *out, const struct stats *r);

/* ---- write_pprof.c: pprof's profile.proto, gzipped ---------------------- */

/* A profile of r->cur.snap with sample types alloc_objects, alloc_space,
 * inuse_objects, inuse_space, one sample per entry.  0, or -1 after an
 * error line. */
int write_pprof(FILE *out, const struct stats *r);

/* ---- write_gate.c: leaks and check ---------------------------------------- */

/* The gate in g->o->format: text, JSON, JUnit XML, SARIF 2.1.0 or GitHub
 * workflow commands. */
void write_gate(FILE *out, const struct gate *g);
/* The SUMMARY line that ends the text. */
void write_gate_summary(FILE *out, const struct gate *g);
/* --print-suppressions: which suppressions matched, and how much. */
void write_gate_suppressions_used(FILE *out, const struct gate *g);
/* --gen-suppressions: a leak: line for each failing site. */
void write_gate_gen_suppressions(FILE *out, const struct gate *g);

/* ---- write_trend.c: trend ------------------------------------------------ */

/* The first `limit` sites (0: all) of tr, ranked, and its teardown. */
void write_trend_text(FILE *out, const struct trend *tr, size_t limit);
void write_trend_json(FILE *out, const struct trend *tr, size_t limit);
/* "teardown": the snapshots a clean shutdown took apart (trend.h), or null;
 * in trend's JSON and the HTML report's data. */
void write_trend_teardown_json(struct json *j, const struct trend *tr);
/* A frame of `heapdelta watch` on dir: the process, its heap and RSS now
 * with sparklines, then the first `limit` sites as write_trend_text()
 * prints them.  Plain text, one line per '\n'. */
void write_watch_text(FILE *out, const struct trend *tr, size_t limit, const char *dir);

/* ---- write_html.c: report ----------------------------------------------- */

/* The HTML page of tr at path (written to a temporary file, then renamed
 * into place).  The flame graphs group tr->first and tr->end (a trend
 * built with keep) by traceback with g's filters, symbolized by sym.  0, or
 * -1 after an error line. */
int write_html(const char *path, struct trend *tr, const struct group_opts *g, struct symbolizer *sym);

/* ---- write_debuginfo.c: what a report lacks for file and line ----------- */

/* The bytes a report shows, by why their site frames have no file and line
 * (sym_frame.lacks) and module.  Zeroed to start. */
struct debuginfo_tally {
	int64_t shown, lacking;        /* bytes of the entries shown; of those without file and line */
	size_t entries, lacking_entries;
	struct debuginfo_module {
		const char *module;        /* the frame's, owned by the symbolizer */
		enum sym_lack why;
		int64_t bytes;
	} *mods;
	size_t nmods;
};

/* Count an entry shown with site frame `site` and `bytes` (its absolute
 * value: a diff counts what changed). */
void debuginfo_tally_add(struct debuginfo_tally *t, const struct sym_frame *site, int64_t bytes);
/* "No file and line for N% of the bytes shown, in MODULE (why), ...: what
 * would help", one line ("heapdelta: " before it on stderr); nothing when
 * every site shown has file and line.  Sorts t's modules. */
void write_debuginfo_line(FILE *out, struct debuginfo_tally *t);
void debuginfo_tally_release(struct debuginfo_tally *t);
/* "missing_debug_info": null, or the bytes lacking file and line ("size")
 * of those shown ("of"), the sites, and per module, largest first, its
 * bytes and what it lacks: "debug_info", "file" (none with its build-id)
 * or "lines".  Sorts t's modules. */
void write_debuginfo_json(struct json *j, struct debuginfo_tally *t);
/* The line for the first `limit` sites of tr (0: all), by their size at
 * the end of its steady state, as write_trend_text() shows them. */
void write_trend_debuginfo_line(FILE *out, const struct trend *tr, size_t limit);

/* ---- write_info.c: info ------------------------------------------------- */

void write_info_text(FILE *out, const struct snapshot *s);
/* JSON: an array of snapshots written as they are read, so what was read
 * before an unreadable file is out: begin, one call per snapshot, end. */
void write_info_json_begin(struct json *j, FILE *out);
void write_info_json(struct json *j, const struct snapshot *s);
void write_info_json_end(struct json *j);

#endif /* HD_WRITE_H */
