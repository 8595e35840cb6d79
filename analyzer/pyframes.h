/*
 * pyframes.h - Python frames of a snapshot to file, line and name.
 */
#ifndef HD_PYFRAMES_H
#define HD_PYFRAMES_H

#include <stddef.h>
#include <stdint.h>

#include "snapshot.h"
#include "symbolize.h"

struct pyframe_cache;

struct pyframe_cache *pyframe_cache_new(void);
void pyframe_cache_free(struct pyframe_cache *c);

/* The frame for Python frame value `frame` of snapshot s; never NULL (an
 * unknown code object gives "??").  Lives as long as the cache. */
const struct sym_frame *pyframe_symbolize(struct pyframe_cache *c, const struct snapshot *s, uint64_t frame);

/* The line of code unit `instr` from a 3.11 location table that starts at
 * firstlineno; -1 when the instruction has no line or the table ends. */
int pyframe_line(const unsigned char *lt, size_t len, int firstlineno, uint32_t instr);

#endif /* HD_PYFRAMES_H */
