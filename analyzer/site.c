/*
 * site.c - sites and their keys (site.h): cutting a symbolized stack at
 * its allocation site (looking through the wrappers of alloc_fns.c), the
 * grouping keys of top/diff/trend, and the fingerprints of baselines.
 */
#include "site.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static const char *const by_names[] = { "lineno", "filename", "function", "traceback" };

int site_by_parse(const char *name, enum site_by *by)
{
	for (int i = 0; i < 4; i++)
		if (!strcmp(name, by_names[i])) {
			*by = (enum site_by)i;
			return 0;
		}
	return -1;
}

const char *site_by_name(enum site_by by)
{
	return by_names[by];
}

const struct sym_frame **site_symbolize(struct symbolizer *sym, const struct snapshot *s, const uint64_t *addr,
					int depth, uint32_t epoch, int *n)
{
	const struct sym_frame **v = NULL;
	int cap = 0;

	*n = 0;
	for (int i = 0; i < depth; i++) {
		size_t k;
		const struct sym_frame *f = symbolize_addr(sym, s, addr[i], epoch, 1, &k);
		for (size_t j = 0; j < k; j++) {
			if (*n == cap) {
				cap = cap ? 2 * cap : 16;
				v = xrealloc(v, (size_t)cap * sizeof *v);
			}
			v[(*n)++] = &f[j];
		}
	}
	return v;
}

int site_frame_is_allocator(const struct sym_frame *f)
{
	static const char *const names[] = {
		"malloc", "calloc", "realloc", "reallocarray", "free", "memalign", "posix_memalign",
		"aligned_alloc", "valloc", "pvalloc", "__libc_malloc", "__libc_calloc", "__libc_realloc",
		"__libc_memalign", "__libc_valloc", "__libc_pvalloc", "__libc_reallocarray",
	};
	const char *fn = f->function;

	if (strncmp(fn, "operator new", 12) == 0 || strncmp(fn, "operator delete", 15) == 0)
		return 1;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcmp(fn, names[i]) == 0)
			return 1;
	return strcmp(f->module, "libheapdelta.so") == 0;
}

/* Native code that is not the program's own in a Python process: the
 * interpreter (python3.11, libpython3.11.so) and the system libraries it
 * calls (lib*.so*, the loader), and the standard library's C modules
 * (_asyncio.cpython-311-x86_64-linux-gnu.so...: their names start with an
 * underscore; a package's private C module named so is taken for one too,
 * and its allocations go to the Python line that called it).  Any other C
 * extension module (foo.so, foo.cpython-311-x86_64-linux-gnu.so) is the
 * program's. */
static int interpreter_frame(const struct sym_frame *f)
{
	return !f->python && (strncmp(f->module, "python", 6) == 0 || strncmp(f->module, "lib", 3) == 0 ||
			      strncmp(f->module, "ld-", 3) == 0 || strcmp(f->module, "?") == 0 ||
			      /* the standard library's C accelerators: _asyncio, _json, _pickle... */
			      (f->module[0] == '_' && strstr(f->module, ".cpython-")));
}

/* A stack that runs Python: its site is the innermost frame of the
 * program's own code, Python or native outside the interpreter (a C
 * extension), as tracemalloc names the Python line where it sees one, that
 * is no wrapper af looks through (a Python function named by --alloc-fn).
 * Other stacks keep `site`. */
/* A Python frame of the standard library (or frozen into the
 * interpreter), not of the program: its file is under a lib/python3.N
 * folder outside site-packages and dist-packages. */
static int stdlib_frame(const struct sym_frame *f)
{
	const char *file = f->file ? f->file : "";

	if (strncmp(file, "<frozen ", 8) == 0)
		return 1;
	return strstr(file, "/lib/python3.") && !strstr(file, "/site-packages/") && !strstr(file, "/dist-packages/");
}

