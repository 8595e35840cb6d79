/*
 * snapshot.c - the snapshot reader.  Every read is bounds-checked against
 * its section and the file; every count is checked against the bytes left
 * before anything is allocated for it, so a corrupt or hostile file costs
 * at most its own size in memory and ends in one error line, never a crash.
 */
#include "snapshot.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILE (UINT64_C(4) << 30)

struct cursor {
	const unsigned char *data;
	size_t pos, end;          /* absolute offsets into data */
	const char *path;
};

static int bad(const struct cursor *c, size_t at, const char *what)
{
	return error("'%s': byte %zu: %s", c->path, at, what);
}

static int need(const struct cursor *c, size_t n, const char *what)
{
	if (c->end - c->pos < n) {
		char msg[256];
		snprintf(msg, sizeof msg, "truncated: %zu bytes left, %zu needed, reading %s",
			 c->end - c->pos, n, what);
		return bad(c, c->pos, msg);
	}
	return 0;
}

static int rd_u16(struct cursor *c, uint16_t *v, const char *what)
{
	if (need(c, 2, what)) return -1;
	*v = hd_get_u16(c->data + c->pos);
	c->pos += 2;
	return 0;
}

static int rd_u32(struct cursor *c, uint32_t *v, const char *what)
{
	if (need(c, 4, what)) return -1;
	*v = hd_get_u32(c->data + c->pos);
	c->pos += 4;
	return 0;
}

static int rd_u64(struct cursor *c, uint64_t *v, const char *what)
{
	if (need(c, 8, what)) return -1;
	*v = hd_get_u64(c->data + c->pos);
	c->pos += 8;
	return 0;
}

static int rd_string(struct cursor *c, char **out, const char *what)
{
	uint32_t len;

	if (rd_u32(c, &len, what) || need(c, len, what))
		return -1;
	*out = xstrndup((const char *)c->data + c->pos, len);
	c->pos += len;
	return 0;
}

/* A count of items each at least `min` bytes long must fit in what is left. */
static int check_count(const struct cursor *c, uint64_t n, size_t min, const char *what)
{
	if (n > (c->end - c->pos) / min) {
		char msg[256];
		snprintf(msg, sizeof msg, "%s count %llu does not fit in the %zu bytes left",
			 what, (unsigned long long)n, c->end - c->pos);
		return bad(c, c->pos - 4, msg);
	}
	return 0;
}

static int parse_meta(struct cursor *c, struct snapshot *s)
{
	size_t len = c->end - c->pos;

	if (len % 8)
		return bad(c, c->pos, "META section length is not a multiple of 8");
	for (size_t i = 0; i < len / 8; i++) {
		uint64_t v;
		if (rd_u64(c, &v, "META field"))
			return -1;
		if (i < HD_META_NFIELDS)
			s->meta[i] = v;
	}
	return 0;
}

static int parse_strings(struct cursor *c, struct snapshot *s)
{
	uint32_t n;

	if (rd_u32(c, &n, "string count") || check_count(c, n, 4, "string"))
		return -1;
	if (n < 2)
		return bad(c, c->pos - 4, "STRINGS section has fewer than 2 strings (label, executable)");
	if (rd_string(c, &s->label, "label") || rd_string(c, &s->exe, "executable path"))
		return -1;
	s->argc = n - 2;
	s->argv = xcalloc(s->argc + 1, sizeof *s->argv);
	for (uint32_t i = 0; i < s->argc; i++)
		if (rd_string(c, &s->argv[i], "argv"))
			return -1;
	return 0;
}

static int parse_modules(struct cursor *c, struct snapshot *s)
{
	uint32_t n;

	if (rd_u32(c, &n, "module count") || check_count(c, n, 24, "module"))
		return -1;
	s->modules = xcalloc(n, sizeof *s->modules);
	s->nmodules = n;
	for (uint32_t i = 0; i < n; i++) {
		struct hd_module *m = &s->modules[i];
		if (rd_u64(c, &m->base, "module base") || rd_u32(c, &m->flags, "module flags") ||
		    rd_u32(c, &m->build_id_len, "build-id length"))
			return -1;
		if (m->build_id_len > HD_MAX_BUILD_ID)
			return bad(c, c->pos - 4, "build-id longer than 64 bytes");
		if (need(c, m->build_id_len, "build-id"))
			return -1;
		memcpy(m->build_id, c->data + c->pos, m->build_id_len);
		c->pos += m->build_id_len;
		if (rd_u32(c, &m->nseg, "segment count"))
			return -1;
		if (m->nseg > HD_MAX_SEGMENTS)
			return bad(c, c->pos - 4, "more than 64 segments in a module");
		if (check_count(c, m->nseg, 28, "segment"))
			return -1;
		m->seg = xcalloc(m->nseg, sizeof *m->seg);
		for (uint32_t k = 0; k < m->nseg; k++)
			if (rd_u64(c, &m->seg[k].start, "segment start") ||
			    rd_u64(c, &m->seg[k].size, "segment size") ||
			    rd_u64(c, &m->seg[k].offset, "segment offset") ||
			    rd_u32(c, &m->seg[k].flags, "segment flags"))
				return -1;
		if (rd_string(c, &m->path, "module path"))
			return -1;
	}
	return 0;
}

