/*
 * entry_cxx.c - the C++ allocation operators: every form of operator new
 * and operator delete (plain, array, nothrow, align_val_t, sized), by their
 * Itanium C++ ABI names.
 *
 * The common case takes a shorter way (runtime_operator): when the
 * operator forwarded to is the C++ runtime's, new allocates with the real
 * malloc and records, and delete releases with the real free, without the
 * runtime's operator and a second pass through the shim beneath it.
 *
 * Why here and not through malloc: libstdc++ rounds an aligned request up
 * before calling aligned_alloc (new of a 999-byte type aligned to 64 asks
 * for 1024 bytes), and only the operators know which family a block comes
 * from.  So each operator forwards to the real one (the next definition in
 * lookup order: libstdc++'s, or a replacement the program loaded), with
 * hds_busy = HDS_BUSY_FORWARD so that the malloc beneath passes through,
 * then records the block with the size the program asked for and its
 * family; each delete takes the block out of the live map first and counts
 * a release by the wrong family (valgrind's "Mismatched free() / delete /
 * delete []").  A program that defines the operators in its executable
 * binds to its own: they reach us as malloc and free, as before.
 *
 * Exceptions: a failing operator new throws std::bad_alloc (after the new
 * handler) through our frame.  This file is built with -fexceptions, and
 * the busy flag is restored by a cleanup, which runs while unwinding too.
 *
 * Names: _Znwm new(size_t), _Znam new[](size_t); RKSt9nothrow_t adds a
 * nothrow_t const&, St11align_val_t an align_val_t; _ZdlPv delete(void *),
 * _ZdaPv delete[](void *), with m for the size of the sized forms.
 */
#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <string.h>


/* The real operator, resolved on first use (dlsym may allocate: the caller
 * has set hds_busy).  NULL when nothing else defines it. */
static void *resolve(_Atomic(void *) *slot, const char *name)
{
	void *fn = atomic_load_acquire(slot);

	if (!fn) {
		fn = dlsym(RTLD_NEXT, name);
		atomic_store_release(slot, fn);
	}
	return fn;
}

/*
 * May the operator take the fast path (entry.c's hds_new_fast and
 * hds_delete_fast)?  Only when the definition it would forward to is the
 * C++ runtime's own (libstdc++ or libc++), whose new is malloc and whose
 * delete is free: a replacement a library brought is the program's
 * allocator and is always called.  Decided once per operator, into its
 * name##_runtime: OP_RUNTIME or OP_REPLACED, or OP_SAMPLED, the runtime's
 * in sampled mode with glibc's malloc, where the exported operator itself
 * sends what is not sampled straight to glibc (so that it tests one value
 * for both).  The mode and the allocator are known before the state is
 * ACTIVE, and this decides only once it is.
 */
enum { OP_UNDECIDED, OP_RUNTIME, OP_REPLACED, OP_SAMPLED };

static __attribute__((noinline)) int runtime_operator_decide(_Atomic(void *) *slot, const char *name,
								 _Atomic int *state)
{
	if (hds_busy || atomic_load_acquire(&hds.state) != HDS_ACTIVE)
		return 0;   /* decide later, outside the shim */
	hds_busy = 1;
	void *fn = resolve(slot, name);
	Dl_info dl;
	int v = OP_REPLACED;
	if (fn && dladdr(fn, &dl) && dl.dli_fname) {
		const char *base = strrchr(dl.dli_fname, '/');
		base = base ? base + 1 : dl.dli_fname;
		if (!strncmp(base, "libstdc++.so", 12) || !strncmp(base, "libc++.so", 9))
			v = hds.cfg.sample_bytes && !hds.foreign_malloc ? OP_SAMPLED : OP_RUNTIME;
	}
	atomic_store_release(state, v);   /* after init's stores, as ACTIVE */
	hds_busy = 0;
	return v != OP_REPLACED;
}

static inline int runtime_operator(_Atomic(void *) *slot, const char *name, _Atomic int *state)
{
	int v = atomic_load_relaxed(state);

	if (likely(v != OP_UNDECIDED))
		return v != OP_REPLACED;
	return runtime_operator_decide(slot, name, state);
}

static void restore_busy(int *outer)
{
	hds_busy = *outer;
}

/* The block a delete is releasing: already out of the live map when the
 * real operator frees it, so free leaves the map alone (looking again
 * could find another block: a pointer not in the fine map is looked for in
 * the coarse one, where a large block in the same page would answer). */
