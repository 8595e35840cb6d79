/*
 * baseline.c - baseline files: what a passing build left not freed, per
 * site, so `heapdelta check --baseline` fails only on what is new or grew.
 *
 * The file is text, one entry a line after a header that says how its
 * fingerprints were computed (site_fingerprint(), with or without line
 * numbers).  Format 1, from snapshots not classified by reachability, has
 * one line per site:
 *
 *   # heapdelta baseline 1 nolines
 *   # fingerprint bytes count site (...)
 *   35e98cfb1bfa11d9 1000 10 known_leak /src/leaky.c:14
 *
 * Format 2, from snapshots classified by reachability, one line per site
 * and kind (definite, indirect, possible, reachable, or unclassified for a
 * process whose snapshot was not classified):
 *
 *   # heapdelta baseline 2 nolines
 *   # fingerprint kind bytes count site (...)
 *   35e98cfb1bfa11d9 definite 1000 10 known_leak /src/leaky.c:14
 *
 * Users commit these files: their format and fingerprints must not change.
 */
#include "gate.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HEADER "# heapdelta baseline "

/* A kind's name in a format 2 file; BASELINE_ANY_KIND is "unclassified". */
static const char *kind_name(int kind)
{
	return snapshot_reach_kind_name(kind);
}

/* One line of the file after the header: 0 (an entry or a line to skip:
 * *skip set) or -1 when malformed. */
