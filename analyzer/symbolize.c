/*
 * symbolize.c - offline symbolization with elfutils' libdwfl/libdw.
 *
 * Each module (path + build-id) is opened once, in its own Dwfl, at bias 0:
 * lookups use the address relative to the load bias recorded in the
 * snapshot, so two runs of one binary at different addresses share every
 * cache entry.
 *
 * Where files are found (the snapshot may come from a container or another
 * machine): a module's file is the first of module_cands() that has the
 * snapshot's build-id: its path mapped by --map-path, under --sysroot, the
 * path itself, by name and by build-id in the --debug-dir directories, by
 * build-id in the snapshot's own directory (a bundle), the binary links
 * under /usr/lib/debug/.build-id, then its separate debug
 * file by build-id, which symbolizes as well when the binary is nowhere;
 * last, debuginfod (debuginfod.c).  A file with another build-id is never
 * used (a rebuilt binary): it is named in the warning.  Separate debug
 * files likewise (debug_cands()), then debuginfod, once per module.  Every
 * frame records why it has no file and line (sym_frame.lacks), for the
 * line under a report (write_debuginfo.c).  Symbol names without debug
 * information come from .symtab, .dynsym or MiniDebugInfo (.gnu_debugdata,
 * decompressed by libdwfl, which this libdw is built to do with liblzma).
 *
 * Hostile files: a snapshot's module map is written by the traced program,
 * and CI analyzes snapshots of a pull request's own code, so a module path
 * may name a FIFO (open() would wait forever for a writer), a device
 * (/dev/zero never ends), a directory or an empty file.  No path is handed
 * to libdw to open: every module and separate debug file is opened here
 * (open_elf_file: stat first, then O_NONBLOCK, then fstat of what was
 * opened) and only a regular ELF file of at most MAX_ELF_BYTES reaches
 * libdw, as an fd.  Separate debug files are searched for here too, where
 * libdwfl's standard callback looks (/usr/lib/debug/.build-id/xx/yyyy.debug,
 * then the .gnu_debuglink name beside the module, in .debug/ and under
 * /usr/lib/debug) and in the places above, and checked against the module's
 * build-id (or the debuglink CRC).  What debuginfod downloads is a file in
 * its cache, opened by path through the same checks.  libdw itself would open the dwz alternate file
 * (.gnu_debugaltlink) lazily, with a blocking open(): check_lazy_files()
 * opens it here instead, and when a path libdw would try exists and is not
 * a regular file, the module's DWARF is not used at all (symbols only).
 * Everything refused is one warning per module, and the module's frames
 * are shown as module+offset.
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
 *
 * Frames outside every module: JIT-compiled code, named by the entry of
 * the runtime's perf map that the snapshot copied for it (its JIT section):
 * the function is the map's name as the runtime wrote it ("JS:*handle
 * /srv/app.js:12:3" for Node.js), the module "[jit]", the offset from the
 * entry's start, no file or line.  Without an entry, "??" in module "?"
 * at the address itself.  Each is cached by address and entry, so that
 * every frame of a stack keeps its own.
 */
#include "symbolize.h"
#include "debuginfod.h"
#include "pyframes.h"
#include "util.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwelf.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern char *__cxa_demangle(const char *mangled, char *out, size_t *len, int *status);

enum mod_state { MOD_OK, MOD_MISSING, MOD_CHANGED, MOD_NOFILE };

/* The largest module or debug file read: larger than any real one (a
 * browser's unstripped binary is a few GiB), small enough that a sparse
 * file claiming terabytes is refused before libelf maps it. */
#define MAX_ELF_BYTES ((uint64_t)16 << 30)
#define MAX_ELF_TEXT "16 GiB"

#define DEBUG_ROOT "/usr/lib/debug"

/* Why open_elf_file() refused a path. */
enum refusal { FILE_UNREADABLE = 1, FILE_NOT_REGULAR, FILE_TOO_LARGE, FILE_NOT_ELF };

struct elf_sym {
	uint64_t addr, size;
	const char *name;              /* libdwfl's, lives as long as the Dwfl */
};

