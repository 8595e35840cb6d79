/*
 * alloc_fns.c - the allocation functions sites look through (alloc_fns.h):
 * the built-in list, kept here and nowhere else, the user's expressions
 * from the command line, the environment and a file, and the matcher.
 *
 * A frame is an allocation function when its module or source file is one
 * of the list's (glibc and libstdc++ are matched by module: any of their
 * functions allocates for the program's line that called into them, and
 * their internal names change from one version to the next), or when its
 * function's name matches one expression.  Names are matched once each
 * (cached); modules and files are cheap globs.
 */
#include "alloc_fns.h"
#include "symbolize.h"
#include "cmd.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum rule_kind { RULE_FUNCTION, RULE_MODULE, RULE_FILE };

/* The built-in list.  A function rule is a POSIX extended regular
 * expression on the name without its return type, or on the bare name
 * (alloc_fns_bare_name());
 * a module rule an fnmatch glob on the module's file name; a file rule a
 * glob on the frame's source path. */
static const struct rule {
	const char *family;
	enum rule_kind kind;
	const char *pattern;
	const char *what;
} builtin[] = {
	{ "glibc", RULE_MODULE, "libc.so.6",
	  "every function of the C library: strdup, strndup, asprintf, vasprintf, getline, getdelim, realpath, "
	  "fopen and fdopen (the FILE), the stdio buffer a stream allocates on its first read or write "
	  "(_IO_file_doallocate, behind printf, fprintf, fgets, ...), qsort's buffer, opendir, getaddrinfo, "
	  "setlocale, ..." },
	{ "glibc", RULE_MODULE, "ld-linux*.so*", "the dynamic loader: dlopen, the thread-local storage of new threads" },
	{ "glibc", RULE_FILE, "/usr/include/*-linux-gnu/bits/*",
	  "glibc's inline wrappers in its headers: getline, the _FORTIFY_SOURCE versions of realpath and others" },
	{ "glibc", RULE_FILE, "/usr/include/bits/*", "the same, on systems without multiarch directories" },
	{ "glibc", RULE_FUNCTION, "_start", "the program's entry: what the C library allocates around main" },
	{ "libstdc++", RULE_MODULE, "libstdc++.so*",
	  "the C++ runtime's own code: std::string growth (_M_mutate, _M_create), locales, iostreams, "
	  "exceptions (__cxa_allocate_exception)" },
	{ "libstdc++", RULE_FUNCTION, "std::.*",
	  "the standard library's templates compiled into the program: std::allocator<T>::allocate, "
	  "std::__new_allocator<T>::allocate, std::allocator_traits, a container's growth "
	  "(std::vector<T>::_M_realloc_insert), std::make_shared, ..." },
	{ "libstdc++", RULE_FUNCTION, "__gnu_cxx::.*", "__gnu_cxx::new_allocator<T>::allocate (GCC 11 and older), "
	  "__gnu_cxx::__alloc_traits" },
	{ "GLib", RULE_FUNCTION, "g_(try_)?(malloc|malloc0|realloc)(_n)?",
	  "g_malloc, g_malloc0, g_realloc, g_try_malloc, g_malloc_n (behind g_new and g_new0), ..." },
	{ "GLib", RULE_FUNCTION, "g_slice_(alloc|alloc0|copy)|g_memdup2?|g_aligned_alloc0?",
	  "g_slice_alloc, g_slice_alloc0, g_slice_copy, g_memdup, g_memdup2, g_aligned_alloc" },
	{ "GLib", RULE_FUNCTION, "g_strn?dup|g_strdupv|g_strdup_v?printf|g_strconcat|g_strjoinv?",
	  "g_strdup, g_strndup, g_strdupv, g_strdup_printf, g_strconcat, g_strjoin" },
	{ "xmalloc", RULE_FUNCTION,
	  "x(i?n?malloc|mallocz(_gently)?|i?zalloc|i?calloc|i?n?realloc|i?reallocarray|2n?realloc|palloc|"
	  "i?memdup0?|memdupz|strn?dup|v?asprintf|charalloc)|do_xmalloc",
	  "gnulib, libiberty (binutils, GCC) and git: xmalloc, xcalloc, xrealloc, xzalloc, xnmalloc, xstrdup, "
	  "xstrndup, xmemdup, xasprintf, xmallocz, ..." },
	{ "redis", RULE_FUNCTION, "z(try)?(malloc|calloc|realloc)(_usable|_usable_internal|_num|_no_tcache)?|zstrdup",
	  "zmalloc, zcalloc, zrealloc, ztrymalloc, ztrymalloc_usable, zcalloc_num, zstrdup, ..." },
	{ "SQLite", RULE_FUNCTION,
	  "sqlite3(_malloc(64)?|_realloc(64)?|Malloc(Zero)?|Realloc|DbMalloc(Raw(NN)?|Zero)|DbRealloc(OrFree)?|"
	  "DbStrN?Dup|DbSpanDup|MemMalloc|MemRealloc)|dbMallocRawFinish|dbReallocFinish|mallocWithAlarm",
	  "sqlite3_malloc, sqlite3Malloc, sqlite3MallocZero, sqlite3DbMallocRaw, sqlite3DbRealloc, sqlite3DbStrDup, "
	  "..." },
	{ "CPython", RULE_FUNCTION,
	  "_?PyMem_(Raw)?(Malloc|Calloc|Realloc)|_PyMem_Debug(Raw)?(Malloc|Calloc|Realloc|Alloc)|"
	  "_?PyObject_(Malloc|Calloc|Realloc)|pymalloc_(alloc|realloc)",
	  "PyMem_Malloc, PyMem_RawMalloc, PyObject_Malloc and their internals, in native stacks" },
};

