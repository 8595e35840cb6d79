/*
 * suppress.c - suppression files in LeakSanitizer's format, so the files a
 * project already has for LSan work unchanged.
 */
#include "suppress.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int suppressions_load(struct suppressions *s, const char *path)
{
	FILE *f = fopen(path, "r");
	char buf[4096];
	int lineno = 0;

	if (!f)
		return error("cannot open suppression file '%s': %s", path, strerror(errno));
	while (fgets(buf, sizeof buf, f)) {
		char *l = config_line(buf);
		lineno++;
		if (!l)
			continue;
		char *colon = strchr(l, ':');
		if (!colon || colon == l) {
			fclose(f);
			return error("'%s': line %d: expected 'leak:PATTERN', got '%s'", path, lineno, l);
		}
		*colon = 0;
		if (strcmp(l, "leak") != 0) {
			/* Other LSan/ASan kinds (e.g. interceptor_via_fun) do
			 * not apply to heapdelta: accepted, ignored. */
			continue;
		}
		if (!colon[1]) {
			fclose(f);
			return error("'%s': line %d: empty pattern after 'leak:'", path, lineno);
		}
		s->v = xrealloc(s->v, (size_t)(s->n + 1) * sizeof *s->v);
		s->v[s->n++] = (struct suppression){ xstrdup(colon + 1), xstrdup(path), lineno, 0, 0 };
	}
	fclose(f);
	return 0;
}

void suppressions_release(struct suppressions *s)
{
	for (int i = 0; i < s->n; i++) {
		free(s->v[i].pattern);
		free(s->v[i].file);
	}
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

/* `*` matches any run; the rest literally. Anchored at both ends here. */
static int glob_match(const char *p, const char *pend, const char *s, const char *send)
{
	while (p < pend) {
		if (*p == '*') {
			while (p < pend && *p == '*')
				p++;
			if (p == pend)
				return 1;
			for (const char *t = s; t <= send; t++)
				if (glob_match(p, pend, t, send))
					return 1;
			return 0;
		}
		if (s == send || *p != *s)
			return 0;
		p++;
		s++;
	}
	return s == send;
}

int suppression_template_match(const char *templ, const char *str)
{
	size_t tl = strlen(templ);
	int start = tl && templ[0] == '^', end = tl > (size_t)start && templ[tl - 1] == '$';

	if (!str || !*str)
		return 0;
	/* An unanchored side is an implicit `*`. */
	char *pat = xasprintf("%s%.*s%s", start ? "" : "*", (int)(tl - (size_t)start - (size_t)end),
			      templ + start, end ? "" : "*");
	int m = glob_match(pat, pat + strlen(pat), str, str + strlen(str));
	free(pat);
	return m;
}

struct suppression *suppressions_match(struct suppressions *s, const struct site_stack *st)
{
	for (int i = 0; i < s->n; i++)
		for (int k = 0; k < st->n; k++) {
			const struct sym_frame *f = st->frames[k];
			if (suppression_template_match(s->v[i].pattern, f->function) ||
			    (f->file && (suppression_template_match(s->v[i].pattern, f->file) ||
					 suppression_template_match(s->v[i].pattern, site_base_name(f->file)))) ||
			    suppression_template_match(s->v[i].pattern, f->module))
				return &s->v[i];
		}
	return NULL;
}
