/*
 * export.h - the report model as the formats other tools read: folded
 * stacks (flamegraph.pl, inferno, speedscope) and pprof's profile.proto.
 * Both want one entry per allocation stack: the caller groups by traceback.
 */
#ifndef HD_EXPORT_H
#define HD_EXPORT_H

#include <stdio.h>

#include "report.h"

/* "root;...;site BYTES" per stack; for a diff "root;...;site OLD NEW", the
 * two-column form differential flame graphs take. */
void export_collapsed(FILE *out, const struct report *r);
/* A gzipped pprof profile of r->cur.snap: sample types alloc_objects,
 * alloc_space, inuse_objects, inuse_space.  0, or -1 after an error line. */
int export_pprof(FILE *out, const struct report *r);

#endif /* HD_EXPORT_H */
