/*
 * hd_format.h - the heapdelta snapshot file format, shared by the shim (writer)
 * and the analyzer (reader).  FORMAT.md beside this file specifies it byte by
 * byte; this header is its machine-readable half and the two must agree.
 *
 * Shape: a 16-byte file header, then tagged sections, then an END section.
 * Every integer is little-endian and unaligned.  A reader skips sections
 * whose tag it does not know (so a writer may add sections without a version
 * bump) and refuses a file whose major version it does not know.
 *
 * This header holds constants and tiny inline encoders/decoders only: no
 * allocation, no stdio, so the shim may include it on any path.
 */
#ifndef HD_FORMAT_H
#define HD_FORMAT_H

#include <stdint.h>
#include <string.h>

#define HD_MAGIC          "HEAPDLTA"   /* 8 bytes, no terminator in the file */
#define HD_MAGIC_LEN      8
#define HD_VERSION        2            /* bump on any incompatible change */
#define HD_VERSION_MIN    1            /* the oldest a reader still reads */
#define HD_FILE_HDR_LEN   16           /* magic, u32 version, u32 flags (0) */
#define HD_SEC_HDR_LEN    16           /* u32 tag, u32 reserved (0), u64 length */

/* Section tags.  Numbers are forever: never reuse a retired one. */
enum hd_section {
	HD_SEC_META    = 1,      /* u64 fields, indexed by enum hd_meta */
	HD_SEC_STRINGS = 2,      /* u32 n, then n x (u32 len, bytes): label, exe, argv... */
	HD_SEC_MODULES = 3,      /* loaded and unloaded modules */
	HD_SEC_STACKS  = 4,      /* interned stacks with their counters */
	HD_SEC_MODULE_EPOCHS = 5, /* u32 n, n x (u32 first, u32 gone): map epochs of each module */
	HD_SEC_STACK_EPOCHS  = 6, /* u32 n, n x (u32 stack id, u32 epoch): stacks of epoch > 0 */
	HD_SEC_MISMATCHES    = 7, /* the first releases by the wrong family, with both stacks */
	HD_SEC_NEW_STACKS    = 8, /* v2: u32 n, n x (u32 id, u16 depth, u16 flags, depth x u64 frames) */
	HD_SEC_COUNTERS      = 9, /* v2: u32 n, n x (varint id delta, 4 signed varints: counter changes) */
	HD_SEC_CODE          = 10, /* v2: u32 n, n x Python code objects (id, first line, file, name, line table) */
	HD_SEC_REACH         = 11, /* v2, exit: u32 status, u32 threads, u64 ns, u64 root bytes, u64 block bytes,
				      u32 n, n x (varint id delta, 8 varints: bytes, count per kind) */
	HD_SEC_JIT           = 12, /* v2: u32 n, n x (u64 start, u64 size, u32 len + name, u32 k, k x u64 address):
				      perf map entries covering the new stacks' frames outside every module */
	HD_SEC_END     = 0xffff, /* length 0; must be last */
};

/*
 * META fields, each a u64, in this order.  A reader accepts a META section
 * with more fields (newer writer: ignored) or fewer (older writer: the rest
 * read as 0) as long as its length is a multiple of 8.
 */
