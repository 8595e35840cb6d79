/*
 * gate.c - the gate model: snapshots evaluated against budgets, a baseline
 * and suppressions, to a verdict.
 *
 * Sites are allocation stacks (site.h), matched between snapshots and runs
 * by their symbolized frames.  Per process, the last snapshot gives what
 * was not freed (at exit, when it is the exit snapshot) and the first one
 * the starting point for growth, so start-up allocations are not counted.
 * Several processes (a test that runs helpers) add up.  Two files of two
 * processes are OLD and NEW, as `diff` takes them.
 *
 * A last snapshot classified by reachability (REACH) splits each site into
 * entries by kind, as valgrind's loss records; a site of snapshots that
 * were not is one entry of blocks not classified, as before REACH existed.
 */
#include "gate.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* ---- inputs ------------------------------------------------------------ */

static int by_pid_seq(const void *a, const void *b)
{
	const struct snapshot *x = &((const struct gate_input *)a)->s, *y = &((const struct gate_input *)b)->s;

	if (x->meta[HD_META_PID] != y->meta[HD_META_PID])
		return x->meta[HD_META_PID] < y->meta[HD_META_PID] ? -1 : 1;
	if (x->meta[HD_META_SEQ] != y->meta[HD_META_SEQ])
		return x->meta[HD_META_SEQ] < y->meta[HD_META_SEQ] ? -1 : 1;
	return 0;
}

/* Load every snapshot named by paths into g->in; 1 when they are OLD and
 * NEW of two processes (kept in that order), 0 when sorted by process and
 * sequence, -1 after an error line. */
static int load_inputs(struct gate *g, char **paths, int npaths)
{
	char **files = NULL;
	int n = 0;

	if (snapshot_paths(paths, npaths, &files, &n) < 0)
		return -1;
	g->in = xcalloc((size_t)n + 1, sizeof *g->in);
	for (int i = 0; i < n; i++)
		g->in[i].path = files[i];
	free(files);
	g->nin = n;
	if (!n)
		return error("no snapshots found in %s", npaths == 1 ? paths[0] : "the arguments");
	for (int i = 0; i < n; i++)
		if (snapshot_load(g->in[i].path, &g->in[i].s) < 0)
			return -1;
	if (n == 2 && npaths == 2 && g->in[0].s.meta[HD_META_PID] != g->in[1].s.meta[HD_META_PID])
		return 1;
	qsort(g->in, (size_t)n, sizeof *g->in, by_pid_seq);
	return 0;
}

/* ---- mismatched releases ------------------------------------------------- */

static const char *const kind_alloc[] = { "malloc", "operator new", "operator new[]" };
static const char *const kind_release[] = { "free", "operator delete", "operator delete[]" };

static struct gate_frames symbolize_frames(struct symbolizer *sym, const struct snapshot *s,
					   const uint64_t *addr, int depth, uint32_t epoch)
{
	struct gate_frames f;

	f.v = site_symbolize(sym, s, addr, depth, epoch, &f.n);
	return f;
}

static void add_mismatches(struct gate *g, const struct snapshot *s)
{
	/* A release was seen in the snapshot's newest epoch: the highest a
	 * stack of this file names, at least. */
	uint32_t epoch = 0;
	for (uint32_t k = 0; k < s->nstacks; k++)
		if (s->stacks[k].epoch > epoch)
			epoch = s->stacks[k].epoch;

	g->mismatched_frees += s->meta[HD_META_MISMATCHED_FREES];
	for (uint32_t i = 0; i < s->nmismatches; i++) {
		const struct hd_mismatch *m = &s->mismatches[i];
		const struct hd_stack *hs = snapshot_stack_by_id(s, m->alloc_stack);
		g->mismatches = xrealloc(g->mismatches, (g->nmismatches + 1) * sizeof *g->mismatches);
		struct gate_mismatch *gm = &g->mismatches[g->nmismatches++];
		gm->allocated_with = kind_alloc[m->alloc_kind];
		gm->released_with = kind_release[m->free_kind];
		gm->size = m->size;
		gm->released_at = symbolize_frames(g->sym, s, m->frames, m->depth, epoch);
		gm->allocated_at = symbolize_frames(g->sym, s, hs->frames, hs->depth, hs->epoch);
	}
}

/* ---- processes and sites -------------------------------------------------- */

/* Each process's last snapshot into the table as the newer side, its first
 * (when it has two) as the older one. */
