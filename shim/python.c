/*
 * python.c - CPython 3.11's own frames in the recorded stacks.
 *
 * A native frame of the eval loop (_PyEval_EvalFrameDefault) runs several
 * Python frames: from the thread's current frame back to, and including,
 * the next one marked is_entry (3.11 runs Python-to-Python calls inside one
 * eval loop).  After the native stack is captured, each such native frame
 * is replaced by the Python frames it was running, innermost first; native
 * frames between them (a C builtin calling back into Python) stay where
 * they are.  A Python frame is recorded as one frame value with bit 63 set:
 * bits 32..62 the code object's id here, bits 0..31 the index of the
 * instruction it was executing (code units).  The code objects themselves
 * (file name, qualified name, first line, location table) are copied into
 * our memory the first time they are seen and written in the snapshot's
 * CODE section; the analyzer computes the line from the location table.
 *
 * Safety: only the allocating thread's own frame chain is read, which
 * cannot change while that thread is inside malloc; its thread state comes
 * from PyGILState_GetThisThreadState (a thread-local lookup that neither
 * allocates nor takes the GIL); every walk is bounded; a thread without a
 * Python thread state keeps its native frames.  Code objects are alive
 * while a frame runs them.  A code object freed and another allocated at
 * its address is told apart by the fields we copied (name, file, first
 * line, location table): it gets an id of its own.
 *
 * Versions: the layout below is 3.11's (read in CPython's
 * Include/internal/pycore_frame.h and Include/cpython/code.h, and checked
 * on Debian's /usr/bin/python3.11).  Another version records native
 * frames only, and says so once at start.
 *
 * Workload: a range check per native frame of every recorded stack; for
 * Python stacks, a thread-state lookup and a walk of the Python frames
 * (most often a few); a code object is copied once.
 */
#include "internal.h"

#include <dlfcn.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>

/* CPython 3.11, x86-64: offsets in the structures we read. */
#define TSTATE_CFRAME        56    /* PyThreadState.cframe */
#define CFRAME_CURRENT       8     /* _PyCFrame.current_frame */
#define FRAME_CODE           32    /* _PyInterpreterFrame.f_code */
#define FRAME_PREVIOUS       48    /* .previous */
#define FRAME_PREV_INSTR     56    /* .prev_instr */
#define FRAME_IS_ENTRY       68    /* .is_entry (char) */
#define CODE_FIRSTLINENO     72    /* PyCodeObject.co_firstlineno (int) */
#define CODE_FILENAME        112   /* .co_filename (str) */
#define CODE_QUALNAME        128   /* .co_qualname (str) */
#define CODE_LINETABLE       136   /* .co_linetable (bytes) */
#define CODE_FIRSTTRACEABLE  168   /* ._co_firsttraceable (int) */
#define CODE_CODE            184   /* .co_code_adaptive: the instructions */
#define BYTES_SIZE           16    /* PyBytesObject.ob_size */
#define BYTES_DATA           32    /* .ob_sval */
#define STR_LENGTH           16    /* PyASCIIObject.length */
#define STR_STATE            32    /* .state: kind in bits 2..4, compact bit 5, ascii bit 6 */
#define STR_ASCII_DATA       48    /* a compact ASCII string's characters */
#define STR_COMPACT_DATA     72    /* a compact non-ASCII string's characters */

#define MAX_PY_FRAMES  512         /* bound on one walk */
#define MAX_CODES      (1u << 20)
#define CODE_SLOTS     (1u << 21)
#define ARENA_BYTES    (UINT64_C(256) << 20)
#define MAX_STR        4096        /* longer names are cut */
#define MAX_LINETABLE  (1u << 20)

struct code {
	uintptr_t addr;
	uintptr_t filename, qualname, linetable;   /* the objects, to tell reuse apart */
	int32_t firstlineno;
	uint32_t filename_off, filename_len, qualname_off, qualname_len, linetable_off, linetable_len;
};

uintptr_t hds_eval_lo, hds_eval_hi;
static void *(*get_tstate)(void);
static int enabled;
static struct code *codes;
static _Atomic uint32_t ncodes;
static _Atomic uint32_t *slots;          /* code index + 1, by address hash */
static unsigned char *arena;
static uint64_t arena_used;
static atomic_flag code_lock = ATOMIC_FLAG_INIT;

int hds_python_enabled(void)
{
	return enabled;
}