enum hd_meta {
	HD_META_PID = 0,
	HD_META_PPID,
	HD_META_SEQ,              /* per-process sequence number, from 1 */
	HD_META_TRIGGER,          /* enum hd_trigger */
	HD_META_UNWINDER,         /* enum hd_unwinder */
	HD_META_DEPTH,            /* configured maximum stack depth */
	HD_META_SAMPLE_BYTES,     /* mean sampling interval in bytes; 0 = every allocation */
	HD_META_FLAGS,            /* enum hd_flags */
	HD_META_WALL_NS,          /* CLOCK_REALTIME at the snapshot, ns since the epoch */
	HD_META_MONO_NS,          /* CLOCK_MONOTONIC at the snapshot */
	HD_META_START_MONO_NS,    /* CLOCK_MONOTONIC when the shim started */
	HD_META_LIVE_BYTES,       /* requested bytes of all live recorded blocks */
	HD_META_LIVE_COUNT,
	HD_META_PEAK_BYTES,       /* highest LIVE_BYTES since start */
	HD_META_PEAK_SINCE_PREV,  /* highest LIVE_BYTES since the previous snapshot */
	HD_META_ALLOC_BYTES,      /* bytes allocated since start (recorded blocks) */
	HD_META_ALLOC_COUNT,
	HD_META_FREE_BYTES,       /* bytes of recorded blocks freed since start */
	HD_META_FREE_COUNT,
	HD_META_UNKNOWN_FREES,    /* frees of pointers the shim never recorded */
	HD_META_DROPPED_ALLOCS,   /* allocations not recorded: a table was full */
	HD_META_DROPPED_STACKS,   /* distinct stacks not interned: stack table full */
	HD_META_RSS_BYTES,        /* resident set size of the process */
	HD_META_SHIM_BYTES,       /* resident memory of the shim's own tables */
	HD_META_UNTRACKED_ALLOCS, /* allocations made while the shim itself was busy */
	HD_META_UNWIND_FALLBACKS, /* stacks the fast unwinder handed to libunwind */
	HD_META_UNWIND_CHECKED,   /* stacks compared with libunwind (check mode) */
	HD_META_UNWIND_MISMATCHES,/* ... that differed */
	HD_META_MISMATCHED_FREES, /* releases by the wrong family: free of new, delete of new[]... */
	HD_META_RUN_ID,           /* v2: random per process (and per forked child) */
	HD_META_BASE_SEQ,         /* v2: seq of the snapshot this one builds on; 0: none */
	HD_META_MACHINE,          /* the architecture that wrote it: ELF e_machine (62 x86-64, 183 aarch64) */
	HD_META_UNWIND_NOCFI,     /* check mode: stacks not compared, through code without CFI (JIT code) */
	HD_META_UNWIND_MEMO_HITS, /* stacks the cfi unwinder found whole in its memo, without a walk */
	HD_META_NFIELDS
};

enum hd_trigger {
	HD_TRIGGER_INTERVAL = 1,
	HD_TRIGGER_SIGNAL   = 2,
	HD_TRIGGER_API      = 3,
	HD_TRIGGER_EXIT     = 4,
};

enum hd_unwinder {
	HD_UNWIND_LIBUNWIND = 1,  /* libunwind's unw_backtrace for every stack */
	HD_UNWIND_FP        = 2,  /* frame pointers */
	HD_UNWIND_CFI       = 3,  /* heapdelta's cached CFI unwinder, libunwind as fallback */
};

enum hd_flags {
	HD_FLAG_FOREIGN_MALLOC = 1u << 0, /* malloc is not glibc's (jemalloc, tcmalloc...) */
	HD_FLAG_DROPPED        = 1u << 1, /* something was dropped: numbers are lower bounds */
	HD_FLAG_SAMPLED        = 1u << 2, /* counters are estimates from sampling */
};

/* MODULES section: per-module flags. */
enum hd_module_flags {
	HD_MOD_UNLOADED = 1u << 0, /* dlclosed before this snapshot */
	HD_MOD_MAIN     = 1u << 1, /* the executable */
	HD_MOD_VDSO     = 1u << 2, /* the kernel's vDSO: no file on disk */
};

/* MISMATCHES section: the family that allocated a block, and the one that
 * released it. */
enum hd_alloc_kind {
	HD_KIND_MALLOC    = 0,   /* malloc, calloc, realloc, aligned forms; released by free */
	HD_KIND_NEW       = 1,   /* operator new; released by operator delete */
	HD_KIND_NEW_ARRAY = 2,   /* operator new[]; released by operator delete[] */
};

/* REACH section: the kinds, in the order of a record's fields, and why a
 * classification was skipped (status). */
enum hd_reach_kind {
	HD_REACH_DEFINITE  = 0,  /* definitely lost: no pointer to it */
	HD_REACH_INDIRECT  = 1,  /* indirectly lost: only from lost blocks */
	HD_REACH_POSSIBLE  = 2,  /* possibly lost: only interior pointers */
	HD_REACH_REACHABLE = 3,  /* still reachable: a pointer to its start */
	HD_REACH_NKINDS
};

