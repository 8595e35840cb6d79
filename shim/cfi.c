/*
 * cfi.c - frame rules from DWARF call-frame information (.eh_frame), for the
 * shim's own unwinder, cached by return address.
 *
 * For a return address the rule says how to find the caller's frame
 * (sp and fp: rsp and rbp on x86-64, sp and x29 on aarch64; arch.h):
 *   CFA      = (sp or fp) + cfa_off
 *   RA       = *(CFA + ra_off), or on aarch64 still in x30 (a frame that
 *              has not saved the link register: only the innermost)
 *   fp       = *(CFA + fp_off), or unchanged
 * which is what almost every x86-64 and aarch64 function's CFI reduces to
 * at a call site.  Anything else (DWARF expressions, a CFA in another
 * register, a register saved in a register, signal frames) is reported as
 * unsupported and the caller falls back to libunwind for that stack.
 *
 * Lookup: _dl_find_object (glibc 2.35+, lock-free and async-signal-safe)
 * gives the module's .eh_frame_hdr; its sorted table finds the FDE; the CIE
 * and FDE programs are run up to the address.  An address no FDE covers
 * (JIT code, V8's builtins) is HDS_RULE_NONE: capture.c walks through such
 * code by its frame pointers.  On aarch64 one exception: qemu-user's signal
 * trampoline has no CFI either, and is recognized by its code (arch.h) and
 * given HDS_RULE_UNSUPPORTED, so that libunwind, which knows it, unwinds
 * that stack past the signal.
 *
 * Cache: process-wide open-addressing tables keyed by return address, never
 * evicting: a near one of 2^14 entries (256 KiB), and a far one of 2^18 for
 * the addresses whose neighbourhood in the near one is full.  Workload: a
 * hit on nearly every frame of nearly every allocation; a miss once per
 * distinct return address.  A program's few thousand return addresses in
 * the far table alone would each touch a page of its 4 MiB (a lookup that
 * misses the TLB and the caches, and 4 MiB of the shim's memory for perl's
 * 2,000); in the near one they share them.  An address may be in both (its
 * neighbourhood filled between two lookups): both hold the same rule.
 * An entry is claimed by CAS of its key from 0 to (address | BUSY), filled,
 * then published by storing the bare address (release); readers that see
 * BUSY treat it as a miss.  A claim interrupted by fork stays BUSY: that
 * slot is a permanent miss, nothing waits on it.  Rules of an address never
 * change while its module stays loaded; when the module map finds a module
 * unloaded it forgets the rules of its addresses (hds_cfi_forget), and each
 * thread drops its own cached rules when it sees the map epoch move
 * (capture.c), so code loaded later at the same address gets its own.
 */
#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#define CACHE_BITS   18
#define CACHE_SLOTS  (1u << CACHE_BITS)
#define PROBES       8
#define BUSY         (UINT64_C(1) << 63)

#define DW_REG_FP    HDS_DW_FP
#define DW_REG_SP    HDS_DW_SP
#define DW_REG_RA    HDS_DW_RA

struct cache_slot {
	_Atomic uint64_t key;
	_Atomic uint64_t rule;
};

static struct cache_slot *near_cache, *cache;
#define NEAR_BITS    14
#define NEAR_SLOTS   (1u << NEAR_BITS)

int hds_cfi_init(void)
{
	near_cache = hds_map(sizeof *near_cache * NEAR_SLOTS);
	cache = hds_map(sizeof *cache * CACHE_SLOTS);
	return near_cache && cache ? 0 : -1;
}

uint64_t hds_cfi_resident(void)
{
	return hds_resident(near_cache, sizeof *near_cache * NEAR_SLOTS) +
	       hds_resident(cache, sizeof *cache * CACHE_SLOTS);
}

/* ---- decoding ----------------------------------------------------------- */

struct reader {
	const unsigned char *p, *end;
	int bad;
};

static uint64_t uleb(struct reader *r)
{
	uint64_t v = 0;
	int shift = 0;

	while (r->p < r->end) {
		unsigned char b = *r->p++;
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80))
			return v;
	}
	r->bad = 1;
	return 0;
}

static int64_t sleb(struct reader *r)
{
	int64_t v = 0;
	int shift = 0;
	unsigned char b = 0;

	while (r->p < r->end) {
		b = *r->p++;
		if (shift < 64)
			v |= (int64_t)((uint64_t)(b & 0x7f) << shift);
		shift += 7;
		if (!(b & 0x80)) {
			if (shift < 64 && (b & 0x40))
				v |= -((int64_t)1 << shift);
			return v;
		}
	}
	r->bad = 1;
	return 0;
}

