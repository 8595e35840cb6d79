/*
 * modules.c - the module map: which ELF file is mapped where, with its
 * build-id, so stacks can be symbolized offline.  Modules never leave the
 * map: one that is dlclosed is flagged unloaded and kept, so addresses
 * captured inside it still symbolize.
 *
 * Workload: refreshed when a newly interned stack holds an address the map
 * does not know (a library was loaded since), and before every snapshot.
 * Loads and unloads are noticed with the dlpi_adds/dlpi_subs counters that
 * dl_iterate_phdr passes: when they have not moved, a refresh stops after
 * one callback.  We never wrap dlopen (that changes the caller the loader
 * sees and breaks $ORIGIN and RUNPATH lookups); dlclose, which has no such
 * dependence, is wrapped so that an unload is noticed when it happens.
 *
 * Epochs: each module records the map epoch in which it was first seen and
 * the one from which it is gone.  Finding modules unloaded raises the
 * epoch (hds.map_epoch); a stack carries the epoch its frames were valid
 * in, so a reader can tell two modules mapped at one address apart.
 *
 * Concurrency: readers (hds_modules_contains, encode) walk entries
 * 0..count-1 without a lock; an entry is filled before count is raised
 * (release).  Writers serialize on `lock`.  A refresh from an allocation
 * hook only tries the lock: the thread that holds it may be inside
 * dl_iterate_phdr waiting for the loader, whose lock the hooking thread may
 * hold, so waiting there could deadlock.  The snapshot path, which holds
 * nothing the loader needs, waits.
 */
#include "internal.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#define MAX_MODULES  4096
#define MAX_SEGS     16
#define PATH_ARENA   (1u << 20)

struct hds_module {
	uintptr_t base;
	_Atomic uint32_t flags;          /* enum hd_module_flags */
	uint32_t build_id_len;
	unsigned char build_id[HD_MAX_BUILD_ID];
	uint32_t nseg;
	struct { uint64_t start, size, offset; uint32_t flags; } seg[MAX_SEGS];
	uint32_t path_off, path_len;
	uint64_t seen;                   /* generation of the last refresh that saw it */
	_Atomic uint32_t first_epoch;    /* map epoch when it was first seen */
	_Atomic uint32_t gone_epoch;     /* map epoch from which it is unloaded; HD_EPOCH_NONE */
};

static struct hds_module *mods;
static _Atomic uint32_t nmods;
static char *paths;
static uint32_t paths_used;
static atomic_flag lock = ATOMIC_FLAG_INIT;
static unsigned long long last_adds, last_subs;
static uint64_t generation;

int hds_modules_init(void)
{
	mods = hds_map(sizeof *mods * MAX_MODULES);
	paths = hds_map(PATH_ARENA);
	return mods && paths ? 0 : -1;
}

static void read_build_id(const struct dl_phdr_info *info, struct hds_module *m)
{
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_NOTE)
			continue;
		uint64_t align = ph->p_align == 8 ? 8 : 4;
		const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
		const unsigned char *end = p + ph->p_memsz;
		while (p + sizeof(ElfW(Nhdr)) <= end) {
			const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
			const unsigned char *name = p + sizeof *nh;
			const unsigned char *desc = name + ((nh->n_namesz + align - 1) & ~(align - 1));
			const unsigned char *next = desc + ((nh->n_descsz + align - 1) & ~(align - 1));
			if (next > end || next <= p)
				break;
			if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
			    memcmp(name, "GNU", 4) == 0 && nh->n_descsz <= HD_MAX_BUILD_ID) {
				memcpy(m->build_id, desc, nh->n_descsz);
				m->build_id_len = nh->n_descsz;
				return;
			}
			p = next;
		}
	}
}

static int same_module(const struct hds_module *m, uintptr_t base, const char *path, size_t len)
{
	return m->base == base && m->path_len == len && memcmp(paths + m->path_off, path, len) == 0;
}

struct refresh { int first; int force; };

static int ranges_overlap(const struct hds_module *a, const struct hds_module *b)
{
	for (uint32_t x = 0; x < a->nseg; x++)
		for (uint32_t y = 0; y < b->nseg; y++)
			if (a->seg[x].start < b->seg[y].start + b->seg[y].size &&
			    b->seg[y].start < a->seg[x].start + a->seg[x].size)
				return 1;
	return 0;
}