void hds_python_init(void)
{
	void *eval = dlsym(RTLD_DEFAULT, "_PyEval_EvalFrameDefault");
	const unsigned long *version = dlsym(RTLD_DEFAULT, "Py_Version");
	void *tstate = dlsym(RTLD_DEFAULT, "PyGILState_GetThisThreadState");
	Dl_info info;
	const ElfW(Sym) *sym = NULL;

	if (!eval || !version || !tstate)
		return;   /* not CPython (or not one whose symbols we can see) */
#if !defined(__x86_64__)
	hds_warn("Python frames are read on x86-64 only for now; native frames only", NULL);
	return;
#endif
	const char *want = getenv("HEAPDELTA_PYTHON");
	if (want && strcmp(want, "0") == 0)
		return;   /* native frames only, as asked */
	unsigned major = (unsigned)(*version >> 24) & 0xff, minor = (unsigned)(*version >> 16) & 0xff;
	if (major != 3 || minor != 11) {
		char v[16] = "3.";
		v[2] = (char)('0' + minor / 10);
		v[3] = (char)('0' + minor % 10);
		v[4] = 0;
		hds_warn("Python frames are read for CPython 3.11 only; this is Python", minor >= 10 ? v : "3.x");
		return;
	}
	if (!dladdr1(eval, &info, (void **)&sym, RTLD_DL_SYMENT) || !sym || !sym->st_size)
		return;
	codes = hds_map(sizeof *codes * MAX_CODES);
	slots = hds_map(sizeof *slots * CODE_SLOTS);
	arena = hds_map(ARENA_BYTES);
	if (!codes || !slots || !arena)
		return;
	hds_eval_lo = (uintptr_t)eval;
	hds_eval_hi = hds_eval_lo + sym->st_size;
	memcpy(&get_tstate, &tstate, sizeof tstate);
	enabled = 1;
	const char *pm = getenv("PYTHONMALLOC");
	if (!pm || strcmp(pm, "malloc") != 0)
		hds_warn("CPython's own allocator serves small objects unseen; set PYTHONMALLOC=malloc "
			 "(heapdelta run does)", NULL);
}

static inline uintptr_t rd_ptr(uintptr_t p, int off)
{
	return *(const uintptr_t *)(p + (uintptr_t)off);
}

/* Copy n bytes into the arena; its offset, or UINT32_MAX when full. */
static uint32_t arena_put(const void *p, size_t n)
{
	if (arena_used + n > ARENA_BYTES)
		return UINT32_MAX;
	memcpy(arena + arena_used, p, n);
	arena_used += n;
	return (uint32_t)(arena_used - n);
}

/* A str object as UTF-8 into the arena (*len set); UINT32_MAX when it is
 * not a compact string we can read or the arena is full. */
static uint32_t copy_str(uintptr_t s, uint32_t *len)
{
	if (!s)
		return UINT32_MAX;
	uint64_t n = rd_ptr(s, STR_LENGTH);
	uint32_t state = *(const uint32_t *)(s + STR_STATE);
	unsigned kind = (state >> 2) & 7, compact = (state >> 5) & 1, ascii = (state >> 6) & 1;

	if (!compact || n > MAX_STR)
		return UINT32_MAX;
	if (ascii) {
		*len = (uint32_t)n;
		return arena_put((const void *)(s + STR_ASCII_DATA), n);
	}
	/* UCS1/2/4 to UTF-8, into the arena directly. */
	if (arena_used + 4 * n > ARENA_BYTES)
		return UINT32_MAX;
	uint64_t start = arena_used;
	unsigned char *o = arena + arena_used;
	for (uint64_t i = 0; i < n; i++) {
		uint32_t c = kind == 1 ? ((const uint8_t *)(s + STR_COMPACT_DATA))[i]
			   : kind == 2 ? ((const uint16_t *)(s + STR_COMPACT_DATA))[i]
				       : ((const uint32_t *)(s + STR_COMPACT_DATA))[i];
		if (c < 0x80) {
			*o++ = (unsigned char)c;
		} else if (c < 0x800) {
			*o++ = (unsigned char)(0xc0 | c >> 6);
			*o++ = (unsigned char)(0x80 | (c & 0x3f));
		} else if (c < 0x10000) {
			*o++ = (unsigned char)(0xe0 | c >> 12);
			*o++ = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
			*o++ = (unsigned char)(0x80 | (c & 0x3f));
		} else {
			*o++ = (unsigned char)(0xf0 | c >> 18);
			*o++ = (unsigned char)(0x80 | ((c >> 12) & 0x3f));
			*o++ = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
			*o++ = (unsigned char)(0x80 | (c & 0x3f));
		}
	}
	arena_used = (uint64_t)(o - arena);
	*len = (uint32_t)(arena_used - start);
	return (uint32_t)start;
}

static inline int same_code(const struct code *c, uintptr_t code)
{
	return c->addr == code && c->filename == rd_ptr(code, CODE_FILENAME) &&
	       c->qualname == rd_ptr(code, CODE_QUALNAME) && c->linetable == rd_ptr(code, CODE_LINETABLE) &&
	       c->firstlineno == *(const int32_t *)(code + CODE_FIRSTLINENO);
}

