/*
 * trend.c - the trend model: from many snapshots of one process to the
 * sites that grow steadily (`heapdelta trend`, `heapdelta watch`, and the
 * HTML report's ranking).
 *
 * For each site (any --by key) the live bytes over the steady state give:
 *   rate        least-squares slope, bytes per second;
 *   recent      the same slope over the last third of the steady state;
 *   steadiness  (intervals that grew - intervals that shrank) / intervals;
 *   linearity   R^2 of the straight line: how much of the variation the
 *               trend explains;
 *   plateaued   grew, but its recent rate is under a tenth of the whole.
 * Sites rank by score = max(recent, 0) x max(steadiness, 0) x linearity:
 * a leak grows now, nearly every interval, along a line; a cache that
 * filled up and stays flat has no recent growth; noise that goes up and
 * down has little steadiness, and what it has by chance its linearity
 * (near 0: its swings dwarf any trend) takes back.
 *
 * Teardown.  A program that shuts down cleanly frees what it held before
 * its exit snapshot (CPython's final collection, C++ static destructors),
 * and a slow teardown can hold interval snapshots too (CPython's takes
 * about 0.7 s on a 100 MB heap).  Ranked with them, every site that grew
 * would end in a fall and rank as shrinking.  So the figures are computed
 * over the steady state, and the teardown is shown apart.  It is there
 * when
 *   - the last snapshot is the exit snapshot (a running process has none,
 *     and a drop in the middle of a run is something the program did, to
 *     be ranked like the rest);
 *   - the whole traced heap (META live bytes, whatever --by and filters
 *     say) did not grow from some snapshot p to the exit snapshot: p is
 *     where the final fall starts (a teardown has pauses: CPython's holds
 *     the heap still for several snapshots at 0.01 s);
 *   - the exit snapshot holds less than half of what p held: the program
 *     let go of most of its heap, not of a little noise.
 * The teardown then starts at the first snapshot after p where the heap
 * has fallen by more than a hundredth of the whole fall: before it, the
 * heap is still at its steady level (a program idle before it exits frees
 * little or nothing), and a steady state keeps two snapshots at least.
 * The first snapshot taken inside a teardown can still hold more than the
 * one before it, when noise grew in the last moments of the steady state
 * by more than the teardown had freed yet: the total cannot tell.  The
 * sites that grew steadily can, being what noise does not move: so the
 * start moves back (at most TRIM snapshots) while the sites that grew at
 * three intervals in four or more hold less, together, at the last steady
 * snapshot than at the one before.  A heap that dips just before the
 * teardown may so lose a steady snapshot or two to it; a teardown
 * snapshot is not ranked.
 *
 * Streaming.  Snapshots are added one at a time in sequence order and
 * released: the series keep a value per site and snapshot, the points a
 * few META fields.  A version 2 file whose base is the point before costs
 * only its counter changes (series_add_changes).  With keep, 2 x TRIM + 3
 * snapshots are held whole at most: the first, the TRIM + 1 up to where
 * the current final fall starts, and the latest TRIM + 1 (the fall may
 * start at the next one); the report's flame graphs are of the last held
 * one in the steady state: its last snapshot, or one at the same level of
 * the heap before the fall.
 */
#include "trend.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Least-squares slope of y over t[from .. n-1]; with r2, also the share of
 * y's variance the line explains (0 when y is flat). */
static double slope(const double *t, const int64_t *y, int from, int n, double *r2)
{
	double st = 0, sy = 0, stt = 0, sty = 0, syy = 0;
	int k = n - from;

	if (r2)
		*r2 = 0;
	if (k < 2)
		return 0;
	for (int i = from; i < n; i++) {
		st += t[i];
		sy += (double)y[i];
	}
	double mt = st / k, my = sy / k;
	for (int i = from; i < n; i++) {
		stt += (t[i] - mt) * (t[i] - mt);
		sty += (t[i] - mt) * ((double)y[i] - my);
		syy += ((double)y[i] - my) * ((double)y[i] - my);
	}
	if (r2 && stt > 0 && syy > 0)
		*r2 = sty * sty / (stt * syy);
	return stt > 0 ? sty / stt : 0;
}

