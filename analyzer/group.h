/*
 * group.h - statistics by allocation site: tracemalloc's statistics() and
 * compare_to(), on symbolized stacks.  The only users of uthash.
 */
#ifndef HD_GROUP_H
#define HD_GROUP_H

#include <regex.h>
#include <stdint.h>

#include "site.h"
#include "snapshot.h"
#include "symbolize.h"

struct file_filter {
	char *pattern;     /* fnmatch glob on the file name */
	int line;          /* -1: any line */
	int inclusive;
};

struct group_opts {
	enum site_by by;
	int cumulative;
	int whole_stack;               /* BY_TRACEBACK keyed by every frame, the
					* wrappers' too: one entry per stack */
	struct alloc_fns *alloc_fns;   /* wrappers sites look through; NULL:
					* the built-in list */
	int all_frames;                /* filters test every frame, not only the site */
	struct file_filter *filters;
	int nfilters;
	char **modules;                /* --module globs (any matches) */
	int nmodules;
	regex_t *focus, *ignore;       /* on function names, any frame */
};

/* A function that is likely an allocation wrapper nobody named: the site
 * of most of the bytes (newer side, after filters) and reached from many
 * callers. */
struct wrapper_hint {
	const char *function;          /* NULL: no hint; belongs to the table */
	int64_t size, total;           /* its bytes; all bytes */
	size_t callers;                /* distinct calling locations */
};

/* The newer side's live blocks by reachability: the kinds of enum
 * hd_reach_kind, then those of snapshots that were not classified. */
#define GROUP_UNCLASSIFIED HD_REACH_NKINDS
#define GROUP_NKINDS (HD_REACH_NKINDS + 1)

struct stat_entry {
	char *key;                     /* what the text report prints before ':' */
	const struct sym_frame *site;  /* the site frame (file, line, function) */
	struct site_stack tb;          /* the stack of the key holding the most
					* bytes (then blocks, then lowest id);
					* its wrapper frames before tb.site */
	int64_t size, count;           /* in the newer snapshot */
	int64_t old_size, old_count;   /* in the older one (diff) */
	int64_t alloc_size, alloc_count; /* allocated since start, newer snapshot */
	int64_t kind_size[GROUP_NKINDS], kind_count[GROUP_NKINDS];   /* size and count by kind */
};

struct stat_table;

struct stat_table *group_new(const struct group_opts *opts, struct symbolizer *sym);
void group_free(struct stat_table *t);
/* Add every stack of s (after filters) into the table, as the newer
 * (old == 0) or older (old == 1) side. */
void group_add(struct stat_table *t, const struct snapshot *s, int old);
/* All entries, sorted as tracemalloc sorts statistics (diff == 0) or a
 * comparison (diff == 1).  Entries with nothing on either side are left
 * out.  The array is the caller's to free; entries belong to the table. */
struct stat_entry **group_sorted(struct stat_table *t, int diff, size_t *n);

/* Live size and count of all stacks kept by the filters, newer (old == 0)
 * or older side; unlike a sum of entries, right with --cumulative too. */
void group_totals(const struct stat_table *t, int old, int64_t *size, int64_t *count);
/* The wrapper hint of the newer side: the function that is the site of
 * the most bytes, when that is more than half of them and it is reached
 * from GROUP_HINT_CALLERS calling locations or more; else h->function is
 * NULL. */
#define GROUP_HINT_CALLERS 4
void group_hint(const struct stat_table *t, struct wrapper_hint *h);

/* Per-site time series over many snapshots (`heapdelta trend`, the HTML
 * report): column i holds snapshot i's live bytes and count per key. */
struct series {
	char *key;
	const struct sym_frame *site;
	struct site_stack tb;
	int64_t *bytes, *count;        /* npoints each */
};

struct series_table;

/* npoints: the points expected; series grow past it as points are added. */
struct series_table *series_new(const struct group_opts *opts, struct symbolizer *sym, int npoints);
/* Add snapshot s as column `point`: s is not used after the call, so it can
 * be released (the series hold symbolized frames, owned by sym). */
void series_add(struct series_table *t, const struct snapshot *s, int point);
/* The same from s's own counter changes (s->deltas: a version 2 file read
 * by snapshot_load), when column point - 1 holds s's base: only the stacks
 * that changed are visited, so a snapshot costs what changed in it, not
 * what exists; a series that did not change is filled in later. */
void series_add_changes(struct series_table *t, const struct snapshot *s, int point);
/* Fill every series' columns 0 .. npoints - 1 (after series_add_changes,
 * before the series are read). */
void series_settle(struct series_table *t, int npoints);
/* Every series (settled: series_settle()); the array is the caller's to
 * free, the series the table's. */
struct series **series_all(struct series_table *t, size_t *n);
void series_free(struct series_table *t);

#endif /* HD_GROUP_H */
