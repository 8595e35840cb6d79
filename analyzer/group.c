/*
 * group.c - grouping sites into per-key statistics (top, diff, the gate)
 * and per-key time series (trend), and matching two snapshots' sites by
 * their keys (site.h: symbolized, never raw addresses, so two runs at
 * different load addresses compare cleanly).  The newer side's live blocks
 * are also summed by reachability (REACH), for the gate.  While grouping, the bytes of
 * each site function and its distinct callers are counted for the wrapper
 * hint.
 */
#include "group.h"
#include "util.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

struct stat_node {
	struct stat_entry e;
	/* The stack e.tb and e.site come from: the one holding the most live
	 * bytes, then the most blocks, then the lowest id, a stack of the newer
	 * snapshot before any of the older one; whatever order stacks come in. */
	int tb_old;
	int64_t tb_size, tb_count;
	uint32_t tb_id;
	UT_hash_handle hh;
};

struct stat_table {
	const struct group_opts *opts;
	struct symbolizer *sym;
	struct stat_node *head;
	/* Frame lists of every stack seen, kept alive for the entries. */
	const struct sym_frame ***stacks;
	size_t nstacks;
	int64_t totals[2][2];   /* [old][size, count] over kept stacks */
	struct hint_node *hints;
};

/* A site function of the newer side: its bytes and its callers. */
struct hint_node {
	char *function;
	int64_t size;
	struct strmap callers;  /* "location function" of each calling frame */
	UT_hash_handle hh;
};

struct stat_table *group_new(const struct group_opts *opts, struct symbolizer *sym)
{
	struct stat_table *t = xcalloc(1, sizeof *t);

	t->opts = opts;
	t->sym = sym;
	return t;
}

void group_free(struct stat_table *t)
{
	struct stat_node *n, *tmp;
	struct hint_node *h, *htmp;

	if (!t)
		return;
	HASH_ITER(hh, t->head, n, tmp) {
		HASH_DEL(t->head, n);
		free(n->e.key);
		free(n);
	}
	HASH_ITER(hh, t->hints, h, htmp) {
		HASH_DEL(t->hints, h);
		free(h->function);
		strmap_release(&h->callers);
		free(h);
	}
	for (size_t i = 0; i < t->nstacks; i++)
		free(t->stacks[i]);
	free(t->stacks);
	free(t);
}

static const char *frame_file(const struct sym_frame *f)
{
	return f->file ? f->file : f->module;
}

static int filter_match(const struct file_filter *flt, const struct sym_frame *f)
{
	return fnmatch(flt->pattern, frame_file(f), 0) == 0 && (flt->line < 0 || flt->line == f->line);
}

/* The frames filters test: the site alone, or every frame (the wrappers'
 * too) with --all-frames. */
static int first_tested(const struct site_stack *st, int all)
{
	return all ? 0 : st->site;
}

static int last_tested(const struct site_stack *st, int all)
{
	return all ? st->n : st->site + 1;
}

static int frames_match_filter(const struct site_stack *st, int all, const struct file_filter *flt)
{
	for (int i = first_tested(st, all); i < last_tested(st, all); i++)
		if (filter_match(flt, st->frames[i]))
			return 1;
	return 0;
}

/* tracemalloc's rule: kept when any inclusive filter matches (if there are
 * any) and no exclusive filter does; then --module, --focus, --ignore. */
static int keep_stack(const struct group_opts *o, const struct site_stack *st)
{
	int any_include = 0, included = 0;

	for (int i = 0; i < o->nfilters; i++) {
		const struct file_filter *flt = &o->filters[i];
		int m = frames_match_filter(st, o->all_frames, flt);
		if (flt->inclusive) {
			any_include = 1;
			included |= m;
		} else if (m) {
			return 0;
		}
	}
	if (any_include && !included)
		return 0;
	if (o->nmodules) {
		int hit = 0;
		for (int i = first_tested(st, o->all_frames); i < last_tested(st, o->all_frames) && !hit; i++)
			for (int k = 0; k < o->nmodules && !hit; k++)
				hit = fnmatch(o->modules[k], st->frames[i]->module, 0) == 0;
		if (!hit)
			return 0;
	}
	if (o->focus) {
		int hit = 0;
		for (int i = 0; i < st->n && !hit; i++)
			hit = regexec(o->focus, st->frames[i]->function, 0, NULL, 0) == 0;
		if (!hit)
			return 0;
	}
	if (o->ignore)
		for (int i = 0; i < st->n; i++)
			if (regexec(o->ignore, st->frames[i]->function, 0, NULL, 0) == 0)
				return 0;
	return 1;
}

