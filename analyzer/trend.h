/*
 * trend.h - the trend model (trend.c): per-site growth over many snapshots
 * of one process, ranked over the process's steady state (its teardown set
 * apart); `heapdelta trend`, `heapdelta report` and `heapdelta watch` write
 * it (write_trend.c, write_html.c).
 *
 * The model streams: snapshots are added one at a time, in sequence order,
 * and only what the figures need is kept of each (per-site series values
 * and a few META fields), so memory follows sites x snapshots, not the
 * snapshots' size.
 */
#ifndef HD_TREND_H
#define HD_TREND_H

#include "group.h"

/* How far the teardown's start may move back from the heap's final drop
 * (trend.c), and how many snapshots a trend built with keep holds. */
#define TREND_TRIM 3
#define TREND_HELD (2 * TREND_TRIM + 3)

struct trend_site {
	struct series *s;
	double rate;          /* bytes per second, least squares over the steady state */
	double recent;        /* the same over its last third */
	double steadiness;    /* (intervals up - intervals down) / intervals */
	double linearity;     /* R^2 of the line over the steady state */
	int64_t growth;       /* last steady - first */
	int plateaued;
	double score;         /* ranking: steady, current growth first */
};

/* What the model keeps of each snapshot. */
struct trend_point {
	uint64_t seq, trigger;
	uint64_t mono_ns;
	uint64_t live_bytes;   /* META live bytes: the whole traced heap */
	uint64_t rss_bytes;    /* the process's resident set */
};

struct trend {
	uint64_t pid;
	char *exe;                 /* of the latest snapshot */
	int n;                     /* snapshots added */
	double *t;                 /* seconds since the first snapshot */
	struct trend_point *pts;
	int steady;                /* points [0, steady) are the steady state, ranked;
				    * [steady, n) the teardown (trend_finish) */
	struct series_table *table;
	struct trend_site *sites;  /* ranked (trend_finish) */
	size_t nsites;
	/* With keep (trend_new): the first snapshot and the last of the steady
	 * state (or, when the heap stayed at its level before the teardown
	 * for a while, one at that level), whole, for the report's flame
	 * graphs; NULL without.  end is point end_at. */
	const struct snapshot *first, *end;
	int end_at;

	/* trend.c's own. */
	int cap, keep, drop;
	uint64_t run_id;           /* of the latest snapshot */
	struct { struct snapshot *s; int at; } held[TREND_HELD];
};

/* PID and SEQ from a snapshot file's name, heapdelta.PID.SEQ.TRIGGER.snap
 * (in any directory); 0, or -1 for any other name. */
int trend_file_name(const char *path, uint64_t *pid, uint64_t *seq);
/* The snapshot files among args (files, and directories' heapdelta *.snap
 * files) of one process, pid or (-1) the one with the most, ordered by
 * sequence number: taken from the files' names
 * (heapdelta.PID.SEQ.TRIGGER.snap), or read from the file for any other
 * name.  0, or -1 after one error line.  The strings and the array are the
 * caller's to free. */
int trend_files(char **args, int nargs, long pid, char ***paths, int *npaths);

/* An empty trend grouping sites by opts, symbolized by sym (both borrowed:
 * free the trend first).  npoints: the snapshots expected (a hint; the
 * trend grows past it).  keep: hold the snapshots trend->first and
 * trend->end. */
struct trend *trend_new(const struct group_opts *opts, struct symbolizer *sym, int npoints, int keep);
/* Add s, the process's next snapshot by sequence.  The trend takes s's
 * contents (s is left empty): what it does not keep is released. */
void trend_add(struct trend *tr, struct snapshot *s);
/* Find the steady state, compute every site's figures over it and rank
 * them; again after more trend_add() calls. */
void trend_finish(struct trend *tr);
/* trend_new() and trend_add() of each of paths[0 .. n) (one process, in
 * sequence order: trend_files()), loaded one at a time, then
 * trend_finish().  NULL after an error line. */
struct trend *trend_read(char **paths, int n, const struct group_opts *opts, struct symbolizer *sym, int keep);
void trend_free(struct trend *tr);

/* The steady state of a process whose snapshots held live[0 .. n) bytes
 * (the whole traced heap), the last an exit snapshot if last_is_exit, and
 * whose sites held sites[k]->bytes[0 .. n): the number of snapshots from
 * the first that it spans (trend.c says how); n when there is no teardown.
 * Pure. */
int trend_steady_count(const uint64_t *live, int n, int last_is_exit, struct series *const *sites, size_t nsites);
/* ts's figures from its series ts->s->bytes at times t[0 .. n) (seconds,
 * increasing).  Pure. */
void trend_compute(struct trend_site *ts, const double *t, int n);
/* Sort sites by score, then growth, then key: the ranking trend shows. */
void trend_rank(struct trend_site *sites, size_t n);

#endif /* HD_TREND_H */