#define NBUILTIN (sizeof builtin / sizeof builtin[0])

const struct option alloc_fns_options[] = {
	{ "alloc-fn", required_argument, NULL, ALLOC_OPT_FN },
	{ "alloc-fns-file", required_argument, NULL, ALLOC_OPT_FILE },
	{ "no-default-alloc-fns", no_argument, NULL, ALLOC_OPT_NO_DEFAULTS },
	{ "native-site", no_argument, NULL, ALLOC_OPT_NATIVE_SITE },
	{ NULL, 0, NULL, 0 },
};

struct option *options_join(const struct option *own, const struct option *more)
{
	size_t a = 0, b = 0;

	while (own[a].name)
		a++;
	while (more[b].name)
		b++;
	struct option *v = xcalloc(a + b + 1, sizeof *v);
	memcpy(v, own, a * sizeof *v);
	memcpy(v + a, more, b * sizeof *v);
	return v;   /* v[a + b] is zeroed: the terminator */
}

struct option *site_command_options(struct option **cache, const struct option *own)
{
	if (!*cache) {
		struct option *v = options_join(own, alloc_fns_options);
		*cache = options_join(v, symbolize_options);
		free(v);
	}
	return *cache;
}

int site_command_option(const char *cmd, struct alloc_fns *af, int c, const char *arg)
{
	if (alloc_fns_owns(c))
		return alloc_fns_option(cmd, af, c, arg) < 0 ? -1 : 1;
	if (symbolize_owns(c))
		return symbolize_option(cmd, c, arg) < 0 ? -1 : 1;
	return 0;
}

void alloc_fns_init(struct alloc_fns *af)
{
	memset(af, 0, sizeof *af);
}

void alloc_fns_release(struct alloc_fns *af)
{
	for (int i = 0; i < af->npatterns; i++) {
		free(af->patterns[i]);
		free(af->origins[i]);
	}
	free(af->patterns);
	free(af->origins);
	if (af->have_re)
		regfree(&af->re);
	strmap_release(&af->cache);
	free(af->known);
	memset(af, 0, sizeof *af);
}

/* Whether pattern compiles as a POSIX extended regular expression. */
static int valid_regex(const char *pattern)
{
	regex_t re;

	if (!*pattern || regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
		return 0;
	regfree(&re);
	return 1;
}

static void add_pattern(struct alloc_fns *af, const char *pattern, char *origin)
{
	af->patterns = xrealloc(af->patterns, (size_t)(af->npatterns + 1) * sizeof *af->patterns);
	af->origins = xrealloc(af->origins, (size_t)(af->npatterns + 1) * sizeof *af->origins);
	af->patterns[af->npatterns] = xstrdup(pattern);
	af->origins[af->npatterns++] = origin;
}

int alloc_fns_option(const char *cmd, struct alloc_fns *af, int c, const char *arg)
{
	switch (c) {
	case ALLOC_OPT_FN:
		if (!valid_regex(arg)) {
			usage_error(cmd, "--alloc-fn: invalid regular expression '%s'", arg);
			return -1;
		}
		add_pattern(af, arg, xstrdup("--alloc-fn"));
		return 0;
	case ALLOC_OPT_FILE:
		af->file = arg;
		return 0;
	case ALLOC_OPT_NO_DEFAULTS:
		af->no_defaults = 1;
		return 0;
	case ALLOC_OPT_NATIVE_SITE:
		af->native_site = 1;
		return 0;
	}
	usage_error(cmd, "unknown option");
	return -1;
}

/* HEAPDELTA_ALLOC_FNS: expressions separated by newlines or single colons. */
static int load_env(struct alloc_fns *af)
{
	const char *v = getenv(ALLOC_FNS_ENV);
	struct strbuf cur = STRBUF_INIT;

	if (!v)
		return 0;
	for (const char *p = v;; p++) {
		int colon = *p == ':' && p[1] != ':' && (p == v || p[-1] != ':');
		if (*p && *p != '\n' && !colon) {
			strbuf_add(&cur, p, 1);
			continue;
		}
		if (cur.buf && *cur.buf) {
			if (!valid_regex(cur.buf)) {
				error(ALLOC_FNS_ENV ": invalid regular expression '%s'", cur.buf);
				strbuf_release(&cur);
				return -1;
			}
			add_pattern(af, cur.buf, xstrdup(ALLOC_FNS_ENV));
		}
		strbuf_release(&cur);
		if (!*p)
			return 0;
	}
}

/* Open path for reading if it is a regular file, without ever blocking on
 * a FIFO or a device; NULL with errno set otherwise. */
static FILE *open_regular(const char *path)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	struct stat st;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		errno = EINVAL;
		return NULL;
	}
	FILE *f = fdopen(fd, "r");
	if (!f)
		close(fd);
	return f;
}

