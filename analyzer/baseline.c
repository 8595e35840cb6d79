/*
 * baseline.c - baseline files: what a passing build left not freed, per
 * site, so `heapdelta check --baseline` fails only on what is new or grew.
 *
 * The file is text, one site a line after a header that says how its
 * fingerprints were computed (site_fingerprint(), with or without line
 * numbers):
 *
 *   # heapdelta baseline 1 nolines
 *   # fingerprint bytes count site (...)
 *   35e98cfb1bfa11d9 1000 10 known_leak /src/leaky.c:14
 *
 * Users commit these files: their format and fingerprints must not change.
 */
#include "gate.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HEADER "# heapdelta baseline 1 "

/* One line of the file after the header: 0 (an entry or a line to skip:
 * *skip set) or -1 when malformed. */
static int parse_line(char *buf, struct baseline_entry *e, int *skip)
{
	long long b, c;
	char fp[SITE_FP_SIZE];
	int off = 0;

	*skip = buf[0] == '#' || !buf[0];
	if (*skip)
		return 0;
	if (sscanf(buf, "%16[0-9a-f] %lld %lld %n", fp, &b, &c, &off) < 3 || strlen(fp) != 16 || b < 0 || c < 0)
		return -1;
	memcpy(e->fp, fp, SITE_FP_SIZE);
	e->bytes = b;
	e->count = c;
	e->desc = xstrdup(buf + off);
	e->used = 0;
	return 0;
}

int baseline_read(struct baseline *b, const char *path)
{
	FILE *f = fopen(path, "r");
	char buf[8192];
	int lineno = 0, rc = 0;

	memset(b, 0, sizeof *b);
	if (!f)
		return error("cannot open baseline '%s': %s", path, strerror(errno));
	while (!rc && fgets(buf, sizeof buf, f)) {
		struct baseline_entry e;
		int skip;
		lineno++;
		buf[strcspn(buf, "\n")] = 0;
		if (lineno == 1) {
			if (strncmp(buf, HEADER, strlen(HEADER)) != 0)
				rc = error("'%s': line 1: not a heapdelta baseline", path);
			b->lines = strcmp(buf + strlen(HEADER), "lines") == 0;
		} else if (parse_line(buf, &e, &skip) < 0) {
			rc = error("'%s': line %d: expected 'FINGERPRINT BYTES COUNT SITE'", path, lineno);
		} else if (!skip) {
			b->v = xrealloc(b->v, (b->n + 1) * sizeof *b->v);
			b->v[b->n++] = e;
		}
	}
	fclose(f);
	return rc;
}

void baseline_release(struct baseline *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->v[i].desc);
	free(b->v);
	memset(b, 0, sizeof *b);
}

/* The first unused entry with fingerprint fp, or NULL. */
static struct baseline_entry *find(struct baseline *b, const char *fp)
{
	for (size_t k = 0; k < b->n; k++)
		if (!b->v[k].used && !strcmp(b->v[k].fp, fp))
			return &b->v[k];
	return NULL;
}

void baseline_compare(struct gate *g, struct baseline *b)
{
	int64_t slack = g->o->slack;

	for (size_t i = 0; i < g->nsites; i++) {
		struct gate_site *s = &g->sites[i];
		if (b->lines != g->o->baseline_lines)
			site_fingerprint(&s->e->tb, b->lines, s->fp);
		struct baseline_entry *match = find(b, s->fp);
		if (s->supp)
			continue;
		if (match) {
			match->used = 1;
			s->base_bytes = match->bytes;
			s->base_count = match->count;
			s->base = s->e->size > match->bytes + slack ? BASE_GREW : BASE_UNCHANGED;
		} else if (s->e->size || s->e->count) {
			/* Without slack, any site not in the baseline is new,
			 * zero-byte blocks included. */
			s->base = s->e->size > slack || !slack ? BASE_NEW : BASE_UNCHANGED;
		}
		if (s->base == BASE_NEW || s->base == BASE_GREW)
			s->fails |= FAIL_BASELINE;
	}
	for (size_t k = 0; k < b->n; k++) {
		if (b->v[k].used)
			continue;
		g->gone = xrealloc(g->gone, (g->ngone + 1) * sizeof *g->gone);
		struct gate_gone *gone = &g->gone[g->ngone++];
		memcpy(gone->fp, b->v[k].fp, SITE_FP_SIZE);
		gone->desc = b->v[k].desc;
		gone->bytes = b->v[k].bytes;
		gone->count = b->v[k].count;
		b->v[k].desc = NULL;
	}
}

int baseline_write(const struct gate *g, const char *path)
{
	char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
	FILE *f = fopen(tmp, "w");

	if (!f) {
		error("cannot write baseline '%s': %s", path, strerror(errno));
		free(tmp);
		return -1;
	}
	fprintf(f, HEADER "%s\n", g->o->baseline_lines ? "lines" : "nolines");
	fprintf(f, "# fingerprint bytes count site (bytes and count not freed at the last snapshot)\n");
	for (size_t i = 0; i < g->nsites; i++) {
		const struct gate_site *s = &g->sites[i];
		if (s->supp || (!s->e->size && !s->e->count))
			continue;
		char *d = site_describe(s->e->site);
		fprintf(f, "%s %lld %lld %s\n", s->fp, (long long)s->e->size, (long long)s->e->count, d);
		free(d);
	}
	int bad = ferror(f);
	bad |= fclose(f) != 0;
	if (bad || rename(tmp, path) < 0) {
		error("cannot write baseline '%s': %s", path, strerror(errno));
		unlink(tmp);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}