struct sym_module {
	char *path;                    /* as the snapshot names it */
	const char *name;              /* basename of path */
	char *file;                    /* the file in use (path, or found elsewhere) */
	struct elf_sym *syms;          /* function symbols by address, built on first use */
	size_t nsyms;
	int syms_done;
	unsigned char build_id[HD_MAX_BUILD_ID];
	uint32_t build_id_len;
	enum mod_state state;
	Dwfl *dwfl;
	Dwfl_Module *mod;
	dev_t dev;                     /* of the module file, so the debug */
	ino_t ino;                     /* search skips it under another name */
	const char *debuglink;         /* .gnu_debuglink of the module (libdwfl's) */
	GElf_Word debuglink_crc;
	char *debug_path;              /* the separate debug file in use, if any */
	int warned;                    /* one warning per module */
	int no_dwarf;                  /* DWARF refused: symbols only */
	int has_dwarf;                 /* DWARF in use: a frame without a line lacks only lines */
	int asked;                     /* debuginfod asked for its debug file */
	Dwarf *alt;                    /* the dwz alternate file opened here */
	int alt_fd;
	char *alt_path;                /* its path */
	char alt_id[2 * HD_MAX_BUILD_ID + 1];   /* its build-id, in hex */
	char *snapdir;                 /* the directory of the snapshot that named it */
	struct symbolizer *sym;
};

struct addr_entry {
	struct sym_module *mod;        /* NULL: slot empty */
	uint64_t rel;
	int is_return;
	struct sym_frame *frames;
	size_t n;
};

/* A frame outside every module, by address and the JIT entry naming it. */
struct jit_slot {
	uint64_t addr, start;          /* start: of the entry (0 without one) */
	char *name;                    /* the entry's name; NULL: none */
	struct sym_frame *frame;       /* NULL: slot empty */
};

struct symbolizer {
	struct sym_module **mods;
	size_t nmods;
	struct addr_entry *slots;
	size_t cap, used;
	struct jit_slot *outside;      /* frames outside every module */
	size_t outside_cap, outside_used;
	struct pyframe_cache *py;      /* Python frames (pyframes.c) */
	const struct sym_paths *paths; /* where files are looked for */
	struct debuginfod *dbg;        /* NULL without DEBUGINFOD_URLS */
};

/* A list of candidate paths, tried in order. */
struct cands {
	char **v;
	size_t n;
};

static void cand_add(struct cands *c, char *path)
{
	if (!path)
		return;
	c->v = xrealloc(c->v, (c->n + 1) * sizeof *c->v);
	c->v[c->n++] = path;
}

static void cands_release(struct cands *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->v[i]);
	free(c->v);
	memset(c, 0, sizeof *c);
}

static const char *refusal_text(enum refusal why)
{
	switch (why) {
	case FILE_NOT_REGULAR:
		return "is not a regular file";
	case FILE_TOO_LARGE:
		return "is larger than " MAX_ELF_TEXT;
	case FILE_NOT_ELF:
		return "is not an ELF file";
	default:
		return "is not readable";
	}
}

/* Open path to read an ELF file, never blocking: the fd, or -1 with *why
 * set.  stat() first, so a device or a FIFO is never opened at all (opening
 * some devices does something); O_NONBLOCK and the fstat() of the opened
 * file close the window in which the path could be replaced. */
static int open_elf_file(const char *path, enum refusal *why, struct stat *st)
{
	unsigned char ident[SELFMAG];
	int fd;

	if (stat(path, st) != 0) {
		*why = FILE_UNREADABLE;
		return -1;
	}
	if (!S_ISREG(st->st_mode)) {
		*why = FILE_NOT_REGULAR;
		return -1;
	}
	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		*why = FILE_UNREADABLE;
		return -1;
	}
	if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode))
		*why = FILE_NOT_REGULAR;
	else if ((uint64_t)st->st_size > MAX_ELF_BYTES)
		*why = FILE_TOO_LARGE;
	else if (pread(fd, ident, SELFMAG, 0) != SELFMAG || memcmp(ident, ELFMAG, SELFMAG) != 0)
		*why = FILE_NOT_ELF;
	else
		return fd;
	close(fd);
	return -1;
}