static int parse_stacks(struct cursor *c, struct snapshot *s)
{
	uint32_t n;
	const size_t rec = 4 + 2 + 2 + 32;

	if (rd_u32(c, &n, "stack count") || check_count(c, n, rec, "stack"))
		return -1;
	/* Every frame is 8 bytes of the section: this bounds the pool. */
	size_t max_frames = (c->end - c->pos - (size_t)n * rec) / 8;
	s->frame_pool = xcalloc(max_frames + 1, sizeof *s->frame_pool);
	s->stacks = xcalloc(n, sizeof *s->stacks);
	s->nstacks = n;
	size_t used = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct hd_stack *st = &s->stacks[i];
		if (rd_u32(c, &st->id, "stack id") || rd_u16(c, &st->depth, "stack depth") ||
		    rd_u16(c, &st->flags, "stack flags") || rd_u64(c, &st->live_bytes, "stack live bytes") ||
		    rd_u64(c, &st->live_count, "stack live count") || rd_u64(c, &st->alloc_bytes, "stack allocated bytes") ||
		    rd_u64(c, &st->alloc_count, "stack allocated count"))
			return -1;
		if (st->depth > HD_MAX_DEPTH)
			return bad(c, c->pos - 36, "stack depth above 256");
		if (need(c, (size_t)st->depth * 8, "stack frames"))
			return -1;
		/* The frames must leave room for the records still to come. */
		if (used + st->depth > max_frames)
			return bad(c, c->pos, "stack frames run into the records that follow");
		if (st->live_count > st->alloc_count)
			return bad(c, c->pos - 16, "stack has more live blocks than it ever allocated");
		st->frames = s->frame_pool + used;
		for (int k = 0; k < st->depth; k++)
			rd_u64(c, &st->frames[k], "frame");
		used += st->depth;
	}
	return 0;
}

/* NEW_STACKS (version 2): frames without counters. */
static int parse_new_stacks(struct cursor *c, struct snapshot *s)
{
	uint32_t n;
	const size_t rec = 4 + 2 + 2;

	if (rd_u32(c, &n, "stack count") || check_count(c, n, rec, "stack"))
		return -1;
	size_t max_frames = (c->end - c->pos - (size_t)n * rec) / 8;
	s->frame_pool = xcalloc(max_frames + 1, sizeof *s->frame_pool);
	s->stacks = xcalloc(n ? n : 1, sizeof *s->stacks);
	s->nstacks = n;
	size_t used = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct hd_stack *st = &s->stacks[i];
		if (rd_u32(c, &st->id, "stack id") || rd_u16(c, &st->depth, "stack depth") ||
		    rd_u16(c, &st->flags, "stack flags"))
			return -1;
		if (st->depth > HD_MAX_DEPTH)
			return bad(c, c->pos - 4, "stack depth above 256");
		if (need(c, (size_t)st->depth * 8, "stack frames"))
			return -1;
		if (used + st->depth > max_frames)
			return bad(c, c->pos, "stack frames run into the records that follow");
		st->frames = s->frame_pool + used;
		for (int k = 0; k < st->depth; k++)
			rd_u64(c, &st->frames[k], "frame");
		used += st->depth;
	}
	return 0;
}

static int rd_varint(struct cursor *c, uint64_t *v, const char *what)
{
	size_t k = hd_get_varint(c->data + c->pos, c->end - c->pos, v);

	if (!k)
		return bad(c, c->pos, what);
	c->pos += k;
	return 0;
}

/* COUNTERS (version 2): each stack's changes since the base chain. */
static int parse_counters(struct cursor *c, struct snapshot *s)
{
	uint32_t n;
	uint64_t id = 0, v;

	if (rd_u32(c, &n, "counter count") || check_count(c, n, 5, "counter record"))
		return -1;
	s->deltas = xcalloc(n ? n : 1, sizeof *s->deltas);
	for (uint32_t i = 0; i < n; i++) {
		struct hd_delta *d = &s->deltas[i];
		if (rd_varint(c, &v, "bad varint in a counter's stack id"))
			return -1;
		if ((i && !v) || id + v > UINT32_MAX)
			return bad(c, c->pos - 1, "counter stack ids not in increasing order");
		id += v;
		d->id = (uint32_t)id;
		for (int k = 0; k < 4; k++) {
			if (rd_varint(c, &v, "bad varint in a counter"))
				return -1;
			d->d[k] = hd_unzigzag(v);
		}
		s->ndeltas = i + 1;
	}
	return 0;
}

/* REACH: each stack's live blocks by reachability.  The stack ids are
 * checked against the snapshot once its stacks are all known
 * (check_reach). */
static int parse_reach(struct cursor *c, struct snapshot *s)
{
	struct hd_reach *r = &s->reach;
	uint32_t n;
	uint64_t id = 0, v;

	r->present = 1;
	r->at = c->pos;
	if (rd_u32(c, &r->status, "reachability status") || rd_u32(c, &r->threads, "reachability threads stopped") ||
	    rd_u64(c, &r->ns, "reachability time") || rd_u64(c, &r->root_bytes, "reachability root bytes") ||
	    rd_u64(c, &r->block_bytes, "reachability block bytes") || rd_u32(c, &n, "reachability record count") ||
	    check_count(c, n, 9, "reachability record"))
		return -1;
	if (r->status != HD_REACH_DONE && n)
		return bad(c, c->pos - 4, "REACH has records, but its status says nothing was classified");
	r->recs = xcalloc(n ? n : 1, sizeof *r->recs);
	for (uint32_t i = 0; i < n; i++) {
		struct hd_reach_rec *rec = &r->recs[i];
		size_t at = c->pos;
		if (rd_varint(c, &v, "bad varint in a reachability record's stack id"))
			return -1;
		if ((i && !v) || v > UINT32_MAX - id)
			return bad(c, at, "reachability records' stack ids not in increasing order");
		id += v;
		rec->id = (uint32_t)id;
		for (int k = 0; k < HD_REACH_NKINDS; k++)
			if (rd_varint(c, &rec->bytes[k], "bad varint in a reachability record's bytes") ||
			    rd_varint(c, &rec->count[k], "bad varint in a reachability record's count"))
				return -1;
		r->n = i + 1;
	}
	return 0;
}