__thread void *hds_tl_releasing __attribute__((tls_model("initial-exec")));

static void end_delete(int *outer)
{
	hds_tl_releasing = NULL;
	hds_busy = *outer;
}

/*
 * An operator new: in sampled mode, when not sampled, glibc's malloc
 * straight from the exported function (frameless, as a delete below);
 * else the full path (name##_full: allocate and record on the fast path,
 * hds_new_fast); else, or when malloc fails, forward, then record what
 * came back.  `record` is decided before the call (a new inside the shim,
 * or under another operator, is passed through: libstdc++'s new[] calls
 * new).
 */
#define HDS_NEW(name, kind, params, args, size, fast)                                      \
	static _Atomic(void *) name##_real;                                                 \
	static _Atomic int name##_runtime;                                                  \
	static __attribute__((noinline)) void *name##_forward params                        \
	{                                                                                   \
		int outer __attribute__((cleanup(restore_busy))) = hds_busy;                \
		int record = !outer && atomic_load_relaxed(&hds.state) == HDS_ACTIVE;      \
		hds_busy = HDS_BUSY_FORWARD;                                               \
		void *(*fn) params;                                                         \
		void *sym = resolve(&name##_real, #name);                                   \
		if (!sym) {                                                                 \
			errno = ENOSYS;                                                     \
			__builtin_trap();   /* nothing to forward to: cannot happen */      \
		}                                                                           \
		memcpy(&fn, &sym, sizeof sym);                                              \
		void *p = fn args;                                                          \
		if (p && record) {                                                          \
			int saved = errno;                                                  \
			hds_busy = 1;                                                       \
			/* from this frame: next the program's, or the operator's if it  \
			 * called rather than jumped here (skipped as ours) */          \
			hds_record_alloc(p, size, kind, __builtin_frame_address(0));        \
			errno = saved;                                                      \
		}                                                                           \
		return p;                                                                   \
	}                                                                                   \
	static __attribute__((noinline)) void *name##_full params                           \
	{                                                                                   \
		if (fast && runtime_operator(&name##_real, #name, &name##_runtime)) {       \
			void *q = hds_new_fast(size, kind, __builtin_frame_address(0));     \
			if (likely(q != NULL))                                              \
				return q;                                                   \
		}                                                                           \
		return name##_forward args;                                                 \
	}                                                                                   \
	HDS_EXPORT void *name params;                                                       \
	HDS_FRAMELESS void *name params                                                     \
	{                                                                                   \
		if (fast && atomic_load_acquire(&name##_runtime) == OP_SAMPLED &&           \
		    hds_sampled_countdown_skips(size)) {                                    \
			/* the runtime's new asks malloc for at least 1 byte: glibc's    \
			 * malloc(0) takes the same smallest chunk as malloc(1) */         \
			void *q = hds.real.malloc(size);                                    \
			if (likely(q != NULL))                                              \
				return q;                                                   \
			return name##_forward args;                                         \
		}                                                                           \
		return name##_full args;                                                    \
	}

typedef struct { char c; } nothrow_t;   /* std::nothrow_t: an empty class, passed by reference */
typedef size_t align_val_t;             /* std::align_val_t: enum class : size_t */

HDS_NEW(_Znwm, HDS_KIND_NEW, (size_t n), (n), n, 1)
HDS_NEW(_Znam, HDS_KIND_NEW_ARRAY, (size_t n), (n), n, 1)
HDS_NEW(_ZnwmRKSt9nothrow_t, HDS_KIND_NEW, (size_t n, const nothrow_t *t), (n, t), n, 1)
HDS_NEW(_ZnamRKSt9nothrow_t, HDS_KIND_NEW_ARRAY, (size_t n, const nothrow_t *t), (n, t), n, 1)
HDS_NEW(_ZnwmSt11align_val_t, HDS_KIND_NEW, (size_t n, align_val_t a), (n, a), n, 0)
HDS_NEW(_ZnamSt11align_val_t, HDS_KIND_NEW_ARRAY, (size_t n, align_val_t a), (n, a), n, 0)
HDS_NEW(_ZnwmSt11align_val_tRKSt9nothrow_t, HDS_KIND_NEW, (size_t n, align_val_t a, const nothrow_t *t),
	(n, a, t), n, 0)
HDS_NEW(_ZnamSt11align_val_tRKSt9nothrow_t, HDS_KIND_NEW_ARRAY, (size_t n, align_val_t a, const nothrow_t *t),
	(n, a, t), n, 0)

/* Before a delete forwards: out of the live map, uncounted, and checked
 * against the family.  Returns hds_busy as it was. */
static int delete_begin(void *p, int kind, const void *frame)
{
	int outer = hds_busy;

	hds_busy = 1;
	hds_tl_releasing = p;
	if (p && atomic_load_acquire(&hds.state) == HDS_ACTIVE) {
		int saved = errno;
		uint64_t e = hds_forget(p, !outer);
		if (e) {
			hds_uncount(e);   /* first: the mismatch's capture may leave the shim's code */
			if (hds_entry_kind(e) != kind && !outer)
				hds_note_mismatch(e, kind, frame);
		}
		errno = saved;
	}
	return outer;
}

/*
 * An operator delete: straight to glibc's free in sampled mode when the
 * block was never recorded; else the full path (name##_full), which takes
 * the block out of the map and checks its family, or forwards to the real
 * operator (name##_forward).  The exported function keeps no frame of its
 * own (HDS_FRAMELESS) and reaches either by a tail call, so the frame the
 * full path passes on as the entry frame is, as for every entry point,
 * the one right under the program's: its caller's frame pointer and
 * return address.
 */
#define HDS_DELETE(name, kind, params, args)                                                \
	static _Atomic(void *) name##_real;                                                 \
	static _Atomic int name##_runtime;                                                  \
	static __attribute__((noinline)) void name##_forward params                         \
	{                                                                                   \
		int outer __attribute__((cleanup(end_delete))) =                            \
			delete_begin(p, kind, __builtin_frame_address(0));                  \
		void (*fn) params;                                                          \
		void *sym = resolve(&name##_real, #name);                                   \
		if (!sym)                                                                   \
			__builtin_trap();                                                   \
		memcpy(&fn, &sym, sizeof sym);                                              \
		fn args;                                                                    \
	}                                                                                   \
	static __attribute__((noinline)) void name##_full params                            \
	{                                                                                   \
		if (runtime_operator(&name##_real, #name, &name##_runtime) &&               \
		    likely(hds_delete_fast(p, kind, __builtin_frame_address(0))))           \
			return;                                                             \
		name##_forward args;                                                        \
	}                                                                                   \
	HDS_EXPORT void name params;                                                        \
	HDS_FRAMELESS void name params                                                      \
	{                                                                                   \
		if (atomic_load_acquire(&name##_runtime) == OP_SAMPLED &&                   \
		    hds_sampled_filter_skips(p)) {                                          \
			hds.real.free(p);                                                   \
			return;                                                             \
		}                                                                           \
		name##_full args;                                                           \
	}

HDS_DELETE(_ZdlPv, HDS_KIND_NEW, (void *p), (p))
HDS_DELETE(_ZdaPv, HDS_KIND_NEW_ARRAY, (void *p), (p))
HDS_DELETE(_ZdlPvm, HDS_KIND_NEW, (void *p, size_t n), (p, n))
HDS_DELETE(_ZdaPvm, HDS_KIND_NEW_ARRAY, (void *p, size_t n), (p, n))
HDS_DELETE(_ZdlPvRKSt9nothrow_t, HDS_KIND_NEW, (void *p, const nothrow_t *t), (p, t))
HDS_DELETE(_ZdaPvRKSt9nothrow_t, HDS_KIND_NEW_ARRAY, (void *p, const nothrow_t *t), (p, t))
HDS_DELETE(_ZdlPvSt11align_val_t, HDS_KIND_NEW, (void *p, align_val_t a), (p, a))
HDS_DELETE(_ZdaPvSt11align_val_t, HDS_KIND_NEW_ARRAY, (void *p, align_val_t a), (p, a))
HDS_DELETE(_ZdlPvmSt11align_val_t, HDS_KIND_NEW, (void *p, size_t n, align_val_t a), (p, n, a))
HDS_DELETE(_ZdaPvmSt11align_val_t, HDS_KIND_NEW_ARRAY, (void *p, size_t n, align_val_t a), (p, n, a))
HDS_DELETE(_ZdlPvSt11align_val_tRKSt9nothrow_t, HDS_KIND_NEW, (void *p, align_val_t a, const nothrow_t *t),
	   (p, a, t))
HDS_DELETE(_ZdaPvSt11align_val_tRKSt9nothrow_t, HDS_KIND_NEW_ARRAY, (void *p, align_val_t a, const nothrow_t *t),
	   (p, a, t))
