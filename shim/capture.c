/*
 * capture.c - the current thread's call stack as return addresses.  The only
 * file that knows libunwind.
 *
 * Three unwinders:
 *  - cfi (default): our own, driven by .eh_frame rules cached per return
 *    address (cfi.c), exact on code built without frame pointers.  On top of
 *    the rule cache it reuses the outer part of the thread's previous stack:
 *    once the unwind reaches a frame whose (ip, sp, fp) equals a frame of
 *    the previous stack, and every stack slot the previous unwind read from
 *    there outwards (return addresses, saved fp) still holds the same value,
 *    the rest of the walk would read the same values and compute the same
 *    frames, so they are copied instead.  Before any of that it looks in
 *    its memo of whole stacks seen before (same test, on a stack that
 *    need not be the last one).  Both only on the thread's own stack (see
 *    memory safety below).  Any rule it cannot interpret (signal frames on
 *    an alternate stack included) hands the whole stack to libunwind.
 *  - libunwind: unw_backtrace(), libunwind's fast path.  Loaded with
 *    dlopen(RTLD_LOCAL): linking would put its `backtrace` and `_Unwind_*`
 *    in the global scope, where they could replace the program's own.
 *  - fp: the frame-pointer chain, for programs built with frame pointers.
 * With HEAPDELTA_UNWIND_CHECK=1 every cfi stack is also unwound by libunwind
 * and compared (the tests use this); libunwind's answer is recorded.  A
 * stack that went through code without CFI is not compared (libunwind stops
 * at the first such frame): it is counted apart (META unwind_nocfi) and
 * kept as the cfi unwinder found it.
 *
 * Architectures: the same code on x86-64 and aarch64; what differs (where
 * the cfi walk starts, register numbers, return-address signing) is in
 * arch.h.  fp is rbp or x29.  Every return address, whichever unwinder
 * found it, is stripped of a pointer-authentication code (hds_strip_ra)
 * before it is recorded or compared.
 *
 * Memory safety: every stack read is bounds-checked against [our own frame,
 * top of the thread's stack].  On the thread's own stack (the range
 * pthread reports for it) everything in that range is mapped.  A stack the
 * program mapped itself (a coroutine's, under the thread's stack) is
 * walked frame by frame, each read where the frame's rule says, and only
 * fresh: a stack kept from before, with the same stack pointer, may have
 * ended higher than this one, past its end, so neither the previous stack
 * nor the memo is used there.
 *
 * All of this runs with hds_busy set by the caller: libunwind and the
 * loader may call malloc, and those calls pass through unrecorded.
 */
#include "internal.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#define SKIP_SLACK 8   /* room for our own frames at the top of the stack */
#define CAP (HD_MAX_DEPTH + SKIP_SLACK + 1)
_Static_assert(CAP <= HDS_CAPTURE_ROOM, "a capture's buffer holds CAP frames");

static int (*unw_backtrace_fn)(void **, int);
static void *unw_handle;

struct text_range { uintptr_t lo, hi; };
static struct text_range self_text, unwind_text;

static __thread uintptr_t tl_stack_hi __attribute__((tls_model("initial-exec")));
static __thread uintptr_t tl_stack_lo __attribute__((tls_model("initial-exec")));

/* ---- module text ranges ------------------------------------------------ */

struct range_query { uintptr_t base; struct text_range *out; };

static int find_text(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct range_query *q = arg;
	(void)size;

	if (info->dlpi_addr != q->base)
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
			q->out->lo = info->dlpi_addr + ph->p_vaddr;
			q->out->hi = q->out->lo + ph->p_memsz;
			return 1;
		}
	}
	return 0;
}

/* The executable segment of the module containing `addr`. */
static void text_of(const void *addr, struct text_range *out)
{
	Dl_info dl;
	struct range_query q = { 0, out };

	if (!dladdr(addr, &dl))
		return;
	/* dladdr gives where the ELF header is mapped, dl_iterate_phdr the load
	 * bias: equal for PIC libraries, whose first segment is at vaddr 0. */
	q.base = (uintptr_t)dl.dli_fbase;
	dl_iterate_phdr(find_text, &q);
}

static inline int in_range(const struct text_range *r, uintptr_t a)
{
	return a >= r->lo && a < r->hi;
}

/* ---- per-thread state --------------------------------------------------- */

/* One frame as the cfi unwinder saw it while stepping out of it: its
 * registers, and the slots read to step out of it (address 0: none). */
struct uframe {
	uint64_t ip, sp, bp;
	uint64_t ra_addr, ra_val, bp_addr, bp_val;
	unsigned bits;    /* F_RA_REG, F_FP_STEP, F_USES_BP */
};

/* Bits of a frame: uframe.bits while it is unwound, and what the previous
 * stack keeps of it (flags[]: F_NEEDS_BP, F_RA_REG, F_FP_OUTER). */
enum {
	F_NEEDS_BP = 1,   /* the walk from here outwards reads this frame's fp
			     before any frame restores it from the stack */
	F_RA_REG = 2,     /* its return address came from the link register,
			     not from a slot: it cannot be checked unchanged */
	F_FP_STEP = 4,    /* code without CFI: stepped out by its frame pointer */
	F_FP_OUTER = 4,   /* it or a frame outside it was (the same bit) */
	F_USES_BP = 8,    /* its rule reads fp (CFA = fp + off) */
};

