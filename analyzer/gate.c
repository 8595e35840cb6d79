/*
 * gate.c - evaluating snapshots against budgets, a baseline and
 * suppressions.
 *
 * Sites are allocation stacks, matched between snapshots and runs by their
 * symbolized frames.  Per process, the last snapshot gives what was not
 * freed (at exit, when it is the exit snapshot) and the first one the
 * starting point for growth, so start-up allocations are not counted.
 * Several processes (a test that runs helpers) add up.
 */
#include "gate.h"
#include "write.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- inputs ------------------------------------------------------------ */

struct input { char *path; struct snapshot s; };

static int by_pid_seq(const void *a, const void *b)
{
	const struct snapshot *x = &((const struct input *)a)->s, *y = &((const struct input *)b)->s;

	if (x->meta[HD_META_PID] != y->meta[HD_META_PID])
		return x->meta[HD_META_PID] < y->meta[HD_META_PID] ? -1 : 1;
	if (x->meta[HD_META_SEQ] != y->meta[HD_META_SEQ])
		return x->meta[HD_META_SEQ] < y->meta[HD_META_SEQ] ? -1 : 1;
	return 0;
}

/* ---- fingerprints and baselines ---------------------------------------- */

/* The site's fingerprint, as the baseline file computes them. */
static void fingerprint(struct gate_site *gs, int with_lines)
{
	site_fingerprint(&gs->e->tb, with_lines, gs->fp);
}

