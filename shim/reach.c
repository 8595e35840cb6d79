/*
 * reach.c - at exit, which live blocks the program can still reach: the
 * classification of valgrind's memcheck (definitely lost, indirectly lost,
 * possibly lost, still reachable), for the exit snapshot's REACH section.
 *
 * Steps, in the thread that runs the exit snapshot:
 *  1. Before stopping anyone: where this thread's caller of exit() kept its
 *     stack and registers (libunwind, which may take the loader's lock),
 *     and the shim's own segments (dl_iterate_phdr, the same).
 *  2. Stop every other thread: a signal no thread blocks and the program
 *     does not handle, sent with tgkill; the handler saves the thread's
 *     registers and thread pointer and waits on a futex.  A thread caught
 *     in the shim's own code (half-way through a table or counter update)
 *     or in a stretch the shim marks (hds_tl_nopark) returns at once and
 *     is asked again a moment later, so every thread stops where the live
 *     tables and the counters agree.  A thread inside the allocator keeps
 *     its locks: nothing below calls malloc or the loader.  A thread that
 *     does not stop within a second (it blocks every usable signal, or is
 *     stopped itself) makes the whole classification give up: the others
 *     are let go and the snapshot says why.
 *  3. The live blocks, sorted by address, from the shim's tables (plus
 *     the block a stopped realloc holds out of them).
 *  4. Roots: every private writable mapping (/proc/self/maps) except the
 *     allocator's (brk heap, the arenas' heaps, blocks mmapped on their
 *     own, main_arena's state in libc's data: its bins and top point at
 *     chunk headers, interior pointers into the blocks before them), the
 *     shim's own, and the part of each stack below its thread's stack
 *     pointer; the stopped threads' registers, thread-local storage and
 *     dynamic TLS vectors.  A stack in glibc's cache of exited threads'
 *     stacks contributes its TLS area only.
 *  5. valgrind's marking: from the roots, a pointer to a block's first
 *     byte makes it reachable, one into its interior possibly lost (both
 *     are then scanned; a block found from a possibly-lost one is possibly
 *     lost at best); then each block never reached, in address order,
 *     leads a clique: every unreached block found from it is indirectly
 *     lost, the leader definitely lost.
 *  6. The exit snapshot is written while the threads are still stopped, so
 *     its counters and the classification describe the same blocks; then
 *     the threads go on (the process is exiting).
 *
 * Nothing here allocates through malloc: memory comes from hds_map.
 * x86-64 only for now (registers and TLS layout).
 */
#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

__thread int hds_tl_nopark __attribute__((tls_model("initial-exec")));
__thread void *hds_tl_inflight __attribute__((tls_model("initial-exec")));
__thread uint64_t hds_tl_inflight_entry __attribute__((tls_model("initial-exec")));

struct hds_reach hds_reach;

#if defined(__x86_64__)

#define MAX_THREADS   8192
#define STOP_LIMIT_NS UINT64_C(1000000000)
#define RED_ZONE      128
#define NREGS         17        /* general registers in gregs: r8..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip */
#define HEAP_MAX      (UINT64_C(64) << 20)   /* glibc's HEAP_MAX_SIZE on 64-bit: arenas' heaps are aligned to it */

enum { UNREACHED = 0, POSSIBLE = 1, REACHABLE = 2, INDIRECT = 3 };

struct parked {
	_Atomic int ready;
	int tid;
	uint64_t tp;
	uint64_t regs[NREGS];
	uint64_t inflight, inflight_entry;
};

static struct parked *parked;            /* MAX_THREADS, hds_map()ed */
static _Atomic uint32_t nparked;
static _Atomic uint32_t nleft;
static _Atomic int armed;
static _Atomic int go;                   /* futex word: 1 lets the stopped threads go */
static _Atomic int writer_tid;           /* the shim's writer thread: never stopped */

static long sys_futex(_Atomic int *w, int op, int v)
{
	return syscall(SYS_futex, (int *)w, op, v, NULL, NULL, 0);
}

static int my_tid(void)
{
	return (int)syscall(SYS_gettid);
}

static void park_handler(int sig, siginfo_t *si, void *ucv)
{
	(void)sig;
	if (si->si_code != SI_TKILL || si->si_pid != hds.pid || !atomic_load_acquire(&armed))
		return;
	int saved = errno;
	const ucontext_t *uc = ucv;
	uint64_t pc = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];

	if (hds_tl_nopark || hds_capture_in_shim(pc)) {
		errno = saved;
		return;   /* asked again in a moment */
	}
	uint32_t i = atomic_add_relaxed(&nparked, 1);
	if (i < MAX_THREADS) {
		struct parked *p = &parked[i];
		static const int order[NREGS] = { REG_R8, REG_R9, REG_R10, REG_R11, REG_R12, REG_R13, REG_R14,
			REG_R15, REG_RDI, REG_RSI, REG_RBP, REG_RBX, REG_RDX, REG_RAX, REG_RCX, REG_RSP, REG_RIP };
		p->tid = my_tid();
		p->tp = (uint64_t)__builtin_thread_pointer();
		for (int r = 0; r < NREGS; r++)
			p->regs[r] = (uint64_t)uc->uc_mcontext.gregs[order[r]];
		p->inflight = (uint64_t)hds_tl_inflight;
		p->inflight_entry = hds_tl_inflight_entry;
		atomic_store_release(&p->ready, 1);
	}
	while (!atomic_load_acquire(&go))
		sys_futex(&go, FUTEX_WAIT_PRIVATE, 0);
	atomic_add_relaxed(&nleft, 1);
	errno = saved;
}