#define L1_RULES 512

/*
 * The memo: whole stacks this thread unwound before, by where they start.
 * The previous stack (below) saves the walk only from the frame where the
 * new stack joins it, and a program that allocates from a few places in
 * turn leaves it on another path each time: the frames inside the fork are
 * walked again and again.  An entry is a stack as the unwinder kept it,
 * with its innermost frame's registers and every stack slot the walk read,
 * with the values found there: when the interposed function is called
 * from the same return address at the same stack pointer (and frame
 * pointer, when the walk reads it), and every one of those slots holds the
 * value it held, the walk would read the same values and find the same
 * frames.  So it is not done, and the stack's id in the stack table, kept
 * with it, saves the table's lookup too.
 * The check reads only slots the earlier walk read from this thread's own
 * stack, above a stack pointer equal to the current one, as the reuse of
 * the previous stack does.  MEMO_SETS sets of MEMO_WAYS entries, chosen by
 * return address and stack pointer: one call site at one depth is often
 * reached by several paths (a wrapper called from everywhere).  A miss
 * walks and replaces the set's entries in turn.  Stacks deeper than
 * MEMO_FRAMES frames or with more than MEMO_SLOTS slots to check are not
 * kept.  Emptied (a new generation) when the map epoch moves or the memory
 * passes to another thread.  Measured on the bench's workloads, share of
 * captures found: sqlite3 99.9%, perl 99.9%, python3 96%, clang-format
 * 92%, cppcheck 67% and gcc's cc1 26% before the rule below sets the memo
 * aside (23% and 5% with it).  Eight ways: with four in 32 sets, sqlite3
 * found 80% in some runs, where the stack's address put too many of its
 * busy call sites in one set.
 */
#define MEMO_SETS   16
#define MEMO_WAYS   8
#define MEMO_FRAMES 32
#define MEMO_SLOTS  40
/* The memo pays where most captures are found in it: a hit saves the walk
 * of the stack's new frames and the stack table's lookup, a miss costs the
 * search and the copy (gcc's cc1, a quarter found, ran 3.5% more
 * instructions with the memo than without; with this rule, 0.6%).  Each
 * thread counts its hits over windows of MEMO_WINDOW captures; below half,
 * the memo is set aside for MEMO_REST windows, then tried again. */
#define MEMO_WINDOW 1024
#define MEMO_REST   16
/* A stack slot a walk read, with the value it found there. */
struct slot { uint64_t addr, val; };
struct memo_tag { uint64_t ip, sp; };   /* the innermost frame's; ip 0: empty */
struct memo {
	uint64_t bp;                     /* the innermost frame's */
	uint64_t chain;                  /* hds_capture's chain for it, 0 if none */
	uint32_t gen;                    /* unwind_mem.memo_gen when written */
	uint8_t n, nslots;               /* frames, slots to check */
	uint8_t skip;                    /* the shim's own frames at the top */
	uint8_t needs_bp : 1, nocfi : 1;
	uint32_t stack;                  /* its id in the stack table + 1; 0: not yet known */
	struct slot ck[MEMO_SLOTS];      /* as unwind_mem's ck */
	uintptr_t frames[MEMO_FRAMES];   /* innermost first */
	int16_t reval[MEMO_FRAMES];      /* as unwind_mem's, outermost first */
};

/*
 * The previous stack is kept outermost first, as flat arrays: the reuse
 * path reads a few of them for 30 frames (the stack pointers while it looks
 * for the matching frame, the slots while it checks them), so each is a
 * few cache lines, and a new stack's inner frames are written into them in
 * one pass (commit_frames).  The return addresses are kept the other way
 * round, from the end of ripr (frame i at ripr[CAP - 1 - i]): innermost
 * first, as a stack is recorded, so the whole stack is ripr[CAP - n ..)
 * and a capture hands that out without copying it.
 */
struct unwind_mem {
	struct { uint64_t pc, rule; } l1[L1_RULES];   /* this thread's recent rules */
	uint32_t epoch;              /* map epoch the cached rules and stack belong to */
	int n;                       /* frames of the previous stack */
	int cut;                     /* it stopped at the cap, not at its end */
	/* It ended where a frame-pointer step failed (code without CFI):
	 * where it ends depends on a frame pointer and on frame records that
	 * no kept slot covers, so it is neither reused nor kept in the memo. */
	int fp_end;
	struct uframe scratch[CAP];  /* the stack being unwound, innermost first */
	uintptr_t ripr[CAP];         /* previous stack: return addresses, from the end */
	uint64_t rsp_s[CAP + 1];     /* stack pointers, at rsp_s + 1 after a sentinel
					(above any stack: the scan for a frame stops there) */
	uint64_t rbp[CAP];           /* frame pointers */
	uint64_t chain[CAP];         /* hash chain from the outermost frame to this one */
	uint8_t flags[CAP];          /* F_* */
	/* With Python frames on: the index of the nearest eval-loop frame
	 * (hds_is_eval) at or outside each frame, -1 if none. */
	int16_t reval[CAP];
	/* The stack slots the previous unwind read, with the values it found,
	 * those of frames 0 .. i being ck[0 .. ck_end[i]). */
	struct slot ck[2 * CAP];
	uint16_t ck_end[CAP];
	uint32_t memo_gen;           /* entries of another generation are empty */
	_Atomic uint64_t memo_hits;  /* written by the owner only, read by snapshots */
	uint32_t memo_rest;          /* captures left while the memo is set aside */
	uint16_t memo_seen, memo_found;   /* this window's searches and hits */
	uint8_t memo_on;             /* the memo was searched for this capture */
	struct memo_tag memo_tags[MEMO_SETS][MEMO_WAYS];
	uint8_t memo_next[MEMO_SETS];   /* the way to replace next */
	struct memo memo[MEMO_SETS][MEMO_WAYS];
};