void trend_compute(struct trend_site *ts, const double *t, int n)
{
	const int64_t *y = ts->s->bytes;
	int up = 0, down = 0;

	for (int i = 1; i < n; i++) {
		up += y[i] > y[i - 1];
		down += y[i] < y[i - 1];
	}
	ts->rate = slope(t, y, 0, n, &ts->linearity);
	ts->recent = slope(t, y, n - (n / 3 > 3 ? n / 3 : (n >= 3 ? 3 : n)), n, NULL);
	ts->steadiness = n > 1 ? (double)(up - down) / (n - 1) : 0;
	ts->growth = n ? y[n - 1] - y[0] : 0;
	ts->plateaued = ts->growth > 0 && ts->rate > 0 && ts->recent < ts->rate / 10;
	ts->score = fmax(ts->recent, 0) * fmax(ts->steadiness, 0) * ts->linearity;
}

/* Whether the sites that grew at three intervals in four or more before
 * snapshot p hold less, together, at p than at p - 1. */
static int growers_fell(struct series *const *sites, size_t nsites, int p)
{
	int64_t change = 0;
	int any = 0;

	for (size_t k = 0; k < nsites; k++) {
		const int64_t *y = sites[k]->bytes;
		int up = 0;
		for (int i = 1; i < p; i++)
			up += y[i] > y[i - 1];
		if (4 * up >= 3 * (p - 1)) {
			change += y[p] - y[p - 1];
			any = 1;
		}
	}
	return any && change < 0;
}

int trend_steady_count(const uint64_t *live, int n, int last_is_exit, struct series *const *sites, size_t nsites)
{
	int p = n - 1, q;

	if (n < 3 || !last_is_exit)
		return n;
	while (p > 0 && live[p - 1] >= live[p])
		p--;
	uint64_t top = live[p], end = live[n - 1];
	if (p == n - 1 || end >= top - top / 2)   /* not under half */
		return n;
	uint64_t level = top - (top - end) / 100;
	for (q = p + 1; live[q] >= level; q++)
		;
	if (q < 2)
		return n;
	for (int k = 0; k < TREND_TRIM && q - 1 > 3 && growers_fell(sites, nsites, q - 1); k++)
		q--;
	return q;
}

static int by_score(const void *a, const void *b)
{
	const struct trend_site *x = a, *y = b;

	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	if (x->growth != y->growth)
		return x->growth > y->growth ? -1 : 1;
	return strcmp(x->s->key, y->s->key);
}

void trend_rank(struct trend_site *sites, size_t n)
{
	qsort(sites, n, sizeof *sites, by_score);
}

/* ---- the files of one process ------------------------------------------- */

struct file_id {
	char *path;
	uint64_t pid, seq;
};

int trend_file_name(const char *path, uint64_t *pid, uint64_t *seq)
{
	const char *base = strrchr(path, '/'), *p;
	char *end;

	base = base ? base + 1 : path;
	if (strncmp(base, "heapdelta.", 10))
		return -1;
	p = base + 10;
	if (*p < '0' || *p > '9')
		return -1;
	errno = 0;
	*pid = strtoull(p, &end, 10);
	if (errno || *end != '.' || end[1] < '0' || end[1] > '9')
		return -1;
	*seq = strtoull(end + 1, &end, 10);
	if (errno || *end != '.')
		return -1;
	p = end + 1;
	if (strcmp(p, "interval.snap") && strcmp(p, "signal.snap") && strcmp(p, "api.snap") && strcmp(p, "exit.snap"))
		return -1;
	return 0;
}

static int by_seq(const void *a, const void *b)
{
	const struct file_id *x = a, *y = b;

	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return strcmp(x->path, y->path);
}

