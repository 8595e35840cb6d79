/*
 * alloc_fns.h - allocation functions beyond the malloc family: wrappers
 * that allocate on behalf of their caller (strdup, fopen's buffers,
 * std::allocator, g_malloc, xmalloc, zmalloc, sqlite3Malloc, PyMem_Malloc,
 * ...).  When a stack's site is chosen (site.c), frames of such functions
 * are looked through, so the site is the line that asked for the memory;
 * they stay in the stack, shown as part of its traceback.
 *
 * What counts as one: the built-in list (alloc_fns.c, one table, printed
 * by `heapdelta help sites`), unless --no-default-alloc-fns; then the
 * user's regular expressions from --alloc-fn, from HEAPDELTA_ALLOC_FNS and
 * from a file (.heapdelta-alloc-fns in the current directory, or
 * --alloc-fns-file).  A regular expression (POSIX extended) must match a
 * function's whole name without its return type (a C++ template
 * function's demangled name starts with one), or its bare name, without
 * parameter list and clone suffix too ("Pool::get" matches
 * "Pool::get(unsigned long) const", "xmalloc" matches "xmalloc.constprop.0",
 * "std::.*" does not match "std::vector<int> app::make<int>(int)").
 *
 * Every command that chooses sites takes the options below through
 * alloc_fns_options[] and alloc_fns_option(), then alloc_fns_load() before
 * its model runs.  Matching is cached per function name: a snapshot of a
 * large program has tens of thousands of stacks but a few thousand
 * distinct functions.
 */
#ifndef HD_ALLOC_FNS_H
#define HD_ALLOC_FNS_H

#include <getopt.h>
#include <regex.h>
#include <stdio.h>

#include "symbolize.h"
#include "util.h"

struct alloc_fns {
	int no_defaults;         /* --no-default-alloc-fns */
	int native_site;         /* --native-site: a Python stack's site is chosen as a native one's */
	const char *file;        /* --alloc-fns-file; NULL: the default file if present */
	char **patterns;         /* the user's regular expressions, in order */
	char **origins;          /* where each came from, for messages */
	int npatterns;
	int loaded;              /* alloc_fns_load() done */
	/* Compiled: the built-in function rules and the user's, one regex. */
	regex_t re;
	int have_re;
	struct strmap cache;     /* function name -> index into known */
	unsigned char *known;    /* 1: a wrapper by name, 2: not */
	size_t nknown;
};

/* getopt_long values of the options: above the gate's (512 and up). */
enum { ALLOC_OPT_FN = 768, ALLOC_OPT_FILE, ALLOC_OPT_NO_DEFAULTS, ALLOC_OPT_NATIVE_SITE, ALLOC_OPT_END };

/* Is getopt_long's value c one of these options (for alloc_fns_option)? */
static inline int alloc_fns_owns(int c)
{
	return c >= ALLOC_OPT_FN && c < ALLOC_OPT_END;
}

/* --alloc-fn REGEX, --alloc-fns-file FILE, --no-default-alloc-fns;
 * terminated by a NULL name. */
extern const struct option alloc_fns_options[];
/* The default file, looked for in the current directory. */
#define ALLOC_FNS_FILE ".heapdelta-alloc-fns"
#define ALLOC_FNS_ENV "HEAPDELTA_ALLOC_FNS"

/* The options own, then more (each terminated by a NULL name), in one
 * array, terminated; the caller frees it. */
struct option *options_join(const struct option *own, const struct option *more);

/* The options of a command that groups sites (stats, trend, report,
 * watch): own, then alloc_fns_options and symbolize_options, joined on the
 * first call into *cache and kept until exit. */
struct option *site_command_options(struct option **cache, const struct option *own);
/* Apply option c when it is one of alloc_fns_options or symbolize_options:
 * 1 when applied, 0 when it is neither, -1 after a usage message for
 * command cmd. */
int site_command_option(const char *cmd, struct alloc_fns *af, int c, const char *arg);

void alloc_fns_init(struct alloc_fns *af);
void alloc_fns_release(struct alloc_fns *af);
/* Apply option c (ALLOC_OPT_*) with its argument: 0, or -1 after a usage
 * message for command cmd (an invalid regular expression). */
int alloc_fns_option(const char *cmd, struct alloc_fns *af, int c, const char *arg);
/* Add the expressions of HEAPDELTA_ALLOC_FNS (separated by newlines or by
 * single colons; "::" belongs to a name) and of the file (one a line,
 * blank lines and # comments skipped), and compile everything.  0, or -1
 * after one error line (unreadable file given with --alloc-fns-file, an
 * invalid expression: where it came from and the expression). */
int alloc_fns_load(struct alloc_fns *af);
/* The built-in list alone (loaded once, never released): what a model
 * uses when it is given no alloc_fns. */
struct alloc_fns *alloc_fns_default(void);

/* Whether f is a frame of an allocation function that af looks through:
 * in a module or source file of the built-in list, or a function whose
 * name matches (NULL af: the built-in list). */
int alloc_fns_match(struct alloc_fns *af, const struct sym_frame *f);
/* The name an expression may match besides the whole name: without
 * return type, parameter list, qualifiers after it, and clone suffixes
 * (".constprop.0", " [clone .cold]").  The caller frees it. */
char *alloc_fns_bare_name(const char *function);
/* An expression that matches exactly function's bare name (its regular
 * expression characters escaped).  The caller frees it. */
char *alloc_fns_regex_for(const char *function);

/* The built-in list as `heapdelta help sites` prints it. */
void alloc_fns_print_builtin(FILE *out);

#endif /* HD_ALLOC_FNS_H */
