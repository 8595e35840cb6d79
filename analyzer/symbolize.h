/*
 * symbolize.h - return addresses to function, file and line, inline frames
 * expanded.  The only part of the analyzer that knows libdw.
 */
#ifndef HD_SYMBOLIZE_H
#define HD_SYMBOLIZE_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot.h"

/* What a frame without file and line lacks (sym_frame.lacks). */
enum sym_lack {
	SYM_LACKS_NOTHING,      /* it has file and line, or nothing could give them (vdso) */
	SYM_LACKS_LINES,        /* its module has debug information, but no line here */
	SYM_LACKS_DEBUG_INFO,   /* its module was found, its debug information was not */
	SYM_LACKS_MODULE,       /* its module's file was not found, or has another build-id */
};

struct sym_frame {
	const char *function;   /* demangled; "??" when unknown */
	const char *file;       /* NULL when there is no line information */
	int line;
	const char *module;     /* the module's file name (no directory); "?" when none */
	uint64_t address;       /* the runtime address as recorded */
	uint64_t offset;        /* address relative to the module's load bias */
	int inlined;            /* inlined into the frame that follows */
	int python;             /* a Python frame: file and line are the Python source's */
	enum sym_lack lacks;    /* why file is NULL */
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

/* The files a symbolizer reads for a module; NULL where there is none. */
struct sym_files {
	const char *file;       /* its binary, or the debug file standing in for it */
	const char *debug;      /* its separate debug file */
	const char *alt;        /* its dwz alternate file */
	const char *alt_id;     /* the alternate file's build-id, in hex */
};

/* The files sym reads for module hm of snapshot s, opening it if it was not
 * yet (all NULL when it was not found); the strings belong to sym. */
void symbolize_module_files(struct symbolizer *sym, const struct snapshot *s, const struct hd_module *hm,
			    struct sym_files *f);

/* ---- symbolize_opts.c: where the files a snapshot names are looked for -- */

/* Every command that symbolizes takes symbolize_options[] (getopt_long
 * values SYM_OPT_*, above the allocation functions' 768 and up) and hands
 * them to symbolize_option(); symbolizers read the result.  A module's file
 * is looked for at its path mapped by --map-path, under --sysroot, at its
 * path, then by build-id and by name in each debug directory (and in
 * /usr/lib/debug, and from debuginfod): the first with the snapshot's
 * build-id is used.  Separate debug files likewise. */
enum { SYM_OPT_DEBUG_DIR = 1024, SYM_OPT_SYSROOT, SYM_OPT_MAP_PATH, SYM_OPT_END };
extern const struct option symbolize_options[];

/* Is getopt_long's value c one of these options (for symbolize_option)? */
static inline int symbolize_owns(int c)
{
	return c >= SYM_OPT_DEBUG_DIR && c < SYM_OPT_END;
}

struct sym_map { char *from, *to; };

struct sym_paths {
	char **debug_dirs;      /* --debug-dir, then HEAPDELTA_DEBUG_DIRS; no trailing '/' */
	size_t ndebug_dirs;
	char *sysroot;          /* --sysroot; NULL for none */
	struct sym_map *maps;   /* --map-path OLD=NEW */
	size_t nmaps;
};

/* Apply option c (SYM_OPT_*) with its argument: 0, or -1 after a usage
 * message for command cmd (not a directory, no '=' in a mapping). */
int symbolize_option(const char *cmd, int c, const char *arg);
/* The places in force (HEAPDELTA_DEBUG_DIRS read on the first call, one
 * warning for an entry that is not a directory); they live until exit. */
const struct sym_paths *symbolize_paths(void);
/* path with the longest --map-path OLD that is a leading part of it (whole
 * components) replaced by its NEW; NULL when none is.  The caller frees
 * it. */
char *symbolize_map_path(const char *path);

#endif /* HD_SYMBOLIZE_H */
