/*
 * stats.h - the model of `heapdelta top` and `heapdelta diff`: the entries
 * of one snapshot (tracemalloc's statistics()) or of two compared
 * (compare_to()), sorted, with totals (stats.c, over group.c).  Every
 * top/diff output format is written from it (write_stats.c,
 * write_collapsed.c, write_pprof.c).
 */
#ifndef HD_STATS_H
#define HD_STATS_H

#include "group.h"

struct stats_snap {
	const struct snapshot *snap;
	int64_t total_size, total_count;   /* after filters */
};

struct stats {
	int diff;                          /* compare_to() rather than statistics() */
	enum site_by by;
	int cumulative;
	struct stats_snap cur, old;        /* old only when diff */
	struct stat_entry **entries;       /* sorted */
	size_t n;
	size_t limit;                      /* 0: all */
	struct wrapper_hint hint;          /* a likely wrapper nobody named */
	struct stat_table *table;          /* what the entries belong to */
};

/* Group cur (and old, for a diff; NULL for top) by opts, symbolized by
 * sym, into r: entries sorted as tracemalloc sorts statistics or a
 * comparison, totals after filters.  r keeps pointers to the snapshots,
 * opts and sym; release it with stats_release() before them. */
void stats_build(struct stats *r, const struct group_opts *opts, struct symbolizer *sym,
		 const struct snapshot *cur, const struct snapshot *old, size_t limit);
void stats_release(struct stats *r);

#endif /* HD_STATS_H */
