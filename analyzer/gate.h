/*
 * gate.h - heapdelta as a CI gate: what was not freed at exit and what grew,
 * by allocation stack, against budgets, a per-site baseline and
 * suppressions.  `heapdelta leaks`, `heapdelta check` and
 * `heapdelta run --check` all evaluate this model; write_gate.c writes it
 * as text, JSON, JUnit, SARIF or GitHub annotations.
 */
#ifndef HD_GATE_H
#define HD_GATE_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include "group.h"
#include "site.h"
#include "suppress.h"

enum gate_format { GATE_TEXT, GATE_JSON, GATE_JUNIT, GATE_SARIF, GATE_GITHUB };

enum base_state { BASE_NONE, BASE_NEW, BASE_GREW, BASE_UNCHANGED, BASE_GONE };

/* Why a site fails. */
enum {
	FAIL_LEAKED      = 1 << 0,  /* part of a total not freed at exit over --max-leaked */
	FAIL_GROWTH      = 1 << 1,  /* part of a total growth over --max-growth */
	FAIL_SITE_GROWTH = 1 << 2,  /* grew more than --max-growth-per-site */
	FAIL_BASELINE    = 1 << 3,  /* new, or grew past its baselined value */
};

struct gate_opts {
	int64_t max_leaked, max_growth, max_site_growth, max_peak;   /* -1: no budget */
	const char *baseline, *write_baseline;
	int64_t slack;                 /* baseline slack in bytes */
	int baseline_lines;            /* fingerprints include line numbers */
	struct suppressions supp;
	int print_supp, gen_supp;
	enum gate_format format;
	const char *output;            /* NULL: standard output (or stderr, below) */
	int to_stderr;                 /* run --check: the program owns stdout */
	int leaks_only;                /* `heapdelta leaks`: report, never gate */
};

struct gate_site {
	const struct stat_entry *e;    /* e->size/count: at the last snapshot; old_*: the first */
	char fp[SITE_FP_SIZE];         /* site_fingerprint() */
	struct suppression *supp;
	int64_t growth, growth_count;
	int fails;                     /* FAIL_* */
	enum base_state base;
	int64_t base_bytes, base_count;
};

struct gate {
	struct gate_opts *o;
	struct gate_site *sites;       /* sorted: not freed bytes, largest first */
	size_t nsites;
	/* Baseline entries with no site now ("gone"). */
	struct { char fp[SITE_FP_SIZE]; char *desc; int64_t bytes, count; } *gone;
	size_t ngone;
	int64_t leaked, leaked_count;  /* unsuppressed, at the last snapshots */
	int64_t growth, growth_count;
	int64_t suppressed, suppressed_count;
	uint64_t peak;
	int has_growth;                /* first and last snapshots differ */
	int at_exit;                   /* every last snapshot is an exit snapshot */
	int fail_leaked, fail_growth, fail_peak;
	size_t nfailing;
	int64_t failing_bytes, failing_count;
	int nprocs;
	/* Releases by the wrong family, from each process's last snapshot. */
	uint64_t mismatched_frees;
	struct gate_mismatch *mismatches;
	size_t nmismatches;
};

/* One kept mismatched release, symbolized. */
struct gate_mismatch {
	const char *allocated_with, *released_with;   /* "malloc", "operator new", ... */
	uint64_t size;
	struct gate_frames { const struct sym_frame **v; int n; } released_at, allocated_at;
};

/* Options shared by check, leaks and run --check (cmd_check.c). */
enum {
	GATE_OPT_MAX_LEAKED = 512, GATE_OPT_MAX_GROWTH, GATE_OPT_MAX_SITE_GROWTH, GATE_OPT_MAX_PEAK,
	GATE_OPT_SUPPRESSIONS, GATE_OPT_PRINT_SUPP, GATE_OPT_GEN_SUPP, GATE_OPT_BASELINE,
	GATE_OPT_WRITE_BASELINE, GATE_OPT_SLACK, GATE_OPT_LINES, GATE_OPT_FORMAT, GATE_OPT_OUTPUT,
};
extern const struct option gate_options[];   /* terminated by a NULL name */
void gate_opts_init(struct gate_opts *o);
/* Apply option c (GATE_OPT_*) with its argument; 0 or EXIT_USAGE (2). */
int gate_option(const char *cmd, struct gate_opts *o, int c, const char *arg);
int gate_has_budget(const struct gate_opts *o);

/* Load snapshots (files, or directories of *.snap), evaluate everything.
 * Returns 0, 1 (over budget) or 2 (unreadable input; message printed),
 * after writing the report. */
int gate_run(struct gate_opts *o, char **paths, int npaths);

#endif /* HD_GATE_H */