/* Symbolize a stack and cut it at its site; t keeps the frame array. */
static struct site_stack expand(struct stat_table *t, const struct snapshot *s, const struct hd_stack *hs)
{
	int n;
	const struct sym_frame **v = site_symbolize(t->sym, s, hs->frames, hs->depth, hs->epoch, &n);

	t->stacks = xrealloc(t->stacks, (t->nstacks + 1) * sizeof *t->stacks);
	t->stacks[t->nstacks++] = v;
	return site_of_frames(v, n, t->opts->alloc_fns);
}

/* The key of st by the table's options. */
static char *stack_key(const struct stat_table *t, const struct site_stack *st)
{
	if (t->opts->whole_stack && t->opts->by == BY_TRACEBACK) {
		struct site_stack all = { st->frames, st->n, 0 };
		return site_key(&all, BY_TRACEBACK);
	}
	return site_key(st, t->opts->by);
}

/* Count hs's bytes for its site function and note the frame that called
 * it (the newer side only). */
static void hint_add(struct stat_table *t, const struct site_stack *st, const struct hd_stack *hs)
{
	const struct sym_frame *f = site_frame(st);
	struct hint_node *h;
	int fresh;

	if (!hs->live_bytes || !strcmp(f->function, "??"))
		return;
	HASH_FIND_STR(t->hints, f->function, h);
	if (!h) {
		h = xcalloc(1, sizeof *h);
		h->function = xstrdup(f->function);
		HASH_ADD_KEYPTR(hh, t->hints, h->function, strlen(h->function), h);
	}
	h->size += (int64_t)hs->live_bytes;
	if (st->site + 1 < st->n) {
		const struct sym_frame *caller = st->frames[st->site + 1];
		char *loc = site_frame_location(caller);
		char *key = xasprintf("%s %s", loc, caller->function);
		strmap_get(&h->callers, key, 0, &fresh);
		free(key);
		free(loc);
	}
}

void group_hint(const struct stat_table *t, struct wrapper_hint *out)
{
	const struct hint_node *h, *tmp, *best = NULL;

	memset(out, 0, sizeof *out);
	HASH_ITER(hh, t->hints, h, tmp)
		if (!best || h->size > best->size || (h->size == best->size && strcmp(h->function, best->function) < 0))
			best = h;
	if (!best || 2 * best->size <= t->totals[0][0] || best->callers.n < GROUP_HINT_CALLERS)
		return;
	out->function = best->function;
	out->size = best->size;
	out->total = t->totals[0][0];
	out->callers = best->callers.n;
}

/* Would hs (from the older snapshot if old) be the stack node shows? */
static int holds_more(const struct stat_node *node, const struct hd_stack *hs, int old)
{
	if (old != node->tb_old)
		return !old;
	if ((int64_t)hs->live_bytes != node->tb_size)
		return (int64_t)hs->live_bytes > node->tb_size;
	if ((int64_t)hs->live_count != node->tb_count)
		return (int64_t)hs->live_count > node->tb_count;
	return hs->id < node->tb_id;
}

/* The reader checked that a classified snapshot has a REACH record of
 * every stack with live blocks: a stack without one has none. */
static const struct hd_reach_rec no_blocks;

/* Add hs (its blocks by kind: reach, or NULL when its snapshot is not
 * classified) to the entry of key, which the table takes. */
