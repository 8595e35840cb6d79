/*
 * os.c - the small operating-system helpers every part of the shim uses:
 * memory that never goes through malloc, residency, one-line warnings
 * without stdio, clocks, and the peak of live bytes.
 *
 * All of them are async-signal-safe and none allocates, so they may be
 * called from any hook, the writer thread, or the exit path.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/*
 * Every mapping of the shim's is registered, so that the reachability scan
 * (reach.c) can leave the shim's own memory out of its roots: the large
 * block table holds the address of every large block, the unwinder's
 * memory copies of registers.  A slot is claimed with a CAS on its start;
 * the scan reads the registry only while every other thread is stopped
 * outside the shim, so it never sees a half-made entry.
 */
#define REGISTRY 65536
static _Atomic uint64_t reg_lo[REGISTRY], reg_len[REGISTRY];
static _Atomic uint32_t reg_hint;
static _Atomic int reg_full;

static void reg_add(uint64_t lo, uint64_t len)
{
	uint32_t start = atomic_load_relaxed(&reg_hint);

	for (uint32_t k = 0; k < REGISTRY; k++) {
		uint32_t i = (start + k) % REGISTRY;
		uint64_t zero = 0;
		if (atomic_load_relaxed(&reg_lo[i]) == 0 && atomic_cas_acq_rel(&reg_lo[i], &zero, lo)) {
			atomic_store_release(&reg_len[i], len);
			atomic_store_relaxed(&reg_hint, i + 1);
			return;
		}
	}
	atomic_store_relaxed(&reg_full, 1);
}

void *hds_map(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	reg_add((uint64_t)p, size);
	return p;
}

void hds_unmap(void *p, size_t size)
{
	for (uint32_t i = 0; p && i < REGISTRY; i++)
		if (atomic_load_relaxed(&reg_lo[i]) == (uint64_t)p) {
			atomic_store_relaxed(&reg_len[i], 0);
			atomic_store_release(&reg_lo[i], 0);
			atomic_store_relaxed(&reg_hint, i);
			break;
		}
	munmap(p, size);
}

uint32_t hds_map_each(void (*fn)(void *ctx, uint64_t lo, uint64_t hi), void *ctx)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < REGISTRY; i++) {
		uint64_t lo = atomic_load_acquire(&reg_lo[i]), len = atomic_load_relaxed(&reg_len[i]);
		if (lo && len) {
			fn(ctx, lo, lo + len);
			n++;
		}
	}
	return atomic_load_relaxed(&reg_full) ? UINT32_MAX : n;
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

char *hds_put_dec(char *p, uint64_t v)
{
	char tmp[24];
	int n = 0;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10));
	while (n)
		*p++ = tmp[--n];
	*p = 0;
	return p;
}

/* Elements are read and written with memcpy: the callers' records (two
 * 64-bit words of their own struct types) may be sorted here without
 * breaking the aliasing rules. */
static inline uint64_t word(const unsigned char *v, size_t i, int k)
{
	uint64_t w;

	memcpy(&w, v + 16 * i + 8 * (size_t)k, 8);
	return w;
}

static inline int pair_less(const unsigned char *v, size_t i, size_t j)
{
	uint64_t a = word(v, i, 0), b = word(v, j, 0);

	return a < b || (a == b && word(v, i, 1) < word(v, j, 1));
}

static inline void pair_swap(unsigned char *v, size_t i, size_t j)
{
	unsigned char t[16];

	memcpy(t, v + 16 * i, 16);
	memcpy(v + 16 * i, v + 16 * j, 16);
	memcpy(v + 16 * j, t, 16);
}

static void pair_sift(unsigned char *v, size_t root, size_t n)
{
	for (;;) {
		size_t c = 2 * root + 1;
		if (c >= n)
			return;
		if (c + 1 < n && pair_less(v, c, c + 1))
			c++;
		if (!pair_less(v, root, c))
			return;
		pair_swap(v, root, c);
		root = c;
	}
}

void hds_sort_pairs(void *base, size_t n)
{
	unsigned char *v = base;

	for (size_t i = n / 2; i-- > 0;)
		pair_sift(v, i, n);
	for (size_t end = n; end-- > 1;) {
		pair_swap(v, 0, end);
		pair_sift(v, 0, end);
	}
}
