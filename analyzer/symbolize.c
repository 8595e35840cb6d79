/*
 * symbolize.c - offline symbolization with elfutils' libdwfl/libdw.
 *
 * Each module (path + build-id) is opened once, in its own Dwfl, at bias 0:
 * lookups use the address relative to the load bias recorded in the
 * snapshot, so two runs of one binary at different addresses share every
 * cache entry.  Separate debug files are found by libdwfl's standard
 * callbacks (/usr/lib/debug/.build-id/..., .gnu_debuglink).
 *
 * Inline frames: dwarf_getscopes() on the CU gives the innermost scope at
 * the address; re-fetching that DIE with dwarf_offdie() and walking
 * dwarf_getscopes_die() gives the whole chain, each
 * DW_TAG_inlined_subroutine's DW_AT_call_file/DW_AT_call_line being the
 * location in its caller (the way elfutils' addr2line -i does it).
 *
 * Caches: a module table, and an open-addressing table from (module,
 * relative address) to the frames, so the cost grows with distinct
 * addresses, not with allocations or snapshots.
 */
#include "symbolize.h"
#include "util.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char *__cxa_demangle(const char *mangled, char *out, size_t *len, int *status);

enum mod_state { MOD_OK, MOD_MISSING, MOD_CHANGED, MOD_NOFILE };

struct elf_sym {
	uint64_t addr, size;
	const char *name;              /* libdwfl's, lives as long as the Dwfl */
};

struct sym_module {
	char *path;
	const char *name;              /* basename of path */
	struct elf_sym *syms;          /* function symbols by address, built on first use */
	size_t nsyms;
	int syms_done;
	unsigned char build_id[HD_MAX_BUILD_ID];
	uint32_t build_id_len;
	enum mod_state state;
	Dwfl *dwfl;
	Dwfl_Module *mod;
};

struct addr_entry {
	struct sym_module *mod;        /* NULL: slot empty */
	uint64_t rel;
	int is_return;
	struct sym_frame *frames;
	size_t n;
};

struct symbolizer {
	struct sym_module **mods;
	size_t nmods;
	struct addr_entry *slots;
	size_t cap, used;
	struct sym_frame unknown;      /* for addresses outside every module */
};

static const Dwfl_Callbacks callbacks = {
	.find_elf = dwfl_build_id_find_elf,
	.find_debuginfo = dwfl_standard_find_debuginfo,
	.section_address = dwfl_offline_section_address,
};

struct symbolizer *symbolizer_new(void)
{
	struct symbolizer *sym = xcalloc(1, sizeof *sym);

	sym->cap = 4096;
	sym->slots = xcalloc(sym->cap, sizeof *sym->slots);
	sym->unknown.function = "??";
	sym->unknown.module = "?";
	return sym;
}

void symbolizer_free(struct symbolizer *sym)
{
	if (!sym)
		return;
	for (size_t i = 0; i < sym->cap; i++) {
		struct addr_entry *e = &sym->slots[i];
		if (!e->mod)
			continue;
		for (size_t k = 0; k < e->n; k++) {
			free((char *)e->frames[k].function);
			free((char *)e->frames[k].file);
		}
		free(e->frames);
	}
	free(sym->slots);
	for (size_t i = 0; i < sym->nmods; i++) {
		if (sym->mods[i]->dwfl)
			dwfl_end(sym->mods[i]->dwfl);
		free(sym->mods[i]->syms);
		free(sym->mods[i]->path);
		free(sym->mods[i]);
	}
	free(sym->mods);
	free(sym);
}

static void hex(char *out, const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
	out[2 * n] = 0;
}

