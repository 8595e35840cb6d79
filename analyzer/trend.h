/*
 * trend.h - the trend model (trend.c): per-site growth over many snapshots
 * of one process, ranked; `heapdelta trend` and `heapdelta report` write
 * it (write_trend.c, write_html.c).
 */
#ifndef HD_TREND_H
#define HD_TREND_H

#include "group.h"

struct trend_site {
	struct series *s;
	double rate;          /* bytes per second, least squares over the run */
	double recent;        /* the same over the last third */
	double steadiness;    /* (intervals up - intervals down) / intervals */
	double linearity;     /* R^2 of the line over the run */
	int64_t growth;       /* last - first */
	int plateaued;
	double score;         /* ranking: steady, current growth first */
};

struct trend {
	struct snapshot *snaps;    /* borrowed, ordered by sequence */
	int n;
	double *t;                 /* seconds since the first snapshot */
	struct series_table *table;
	struct trend_site *sites;  /* ranked */
	size_t nsites;
};

/* Load the snapshots of one process (pid, or -1: the one with the most)
 * from files and directories, ordered by sequence.  0 or -1 (message
 * printed).  The array and the snapshots are the caller's to release. */
int trend_load(char **args, int nargs, long pid, struct snapshot **snaps, int *nsnaps);
/* Every site of snaps[0 .. n) (one process, by sequence) grouped by opts,
 * computed and ranked.  Borrows snaps, opts and sym; free it with
 * trend_free() before them. */
struct trend *trend_build(struct snapshot *snaps, int n, const struct group_opts *opts, struct symbolizer *sym);
/* ts's figures from its series ts->s->bytes at times t[0 .. n) (seconds,
 * increasing).  Pure. */
void trend_compute(struct trend_site *ts, const double *t, int n);
/* Sort sites by score, then growth, then key: the ranking trend shows. */
void trend_rank(struct trend_site *sites, size_t n);
void trend_free(struct trend *tr);

#endif /* HD_TREND_H */