static uint64_t fixed(struct reader *r, int n)
{
	uint64_t v = 0;

	if (r->end - r->p < n) {
		r->bad = 1;
		return 0;
	}
	for (int i = 0; i < n; i++)
		v |= (uint64_t)r->p[i] << (8 * i);
	r->p += n;
	return v;
}

enum {
	PE_absptr = 0x00, PE_uleb128 = 0x01, PE_udata2 = 0x02, PE_udata4 = 0x03, PE_udata8 = 0x04,
	PE_sleb128 = 0x09, PE_sdata2 = 0x0a, PE_sdata4 = 0x0b, PE_sdata8 = 0x0c,
	PE_pcrel = 0x10, PE_datarel = 0x30, PE_indirect = 0x80, PE_omit = 0xff,
};

/* A pointer encoded with DW_EH_PE_*; datarel is relative to `data`. */
static uint64_t encoded(struct reader *r, unsigned enc, uint64_t data)
{
	uint64_t base = 0, v;
	const unsigned char *at = r->p;

	if (enc == PE_omit)
		return 0;
	switch (enc & 0x70) {
	case 0: break;
	case PE_pcrel: base = (uintptr_t)at; break;
	case PE_datarel: base = data; break;
	default: r->bad = 1; return 0;
	}
	switch (enc & 0x0f) {
	case PE_absptr:
	case PE_udata8: v = fixed(r, 8); break;
	case PE_uleb128: v = uleb(r); break;
	case PE_udata2: v = fixed(r, 2); break;
	case PE_udata4: v = fixed(r, 4); break;
	case PE_sleb128: v = (uint64_t)sleb(r); break;
	case PE_sdata2: v = (uint64_t)(int64_t)(int16_t)fixed(r, 2); break;
	case PE_sdata4: v = (uint64_t)(int64_t)(int32_t)fixed(r, 4); break;
	case PE_sdata8: v = fixed(r, 8); break;
	default: r->bad = 1; return 0;
	}
	if (enc & PE_indirect) {
		r->bad = 1;   /* not used for FDE addresses in practice */
		return 0;
	}
	return base + v;
}

/* ---- the CFA program ----------------------------------------------------- */

enum { R_SAME = 0, R_OFFSET, R_UNDEF, R_OTHER };

struct regs {
	int cfa_reg;
	int64_t cfa_off;
	int ra_kind, fp_kind;
	int64_t ra_off, fp_off;
};

struct cie {
	uint64_t caf;
	int64_t daf;
	unsigned ra_reg;
	unsigned fde_enc;
	int has_z, signal;
	const unsigned char *insns, *end;
};

static void set_reg(struct regs *s, unsigned reg, int kind, int64_t off, int *unsupported)
{
	if (reg == DW_REG_RA) {
		s->ra_kind = kind;
		s->ra_off = off;
	} else if (reg == DW_REG_FP) {
		s->fp_kind = kind;
		s->fp_off = off;
	} else if (reg == DW_REG_SP && kind != R_SAME) {
		*unsupported = 1;   /* sp is the CFA by definition */
	}
}

/* Run a CFA program until the location passes `target`.  Returns -1 on an
 * unsupported or malformed instruction. */