/*
 * A walk over candidate files: each opened in turn (open_elf_file) until
 * the caller accepts one; when the list runs out, debuginfod is asked by
 * build-id for each of `kinds` in turn (once each), and what it fetched
 * is tried too.  The first candidate refused for what it is (a directory,
 * a FIFO, not ELF; not for being absent) is kept for the warning.
 */
struct cand_walk {
	struct cands c;
	size_t next;                   /* the next candidate to open */
	size_t cur;                    /* the one cand_walk_next opened */
	struct debuginfod *dbg;        /* NULL: ask no server */
	const unsigned char *id;
	size_t idlen;
	const enum debuginfod_kind *kinds;
	int nkinds, fetched;
	const char *refused;           /* a path in c, or NULL */
	enum refusal why;
	struct stat st;                /* of the file opened */
};

/* Open the next candidate that opens as a regular ELF file: its fd (its
 * path c.v[cur], its stat in st), or -1 when none is left. */
static int cand_walk_next(struct cand_walk *w)
{
	for (;; w->next++) {
		while (w->next == w->c.n && w->dbg && w->idlen && w->fetched < w->nkinds)
			cand_add(&w->c, debuginfod_fetch(w->dbg, w->kinds[w->fetched++], w->id, w->idlen));
		if (w->next == w->c.n)
			return -1;
		enum refusal why;
		int fd = open_elf_file(w->c.v[w->next], &why, &w->st);
		if (fd >= 0) {
			w->cur = w->next++;
			return fd;
		}
		if (why != FILE_UNREADABLE && !w->refused) {
			w->refused = w->c.v[w->next];
			w->why = why;
		}
	}
}

static void warn_debug_file(struct sym_module *m, const char *path, enum refusal why)
{
	if (m->warned)
		return;
	m->warned = 1;
	warning("'%s' %s; frames of '%s' are shown as module+offset", path, refusal_text(why), m->path);
}

static void hex(char *out, const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
	out[2 * n] = 0;
}

/* ROOT/.build-id/xx/yyyySUFFIX for a build-id (suffix ".debug" for a
 * debug file, "" for the binary, as Fedora links it); NULL for one shorter
 * than 3 or longer than 64 bytes, as libdw does. */
static char *build_id_path(const char *root, const void *id, size_t n, const char *suffix)
{
	char h[2 * HD_MAX_BUILD_ID + 1];

	if (n < 3 || n > HD_MAX_BUILD_ID)
		return NULL;
	hex(h, id, n);
	return xasprintf("%s/.build-id/%.2s/%s%s", strcmp(root, "/") ? root : "", h, h + 2, suffix);
}

/* The places of a build-id's file: each debug directory, the directory of
 * the snapshot that named the module (a bundle: heapdelta bundle), the
 * sysroot's /usr/lib/debug, then /usr/lib/debug. */
static void build_id_cands(const struct sym_module *m, struct cands *c, const void *id, size_t n,
			   const char *suffix)
{
	const struct sym_paths *p = m->sym->paths;

	for (size_t i = 0; i < p->ndebug_dirs; i++)
		cand_add(c, build_id_path(p->debug_dirs[i], id, n, suffix));
	if (m->snapdir)
		cand_add(c, build_id_path(m->snapdir, id, n, suffix));
	if (p->sysroot) {
		char *root = xasprintf("%s" DEBUG_ROOT, p->sysroot);
		cand_add(c, build_id_path(root, id, n, suffix));
		free(root);
	}
	cand_add(c, build_id_path(DEBUG_ROOT, id, n, suffix));
}

/* dir/name, without doubling the slash of dir "/". */
static char *join(const char *dir, const char *name)
{
	return xasprintf("%s/%s", strcmp(dir, "/") ? dir : "", name);
}

/* Where libdw looks for a relative alternate file name: in debugdir (see
 * debugdir_of); NULL when it has no answer. */
static char *alt_path(const char *debugdir, const char *file)
{
	if (file[0] == '/')
		return xstrdup(file);
	return debugdir ? xasprintf("%s%s", debugdir, file) : NULL;
}

/* The directory libdw resolves a relative alternate file name against: that of
 * the file's real path, with a trailing slash; NULL if it cannot say. */
static char *debugdir_of(const char *path)
{
	char *real = realpath(path, NULL);
	char *slash = real ? strrchr(real, '/') : NULL;

	if (!slash) {
		free(real);
		return NULL;
	}
	slash[1] = 0;
	return real;
}