static int write_baseline(const struct gate *g)
{
	char *tmp = xasprintf("%s.tmp.%d", g->o->write_baseline, (int)getpid());
	FILE *f = fopen(tmp, "w");

	if (!f) {
		error("cannot write baseline '%s': %s", g->o->write_baseline, strerror(errno));
		free(tmp);
		return -1;
	}
	fprintf(f, "# heapdelta baseline 1 %s\n", g->o->baseline_lines ? "lines" : "nolines");
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
	if (bad || rename(tmp, g->o->write_baseline) < 0) {
		error("cannot write baseline '%s': %s", g->o->write_baseline, strerror(errno));
		unlink(tmp);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}

struct base_entry { char fp[SITE_FP_SIZE]; int64_t bytes, count; char *desc; int used; };

static int read_baseline(const char *path, struct base_entry **out, size_t *n, int *lines)
{
	FILE *f = fopen(path, "r");
	char buf[8192];
	int lineno = 0;

	*out = NULL;
	*n = 0;
	if (!f)
		return error("cannot open baseline '%s': %s", path, strerror(errno));
	while (fgets(buf, sizeof buf, f)) {
		long long b, c;
		char fp[SITE_FP_SIZE];
		int off = 0;
		lineno++;
		buf[strcspn(buf, "\n")] = 0;
		if (lineno == 1) {
			if (strncmp(buf, "# heapdelta baseline 1 ", 23) != 0) {
				fclose(f);
				return error("'%s': line 1: not a heapdelta baseline", path);
			}
			*lines = strcmp(buf + 23, "lines") == 0;
			continue;
		}
		if (buf[0] == '#' || !buf[0])
			continue;
		if (sscanf(buf, "%16[0-9a-f] %lld %lld %n", fp, &b, &c, &off) < 3 || strlen(fp) != 16 || b < 0 || c < 0) {
			fclose(f);
			return error("'%s': line %d: expected 'FINGERPRINT BYTES COUNT SITE'", path, lineno);
		}
		*out = xrealloc(*out, (*n + 1) * sizeof **out);
		struct base_entry *e = &(*out)[(*n)++];
		memcpy(e->fp, fp, SITE_FP_SIZE);
		e->bytes = b;
		e->count = c;
		e->desc = xstrdup(buf + off);
		e->used = 0;
	}
	fclose(f);
	return 0;
}

/* ---- evaluation --------------------------------------------------------- */

static int by_leaked(const void *a, const void *b)
{
	const struct gate_site *x = a, *y = b;

	if (x->e->size != y->e->size)
		return x->e->size > y->e->size ? -1 : 1;
	if (x->e->count != y->e->count)
		return x->e->count > y->e->count ? -1 : 1;
	if (x->growth != y->growth)
		return x->growth > y->growth ? -1 : 1;
	return strcmp(x->e->key, y->e->key);
}

static const char *const kind_alloc[] = { "malloc", "operator new", "operator new[]" };
static const char *const kind_release[] = { "free", "operator delete", "operator delete[]" };

/* The return addresses of a stack of epoch `epoch`, symbolized. */
static struct gate_frames symbolize_frames(struct symbolizer *sym, const struct snapshot *s,
					   const uint64_t *addr, int depth, uint32_t epoch)
{
	struct gate_frames f;

	f.v = site_symbolize(sym, s, addr, depth, epoch, &f.n);
	return f;
}

static void add_mismatches(struct gate *g, struct symbolizer *sym, const struct snapshot *s)
{
	g->mismatched_frees += s->meta[HD_META_MISMATCHED_FREES];
	for (uint32_t i = 0; i < s->nmismatches; i++) {
		const struct hd_mismatch *m = &s->mismatches[i];
		const struct hd_stack *hs = snapshot_stack_by_id(s, m->alloc_stack);
		g->mismatches = xrealloc(g->mismatches, (g->nmismatches + 1) * sizeof *g->mismatches);
		struct gate_mismatch *gm = &g->mismatches[g->nmismatches++];
		gm->allocated_with = kind_alloc[m->alloc_kind];
		gm->released_with = kind_release[m->free_kind];
		gm->size = m->size;
		/* The release was seen in the snapshot's newest epoch: the
		 * highest a stack of this file names, at least. */
		uint32_t epoch = 0;
		for (uint32_t k = 0; k < s->nstacks; k++)
			if (s->stacks[k].epoch > epoch)
				epoch = s->stacks[k].epoch;
		gm->released_at = symbolize_frames(sym, s, m->frames, m->depth, epoch);
		gm->allocated_at = symbolize_frames(sym, s, hs->frames, hs->depth, hs->epoch);
	}
}

int gate_run(struct gate_opts *o, char **paths, int npaths)
{
	struct input *in = NULL;
	char **files = NULL;
	int nin = 0, rc = 0;

	if (snapshot_paths(paths, npaths, &files, &nin) < 0)
		return 2;
	in = xcalloc((size_t)nin + 1, sizeof *in);
	for (int i = 0; i < nin; i++)
		in[i].path = files[i];
	free(files);
	if (!nin)
		return error("no snapshots found in %s", npaths == 1 ? paths[0] : "the arguments"), 2;
	for (int i = 0; i < nin; i++)
		if (snapshot_load(in[i].path, &in[i].s) < 0) {
			for (int k = 0; k <= i; k++)
				snapshot_release(&in[k].s);
			return 2;
		}
	/* Two files of two processes: OLD NEW, as `diff` takes them. */
	int pair = nin == 2 && npaths == 2 && in[0].s.meta[HD_META_PID] != in[1].s.meta[HD_META_PID];
	if (!pair)
		qsort(in, (size_t)nin, sizeof *in, by_pid_seq);

	struct group_opts gopts = { .by = BY_TRACEBACK };
	struct symbolizer *sym = symbolizer_new();
	struct stat_table *t = group_new(&gopts, sym);
	struct gate g = { .o = o, .at_exit = 1 };

	for (int i = 0; i < nin; i++) {
		int last = pair ? i == 1 : (i + 1 == nin || in[i + 1].s.meta[HD_META_PID] != in[i].s.meta[HD_META_PID]);
		int first = pair ? i == 0 : (i == 0 || in[i - 1].s.meta[HD_META_PID] != in[i].s.meta[HD_META_PID]);
		if (last) {
			group_add(t, &in[i].s, 0);
			g.nprocs++;
			if (in[i].s.meta[HD_META_TRIGGER] != HD_TRIGGER_EXIT)
				g.at_exit = 0;
			if (in[i].s.meta[HD_META_PEAK_BYTES] > g.peak)
				g.peak = in[i].s.meta[HD_META_PEAK_BYTES];
			add_mismatches(&g, sym, &in[i].s);
		}
		if (first && !last) {
			group_add(t, &in[i].s, 1);
			g.has_growth = 1;
		}
	}
	if ((o->max_growth >= 0 || o->max_site_growth >= 0) && !g.has_growth) {
		error("growth needs two snapshots of a process, or two snapshot files");
		rc = 2;
		goto out;
	}

	size_t n;
	struct stat_entry **ents = group_sorted(t, 1, &n);
	g.sites = xcalloc(n + 1, sizeof *g.sites);
	for (size_t i = 0; i < n; i++) {
		struct gate_site *s = &g.sites[g.nsites++];
		s->e = ents[i];
		s->growth = ents[i]->size - ents[i]->old_size;
		s->growth_count = ents[i]->count - ents[i]->old_count;
		fingerprint(s, o->baseline_lines);
		s->supp = suppressions_match(&o->supp, &s->e->tb);
		if (s->supp) {
			s->supp->hits++;
			s->supp->bytes += s->e->size;
			g.suppressed += s->e->size;
			g.suppressed_count += s->e->count;
			continue;
		}
		g.leaked += s->e->size;
		g.leaked_count += s->e->count;
		g.growth += s->growth;
		g.growth_count += s->growth_count;
	}
	free(ents);
	qsort(g.sites, g.nsites, sizeof *g.sites, by_leaked);

	/* Budgets.  A zero-byte block is a block: a site holding only such
	 * blocks is part of what was not freed, or of what grew. */
	g.fail_leaked = o->max_leaked >= 0 && g.leaked > o->max_leaked;
	g.fail_growth = o->max_growth >= 0 && g.growth > o->max_growth;
	g.fail_peak = o->max_peak >= 0 && (int64_t)g.peak > o->max_peak;
	for (size_t i = 0; i < g.nsites; i++) {
		struct gate_site *s = &g.sites[i];
		if (s->supp)
			continue;
		if (g.fail_leaked && (s->e->size > 0 || s->e->count > 0))
			s->fails |= FAIL_LEAKED;
		if (g.fail_growth && (s->growth > 0 || (s->growth == 0 && s->growth_count > 0)))
			s->fails |= FAIL_GROWTH;
		if (o->max_site_growth >= 0 && s->growth > o->max_site_growth)
			s->fails |= FAIL_SITE_GROWTH;
	}

	/* Baseline. */
	if (o->baseline) {
		struct base_entry *be;
		size_t nbe;
		int lines = 0;
		if (read_baseline(o->baseline, &be, &nbe, &lines) < 0) {
			rc = 2;
			goto out;
		}
		if (lines != o->baseline_lines) {
			/* Fingerprints must be computed the way the file was. */
			for (size_t i = 0; i < g.nsites; i++)
				fingerprint(&g.sites[i], lines);
		}
		for (size_t i = 0; i < g.nsites; i++) {
			struct gate_site *s = &g.sites[i];
			struct base_entry *match = NULL;
			for (size_t k = 0; k < nbe && !match; k++)
				if (!be[k].used && !strcmp(be[k].fp, s->fp))
					match = &be[k];
			if (s->supp)
				continue;
			if (match) {
				match->used = 1;
				s->base_bytes = match->bytes;
				s->base_count = match->count;
				s->base = s->e->size > match->bytes + o->slack ? BASE_GREW : BASE_UNCHANGED;
			} else if (s->e->size || s->e->count) {
				/* Without slack, any site not in the baseline is new,
				 * zero-byte blocks included. */
				s->base = s->e->size > o->slack || !o->slack ? BASE_NEW : BASE_UNCHANGED;
			}
			if (s->base == BASE_NEW || s->base == BASE_GREW)
				s->fails |= FAIL_BASELINE;
		}
		for (size_t k = 0; k < nbe; k++) {
			if (!be[k].used) {
				g.gone = xrealloc(g.gone, (g.ngone + 1) * sizeof *g.gone);
				memcpy(g.gone[g.ngone].fp, be[k].fp, SITE_FP_SIZE);
				g.gone[g.ngone].desc = be[k].desc;
				g.gone[g.ngone].bytes = be[k].bytes;
				g.gone[g.ngone].count = be[k].count;
				g.ngone++;
			} else {
				free(be[k].desc);
			}
		}
		free(be);
	}

	for (size_t i = 0; i < g.nsites; i++) {
		const struct gate_site *s = &g.sites[i];
		if (!s->fails)
			continue;
		g.nfailing++;
		int growth_based = (s->fails & (FAIL_GROWTH | FAIL_SITE_GROWTH)) && !(s->fails & (FAIL_LEAKED | FAIL_BASELINE));
		g.failing_bytes += growth_based ? s->growth : s->e->size;
		g.failing_count += growth_based ? s->growth_count : s->e->count;
	}

	FILE *out = o->to_stderr ? stderr : stdout;
	if (o->output && !(out = fopen(o->output, "w"))) {
		error("cannot write '%s': %s", o->output, strerror(errno));
		rc = 2;
		goto out;
	}
	write_gate(out, &g);
	if (o->print_supp)
		write_gate_suppressions_used(out, &g);
	if (o->gen_supp)
		write_gate_gen_suppressions(out, &g);
	/* The summary ends the text; machine formats keep it on stderr. */
	write_gate_summary(o->format == GATE_TEXT || o->format == GATE_GITHUB ? out : stderr, &g);
	if (o->output && fclose(out) != 0) {
		error("cannot write '%s': %s", o->output, strerror(errno));
		rc = 2;
		goto out;
	}
	if (o->write_baseline && write_baseline(&g) < 0) {
		rc = 2;
		goto out;
	}
	rc = !o->leaks_only && (g.nfailing || g.fail_leaked || g.fail_growth || g.fail_peak) ? 1 : 0;
out:
	free(g.sites);
	for (size_t i = 0; i < g.ngone; i++)
		free(g.gone[i].desc);
	free(g.gone);
	for (size_t i = 0; i < g.nmismatches; i++) {
		free(g.mismatches[i].released_at.v);
		free(g.mismatches[i].allocated_at.v);
	}
	free(g.mismatches);
	group_free(t);
	symbolizer_free(sym);
	for (int i = 0; i < nin; i++) {
		snapshot_release(&in[i].s);
		free(in[i].path);
	}
	free(in);
	return rc;
}