/* The file's expressions, one a line.  A missing default file is no
 * error. */
static int load_file(struct alloc_fns *af)
{
	const char *path = af->file ? af->file : ALLOC_FNS_FILE;
	FILE *f = open_regular(path);
	char buf[4096];
	int lineno = 0;

	if (!f) {
		if (!af->file && errno == ENOENT)
			return 0;
		return error("cannot read allocation functions file '%s': %s", path,
			     errno == EINVAL ? "not a regular file" : strerror(errno));
	}
	while (fgets(buf, sizeof buf, f)) {
		char *l = config_line(buf);
		lineno++;
		if (!l)
			continue;
		if (!valid_regex(l)) {
			fclose(f);
			return error("'%s': line %d: invalid regular expression '%s'", path, lineno, l);
		}
		add_pattern(af, l, xasprintf("'%s': line %d", path, lineno));
	}
	fclose(f);
	return 0;
}

/* Every function expression, built-in and the user's, as one. */
static void compile(struct alloc_fns *af)
{
	struct strbuf sb = STRBUF_INIT;

	if (af->loaded)
		return;
	for (size_t i = 0; i < NBUILTIN && !af->no_defaults; i++)
		if (builtin[i].kind == RULE_FUNCTION)
			strbuf_addf(&sb, "%s^(%s)$", sb.buf ? "|" : "", builtin[i].pattern);
	for (int i = 0; i < af->npatterns; i++)
		strbuf_addf(&sb, "%s^(%s)$", sb.buf ? "|" : "", af->patterns[i]);
	/* Each part compiled alone before, so the whole compiles too. */
	if (sb.buf && regcomp(&af->re, sb.buf, REG_EXTENDED | REG_NOSUB) == 0)
		af->have_re = 1;
	strbuf_release(&sb);
	af->loaded = 1;
}

int alloc_fns_load(struct alloc_fns *af)
{
	if (load_env(af) < 0 || load_file(af) < 0)
		return -1;
	compile(af);
	return 0;
}

struct alloc_fns *alloc_fns_default(void)
{
	static struct alloc_fns def;

	compile(&def);
	return &def;
}

/* The last occurrence of needle in s[0 .. len), or NULL. */
static const char *last_in(const char *s, size_t len, const char *needle)
{
	size_t n = strlen(needle);

	for (size_t i = len >= n ? len - n + 1 : 0; i-- > 0;)
		if (!memcmp(s + i, needle, n))
			return s + i;
	return NULL;
}

/* The bare name of fn is fn[*start .. *stop): *start past the return type
 * (a C++ template function's), *stop before the parameter list and clone
 * suffixes. */