/* The CRC-32 of .gnu_debuglink (the zlib polynomial), over the whole file. */
static int file_crc32(int fd, uint32_t *out)
{
	static uint32_t table[256];
	unsigned char buf[65536];
	uint32_t crc = 0xffffffffu;
	off_t off = 0;
	ssize_t n;

	if (!table[1])
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
			table[i] = c;
		}
	while ((n = pread(fd, buf, sizeof buf, off)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			crc = table[(crc ^ buf[i]) & 0xff] ^ (crc >> 8);
		off += n;
	}
	*out = crc ^ 0xffffffffu;
	return n < 0 ? -1 : 0;
}

/* The build-id of the ELF file open on fd, into out (HD_MAX_BUILD_ID
 * bytes): its length, or 0 when it has none (or one too long). */
static size_t file_build_id(int fd, unsigned char *out)
{
	Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	const void *got;
	ssize_t len = elf ? dwelf_elf_gnu_build_id(elf, &got) : -1;

	if (len > 0 && len <= HD_MAX_BUILD_ID)
		memcpy(out, got, (size_t)len);
	else
		len = 0;
	elf_end(elf);
	return (size_t)len;
}

/* Is the ELF file open on fd the one with this build-id? */
static int has_build_id(int fd, const void *id, size_t n)
{
	unsigned char got[HD_MAX_BUILD_ID];
	size_t len = file_build_id(fd, got);

	return len > 0 && len == n && memcmp(got, id, n) == 0;
}

/* The places of a module's separate debug file, libdwfl's standard ones
 * and ours: by build-id (build_id_cands), then by .gnu_debuglink name (or
 * NAME.debug without one) beside the file in use, in .debug/ there and
 * under /usr/lib/debug, for its name and the file it is a symlink to; under
 * the sysroot's /usr/lib/debug and in each debug directory, for the
 * snapshot's directory of the module, and in each debug directory itself. */
static void debug_cands(const struct sym_module *m, struct cands *c, const void *id, int idlen,
			const char *file_name, const char *link)
{
	const struct sym_paths *p = m->sym->paths;

	if (idlen > 0)
		build_id_cands(m, c, id, (size_t)idlen, ".debug");
	char *real = realpath(file_name, NULL);
	const char *names[2] = { file_name, real && strcmp(real, file_name) != 0 ? real : NULL };
	for (int k = 0; k < 2 && names[k]; k++) {
		const char *s = strrchr(names[k], '/');
		int dirlen = s ? (int)(s - names[k]) : 1;
		const char *dir = s ? names[k] : ".";
		cand_add(c, xasprintf("%.*s/%s", dirlen, dir, link));
		cand_add(c, xasprintf("%.*s/.debug/%s", dirlen, dir, link));
		if (dir[0] == '/')
			cand_add(c, xasprintf(DEBUG_ROOT "%.*s/%s", dirlen, dir, link));
	}
	free(real);
	const char *s = strrchr(m->path, '/');
	int dirlen = s && m->path[0] == '/' ? (int)(s - m->path) : -1;
	if (p->sysroot && dirlen >= 0)
		cand_add(c, xasprintf("%s" DEBUG_ROOT "%.*s/%s", p->sysroot, dirlen, m->path, link));
	for (size_t i = 0; i < p->ndebug_dirs; i++) {
		const char *d = strcmp(p->debug_dirs[i], "/") ? p->debug_dirs[i] : "";
		if (dirlen >= 0)
			cand_add(c, xasprintf("%s%.*s/%s", d, dirlen, m->path, link));
		cand_add(c, xasprintf("%s/%s", d, link));
	}
}

/* libdwfl's find_debuginfo callback, in place of its standard one (which
 * opens every candidate with a blocking open()).  libdwfl also calls it for
 * the dwz alternate file (debuglink is then the .gnu_debugaltlink name and
 * crc 0): check_alt_file() deals with that one, so it is declined here.
 * When no place has the file, debuginfod is asked (once per module), and
 * the file it hands back goes through the same checks.  A refused
 * candidate is warned about only when no other one is found. */