/* ---- threads ------------------------------------------------------------ */

struct dirent64_ {
	uint64_t ino;
	int64_t off;
	unsigned short reclen;
	unsigned char type;
	char name[];
};

/* The thread ids of the process into tids[0..max); the count, or -1. */
static int list_threads(int *tids, int max)
{
	static char buf[8192];   /* the scan runs once per process: off the stack */
	int n = 0, fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	for (;;) {
		long got = syscall(SYS_getdents64, fd, buf, sizeof buf);
		if (got <= 0)
			break;
		for (long off = 0; off < got;) {
			const struct dirent64_ *d = (const struct dirent64_ *)(buf + off);
			int v = 0;
			const char *c = d->name;
			if (*c >= '0' && *c <= '9') {
				for (; *c >= '0' && *c <= '9'; c++)
					v = v * 10 + (*c - '0');
				if (n < max && v != atomic_load_relaxed(&writer_tid))
					tids[n++] = v;
			}
			off += d->reclen;
		}
	}
	close(fd);
	return n;
}

/* Read a whole small /proc file into buf (NUL-terminated); bytes, or -1. */
static long read_small(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	long n = 0;

	if (fd < 0)
		return -1;
	while ((size_t)n < cap - 1) {
		ssize_t r = read(fd, buf + n, cap - 1 - (size_t)n);
		if (r <= 0)
			break;
		n += r;
	}
	close(fd);
	buf[n] = 0;
	return n;
}