static void charge(struct stat_table *t, char *key, const struct sym_frame *site,
		   const struct site_stack *st, const struct hd_stack *hs, const struct hd_reach_rec *reach, int old)
{
	struct stat_node *node;

	HASH_FIND_STR(t->head, key, node);
	if (!node) {
		node = xcalloc(1, sizeof *node);
		node->e.key = key;
		HASH_ADD_KEYPTR(hh, t->head, node->e.key, strlen(node->e.key), node);
	} else {
		free(key);
	}
	if (!node->e.site || holds_more(node, hs, old)) {
		node->e.site = site;
		node->e.tb = *st;
		node->tb_old = old;
		node->tb_size = (int64_t)hs->live_bytes;
		node->tb_count = (int64_t)hs->live_count;
		node->tb_id = hs->id;
	}
	if (old) {
		node->e.old_size += (int64_t)hs->live_bytes;
		node->e.old_count += (int64_t)hs->live_count;
	} else {
		node->e.size += (int64_t)hs->live_bytes;
		node->e.count += (int64_t)hs->live_count;
		node->e.alloc_size += (int64_t)hs->alloc_bytes;
		node->e.alloc_count += (int64_t)hs->alloc_count;
		if (!reach) {
			node->e.kind_size[GROUP_UNCLASSIFIED] += (int64_t)hs->live_bytes;
			node->e.kind_count[GROUP_UNCLASSIFIED] += (int64_t)hs->live_count;
		} else {
			for (int k = 0; k < HD_REACH_NKINDS; k++) {
				node->e.kind_size[k] += (int64_t)reach->bytes[k];
				node->e.kind_count[k] += (int64_t)reach->count[k];
			}
		}
	}

}

void group_add(struct stat_table *t, const struct snapshot *s, int old)
{
	const struct group_opts *o = t->opts;
	int classified = !old && snapshot_classified(s);

	for (uint32_t i = 0; i < s->nstacks; i++) {
		const struct hd_stack *hs = &s->stacks[i];
		struct site_stack st = expand(t, s, hs);
		if (!st.n || !keep_stack(o, &st))
			continue;
		const struct hd_reach_rec *reach = classified ? snapshot_reach_of(s, hs->id) : NULL;
		if (classified && !reach)
			reach = &no_blocks;
		t->totals[old][0] += (int64_t)hs->live_bytes;
		t->totals[old][1] += (int64_t)hs->live_count;
		if (!old)
			hint_add(t, &st, hs);
		if (o->by == BY_TRACEBACK || !o->cumulative) {
			charge(t, stack_key(t, &st), site_frame(&st), &st, hs, reach, old);
			continue;
		}
		/* Every frame's location, the wrappers' too, each once per
		 * stack. */
		char **seen = xcalloc((size_t)st.n, sizeof *seen);
		int nseen = 0;
		for (int k = 0; k < st.n; k++) {
			struct site_stack sub = { st.frames + k, st.n - k, 0 };
			char *key = site_key(&sub, o->by);
			int dup = 0;
			for (int j = 0; j < nseen && !dup; j++)
				dup = strcmp(seen[j], key) == 0;
			if (dup) {
				free(key);
				continue;
			}
			seen[nseen++] = xstrdup(key);
			charge(t, key, st.frames[k], &sub, hs, reach, old);
		}
		for (int j = 0; j < nseen; j++)
			free(seen[j]);
		free(seen);
	}
}

static int64_t abs64(int64_t v) { return v < 0 ? -v : v; }

static int cmp_key(const struct stat_entry *a, const struct stat_entry *b)
{
	/* tracemalloc compares frames as (filename, lineno) tuples. */
	const char *fa = a->site->file ? a->site->file : a->site->module;
	const char *fb = b->site->file ? b->site->file : b->site->module;
	int c = strcmp(fa, fb);
	if (c)
		return c;
	if (a->site->line != b->site->line)
		return a->site->line < b->site->line ? -1 : 1;
	return strcmp(a->key, b->key);
}

#define CMP(x, y) do { if ((x) != (y)) return (x) < (y) ? 1 : -1; } while (0)

/* Descending, as tracemalloc's sort(reverse=True). */
static int cmp_stats(const void *pa, const void *pb)
{
	const struct stat_entry *a = *(struct stat_entry *const *)pa, *b = *(struct stat_entry *const *)pb;
	CMP(a->size, b->size);
	CMP(a->count, b->count);
	return -cmp_key(a, b);
}