static int find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
			  const char *file_name, const char *debuglink, GElf_Word crc,
			  char **debuginfo_file_name)
{
	static const enum debuginfod_kind kinds[] = { DEBUGINFOD_DEBUGINFO };
	struct sym_module *m = *userdata;
	const unsigned char *id = NULL;
	GElf_Addr vaddr;
	int idlen = dwfl_module_build_id(mod, &id, &vaddr);
	int fd = -1;

	(void)modname;
	(void)base;
	errno = 0;
	if (!m || (debuglink && !(m->debuglink && strcmp(m->debuglink, debuglink) == 0 && m->debuglink_crc == crc)))
		return -1;
	/* Without a debuglink, libdwfl's standard guess: NAME.debug. */
	const char *slash = strrchr(file_name, '/');
	char *guess = debuglink ? NULL : xasprintf("%s.debug", slash ? slash + 1 : file_name);
	struct cand_walk w = { .dbg = idlen > 0 && !m->asked ? m->sym->dbg : NULL, .id = id,
			       .idlen = idlen > 0 ? (size_t)idlen : 0, .kinds = kinds, .nkinds = 1 };
	debug_cands(m, &w.c, id, idlen, file_name, debuglink ? debuglink : guess);
	while ((fd = cand_walk_next(&w)) >= 0) {
		uint32_t got;
		int ok = w.st.st_dev != m->dev || w.st.st_ino != m->ino;   /* not the module itself */
		if (ok && idlen > 0)
			ok = has_build_id(fd, id, (size_t)idlen);
		else if (ok && debuglink && crc)
			ok = file_crc32(fd, &got) == 0 && got == crc;
		if (ok)
			break;
		close(fd);
	}
	if (w.fetched)
		m->asked = 1;
	if (fd >= 0) {
		m->debug_path = xstrdup(w.c.v[w.cur]);
		*debuginfo_file_name = xstrdup(w.c.v[w.cur]);   /* libdwfl frees it */
	} else if (w.refused) {
		warn_debug_file(m, w.refused, w.why);
	}
	cands_release(&w.c);
	free(guess);
	errno = 0;
	return fd;
}

/* Never called for a module reported with an fd; refuses rather than
 * opening a path, should that change. */
static int find_elf(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
		    char **file_name, Elf **elfp)
{
	(void)mod;
	(void)userdata;
	(void)modname;
	(void)base;
	(void)file_name;
	(void)elfp;
	errno = 0;
	return -1;
}

static const Dwfl_Callbacks callbacks = {
	.find_elf = find_elf,
	.find_debuginfo = find_debuginfo,
	.section_address = dwfl_offline_section_address,
};

struct symbolizer *symbolizer_new(void)
{
	struct symbolizer *sym = xcalloc(1, sizeof *sym);

	elf_version(EV_CURRENT);

	sym->cap = 4096;
	sym->slots = xcalloc(sym->cap, sizeof *sym->slots);
	sym->outside_cap = 256;
	sym->outside = xcalloc(sym->outside_cap, sizeof *sym->outside);
	sym->py = pyframe_cache_new();
	sym->paths = symbolize_paths();
	sym->dbg = debuginfod_new();
	return sym;
}

void symbolizer_free(struct symbolizer *sym)
{
	if (!sym)
		return;
	pyframe_cache_free(sym->py);
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
	for (size_t i = 0; i < sym->outside_cap; i++) {
		free(sym->outside[i].name);
		free(sym->outside[i].frame);
	}
	free(sym->outside);
	for (size_t i = 0; i < sym->nmods; i++) {
		if (sym->mods[i]->dwfl)
			dwfl_end(sym->mods[i]->dwfl);
		if (sym->mods[i]->alt) {     /* set with dwarf_setalt: ours to end */
			dwarf_end(sym->mods[i]->alt);
			close(sym->mods[i]->alt_fd);
		}
		free(sym->mods[i]->debug_path);
		free(sym->mods[i]->file);
		free(sym->mods[i]->alt_path);
		free(sym->mods[i]->snapdir);
		free(sym->mods[i]->syms);
		free(sym->mods[i]->path);
		free(sym->mods[i]);
	}
	free(sym->mods);
	debuginfod_free(sym->dbg);
	free(sym);
}