static int python_site(const struct sym_frame **v, int n, int site, struct alloc_fns *af)
{
	int first_python = -1;

	for (int i = site; i < n && first_python < 0; i++)
		if (v[i]->python)
			first_python = i;
	if (first_python < 0)
		return site;
	/* The program's own code: its Python, or its C extensions; the
	 * standard library's lines (asyncio's create_task...) are looked
	 * through to the line that called them, as a C wrapper is. */
	for (int i = site; i < n; i++)
		if ((v[i]->python ? !stdlib_frame(v[i]) : !interpreter_frame(v[i])) && !alloc_fns_match(af, v[i]))
			return i;
	return first_python;   /* nothing but the interpreter and its library */
}

struct site_stack site_of_frames(const struct sym_frame **v, int n, struct alloc_fns *af)
{
	int base = 0, site;

	while (base < n && site_frame_is_allocator(v[base]))
		base++;
	if (base == n)
		base = 0;
	/* The malloc family may be called between wrappers, too. */
	for (site = base; site < n; site++)
		if (!site_frame_is_allocator(v[site]) && !alloc_fns_match(af, v[site]))
			break;
	if (site == n)
		site = base;
	if (!af || !af->native_site)
		site = python_site(v, n, site, af);
	return (struct site_stack){ v ? v + base : NULL, n - base, site - base };
}

const struct sym_frame *site_frame(const struct site_stack *st)
{
	return st->n ? st->frames[st->site] : NULL;
}

struct site_stack site_from_site(const struct site_stack *st)
{
	if (!st->n)
		return *st;
	return (struct site_stack){ st->frames + st->site, st->n - st->site, 0 };
}

char *site_frame_location(const struct sym_frame *f)
{
	if (f->file)
		return xasprintf("%s:%d", f->file, f->line);
	return xasprintf("%s+0x%llx", f->module, (unsigned long long)f->offset);
}

char *site_describe(const struct sym_frame *f)
{
	if (f->file)
		return xasprintf("%s %s:%d", f->function, f->file, f->line);
	return xasprintf("%s %s+0x%llx", f->function, f->module, (unsigned long long)f->offset);
}

const char *site_base_name(const char *path)
{
	const char *s = path ? strrchr(path, '/') : NULL;

	return s ? s + 1 : path;
}

/* The key of one frame, for every `by` but BY_TRACEBACK. */
static char *frame_key(const struct sym_frame *f, enum site_by by)
{
	switch (by) {
	case BY_FILENAME:
		return xstrdup(f->file ? f->file : f->module);
	case BY_FUNCTION:
		if (strcmp(f->function, "??") == 0)
			return site_frame_location(f);
		return xstrdup(f->function);
	case BY_LINENO:
	case BY_TRACEBACK:
		break;
	}
	return site_frame_location(f);
}

/* "file:line function" per frame, one line each. */
static char *traceback_key(const struct site_stack *st)
{
	struct strbuf sb = STRBUF_INIT;

	for (int i = 0; i < st->n; i++) {
		char *loc = site_frame_location(st->frames[i]);
		strbuf_addf(&sb, "%s%s %s", i ? "\n" : "", loc, st->frames[i]->function);
		free(loc);
	}
	if (!sb.buf)
		strbuf_adds(&sb, "??");
	return sb.buf;
}

char *site_key(const struct site_stack *st, enum site_by by)
{
	struct site_stack from = site_from_site(st);

	if (by == BY_TRACEBACK || !st->n)
		return traceback_key(&from);
	return frame_key(site_frame(st), by);
}

void site_fingerprint(const struct site_stack *st, int with_lines, char fp[SITE_FP_SIZE])
{
	struct strbuf sb = STRBUF_INIT;
	uint64_t h = 0xcbf29ce484222325u;

	for (int i = st->site; i < st->n && i - st->site < SITE_FP_FRAMES; i++) {
		const struct sym_frame *f = st->frames[i];
		if (f->file && with_lines)
			strbuf_addf(&sb, "%s %s:%d;", f->function, site_base_name(f->file), f->line);
		else
			strbuf_addf(&sb, "%s %s;", f->function, f->file ? site_base_name(f->file) : f->module);
	}
	for (const unsigned char *c = (const unsigned char *)(sb.buf ? sb.buf : ""); *c; c++)
		h = (h ^ *c) * 0x100000001b3u;
	snprintf(fp, SITE_FP_SIZE, "%016llx", (unsigned long long)h);
	strbuf_release(&sb);
}