/* A thread's blocked signals (SigBlk in its status); -1 if unreadable. */
static int read_sigblk(int tid, uint64_t *mask)
{
	static char buf[4096];   /* as list_threads' */
	char path[64], *p = path;

	memcpy(p, "/proc/self/task/", 16);
	p = hds_put_dec(p + 16, (uint64_t)tid);
	memcpy(p, "/status", 8);
	if (read_small(path, buf, sizeof buf) < 0)
		return -1;
	const char *s = strstr(buf, "\nSigBlk:");
	if (!s)
		return -1;
	uint64_t m = 0;
	for (s += 8; *s == ' ' || *s == '\t'; s++)
		;
	for (; (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'); s++)
		m = m << 4 | (uint64_t)(*s <= '9' ? *s - '0' : *s - 'a' + 10);
	*mask = m;
	return 0;
}

/* The union of the signal masks the threads block.  A thread that blocks
 * every real-time signal is looked at again, up to 20 times a millisecond
 * apart, and what it unblocked meanwhile counts as unblocked: the shim's
 * own lock (total.c) blocks them all for microseconds. */
static uint64_t blocked_anywhere(const int *tids, int n)
{
	uint64_t all = 0, rt = 0;

	for (int s = SIGRTMIN; s <= SIGRTMAX; s++)
		rt |= UINT64_C(1) << (s - 1);
	for (int i = 0; i < n; i++) {
		uint64_t m, again;
		if (read_sigblk(tids[i], &m) < 0)
			continue;
		for (int k = 0; k < 20 && (m & rt) == rt; k++) {
			struct timespec ms = { 0, 1000000 };
			nanosleep(&ms, NULL);
			if (read_sigblk(tids[i], &again) < 0)
				break;
			m &= again;
		}
		all |= m;
	}
	return all;
}

/* A real-time signal no thread blocks, the program does not handle, and
 * the shim does not use; 0 when there is none. */
static int pick_signal(uint64_t blocked, struct sigaction *old)
{
	for (int s = SIGRTMAX; s >= SIGRTMIN; s--) {
		if (s == hds.cfg.signo || (blocked >> (s - 1) & 1))
			continue;
		if (sigaction(s, NULL, old) == 0 && !(old->sa_flags & SA_SIGINFO) && old->sa_handler == SIG_DFL)
			return s;
	}
	return 0;
}

/* A thread that has exited but is still listed (its state Z or X). */
static int thread_gone(int tid)
{
	char path[64], buf[512], *p = path;

	memcpy(p, "/proc/self/task/", 16);
	p = hds_put_dec(p + 16, (uint64_t)tid);
	memcpy(p, "/stat", 6);
	if (read_small(path, buf, sizeof buf) < 0)
		return 1;
	const char *c = strrchr(buf, ')');
	return !c || c[1] != ' ' || c[2] == 'Z' || c[2] == 'X';
}

static int is_parked(int tid, uint32_t n)
{
	for (uint32_t i = 0; i < n && i < MAX_THREADS; i++)
		if (atomic_load_acquire(&parked[i].ready) && parked[i].tid == tid)
			return 1;
	return 0;
}

static void sleep_us(long us)
{
	struct timespec t = { 0, us * 1000 };
	nanosleep(&t, NULL);
}

/* Stop every other thread (see the top of the file).  Returns the number
 * stopped, or -1 with *why set (the threads are let go again). */
static int stop_world(int *tids, int sig, int *why)
{
	int self = my_tid();
	uint64_t start = hds_now_ns(CLOCK_MONOTONIC);

	for (int rounds = 0;; rounds++) {
		int n = list_threads(tids, MAX_THREADS), waiting = 0;
		if (n < 0 || n >= MAX_THREADS) {
			*why = HD_REACH_NOT_STOPPED;
			return -1;
		}
		uint32_t np = atomic_load_acquire(&nparked);
		for (int i = 0; i < n; i++) {
			if (tids[i] == self || is_parked(tids[i], np))
				continue;
			if (syscall(SYS_tgkill, hds.pid, tids[i], sig) == 0 && (rounds < 50 || !thread_gone(tids[i])))
				waiting++;
		}
		if (!waiting)
			return (int)atomic_load_acquire(&nparked);
		if (hds_now_ns(CLOCK_MONOTONIC) - start > STOP_LIMIT_NS) {
			*why = HD_REACH_NOT_STOPPED;
			return -1;
		}
		sleep_us(200);
	}
}

static void start_world(void)
{
	uint32_t n = atomic_load_acquire(&nparked);

	atomic_store_release(&armed, 0);
	atomic_store_release(&go, 1);
	sys_futex(&go, FUTEX_WAKE_PRIVATE, 0x7fffffff);
	/* Wait (a little) until they are out of the handler: nothing of ours
	 * is freed afterwards, but the signal is put back. */
	for (int i = 0; i < 5000 && atomic_load_acquire(&nleft) < (n < MAX_THREADS ? n : MAX_THREADS); i++)
		sleep_us(200);
}

/* ---- blocks ---------------------------------------------------------------- */

struct block { uint64_t addr, entry; };   /* sorted by hds_sort_pairs: by address */
_Static_assert(sizeof(struct block) == 16, "two words, as hds_sort_pairs sorts");

struct region;

struct scan {
	struct block *b;
	uint64_t n, cap;
	uint64_t lo, hi;            /* [first block, end of the last) */
	unsigned char *state;
	uint32_t *stack;            /* mark stack */
	uint64_t sp;                /* its depth */
	uint64_t root_bytes, block_bytes;
	struct region *regions;     /* index by region (find_block) */
	uint64_t rmask;
};

static void add_block(void *ctx, uintptr_t addr, uint64_t entry)
{
	struct scan *s = ctx;

	if (s->n < s->cap) {
		s->b[s->n].addr = addr;
		s->b[s->n].entry = entry;
		s->n++;
	}
}

static void count_block(void *ctx, uintptr_t addr, uint64_t entry)
{
	(void)addr;
	(void)entry;
	(*(uint64_t *)ctx)++;
}

/* b[0..k) and b[k..n) are sorted: merge them, with room for b[k..n) in tmp. */
static void merge_blocks(struct block *b, uint64_t k, uint64_t n, struct block *tmp)
{
	uint64_t m = n - k;

	memcpy(tmp, b + k, sizeof *b * m);
	uint64_t i = k, j = m, out = n;
	while (j > 0) {
		if (i > 0 && b[i - 1].addr > tmp[j - 1].addr)
			b[--out] = b[--i];
		else
			b[--out] = tmp[--j];
	}
}

static inline uint64_t block_end(const struct block *b)
{
	return b->addr + hds_entry_size(b->entry);
}

/*
 * Finding the block a word points into: an index by 64 KiB region of the
 * address space (a hash table: region -> the range of blocks that start in
 * or cover it), then a binary search in that range.  A plain binary search
 * over millions of blocks missed the cache at every step: 3.4 s for a GiB
 * of 64-byte blocks.
 */
#define REGION_SHIFT 16

struct region { uint64_t key; uint32_t first, end; };   /* key: region + 1; 0: empty */

static inline uint64_t region_slot(uint64_t key, uint64_t mask)
{
	return (key * UINT64_C(0x9e3779b97f4a7c15)) >> 20 & mask;
}

static void region_add(struct scan *s, uint64_t region, uint32_t i)
{
	uint64_t key = region + 1;

	for (uint64_t k = region_slot(key, s->rmask);; k = (k + 1) & s->rmask) {
		struct region *r = &s->regions[k];
		if (r->key == key) {
			if (i < r->first)
				r->first = i;
			if (i + 1 > r->end)
				r->end = i + 1;
			return;
		}
		if (!r->key) {
			r->key = key;
			r->first = i;
			r->end = i + 1;
			return;
		}
	}
}

/* Build the index; 0, or -1 when its memory cannot be had. */
static int index_blocks(struct scan *s)
{
	uint64_t entries = 0;

	for (uint64_t i = 0; i < s->n; i++) {
		uint64_t end = block_end(&s->b[i]);
		entries += ((end > s->b[i].addr ? end - 1 : end) >> REGION_SHIFT) - (s->b[i].addr >> REGION_SHIFT) + 1;
	}
	uint64_t cap = 1024;
	while (cap < 2 * entries)
		cap *= 2;
	s->regions = hds_map(sizeof *s->regions * cap);
	if (!s->regions)
		return -1;
	s->rmask = cap - 1;
	for (uint64_t i = 0; i < s->n; i++) {
		uint64_t end = block_end(&s->b[i]), last = (end > s->b[i].addr ? end - 1 : end) >> REGION_SHIFT;
		for (uint64_t r = s->b[i].addr >> REGION_SHIFT; r <= last; r++)
			region_add(s, r, (uint32_t)i);
	}
	return 0;
}

/* The block v points to or into; -1 when none.  *start: to its first byte. */
static inline int64_t find_block(const struct scan *s, uint64_t v, int *start)
{
	if (v < s->lo || v >= s->hi)
		return -1;
	uint64_t key = (v >> REGION_SHIFT) + 1;
	const struct region *r;
	for (uint64_t k = region_slot(key, s->rmask);; k = (k + 1) & s->rmask) {
		r = &s->regions[k];
		if (r->key == key)
			break;
		if (!r->key)
			return -1;
	}
	uint64_t l = r->first, h = r->end;   /* last block of the range with addr <= v */
	if (s->b[l].addr > v)
		return -1;
	while (h - l > 1) {
		uint64_t m = (l + h) / 2;
		if (s->b[m].addr <= v)
			l = m;
		else
			h = m;
	}
	const struct block *b = &s->b[l];
	if (v == b->addr) {
		*start = 1;
		return (int64_t)l;
	}
	if (v < block_end(b)) {
		*start = 0;
		return (int64_t)l;
	}
	return -1;
}

/*
 * valgrind's heuristics for a pointer 8 bytes into a block, which memcheck
 * applies by default (--leak-check-heuristics=all) and then counts the
 * block as still reachable: "length64", a block that begins with its own
 * length less those 8 bytes (sqlite3's allocator hands out such blocks);
 * "newarray", a block of operator new[] that begins with its element count
 * (the array cookie of C++ classes with destructors).  Its other two,
 * "stdstring" (the old, reference-counted std::string) and "multiple
 * inheritance" (vtable pointers at both places), are not applied.
 */
static inline int heuristic(const struct block *b)
{
	uint64_t size = hds_entry_size(b->entry), first;

	if (size < 16)
		return 0;
	first = *(const uint64_t *)b->addr;
	if (first == size - 8)
		return 1;
	return hds_entry_kind(b->entry) == HDS_KIND_NEW_ARRAY && first && (size - 8) % first == 0;
}

/* A word found while marking from the roots (definite: from a root or a
 * reachable block) - valgrind's lc_push_without_clique_if_a_chunk_ptr. */
static inline void mark_word(struct scan *s, uint64_t v, int definite)
{
	int start;
	int64_t j = find_block(s, v, &start);

	if (j < 0 || s->state[j] == REACHABLE)
		return;
	if (!start && definite && v == s->b[j].addr + 8)
		start = heuristic(&s->b[j]);
	if (start && definite) {
		s->state[j] = REACHABLE;
		s->stack[s->sp++] = (uint32_t)j;
	} else if (s->state[j] == UNREACHED) {
		s->state[j] = POSSIBLE;
		s->stack[s->sp++] = (uint32_t)j;
	}
}

/* A word found while walking a clique from its leader. */
static inline void clique_word(struct scan *s, uint64_t v, uint64_t leader)
{
	int start;
	int64_t j = find_block(s, v, &start);

	if (j < 0 || (uint64_t)j == leader || s->state[j] != UNREACHED)
		return;
	s->state[j] = INDIRECT;
	s->stack[s->sp++] = (uint32_t)j;
}

static void scan_range(struct scan *s, uint64_t lo, uint64_t hi, int definite)
{
	lo = (lo + 7) & ~UINT64_C(7);
	for (uint64_t a = lo; a + 8 <= hi; a += 8)
		mark_word(s, *(const uint64_t *)a, definite);
}

static void drain(struct scan *s)
{
	while (s->sp) {
		uint32_t j = s->stack[--s->sp];
		const struct block *b = &s->b[j];
		s->block_bytes += hds_entry_size(b->entry);
		scan_range(s, b->addr, block_end(b), s->state[j] == REACHABLE);
	}
}

static void cliques(struct scan *s)
{
	for (uint64_t i = 0; i < s->n; i++) {
		if (s->state[i] != UNREACHED)
			continue;
		s->stack[s->sp++] = (uint32_t)i;
		while (s->sp) {
			uint32_t j = s->stack[--s->sp];
			const struct block *b = &s->b[j];
			uint64_t lo = (b->addr + 7) & ~UINT64_C(7), hi = block_end(b);
			s->block_bytes += hds_entry_size(b->entry);
			for (uint64_t a = lo; a + 8 <= hi; a += 8)
				clique_word(s, *(const uint64_t *)a, i);
		}
	}
}

/* ---- the address space ------------------------------------------------------- */

struct mapping { uint64_t lo, hi; unsigned char r, w, shared, heap, libc, stack; };

struct space {
	struct mapping *m;
	uint32_t n, cap;
	struct { uint64_t lo, hi; } *ex;    /* excluded ranges */
	uint32_t nex, capex;
	char *text;                         /* /proc/self/maps, kept mapped while the
					       scan runs: unmapping it would change
					       the mappings it describes */
	size_t text_cap;
};

static void exclude(struct space *sp, uint64_t lo, uint64_t hi)
{
	if (lo < hi && sp->nex < sp->capex) {
		sp->ex[sp->nex].lo = lo;
		sp->ex[sp->nex].hi = hi;
		sp->nex++;
	}
}

static void exclude_cb(void *ctx, uint64_t lo, uint64_t hi)
{
	exclude(ctx, lo, hi);
}

static uint64_t hex(const char **p)
{
	uint64_t v = 0;

	for (;; (*p)++) {
		char c = **p;
		if (c >= '0' && c <= '9')
			v = v << 4 | (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v << 4 | (uint64_t)(c - 'a' + 10);
		else
			return v;
	}
}

/* /proc/self/maps into sp->m. */
static int read_maps(struct space *sp)
{
	size_t cap = 1 << 20;
	char *buf;
	long n;

	for (;;) {
		if (!(buf = hds_map(cap)))
			return -1;
		n = read_small("/proc/self/maps", buf, cap);
		if (n < 0) {
			hds_unmap(buf, cap);
			return -1;
		}
		if ((size_t)n < cap - 1)
			break;
		hds_unmap(buf, cap);
		cap *= 4;
	}
	sp->text = buf;
	sp->text_cap = cap;
	sp->n = 0;
	for (const char *p = buf; *p && sp->n < sp->cap;) {
		struct mapping *m = &sp->m[sp->n];
		memset(m, 0, sizeof *m);
		m->lo = hex(&p);
		p++;
		m->hi = hex(&p);
		p++;
		m->r = p[0] == 'r';
		m->w = p[1] == 'w';
		m->shared = p[3] == 's';
		const char *eol = strchr(p, '\n');
		if (!eol)
			eol = p + strlen(p);
		const char *path = memchr(p, '/', (size_t)(eol - p));
		if (!path)
			path = memchr(p, '[', (size_t)(eol - p));
		if (path) {
			size_t len = (size_t)(eol - path);
			m->heap = len == 6 && !memcmp(path, "[heap]", 6);
			m->stack = len == 7 && !memcmp(path, "[stack]", 7);
			for (const char *c = path; c + 9 <= eol; c++)
				if (!memcmp(c, "libc.so.", 8) || !memcmp(c, "libc-2.", 7))
					m->libc = 1;
		}
		sp->n++;
		p = *eol ? eol + 1 : eol;
	}
	return 0;
}

static const struct mapping *mapping_of(const struct space *sp, uint64_t a)
{
	for (uint32_t i = 0; i < sp->n; i++)
		if (a >= sp->m[i].lo && a < sp->m[i].hi)
			return &sp->m[i];
	return NULL;
}

static int readable(const struct space *sp, uint64_t a, uint64_t len)
{
	const struct mapping *m = mapping_of(sp, a);

	return m && m->r && a + len <= m->hi && a + len >= a;
}

/*
 * glibc's main_arena in libc's data (glibc 2.27 and later, x86-64 layout:
 * fastbins at 16, top at 96, bins at 112, next at 2160, system_mem at
 * 2184, max_system_mem at 2192, 2200 bytes).  An empty bin points at
 * itself (fd = bk = the bin's address - 16), which finds the bins; the
 * arena is the candidate whose `next` list (through every arena) comes
 * back to it, with many of its bins empty.  0 when not found.
 */
#define ARENA_TOP   96
#define ARENA_BINS  112
#define ARENA_NEXT  2160
#define ARENA_SYS   2184
#define ARENA_MAX   2192
#define ARENA_SIZE  2200

static int arena_ok(const struct space *sp, uint64_t m)
{
	const uint64_t *w = (const uint64_t *)m;
	int empty = 0;

	/* A thread stopped inside malloc may hold the arena half-way through
	 * an update (a bin's fd moved, not yet its bk; system_mem raised, not
	 * yet max_system_mem): ask only what holds throughout. */
	if (w[ARENA_SYS / 8] == 0 || (w[ARENA_TOP / 8] & 15))
		return 0;
	for (int i = 0; i < 127; i++) {
		uint64_t bin = m + ARENA_BINS + 16 * (uint64_t)i;
		empty += w[(ARENA_BINS + 16 * i) / 8] == bin - 16 && w[(ARENA_BINS + 16 * i) / 8 + 1] == bin - 16;
	}
	if (empty < 16)
		return 0;
	uint64_t a = w[ARENA_NEXT / 8];
	for (int hops = 0; hops < 1024; hops++) {
		if (a == m)
			return 1;
		if (!readable(sp, a, ARENA_SIZE))
			return 0;
		a = ((const uint64_t *)a)[ARENA_NEXT / 8];
	}
	return 0;
}

static uint64_t find_main_arena(const struct space *sp)
{
	for (uint32_t i = 0; i < sp->n; i++) {
		const struct mapping *mp = &sp->m[i];
		if (!mp->libc || !mp->r || !mp->w)
			continue;
		for (uint64_t a = mp->lo + 16; a + 16 <= mp->hi; a += 8) {
			const uint64_t *w = (const uint64_t *)a;
			if (w[0] != a - 16 || w[1] != a - 16)
				continue;
			for (int k = 0; k < 127; k++) {
				uint64_t m = a - ARENA_BINS - 16 * (uint64_t)k;
				if (m < mp->lo)
					break;
				if (m + ARENA_SIZE <= mp->hi && arena_ok(sp, m))
					return m;
			}
		}
	}
	return 0;
}

/* An arena's heap (glibc's non-main arenas): aligned to HEAP_MAX, starting
 * with heap_info { ar_ptr, prev, size, mprotect_size, ... }: the first heap
 * of an arena holds its malloc_state right after; later ones point back. */
static uint64_t arena_heap_size(const struct space *sp, const struct mapping *m)
{
	if (m->lo % HEAP_MAX || m->hi - m->lo < 64)
		return 0;
	const uint64_t *w = (const uint64_t *)m->lo;
	uint64_t ar = w[0], prev = w[1], size = w[2];
	if (size == 0 || size > HEAP_MAX || m->lo + size > m->hi)
		return 0;
	if (ar - m->lo >= 32 && ar - m->lo <= 64 && prev == 0)
		return size;
	if (prev && prev % HEAP_MAX == 0 && readable(sp, ar, ARENA_SIZE))
		return size;
	return 0;
}

/* ---- roots ---------------------------------------------------------------- */

struct exit_frame { int found; uint64_t sp; uint64_t regs[8]; int nregs; };

/*
 * Scan the pages of [lo, hi) that hold something: /proc/self/pagemap says
 * which are present or swapped out.  The others were never written (or
 * hold a file's contents, read but not changed): no pointer to a block can
 * be there, and reading them would map the zero page under every page of
 * a large reservation (minutes for a terabyte).
 */
static int pagemap_fd = -1;

static void scan_present(struct scan *s, uint64_t lo, uint64_t hi)
{
	static uint64_t ent[512];   /* as list_threads' */

	if (pagemap_fd < 0) {
		s->root_bytes += hi - lo;
		scan_range(s, lo, hi, 1);
		return;
	}
	while (lo < hi) {
		uint64_t page = lo >> 12, want = ((hi - 1) >> 12) - page + 1;
		if (want > 512)
			want = 512;
		ssize_t got = pread(pagemap_fd, ent, want * 8, (off_t)(page * 8));
		if (got < 8) {
			s->root_bytes += hi - lo;
			scan_range(s, lo, hi, 1);
			return;
		}
		for (uint64_t i = 0; i < (uint64_t)got / 8; i++) {
			uint64_t a = (page + i) << 12, b = a + 4096;
			if (a < lo)
				a = lo;
			if (b > hi)
				b = hi;
			if (ent[i] >> 62) {   /* bit 63 present, bit 62 swapped */
				s->root_bytes += b - a;
				scan_range(s, a, b, 1);
			}
			lo = b;
		}
	}
}

/* Scan [lo, hi) minus the excluded ranges. */
static void scan_root(struct scan *s, const struct space *sp, uint64_t lo, uint64_t hi)
{
	while (lo < hi) {
		uint64_t cut = hi;
		int skipped = 0;
		for (uint32_t e = 0; e < sp->nex; e++) {
			if (sp->ex[e].lo <= lo && sp->ex[e].hi > lo) {
				lo = sp->ex[e].hi;
				skipped = 1;
				break;
			}
			if (sp->ex[e].lo > lo && sp->ex[e].lo < cut)
				cut = sp->ex[e].lo;
		}
		if (skipped)
			continue;
		scan_present(s, lo, cut);
		lo = cut;
	}
}

static uint64_t tcb_size_guess = 4096;   /* struct pthread and the TCB above the thread pointer */
static size_t tls_static_size;

/* A thread's TLS: the static blocks below its thread pointer, its TCB
 * above, and its dynamic TLS vector's entries. */
static void scan_tls(struct scan *s, const struct space *sp, uint64_t tp)
{
	const struct mapping *m = mapping_of(sp, tp);

	if (!m || !m->r)
		return;
	uint64_t lo = tp > tls_static_size ? tp - tls_static_size : 0, hi = tp + tcb_size_guess;
	if (lo < m->lo)
		lo = m->lo;
	if (hi > m->hi)
		hi = m->hi;
	s->root_bytes += hi - lo;
	scan_range(s, lo, hi, 1);
	/* tcbhead_t: tcb, dtv, self; dtv[-1].counter is the vector's length,
	 * each entry two words (the block, the pointer to free). */
	uint64_t dtv = ((const uint64_t *)tp)[1];
	if (!readable(sp, dtv - 16, 16))
		return;
	uint64_t len = ((const uint64_t *)dtv)[-2];
	if (len > 65536 || !readable(sp, dtv - 16, 16 * (len + 2)))
		return;
	s->root_bytes += 16 * (len + 2);
	scan_range(s, dtv - 16, dtv + 16 * (len + 1), 1);
}

/* A glibc thread stack whose thread has exited (kept in glibc's cache):
 * its TCB sits at the top with tcb and self pointing at itself. */
static int dead_stack_tp(const struct mapping *m, uint64_t self_tp, uint32_t np, uint64_t *tp_out)
{
	if (m->hi - m->lo < tcb_size_guess + 4096)
		return 0;
	uint64_t first = (m->hi - tcb_size_guess) & ~UINT64_C(63);
	for (uint64_t tp = first; tp + 4096 > first; tp -= 64) {
		const uint64_t *w = (const uint64_t *)tp;
		if (w[0] != tp || w[2] != tp)
			continue;
		if (tp == self_tp)
			return 0;
		for (uint32_t i = 0; i < np; i++)
			if (parked[i].tp == tp)
				return 0;   /* a live thread's */
		*tp_out = tp;
		return 1;
	}
	return 0;
}

static void scan_roots(struct scan *s, struct space *sp, const struct exit_frame *ef, uint64_t self_sp,
		       uint64_t self_tp, uint32_t np)
{
	for (uint32_t i = 0; i < sp->n; i++) {
		const struct mapping *m = &sp->m[i];
		if (!m->r || !m->w || m->shared || m->heap)
			continue;
		uint64_t lo = m->lo, hi = m->hi, size, tp;
		if ((size = arena_heap_size(sp, m))) {
			lo += size;   /* the heap's used part is the allocator's */
			if (lo >= hi)
				continue;
		}
		/* A stack of a thread: from its stack pointer up. */
		int is_thread_stack = 0;
		uint64_t from = lo;
		for (uint32_t t = 0; t < np; t++) {
			uint64_t tsp = parked[t].regs[15];
			if (tsp >= m->lo && tsp < m->hi) {
				is_thread_stack = 1;
				from = tsp - RED_ZONE > m->lo ? tsp - RED_ZONE : m->lo;
			}
		}
		uint64_t mine = ef->found ? ef->sp : self_sp;
		if (self_sp >= m->lo && self_sp < m->hi) {
			is_thread_stack = 1;
			from = mine >= m->lo && mine < m->hi ? mine : self_sp;
		}
		if (is_thread_stack) {
			scan_root(s, sp, from, hi);
			continue;
		}
		if (m->stack)
			continue;   /* the main thread's stack, when main is not among them (cannot happen) */
		if (dead_stack_tp(m, self_tp, np, &tp)) {
			uint64_t l = tp > tls_static_size ? tp - tls_static_size : m->lo;
			scan_root(s, sp, l < m->lo ? m->lo : l, hi);
			continue;
		}
		scan_root(s, sp, lo, hi);
	}
	for (uint32_t t = 0; t < np; t++) {
		for (int r = 0; r < NREGS; r++)
			mark_word(s, parked[t].regs[r], 1);
		s->root_bytes += 8 * NREGS;
		scan_tls(s, sp, parked[t].tp);
		if (parked[t].inflight)
			mark_word(s, parked[t].inflight, 1);
	}
	for (int r = 0; r < ef->nregs; r++)
		mark_word(s, ef->regs[r], 1);
	scan_tls(s, sp, self_tp);
	/* A stack the program allocated itself (pthread_attr_setstack, a
	 * coroutine running now) lies in a block, inside the heap the scan
	 * leaves out: scan it from the stack pointer up. */
	for (uint32_t t = 0; t <= np; t++) {
		uint64_t tsp = t < np ? parked[t].regs[15] - RED_ZONE : (ef->found ? ef->sp : self_sp);
		int start;
		int64_t j = find_block(s, tsp, &start);
		if (j >= 0) {
			s->root_bytes += block_end(&s->b[j]) - tsp;
			scan_range(s, tsp, block_end(&s->b[j]), 1);
		}
	}
	drain(s);
}

/* ---- the shim's own segments ------------------------------------------------ */

static uint64_t own_base;   /* the shim's load address */

static int own_segments(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct space *sp = arg;
	(void)size;

	if (info->dlpi_addr != own_base)
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uint64_t lo = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type == PT_LOAD)
			exclude(sp, lo & ~UINT64_C(0xfff), (lo + ph->p_memsz + 0xfff) & ~UINT64_C(0xfff));
	}
	return 1;
}

/* ---- the whole classification --------------------------------------------------- */

static void tally(const struct scan *s, uint64_t *kinds, uint32_t nstacks)
{
	for (uint64_t i = 0; i < s->n; i++) {
		uint32_t id = hds_entry_stack(s->b[i].entry);
		int k;
		switch (s->state[i]) {
		case REACHABLE: k = HD_REACH_REACHABLE; break;
		case POSSIBLE:  k = HD_REACH_POSSIBLE; break;
		case INDIRECT:  k = HD_REACH_INDIRECT; break;
		default:        k = HD_REACH_DEFINITE; break;
		}
		if (id < nstacks) {
			kinds[(uint64_t)id * 8 + (uint64_t)k * 2] += hds_entry_size(s->b[i].entry);
			kinds[(uint64_t)id * 8 + (uint64_t)k * 2 + 1] += 1;
		}
	}
}

/* Measure a thread's TCB from the writer thread's stack: pthread puts it
 * at the top of the stack it maps. */
void hds_reach_note_thread(void)
{
	pthread_attr_t attr;
	void *addr;
	size_t size;

	atomic_store_relaxed(&writer_tid, my_tid());
	if (pthread_getattr_np(pthread_self(), &attr) != 0)
		return;
	if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
		uint64_t top = (uint64_t)addr + size, tp = (uint64_t)__builtin_thread_pointer();
		if (top > tp && top - tp < 65536)
			tcb_size_guess = top - tp;
	}
	pthread_attr_destroy(&attr);
}