int trend_files(char **args, int nargs, long pid, char ***paths, int *npaths)
{
	char **all = NULL;
	int nall = 0, rc = 0, k = 0;

	*paths = NULL;
	*npaths = 0;
	if (snapshot_paths(args, nargs, &all, &nall) < 0) {
		for (int i = 0; i < nall; i++)
			free(all[i]);
		free(all);
		return -1;
	}
	struct file_id *ids = xcalloc((size_t)nall + 1, sizeof *ids);
	for (int i = 0; i < nall && !rc; i++) {
		ids[i].path = all[i];
		if (trend_file_name(all[i], &ids[i].pid, &ids[i].seq) == 0)
			continue;
		/* Named otherwise: its META says (read whole: the reader has no
		 * cheaper way). */
		struct snapshot s;
		if (snapshot_load(all[i], &s) < 0)
			rc = -1;
		ids[i].pid = s.meta[HD_META_PID];
		ids[i].seq = s.meta[HD_META_SEQ];
		snapshot_release(&s);
	}
	if (!rc && !nall)
		rc = error("no snapshots found");
	if (!rc && pid < 0) {
		/* The process with the most snapshots (the lowest pid of a tie). */
		int best = 0;
		for (int i = 0; i < nall; i++) {
			int c = 0;
			for (int j = 0; j < nall; j++)
				c += ids[j].pid == ids[i].pid;
			if (c > best || (c == best && (long)ids[i].pid < pid)) {
				best = c;
				pid = (long)ids[i].pid;
			}
		}
	}
	if (!rc) {
		qsort(ids, (size_t)nall, sizeof *ids, by_seq);
		*paths = xcalloc((size_t)nall + 1, sizeof **paths);
		for (int i = 0; i < nall; i++) {
			if (ids[i].pid == (uint64_t)pid) {
				(*paths)[k++] = ids[i].path;
				ids[i].path = NULL;
			}
		}
		*npaths = k;
		if (!k)
			rc = error("no snapshots of pid %ld", pid);
	}
	for (int i = 0; i < nall; i++)
		free(ids[i].path);
	free(ids);
	free(all);
	if (rc) {
		for (int i = 0; i < k; i++)
			free((*paths)[i]);
		free(*paths);
		*paths = NULL;
		*npaths = 0;
	}
	return rc;
}

/* ---- the streaming model -------------------------------------------------- */

struct trend *trend_new(const struct group_opts *opts, struct symbolizer *sym, int npoints, int keep)
{
	struct trend *tr = xcalloc(1, sizeof *tr);

	tr->cap = npoints > 0 ? npoints : 16;
	tr->t = xcalloc((size_t)tr->cap, sizeof *tr->t);
	tr->pts = xcalloc((size_t)tr->cap, sizeof *tr->pts);
	tr->table = series_new(opts, sym, tr->cap);
	tr->keep = keep;
	return tr;
}

static void held_release(struct trend *tr, int k)
{
	snapshot_release(tr->held[k].s);
	free(tr->held[k].s);
	tr->held[k].s = NULL;
}

/* The held snapshot of point `at`, or NULL. */
static const struct snapshot *held_at(const struct trend *tr, int at)
{
	for (int k = 0; k < TREND_HELD; k++)
		if (tr->held[k].s && tr->held[k].at == at)
			return tr->held[k].s;
	return NULL;
}

