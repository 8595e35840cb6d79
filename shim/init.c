/*
 * init.c - start-up, configuration, fork and exit, and the small OS helpers
 * the rest of the shim uses.
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

void *hds_map(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

uint64_t hds_resident(const void *addr, uint64_t len)
{
	unsigned char vec[1024];
	const uint64_t page = 4096;
	const char *p = addr;
	uint64_t pages = (len + page - 1) / page, total = 0;

	if (!addr)
		return 0;
	for (uint64_t done = 0; done < pages;) {
		uint64_t n = pages - done < sizeof vec ? pages - done : sizeof vec;
		if (mincore((void *)(p + done * page), n * page, vec) < 0)
			break;
		for (uint64_t i = 0; i < n; i++)
			total += (vec[i] & 1) * page;
		done += n;
	}
	return total;
}

void hds_warn(const char *msg, const char *detail)
{
	char line[512];
	size_t n = 0;
	const char *parts[] = { "heapdelta: ", msg, detail ? ": " : "", detail ? detail : "", "\n" };

	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
		for (const char *c = parts[i]; *c && n < sizeof line - 1; c++)
			line[n++] = *c;
	if (line[n - 1] != '\n')
		line[n++] = '\n';
	ssize_t rc = write(STDERR_FILENO, line, n);
	(void)rc;
}

uint64_t hds_now_ns(int clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void hds_note_peak(int64_t live)
{
	uint64_t v = live > 0 ? (uint64_t)live : 0;
	uint64_t cur = atomic_load_relaxed(&hds.peak_bytes);

	while (v > cur && !atomic_compare_exchange_weak_explicit(&hds.peak_bytes, &cur, v,
			memory_order_relaxed, memory_order_relaxed))
		;
	cur = atomic_load_relaxed(&hds.peak_since_prev);
	while (v > cur && !atomic_compare_exchange_weak_explicit(&hds.peak_since_prev, &cur, v,
			memory_order_relaxed, memory_order_relaxed))
		;
}

/* ---- options --------------------------------------------------------- */

