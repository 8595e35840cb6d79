/*
 * stats.c - the top/diff model (stats.h): one or two snapshots grouped by
 * site, sorted, with their totals.
 */
#include "stats.h"

#include <stdlib.h>
#include <string.h>

void stats_build(struct stats *r, const struct group_opts *opts, struct symbolizer *sym,
		 const struct snapshot *cur, const struct snapshot *old, size_t limit)
{
	memset(r, 0, sizeof *r);
	r->diff = old != NULL;
	r->by = opts->by;
	r->cumulative = opts->cumulative;
	r->limit = limit;
	r->table = group_new(opts, sym);
	group_add(r->table, cur, 0);
	if (old)
		group_add(r->table, old, 1);
	r->cur.snap = cur;
	group_totals(r->table, 0, &r->cur.total_size, &r->cur.total_count);
	if (old) {
		r->old.snap = old;
		group_totals(r->table, 1, &r->old.total_size, &r->old.total_count);
	}
	r->entries = group_sorted(r->table, r->diff, &r->n);
	group_hint(r->table, &r->hint);
}

void stats_release(struct stats *r)
{
	free(r->entries);
	group_free(r->table);
	memset(r, 0, sizeof *r);
}