static int run_program(const struct cie *c, const unsigned char *p, const unsigned char *end,
		       uint64_t loc, uint64_t target, struct regs *s, const struct regs *initial)
{
	struct reader r = { p, end, 0 };
	struct regs stack[8];
	int depth = 0, unsupported = 0;

	while (r.p < r.end && !r.bad && !unsupported) {
		unsigned op = *r.p++;
		unsigned hi = op & 0xc0, lo = op & 0x3f;
		uint64_t reg, delta;

		if (hi == 0x40) {               /* advance_loc */
			loc += lo * c->caf;
			if (loc > target)
				return 0;
			continue;
		}
		if (hi == 0x80) {               /* offset */
			set_reg(s, lo, R_OFFSET, (int64_t)uleb(&r) * c->daf, &unsupported);
			continue;
		}
		if (hi == 0xc0) {               /* restore */
			if (lo == DW_REG_RA) { s->ra_kind = initial->ra_kind; s->ra_off = initial->ra_off; }
			if (lo == DW_REG_FP) { s->fp_kind = initial->fp_kind; s->fp_off = initial->fp_off; }
			continue;
		}
		switch (op) {
		case 0x00: break;                                    /* nop */
		case 0x01: return -1;                                /* set_loc: rare, unsupported */
		case 0x02: delta = fixed(&r, 1); goto advance;       /* advance_loc1 */
		case 0x03: delta = fixed(&r, 2); goto advance;       /* advance_loc2 */
		case 0x04: delta = fixed(&r, 4);                     /* advance_loc4 */
		advance:
			loc += delta * c->caf;
			if (loc > target)
				return 0;
			break;
		case 0x05:                                           /* offset_extended */
			reg = uleb(&r);
			set_reg(s, (unsigned)reg, R_OFFSET, (int64_t)uleb(&r) * c->daf, &unsupported);
			break;
		case 0x06:                                           /* restore_extended */
			reg = uleb(&r);
			if (reg == DW_REG_RA) { s->ra_kind = initial->ra_kind; s->ra_off = initial->ra_off; }
			if (reg == DW_REG_FP) { s->fp_kind = initial->fp_kind; s->fp_off = initial->fp_off; }
			break;
		case 0x07: set_reg(s, (unsigned)uleb(&r), R_UNDEF, 0, &unsupported); break;   /* undefined */
		case 0x08: set_reg(s, (unsigned)uleb(&r), R_SAME, 0, &unsupported); break;    /* same_value */
		case 0x09:                                           /* register */
			reg = uleb(&r);
			uleb(&r);
			set_reg(s, (unsigned)reg, R_OTHER, 0, &unsupported);
			if (reg == DW_REG_RA || reg == DW_REG_FP)
				unsupported = 1;
			break;
		case 0x0a:                                           /* remember_state */
			if (depth == 8)
				return -1;
			stack[depth++] = *s;
			break;
		case 0x0b:                                           /* restore_state */
			if (depth == 0)
				return -1;
			/* The CFA rule is part of the remembered state, as
			 * libgcc reads it and GCC's epilogues rely on it
			 * (remember; def_cfa_offset 8; ret; restore). */
			*s = stack[--depth];
			break;
		case 0x0c:                                           /* def_cfa */
			s->cfa_reg = (int)uleb(&r);
			s->cfa_off = (int64_t)uleb(&r);
			break;
		case 0x0d: s->cfa_reg = (int)uleb(&r); break;        /* def_cfa_register */
		case 0x0e: s->cfa_off = (int64_t)uleb(&r); break;    /* def_cfa_offset */
		case 0x11:                                           /* offset_extended_sf */
			reg = uleb(&r);
			set_reg(s, (unsigned)reg, R_OFFSET, sleb(&r) * c->daf, &unsupported);
			break;
		case 0x12:                                           /* def_cfa_sf */
			s->cfa_reg = (int)uleb(&r);
			s->cfa_off = sleb(&r) * c->daf;
			break;
		case 0x13: s->cfa_off = sleb(&r) * c->daf; break;    /* def_cfa_offset_sf */
		case 0x2e: uleb(&r); break;                          /* GNU_args_size */
#ifdef HDS_DW_CFA_NEGATE_RA_STATE
		case HDS_DW_CFA_NEGATE_RA_STATE: break;              /* RA signed or not: stripped anyway */
#endif
		case 0x2f:                                           /* GNU_negative_offset_extended */
			reg = uleb(&r);
			set_reg(s, (unsigned)reg, R_OFFSET, -(int64_t)uleb(&r) * c->daf, &unsupported);
			break;
		default:                                             /* expressions and the rest */
			return -1;
		}
	}
	return r.bad || unsupported ? -1 : 0;
}

static int parse_cie(const unsigned char *p, struct cie *c)
{
	struct reader r = { p, p + 16, 0 };
	uint64_t len = fixed(&r, 4);

	if (len == 0xffffffff)
		return -1;   /* 64-bit DWARF: not produced on x86-64 or aarch64 Linux */
	r.end = p + 4 + len;
	if (fixed(&r, 4) != 0)
		return -1;   /* not a CIE */
	unsigned version = (unsigned)fixed(&r, 1);
	const char *aug = (const char *)r.p;
	size_t alen = strnlen(aug, (size_t)(r.end - r.p));
	r.p += alen + 1;
	c->caf = uleb(&r);
	c->daf = sleb(&r);
	c->ra_reg = version == 1 ? (unsigned)fixed(&r, 1) : (unsigned)uleb(&r);
	c->fde_enc = PE_absptr;
	c->has_z = 0;
	c->signal = 0;
	const unsigned char *after_aug = NULL;
	for (size_t i = 0; i < alen && !r.bad; i++) {
		switch (aug[i]) {
		case 'z': {
			uint64_t n = uleb(&r);
			c->has_z = 1;
			after_aug = r.p + n;
			break;
		}
		case 'R': c->fde_enc = (unsigned)fixed(&r, 1); break;
		case 'P': { unsigned e = (unsigned)fixed(&r, 1); encoded(&r, e & 0x7f, 0); r.bad = 0; break; }
		case 'L': fixed(&r, 1); break;
		case 'S': c->signal = 1; break;
		case 'B': break;
		default:
			if (!after_aug)
				return -1;
			i = alen;   /* unknown but skippable thanks to 'z' */
		}
	}
	if (after_aug)
		r.p = after_aug;
	if (r.bad || r.p > r.end || c->ra_reg != DW_REG_RA)
		return -1;
	c->insns = r.p;
	c->end = r.end;
	return 0;
}