/* The dwz alternate file: libdw would look for it itself, on first use,
 * with a blocking open() of the build-id path and of the name relative to
 * the debug file.  Open it here from those same two places; when nothing
 * is found, ask libdw now, while both are known to be absent or regular
 * (it then never looks again).  0, or -1 when one of them is refused. */
static int check_alt_file(struct sym_module *m, Dwarf *dw, const char *debugdir)
{
	static const enum debuginfod_kind kinds[] = { DEBUGINFOD_DEBUGINFO };   /* it serves dwz files by build-id */
	const char *altname;
	const void *id;
	ssize_t n = dwelf_dwarf_gnu_debugaltlink(dw, &altname, &id);
	int fd;

	if (n <= 0)
		return 0;
	struct cand_walk w = { .dbg = m->sym->dbg, .id = id, .idlen = (size_t)n, .kinds = kinds, .nkinds = 1 };
	build_id_cands(m, &w.c, id, (size_t)n, ".debug");
	cand_add(&w.c, alt_path(debugdir, altname));
	while (!m->alt && (fd = cand_walk_next(&w)) >= 0) {
		Dwarf *alt = has_build_id(fd, id, (size_t)n) ? dwarf_begin(fd, DWARF_C_READ) : NULL;
		if (!alt) {
			close(fd);
			continue;
		}
		dwarf_setalt(dw, alt);
		m->alt = alt;
		m->alt_fd = fd;
		m->alt_path = xstrdup(w.c.v[w.cur]);
		if ((size_t)n <= HD_MAX_BUILD_ID)
			hex(m->alt_id, id, (size_t)n);
	}
	int refused = !m->alt && w.refused;
	if (refused)
		warn_debug_file(m, w.refused, w.why);
	else if (!m->alt)
		dwarf_getalt(dw);
	cands_release(&w.c);
	return refused ? -1 : 0;
}

/* Load the module's DWARF now, and refuse it when libdw would later open a
 * file that is not regular.  Split-DWARF .dwo files need no check: libdw
 * opens them only from dwarf_cu_info() and dwarf_get_units() on a skeleton
 * unit, which nothing here (nor libdwfl) calls; whoever adds such a call
 * must check those paths first. */
static void check_lazy_files(struct sym_module *m)
{
	Dwarf_Addr bias;
	Dwarf *dw = dwfl_module_getdwarf(m->mod, &bias);

	if (!dw)
		return;
	char *debugdir = debugdir_of(m->debug_path ? m->debug_path : m->file);
	if (check_alt_file(m, dw, debugdir) < 0)
		m->no_dwarf = 1;
	m->has_dwarf = !m->no_dwarf;
	free(debugdir);
}

/* The places of a module's file: its path mapped by --map-path, under the
 * sysroot, the path itself, then in each debug directory by build-id
 * (.build-id/xx/yyyy, as Fedora links binaries) and by name, and the
 * binary links under /usr/lib/debug; then its separate debug file by
 * build-id, which symbolizes as well as the binary when that is nowhere. */
static void module_cands(const struct sym_module *m, struct cands *c)
{
	const struct sym_paths *p = m->sym->paths;

	cand_add(c, symbolize_map_path(m->path));
	if (p->sysroot && m->path[0] == '/')
		cand_add(c, xasprintf("%s%s", p->sysroot, m->path));
	cand_add(c, xstrdup(m->path));
	for (size_t i = 0; i < p->ndebug_dirs; i++)
		cand_add(c, join(p->debug_dirs[i], m->name));
	build_id_cands(m, c, m->build_id, m->build_id_len, "");
	build_id_cands(m, c, m->build_id, m->build_id_len, ".debug");
}

/* Find the module's file among module_cands(), then from debuginfod (its
 * debug file, else its binary): the first regular ELF file with the
 * snapshot's build-id (any, when the snapshot has none).  Opened as an fd,
 * handed to libdwfl.  When none is, the first refused file, else the first
 * with another build-id, else the first place is named in one warning; when
 * one is, a refused or other-build-id file before it is named too. */
