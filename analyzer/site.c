/*
 * site.c - sites and their keys (site.h): cutting a symbolized stack at
 * its allocation site, the grouping keys of top/diff/trend, and the
 * fingerprints of baselines.
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

struct site_stack site_of_frames(const struct sym_frame **v, int n)
{
	int site = 0;

	while (site < n && site_frame_is_allocator(v[site]))
		site++;
	if (site == n)
		site = 0;
	return (struct site_stack){ v ? v + site : NULL, n - site };
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
	if (by == BY_TRACEBACK || !st->n)
		return traceback_key(st);
	return frame_key(st->frames[0], by);
}

void site_fingerprint(const struct site_stack *st, int with_lines, char fp[SITE_FP_SIZE])
{
	struct strbuf sb = STRBUF_INIT;
	uint64_t h = 0xcbf29ce484222325u;

	for (int i = 0; i < st->n && i < SITE_FP_FRAMES; i++) {
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