/* Was unloaded module i's place taken by another module after it went? */
static int displaced(uint32_t i, uint32_t n)
{
	const struct hds_module *m = &mods[i];

	if (!(atomic_load_relaxed(&m->flags) & HD_MOD_UNLOADED))
		return 0;
	uint32_t gone = atomic_load_relaxed(&m->gone_epoch);
	for (uint32_t j = 0; j < n; j++)
		if (j != i && atomic_load_relaxed(&mods[j].first_epoch) >= gone && ranges_overlap(m, &mods[j]))
			return 1;
	return 0;
}

static int refresh_one(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct refresh *r = arg;
	static char exe[4096];   /* under the map's lock; off the stack */
	const char *path = info->dlpi_name ? info->dlpi_name : "";
	uint32_t flags = 0;

	if (r->first) {
		r->first = 0;
		if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
			if (!r->force && info->dlpi_adds == last_adds && info->dlpi_subs == last_subs)
				return 1;   /* nothing loaded or unloaded since last time */
			last_adds = info->dlpi_adds;
			last_subs = info->dlpi_subs;
		}
		generation++;
		if (!*path) {
			ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
			exe[n > 0 ? n : 0] = 0;
			path = exe;
			flags |= HD_MOD_MAIN;
		}
	}
	if (strncmp(path, "linux-vdso", 10) == 0 || strncmp(path, "linux-gate", 10) == 0)
		flags |= HD_MOD_VDSO;

	size_t len = strlen(path);
	uint32_t n = atomic_load_relaxed(&nmods);
	for (uint32_t i = 0; i < n; i++) {
		if (same_module(&mods[i], info->dlpi_addr, path, len) && !displaced(i, n)) {
			/* Loaded again where it was: the same file, the same code
			 * (unless another module was mapped there meanwhile: then
			 * the epochs in between are that one's, and this load is a
			 * record of its own). */
			mods[i].seen = generation;
			atomic_store_relaxed(&mods[i].gone_epoch, HD_EPOCH_NONE);
			atomic_store_relaxed(&mods[i].flags, atomic_load_relaxed(&mods[i].flags) & ~HD_MOD_UNLOADED);
			return 0;
		}
	}
	if (n >= MAX_MODULES || paths_used + len > PATH_ARENA)
		return 0;

	struct hds_module *m = &mods[n];
	m->base = info->dlpi_addr;
	m->seen = generation;
	atomic_store_relaxed(&m->first_epoch, atomic_load_relaxed(&hds.map_epoch));
	atomic_store_relaxed(&m->gone_epoch, HD_EPOCH_NONE);
	atomic_store_relaxed(&m->flags, flags);
	m->nseg = 0;
	for (int i = 0; i < info->dlpi_phnum && m->nseg < MAX_SEGS; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		m->seg[m->nseg].start = info->dlpi_addr + ph->p_vaddr;
		m->seg[m->nseg].size = ph->p_memsz;
		m->seg[m->nseg].offset = ph->p_offset;
		m->seg[m->nseg].flags = ph->p_flags;
		m->nseg++;
	}
	read_build_id(info, m);
	memcpy(paths + paths_used, path, len);
	m->path_off = paths_used;
	m->path_len = (uint32_t)len;
	paths_used += (uint32_t)len;
	atomic_store_release(&nmods, n + 1);
	return 0;
}

static void refresh_locked(int force)
{
	struct refresh r = { 1, force };
	uint64_t before = generation;

	dl_iterate_phdr(refresh_one, &r);
	if (generation == before)
		return;
	/* Modules not seen are gone from the next epoch on; the unwinder's
	 * cached rules for their addresses go with them.  The new epoch is
	 * published last, so a stack interned under it can trust the map. */
	uint32_t n = atomic_load_relaxed(&nmods), next = atomic_load_relaxed(&hds.map_epoch) + 1;
	int gone = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct hds_module *m = &mods[i];
		uint32_t f = atomic_load_relaxed(&m->flags);
		if (m->seen == generation || (f & HD_MOD_UNLOADED))
			continue;
		atomic_store_relaxed(&m->flags, f | HD_MOD_UNLOADED);
		atomic_store_relaxed(&m->gone_epoch, next);
		for (uint32_t k = 0; k < m->nseg; k++)
			hds_cfi_forget(m->seg[k].start, m->seg[k].start + m->seg[k].size);
		gone = 1;
	}
	if (gone)
		atomic_store_release(&hds.map_epoch, next);
}

void hds_modules_refresh(int wait)
{
	hds_tl_nopark++;   /* holds the map's lock, and the loader's */
	while (atomic_flag_test_and_set_explicit(&lock, memory_order_acquire)) {
		if (!wait) {
			hds_tl_nopark--;
			return;
		}
		sched_yield();
	}
	refresh_locked(0);
	atomic_flag_clear_explicit(&lock, memory_order_release);
	hds_tl_nopark--;
}