/* This thread's last code objects: address and location table (the one
 * field read to tell a reused address apart here; the shared table checks
 * them all) to id.  Most allocations come from code seen a moment ago. */
#define TL_CODES 64
static __thread struct { uintptr_t addr, linetable; int64_t id; } tl_codes[TL_CODES]
	__attribute__((tls_model("initial-exec")));

static int64_t code_id_slow(uintptr_t code);

static inline int64_t code_id(uintptr_t code)
{
	unsigned k = (unsigned)(code >> 4) & (TL_CODES - 1);
	uintptr_t lt = rd_ptr(code, CODE_LINETABLE);

	if (likely(tl_codes[k].addr == code && tl_codes[k].linetable == lt))
		return tl_codes[k].id;
	int64_t id = code_id_slow(code);
	if (id >= 0) {
		tl_codes[k].addr = code;
		tl_codes[k].linetable = lt;
		tl_codes[k].id = id;
	}
	return id;
}

/* The id of code object `code`, copying it on first sight; -1 when the
 * tables are full. */
static int64_t code_id_slow(uintptr_t code)
{
	uint64_t h = (code >> 4) * UINT64_C(0x9e3779b97f4a7c15);
	uint32_t first = (uint32_t)(h >> 43) & (CODE_SLOTS - 1);

	/* Lock-free lookup: a slot, once set, never changes. */
	for (uint32_t i = first, n = 0; n < 64; i = (i + 1) & (CODE_SLOTS - 1), n++) {
		uint32_t v = atomic_load_acquire(&slots[i]);
		if (!v)
			break;
		if (same_code(&codes[v - 1], code))
			return v - 1;
	}
	/* First sight: copy it, under the lock (rare). */
	while (atomic_flag_test_and_set_explicit(&code_lock, memory_order_acquire))
		;
	int64_t id = -1;
	for (uint32_t i = first, n = 0; n < 64; i = (i + 1) & (CODE_SLOTS - 1), n++) {
		uint32_t v = atomic_load_acquire(&slots[i]);
		if (v && same_code(&codes[v - 1], code)) {
			id = v - 1;
			break;
		}
		if (v)
			continue;
		uint32_t k = atomic_load_relaxed(&ncodes);
		if (k >= MAX_CODES)
			break;
		struct code *c = &codes[k];
		uintptr_t lt = rd_ptr(code, CODE_LINETABLE);
		uint64_t ltlen = lt ? rd_ptr(lt, BYTES_SIZE) : 0;
		c->addr = code;
		c->filename = rd_ptr(code, CODE_FILENAME);
		c->qualname = rd_ptr(code, CODE_QUALNAME);
		c->linetable = lt;
		c->firstlineno = *(const int32_t *)(code + CODE_FIRSTLINENO);
		c->filename_off = copy_str(c->filename, &c->filename_len);
		c->qualname_off = copy_str(c->qualname, &c->qualname_len);
		if (ltlen > MAX_LINETABLE)
			ltlen = 0;
		c->linetable_len = (uint32_t)ltlen;
		c->linetable_off = ltlen ? arena_put((const void *)(lt + BYTES_DATA), ltlen) : 0;
		if (c->filename_off == UINT32_MAX || c->qualname_off == UINT32_MAX || c->linetable_off == UINT32_MAX)
			break;
		atomic_store_release(&ncodes, k + 1);
		atomic_store_release(&slots[i], k + 1);
		id = k;
		break;
	}
	atomic_flag_clear_explicit(&code_lock, memory_order_release);
	return id;
}

/* A Python frame value (bit 63 set) at index i of a stack, into the hash
 * of a stack's Python frames (hds_python_splice). */
static inline uint64_t python_hash_step(uint64_t h, uintptr_t frame, int i)
{
	return hds_hash_step(h, frame + (uint64_t)i * UINT64_C(0xc2b2ae3d27d4eb4f));
}

/* The Python frames one eval loop runs: from *frame back to the next entry
 * frame, into out[m..max), each into *h; returns the new m, *cut set when
 * some did not fit. */