/* REACH against the whole snapshot (version 2: composed with its chain):
 * every record names a stack of it, every stack with live blocks has a
 * record, and a record's kinds add up to its stack's live bytes and count.
 * 0, or -1 after one line naming the file. */
static int check_reach(const struct snapshot *s)
{
	const struct hd_reach *r = &s->reach;
	struct cursor c = { NULL, 0, 0, s->path };
	char msg[256];
	uint32_t j = 0;

	if (!r->present || r->status != HD_REACH_DONE)
		return 0;
	for (uint32_t i = 0; i <= s->nstacks; i++) {
		const struct hd_stack *st = i < s->nstacks ? &s->stacks[i] : NULL;
		if (j < r->n && (!st || r->recs[j].id < st->id)) {
			snprintf(msg, sizeof msg, "REACH names stack %u, which %s", r->recs[j].id,
				 s->version == 2 ? "no file of its chain has" : "STACKS does not have");
			return bad(&c, r->at, msg);
		}
		if (!st)
			break;
		if (j == r->n || r->recs[j].id != st->id) {
			if (!st->live_count && !st->live_bytes)
				continue;
			snprintf(msg, sizeof msg, "stack %u has live blocks, but REACH has no record of it", st->id);
			return bad(&c, r->at, msg);
		}
		const struct hd_reach_rec *rec = &r->recs[j++];
		uint64_t bytes = 0, count = 0;
		int over = 0;
		for (int k = 0; k < HD_REACH_NKINDS; k++) {
			over |= __builtin_add_overflow(bytes, rec->bytes[k], &bytes);
			over |= __builtin_add_overflow(count, rec->count[k], &count);
		}
		if (over || bytes != st->live_bytes || count != st->live_count) {
			snprintf(msg, sizeof msg, "REACH's kinds of stack %u do not add up to its %llu live bytes in %llu blocks",
				 st->id, (unsigned long long)st->live_bytes, (unsigned long long)st->live_count);
			return bad(&c, r->at, msg);
		}
	}
	return 0;
}

int snapshot_classified(const struct snapshot *s)
{
	return s->reach.present && s->reach.status == HD_REACH_DONE;
}

static int reach_by_id(const void *a, const void *b)
{
	uint32_t x = ((const struct hd_reach_rec *)a)->id, y = ((const struct hd_reach_rec *)b)->id;
	return x < y ? -1 : x > y;
}

const struct hd_reach_rec *snapshot_reach_of(const struct snapshot *s, uint32_t id)
{
	struct hd_reach_rec key = { .id = id };

	if (!snapshot_classified(s) || !s->reach.n)
		return NULL;
	return bsearch(&key, s->reach.recs, s->reach.n, sizeof *s->reach.recs, reach_by_id);
}

const char *snapshot_reach_reason(const struct snapshot *s, char *buf, size_t len)
{
	/* FORMAT.md's table of REACH statuses. */
	static const char *const why[] = {
		[HD_REACH_OFF] = "turned off (HEAPDELTA_REACH=0)",
		[HD_REACH_FOREIGN_MALLOC] = "malloc is not glibc's: another allocator's state cannot be told from the program's",
		[HD_REACH_SAMPLED] = "sampled recording: most blocks are not known",
		[HD_REACH_NOT_STOPPED] = "a thread could not be stopped within the time allowed (it blocks the signal, "
					 "or is stopped itself)",
		[HD_REACH_UNSAFE_EXIT] = "the exit came through _exit (or a fatal signal), where threads cannot be "
					 "stopped safely",
		[HD_REACH_UNSUPPORTED] = "not supported on this architecture yet",
		[HD_REACH_NO_MEMORY] = "memory for the scan could not be mapped",
		[HD_REACH_NO_ARENA] = "glibc's arena state was not found in libc's data",
	};
	uint32_t st = s->reach.status;

	if (snapshot_classified(s))
		return NULL;
	if (!s->reach.present)
		snprintf(buf, len, "no reachability data in this snapshot%s",
			 s->meta[HD_META_TRIGGER] == HD_TRIGGER_EXIT ? "" : " (only exit snapshots have it)");
	else if (st < sizeof why / sizeof why[0] && why[st])
		snprintf(buf, len, "%s", why[st]);
	else
		snprintf(buf, len, "reachability status %u, unknown to this heapdelta", st);
	return buf;
}

const char *snapshot_reach_kind_name(int kind)
{
	static const char *const names[HD_REACH_NKINDS] = { "definite", "indirect", "possible", "reachable" };

	return kind >= 0 && kind < HD_REACH_NKINDS ? names[kind] : "unclassified";
}

/* CODE (version 2): Python code objects first seen since the base. */
static int parse_code(struct cursor *c, struct snapshot *s)
{
	uint32_t n;

	if (rd_u32(c, &n, "code count") || check_count(c, n, 20, "code record"))
		return -1;
	s->own_codes = xcalloc(n ? n : 1, sizeof *s->own_codes);
	for (uint32_t i = 0; i < n; i++) {
		struct hd_code *k = &s->own_codes[i];
		uint32_t len;
		s->nown_codes = i + 1;
		if (rd_u32(c, &k->id, "code id") || rd_u32(c, &k->firstlineno, "code first line") ||
		    rd_string(c, &k->filename, "code file name") || rd_string(c, &k->qualname, "code name") ||
		    rd_u32(c, &len, "line table length") || need(c, len, "line table"))
			return -1;
		if (k->id > 0x7fffffff)
			return bad(c, c->pos - 8, "code id above 2^31");
		k->linetable = xmalloc(len + 1u);
		memcpy(k->linetable, c->data + c->pos, len);
		k->linetable_len = len;
		c->pos += len;
	}
	return 0;
}