/* The FDE covering pc, from the module's .eh_frame_hdr binary-search table. */
static const unsigned char *find_fde(const unsigned char *hdr, uint64_t pc)
{
	struct reader r = { hdr, hdr + 4, 0 };

	if (fixed(&r, 1) != 1)
		return NULL;
	unsigned ptr_enc = (unsigned)fixed(&r, 1), cnt_enc = (unsigned)fixed(&r, 1), tab_enc = (unsigned)fixed(&r, 1);
	r.end = hdr + 64;
	encoded(&r, ptr_enc, (uintptr_t)hdr);
	uint64_t count = encoded(&r, cnt_enc, (uintptr_t)hdr);
	if (r.bad || tab_enc != (PE_datarel | PE_sdata4) || !count)
		return NULL;
	const int32_t *tab = (const int32_t *)r.p;   /* pairs: initial location, FDE address */
	uint64_t lo = 0, hi = count;
	while (hi - lo > 1) {
		uint64_t mid = lo + (hi - lo) / 2;
		if ((uintptr_t)hdr + (int64_t)tab[2 * mid] <= pc)
			lo = mid;
		else
			hi = mid;
	}
	if ((uintptr_t)hdr + (int64_t)tab[2 * lo] > pc)
		return NULL;
	return (const unsigned char *)((uintptr_t)hdr + (int64_t)tab[2 * lo + 1]);
}

/* Does the code at return address ra hold the rt_sigreturn sequence
 * (arch.h; aarch64 only)?  ra may be any value (capture.c reads return
 * addresses from frame-pointer chains), so it is read only once known
 * readable: by process_vm_readv on ourselves, or where that is missing
 * (qemu-user: ENOSYS) directly once msync finds its pages mapped, as
 * libunwind validates addresses.  Once per address: the rule is cached. */
static int sigreturn_at(uint64_t ra)
{
#ifdef HDS_SIGRETURN_INSN0
	uint32_t insn[2] = { 0, 0 };
	struct iovec local = { insn, sizeof insn }, remote = { (void *)ra, sizeof insn };
	int saved = errno;
	ssize_t n = -1;

	if (ra & 3)
		return 0;
	n = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
	if (n < 0 && errno == ENOSYS) {
		uint64_t page = (uint64_t)getpagesize();
		uint64_t lo = ra & ~(page - 1), hi = (ra + sizeof insn + page - 1) & ~(page - 1);
		if (ra <= UINT64_MAX - page && msync((void *)lo, hi - lo, MS_ASYNC) == 0) {
			memcpy(insn, (const void *)ra, sizeof insn);
			n = sizeof insn;
		}
	}
	errno = saved;
	return n == (ssize_t)sizeof insn && insn[0] == HDS_SIGRETURN_INSN0 && insn[1] == HDS_SIGRETURN_INSN1;
#else
	(void)ra;
	return 0;
#endif
}

/* The rule of pc that no FDE covers. */
static uint64_t no_cfi(uint64_t pc)
{
	return sigreturn_at(pc + 1) ? HDS_RULE_UNSUPPORTED : HDS_RULE_NONE;
}