int hds_reach_exit(void)
{
	extern void _dl_get_tls_static_info(size_t *, size_t *);
	uint64_t t0 = hds_now_ns(CLOCK_MONOTONIC);
	struct exit_frame ef = { 0 };
	struct space sp = { 0 };
	struct scan s = { 0 };
	struct sigaction act, old;
	int why = HD_REACH_DONE, sig = 0, np = -1;
	int *tids = NULL;

	memset(&hds_reach, 0, sizeof hds_reach);
	if (!hds.cfg.reach)
		why = HD_REACH_OFF;
	else if (hds.foreign_malloc)
		why = HD_REACH_FOREIGN_MALLOC;
	else if (hds.cfg.sample_bytes)
		why = HD_REACH_SAMPLED;
	if (why) {
		hds_reach.status = why;
		return -1;
	}

	/* 1. What needs the loader, while nobody is stopped. */
	size_t align;
	_dl_get_tls_static_info(&tls_static_size, &align);
	Dl_info dl;
	void *sym_exit = dlsym(RTLD_DEFAULT, "exit");
	const ElfW(Sym) *es = NULL;
	if (sym_exit && dladdr1(sym_exit, &dl, (void **)&es, RTLD_DL_SYMENT) && es) {
		uint64_t lo = (uint64_t)(uintptr_t)sym_exit;
		int n = hds_capture_caller_of(lo, lo + es->st_size, &ef.sp, ef.regs, 8);
		if (n >= 0) {
			ef.found = 1;
			ef.nregs = n;
		}
	}
	sp.cap = 65536;
	sp.capex = 65536 + 4096;
	sp.m = hds_map(sizeof *sp.m * sp.cap);
	sp.ex = hds_map(sizeof *sp.ex * sp.capex);
	parked = hds_map(sizeof *parked * MAX_THREADS);
	tids = hds_map(sizeof *tids * MAX_THREADS);
	if (!sp.m || !sp.ex || !parked || !tids) {
		hds_reach.status = HD_REACH_NO_MEMORY;
		return -1;
	}
	if (dladdr((void *)own_segments, &dl))
		own_base = (uint64_t)(uintptr_t)dl.dli_fbase;
	dl_iterate_phdr(own_segments, &sp);

	/* 2. Stop the others. */
	int n0 = list_threads(tids, MAX_THREADS);
	uint64_t blocked = n0 > 0 ? blocked_anywhere(tids, n0) : 0;
	if (n0 > 1 && !(sig = pick_signal(blocked, &old))) {
		hds_reach.status = HD_REACH_NOT_STOPPED;
		return -1;
	}
	if (sig) {
		memset(&act, 0, sizeof act);
		act.sa_sigaction = park_handler;
		act.sa_flags = SA_SIGINFO | SA_RESTART;
		sigfillset(&act.sa_mask);
		sigaction(sig, &act, NULL);
		atomic_store_release(&armed, 1);
		np = stop_world(tids, sig, &why);
	} else {
		np = 0;
	}
	if (np < 0)
		goto resume;
	hds_reach.threads = (uint32_t)np;

	/* 3. The blocks. */
	uint64_t nsmall = 0, nlarge = 0, nin = 0;
	hds_live_each_small(count_block, &nsmall);
	hds_large_each(count_block, &nlarge);
	for (int i = 0; i < np; i++)
		nin += parked[i].inflight != 0;
	s.cap = nsmall + nlarge + nin + 1;
	s.b = hds_map(sizeof *s.b * s.cap);
	struct block *tmp = hds_map(sizeof *tmp * (nlarge + nin + 1));   /* room to merge the unsorted ones */
	s.state = hds_map(s.cap);
	s.stack = hds_map(sizeof *s.stack * (s.cap * 2 + 1));
	if (!s.b || !tmp || !s.state || !s.stack || read_maps(&sp) < 0) {
		why = HD_REACH_NO_MEMORY;
		goto resume;
	}
	hds_live_each_small(add_block, &s);
	uint64_t k = s.n;
	hds_large_each(add_block, &s);
	for (int i = 0; i < np; i++)
		if (parked[i].inflight)
			add_block(&s, (uintptr_t)parked[i].inflight, parked[i].inflight_entry);
	hds_sort_pairs(s.b + k, s.n - k);   /* by address */
	merge_blocks(s.b, k, s.n, tmp);
	if (s.n) {
		s.lo = s.b[0].addr;
		s.hi = block_end(&s.b[s.n - 1]) + 1;
		for (uint64_t i = 0; i < s.n; i++)
			if (block_end(&s.b[i]) + 1 > s.hi)
				s.hi = block_end(&s.b[i]) + 1;
	}

	if (index_blocks(&s) < 0) {
		why = HD_REACH_NO_MEMORY;
		goto resume;
	}

	/* 4. What is not a root. */
	uint64_t arena = find_main_arena(&sp);
	if (!arena) {
		why = HD_REACH_NO_ARENA;
		goto resume;
	}
	exclude(&sp, arena, arena + ARENA_SIZE);
	hds_map_each(exclude_cb, &sp);
	for (uint64_t i = 0; i < s.n; i++) {
		const uint64_t *hdr = (const uint64_t *)s.b[i].addr - 1;
		if (hdr[0] & 2) {   /* glibc's IS_MMAPPED: the chunk is a mapping of its own */
			uint64_t chunk = s.b[i].addr - 16;
			exclude(&sp, chunk - hdr[-1], chunk + (hdr[0] & ~UINT64_C(7)));
		}
	}

	/* 5. Mark. */
	pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	uint64_t self_sp = (uint64_t)(uintptr_t)__builtin_frame_address(0);
	scan_roots(&s, &sp, &ef, self_sp, (uint64_t)__builtin_thread_pointer(), (uint32_t)np);
	cliques(&s);
	if (pagemap_fd >= 0)
		close(pagemap_fd);

	uint32_t nstacks = hds_stacks_count();
	hds_reach.kinds = hds_map(sizeof *hds_reach.kinds * 8 * (nstacks ? nstacks : 1));
	if (!hds_reach.kinds) {
		why = HD_REACH_NO_MEMORY;
		goto resume;
	}
	hds_reach.nstacks = nstacks;
	tally(&s, hds_reach.kinds, nstacks);
	hds_reach.root_bytes = s.root_bytes;
	hds_reach.block_bytes = s.block_bytes;
	hds_reach.ns = hds_now_ns(CLOCK_MONOTONIC) - t0;
	hds_reach.status = HD_REACH_DONE;
	hds_reach.sig = sig;
	hds_reach.old = old;
	return 0;   /* the caller writes the snapshot, then hds_reach_resume() */

resume:
	hds_reach.status = why;
	hds_reach.kinds = NULL;
	if (sig) {
		start_world();
		struct sigaction ign = { 0 };
		ign.sa_handler = SIG_IGN;
		sigaction(sig, &ign, NULL);   /* drops a signal still pending */
		sigaction(sig, &old, NULL);
	}
	return -1;
}

void hds_reach_resume(void)
{
	if (!hds_reach.sig)
		return;
	start_world();
	struct sigaction ign = { 0 };
	ign.sa_handler = SIG_IGN;
	sigaction(hds_reach.sig, &ign, NULL);
	sigaction(hds_reach.sig, &hds_reach.old, NULL);
	hds_reach.sig = 0;
}

#else   /* not x86-64 */

int hds_reach_exit(void)
{
	memset(&hds_reach, 0, sizeof hds_reach);
	hds_reach.status = hds.cfg.reach ? HD_REACH_UNSUPPORTED : HD_REACH_OFF;
	return -1;
}

void hds_reach_resume(void)
{
}

void hds_reach_note_thread(void)
{
}

#endif