size_t hds_capture_mem_size(void)
{
	return hds.cfg.unwinder == HD_UNWIND_CFI ? sizeof(struct unwind_mem) : 0;
}

uint64_t hds_capture_mem_memo_hits(const void *mem)
{
	return atomic_load_relaxed(&((const struct unwind_mem *)mem)->memo_hits);
}

void hds_capture_mem_reset(void *mem)
{
	struct unwind_mem *m = mem;

	m->n = 0;     /* the previous owner's stack means nothing here */
	m->cut = 0;   /* its rule cache stays: rules are the process's */
	m->memo_gen++;   /* and its memo: on another stack */
}

/* This thread's unwinder memory; NULL when it has none (it gave its bundle
 * back at exit, and destructors that run after ours still allocate). */
static inline struct unwind_mem *thread_mem(void)
{
	struct hds_thread *t = hds_thread();

	return t ? t->unwind : NULL;
}

/* Stack bounds of this thread, once per thread. */
static void thread_bounds(void)
{
	pthread_attr_t attr;
	void *addr;
	size_t size;

	tl_stack_hi = 1;   /* tried: do not try again */
	if (pthread_getattr_np(pthread_self(), &attr) != 0)
		return;
	if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
		tl_stack_lo = (uintptr_t)addr;
		tl_stack_hi = (uintptr_t)addr + size;
	}
	pthread_attr_destroy(&attr);
}

int hds_capture_init(void)
{
	text_of((const void *)hds_capture, &self_text);
	if (hds_cfi_init() < 0)
		return -1;

	void *h = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return -1;
	void *sym = dlsym(h, "unw_backtrace");
	if (!sym)
		return -1;
	unw_handle = h;
	memcpy(&unw_backtrace_fn, &sym, sizeof sym);
	text_of(sym, &unwind_text);
	return 0;
}

/* ---- frame pointers ----------------------------------------------------- */

/* In code built without frame pointers rbp holds anything, so every frame
 * address is checked before it is read: it must lie between our own frame
 * and the top of the thread's stack, and must grow.  (The bottom of the
 * stack as pthread reports it is no bound: the main thread's stack is
 * mapped only as far down as it has grown.) */
static int __attribute__((noinline)) fp_walk(uintptr_t *out, int cap)
{
	const uintptr_t *fp = __builtin_frame_address(0);
	uintptr_t lo = (uintptr_t)fp;
	int n = 0;

	if (!tl_stack_hi)
		thread_bounds();
	if (tl_stack_hi < lo + 16)
		return 0;   /* bounds unknown (or an alternate signal stack): read nothing */
	while (n < cap) {
		uintptr_t f = (uintptr_t)fp;
		if (f & 7 || f < lo || f > tl_stack_hi - 16)   /* no overflow near 2^64 */
			break;
		uintptr_t ret = hds_strip_ra(fp[1]);
		if (!ret)
			break;
		out[n++] = ret;
		const uintptr_t *next = (const uintptr_t *)fp[0];
		if (next <= fp)
			break;
		fp = next;
	}
	return n;
}

/* ---- the cfi unwinder --------------------------------------------------- */

static inline int readable(uint64_t a, uint64_t lo, uint64_t hi)
{
	return !(a & 7) && a >= lo && a <= hi - 8;
}

/*
 * Make scratch[0 .. j) (innermost first) the previous stack's frames from
 * `outer` inwards: frame scratch[t] becomes frame outer + j - 1 - t.  One
 * pass, outermost first, computing what each frame needs from the frames
 * outside it:
 *  - F_NEEDS_BP: a frame whose rule reads fp needs it; one that restores fp
 *    from a slot does not (nothing outside it sees this frame's fp); one
 *    that keeps fp needs it if the frame outside it does (beyond a cut:
 *    assume so);
 *  - the hash chain; with Python frames on (py) it leaves the eval-loop
 *    frames out (python.c replaces them: the chain is then that of the
 *    native frames the spliced stack keeps), and reval is kept;
 *  - the slots to check: every return-address slot, and the fp slot when
 *    the walk outside the frame reads fp before a frame restores it.
 */
