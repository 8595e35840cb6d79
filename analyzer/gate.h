/*
 * gate.h - heapdelta as a CI gate: what was not freed at exit and what grew,
 * by allocation stack, against budgets, a per-site baseline and
 * suppressions.  `heapdelta leaks`, `heapdelta check` and
 * `heapdelta run --check` all evaluate this model (cmd_check.c);
 * write_gate.c writes it as text, JSON, JUnit, SARIF or GitHub annotations.
 * Sectioned by the file that defines each group.
 */
#ifndef HD_GATE_H
#define HD_GATE_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include "alloc_fns.h"
#include "group.h"
#include "site.h"
#include "suppress.h"

/* ---- gate_opts.c: the options check, leaks and run --check share -------- */

enum gate_format { GATE_TEXT, GATE_JSON, GATE_JUNIT, GATE_SARIF, GATE_GITHUB };

struct gate_opts {
	int64_t max_leaked, max_growth, max_site_growth, max_peak;   /* -1: no budget */
	int64_t max_lost;              /* definitely and indirectly lost; -1: no budget */
	unsigned show_kinds;           /* leaks: bit k lists entries of kind k
					* (enum hd_reach_kind); unclassified
					* entries are always listed */
	const char *baseline, *write_baseline;
	int64_t slack;                 /* baseline slack in bytes */
	int baseline_lines;            /* fingerprints include line numbers */
	struct suppressions supp;
	int print_supp, gen_supp;
	enum gate_format format;
	const char *output;            /* NULL: standard output (or stderr, below) */
	int to_stderr;                 /* run --check: the program owns stdout */
	int leaks_only;                /* `heapdelta leaks`: report, never gate */
	struct alloc_fns alloc_fns;    /* wrappers sites look through */
};

/* getopt_long values of the gate's options: above every command's own
 * (which start at 256), so a command can tell them apart. */
enum {
	GATE_OPT_MAX_LEAKED = 512, GATE_OPT_MAX_GROWTH, GATE_OPT_MAX_SITE_GROWTH, GATE_OPT_MAX_PEAK,
	GATE_OPT_SUPPRESSIONS, GATE_OPT_PRINT_SUPP, GATE_OPT_GEN_SUPP, GATE_OPT_BASELINE,
	GATE_OPT_WRITE_BASELINE, GATE_OPT_SLACK, GATE_OPT_LINES, GATE_OPT_FORMAT, GATE_OPT_OUTPUT,
	GATE_OPT_MAX_LOST, GATE_OPT_SHOW_KINDS,
};
/* The gate's long options, with alloc_fns_options[] (ALLOC_OPT_*) and
 * symbolize_options[] (SYM_OPT_*), terminated by a NULL name. */
extern const struct option gate_options[];
/* A command's own options (terminated by a NULL name) followed by the
 * gate's, terminated; the array is the caller's to free. */
struct option *gate_options_with(const struct option *own);

void gate_opts_init(struct gate_opts *o);
/* Free the suppressions and allocation functions o loaded. */
void gate_opts_release(struct gate_opts *o);
/* Apply option c (GATE_OPT_*, ALLOC_OPT_* or SYM_OPT_*) with its
 * argument: 0, or -1 after a usage message for command cmd (bad size,
 * unreadable suppression file, invalid regular expression, not a
 * directory, --show-kinds other than for leaks). */
int gate_option(const char *cmd, struct gate_opts *o, int c, const char *arg);
/* Whether o has anything to gate on (a budget or a baseline). */
int gate_has_budget(const struct gate_opts *o);

/* ---- gate.c: the model ---------------------------------------------------- */

enum gate_verdict { GATE_PASS, GATE_FAIL, GATE_ERROR };

enum base_state { BASE_NONE, BASE_NEW, BASE_GREW, BASE_UNCHANGED, BASE_GONE };

/* Why a site fails. */
enum {
	FAIL_LEAKED      = 1 << 0,  /* part of a total not freed at exit over --max-leaked */
	FAIL_GROWTH      = 1 << 1,  /* part of a total growth over --max-growth */
	FAIL_SITE_GROWTH = 1 << 2,  /* grew more than --max-growth-per-site */
	FAIL_BASELINE    = 1 << 3,  /* new, or grew past its baselined value */
	FAIL_LOST        = 1 << 4,  /* part of a total definitely or indirectly lost over --max-lost */
};

/*
 * An entry: a site's blocks of one kind (enum hd_reach_kind, from the REACH
 * of its process's last snapshot), or GROUP_UNCLASSIFIED for the blocks of
 * snapshots that were not classified, as valgrind's loss records.  A site
 * has one entry per kind it holds blocks of, and always at least one; a
 * site of snapshots without reachability has exactly one, holding all its
 * blocks.  Growth (from an older snapshot, which has no kinds) is the
 * site's, and is carried by its first entry (head).
 */
struct gate_site {
	const struct stat_entry *e;    /* the site: e->size/count, all its kinds at the last
					* snapshot; old_*: the first */
	size_t site;                   /* index of the site, shared by its entries */
	int kind;                      /* enum hd_reach_kind, or GROUP_UNCLASSIFIED */
	int64_t size, count;           /* this entry's blocks at the last snapshot */
	int head;                      /* the site's first entry */
	char fp[SITE_FP_SIZE];         /* site_fingerprint() */
	struct suppression *supp;
	int64_t growth, growth_count;  /* the site's on its head, 0 on the others */
	int fails;                     /* FAIL_* */
	enum base_state base;
	int64_t base_bytes, base_count;
};

/* Whether s is reported by its growth: it fails on a growth budget alone. */
int gate_site_by_growth(const struct gate_site *s);