static void module_open(struct sym_module *m, const struct hd_module *hm)
{
	const unsigned char *bits;
	GElf_Addr vaddr;

	if (hm->flags & HD_MOD_VDSO || !m->path[0]) {
		m->state = MOD_NOFILE;
		return;
	}
	if (access(m->path, R_OK) != 0) {
		m->state = MOD_MISSING;
		warning("'%s' is not readable; its frames are shown as module+offset", m->path);
		return;
	}
	m->dwfl = dwfl_begin(&callbacks);
	if (m->dwfl)
		m->mod = dwfl_report_elf(m->dwfl, m->name, m->path, -1, 0, false);
	if (m->dwfl)
		dwfl_report_end(m->dwfl, NULL, NULL);
	if (!m->mod) {
		m->state = MOD_MISSING;
		warning("cannot read '%s' as ELF; its frames are shown as module+offset", m->path);
		return;
	}
	int n = dwfl_module_build_id(m->mod, &bits, &vaddr);
	if (m->build_id_len && (n != (int)m->build_id_len || memcmp(bits, m->build_id, (size_t)n) != 0)) {
		char want[2 * HD_MAX_BUILD_ID + 1], have[2 * HD_MAX_BUILD_ID + 1];
		hex(want, m->build_id, m->build_id_len);
		if (n > 0 && n <= HD_MAX_BUILD_ID)
			hex(have, bits, (size_t)n);
		else
			strcpy(have, "none");
		warning("'%s' has changed since the snapshot was taken (build-id %s, snapshot has %s); "
			"its frames are shown as module+offset", m->path, have, want);
		m->state = MOD_CHANGED;
		return;
	}
	m->state = MOD_OK;
}

static struct sym_module *module_get(struct symbolizer *sym, const struct hd_module *hm)
{
	for (size_t i = 0; i < sym->nmods; i++) {
		struct sym_module *m = sym->mods[i];
		if (m->build_id_len == hm->build_id_len && memcmp(m->build_id, hm->build_id, hm->build_id_len) == 0 &&
		    strcmp(m->path, hm->path) == 0)
			return m;
	}
	struct sym_module *m = xcalloc(1, sizeof *m);
	m->path = xstrdup(hm->path);
	const char *slash = strrchr(m->path, '/');
	m->name = slash ? slash + 1 : m->path;
	if (hm->flags & HD_MOD_VDSO)
		m->name = "[vdso]";
	memcpy(m->build_id, hm->build_id, hm->build_id_len);
	m->build_id_len = hm->build_id_len;
	module_open(m, hm);
	sym->mods = xrealloc(sym->mods, (sym->nmods + 1) * sizeof *sym->mods);
	sym->mods[sym->nmods++] = m;
	return m;
}

/* Demangled copy of name (C++ and legacy Rust), or a plain copy. */
static char *demangle(const char *name)
{
	int status = 0;
	char *d;

	if (!name)
		return xstrdup("??");
	if (strncmp(name, "_Z", 2) != 0 || !(d = __cxa_demangle(name, NULL, NULL, &status)) || status)
		return xstrdup(name);
	/* Legacy Rust symbols end in "::h" and a 16-digit hash: drop it. */
	size_t len = strlen(d);
	if (len > 19 && strncmp(d + len - 19, "::h", 3) == 0 &&
	    strspn(d + len - 16, "0123456789abcdef") == 16)
		d[len - 19] = 0;
	char *copy = xstrdup(d);
	free(d);
	return copy;
}

static const char *die_linkage_name(Dwarf_Die *die)
{
	Dwarf_Attribute attr;
	const char *n = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_linkage_name, &attr));

	if (!n)
		n = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &attr));
	if (!n)
		n = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_name, &attr));
	return n;
}

/* file made absolute against the compilation directory, "/./" folded.
 * libdw has joined some relative names with the compilation directory
 * already (DWARF 5 directory 0): those start with it and are kept. */
static char *absolute(const char *file, const char *comp_dir)
{
	int joined = comp_dir && strncmp(file, comp_dir, strlen(comp_dir)) == 0;
	char *p = file[0] == '/' || !comp_dir || !*comp_dir || joined ? xstrdup(file)
								    : xasprintf("%s/%s", comp_dir, file);
	char *dot;

	while ((dot = strstr(p, "/./")))
		memmove(dot, dot + 2, strlen(dot + 2) + 1);
	return p;
}