static inline __attribute__((always_inline)) void commit_frames(struct unwind_mem *m, int outer, int j, const int py)
{
	uint64_t chain = outer ? m->chain[outer - 1] : HDS_HASH_SEED;
	unsigned up = outer ? m->flags[outer - 1] : (m->cut ? F_NEEDS_BP : 0);
	int16_t ev = outer && py ? m->reval[outer - 1] : -1;
	uint32_t c = outer ? m->ck_end[outer - 1] : 0;

	for (int t = j - 1, i = outer; t >= 0; t--, i++) {
		const struct uframe *f = &m->scratch[t];
		uint64_t ip = f->ip, ra_addr = f->ra_addr, bp_addr = f->bp_addr;
		unsigned bits = f->bits;
		unsigned fl = (up & F_FP_OUTER) | (bits & (F_FP_STEP | F_RA_REG));
		if ((bits & F_USES_BP) || (!bp_addr && (ra_addr || (bits & F_RA_REG)) && (up & F_NEEDS_BP)))
			fl |= F_NEEDS_BP;
		if (py && hds_is_eval(ip))
			ev = (int16_t)i;
		else
			chain = hds_hash_step(chain, ip);
		if (py)
			m->reval[i] = ev;
		m->ripr[CAP - 1 - i] = ip;
		m->rsp_s[1 + i] = f->sp;
		m->rbp[i] = f->bp;
		m->chain[i] = chain;
		m->flags[i] = (uint8_t)fl;
		/* Written whether kept or not (ck has room for two per frame):
		 * no branch on what varies from frame to frame. */
		m->ck[c].addr = ra_addr;
		m->ck[c].val = f->ra_val;
		c += ra_addr != 0;
		m->ck[c].addr = bp_addr;
		m->ck[c].val = f->bp_val;
		c += bp_addr && i > 0 && (up & F_NEEDS_BP);
		m->ck_end[i] = (uint16_t)c;
		up = fl;
	}
	m->n = outer + j;
}

static void commit(struct unwind_mem *m, int outer, int j)
{
	if (hds_eval_hi)
		commit_frames(m, outer, j, 1);
	else
		commit_frames(m, outer, j, 0);
}

/* Are the slots that the previous unwind read from its frame `at` (counted
 * from the outermost) outwards unchanged?  All of them lie above that
 * frame's sp, itself at or above ours, and below the top of the stack:
 * they were checked readable when read. */
static int outer_unchanged(const struct unwind_mem *m, int at)
{
	uint32_t n = m->ck_end[at], i = 0;

	/* Nearly always unchanged: four slots per branch.  Outermost first,
	 * unlike memo_unchanged: checking these innermost first too (one
	 * check for both) cost cppcheck 2% more instructions, 25,446 M to
	 * 25,963 M. */
	for (; i + 4 <= n; i += 4)
		if ((*(const uint64_t *)m->ck[i].addr ^ m->ck[i].val) |
		    (*(const uint64_t *)m->ck[i + 1].addr ^ m->ck[i + 1].val) |
		    (*(const uint64_t *)m->ck[i + 2].addr ^ m->ck[i + 2].val) |
		    (*(const uint64_t *)m->ck[i + 3].addr ^ m->ck[i + 3].val))
			return 0;
	for (; i < n; i++)
		if (*(const uint64_t *)m->ck[i].addr != m->ck[i].val)
			return 0;
	return 1;
}

static inline unsigned memo_set(uint64_t ip, uint64_t sp)
{
	return (unsigned)(((ip ^ (sp * 0x9e3779b97f4a7c15u)) * 0xff51afd7ed558ccdu) >> 40) & (MEMO_SETS - 1);
}

/* Do the slots entry e's walk read still hold what it found?  Innermost
 * first, two per branch: paths that meet at one place part nearest to it,
 * so a wrong entry is left after a slot or two. */
static inline int memo_unchanged(const struct memo *e)
{
	uint32_t i = e->nslots;

	for (; i >= 2; i -= 2)
		if ((*(const uint64_t *)e->ck[i - 1].addr ^ e->ck[i - 1].val) |
		    (*(const uint64_t *)e->ck[i - 2].addr ^ e->ck[i - 2].val))
			return 0;
	return !i || *(const uint64_t *)e->ck[0].addr == e->ck[0].val;
}

/* The memo's stack for a walk that starts at (ip, sp, bp), if it holds one
 * whose slots are unchanged; NULL otherwise. */
static inline const struct memo *memo_find(const struct unwind_mem *m, uint64_t ip, uint64_t sp, uint64_t bp)
{
	unsigned set = memo_set(ip, sp);
	const struct memo_tag *tag = m->memo_tags[set];

	for (int w = 0; w < MEMO_WAYS; w++) {
		if (tag[w].ip != ip || tag[w].sp != sp)
			continue;
		const struct memo *e = &m->memo[set][w];
		if (e->gen != m->memo_gen || (e->needs_bp && e->bp != bp))
			continue;
		if (memo_unchanged(e))
			return e;
	}
	return NULL;
}

/* Keep the stack the walk just committed (m's previous stack, n frames of
 * which the first `skip` are the shim's) in the memo, when it fits and
 * can be checked. */
static struct memo *memo_keep(struct unwind_mem *m, int skip, uint64_t chain)
{
	int n = m->n;
	uint32_t nslots = m->ck_end[n - 1];
	unsigned fl = m->flags[n - 1];
	uint64_t ip = m->ripr[CAP - n], sp = m->rsp_s[n];