static int cmp_diffs(const void *pa, const void *pb)
{
	const struct stat_entry *a = *(struct stat_entry *const *)pa, *b = *(struct stat_entry *const *)pb;
	CMP(abs64(a->size - a->old_size), abs64(b->size - b->old_size));
	CMP(a->size, b->size);
	CMP(abs64(a->count - a->old_count), abs64(b->count - b->old_count));
	CMP(a->count, b->count);
	return -cmp_key(a, b);
}

struct stat_entry **group_sorted(struct stat_table *t, int diff, size_t *n)
{
	struct stat_entry **v = xcalloc(HASH_COUNT(t->head) + 1, sizeof *v);
	struct stat_node *node, *tmp;
	size_t k = 0;

	HASH_ITER(hh, t->head, node, tmp) {
		struct stat_entry *e = &node->e;
		if (e->count || e->size || (diff && (e->old_count || e->old_size)))
			v[k++] = e;
	}
	qsort(v, k, sizeof *v, diff ? cmp_diffs : cmp_stats);
	*n = k;
	return v;
}

void group_totals(const struct stat_table *t, int old, int64_t *size, int64_t *count)
{
	*size = t->totals[old ? 1 : 0][0];
	*count = t->totals[old ? 1 : 0][1];
}

/* ---- time series -------------------------------------------------------- */

struct series_node {
	struct series s;
	int filled;                 /* columns 0 .. filled hold their values */
	UT_hash_handle hh;
};

struct series_table {
	struct stat_table base;     /* options, symbolizer, kept stack arrays */
	struct series_node *head;
	int npoints;                /* capacity of every series */
	int changes;                /* adding a point from counter changes */
	/* Stack ids are stable across one process's snapshots: each id is
	 * symbolized, filtered and keyed once (NULL node: filtered out). */
	struct { int done; struct series_node *node; } *by_id;
	size_t nby_id;
};

/* All snapshots given to one table must come from one process (stack ids
 * are per process). */
struct series_table *series_new(const struct group_opts *opts, struct symbolizer *sym, int npoints)
{
	struct series_table *t = xcalloc(1, sizeof *t);

	t->base.opts = opts;
	t->base.sym = sym;
	t->npoints = npoints;
	return t;
}

/* A series that did not change since column `filled` holds that value up
 * to column point. */
static void series_carry(struct series_node *node, int point)
{
	for (int j = node->filled + 1; j <= point; j++) {
		node->s.bytes[j] = node->s.bytes[node->filled];
		node->s.count[j] = node->s.count[node->filled];
	}
	if (point > node->filled)
		node->filled = point;
}

static struct series_node *series_charge(struct series_table *t, char *key, const struct site_stack *st,
					 const struct hd_stack *hs, int point)
{
	struct series_node *node;

	HASH_FIND_STR(t->head, key, node);
	if (!node) {
		node = xcalloc(1, sizeof *node);
		node->s.key = key;
		node->s.site = site_frame(st);
		node->s.tb = *st;
		node->s.bytes = xcalloc((size_t)t->npoints, sizeof *node->s.bytes);
		node->s.count = xcalloc((size_t)t->npoints, sizeof *node->s.count);
		node->filled = point;   /* nothing before: zeros */
		HASH_ADD_KEYPTR(hh, t->head, node->s.key, strlen(node->s.key), node);
	} else {
		free(key);
		if (t->changes)
			series_carry(node, point);
	}
	node->s.bytes[point] += (int64_t)hs->live_bytes;
	node->s.count[point] += (int64_t)hs->live_count;
	return node;
}

/* Room for `point` in every series: capacities double. */
static void series_grow(struct series_table *t, int point)
{
	struct series_node *node, *tmp;
	int cap = t->npoints > 0 ? t->npoints : 16;

	while (cap <= point)
		cap *= 2;
	HASH_ITER(hh, t->head, node, tmp) {
		node->s.bytes = xrealloc(node->s.bytes, (size_t)cap * sizeof *node->s.bytes);
		node->s.count = xrealloc(node->s.count, (size_t)cap * sizeof *node->s.count);
		memset(node->s.bytes + t->npoints, 0, (size_t)(cap - t->npoints) * sizeof *node->s.bytes);
		memset(node->s.count + t->npoints, 0, (size_t)(cap - t->npoints) * sizeof *node->s.count);
	}
	t->npoints = cap;
}

