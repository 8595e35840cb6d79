/*
 * pyframes.c - Python frames (frame values with bit 63 set, format/FORMAT.md)
 * to file, line and qualified name, from the code object the snapshot
 * copied: the line is read from CPython 3.11's location table at the
 * instruction the frame was executing (CPython's Objects/locations.md).
 *
 * Results are kept per code object and instruction, so a frame seen in many
 * stacks and snapshots is read once.
 */
#include "pyframes.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* A 3.11 location table varint: 6 bits a byte, low groups first, bit 6 set
 * on every byte but the last. */
static int lt_varint(const unsigned char *p, size_t len, size_t *i, uint32_t *v)
{
	uint32_t r = 0;
	int shift = 0;

	for (;;) {
		if (*i >= len || shift > 30)
			return -1;
		unsigned b = p[(*i)++];
		r |= (uint32_t)(b & 63) << shift;
		shift += 6;
		if (!(b & 64))
			break;
	}
	*v = r;
	return 0;
}

static int lt_svarint(const unsigned char *p, size_t len, size_t *i, int *v)
{
	uint32_t u;

	if (lt_varint(p, len, i, &u) < 0)
		return -1;
	*v = (u & 1) ? -(int)(u >> 1) : (int)(u >> 1);
	return 0;
}

int pyframe_line(const unsigned char *lt, size_t len, int firstlineno, uint32_t instr)
{
	int line = firstlineno;
	uint32_t at = 0;
	size_t i = 0;

	while (i < len) {
		unsigned b = lt[i++];
		int code = (b >> 3) & 15, delta = 0, has = 1;
		uint32_t units = (b & 7) + 1, skip;
		if (!(b & 0x80))
			return -1;   /* not the first byte of an entry */
		if (code == 15) {
			has = 0;    /* no location */
		} else if (code == 14) {
			if (lt_svarint(lt, len, &i, &delta) < 0 || lt_varint(lt, len, &i, &skip) < 0 ||
			    lt_varint(lt, len, &i, &skip) < 0 || lt_varint(lt, len, &i, &skip) < 0)
				return -1;
		} else if (code == 13) {
			if (lt_svarint(lt, len, &i, &delta) < 0)
				return -1;
		} else if (code >= 10) {
			delta = code - 10;
			i += 2;     /* start and end column */
		} else {
			i += 1;     /* short form: the same line, one byte of columns */
		}
		line += delta;
		if (instr < at + units)
			return has ? line : -1;
		at += units;
	}
	return -1;
}

struct pyframe_cache {
	struct entry { const struct hd_code *code; uint32_t instr; struct sym_frame *f; } *v;   /* f: stable */
	size_t n, cap;   /* open addressing, cap a power of two */
};

struct pyframe_cache *pyframe_cache_new(void)
{
	struct pyframe_cache *c = xcalloc(1, sizeof *c);

	c->cap = 1024;
	c->v = xcalloc(c->cap, sizeof *c->v);
	return c;
}

void pyframe_cache_free(struct pyframe_cache *c)
{
	if (c) {
		for (size_t i = 0; i < c->cap; i++)
			free(c->v[i].f);
		free(c->v);
		free(c);
	}
}

static size_t slot_of(const struct pyframe_cache *c, const struct hd_code *code, uint32_t instr)
{
	uint64_t h = ((uint64_t)(uintptr_t)code * 0x9e3779b97f4a7c15u) ^ ((uint64_t)instr * 0xd6e8feb86659fd93u);
	size_t k = (size_t)(h >> 20) & (c->cap - 1);

	while (c->v[k].code && (c->v[k].code != code || c->v[k].instr != instr))
		k = (k + 1) & (c->cap - 1);
	return k;
}

const struct sym_frame *pyframe_symbolize(struct pyframe_cache *c, const struct snapshot *s, uint64_t frame)
{
	static struct sym_frame unknown = { "??", NULL, 0, "python", 0, 0, 0, 1 };
	const struct hd_code *code = snapshot_code_of(s, frame);
	uint32_t instr = hd_frame_instr(frame);

	if (!code) {
		unknown.address = frame;
		return &unknown;
	}
	if (2 * (c->n + 1) > c->cap) {   /* grow at half full */
		struct pyframe_cache old = *c;
		c->cap *= 2;
		c->v = xcalloc(c->cap, sizeof *c->v);
		c->n = 0;
		for (size_t i = 0; i < old.cap; i++)
			if (old.v[i].code) {
				c->v[slot_of(c, old.v[i].code, old.v[i].instr)] = old.v[i];
				c->n++;
			}
		free(old.v);
	}
	size_t k = slot_of(c, code, instr);
	if (!c->v[k].code) {
		int line = pyframe_line(code->linetable, code->linetable_len, (int)code->firstlineno, instr);
		struct sym_frame *f = xmalloc(sizeof *f);
		*f = (struct sym_frame){ .function = code->qualname, .file = code->filename, .line = line > 0 ? line : 0,
					 .module = "python", .address = frame, .offset = (uint64_t)instr * 2, .python = 1 };
		c->v[k] = (struct entry){ code, instr, f };
		c->n++;
	}
	return c->v[k].f;
}