static int parse_uint(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (!s || !*s)
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

/* Seconds with an optional fraction ("5", "0.25"), without strtod's locale. */
static int parse_seconds(const char *s, uint64_t *ns)
{
	uint64_t whole = 0, frac = 0, scale = 1000000000u;
	const char *c = s;

	if (!s || !*s)
		return -1;
	for (; *c >= '0' && *c <= '9'; c++) {
		whole = whole * 10 + (uint64_t)(*c - '0');
		if (whole > 100000000)
			return -1;
	}
	if (*c == '.') {
		for (c++; *c >= '0' && *c <= '9'; c++) {
			if (scale > 1) {
				scale /= 10;
				frac += (uint64_t)(*c - '0') * scale;
			}
		}
	}
	if (*c || c == s)
		return -1;
	*ns = whole * 1000000000u + frac;
	return 0;
}

static int parse_signal(const char *s, int *signo)
{
	static const struct { const char *name; int no; } names[] = {
		{ "USR1", SIGUSR1 }, { "USR2", SIGUSR2 }, { "HUP", SIGHUP },
		{ "PROF", SIGPROF }, { "WINCH", SIGWINCH }, { "URG", SIGURG },
	};
	unsigned long v;

	if (parse_uint(s, 0, (unsigned long)SIGRTMAX, &v) == 0) {
		*signo = (int)v;
		return 0;
	}
	if (s && strncmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; s && i < sizeof names / sizeof names[0]; i++)
		if (strcmp(s, names[i].name) == 0) {
			*signo = names[i].no;
			return 0;
		}
	return -1;
}

static void config_load(struct hds_config *cfg)
{
	const char *v;
	unsigned long n;

	cfg->unwinder = HD_UNWIND_CFI;
	cfg->depth = 32;
	cfg->interval_ns = 0;
	cfg->signo = SIGUSR2;
	cfg->children = 1;
	cfg->max_stacks = 1u << 20;

	if ((v = getenv("HEAPDELTA_UNWIND")) && *v) {
		if (strcmp(v, "fp") == 0)
			cfg->unwinder = HD_UNWIND_FP;
		else if (strcmp(v, "libunwind") == 0)
			cfg->unwinder = HD_UNWIND_LIBUNWIND;
		else if (strcmp(v, "cfi") != 0)
			hds_warn("HEAPDELTA_UNWIND must be 'cfi', 'libunwind' or 'fp'; using cfi", v);
	}
	if ((v = getenv("HEAPDELTA_UNWIND_CHECK")) && *v)
		cfg->unwind_check = strcmp(v, "0") != 0;
	if ((v = getenv("HEAPDELTA_DEPTH")) && *v) {
		if (parse_uint(v, 1, HD_MAX_DEPTH, &n) == 0)
			cfg->depth = (int)n;
		else
			hds_warn("HEAPDELTA_DEPTH must be 1 to 256; using 32", v);
	}
	if ((v = getenv("HEAPDELTA_INTERVAL")) && *v) {
		if (parse_seconds(v, &cfg->interval_ns) < 0 || (cfg->interval_ns && cfg->interval_ns < 1000000)) {
			hds_warn("HEAPDELTA_INTERVAL must be seconds (at least 0.001, 0 for none); no periodic snapshots", v);
			cfg->interval_ns = 0;
		}
	}
	if ((v = getenv("HEAPDELTA_SIGNAL")) && *v) {
		if (parse_signal(v, &cfg->signo) < 0 || cfg->signo == SIGKILL || cfg->signo == SIGSTOP) {
			hds_warn("HEAPDELTA_SIGNAL must be a signal number or name, or 0; using SIGUSR2", v);
			cfg->signo = SIGUSR2;
		}
	}
	if ((v = getenv("HEAPDELTA_CHILDREN")) && *v)
		cfg->children = strcmp(v, "0") != 0;
	if ((v = getenv("HEAPDELTA_SAMPLE")) && *v) {
		if (parse_uint(v, 0, UINT64_C(1) << 40, &n) == 0)
			cfg->sample_bytes = n;
		else
			hds_warn("HEAPDELTA_SAMPLE must be a mean interval in bytes (0: every allocation); recording every allocation", v);
	}
	if ((v = getenv("HEAPDELTA_MAX_STACKS")) && *v) {
		if (parse_uint(v, 16, HDS_LIVE_MAX_STACK, &n) == 0)
			cfg->max_stacks = (uint32_t)n;
		else
			hds_warn("HEAPDELTA_MAX_STACKS must be 16 to 16777214; using 1048576", v);
	}

	v = getenv("HEAPDELTA_OUT");
	if (!v || !*v)
		v = ".";
	cfg->outdir[0] = 0;
	if (v[0] != '/') {
		if (!getcwd(cfg->outdir, sizeof cfg->outdir - 2))
			cfg->outdir[0] = 0;
		size_t l = strlen(cfg->outdir);
		if (l && cfg->outdir[l - 1] != '/')
			strcat(cfg->outdir, "/");
	}
	if (strlen(cfg->outdir) + strlen(v) + 1 > sizeof cfg->outdir) {
		hds_warn("HEAPDELTA_OUT is too long; using the current directory", NULL);
		v = ".";
	}
	strcat(cfg->outdir, v);
}

/* ---- process identity ------------------------------------------------ */

static void read_process_identity(void)
{
	ssize_t n = readlink("/proc/self/exe", hds.exe, sizeof hds.exe - 1);
	hds.exe[n > 0 ? n : 0] = 0;

	/* argv: /proc/self/cmdline, into our own memory. */
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	size_t cap = 1 << 20;
	char *buf = hds_map(cap);
	if (buf) {
		size_t len = 0;
		ssize_t r;
		while (len < cap && (r = read(fd, buf + len, cap - len)) > 0)
			len += (size_t)r;
		hds.cmdline = buf;
		hds.cmdline_len = len;
	}
	close(fd);
}

/* HEAPDELTA_CHILDREN=0: remove this library from LD_PRELOAD in place, so
 * programs this one execs run untraced.  setenv would allocate. */
static void strip_from_ld_preload(void)
{
	Dl_info info;
	extern char **environ;

	if (!dladdr((void *)strip_from_ld_preload, &info) || !info.dli_fname)
		return;
	const char *me = strrchr(info.dli_fname, '/');
	me = me ? me + 1 : info.dli_fname;
	for (char **e = environ; e && *e; e++) {
		if (strncmp(*e, "LD_PRELOAD=", 11) != 0)
			continue;
		char *s = *e + 11, *w = s;
		while (*s) {
			size_t len = strcspn(s, ": ");
			const char *base = memrchr(s, '/', len);
			base = base ? base + 1 : s;
			int mine = (size_t)(s + len - base) == strlen(me) && memcmp(base, me, strlen(me)) == 0;
			if (!mine) {
				if (w != *e + 11)
					*w++ = ':';
				memmove(w, s, len);
				w += len;
			}
			s += len;
			while (*s == ':' || *s == ' ')
				s++;
		}
		*w = 0;
	}
}

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
	RESOLVE(malloc, "GLIBC_2.2.5");
	RESOLVE(calloc, "GLIBC_2.2.5");
	RESOLVE(realloc, "GLIBC_2.2.5");
	RESOLVE(free, "GLIBC_2.2.5");
	RESOLVE(memalign, "GLIBC_2.2.5");
	RESOLVE(posix_memalign, "GLIBC_2.2.5");
	RESOLVE(aligned_alloc, "GLIBC_2.16");
	RESOLVE(valloc, "GLIBC_2.2.5");
	RESOLVE(pvalloc, "GLIBC_2.2.5");
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
	config_load(&hds.cfg);
	resolve_real();
	if (hds.foreign_malloc)
		hds_warn("malloc is not glibc's (another allocator is loaded); tracing it through its malloc", NULL);

	if (hds_stacks_init(hds.cfg.max_stacks) < 0 || hds_live_init(hds.foreign_malloc ? 3 : 5, hds.cfg.sample_bytes != 0) < 0 ||
	    hds_modules_init() < 0 || hds_threads_init(hds.cfg.max_stacks) < 0) {
		hds_warn("cannot map memory for the tables; not tracing", NULL);
		goto out;
	}
	if (hds_capture_init() < 0 && hds.cfg.unwinder != HD_UNWIND_FP)
		hds_warn("libunwind.so.8 not found: stacks the CFI unwinder cannot follow use frame pointers", NULL);
	read_process_identity();
	if (!hds.cfg.children)
		strip_from_ld_preload();
	final = HDS_ACTIVE;
out:
	atomic_store_release(&hds.state, final);
	hds_busy = outer;
	errno = saved;
}

static void after_fork_child(void)
{
	hds.pid = getpid();
	hds_threads_after_fork();
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
