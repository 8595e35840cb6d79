/*
 * symbolize.h - return addresses to function, file and line, inline frames
 * expanded.  The only part of the analyzer that knows libdw.
 */
#ifndef HD_SYMBOLIZE_H
#define HD_SYMBOLIZE_H

#include <stddef.h>
#include <stdint.h>

#include "snapshot.h"

struct sym_frame {
	const char *function;   /* demangled; "??" when unknown */
	const char *file;       /* NULL when there is no line information */
	int line;
	const char *module;     /* the module's file name (no directory); "?" when none */
	uint64_t address;       /* the runtime address as recorded */
	uint64_t offset;        /* address relative to the module's load bias */
	int inlined;            /* inlined into the frame that follows */
};

struct symbolizer;

struct symbolizer *symbolizer_new(void);
void symbolizer_free(struct symbolizer *sym);

/* The frames of one return address of snapshot s, in a stack of map epoch
 * `epoch` (which module was mapped there then), innermost first: the
 * inlined functions at that address, then the function they are inlined
 * into.  Always at least one frame.  `is_return`: the address follows a
 * call (look up address - 1).  The array belongs to the symbolizer and
 * lives as long as it does; results are cached per module and address, so
 * the same address in another snapshot of the same binary costs nothing. */
const struct sym_frame *symbolize_addr(struct symbolizer *sym, const struct snapshot *s,
				       uint64_t addr, uint32_t epoch, int is_return, size_t *nframes);

#endif /* HD_SYMBOLIZE_H */
