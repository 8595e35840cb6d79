/*
 * capture.c - the current thread's call stack as return addresses.  The only
 * file that knows libunwind.
 *
 * libunwind is loaded with dlopen(RTLD_LOCAL) rather than linked: linking
 * would put its `backtrace` and `_Unwind_*` exports in the global scope,
 * where they could replace the program's own (C++ exceptions, glibc's
 * backtrace).  We call unw_backtrace(), its fast path (a per-thread cache of
 * frame rules keyed by return address), never the unw_step() loop, which
 * makes two sigprocmask calls per frame.
 *
 * Both unwinders run with hds_busy set by the caller: libunwind may call
 * malloc (its first call in a thread, .debug_frame loading), and those
 * allocations pass through unrecorded.
 *
 * The shim's own frames (this function, the recording function, the
 * interposed entry point) and libunwind's are cut from the front, so the
 * first frame returned is the return address into the allocation's caller.
 */
#include "internal.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <string.h>

#define SKIP_SLACK 8   /* room for our own frames at the top of the stack */

static int (*unw_backtrace_fn)(void **, int);

struct text_range { uintptr_t lo, hi; };
static struct text_range self_text, unwind_text;

static __thread uintptr_t tl_stack_hi __attribute__((tls_model("initial-exec")));

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
	q.base = (uintptr_t)dl.dli_fbase;
	/* dladdr gives the ELF header address; dl_iterate_phdr the load bias.
	 * For our own PIC library they are equal (first segment at vaddr 0). */
	dl_iterate_phdr(find_text, &q);
}

int hds_capture_init(void)
{
	text_of((const void *)hds_capture, &self_text);

	void *h = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return -1;
	void *sym = dlsym(h, "unw_backtrace");
	if (!sym)
		return -1;
	memcpy(&unw_backtrace_fn, &sym, sizeof sym);
	text_of(sym, &unwind_text);
	return 0;
}

static inline int in_range(const struct text_range *r, uintptr_t a)
{
	return a >= r->lo && a < r->hi;
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
	if (pthread_attr_getstack(&attr, &addr, &size) == 0)
		tl_stack_hi = (uintptr_t)addr + size;
	pthread_attr_destroy(&attr);
}

/* Walk the frame-pointer chain: exact only when every frame keeps one.
 * In code built without frame pointers rbp holds anything, so every frame
 * address is checked before it is read: it must lie between our own frame
 * (everything above the current stack pointer is mapped) and the top of the
 * thread's stack, and must grow.  The bottom of the stack as pthread
 * reports it is not a safe bound: the main thread's stack is mapped only as
 * far down as it has grown. */
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
		uintptr_t ret = fp[1];
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

int hds_capture(uintptr_t *out, int max, int *truncated)
{
	uintptr_t buf[HD_MAX_DEPTH + SKIP_SLACK + 1];
	int want = max + SKIP_SLACK + 1, n, skip = 0;

	if (hds.cfg.unwinder == HD_UNWIND_LIBUNWIND && unw_backtrace_fn)
		n = unw_backtrace_fn((void **)buf, want);
	else
		n = fp_walk(buf, want);
	while (skip < n && (in_range(&self_text, buf[skip]) || in_range(&unwind_text, buf[skip])))
		skip++;
	n -= skip;
	*truncated = n > max;
	if (n > max)
		n = max;
	memcpy(out, buf + skip, sizeof *out * (size_t)(n > 0 ? n : 0));
	return n > 0 ? n : 0;
}
