/*
 * init.c - start-up, fork and exit: resolving the real allocator, setting
 * up the tables, the constructor and destructor.
 *
 * Start-up can begin in two places: the first interposed call (a C++ runtime
 * or another library's constructor may allocate before ours runs), or our
 * constructor.  hds_init_core() is idempotent and claims the work with one
 * CAS; a thread that finds it in progress passes its allocations through
 * unrecorded rather than waiting, so there is no way to deadlock here.
 *
 * Until the real functions are resolved with dlsym(RTLD_NEXT), glibc's
 * exported __libc_* entry points serve: that avoids the classic
 * "dlsym calls calloc" bootstrap loop.
 */
#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void  __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);

/* glibc's argument checks, for the short time before dlsym has answered. */
static int boot_posix_memalign(void **out, size_t align, size_t size)
{
	void *p;

	if (align == 0 || align % sizeof(void *) || (align & (align - 1)))
		return EINVAL;
	p = __libc_memalign(align, size);
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

static void *boot_aligned_alloc(size_t align, size_t size)
{
	if (align == 0 || (align & (align - 1))) {
		errno = EINVAL;
		return NULL;
	}
	return __libc_memalign(align, size);
}

struct hds_globals hds = {
	.real = {
		.malloc = __libc_malloc,
		.calloc = __libc_calloc,
		.realloc = __libc_realloc,
		.free = __libc_free,
		.memalign = __libc_memalign,
		.posix_memalign = boot_posix_memalign,
		.aligned_alloc = boot_aligned_alloc,
		.valloc = __libc_valloc,
		.pvalloc = __libc_pvalloc,
	},
};

/* ---- start-up -------------------------------------------------------- */

/* What the program's own references bind to.  They carry glibc's symbol
 * version and bind to the first library in lookup order that defines the
 * name with that version (libc_malloc_debug.so exports only that,
 * non-default, version: plain dlsym skips it) or without any version
 * (jemalloc, tcmalloc: dlvsym skips those).  So ask both ways and keep the
 * answer from the library that comes first in the link-map chain. */
static void *next_symbol(const char *name, const char *version)
{
	void *v = dlvsym(RTLD_NEXT, name, version), *d = dlsym(RTLD_NEXT, name);
	struct link_map *mv = NULL, *md = NULL;
	Dl_info info;

	if (!v || !d || v == d)
		return v ? v : d;
	if (!dladdr1(v, &info, (void **)&mv, RTLD_DL_LINKMAP) || !dladdr1(d, &info, (void **)&md, RTLD_DL_LINKMAP))
		return v;
	for (struct link_map *m = mv; m; m = m->l_next)
		if (m == md)
			return v;   /* d's library comes after v's */
	return d;
}

static void resolve_real(void)
{
	struct hds_real r = hds.real;
	void *sym;

#define RESOLVE(name, version) \
	do { if ((sym = next_symbol(#name, version))) memcpy(&r.name, &sym, sizeof sym); } while (0)
	RESOLVE(malloc, HDS_GLIBC_BASE);
	RESOLVE(calloc, HDS_GLIBC_BASE);
	RESOLVE(realloc, HDS_GLIBC_BASE);
	RESOLVE(free, HDS_GLIBC_BASE);
	RESOLVE(memalign, HDS_GLIBC_BASE);
	RESOLVE(posix_memalign, HDS_GLIBC_BASE);
	RESOLVE(aligned_alloc, HDS_GLIBC_ALIGNED);
	RESOLVE(valloc, HDS_GLIBC_BASE);
	RESOLVE(pvalloc, HDS_GLIBC_BASE);
#undef RESOLVE
	hds.foreign_malloc = r.malloc != __libc_malloc;
	hds.real = r;
}

void hds_init_core(void)
{
	int expected = HDS_UNINIT;
	int outer = hds_busy;
	int saved = errno;

	if (!atomic_cas_acq_rel(&hds.state, &expected, HDS_BOOTING))
		return;
	hds_busy = 1;

	int final = HDS_PASSIVE;
	if (getauxval(AT_SECURE))
		goto out;   /* setuid/setgid: stay out of the way */

	hds.start_mono_ns = hds_now_ns(CLOCK_MONOTONIC);
	hds.pid = getpid();
	hds_config_load(&hds.cfg);
	resolve_real();
	if (hds.foreign_malloc)
		hds_warn("malloc is not glibc's (another allocator is loaded); tracing it through its malloc", NULL);

	if (hds_stacks_init(hds.cfg.max_stacks) < 0 || hds_live_init(hds.foreign_malloc ? 4 : 5, hds.cfg.sample_bytes != 0) < 0 ||
	    hds_modules_init() < 0 || hds_threads_init(hds.cfg.max_stacks) < 0) {
		hds_warn("cannot map memory for the tables; not tracing", NULL);
		goto out;
	}
	hds_total_init();
	if (hds_capture_init() < 0 && hds.cfg.unwinder != HD_UNWIND_FP)
		hds_warn("libunwind.so.8 not found: stacks the CFI unwinder cannot follow use frame pointers", NULL);
	hds_process_identity();
	if (!hds.cfg.children)
		hds_strip_from_ld_preload();
	hds_python_init();
	if (hds_python_enabled() && !getenv("HEAPDELTA_DEPTH"))
		hds.cfg.depth = 96;   /* the eval loops' callers too: Python frames must not be cut */
	hds_snapshot_new_run();
	final = HDS_ACTIVE;
out:
	atomic_store_release(&hds.state, final);
	/* ACTIVE is for good: from here sampled mode's fast paths need only
	 * this flag (internal.h's hds_sampled_fast) */
	if (final == HDS_ACTIVE && hds.cfg.sample_bytes && !hds.foreign_malloc)
		atomic_store_release(&hds.sampled_glibc, 1);
	hds_busy = outer;
	errno = saved;
}

static void after_fork_child(void)
{
	hds.pid = getpid();
	hds_threads_after_fork();
	hds_total_fork_child();   /* after the counters' cut updates are evened out */
	hds_triggers_after_fork();
}

__attribute__((constructor)) static void hds_constructor(void)
{
	hds_init_core();
	if (atomic_load_acquire(&hds.state) != HDS_ACTIVE)
		return;
	int outer = hds_busy;
	hds_busy = 1;
	pthread_atfork(NULL, NULL, after_fork_child);
	hds_busy = outer;
	hds_triggers_start();
}

__attribute__((destructor)) static void hds_destructor(void)
{
	if (atomic_load_acquire(&hds.state) == HDS_ACTIVE)
		hds_snapshot_at_exit(0);
}