/* Room in by_id for stack id `id`. */
static void series_room(struct series_table *t, uint32_t id)
{
	if (id < t->nby_id)
		return;
	size_t n = t->nby_id ? t->nby_id : 1024;
	while (n <= id)
		n *= 2;
	t->by_id = xrealloc(t->by_id, n * sizeof *t->by_id);
	memset(t->by_id + t->nby_id, 0, (n - t->nby_id) * sizeof *t->by_id);
	t->nby_id = n;
}

/* Charge a stack first seen (its live counters before were zero), or say
 * it is filtered out. */
static void series_first(struct series_table *t, const struct snapshot *s, const struct hd_stack *hs, int point)
{
	const struct group_opts *o = t->base.opts;

	t->by_id[hs->id].done = 1;
	struct site_stack st = expand(&t->base, s, hs);
	if (!st.n || !keep_stack(o, &st))
		return;
	t->by_id[hs->id].node = series_charge(t, site_key(&st, o->by), &st, hs, point);
}

void series_add(struct series_table *t, const struct snapshot *s, int point)
{
	struct series_node *node, *tmp;

	if (point >= t->npoints)
		series_grow(t, point);
	/* Column point is summed from zeros: every series up to date before. */
	series_settle(t, point);
	t->changes = 0;
	for (uint32_t i = 0; i < s->nstacks; i++) {
		const struct hd_stack *hs = &s->stacks[i];
		if (!hs->live_count && !hs->live_bytes)
			continue;
		series_room(t, hs->id);
		if (t->by_id[hs->id].done) {
			if ((node = t->by_id[hs->id].node)) {
				node->s.bytes[point] += (int64_t)hs->live_bytes;
				node->s.count[point] += (int64_t)hs->live_count;
			}
			continue;
		}
		series_first(t, s, hs, point);
	}
	HASH_ITER(hh, t->head, node, tmp)
		node->filled = point;
}

void series_add_changes(struct series_table *t, const struct snapshot *s, int point)
{
	struct series_node *node;

	if (point >= t->npoints)
		series_grow(t, point);
	t->changes = 1;
	for (uint32_t k = 0; k < s->ndeltas; k++) {
		const struct hd_delta *d = &s->deltas[k];
		if (!d->d[0] && !d->d[1])
			continue;
		series_room(t, d->id);
		if (t->by_id[d->id].done) {
			if ((node = t->by_id[d->id].node)) {
				series_carry(node, point);
				node->s.bytes[point] += d->d[0];
				node->s.count[point] += d->d[1];
			}
			continue;
		}
		/* Never live before this point: its change is all it holds. */
		const struct hd_stack *hs = snapshot_stack_by_id(s, d->id);
		if (hs && (hs->live_count || hs->live_bytes))
			series_first(t, s, hs, point);
	}
	t->changes = 0;
}

void series_settle(struct series_table *t, int npoints)
{
	struct series_node *node, *tmp;

	HASH_ITER(hh, t->head, node, tmp)
		series_carry(node, npoints - 1);
}

struct series **series_all(struct series_table *t, size_t *n)
{
	struct series **v = xcalloc(HASH_COUNT(t->head) + 1, sizeof *v);
	struct series_node *node, *tmp;
	size_t k = 0;

	HASH_ITER(hh, t->head, node, tmp)
		v[k++] = &node->s;
	*n = k;
	return v;
}

void series_free(struct series_table *t)
{
	struct series_node *node, *tmp;

	if (!t)
		return;
	HASH_ITER(hh, t->head, node, tmp) {
		HASH_DEL(t->head, node);
		free(node->s.key);
		free(node->s.bytes);
		free(node->s.count);
		free(node);
	}
	for (size_t i = 0; i < t->base.nstacks; i++)
		free(t->base.stacks[i]);
	free(t->base.stacks);
	free(t->by_id);
	free(t);
}
