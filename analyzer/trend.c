/*
 * trend.c - the trend model: from many snapshots of one process to the
 * sites that grow steadily (`heapdelta trend`, and the HTML report's
 * ranking).
 *
 * For each site (any --by key) the live bytes over time give:
 *   rate        least-squares slope, bytes per second;
 *   recent      the same slope over the last third of the run;
 *   steadiness  (intervals that grew - intervals that shrank) / intervals;
 *   linearity   R^2 of the straight line over the run: how much of the
 *               variation the trend explains;
 *   plateaued   grew, but its recent rate is under a tenth of the whole.
 * Sites rank by score = max(recent, 0) x max(steadiness, 0) x linearity:
 * a leak grows now, nearly every interval, along a line; a cache that
 * filled up and stays flat has no recent growth; noise that goes up and
 * down has little steadiness, and what it has by chance its linearity
 * (near 0: its swings dwarf any trend) takes back.
 */
#include "trend.h"
#include "util.h"

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

static int by_seq(const void *a, const void *b)
{
	const struct snapshot *x = a, *y = b;

	if (x->meta[HD_META_SEQ] != y->meta[HD_META_SEQ])
		return x->meta[HD_META_SEQ] < y->meta[HD_META_SEQ] ? -1 : 1;
	return 0;
}

int trend_load(char **args, int nargs, long pid, struct snapshot **snaps, int *nsnaps)
{
	char **paths = NULL;
	int npaths = 0, rc = 0;

	*snaps = NULL;
	*nsnaps = 0;
	if (snapshot_paths(args, nargs, &paths, &npaths) < 0)
		return -1;
	struct snapshot *all = xcalloc((size_t)npaths + 1, sizeof *all);
	for (int i = 0; i < npaths && !rc; i++)
		if (snapshot_load(paths[i], &all[i]) < 0)
			rc = -1;
	if (!rc && !npaths)
		rc = error("no snapshots found");
	if (!rc && pid < 0) {
		/* The process with the most snapshots. */
		int best = 0;
		for (int i = 0; i < npaths; i++) {
			int c = 0;
			for (int k = 0; k < npaths; k++)
				c += all[k].meta[HD_META_PID] == all[i].meta[HD_META_PID];
			if (c > best) {
				best = c;
				pid = (long)all[i].meta[HD_META_PID];
			}
		}
	}
	if (!rc) {
		*snaps = xcalloc((size_t)npaths + 1, sizeof **snaps);
		for (int i = 0; i < npaths; i++) {
			if ((long)all[i].meta[HD_META_PID] == pid) {
				(*snaps)[(*nsnaps)++] = all[i];
				memset(&all[i], 0, sizeof all[i]);
			}
		}
		if (!*nsnaps)
			rc = error("no snapshots of pid %ld", pid);
		qsort(*snaps, (size_t)*nsnaps, sizeof **snaps, by_seq);
	}
	for (int i = 0; i < npaths; i++) {
		snapshot_release(&all[i]);
		free(paths[i]);
	}
	free(all);
	free(paths);
	return rc;
}

struct trend *trend_build(struct snapshot *snaps, int n, const struct group_opts *opts, struct symbolizer *sym)
{
	struct trend *tr = xcalloc(1, sizeof *tr);

	tr->snaps = snaps;
	tr->n = n;
	tr->t = xcalloc((size_t)n + 1, sizeof *tr->t);
	tr->table = series_new(opts, sym, n);
	for (int i = 0; i < n; i++) {
		tr->t[i] = (double)(snaps[i].meta[HD_META_MONO_NS] - snaps[0].meta[HD_META_MONO_NS]) / 1e9;
		series_add(tr->table, &snaps[i], i);
	}
	size_t ns;
	struct series **all = series_all(tr->table, &ns);
	tr->sites = xcalloc(ns + 1, sizeof *tr->sites);
	for (size_t i = 0; i < ns; i++) {
		tr->sites[i].s = all[i];
		trend_compute(&tr->sites[i], tr->t, n);
	}
	tr->nsites = ns;
	free(all);
	trend_rank(tr->sites, ns);
	return tr;
}

void trend_free(struct trend *tr)
{
	if (!tr)
		return;
	series_free(tr->table);
	free(tr->sites);
	free(tr->t);
	free(tr);
}