void hds_modules_after_fork(void)
{
	atomic_flag_clear_explicit(&lock, memory_order_release);
}

static int module_covers(const struct hds_module *m, uintptr_t addr)
{
	for (uint32_t s = 0; s < m->nseg; s++)
		if (addr - m->seg[s].start < m->seg[s].size)
			return 1;
	return 0;
}

int hds_modules_contains(uintptr_t addr)
{
	uint32_t n = atomic_load_acquire(&nmods);

	for (uint32_t i = 0; i < n; i++)
		if (!(atomic_load_relaxed(&mods[i].flags) & HD_MOD_UNLOADED) && module_covers(&mods[i], addr))
			return 1;
	return 0;
}

int hds_modules_changed(uint32_t since, const uintptr_t *frames, int depth)
{
	uint32_t n = atomic_load_acquire(&nmods);

	for (uint32_t i = 0; i < n; i++) {
		const struct hds_module *m = &mods[i];
		uint32_t gone = atomic_load_relaxed(&m->gone_epoch);
		if (atomic_load_relaxed(&m->first_epoch) <= since && (gone == HD_EPOCH_NONE || gone <= since))
			continue;   /* the same then and now */
		for (int k = 0; k < depth; k++)
			if (module_covers(m, frames[k]))
				return 1;
	}
	return 0;
}

uint32_t hds_modules_count(void)
{
	return atomic_load_acquire(&nmods);
}

size_t hds_modules_encode(unsigned char *buf, size_t cap, uint32_t n)
{
	size_t need = 4;

	for (uint32_t i = 0; i < n; i++)
		need += 8 + 4 + 4 + mods[i].build_id_len + 4 + 28 * mods[i].nseg + 4 + mods[i].path_len;
	if (!buf || need > cap)
		return need;

	unsigned char *p = hd_put_u32(buf, n);
	for (uint32_t i = 0; i < n; i++) {
		const struct hds_module *m = &mods[i];
		p = hd_put_u64(p, m->base);
		p = hd_put_u32(p, atomic_load_relaxed(&m->flags));
		p = hd_put_u32(p, m->build_id_len);
		memcpy(p, m->build_id, m->build_id_len);
		p += m->build_id_len;
		p = hd_put_u32(p, m->nseg);
		for (uint32_t s = 0; s < m->nseg; s++) {
			p = hd_put_u64(p, m->seg[s].start);
			p = hd_put_u64(p, m->seg[s].size);
			p = hd_put_u64(p, m->seg[s].offset);
			p = hd_put_u32(p, m->seg[s].flags);
		}
		p = hd_put_u32(p, m->path_len);
		memcpy(p, paths + m->path_off, m->path_len);
		p += m->path_len;
	}
	return (size_t)(p - buf);
}

size_t hds_modules_encode_epochs(unsigned char *buf, size_t cap, uint32_t n)
{
	size_t need = 4 + (size_t)8 * n;

	if (!buf || need > cap)
		return need;
	unsigned char *p = hd_put_u32(buf, n);
	for (uint32_t i = 0; i < n; i++) {
		p = hd_put_u32(p, atomic_load_relaxed(&mods[i].first_epoch));
		p = hd_put_u32(p, atomic_load_relaxed(&mods[i].gone_epoch));
	}
	return need;
}

/*
 * dlclose: the one loader call we wrap.  Unlike dlopen it does not depend
 * on its caller (no $ORIGIN, no RUNPATH), so wrapping it changes nothing
 * for the program.  When it returns, a library may be gone, and another may
 * be loaded at its address next: the map notices now, raising the epoch
 * before the program can allocate from new code at old addresses.  The
 * loader's lock is not held here, so the refresh may wait for ours.
 * glibc's own unloads (gconv modules) are noticed at the next refresh.
 */
__attribute__((visibility("default"))) int dlclose(void *handle);
int dlclose(void *handle)
{
	static int (*real_dlclose)(void *);
	int rc;

	if (!real_dlclose) {
		void *sym = dlsym(RTLD_NEXT, "dlclose");
		if (!sym)
			return -1;
		memcpy(&real_dlclose, &sym, sizeof sym);
	}
	rc = real_dlclose(handle);
	if (atomic_load_acquire(&hds.state) == HDS_ACTIVE) {
		int outer = hds_busy, saved = errno;
		hds_busy = 1;
		hds_modules_refresh(1);
		hds_busy = outer;
		errno = saved;
	}
	return rc;
}

uint64_t hds_modules_resident(void)
{
	return hds_resident(mods, sizeof *mods * MAX_MODULES) + hds_resident(paths, PATH_ARENA);
}