	if (n > MEMO_FRAMES || nslots > MEMO_SLOTS || (fl & F_RA_REG) || !ip)
		return NULL;
	unsigned set = memo_set(ip, sp), w = m->memo_next[set]++ % MEMO_WAYS;
	struct memo *e = &m->memo[set][w];
	memcpy(e->ck, m->ck, sizeof *e->ck * nslots);
	m->memo_tags[set][w].ip = ip;
	m->memo_tags[set][w].sp = sp;
	e->bp = m->rbp[n - 1];
	e->chain = chain;
	e->gen = m->memo_gen;
	e->n = (uint8_t)n;
	e->nslots = (uint8_t)nslots;
	e->skip = (uint8_t)skip;
	e->needs_bp = !!(fl & F_NEEDS_BP);
	e->nocfi = !!(fl & F_FP_OUTER);
	e->stack = 0;
	memcpy(e->frames, &m->ripr[CAP - n], sizeof *e->frames * (size_t)n);
	if (chain && hds_eval_hi)
		memcpy(e->reval, m->reval, sizeof *e->reval * (size_t)n);
	return e;
}

/* The rule for pc: this thread's direct-mapped cache (hot in L1), then the
 * process-wide one. */
static inline uint64_t rule_for(struct unwind_mem *m, uint64_t pc)
{
	unsigned i = (unsigned)((pc * 0x9e3779b97f4a7c15u) >> 55) & (L1_RULES - 1);

	if (m->l1[i].pc == pc)
		return m->l1[i].rule;
	uint64_t rule = hds_cfi_rule(pc);
	m->l1[i].pc = pc;
	m->l1[i].rule = rule;
	return rule;
}

/* ---- code without CFI ---------------------------------------------------- */

/*
 * JIT-compiled code (V8's, .NET's, the JVM's) has no .eh_frame, and neither
 * have V8's builtins embedded in the node binary: for their return
 * addresses the rule lookup finds nothing (HDS_RULE_NONE), where the walk
 * used to end.  That code keeps frame pointers (V8 and .NET always, the JVM
 * with -XX:+PreserveFramePointer): a frame record [fp] = the caller's fp,
 * [fp+8] = the return address, and the caller's sp = fp + 16 (x86-64's
 * `push rbp; mov rbp, rsp`; V8 builds its aarch64 frames the same way).  So
 * the walk goes on through the chain, each step checked (fp 8-byte aligned,
 * at or above sp, its record below the top of the stack: the chain grows,
 * since the next sp is fp + 16), until a return address with a rule is
 * reached (the code that called into the JIT), and from there on with
 * rules.  A run of chain steps is kept only when it ends at such an address
 * or at the stack's frame limit: in code that keeps no frame pointer
 * (CPython 3.12's perf trampolines) fp holds anything, and a chain read
 * from it leads nowhere; the stack then ends at the first frame without
 * CFI, as it did before.  While a run is under way the previous stack's
 * frames are not reused (a run is only kept once it has reached CFI).
 *
 * aarch64 under qemu-user: a signal handler returns to qemu's trampoline,
 * which has no CFI; cfi.c gives such an address HDS_RULE_UNSUPPORTED (the
 * stack goes to libunwind, which knows the trampoline), not NONE.
 */

/* One step out of a frame without CFI through its frame pointer *bp:
 * 1 with *ip, *sp and *bp the caller's (and, when f is given, the two slots
 * read noted in it); 0 when *bp is no frame record of this stack. */
static inline int fp_step(uint64_t *ip, uint64_t *sp, uint64_t *bp, uint64_t lo, uint64_t hi, struct uframe *f)
{
	uint64_t rec = *bp;

	if (rec < *sp || !readable(rec, lo, hi) || !readable(rec + 8, lo, hi))
		return 0;
	uint64_t caller_bp = ((const uint64_t *)rec)[0], ra = ((const uint64_t *)rec)[1];
	if (f) {
		f->bits |= F_USES_BP | F_FP_STEP;
		f->bp_addr = rec;
		f->bp_val = caller_bp;
		f->ra_addr = rec + 8;
		f->ra_val = ra;
	}
	*ip = hds_strip_ra(ra);
	*sp = rec + 16;
	*bp = caller_bp;
	return 1;
}

/* The cfi walk without per-thread memory: no reuse of the previous stack,
 * no per-thread rule cache.  For a thread past its bundle's release.
 * *nocfi is set when the stack went through code without CFI. */
static int cfi_walk_plain(uintptr_t *out, int want, const uint64_t *entry, int *nocfi)
{
	if (!tl_stack_hi)
		thread_bounds();

	uint64_t lo, hi = tl_stack_hi, ip, sp, bp, lr;
	if (HDS_WALK_START(entry, hi, lo, ip, sp, bp, lr) < 0)
		return -1;
	int j = 0, run = -1;   /* run: the first frame of a run of chain steps */

	for (;;) {
		out[j++] = ip;
		if (j == want)
			break;
		uint64_t rule = hds_cfi_rule(ip - 1);
		int kind = hds_rule_kind(rule);
		if (kind == (int)HDS_RULE_NONE) {
			if (fp_step(&ip, &sp, &bp, lo, hi, NULL) && ip) {
				if (run < 0)
					run = j - 1;
				continue;
			}
			if (run >= 0)
				j = run + 1;   /* the chain led nowhere: end where CFI ended */
			break;
		}
		if (run >= 0)
			*nocfi = 1;
		run = -1;
		if (kind == (int)HDS_RULE_END)
			break;
		if (kind == (int)HDS_RULE_UNSUPPORTED)
			return -1;
		int ra_lr = !HDS_CIE_RA_ON_STACK && hds_rule_ra_lr(rule);
		if (ra_lr && j != 1)
			return -1;   /* only the innermost frame can have it there */
		uint64_t cfa = (hds_rule_cfa_fp(rule) ? bp : sp) + (uint64_t)hds_rule_cfa_off(rule);
		if (cfa < sp || (cfa == sp && !ra_lr) || cfa > hi)
			return -1;
		uint64_t ra_addr = cfa + (uint64_t)hds_rule_ra_off(rule);
		if (!ra_lr && !readable(ra_addr, lo, hi))
			return -1;
		if (hds_rule_fp_saved(rule)) {
			uint64_t bp_addr = cfa + (uint64_t)hds_rule_fp_off(rule);
			if (!readable(bp_addr, lo, hi))
				return -1;
			bp = *(const uint64_t *)bp_addr;
		}
		ip = hds_strip_ra(ra_lr ? lr : *(const uint64_t *)ra_addr);
		sp = cfa;
		if (!ip)
			break;
	}
	if (run >= 0 && j == want)
		*nocfi = 1;   /* cut inside a run: kept */
	return j;
}