static void add_processes(struct gate *g, int pair)
{
	const struct gate_input *in = g->in;
	int n = g->nin;

	for (int i = 0; i < n; i++) {
		uint64_t pid = in[i].s.meta[HD_META_PID];
		int last = pair ? i == 1 : (i + 1 == n || in[i + 1].s.meta[HD_META_PID] != pid);
		int first = pair ? i == 0 : (i == 0 || in[i - 1].s.meta[HD_META_PID] != pid);
		if (last) {
			group_add(g->table, &in[i].s, 0);
			g->nprocs++;
			if (snapshot_classified(&in[i].s))
				g->nclassified++;
			else if (!g->unclassified)
				g->unclassified = &in[i].s;
			if (in[i].s.meta[HD_META_TRIGGER] != HD_TRIGGER_EXIT)
				g->at_exit = 0;
			if (in[i].s.meta[HD_META_PEAK_BYTES] > g->peak)
				g->peak = in[i].s.meta[HD_META_PEAK_BYTES];
			add_mismatches(g, &in[i].s);
		}
		if (first && !last) {
			group_add(g->table, &in[i].s, 1);
			g->has_growth = 1;
		}
	}
}

static int by_kind_then_leaked(const void *a, const void *b)
{
	const struct gate_site *x = a, *y = b;

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	if (x->size != y->size)
		return x->size > y->size ? -1 : 1;
	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	if (x->growth != y->growth)
		return x->growth > y->growth ? -1 : 1;
	return strcmp(x->e->key, y->e->key);
}

/* Add entry s (not suppressed) to the totals. */
static void add_to_totals(struct gate *g, const struct gate_site *s)
{
	g->leaked += s->size;
	g->leaked_count += s->count;
	g->kind_size[s->kind] += s->size;
	g->kind_count[s->kind] += s->count;
	if (s->kind == HD_REACH_DEFINITE || s->kind == HD_REACH_INDIRECT) {
		g->lost += s->size;
		g->lost_count += s->count;
	}
	g->growth += s->growth;
	g->growth_count += s->growth_count;
}

/* The entries of each table entry (a site): one per kind it holds blocks
 * of, at least one; fingerprinted, matched against the suppressions, added
 * to the totals; sorted by kind, then by bytes not freed. */
static void collect_sites(struct gate *g)
{
	size_t n;
	struct stat_entry **ents = group_sorted(g->table, 1, &n);

	g->sites = xcalloc(n * GROUP_NKINDS + 1, sizeof *g->sites);
	g->nsite_keys = n;
	for (size_t i = 0; i < n; i++) {
		const struct stat_entry *e = ents[i];
		struct suppression *supp = suppressions_match(&g->o->supp, &e->tb);
		size_t first = g->nsites;
		char fp[SITE_FP_SIZE];

		site_fingerprint(&e->tb, g->o->baseline_lines, fp);
		for (int k = 0; k < GROUP_NKINDS; k++) {
			/* A site holding nothing now is one entry, for its growth. */
			if (!e->kind_size[k] && !e->kind_count[k] && !(k == GROUP_UNCLASSIFIED && g->nsites == first))
				continue;
			struct gate_site *s = &g->sites[g->nsites++];
			s->e = e;
			s->site = i;
			s->kind = k;
			s->size = e->kind_size[k];
			s->count = e->kind_count[k];
			memcpy(s->fp, fp, SITE_FP_SIZE);
			s->supp = supp;
			if (g->nsites - 1 == first) {
				s->head = 1;
				s->growth = e->size - e->old_size;
				s->growth_count = e->count - e->old_count;
			}
			if (supp) {
				supp->hits++;
				supp->bytes += s->size;
				supp->kind_hits[k]++;
				supp->kind_bytes[k] += s->size;
				g->suppressed += s->size;
				g->suppressed_count += s->count;
				g->supp_kind_size[k] += s->size;
				g->supp_kind_count[k] += s->count;
				continue;
			}
			add_to_totals(g, s);
		}
	}
	free(ents);
	qsort(g->sites, g->nsites, sizeof *g->sites, by_kind_then_leaked);
}

static int apply_baseline(struct gate *g)
{
	struct baseline b;
	int rc = baseline_read(&b, g->o->baseline);

	if (!rc)
		baseline_compare(g, &b);
	baseline_release(&b);
	return rc;
}

/* ---- verdict -------------------------------------------------------------- */

