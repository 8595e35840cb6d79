/*
 * site.h - what a site is, and its keys, defined once.
 *
 * A site is an allocation stack cut at its allocation site: the innermost
 * frame that is not an allocation function, then its callers outwards.
 * Allocation functions are the malloc family (C++ operator new/delete, the
 * shim), always, and the wrappers of alloc_fns.h (strdup, fopen's buffer,
 * std::allocator, g_malloc, xmalloc, the user's --alloc-fn, ...).  The
 * malloc family's frames are cut off; a wrapper's frames stay in the stack,
 * before its site, so a traceback shows them, but they are no part of the
 * site's identity: every key and fingerprint starts at the site.  Every
 * model sees sites through this file: grouping and diffing (group.c), trend
 * (trend.c, via group.c's series), baselines (gate.c, baseline.c) and
 * suppressions (suppress.c).
 *
 * A site has two keys, for two uses:
 *   site_key()          what top, diff and trend group by (--by): the site's
 *                       "file:line", file, function, or its whole traceback
 *                       ("file:line function" per frame).  Symbolized, never
 *                       an address, so two runs at different load addresses
 *                       match; paths and line numbers included, as the user
 *                       reads them.
 *   site_fingerprint()  a site's identity in a baseline file: a hash of
 *                       "function file;" per frame from the site outwards
 *                       (file without its
 *                       directory; with --baseline-lines "function
 *                       file:line;"), so it survives ASLR, rebuilds in
 *                       another directory and, by default, unrelated edits.
 *                       The values are stored in users' baseline files:
 *                       never change how they are computed.
 */
#ifndef HD_SITE_H
#define HD_SITE_H

#include <stddef.h>
#include <stdint.h>

#include "alloc_fns.h"
#include "snapshot.h"
#include "symbolize.h"

/* How sites are grouped: by the site's line, file or function, or by the
 * whole traceback. */
enum site_by { BY_LINENO, BY_FILENAME, BY_FUNCTION, BY_TRACEBACK };

/* "lineno", "filename", "function" or "traceback"; 0, or -1 if none. */
int site_by_parse(const char *name, enum site_by *by);
const char *site_by_name(enum site_by by);

/* One symbolized stack: its frames from the first that is not of the
 * malloc family outwards; frames[site] is the allocation site, the frames
 * before it are allocation wrappers (0 when there are none). */
struct site_stack {
	const struct sym_frame **frames;
	int n;
	int site;
};

/* The frames of the return addresses addr[0 .. depth) of a stack of map
 * epoch `epoch` in snapshot s, inline frames expanded, innermost first;
 * *n of them.  The array is the caller's to free (NULL when depth is 0);
 * the frames belong to sym. */
const struct sym_frame **site_symbolize(struct symbolizer *sym, const struct snapshot *s, const uint64_t *addr,
					int depth, uint32_t epoch, int *n);
/* The site of frames v[0 .. n): v from its first frame that is not of the
 * malloc family (all of v when every frame is), with its site at the first
 * of those frames that is not a wrapper af looks through (NULL af: the
 * built-in list; the first of them when every frame is one).  Points into
 * v. */
struct site_stack site_of_frames(const struct sym_frame **v, int n, struct alloc_fns *af);
/* Whether f is of the malloc family (malloc, calloc, ..., operator new and
 * delete, or anything in the shim). */
int site_frame_is_allocator(const struct sym_frame *f);
/* The site frame of st (NULL for an empty stack). */
const struct sym_frame *site_frame(const struct site_stack *st);
/* st from its site outwards: no wrapper frames. */
struct site_stack site_from_site(const struct site_stack *st);

/* "file:line", or "module+0xoffset" when f has no line information.  The
 * caller frees it. */
char *site_frame_location(const struct sym_frame *f);
/* "function file:line", or "function module+0xoffset": a site as a
 * baseline file describes it.  The caller frees it. */
char *site_describe(const struct sym_frame *f);
/* The last component of a path (the path itself when it has no '/';
 * NULL for NULL). */
const char *site_base_name(const char *path);

/* The grouping key of st by `by` (for all but BY_TRACEBACK, of its site
 * frame only; for BY_TRACEBACK, of its frames from the site outwards; "??"
 * for an empty traceback).  The caller frees it. */
char *site_key(const struct site_stack *st, enum site_by by);

#define SITE_FP_SIZE 17   /* 16 hex digits and a NUL */
#define SITE_FP_FRAMES 16 /* frames hashed, from the site outwards */

/* The fingerprint of st: FNV-1a (64 bits) over the text described above,
 * from st's site outwards, as 16 hexadecimal digits into fp. */
void site_fingerprint(const struct site_stack *st, int with_lines, char fp[SITE_FP_SIZE]);

#endif /* HD_SITE_H */