static int python_frames(uintptr_t *frame, uintptr_t *out, int m, int max, int *walked, int *cut, uint64_t *h)
{
	uintptr_t f = *frame;
	int done = 0;

	while (f && m < max && (*walked)++ < MAX_PY_FRAMES) {
		uintptr_t code = rd_ptr(f, FRAME_CODE);
		int entry = *(const unsigned char *)(f + FRAME_IS_ENTRY) != 0;
		uintptr_t instr = rd_ptr(f, FRAME_PREV_INSTR), start = code + CODE_CODE;
		int32_t first_traceable = *(const int32_t *)(code + CODE_FIRSTTRACEABLE);
		f = rd_ptr(f, FRAME_PREVIOUS);
		/* Incomplete (still setting up): not a frame yet, as CPython's
		 * own tracebacks have it. */
		if (instr >= start + 2 * (uintptr_t)first_traceable) {
			int64_t id = code_id(code);
			if (id >= 0) {
				out[m] = (UINT64_C(1) << 63) | (uint64_t)id << 32 | (uint32_t)((instr - start) / 2);
				*h = python_hash_step(*h, out[m], m);
				m++;
			}
		}
		if (entry) {
			done = 1;
			break;
		}
	}
	if (f && !done)
		*cut = 1;
	*frame = f;
	return m;
}

/* The index of the first eval-loop frame of in[i..n), n if none: from the
 * unwinder's records when it has them (*chain set), else by looking. */
static inline int next_eval(const uintptr_t *in, int i, int n, int known)
{
	if (known)
		return hds_capture_next_eval(i, n);
	while (i < n && !hds_is_eval(in[i]))
		i++;
	return i;
}

/*
 * The hash of a spliced stack f[0..m), a function of its frames alone (the
 * same frames must always hash alike, or the stack table would hold one
 * stack twice): the chain of its native frames, outermost first, as if the
 * Python frames were not there; with Python frames, stepped once with the
 * hash of those and their places.  The unwinder's chain, with Python frames
 * on, is already the first part (it leaves the eval-loop frames out), so
 * only the few Python frames are hashed here; a stack with none has the
 * plain chain of a native stack.
 */
int hds_python_splice(const uintptr_t *in, int n, uintptr_t *out, int max, int *truncated, uint64_t *chain)
{
	int known = *chain != 0;
	int i = next_eval(in, 0, n, known);

	if (i == n)
		return -1;   /* no eval loop: the unwinder's chain is the plain chain */
	uintptr_t ts = (uintptr_t)get_tstate();
	uintptr_t frame = 0;
	if (ts && rd_ptr(ts, TSTATE_CFRAME))
		frame = rd_ptr(rd_ptr(ts, TSTATE_CFRAME), CFRAME_CURRENT);
	if (!frame) {
		/* No Python thread state: native frames only, eval loops
		 * included, so the plain chain of them all. */
		*chain = hds_hash_chain(HDS_HASH_SEED, in, n);
		return -1;
	}

	/* in[0..i) stay; from the first eval loop on, each eval loop becomes
	 * its Python frames and the native run after it is copied whole. */
	int walked = 0, m = i, cut = 0;
	uint64_t py = HDS_HASH_SEED;
	memcpy(out, in, sizeof *out * (size_t)i);
	while (i < n && !cut) {
		m = python_frames(&frame, out, m, max, &walked, &cut, &py);
		int j = next_eval(in, ++i, n, known);
		int run = j - i;
		if (run > max - m) {
			run = max - m;
			cut = 1;
		}
		memcpy(out + m, in + i, sizeof *out * (size_t)run);
		m += run;
		i = j;
	}
	if (cut)
		*truncated = 1;

	uint64_t native = *chain;
	if (!known || cut) {
		native = HDS_HASH_SEED;
		for (int k = m - 1; k >= 0; k--)
			if (!(out[k] >> 63))
				native = hds_hash_step(native, out[k]);
	}
	*chain = py != HDS_HASH_SEED ? hds_hash_step(native, py) : native;
	return m;
}

uint32_t hds_python_ncodes(void)
{
	return enabled ? atomic_load_acquire(&ncodes) : 0;
}

size_t hds_python_encode_code(uint32_t id, unsigned char *buf)
{
	const struct code *c = &codes[id];
	size_t need = 4 + 4 + 4 + c->filename_len + 4 + c->qualname_len + 4 + c->linetable_len;

	if (!buf)
		return need;
	unsigned char *p = hd_put_u32(buf, id);
	p = hd_put_u32(p, (uint32_t)c->firstlineno);
	p = hd_put_u32(p, c->filename_len);
	memcpy(p, arena + c->filename_off, c->filename_len);
	p += c->filename_len;
	p = hd_put_u32(p, c->qualname_len);
	memcpy(p, arena + c->qualname_off, c->qualname_len);
	p += c->qualname_len;
	p = hd_put_u32(p, c->linetable_len);
	memcpy(p, arena + c->linetable_off, c->linetable_len);
	return need;
}

uint64_t hds_python_resident(void)
{
	if (!enabled)
		return 0;
	return hds_resident(codes, sizeof *codes * MAX_CODES) + hds_resident((const void *)slots, sizeof *slots * CODE_SLOTS) +
	       hds_resident(arena, ARENA_BYTES);
}