void gate_judge(struct gate *g)
{
	const struct gate_opts *o = g->o;

	/* A zero-byte block is a block: a site holding only such blocks is
	 * part of what was not freed, or of what grew. */
	g->fail_leaked = o->max_leaked >= 0 && g->leaked > o->max_leaked;
	g->fail_lost = o->max_lost >= 0 && g->lost > o->max_lost;
	g->fail_growth = o->max_growth >= 0 && g->growth > o->max_growth;
	g->fail_peak = o->max_peak >= 0 && (int64_t)g->peak > o->max_peak;
	for (size_t i = 0; i < g->nsites; i++) {
		struct gate_site *s = &g->sites[i];
		if (s->supp)
			continue;
		if (g->fail_leaked && (s->size > 0 || s->count > 0))
			s->fails |= FAIL_LEAKED;
		if (g->fail_lost && (s->kind == HD_REACH_DEFINITE || s->kind == HD_REACH_INDIRECT) &&
		    (s->size > 0 || s->count > 0))
			s->fails |= FAIL_LOST;
		if (g->fail_growth && (s->growth > 0 || (s->growth == 0 && s->growth_count > 0)))
			s->fails |= FAIL_GROWTH;
		if (o->max_site_growth >= 0 && s->growth > o->max_site_growth)
			s->fails |= FAIL_SITE_GROWTH;
	}
	/* Sites failing, each once however many of its entries fail. */
	char *failing = xcalloc(g->nsite_keys + 1, 1);
	for (size_t i = 0; i < g->nsites; i++) {
		const struct gate_site *s = &g->sites[i];
		if (!s->fails)
			continue;
		if (!failing[s->site])
			g->nfailing++;
		failing[s->site] = 1;
		/* An entry failing on growth alone counts what it grew by. */
		int growth_based = gate_site_by_growth(s);
		g->failing_bytes += growth_based ? s->growth : s->size;
		g->failing_count += growth_based ? s->growth_count : s->count;
	}
	free(failing);
}

int gate_site_by_growth(const struct gate_site *s)
{
	return (s->fails & (FAIL_GROWTH | FAIL_SITE_GROWTH)) && !(s->fails & (FAIL_LEAKED | FAIL_LOST | FAIL_BASELINE));
}

int gate_classified(const struct gate *g)
{
	return !g->unclassified;
}

int gate_shows_kind(const struct gate_opts *o, int k)
{
	return k == GROUP_UNCLASSIFIED || (o->show_kinds >> k & 1);
}

const char *gate_kind_words(int k)
{
	static const char *const words[GROUP_NKINDS] = {
		"definitely lost", "indirectly lost", "possibly lost", "still reachable", "not classified"
	};

	return k >= 0 && k < GROUP_NKINDS ? words[k] : words[GROUP_UNCLASSIFIED];
}

enum gate_verdict gate_verdict(const struct gate *g)
{
	if (g->o->leaks_only)
		return GATE_PASS;
	return g->nfailing || g->fail_leaked || g->fail_lost || g->fail_growth || g->fail_peak ? GATE_FAIL : GATE_PASS;
}

enum gate_verdict gate_evaluate(struct gate *g, struct gate_opts *o, char **paths, int npaths)
{
	memset(g, 0, sizeof *g);
	g->o = o;
	g->at_exit = 1;
	int pair = load_inputs(g, paths, npaths);
	if (pair < 0)
		return GATE_ERROR;
	g->sym = symbolizer_new();
	/* A site is a stack from its site outwards: stacks that differ only
	 * in their wrappers' frames are one site, with one fingerprint. */
	g->gopts = (struct group_opts){ .by = BY_TRACEBACK, .alloc_fns = &o->alloc_fns };
	g->table = group_new(&g->gopts, g->sym);
	add_processes(g, pair);
	if (g->unclassified)
		snapshot_reach_reason(g->unclassified, g->unclassified_why, sizeof g->unclassified_why);
	if (o->max_lost >= 0 && g->unclassified) {
		error("--max-lost: '%s' is not classified by reachability: %s", g->unclassified->path,
		      g->unclassified_why);
		return GATE_ERROR;
	}
	group_hint(g->table, &g->hint);
	if ((o->max_growth >= 0 || o->max_site_growth >= 0) && !g->has_growth) {
		error("growth needs two snapshots of a process, or two snapshot files");
		return GATE_ERROR;
	}
	collect_sites(g);
	if (o->baseline && apply_baseline(g) < 0)
		return GATE_ERROR;
	gate_judge(g);
	return gate_verdict(g);
}

void gate_release(struct gate *g)
{
	free(g->sites);
	for (size_t i = 0; i < g->ngone; i++)
		free(g->gone[i].desc);
	free(g->gone);
	for (size_t i = 0; i < g->nmismatches; i++) {
		free(g->mismatches[i].released_at.v);
		free(g->mismatches[i].allocated_at.v);
	}
	free(g->mismatches);
	group_free(g->table);
	symbolizer_free(g->sym);
	for (int i = 0; i < g->nin; i++) {
		snapshot_release(&g->in[i].s);
		free(g->in[i].path);
	}
	free(g->in);
	memset(g, 0, sizeof *g);
}