/* A baseline entry with no site now ("gone"). */
struct gate_gone {
	char fp[SITE_FP_SIZE];
	int kind;                      /* enum hd_reach_kind, or BASELINE_ANY_KIND */
	char *desc;
	int64_t bytes, count;
};

/* The return addresses of a stack, symbolized (site_symbolize()). */
struct gate_frames { const struct sym_frame **v; int n; };

/* One kept mismatched release, symbolized. */
struct gate_mismatch {
	const char *allocated_with, *released_with;   /* "malloc", "operator new", ... */
	uint64_t size;
	struct gate_frames released_at, allocated_at;
};

struct gate {
	struct gate_opts *o;
	struct gate_site *sites;       /* entries, sorted: by kind, then not freed bytes,
					* largest first */
	size_t nsites;
	size_t nsite_keys;             /* distinct sites */
	struct gate_gone *gone;
	size_t ngone;
	int64_t leaked, leaked_count;  /* unsuppressed, at the last snapshots */
	int64_t growth, growth_count;
	int64_t suppressed, suppressed_count;
	/* By kind (GROUP_NKINDS: the four, then unclassified), unsuppressed and
	 * suppressed; lost is definitely plus indirectly lost, unsuppressed. */
	int64_t kind_size[GROUP_NKINDS], kind_count[GROUP_NKINDS];
	int64_t supp_kind_size[GROUP_NKINDS], supp_kind_count[GROUP_NKINDS];
	int64_t lost, lost_count;
	/* Reachability: the last snapshots classified, and the first one that
	 * is not (NULL when all are), with why. */
	int nclassified;
	const struct snapshot *unclassified;
	char unclassified_why[160];
	uint64_t peak;
	int has_growth;                /* first and last snapshots differ */
	int at_exit;                   /* every last snapshot is an exit snapshot */
	int fail_leaked, fail_lost, fail_growth, fail_peak;
	size_t nfailing;
	int64_t failing_bytes, failing_count;
	int nprocs;
	/* Releases by the wrong family, from each process's last snapshot. */
	uint64_t mismatched_frees;
	struct gate_mismatch *mismatches;
	size_t nmismatches;
	/* What the sites point into. */
	struct gate_input { char *path; struct snapshot s; } *in;
	int nin;
	struct symbolizer *sym;
	struct group_opts gopts;       /* by traceback, o's allocation functions */
	struct stat_table *table;
	struct wrapper_hint hint;      /* a likely wrapper nobody named */
};

/* Load the snapshots (files, or directories of *.snap) and evaluate them
 * against o: GATE_PASS, GATE_FAIL (over a budget, or past the baseline;
 * never for o->leaks_only), or GATE_ERROR after an error line (unreadable
 * input or baseline, growth asked of a single snapshot, --max-lost of a
 * snapshot not classified by reachability).  g is filled in every case and
 * released with gate_release(). */
enum gate_verdict gate_evaluate(struct gate *g, struct gate_opts *o, char **paths, int npaths);
/* The budgets: each entry's FAIL_LEAKED/LOST/GROWTH/SITE_GROWTH and the
 * gate's fail_* from the totals, then the failing entries' sites counted
 * (FAIL_BASELINE must be set before).  Pure: no I/O. */
void gate_judge(struct gate *g);
/* The verdict of a judged gate: GATE_FAIL or GATE_PASS. */
enum gate_verdict gate_verdict(const struct gate *g);
void gate_release(struct gate *g);
/* Whether every process's last snapshot is classified by reachability. */
int gate_classified(const struct gate *g);
/* Whether `leaks` lists entries of kind k (GROUP_UNCLASSIFIED: always). */
int gate_shows_kind(const struct gate_opts *o, int k);
/* valgrind's words for kind k: "definitely lost", "indirectly lost",
 * "possibly lost", "still reachable"; "not classified" for
 * GROUP_UNCLASSIFIED. */
const char *gate_kind_words(int k);

/* ---- baseline.c: baseline files ------------------------------------------- */

#define BASELINE_ANY_KIND (-1)   /* an entry recorded without a kind: the site's blocks of any */

struct baseline_entry {
	char fp[SITE_FP_SIZE];
	int kind;                      /* enum hd_reach_kind, or BASELINE_ANY_KIND */
	int64_t bytes, count;
	char *desc;                    /* the site as the file describes it */
	int used;                      /* matched to a site */
};

struct baseline {
	struct baseline_entry *v;
	size_t n;
	int lines;                     /* its fingerprints include line numbers */
};

/* Read a baseline file into b.  0, or -1 after an error line naming the
 * file (and the line, for a malformed one); release b in either case. */
int baseline_read(struct baseline *b, const char *path);
void baseline_release(struct baseline *b);
/* Compare g's unsuppressed entries with b (fingerprints computed as b's
 * were): each entry new, grew (past its baselined bytes plus o->slack) or
 * unchanged, FAIL_BASELINE on new and grew.  An entry of a kind is matched
 * with the baseline's entry of its site and kind; a site's other entries
 * together with its entry recorded without a kind (older baselines, or
 * blocks not classified), and blocks not classified with every entry of
 * their site.  Baseline entries nothing matched go to g->gone (taking
 * their descriptions).  Pure: no I/O. */
void baseline_compare(struct gate *g, struct baseline *b);
/* Record g's unsuppressed entries that hold something, as a baseline file
 * at path (written beside it, then renamed into place): with their kinds
 * when any has one (format 2), else as format 1.  0, or -1 after an error
 * line. */
int baseline_write(const struct gate *g, const char *path);

#endif /* HD_GATE_H */