static void push(struct sym_frame **v, size_t *n, const char *fn, const char *file, const char *comp_dir,
		 int line, int inlined)
{
	*v = xrealloc(*v, (*n + 1) * sizeof **v);
	struct sym_frame *f = &(*v)[(*n)++];
	memset(f, 0, sizeof *f);
	f->function = demangle(fn);
	f->file = file ? absolute(file, comp_dir) : NULL;
	f->line = line;
	f->inlined = inlined;
}

static int by_addr(const void *a, const void *b)
{
	const struct elf_sym *x = a, *y = b;

	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	return (x->size < y->size) - (x->size > y->size);   /* sized first */
}

/* The function symbol containing a: dwfl_module_addrinfo scans the whole
 * symbol table for every address, so each module's functions are sorted
 * once and searched. */
static const char *symbol_at(struct sym_module *m, uint64_t a)
{
	if (!m->syms_done) {
		m->syms_done = 1;
		int n = dwfl_module_getsymtab(m->mod);
		for (int i = 1; i < n; i++) {
			GElf_Sym es;
			GElf_Addr value;
			const char *name = dwfl_module_getsym_info(m->mod, i, &es, &value, NULL, NULL, NULL);
			if (!name || !*name || GELF_ST_TYPE(es.st_info) != STT_FUNC || es.st_shndx == SHN_UNDEF)
				continue;
			m->syms = xrealloc(m->syms, (m->nsyms + 1) * sizeof *m->syms);
			m->syms[m->nsyms++] = (struct elf_sym){ value, es.st_size, name };
		}
		qsort(m->syms, m->nsyms, sizeof *m->syms, by_addr);
	}
	size_t lo = 0, hi = m->nsyms;
	while (lo < hi) {            /* the last symbol starting at or before a */
		size_t mid = lo + (hi - lo) / 2;
		if (m->syms[mid].addr <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* Among symbols starting there or before, the nearest that covers a. */
	for (size_t i = lo; i-- > 0 && lo - i <= 8;)
		if (a < m->syms[i].addr + (m->syms[i].size ? m->syms[i].size : 1))
			return m->syms[i].name;
	return NULL;
}

/* Is a inside one of the unit's address ranges? */
static int in_unit(Dwarf_Die *cu, Dwarf_Addr a)
{
	Dwarf_Addr base, start, end;
	ptrdiff_t off = 0;

	while ((off = dwarf_ranges(cu, off, &base, &start, &end)) > 0)
		if (a >= start && a < end)
			return 1;
	return 0;
}

/* Expand the inline chain at relative address a into frames. */
static void lookup(struct sym_module *m, uint64_t a, struct sym_frame **out, size_t *n)
{
	const char *symname = symbol_at(m, a);
	const char *file = NULL, *comp_dir = NULL;
	int line = 0;
	Dwarf_Addr bias = 0;
	Dwarf_Die *cu = dwfl_module_addrdie(m->mod, a, &bias);
	/* Only a compilation unit whose ranges hold a has lines for it:
	 * libdwfl gives an address in a gap between a unit's ranges to that
	 * unit, and its nearest line (crt1's _start, which has no line
	 * information, would get a line of main's file). */
	if (cu && !in_unit(cu, a - bias))
		cu = NULL;
	Dwfl_Line *dl = cu ? dwfl_module_getsrc(m->mod, a) : NULL;

	if (dl) {
		file = dwfl_lineinfo(dl, NULL, &line, NULL, NULL, NULL);
		comp_dir = dwfl_line_comp_dir(dl);
	}

	Dwarf_Die *scopes = NULL;
	int nscopes = cu ? dwarf_getscopes(cu, a - bias, &scopes) : 0;

	if (nscopes > 0) {
		Dwarf_Die inner;
		Dwarf_Addr b2;
		Dwarf *dw = dwfl_module_getdwarf(m->mod, &b2);
		Dwarf_Off dieoff = dwarf_dieoffset(&scopes[0]);
		free(scopes);
		scopes = NULL;
		nscopes = dw && dwarf_offdie(dw, dieoff, &inner) ? dwarf_getscopes_die(&inner, &scopes) : 0;
	}

	const char *cur_file = file;
	int cur_line = line;
	Dwarf_Files *files = NULL;
	for (int i = 0; i < nscopes; i++) {
		Dwarf_Die *die = &scopes[i];
		int tag = dwarf_tag(die);
		if (tag == DW_TAG_subprogram) {
			const char *fn = die_linkage_name(die);
			push(out, n, fn ? fn : symname, cur_file, comp_dir, cur_line, 0);
			break;
		}
		if (tag != DW_TAG_inlined_subroutine)
			continue;
		push(out, n, die_linkage_name(die), cur_file, comp_dir, cur_line, 1);
		Dwarf_Attribute attr;
		Dwarf_Word val;
		Dwarf_Die cudie;
		cur_file = NULL;
		cur_line = 0;
		if (!files && dwarf_diecu(die, &cudie, NULL, NULL)) {
			dwarf_getsrcfiles(&cudie, &files, NULL);
			comp_dir = dwarf_formstring(dwarf_attr(&cudie, DW_AT_comp_dir, &attr));
		}
		if (files && dwarf_formudata(dwarf_attr(die, DW_AT_call_file, &attr), &val) == 0)
			cur_file = dwarf_filesrc(files, val, NULL, NULL);
		if (dwarf_formudata(dwarf_attr(die, DW_AT_call_line, &attr), &val) == 0)
			cur_line = (int)val;
	}
	free(scopes);
	if (*n == 0 || (*out)[*n - 1].inlined)
		push(out, n, symname, cur_file, comp_dir, cur_line, 0);
}

static uint64_t mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdu;
	h ^= h >> 33;
	return h;
}

static struct addr_entry *slot_for(struct symbolizer *sym, struct sym_module *m, uint64_t rel, int is_return)
{
	if (2 * (sym->used + 1) > sym->cap) {
		struct addr_entry *old = sym->slots;
		size_t oldcap = sym->cap;
		sym->cap *= 2;
		sym->slots = xcalloc(sym->cap, sizeof *sym->slots);
		for (size_t i = 0; i < oldcap; i++) {
			if (!old[i].mod)
				continue;
			size_t k = mix(old[i].rel ^ (uintptr_t)old[i].mod) & (sym->cap - 1);
			while (sym->slots[k].mod)
				k = (k + 1) & (sym->cap - 1);
			sym->slots[k] = old[i];
		}
		free(old);
	}
	size_t k = mix(rel ^ (uintptr_t)m) & (sym->cap - 1);
	while (sym->slots[k].mod && !(sym->slots[k].mod == m && sym->slots[k].rel == rel &&
				     sym->slots[k].is_return == is_return))
		k = (k + 1) & (sym->cap - 1);
	return &sym->slots[k];
}

const struct sym_frame *symbolize_addr(struct symbolizer *sym, const struct snapshot *s,
				       uint64_t addr, int is_return, size_t *nframes)
{
	const struct hd_module *hm = snapshot_module_of(s, addr);

	if (!hm) {
		sym->unknown.address = addr;
		sym->unknown.offset = addr;
		*nframes = 1;
		return &sym->unknown;
	}
	struct sym_module *m = module_get(sym, hm);
	uint64_t rel = addr - hm->base;
	struct addr_entry *e = slot_for(sym, m, rel, is_return);

	if (!e->mod) {
		e->mod = m;
		e->rel = rel;
		e->is_return = is_return;
		sym->used++;
		if (m->state == MOD_OK)
			lookup(m, rel - (is_return ? 1 : 0), &e->frames, &e->n);
		if (!e->n)
			push(&e->frames, &e->n, NULL, NULL, NULL, 0, 0);
		for (size_t i = 0; i < e->n; i++) {
			e->frames[i].module = m->name;
			e->frames[i].offset = rel;
		}
	}
	/* The runtime address differs per snapshot; the rest is shared. */
	for (size_t i = 0; i < e->n; i++)
		e->frames[i].address = addr;
	*nframes = e->n;
	return e->frames;
}