/* Unwind the stack, starting in the function that called the interposed
 * entry point whose frame is `entry` (x86-64: the entry points keep a frame
 * pointer: entry[0] is the caller's rbp, entry[1] its return address, and
 * the caller's stack pointer is entry + 16), or on aarch64 here, through
 * the shim's own frames (arch.h: HDS_WALK_START).  Sets *res to its frames,
 * innermost first: in m's ripr or a memo entry (then *hit is the entry),
 * valid until this thread's next capture, or in out[0..want).  Returns the
 * number of frames, or -1 when the stack must go to libunwind; sets *nocfi
 * when the stack went through code without CFI. */
static int cfi_walk(uintptr_t *out, const uintptr_t **res, int want, const uint64_t *entry, struct unwind_mem *m,
		    int *nocfi, const struct memo **hit)
{
	*nocfi = 0;
	*res = out;
	*hit = NULL;
	if (!m)
		return cfi_walk_plain(out, want, entry, nocfi);
	uint32_t epoch = atomic_load_relaxed(&hds.map_epoch);
	if (unlikely(m->epoch != epoch)) {
		/* A module went away: its rules and frames may now be another's. */
		memset(m->l1, 0, sizeof m->l1);
		m->n = 0;
		m->memo_gen++;
		m->epoch = epoch;
	}
	if (!tl_stack_hi)
		thread_bounds();

	uint64_t lo, hi = tl_stack_hi, ip, sp, bp, lr;
	if (HDS_WALK_START(entry, hi, lo, ip, sp, bp, lr) < 0)
		return -1;
	int own = sp >= tl_stack_lo;   /* on the thread's stack (memory safety above) */
	m->memo_on = own && !m->memo_rest;
	if (own && m->memo_rest)
		m->memo_rest--;
	if (m->memo_on) {
		const struct memo *e = memo_find(m, ip, sp, bp);
		int found = e && e->n <= want;
		m->memo_found += (uint16_t)found;
		if (++m->memo_seen == MEMO_WINDOW) {
			if (m->memo_found < MEMO_WINDOW / 2)
				m->memo_rest = MEMO_REST * MEMO_WINDOW;
			m->memo_seen = m->memo_found = 0;
		}
		if (found) {
			atomic_store_relaxed(&m->memo_hits, atomic_load_relaxed(&m->memo_hits) + 1);
			*hit = e;
			*res = e->frames;
			*nocfi = e->nocfi;
			return e->n;
		}
	}
	/* at: cursor into the previous stack, from its innermost frame out;
	 * k = m->n - 1 - at: how many of its inner frames it has passed. */
	int j = 0, at = m->fp_end ? -1 : m->n - 1;
	const uint64_t *rsp = m->rsp_s + 1;
	m->rsp_s[0] = UINT64_MAX;
	int run = -1;       /* the first frame of a run of chain steps (code without CFI) */
	int fp_end = 0;

	for (;;) {
		struct uframe *f = &m->scratch[j];
		f->ip = ip;
		f->sp = sp;
		f->bp = bp;
		f->ra_addr = f->bp_addr = 0;
		f->bits = 0;

		/* Same frame as in the previous stack, with the same slots? */
		while (rsp[at] < sp)   /* rsp[-1]: the sentinel */
			at--;
		if (at >= 0 && run < 0 && own) {
			int k = m->n - 1 - at;
			unsigned fl = m->flags[at];
			/* fp is an ordinary register in code without frame
			 * pointers: it matters only if the outer walk reads it. */
			if (rsp[at] == sp && m->ripr[CAP - 1 - at] == ip && (!(fl & F_NEEDS_BP) || m->rbp[at] == bp) &&
			    (!m->cut || j >= k) && !(fl & F_RA_REG) && outer_unchanged(m, at)) {
				/* Keep frames 0 .. n-1-k (the outer part, frame k
				 * included); put the j new inner frames after it. */
				int outer = m->n - k;
				int total = outer + j;
				if (total > want)
					total = want;
				if (outer + j <= CAP) {
					commit(m, outer, j);
					*res = &m->ripr[CAP - m->n];
					*nocfi = !!(m->flags[m->n - 1] & F_FP_OUTER);
					return total;
				}
				/* Too deep to keep: copied out, and next time from scratch. */
				*nocfi = !!(fl & F_FP_OUTER);
				for (int t = 0; t < j && t < want; t++) {
					out[t] = m->scratch[t].ip;
					*nocfi |= !!(m->scratch[t].bits & F_FP_STEP);
				}
				for (int t = j; t < total; t++)
					out[t] = m->ripr[CAP - outer - j + t];
				m->n = 0;
				*res = out;
				return total;
			}
		}

		j++;
		if (j == want)
			break;
		uint64_t rule = rule_for(m, ip - 1);
		int kind = hds_rule_kind(rule);
		if (kind == (int)HDS_RULE_NONE) {
			/* Code without CFI: on through its frame pointer. */
			if (fp_step(&ip, &sp, &bp, lo, hi, f) && ip) {
				if (run < 0)
					run = j - 1;
				continue;
			}
			fp_end = 1;
			if (run >= 0) {
				/* The chain led nowhere: the stack ends where
				 * CFI ended, at the run's first frame. */
				struct uframe *r = &m->scratch[run];
				r->ra_addr = r->bp_addr = 0;
				r->bits = 0;
				j = run + 1;
			} else {
				f->ra_addr = f->bp_addr = 0;
				f->bits = 0;
			}
			break;
		}
		run = -1;   /* a rule again: the run is kept */
		if (kind == (int)HDS_RULE_END)
			break;   /* outermost frame */
		if (kind == (int)HDS_RULE_UNSUPPORTED)
			return -1;
		int uses_bp = hds_rule_cfa_fp(rule);
		f->bits = uses_bp ? F_USES_BP : 0;
		uint64_t cfa = (uses_bp ? bp : sp) + (uint64_t)hds_rule_cfa_off(rule);
		if (!HDS_CIE_RA_ON_STACK && unlikely(hds_rule_ra_lr(rule))) {
			/* aarch64: the return address is still in x30.  Only
			 * the innermost frame's x30 is known (a frame outside
			 * it that has not saved x30 means CFI we cannot follow);
			 * it may have no frame yet (CFA == sp). */
			if (j != 1 || cfa < sp || cfa > hi)
				return -1;
			f->bits |= F_RA_REG;
			f->ra_val = lr;
		} else {
			if (cfa <= sp || cfa > hi)
				return -1;
			f->ra_addr = cfa + (uint64_t)hds_rule_ra_off(rule);
			if (!readable(f->ra_addr, lo, hi))
				return -1;
			f->ra_val = *(const uint64_t *)f->ra_addr;
		}
		if (hds_rule_fp_saved(rule)) {
			f->bp_addr = cfa + (uint64_t)hds_rule_fp_off(rule);
			if (!readable(f->bp_addr, lo, hi))
				return -1;
			f->bp_val = *(const uint64_t *)f->bp_addr;
			bp = f->bp_val;
		}
		ip = hds_strip_ra(f->ra_val);
		sp = cfa;
		if (!ip)
			break;
	}
	/* No reuse: the new stack replaces the previous one. */
	m->cut = j == want;
	m->fp_end = fp_end;
	commit(m, 0, j);
	*res = &m->ripr[CAP - j];
	*nocfi = j && (m->flags[j - 1] & F_FP_OUTER);
	return j;
}

