/*
 * report.h - the one report model that `top` and `diff` fill and that every
 * output format is emitted from.
 */
#ifndef HD_REPORT_H
#define HD_REPORT_H

#include <stdio.h>

#include "group.h"

struct report_snap {
	const struct snapshot *snap;
	int64_t total_size, total_count;   /* after filters */
};

struct report {
	int diff;                          /* compare_to() rather than statistics() */
	enum group_by by;
	int cumulative;
	struct report_snap cur, old;       /* old only when diff */
	struct stat_entry **entries;       /* sorted */
	size_t n;
	size_t limit;                      /* 0: all */
};

void report_text(FILE *out, const struct report *r);
void report_json(FILE *out, const struct report *r);

#endif /* HD_REPORT_H */