static void name_parts(const char *fn, size_t *start, size_t *stop)
{
	size_t len = strlen(fn), end;
	const char *p;

	/* " [clone .constprop.0]", as the demangler writes a clone. */
	while (len && fn[len - 1] == ']' && (p = last_in(fn, len, " [clone ")))
		len = (size_t)(p - fn);
	/* A C function's clones, as GCC names them: "xmalloc.constprop.0",
	 * "f.part.0", "f.cold" (not a Python name such as "Pool.get"). */
	static const char *const clones[] = { ".constprop.", ".isra.", ".part.", ".cold", ".lto_priv.", ".localalias" };
	for (size_t i = 0; i < sizeof clones / sizeof clones[0]; i++)
		if ((p = strstr(fn, clones[i])) && p > fn && (size_t)(p - fn) < len && !memchr(fn, '(', (size_t)(p - fn)))
			len = (size_t)(p - fn);
	/* The parameter list, and the qualifiers after it (" const", " &&"). */
	for (end = len; end && (isalpha((unsigned char)fn[end - 1]) || fn[end - 1] == ' ' || fn[end - 1] == '&');)
		end--;
	if (end && fn[end - 1] == ')') {
		int depth = 0;
		size_t i = end;
		while (i-- > 0) {
			if (fn[i] == ')')
				depth++;
			else if (fn[i] == '(' && --depth == 0)
				break;
		}
		if (depth == 0 && i > 0 && i < end)
			len = i;
	}
	/* The return type: up to the last space outside brackets, before any
	 * "operator" (whose name may hold spaces and brackets). */
	int depth = 0;
	*start = 0;
	for (size_t i = 0; i < len; i++) {
		if (depth == 0 && !strncmp(fn + i, "operator", 8) && (i == 0 || fn[i - 1] == ':' || fn[i - 1] == ' '))
			break;
		char c = fn[i];
		if (c == '<' || c == '(' || c == '[' || c == '{')
			depth++;
		else if ((c == '>' || c == ')' || c == ']' || c == '}') && depth > 0)
			depth--;
		else if (c == ' ' && depth == 0)
			*start = i + 1;
	}
	*stop = len;
}

char *alloc_fns_bare_name(const char *fn)
{
	size_t start, stop;

	name_parts(fn, &start, &stop);
	return xstrndup(fn + start, stop - start);
}

char *alloc_fns_regex_for(const char *function)
{
	char *bare = alloc_fns_bare_name(function);
	struct strbuf sb = STRBUF_INIT;

	for (const char *c = bare; *c; c++) {
		if (strchr(".[]()*+?{}|^$\\", *c))
			strbuf_add(&sb, "\\", 1);
		strbuf_add(&sb, c, 1);
	}
	free(bare);
	if (!sb.buf)
		strbuf_adds(&sb, "");
	return sb.buf;
}

/* Whether a function name matches an expression, without its return type
 * (which may name anything: "std::vector<int> app::make<int>(int)") or
 * bare; cached by name. */
static int name_matches(struct alloc_fns *af, const char *fn)
{
	int fresh;

	if (!af->have_re || !strcmp(fn, "??"))
		return 0;
	uint64_t id = strmap_get(&af->cache, fn, af->cache.n, &fresh);
	if (fresh) {
		size_t start, stop;
		af->known = xrealloc(af->known, (size_t)id + 1);
		name_parts(fn, &start, &stop);
		int m = regexec(&af->re, fn + start, 0, NULL, 0) == 0;
		if (!m && (start || fn[stop])) {
			char *bare = xstrndup(fn + start, stop - start);
			m = regexec(&af->re, bare, 0, NULL, 0) == 0;
			free(bare);
		}
		af->known[id] = m ? 1 : 2;
	}
	return af->known[id] == 1;
}

int alloc_fns_match(struct alloc_fns *af, const struct sym_frame *f)
{
	if (!af)
		af = alloc_fns_default();
	compile(af);
	for (size_t i = 0; i < NBUILTIN && !af->no_defaults; i++) {
		const struct rule *r = &builtin[i];
		if (r->kind == RULE_MODULE && fnmatch(r->pattern, f->module, 0) == 0)
			return 1;
		if (r->kind == RULE_FILE && f->file && fnmatch(r->pattern, f->file, 0) == 0)
			return 1;
	}
	return name_matches(af, f->function);
}

/* text, wrapped at 78 columns, each line indented by `indent`. */
static void print_wrapped(FILE *out, const char *text, int indent)
{
	int col = 0;

	while (*text) {
		size_t w = strcspn(text, " ");
		if (col && col + 1 + (int)w > 78) {
			fputc('\n', out);
			col = 0;
		}
		if (!col)
			col = fprintf(out, "%*s", indent, "");
		else
			col += fprintf(out, " ");
		col += fprintf(out, "%.*s", (int)w, text);
		text += w;
		while (*text == ' ')
			text++;
	}
	fputc('\n', out);
}

void alloc_fns_print_builtin(FILE *out)
{
	static const char *const kinds[] = { "function", "module", "file" };
	const char *family = NULL;

	for (size_t i = 0; i < NBUILTIN; i++) {
		const struct rule *r = &builtin[i];
		if (!family || strcmp(family, r->family))
			fprintf(out, "%s%s:\n", family ? "\n" : "", r->family);
		family = r->family;
		fprintf(out, "  %s %s\n", kinds[r->kind], r->pattern);
		print_wrapped(out, r->what, 6);
	}
}