static int libunwind_walk(uintptr_t *buf, int want)
{
	if (!unw_backtrace_fn)
		return fp_walk(buf, want);
	int n = unw_backtrace_fn((void **)buf, want);
	if (HDS_ARCH_PAC)   /* aarch64: return addresses as ours (arch.h) */
		for (int i = 0; i < n; i++)
			buf[i] = hds_from_libunwind(buf[i]);
	return n;
}

/* Index of the first frame that is neither ours nor libunwind's. */
static int skip_own(const uintptr_t *buf, int n)
{
	int skip = 0;

	while (skip < n && (in_range(&self_text, buf[skip]) || in_range(&unwind_text, buf[skip])))
		skip++;
	return skip;
}

/* This thread's last capture that gave a chain: its reval, and the index
 * in the previous stack of its innermost recorded frame (frame i is the
 * previous stack's frame tl_top - i). */
static __thread const int16_t *tl_reval __attribute__((tls_model("initial-exec")));
static __thread int tl_top __attribute__((tls_model("initial-exec")));
/* The memo entry of this thread's last capture (found or just kept). */
static __thread struct memo *tl_memo __attribute__((tls_model("initial-exec")));

uint32_t hds_capture_known_stack(void)
{
	return tl_memo ? tl_memo->stack : 0;
}

void hds_capture_note_stack(uint32_t id)
{
	if (tl_memo)
		tl_memo->stack = id + 1;
}

int hds_capture_next_eval(int i, int n)
{
	int e = i < n ? tl_reval[tl_top - i] : -1;

	return e < 0 ? n : tl_top - e;
}