const struct hd_code *snapshot_code_of(const struct snapshot *s, uint64_t f)
{
	uint32_t id = hd_frame_code(f);

	return id < s->ncodes ? s->codes[id] : NULL;
}

/* s's code table: base's (ids 0 .. nbase-1 at most) and its own records. */
static int join_codes(struct snapshot *s, const struct hd_code **base, uint32_t nbase)
{
	struct cursor c = { NULL, 0, 0, s->path };
	uint32_t n = nbase;

	for (uint32_t i = 0; i < s->nown_codes; i++)
		if (s->own_codes[i].id >= n)
			n = s->own_codes[i].id + 1;
	s->codes = xcalloc(n ? n : 1, sizeof *s->codes);
	s->ncodes = n;
	if (nbase)
		memcpy(s->codes, base, nbase * sizeof *base);
	for (uint32_t i = 0; i < s->nown_codes; i++) {
		if (s->codes[s->own_codes[i].id])
			return bad(&c, 0, "a code object is new in this file, but its chain has it already");
		s->codes[s->own_codes[i].id] = &s->own_codes[i];
	}
	return 0;
}

/* JIT (version 2): perf map entries naming the frames of the file's new
 * stacks that lie outside every module.  A file merged by thinning holds
 * two files' records one after the other: an address may then be listed
 * twice, and its later record is the one in force. */
static int parse_jit(struct cursor *c, struct snapshot *s)
{
	uint32_t n;

	if (rd_u32(c, &n, "JIT entry count") || check_count(c, n, 28, "JIT entry"))
		return -1;
	s->own_jit = xcalloc(n ? n : 1, sizeof *s->own_jit);
	for (uint32_t i = 0; i < n; i++) {
		struct hd_jit_entry *e = &s->own_jit[i];
		uint32_t naddr;
		s->nown_jit = i + 1;
		if (rd_u64(c, &e->start, "JIT entry start") || rd_u64(c, &e->size, "JIT entry size") ||
		    rd_string(c, &e->name, "JIT entry name") || rd_u32(c, &naddr, "JIT address count") ||
		    check_count(c, naddr, 8, "JIT address"))
			return -1;
		if (!naddr)
			return bad(c, c->pos - 4, "JIT entry names no address");
		s->own_jit_addrs = xrealloc(s->own_jit_addrs, ((size_t)s->nown_jit_addrs + naddr) * sizeof *s->own_jit_addrs);
		for (uint32_t k = 0; k < naddr; k++) {
			struct hd_jit_addr *a = &s->own_jit_addrs[s->nown_jit_addrs++];
			rd_u64(c, &a->addr, "JIT address");
			a->entry = e;
			if (a->addr - e->start >= e->size)
				return bad(c, c->pos - 8, "JIT address outside its entry");
		}
	}
	return 0;
}

static int by_jit_addr(const void *a, const void *b)
{
	const struct hd_jit_addr *x = a, *y = b;

	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	/* File order: entries are in one array, in the file's order. */
	return x->entry < y->entry ? -1 : x->entry > y->entry;
}

/* s's JIT names: base's (sorted by address), overridden by its own. */
static void join_jit(struct snapshot *s, const struct hd_jit_addr *base, uint32_t nbase)
{
	struct hd_jit_addr *own = s->own_jit_addrs;
	uint32_t nown = 0;

	/* Own records sorted by address, in file order among equals, then
	 * the last of each address kept. */
	if (s->nown_jit_addrs) {
		struct hd_jit_addr *tmp = xmalloc((size_t)s->nown_jit_addrs * sizeof *tmp);
		memcpy(tmp, own, (size_t)s->nown_jit_addrs * sizeof *tmp);
		qsort(tmp, s->nown_jit_addrs, sizeof *tmp, by_jit_addr);
		for (uint32_t i = 0; i < s->nown_jit_addrs; i++) {
			if (nown && tmp[nown - 1].addr == tmp[i].addr)
				nown--;
			tmp[nown++] = tmp[i];
		}
		own = tmp;
	}
	s->jit = xcalloc((size_t)nbase + nown + 1, sizeof *s->jit);
	uint32_t i = 0, j = 0, n = 0;
	while (i < nbase || j < nown) {
		if (j < nown && (i == nbase || own[j].addr <= base[i].addr)) {
			if (i < nbase && base[i].addr == own[j].addr)
				i++;   /* the later file's entry names it */
			s->jit[n++] = own[j++];
		} else {
			s->jit[n++] = base[i++];
		}
	}
	s->njit = n;
	if (own != s->own_jit_addrs)
		free(own);
}