/* Compute the rule for pc (already "return address - 1"). */
static uint64_t compute_rule(uint64_t pc)
{
	struct dl_find_object dlfo;

	if (_dl_find_object((void *)pc, &dlfo) != 0 || !dlfo.dlfo_eh_frame)
		return no_cfi(pc);
	const unsigned char *fde = find_fde(dlfo.dlfo_eh_frame, pc);
	if (!fde)
		return no_cfi(pc);

	struct reader r = { fde, fde + 8, 0 };
	uint64_t len = fixed(&r, 4);
	if (len == 0 || len == 0xffffffff)
		return HDS_RULE_NONE;
	const unsigned char *cie_ptr_at = r.p;
	uint64_t cie_off = fixed(&r, 4);
	struct cie c;
	if (parse_cie(cie_ptr_at - cie_off, &c) < 0)
		return HDS_RULE_UNSUPPORTED;
	r.end = fde + 4 + len;
	uint64_t begin = encoded(&r, c.fde_enc, 0);
	uint64_t range = encoded(&r, c.fde_enc & 0x0f, 0);
	if (r.bad || pc < begin || pc >= begin + range)
		return no_cfi(pc);
	if (c.has_z)
		r.p += uleb(&r);
	if (r.bad || r.p > r.end)
		return HDS_RULE_UNSUPPORTED;
	if (c.signal)
		return HDS_RULE_UNSUPPORTED;

	/* Before the CIE's program: where `call` (x86-64) or `bl` (aarch64)
	 * left the return address. */
	struct regs init = { DW_REG_SP, HDS_CIE_CFA_OFF, HDS_CIE_RA_ON_STACK ? R_OFFSET : R_SAME, R_SAME,
			     HDS_CIE_RA_ON_STACK ? -HDS_CIE_CFA_OFF : 0, 0 }, s;
	/* The CIE's initial instructions set the initial state. */
	if (run_program(&c, c.insns, c.end, begin, UINT64_MAX, &init, &init) < 0)
		return HDS_RULE_UNSUPPORTED;
	s = init;
	if (run_program(&c, r.p, r.end, begin, pc, &s, &init) < 0)
		return HDS_RULE_UNSUPPORTED;
	return hds_rule_pack(&(struct hds_rule){
		.cfa_fp = s.cfa_reg == DW_REG_FP, .cfa_off = s.cfa_off,
		.end = s.ra_kind == R_UNDEF, .ra_off = s.ra_off,
		.ra_lr = !HDS_CIE_RA_ON_STACK && s.ra_kind == R_SAME,
		.fp_saved = s.fp_kind == R_OFFSET, .fp_off = s.fp_off,
		.bad = (s.cfa_reg != DW_REG_SP && s.cfa_reg != DW_REG_FP) ||
		       (s.ra_kind != R_OFFSET && s.ra_kind != R_UNDEF &&
			(HDS_CIE_RA_ON_STACK || s.ra_kind != R_SAME)) ||
		       (s.fp_kind != R_SAME && s.fp_kind != R_OFFSET),
	});
}

/* A forgotten slot keeps its key marked with TOMB: it never matches, and
 * no insert reuses it (a reader that matched it just before may still be
 * reading its rule).  Slots spent this way make later lookups in their
 * neighbourhood compute their rule each time: slower, still correct. */
#define TOMB (UINT64_C(1) << 62)

static void forget_in(struct cache_slot *t, uint32_t n, uint64_t lo, uint64_t hi)
{
	for (uint32_t i = 0; t && i < n; i++) {
		uint64_t k = atomic_load_relaxed(&t[i].key) & ~BUSY;
		if (k >= lo && k < hi)
			atomic_store_release(&t[i].key, k | TOMB);
	}
}

void hds_cfi_forget(uint64_t lo, uint64_t hi)
{
	forget_in(near_cache, NEAR_SLOTS, lo, hi);
	forget_in(cache, CACHE_SLOTS, lo, hi);
}

/* pc's rule from table t (2^bits slots), computed and put in the first
 * empty slot of its neighbourhood if absent: 1 with *rule set, 0 when
 * the neighbourhood holds neither pc nor an empty slot. */
static inline int lookup(struct cache_slot *t, int bits, uint64_t pc, uint64_t *rule)
{
	uint64_t h = (pc * 0x9e3779b97f4a7c15u) >> (64 - bits);

	for (int i = 0; i < PROBES; i++) {
		struct cache_slot *e = &t[(h + (uint64_t)i) & ((UINT64_C(1) << bits) - 1)];
		uint64_t k = atomic_load_acquire(&e->key);
		if (k == pc) {
			*rule = atomic_load_relaxed(&e->rule);
			return 1;
		}
		if (k == 0) {
			*rule = compute_rule(pc);
			uint64_t expected = 0;
			if (atomic_cas_acq_rel(&e->key, &expected, pc | BUSY)) {
				atomic_store_relaxed(&e->rule, *rule);
				atomic_store_release(&e->key, pc);
			}
			return 1;
		}
	}
	return 0;
}

uint64_t hds_cfi_rule(uint64_t pc)
{
	uint64_t rule;

	if (lookup(near_cache, NEAR_BITS, pc, &rule) || lookup(cache, CACHE_BITS, pc, &rule))
		return rule;
	return compute_rule(pc);   /* both neighbourhoods full: correct, only slower */
}