int hds_capture(uintptr_t *buf, const uintptr_t **frames, int max, int *truncated, const void *entry,
		uint64_t *chain)
{
	int want = max + SKIP_SLACK + 1, n = -1, skip, from_cfi = 0, nocfi = 0;
	struct unwind_mem *m = NULL;
	const struct memo *hit = NULL;
	const uintptr_t *got = buf;

	switch (hds.cfg.unwinder) {
	case HD_UNWIND_CFI:
		m = thread_mem();
		n = cfi_walk(buf, &got, want, entry, m, &nocfi, &hit);
		from_cfi = n >= 0;
		if (n < 0) {
			atomic_add_relaxed(&hds.unwind_fallbacks, 1);
			if (m)
				m->n = 0;
			got = buf;
			n = libunwind_walk(buf, want);
		} else if (hds.cfg.unwind_check && nocfi) {
			/* libunwind stops at the first frame without CFI: no
			 * comparison, the stack is counted apart. */
			atomic_add_relaxed(&hds.unwind_nocfi, 1);
		} else if (hds.cfg.unwind_check && unw_backtrace_fn) {
			uintptr_t ref[CAP];
			int rn = libunwind_walk(ref, want);
			int a = skip_own(got, n), b = skip_own(ref, rn);
			int na = n - a > max ? max : n - a, nb = rn - b > max ? max : rn - b;
			atomic_add_relaxed(&hds.unwind_checked, 1);
			if (na != nb || memcmp(got + a, ref + b, sizeof *buf * (size_t)(na > 0 ? na : 0)) != 0) {
				atomic_add_relaxed(&hds.unwind_mismatches, 1);
				memcpy(buf, ref, sizeof *buf * (size_t)rn);
				got = buf;
				n = rn;
				from_cfi = 0;
			}
		}
		break;
	case HD_UNWIND_LIBUNWIND:
		n = libunwind_walk(buf, want);
		break;
	default:
		n = fp_walk(buf, want);
	}
	*chain = 0;
	tl_memo = NULL;
	if (hit && from_cfi) {
		/* As it was when the memo kept it. */
		skip = hit->skip;
		tl_memo = (struct memo *)hit;
		if (hit->chain) {
			*chain = hit->chain;
			tl_reval = hit->reval;
			tl_top = n - 1 - skip;
		}
	} else {
		skip = skip_own(got, n);
		/* The unwinder's chain covers the whole stack it kept: usable
		 * when the recorded frames are exactly its frames skip .. end. */
		if (from_cfi && m && m->n == n && !m->cut) {
			if (n - skip <= max && n > skip) {
				*chain = m->chain[n - 1 - skip];
				tl_reval = m->reval;
				tl_top = n - 1 - skip;
			}
			if (m->memo_on && !m->fp_end)
				tl_memo = memo_keep(m, skip, *chain);
		}
	}
	n -= skip;
	*truncated = n > max;
	if (n > max)
		n = max;
	*frames = got + skip;
	return n > 0 ? n : 0;
}

int hds_capture_in_shim(uint64_t pc)
{
	return in_range(&self_text, pc);
}

#if defined(__x86_64__)
/*
 * The frame that called the function at [lo, hi) (exit, for reach.c): its
 * stack pointer just after the call, and its callee-saved registers as
 * they were then (the callee and the frames under it keep them in their
 * own frames, below that stack pointer).  libunwind restores every
 * register through the CFI; our own unwinder follows only the frame and
 * return-address registers.  Returns the number of registers put in
 * regs[0..max), or -1 when libunwind is not loaded or no frame runs in
 * [lo, hi).
 */
int hds_capture_caller_of(uint64_t lo, uint64_t hi, uint64_t *sp, uint64_t *regs, int max)
{
	/* libunwind's x86-64 register numbers */
	enum { RBX = 3, RBP = 6, RSP = 7, R12 = 12, R13, R14, R15, RIP = 16 };
	static const int saved[] = { RBX, RBP, R12, R13, R14, R15 };
	int (*getcontext_fn)(void *), (*init_fn)(void *, void *), (*step_fn)(void *);
	int (*get_reg_fn)(void *, int, uint64_t *);
	_Alignas(64) unsigned char ctx[2048], cur[2048];   /* unw_context_t: 936 bytes, unw_cursor_t: 1016 */
	void *f;

	if (!unw_handle)
		return -1;
	if (!(f = dlsym(unw_handle, "_Ux86_64_getcontext")))
		return -1;
	memcpy(&getcontext_fn, &f, sizeof f);
	if (!(f = dlsym(unw_handle, "_ULx86_64_init_local")))
		return -1;
	memcpy(&init_fn, &f, sizeof f);
	if (!(f = dlsym(unw_handle, "_ULx86_64_step")))
		return -1;
	memcpy(&step_fn, &f, sizeof f);
	if (!(f = dlsym(unw_handle, "_ULx86_64_get_reg")))
		return -1;
	memcpy(&get_reg_fn, &f, sizeof f);
	if (getcontext_fn(ctx) != 0 || init_fn(cur, ctx) != 0)
		return -1;
	for (int depth = 0; depth < 512; depth++) {
		uint64_t ip = 0;
		if (get_reg_fn(cur, RIP, &ip) != 0)
			return -1;
		int inside = depth > 0 ? ip - 1 >= lo && ip - 1 < hi : ip >= lo && ip < hi;
		if (step_fn(cur) <= 0)
			return -1;
		if (!inside)
			continue;
		if (get_reg_fn(cur, RSP, sp) != 0)
			return -1;
		int n = 0;
		for (size_t i = 0; i < sizeof saved / sizeof saved[0] && n < max; i++)
			if (get_reg_fn(cur, saved[i], &regs[n]) == 0)
				n++;
		return n;
	}
	return -1;
}
#else
int hds_capture_caller_of(uint64_t lo, uint64_t hi, uint64_t *sp, uint64_t *regs, int max)
{
	(void)lo; (void)hi; (void)sp; (void)regs; (void)max;
	return -1;
}
#endif