void trend_add(struct trend *tr, struct snapshot *s)
{
	int i = tr->n;

	if (i == tr->cap) {
		tr->cap *= 2;
		tr->t = xrealloc(tr->t, (size_t)tr->cap * sizeof *tr->t);
		tr->pts = xrealloc(tr->pts, (size_t)tr->cap * sizeof *tr->pts);
	}
	struct trend_point *pt = &tr->pts[i];
	pt->seq = s->meta[HD_META_SEQ];
	pt->trigger = s->meta[HD_META_TRIGGER];
	pt->mono_ns = s->meta[HD_META_MONO_NS];
	pt->live_bytes = s->meta[HD_META_LIVE_BYTES];
	pt->rss_bytes = s->meta[HD_META_RSS_BYTES];
	tr->t[i] = i ? (double)(int64_t)(pt->mono_ns - tr->pts[0].mono_ns) / 1e9 : 0;
	if (!i)
		tr->pid = s->meta[HD_META_PID];
	free(tr->exe);
	tr->exe = xstrdup(s->exe ? s->exe : "");
	/* A file that builds on the point before: only what changed. */
	if (i && s->version == 2 && s->meta[HD_META_BASE_SEQ] == tr->pts[i - 1].seq &&
	    s->meta[HD_META_RUN_ID] == tr->run_id)
		series_add_changes(tr->table, s, i);
	else
		series_add(tr->table, s, i);
	tr->run_id = s->meta[HD_META_RUN_ID];
	tr->n = i + 1;
	/* Where the final fall of the heap would start (trend_steady_count). */
	if (!i || pt->live_bytes > tr->pts[i - 1].live_bytes)
		tr->drop = i;
	if (!tr->keep) {
		snapshot_release(s);
		return;
	}
	/* Held: the first, TRIM + 1 up to the drop, the latest TRIM + 1. */
	for (int k = 0; k < TREND_HELD; k++) {
		int at = tr->held[k].at;
		if (tr->held[k].s && at && !(at <= tr->drop && at >= tr->drop - TREND_TRIM) && at < i - TREND_TRIM)
			held_release(tr, k);
	}
	for (int k = 0; k < TREND_HELD; k++) {
		if (!tr->held[k].s) {
			tr->held[k].s = xmalloc(sizeof *tr->held[k].s);
			*tr->held[k].s = *s;
			tr->held[k].at = i;
			memset(s, 0, sizeof *s);
			break;
		}
	}
}

void trend_finish(struct trend *tr)
{
	uint64_t *live = xcalloc((size_t)tr->n + 1, sizeof *live);
	size_t ns;

	series_settle(tr->table, tr->n);
	struct series **all = series_all(tr->table, &ns);

	for (int i = 0; i < tr->n; i++)
		live[i] = tr->pts[i].live_bytes;
	tr->steady = trend_steady_count(live, tr->n, tr->n && tr->pts[tr->n - 1].trigger == HD_TRIGGER_EXIT, all, ns);
	free(live);
	free(tr->sites);
	tr->sites = xcalloc(ns + 1, sizeof *tr->sites);
	for (size_t i = 0; i < ns; i++) {
		tr->sites[i].s = all[i];
		trend_compute(&tr->sites[i], tr->t, tr->steady);
	}
	tr->nsites = ns;
	free(all);
	trend_rank(tr->sites, ns);
	if (tr->keep) {
		tr->first = held_at(tr, 0);
		tr->end = NULL;
		for (int k = 0, best = -1; k < TREND_HELD; k++) {
			if (tr->held[k].s && tr->held[k].at < tr->steady && tr->held[k].at > best) {
				best = tr->held[k].at;
				tr->end = tr->held[k].s;
				tr->end_at = best;
			}
		}
	}
}

struct trend *trend_read(char **paths, int n, const struct group_opts *opts, struct symbolizer *sym, int keep)
{
	struct trend *tr = trend_new(opts, sym, n, keep);

	for (int i = 0; i < n; i++) {
		struct snapshot s;
		if (snapshot_load(paths[i], &s) < 0) {
			snapshot_release(&s);
			trend_free(tr);
			return NULL;
		}
		if (i && s.meta[HD_META_PID] != tr->pid) {
			error("'%s' holds a snapshot of pid %" PRIu64 ", the files before it of pid %" PRIu64, paths[i],
			      s.meta[HD_META_PID], tr->pid);
			snapshot_release(&s);
			trend_free(tr);
			return NULL;
		}
		trend_add(tr, &s);
	}
	trend_finish(tr);
	return tr;
}

void trend_free(struct trend *tr)
{
	if (!tr)
		return;
	for (int k = 0; k < TREND_HELD; k++)
		if (tr->held[k].s)
			held_release(tr, k);
	series_free(tr->table);
	free(tr->sites);
	free(tr->t);
	free(tr->pts);
	free(tr->exe);
	free(tr);
}