static void module_open(struct sym_module *m, const struct hd_module *hm)
{
	static const enum debuginfod_kind kinds[] = { DEBUGINFOD_DEBUGINFO, DEBUGINFOD_EXECUTABLE };
	unsigned char have[HD_MAX_BUILD_ID];
	size_t havelen = 0;
	const char *changed = NULL;
	int fd = -1;

	if (hm->flags & HD_MOD_VDSO || !m->path[0]) {
		m->state = MOD_NOFILE;
		return;
	}
	m->state = MOD_MISSING;
	struct cand_walk w = { .dbg = m->sym->dbg, .id = m->build_id, .idlen = m->build_id_len, .kinds = kinds,
			       .nkinds = 2 };
	module_cands(m, &w.c);
	while ((fd = cand_walk_next(&w)) >= 0) {
		unsigned char got[HD_MAX_BUILD_ID];
		size_t len = m->build_id_len ? file_build_id(fd, got) : 0;
		if (!m->build_id_len || (len == m->build_id_len && memcmp(got, m->build_id, len) == 0))
			break;
		if (!changed) {
			changed = w.c.v[w.cur];
			memcpy(have, got, len);
			havelen = len;
		}
		close(fd);
	}
	if (w.fetched)
		m->asked = 1;
	if (fd >= 0)
		m->file = xstrdup(w.c.v[w.cur]);

	char want[2 * HD_MAX_BUILD_ID + 1], had[2 * HD_MAX_BUILD_ID + 1];
	hex(want, m->build_id, m->build_id_len);
	if (havelen)
		hex(had, have, havelen);
	else
		strcpy(had, "none");
	char *tail = m->file ? xasprintf("using '%s'", m->file) : xstrdup("its frames are shown as module+offset");
	if (w.refused)
		warning("'%s' %s; %s", w.refused, refusal_text(w.why), tail);
	else if (changed)
		warning("'%s' has changed since the snapshot was taken (build-id %s, snapshot has %s); %s", changed, had,
			want, tail);
	else if (!m->file)
		warning("'%s' %s; %s", w.c.n ? w.c.v[0] : m->path, refusal_text(FILE_UNREADABLE), tail);
	free(tail);
	if (!m->file) {
		m->state = changed && !w.refused ? MOD_CHANGED : MOD_MISSING;
		cands_release(&w.c);
		return;
	}
	cands_release(&w.c);

	m->dev = w.st.st_dev;
	m->ino = w.st.st_ino;
	m->dwfl = dwfl_begin(&callbacks);
	if (m->dwfl)
		m->mod = dwfl_report_elf(m->dwfl, m->name, m->file, fd, 0, false);
	if (m->dwfl)
		dwfl_report_end(m->dwfl, NULL, NULL);
	if (!m->mod) {
		close(fd);                   /* on success, libdwfl owns it */
		warning("cannot read '%s' as ELF; its frames are shown as module+offset", m->file);
		return;
	}
	void **userdata;
	GElf_Addr vaddr;
	dwfl_module_info(m->mod, &userdata, NULL, NULL, NULL, NULL, NULL, NULL);
	*userdata = m;
	Elf *elf = dwfl_module_getelf(m->mod, &vaddr);
	m->debuglink = elf ? dwelf_elf_gnu_debuglink(elf, &m->debuglink_crc) : NULL;
	m->state = MOD_OK;
	check_lazy_files(m);
}