enum hd_reach_status {
	HD_REACH_DONE = 0,
	HD_REACH_OFF = 1,            /* HEAPDELTA_REACH=0 */
	HD_REACH_FOREIGN_MALLOC = 2, /* another allocator */
	HD_REACH_SAMPLED = 3,        /* sampled recording */
	HD_REACH_NOT_STOPPED = 4,    /* a thread did not stop in time */
	HD_REACH_UNSAFE_EXIT = 5,    /* _exit or a fatal signal */
	HD_REACH_UNSUPPORTED = 6,    /* architecture */
	HD_REACH_NO_MEMORY = 7,      /* the scan's memory could not be mapped */
	HD_REACH_NO_ARENA = 8,       /* glibc's main arena not found */
};

/* STACKS section: per-stack flags. */
enum hd_stack_flags {
	HD_STACK_TRUNCATED = 1u << 0, /* the real stack was deeper than DEPTH */
};

#define HD_EPOCH_NONE      UINT32_MAX   /* MODULE_EPOCHS: not unloaded */

/* A frame value with bit 63 set is a Python frame: code object id in bits
 * 32..62 (CODE section), instruction index (code units) in bits 0..31. */
#define HD_FRAME_PYTHON    (UINT64_C(1) << 63)
static inline int hd_frame_is_python(uint64_t f) { return (f & HD_FRAME_PYTHON) != 0; }
static inline uint32_t hd_frame_code(uint64_t f) { return (uint32_t)(f >> 32) & 0x7fffffff; }
static inline uint32_t hd_frame_instr(uint64_t f) { return (uint32_t)f; }
#define HD_MAX_DEPTH       256   /* upper bound a reader accepts per stack */
#define HD_MAX_BUILD_ID    64
#define HD_MAX_SEGMENTS    64

static inline const char *hd_trigger_name(uint64_t t)
{
	switch (t) {
	case HD_TRIGGER_INTERVAL: return "interval";
	case HD_TRIGGER_SIGNAL:   return "signal";
	case HD_TRIGGER_API:      return "api";
	case HD_TRIGGER_EXIT:     return "exit";
	}
	return "unknown";
}

static inline const char *hd_unwinder_name(uint64_t u)
{
	switch (u) {
	case HD_UNWIND_LIBUNWIND: return "libunwind";
	case HD_UNWIND_FP:        return "fp";
	case HD_UNWIND_CFI:       return "cfi";
	}
	return "unknown";
}

/* Little-endian encoders: p must have room; they return the next byte. */
static inline unsigned char *hd_put_u16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8);
	return p + 2;
}

static inline unsigned char *hd_put_u32(unsigned char *p, uint32_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	memcpy(p, &v, 4);
#else
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
#endif
	return p + 4;
}

static inline unsigned char *hd_put_u64(unsigned char *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	memcpy(p, &v, 8);
#else
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
#endif
	return p + 8;
}

static inline uint16_t hd_get_u16(const unsigned char *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t hd_get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t hd_get_u64(const unsigned char *p)
{
	return (uint64_t)hd_get_u32(p) | (uint64_t)hd_get_u32(p + 4) << 32;
}

/* Varints (COUNTERS): unsigned LEB128, at most 10 bytes; signed values in
 * zigzag form. */
#define HD_VARINT_MAX 10

static inline unsigned char *hd_put_varint(unsigned char *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (unsigned char)(v | 0x80);
		v >>= 7;
	}
	*p++ = (unsigned char)v;
	return p;
}

static inline uint64_t hd_zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t hd_unzigzag(uint64_t u)
{
	return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

/* Decode a varint from p[0..avail); returns the bytes it took, 0 when it
 * runs past avail or past 10 bytes. */
static inline size_t hd_get_varint(const unsigned char *p, size_t avail, uint64_t *v)
{
	uint64_t r = 0;

	for (size_t i = 0; i < avail && i < HD_VARINT_MAX; i++) {
		r |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			*v = r;
			return i + 1;
		}
	}
	return 0;
}

#endif /* HD_FORMAT_H */