const struct hd_jit_entry *snapshot_jit_of(const struct snapshot *s, uint64_t addr)
{
	uint32_t lo = 0, hi = s->njit;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (s->jit[mid].addr < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < s->njit && s->jit[lo].addr == addr ? s->jit[lo].entry : NULL;
}

/* MODULE_EPOCHS, after MODULES (a file may hold them in any order). */
static int parse_module_epochs(struct cursor *c, struct snapshot *s)
{
	uint32_t n;

	if (rd_u32(c, &n, "module epoch count"))
		return -1;
	if (n != s->nmodules)
		return bad(c, c->pos - 4, "MODULE_EPOCHS does not list as many modules as MODULES");
	if (check_count(c, n, 8, "module epoch"))
		return -1;
	for (uint32_t i = 0; i < n; i++)
		if (rd_u32(c, &s->modules[i].first_epoch, "module first epoch") ||
		    rd_u32(c, &s->modules[i].gone_epoch, "module gone epoch"))
			return -1;
	return 0;
}

static int by_id(const void *a, const void *b)
{
	uint32_t x = ((const struct hd_stack *)a)->id, y = ((const struct hd_stack *)b)->id;
	return x < y ? -1 : x > y;
}

const struct hd_stack *snapshot_stack_by_id(const struct snapshot *s, uint32_t id)
{
	struct hd_stack key = { .id = id };

	if (!s->nstacks)
		return NULL;
	return bsearch(&key, s->stacks, s->nstacks, sizeof *s->stacks, by_id);
}

/* STACK_EPOCHS, after STACKS (sorted by id by then). */
static int parse_stack_epochs(struct cursor *c, struct snapshot *s)
{
	uint32_t n;

	if (rd_u32(c, &n, "stack epoch count") || check_count(c, n, 8, "stack epoch"))
		return -1;
	if (s->version == 2) {   /* may name stacks of the base chain: applied later */
		s->epochs = xcalloc(n ? n : 1, sizeof *s->epochs);
		for (uint32_t i = 0; i < n; i++)
			if (rd_u32(c, &s->epochs[i].id, "stack epoch id") || rd_u32(c, &s->epochs[i].epoch, "stack epoch"))
				return -1;
		s->nepochs = n;
		return 0;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint32_t id, epoch;
		if (rd_u32(c, &id, "stack epoch id") || rd_u32(c, &epoch, "stack epoch"))
			return -1;
		struct hd_stack *st = (struct hd_stack *)snapshot_stack_by_id(s, id);
		if (!st)
			return bad(c, c->pos - 8, "STACK_EPOCHS names a stack that STACKS does not have");
		st->epoch = epoch;
	}
	return 0;
}

static int parse_mismatches(struct cursor *c, struct snapshot *s)
{
	uint32_t n;

	if (rd_u32(c, &n, "mismatch count") || check_count(c, n, 16, "mismatch"))
		return -1;
	s->mismatches = xcalloc(n ? n : 1, sizeof *s->mismatches);
	for (uint32_t i = 0; i < n; i++) {
		struct hd_mismatch *m = &s->mismatches[i];
		uint32_t kinds;
		if (rd_u32(c, &m->alloc_stack, "mismatch stack id") || need(c, 2, "mismatch kinds"))
			return -1;
		kinds = c->data[c->pos] | (uint32_t)c->data[c->pos + 1] << 8;
		m->alloc_kind = (uint8_t)kinds;
		m->free_kind = (uint8_t)(kinds >> 8);
		c->pos += 2;
		if (m->alloc_kind > HD_KIND_NEW_ARRAY || m->free_kind > HD_KIND_NEW_ARRAY || m->alloc_kind == m->free_kind)
			return bad(c, c->pos - 2, "mismatch with an unknown or matching pair of families");
		if (rd_u16(c, &m->depth, "mismatch depth") || rd_u64(c, &m->size, "mismatch size"))
			return -1;
		if (m->depth > HD_MAX_DEPTH)
			return bad(c, c->pos - 10, "mismatch stack deeper than 256");
		if (need(c, (size_t)m->depth * 8, "mismatch frames"))
			return -1;
		m->frames = xcalloc(m->depth + 1u, sizeof *m->frames);
		s->nmismatches = i + 1;
		for (int k = 0; k < m->depth; k++)
			rd_u64(c, &m->frames[k], "frame");
		if (s->version == 1 && !snapshot_stack_by_id(s, m->alloc_stack))
			return bad(c, c->pos, "mismatch names a stack that STACKS does not have");
	}
	return 0;
}

/* Version 2: s's own new stacks joined to its base chain's (base, sorted
 * by id), then its counter changes and epoch updates applied.  s->stacks
 * becomes the whole snapshot; the frames stay where they are (base's in
 * earlier files' pools, s's in s->frame_pool).  0, or -1 after one line. */
static int apply_changes(struct snapshot *s, const struct hd_stack *base, uint32_t nbase)
{
	struct cursor c = { NULL, 0, 0, s->path };
	struct hd_stack *own = s->stacks;
	uint32_t nown = own ? s->nstacks : 0, i = 0, j = 0, n = 0;
	struct hd_stack *all = xcalloc((size_t)nbase + nown + 1, sizeof *all);

	while (i < nbase || j < nown) {
		if (j < nown && (i == nbase || own[j].id < base[i].id)) {
			all[n++] = own[j++];
		} else if (i < nbase && (j == nown || base[i].id < own[j].id)) {
			all[n++] = base[i++];
		} else {
			free(all);
			char msg[128];
			snprintf(msg, sizeof msg, "stack %u is new in this file, but its chain has it already", own[j].id);
			return bad(&c, 0, msg);
		}
	}
	free(own);
	s->stacks = all;
	s->nstacks = n;
	s->partial = 0;
	for (uint32_t k = 0; k < s->ndeltas; k++) {
		struct hd_stack *st = (struct hd_stack *)snapshot_stack_by_id(s, s->deltas[k].id);
		if (!st) {
			char msg[128];
			snprintf(msg, sizeof msg, "COUNTERS names stack %u, which no file of its chain has", s->deltas[k].id);
			return bad(&c, 0, msg);
		}
		st->live_bytes += (uint64_t)s->deltas[k].d[0];
		st->live_count += (uint64_t)s->deltas[k].d[1];
		st->alloc_bytes += (uint64_t)s->deltas[k].d[2];
		st->alloc_count += (uint64_t)s->deltas[k].d[3];
	}
	for (uint32_t k = 0; k < s->nepochs; k++) {
		struct hd_stack *st = (struct hd_stack *)snapshot_stack_by_id(s, s->epochs[k].id);
		if (!st)
			return bad(&c, 0, "STACK_EPOCHS names a stack that no file of its chain has");
		st->epoch = s->epochs[k].epoch;
	}
	for (uint32_t k = 0; k < n; k++) {
		const struct hd_stack *st = &all[k];
		if ((int64_t)st->live_bytes < 0 || (int64_t)st->live_count < 0 || st->live_count > st->alloc_count ||
		    (int64_t)st->alloc_count < 0) {
			char msg[128];
			snprintf(msg, sizeof msg, "stack %u's counters add up to a negative or impossible value", st->id);
			return bad(&c, 0, msg);
		}
	}
	for (uint32_t k = 0; k < s->nmismatches; k++)
		if (!snapshot_stack_by_id(s, s->mismatches[k].alloc_stack))
			return bad(&c, 0, "a mismatch names a stack that no file of its chain has");
	return check_reach(s);
}

int snapshot_parse(const char *path, const unsigned char *data, size_t len, struct snapshot *s)
{
	struct cursor later[3] = { { 0 } };   /* MODULE_EPOCHS, STACK_EPOCHS, MISMATCHES */
	struct cursor c = { data, 0, len, path };
	uint32_t version, tag, reserved;
	uint64_t slen;
	int seen_meta = 0, seen_end = 0;

	memset(s, 0, sizeof *s);
	s->path = xstrdup(path);
	if (len == 0)
		return bad(&c, 0, "empty file");
	if (len < HD_MAGIC_LEN || memcmp(data, HD_MAGIC, HD_MAGIC_LEN) != 0)
		return bad(&c, 0, "not a heapdelta snapshot (wrong magic)");
	c.pos = HD_MAGIC_LEN;
	if (rd_u32(&c, &version, "format version"))
		return -1;
	if (version < HD_VERSION_MIN || version > HD_VERSION) {
		char msg[128];
		snprintf(msg, sizeof msg, "format version %u is not supported (this heapdelta reads versions %d to %d)",
			 version, HD_VERSION_MIN, HD_VERSION);
		return bad(&c, 8, msg);
	}
	s->version = version;
	if (rd_u32(&c, &reserved, "header flags"))
		return -1;

	while (!seen_end) {
		size_t at = c.pos;
		if (c.pos == c.end)
			return bad(&c, at, "truncated: file ends before the END section");
		if (rd_u32(&c, &tag, "section tag") || rd_u32(&c, &reserved, "section header") ||
		    rd_u64(&c, &slen, "section length"))
			return -1;
		if (slen > c.end - c.pos) {
			char msg[160];
			snprintf(msg, sizeof msg, "truncated: section %u claims %llu bytes, %zu left",
				 tag, (unsigned long long)slen, c.end - c.pos);
			return bad(&c, at, msg);
		}
		struct cursor sec = { data, c.pos, c.pos + (size_t)slen, path };
		int rc = 0;
		switch (tag) {
		case HD_SEC_META:    rc = parse_meta(&sec, s); seen_meta = 1; break;
		case HD_SEC_STRINGS: rc = s->exe ? bad(&c, at, "second STRINGS section") : parse_strings(&sec, s); break;
		case HD_SEC_MODULES: rc = s->modules ? bad(&c, at, "second MODULES section") : parse_modules(&sec, s); break;
		case HD_SEC_STACKS:
			rc = s->stacks ? bad(&c, at, "second STACKS section")
			     : version != 1 ? bad(&c, at, "STACKS section in a version 2 file") : parse_stacks(&sec, s);
			break;
		case HD_SEC_NEW_STACKS:
			rc = s->stacks ? bad(&c, at, "second NEW_STACKS section")
			     : version != 2 ? bad(&c, at, "NEW_STACKS section in a version 1 file") : parse_new_stacks(&sec, s);
			break;
		case HD_SEC_COUNTERS:
			rc = s->deltas ? bad(&c, at, "second COUNTERS section")
			     : version != 2 ? bad(&c, at, "COUNTERS section in a version 1 file") : parse_counters(&sec, s);
			break;
		case HD_SEC_CODE:
			rc = s->own_codes ? bad(&c, at, "second CODE section")
			     : version != 2 ? bad(&c, at, "CODE section in a version 1 file") : parse_code(&sec, s);
			break;
		case HD_SEC_REACH:
			rc = s->reach.present ? bad(&c, at, "second REACH section") : parse_reach(&sec, s);
			break;
		case HD_SEC_JIT:
			rc = s->own_jit ? bad(&c, at, "second JIT section")
			     : version != 2 ? bad(&c, at, "JIT section in a version 1 file") : parse_jit(&sec, s);
			break;
		case HD_SEC_MODULE_EPOCHS:
		case HD_SEC_STACK_EPOCHS:
		case HD_SEC_MISMATCHES: {
			/* They refer to MODULES and STACKS: read once all are in. */
			struct cursor *l = &later[tag - HD_SEC_MODULE_EPOCHS];
			rc = l->data ? bad(&c, at, "a section appears twice") : (*l = sec, 0);
			break;
		}
		case HD_SEC_END:     seen_end = 1; break;
		default:             break;  /* a newer writer's section: skip */
		}
		if (rc)
			return -1;
		if (tag != HD_SEC_END && sec.pos != sec.end &&
		    (tag == HD_SEC_STRINGS || tag == HD_SEC_MODULES || tag == HD_SEC_STACKS || tag == HD_SEC_NEW_STACKS ||
		     tag == HD_SEC_COUNTERS || tag == HD_SEC_CODE || tag == HD_SEC_REACH || tag == HD_SEC_JIT))
			return bad(&sec, sec.pos, "section has bytes after its last record");
		c.pos += (size_t)slen;
	}
	if (c.pos != c.end)
		return bad(&c, c.pos, "data after the END section");
	if (!seen_meta)
		return bad(&c, HD_FILE_HDR_LEN, "no META section");
	for (uint32_t i = 0; i < s->nmodules; i++)
		if (!later[0].data)
			s->modules[i].gone_epoch = HD_EPOCH_NONE;
	if (s->nstacks)
		qsort(s->stacks, s->nstacks, sizeof *s->stacks, by_id);
	for (uint32_t i = 1; i < s->nstacks; i++)
		if (s->stacks[i].id == s->stacks[i - 1].id)
			return bad(&c, 0, "two stacks with one id");
	int (*const parse_later[3])(struct cursor *, struct snapshot *) = {
		parse_module_epochs, parse_stack_epochs, parse_mismatches
	};
	for (int k = 0; k < 3; k++) {
		if (!later[k].data)
			continue;
		if (parse_later[k](&later[k], s))
			return -1;
		if (later[k].pos != later[k].end)
			return bad(&later[k], later[k].pos, "section has bytes after its last record");
	}
	if (!s->exe) {
		s->exe = xstrdup("");
		s->label = xstrdup("");
		s->argv = xcalloc(1, sizeof *s->argv);
	}
	if (version == 2) {
		if (s->meta[HD_META_BASE_SEQ]) {
			s->partial = 1;   /* snapshot_load() applies the rest */
			return 0;
		}
		if (apply_changes(s, NULL, 0) < 0)
			return -1;
		join_jit(s, NULL, 0);
		return join_codes(s, NULL, 0);
	}
	return check_reach(s);
}

static int load_file(const char *path, struct snapshot *s);

/*
 * Version 2 chains.  A file's base is found in its directory by name
 * (heapdelta.PID.BASE.*.snap) and checked by run id.  The last chain
 * composed is kept (its stacks, with frames in pools that live as long as
 * the program), so loading a process's files in seq order reads each file
 * once; any other order rebuilds the chain from its first file.
 */
static struct {
	char *dir;
	uint64_t pid, run_id, seq;
	struct hd_stack *stacks;
	uint32_t nstacks;
	const struct hd_code **codes;
	uint32_t ncodes;
	struct hd_jit_addr *jit;
	uint32_t njit;
} last;

static uint64_t **pools;   /* frame pools of chained files: the cache points into them */
static size_t npools;

static struct hd_code **code_pools;   /* CODE records of chained files, likewise */
static size_t ncode_pools;

static struct hd_jit_entry **jit_pools;   /* JIT entries of chained files, likewise */
static size_t njit_pools;

static void keep_frames(struct snapshot *s)
{
	if (s->frame_pool) {
		pools = xrealloc(pools, (npools + 1) * sizeof *pools);
		pools[npools++] = s->frame_pool;
		s->frame_pool = NULL;
	}
	if (s->own_codes) {
		code_pools = xrealloc(code_pools, (ncode_pools + 1) * sizeof *code_pools);
		code_pools[ncode_pools++] = s->own_codes;
		s->own_codes = NULL;
		s->nown_codes = 0;
	}
	if (s->own_jit) {
		jit_pools = xrealloc(jit_pools, (njit_pools + 1) * sizeof *jit_pools);
		jit_pools[njit_pools++] = s->own_jit;
		s->own_jit = NULL;
		s->nown_jit = 0;
	}
}

static void remember(const char *dir, const struct snapshot *s)
{
	free(last.dir);
	free(last.stacks);
	last.dir = xstrdup(dir);
	last.pid = s->meta[HD_META_PID];
	last.run_id = s->meta[HD_META_RUN_ID];
	last.seq = s->meta[HD_META_SEQ];
	last.nstacks = s->nstacks;
	last.stacks = xmalloc(((size_t)s->nstacks + 1) * sizeof *last.stacks);
	memcpy(last.stacks, s->stacks, (size_t)s->nstacks * sizeof *last.stacks);
	free(last.codes);
	last.ncodes = s->ncodes;
	last.codes = xcalloc((size_t)s->ncodes + 1, sizeof *last.codes);
	if (s->ncodes)
		memcpy(last.codes, s->codes, (size_t)s->ncodes * sizeof *last.codes);
	free(last.jit);
	last.njit = s->njit;
	last.jit = xcalloc((size_t)s->njit + 1, sizeof *last.jit);
	if (s->njit)
		memcpy(last.jit, s->jit, (size_t)s->njit * sizeof *last.jit);
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? xstrndup(path, (size_t)(slash - path)) : xstrdup(".");
}

/* The file of snapshot seq of process pid in dir, or NULL. */
static char *find_seq(const char *dir, uint64_t pid, uint64_t seq)
{
	static const char *const triggers[] = { "interval", "signal", "api", "exit" };
	struct stat st;

	for (int i = 0; i < 4; i++) {
		char *p = xasprintf("%s/heapdelta.%" PRIu64 ".%" PRIu64 ".%s.snap", dir, pid, seq, triggers[i]);
		if (stat(p, &st) == 0)
			return p;
		free(p);
	}
	return NULL;
}

/* Compose s (a partial file) with its chain. */
static int load_chain(const char *path, struct snapshot *s)
{
	char *dir = dir_of(path);
	uint64_t pid = s->meta[HD_META_PID], run = s->meta[HD_META_RUN_ID];
	struct snapshot *chain = NULL;   /* bases, newest first */
	size_t n = 0;
	int rc = -1;

	/* Walk back to a base the cache holds, or to the first file. */
	const struct snapshot *want = s;
	while (want->partial && !(last.dir && !strcmp(last.dir, dir) && last.pid == pid && last.run_id == run &&
				  last.seq == want->meta[HD_META_BASE_SEQ])) {
		uint64_t base = want->meta[HD_META_BASE_SEQ];
		if (base >= want->meta[HD_META_SEQ]) {
			error("'%s': its base, snapshot %" PRIu64 ", is not an earlier one", want->path, base);
			goto out;
		}
		char *bp = find_seq(dir, pid, base);
		if (!bp) {
			error("snapshot %" PRIu64 " of pid %" PRIu64 ", the base of '%s', is missing", base, pid, want->path);
			goto out;
		}
		chain = xrealloc(chain, (n + 1) * sizeof *chain);
		if (load_file(bp, &chain[n]) < 0) {
			free(bp);
			snapshot_release(&chain[n]);
			goto out;
		}
		free(bp);
		n++;
		if (chain[n - 1].meta[HD_META_RUN_ID] != run || chain[n - 1].version != 2) {
			error("snapshot %" PRIu64 " of pid %" PRIu64 ", the base of '%s', is missing (the file of that name "
			      "comes from another run of that pid)", base, pid, want->path);
			goto out;
		}
		want = &chain[n - 1];
	}
	/* Compose forward: the oldest base first. */
	for (size_t k = n; k-- > 0;) {
		struct snapshot *b = &chain[k];
		int was_partial = b->partial;
		if (was_partial && (apply_changes(b, last.stacks, last.nstacks) < 0 ||
				    join_codes(b, last.codes, last.ncodes) < 0))
			goto out;
		if (was_partial)
			join_jit(b, last.jit, last.njit);
		keep_frames(b);
		remember(dir, b);
	}
	if (apply_changes(s, last.stacks, last.nstacks) < 0 || join_codes(s, last.codes, last.ncodes) < 0)
		goto out;
	join_jit(s, last.jit, last.njit);
	keep_frames(s);
	remember(dir, s);
	rc = 0;
out:
	for (size_t k = 0; k < n; k++)
		snapshot_release(&chain[k]);
	free(chain);
	free(dir);
	return rc;
}

int snapshot_load(const char *path, struct snapshot *s)
{
	if (load_file(path, s) < 0)
		return -1;
	if (s->version != 2)
		return 0;
	if (s->partial)
		return load_chain(path, s);
	char *dir = dir_of(path);
	keep_frames(s);
	remember(dir, s);
	free(dir);
	return 0;
}

static int load_file(const char *path, struct snapshot *s)
{
	struct stat st;
	unsigned char *data;
	size_t done = 0;
	int fd, rc;

	memset(s, 0, sizeof *s);
	/* O_NONBLOCK: a FIFO named like a snapshot (in a directory the traced
	 * program could write to) must be refused below, not waited on. */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return error("cannot open '%s': %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return error("'%s' is not a regular file", path);
	}
	if ((uint64_t)st.st_size > MAX_FILE) {
		close(fd);
		return error("'%s' is larger than 4 GiB; not a snapshot", path);
	}
	data = xmalloc((size_t)st.st_size + 1);
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, data + done, (size_t)st.st_size - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	close(fd);
	rc = snapshot_parse(path, data, done, s);
	free(data);
	return rc;
}

void snapshot_release(struct snapshot *s)
{
	free(s->path);
	free(s->label);
	free(s->exe);
	for (uint32_t i = 0; s->argv && i < s->argc; i++)
		free(s->argv[i]);
	free(s->argv);
	for (uint32_t i = 0; s->modules && i < s->nmodules; i++) {
		free(s->modules[i].seg);
		free(s->modules[i].path);
	}
	free(s->modules);
	free(s->stacks);
	free(s->frame_pool);
	for (uint32_t i = 0; s->mismatches && i < s->nmismatches; i++)
		free(s->mismatches[i].frames);
	free(s->mismatches);
	free(s->deltas);
	free(s->epochs);
	for (uint32_t i = 0; s->own_codes && i < s->nown_codes; i++) {
		free(s->own_codes[i].filename);
		free(s->own_codes[i].qualname);
		free(s->own_codes[i].linetable);
	}
	free(s->own_codes);
	free(s->codes);
	for (uint32_t i = 0; s->own_jit && i < s->nown_jit; i++)
		free(s->own_jit[i].name);
	free(s->own_jit);
	free(s->own_jit_addrs);
	free(s->jit);
	free(s->reach.recs);
	memset(s, 0, sizeof *s);
}

const struct hd_module *snapshot_module_of(const struct snapshot *s, uint64_t addr, uint32_t epoch)
{
	const struct hd_module *loaded = NULL, *unloaded = NULL;

	for (uint32_t i = 0; i < s->nmodules; i++) {
		const struct hd_module *m = &s->modules[i];
		for (uint32_t k = 0; k < m->nseg; k++) {
			if (addr - m->seg[k].start >= m->seg[k].size)
				continue;
			if (m->first_epoch <= epoch && epoch < m->gone_epoch)
				return m;   /* the module mapped there in the stack's epoch */
			if (!(m->flags & HD_MOD_UNLOADED) && !loaded)
				loaded = m;
			else if (!unloaded)
				unloaded = m;
		}
	}
	return loaded ? loaded : unloaded;
}

int snapshot_paths(char **args, int nargs, char ***paths, int *npaths)
{
	for (int i = 0; i < nargs; i++) {
		struct stat st;
		if (stat(args[i], &st) < 0)
			return error("cannot open '%s': %s", args[i], strerror(errno));
		if (!S_ISDIR(st.st_mode)) {
			*paths = xrealloc(*paths, (size_t)(*npaths + 1) * sizeof **paths);
			(*paths)[(*npaths)++] = xstrdup(args[i]);
			continue;
		}
		DIR *d = opendir(args[i]);
		struct dirent *de;
		if (!d)
			return error("cannot open directory '%s': %s", args[i], strerror(errno));
		while ((de = readdir(d))) {
			size_t l = strlen(de->d_name);
			if (de->d_name[0] == '.' || l < 6 || strcmp(de->d_name + l - 5, ".snap"))
				continue;
			*paths = xrealloc(*paths, (size_t)(*npaths + 1) * sizeof **paths);
			(*paths)[(*npaths)++] = xasprintf("%s/%s", args[i], de->d_name);
		}
		closedir(d);
	}
	return 0;
}