static struct sym_module *module_get(struct symbolizer *sym, const struct snapshot *s, const struct hd_module *hm)
{
	for (size_t i = 0; i < sym->nmods; i++) {
		struct sym_module *m = sym->mods[i];
		if (m->build_id_len == hm->build_id_len && memcmp(m->build_id, hm->build_id, hm->build_id_len) == 0 &&
		    strcmp(m->path, hm->path) == 0)
			return m;
	}
	struct sym_module *m = xcalloc(1, sizeof *m);
	m->sym = sym;
	m->snapdir = s->path ? debugdir_of(s->path) : NULL;
	if (m->snapdir && strlen(m->snapdir) > 1)
		m->snapdir[strlen(m->snapdir) - 1] = 0;     /* no trailing slash */
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
		if (m->nsyms)        /* a stripped module may have none: qsort wants an array */
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
	Dwarf_Die *cu = m->no_dwarf ? NULL : dwfl_module_addrdie(m->mod, a, &bias);
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

/* What a frame of m without file and line lacks. */
static enum sym_lack module_lack(const struct sym_module *m)
{
	switch (m->state) {
	case MOD_OK: return m->has_dwarf ? SYM_LACKS_LINES : SYM_LACKS_DEBUG_INFO;
	case MOD_MISSING:
	case MOD_CHANGED: return SYM_LACKS_MODULE;
	case MOD_NOFILE: break;
	}
	return SYM_LACKS_NOTHING;
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

static uint64_t hash_name(const char *p)
{
	uint64_t h = 0xcbf29ce484222325u;

	while (p && *p)
		h = (h ^ (unsigned char)*p++) * 0x100000001b3u;
	return h;
}

static size_t outside_index(const struct symbolizer *sym, uint64_t addr, uint64_t start, const char *name)
{
	size_t k = mix(addr ^ start * 31 ^ hash_name(name)) & (sym->outside_cap - 1);

	while (sym->outside[k].frame &&
	       !(sym->outside[k].addr == addr && sym->outside[k].start == start &&
		 (name ? sym->outside[k].name && !strcmp(sym->outside[k].name, name) : !sym->outside[k].name)))
		k = (k + 1) & (sym->outside_cap - 1);
	return k;
}

/* The frame of addr, outside every module of s: named by its JIT entry
 * when s has one.  Lives as long as sym. */
static const struct sym_frame *outside_frame(struct symbolizer *sym, const struct snapshot *s, uint64_t addr)
{
	const struct hd_jit_entry *e = snapshot_jit_of(s, addr);
	uint64_t start = e ? e->start : 0;
	const char *name = e ? e->name : NULL;

	if (2 * (sym->outside_used + 1) > sym->outside_cap) {
		struct jit_slot *old = sym->outside;
		size_t oldcap = sym->outside_cap;
		sym->outside_cap *= 2;
		sym->outside = xcalloc(sym->outside_cap, sizeof *sym->outside);
		for (size_t i = 0; i < oldcap; i++)
			if (old[i].frame)
				sym->outside[outside_index(sym, old[i].addr, old[i].start, old[i].name)] = old[i];
		free(old);
	}
	struct jit_slot *slot = &sym->outside[outside_index(sym, addr, start, name)];
	if (!slot->frame) {
		struct sym_frame *f = xcalloc(1, sizeof *f);
		slot->addr = addr;
		slot->start = start;
		slot->name = name ? xstrdup(name) : NULL;
		f->function = slot->name ? slot->name : "??";
		f->module = slot->name ? "[jit]" : "?";
		f->address = addr;
		f->offset = addr - start;
		f->lacks = SYM_LACKS_NOTHING;   /* no file could give it a line */
		slot->frame = f;
		sym->outside_used++;
	}
	return slot->frame;
}

const struct sym_frame *symbolize_addr(struct symbolizer *sym, const struct snapshot *s,
				       uint64_t addr, uint32_t epoch, int is_return, size_t *nframes)
{
	if (hd_frame_is_python(addr)) {   /* not an address: a Python frame */
		*nframes = 1;
		return pyframe_symbolize(sym->py, s, addr);
	}
	const struct hd_module *hm = snapshot_module_of(s, addr, epoch);

	if (!hm) {
		*nframes = 1;
		return outside_frame(sym, s, addr);
	}
	struct sym_module *m = module_get(sym, s, hm);
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
			e->frames[i].lacks = e->frames[i].file ? SYM_LACKS_NOTHING : module_lack(m);
		}
	}
	/* The runtime address differs per snapshot; the rest is shared. */
	for (size_t i = 0; i < e->n; i++)
		e->frames[i].address = addr;
	*nframes = e->n;
	return e->frames;
}

void symbolize_module_files(struct symbolizer *sym, const struct snapshot *s, const struct hd_module *hm,
			    struct sym_files *f)
{
	struct sym_module *m = module_get(sym, s, hm);
	int ok = m->state == MOD_OK;

	memset(f, 0, sizeof *f);
	f->file = ok ? m->file : NULL;
	f->debug = ok ? m->debug_path : NULL;
	f->alt = ok ? m->alt_path : NULL;
	f->alt_id = m->alt_path ? m->alt_id : NULL;
}