static int parse_line(char *buf, int format, struct baseline_entry *e, int *skip)
{
	long long b, c;
	char fp[SITE_FP_SIZE], kind[16] = "unclassified";
	int off = 0, n;

	*skip = buf[0] == '#' || !buf[0];
	if (*skip)
		return 0;
	if (format == 1)
		n = sscanf(buf, "%16[0-9a-f] %lld %lld %n", fp, &b, &c, &off) - 3;
	else
		n = sscanf(buf, "%16[0-9a-f] %15[a-z] %lld %lld %n", fp, kind, &b, &c, &off) - 4;
	if (n < 0 || strlen(fp) != 16 || b < 0 || c < 0)
		return -1;
	e->kind = BASELINE_ANY_KIND;
	for (int k = 0; k < HD_REACH_NKINDS; k++)
		if (!strcmp(kind, kind_name(k)))
			e->kind = k;
	if (e->kind == BASELINE_ANY_KIND && strcmp(kind, "unclassified"))
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
	int lineno = 0, rc = 0, format = 1;

	memset(b, 0, sizeof *b);
	if (!f)
		return error("cannot open baseline '%s': %s", path, strerror(errno));
	while (!rc && fgets(buf, sizeof buf, f)) {
		struct baseline_entry e;
		int skip;
		lineno++;
		buf[strcspn(buf, "\n")] = 0;
		if (lineno == 1) {
			const char *rest = buf + strlen(HEADER);
			if (strncmp(buf, HEADER, strlen(HEADER)) != 0 || (rest[0] != '1' && rest[0] != '2') || rest[1] != ' ')
				rc = error("'%s': line 1: not a heapdelta baseline", path);
			else
				format = rest[0] - '0';
			b->lines = !rc && strcmp(rest + 2, "lines") == 0;
		} else if (parse_line(buf, format, &e, &skip) < 0) {
			rc = error("'%s': line %d: expected '%s'", path, lineno,
				   format == 1 ? "FINGERPRINT BYTES COUNT SITE" : "FINGERPRINT KIND BYTES COUNT SITE");
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

/* The first unused entry with fingerprint fp and kind `kind`, or NULL. */
static struct baseline_entry *find(struct baseline *b, const char *fp, int kind)
{
	for (size_t k = 0; k < b->n; k++)
		if (!b->v[k].used && b->v[k].kind == kind && !strcmp(b->v[k].fp, fp))
			return &b->v[k];
	return NULL;
}

static enum base_state judged(int64_t bytes, int64_t base_bytes, int64_t slack)
{
	return bytes > base_bytes + slack ? BASE_GREW : BASE_UNCHANGED;
}

static int by_site_then_kind(const void *a, const void *b)
{
	const struct gate_site *x = *(struct gate_site *const *)a, *y = *(struct gate_site *const *)b;

	if (x->site != y->site)
		return x->site < y->site ? -1 : 1;
	return x->kind < y->kind ? -1 : x->kind > y->kind;
}

/* The entries v[0..n) of one site that no entry of their kind matched:
 * together against the site's entry recorded without a kind, or, when
 * some of their blocks were not classified, against the site's entries of
 * every kind; else each new. */
static void compare_rest(struct baseline *b, struct gate_site **v, size_t n, int64_t slack)
{
	int64_t bytes = 0, base_bytes = 0, base_count = 0;
	int unclassified = 0, matched = 0;
	struct baseline_entry *m;

	for (size_t i = 0; i < n; i++) {
		bytes += v[i]->size;
		unclassified |= v[i]->kind == GROUP_UNCLASSIFIED;
	}
	if ((m = find(b, v[0]->fp, BASELINE_ANY_KIND))) {
		m->used = matched = 1;
		base_bytes = m->bytes;
		base_count = m->count;
	} else if (unclassified) {
		for (int k = 0; k < HD_REACH_NKINDS; k++)
			while ((m = find(b, v[0]->fp, k))) {
				m->used = matched = 1;
				base_bytes += m->bytes;
				base_count += m->count;
			}
	}
	for (size_t i = 0; i < n; i++) {
		struct gate_site *s = v[i];
		if (matched) {
			s->base_bytes = base_bytes;
			s->base_count = base_count;
			s->base = judged(bytes, base_bytes, slack);
		} else if (s->size || s->count) {
			/* Without slack, any entry not in the baseline is new,
			 * zero-byte blocks included. */
			s->base = s->size > slack || !slack ? BASE_NEW : BASE_UNCHANGED;
		}
	}
}

void baseline_compare(struct gate *g, struct baseline *b)
{
	int64_t slack = g->o->slack;
	struct gate_site **rest = xcalloc(g->nsites + 1, sizeof *rest);
	size_t nrest = 0;

	/* An entry of a kind takes the entry of its site and kind. */
	for (size_t i = 0; i < g->nsites; i++) {
		struct gate_site *s = &g->sites[i];
		if (b->lines != g->o->baseline_lines)
			site_fingerprint(&s->e->tb, b->lines, s->fp);
		if (s->supp)
			continue;
		struct baseline_entry *match = s->kind != GROUP_UNCLASSIFIED ? find(b, s->fp, s->kind) : NULL;
		if (!match) {
			rest[nrest++] = s;
			continue;
		}
		match->used = 1;
		s->base_bytes = match->bytes;
		s->base_count = match->count;
		s->base = judged(s->size, match->bytes, slack);
	}
	/* The others, site by site. */
	qsort(rest, nrest, sizeof *rest, by_site_then_kind);
	for (size_t i = 0, j; i < nrest; i = j) {
		for (j = i + 1; j < nrest && rest[j]->site == rest[i]->site; j++)
			;
		compare_rest(b, rest + i, j - i, slack);
	}
	free(rest);
	for (size_t i = 0; i < g->nsites; i++) {
		struct gate_site *s = &g->sites[i];
		if (s->base == BASE_NEW || s->base == BASE_GREW)
			s->fails |= FAIL_BASELINE;
	}
	for (size_t k = 0; k < b->n; k++) {
		if (b->v[k].used)
			continue;
		g->gone = xrealloc(g->gone, (g->ngone + 1) * sizeof *g->gone);
		struct gate_gone *gone = &g->gone[g->ngone++];
		memcpy(gone->fp, b->v[k].fp, SITE_FP_SIZE);
		gone->kind = b->v[k].kind;
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
	int kinds = 0;

	if (!f) {
		error("cannot write baseline '%s': %s", path, strerror(errno));
		free(tmp);
		return -1;
	}
	for (size_t i = 0; i < g->nsites; i++)
		kinds |= g->sites[i].kind != GROUP_UNCLASSIFIED;
	fprintf(f, HEADER "%d %s\n", kinds ? 2 : 1, g->o->baseline_lines ? "lines" : "nolines");
	fprintf(f, "# fingerprint%s bytes count site (bytes and count not freed at the last snapshot)\n",
		kinds ? " kind" : "");
	for (size_t i = 0; i < g->nsites; i++) {
		const struct gate_site *s = &g->sites[i];
		if (s->supp || (!s->size && !s->count))
			continue;
		char *d = site_describe(s->e->site);
		if (kinds)
			fprintf(f, "%s %s %lld %lld %s\n", s->fp, kind_name(s->kind), (long long)s->size, (long long)s->count, d);
		else
			fprintf(f, "%s %lld %lld %s\n", s->fp, (long long)s->size, (long long)s->count, d);
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
