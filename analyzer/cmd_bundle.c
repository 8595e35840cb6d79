/*
 * cmd_bundle.c - `heapdelta bundle`: snapshots packed with the binaries and
 * debug files their frames need, in one tar file, so that they can be
 * analyzed on a machine that has none of them.
 *
 * The tar holds, at its top, the snapshot files (with the bases a version 2
 * snapshot builds on) and a .build-id tree: .build-id/xx/yyyy for each
 * module's binary (or the debug file the symbolizer used in its place),
 * .build-id/xx/yyyy.debug for its separate debug file and its dwz
 * alternate file.  The symbolizer looks in the .build-id tree beside a
 * snapshot, so `tar xf` and `heapdelta top SNAP` is all it takes.  The
 * files are those the symbolizer itself chose (symbolize_module_files):
 * found where the snapshot says, under --sysroot, by --map-path, in
 * --debug-dir or from debuginfod, checked to be regular ELF files with the
 * snapshot's build-id.  Only modules that a stack's frame points into are
 * packed.  ustar format, written beside the output and renamed into place.
 */
#include "alloc_fns.h"   /* options_join */
#include "cmd.h"
#include "symbolize.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TAR_BLOCK 512
#define TAR_MAX_SIZE 077777777777ULL   /* 11 octal digits: 8 GiB - 1 */

struct bundle {
	FILE *out;
	struct strmap names;           /* names in the tar already */
	int nsnaps, nfiles;
	uint64_t bytes;
};

/* v in octal, zero-padded to fill field[0 .. width - 1), then a NUL; v is
 * cut to what fits. */
static void octal(unsigned char *field, size_t width, uint64_t v)
{
	field[width - 1] = 0;
	for (size_t i = width - 1; i-- > 0; v >>= 3)
		field[i] = (unsigned char)('0' + (v & 7));
}

/* One ustar header for a regular file: 0, or -1 for a name too long. */
static int tar_header(struct bundle *b, const char *name, uint64_t size, time_t mtime)
{
	unsigned char h[TAR_BLOCK];
	unsigned sum = 0;

	if (strlen(name) >= 100)
		return error("'%s': name too long for the bundle", name);
	memset(h, 0, sizeof h);
	memcpy(h, name, strlen(name));
	octal(h + 100, 8, 0644);
	octal(h + 108, 8, 0);
	octal(h + 116, 8, 0);
	octal(h + 124, 12, size);
	octal(h + 136, 12, mtime > 0 && (uint64_t)mtime <= TAR_MAX_SIZE ? (uint64_t)mtime : 0);
	memset(h + 148, ' ', 8);
	h[156] = '0';
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	for (size_t i = 0; i < sizeof h; i++)
		sum += h[i];
	octal(h + 148, 7, sum);
	h[155] = ' ';
	fwrite(h, 1, sizeof h, b->out);
	return 0;
}

/* Add the file at path as name (once: a name already in is skipped).  The
 * file is read as a regular file opened without blocking.  0, or -1 after
 * an error line. */
static int add_file(struct bundle *b, const char *path, const char *name, int snapshot)
{
	char buf[65536];
	struct stat st;
	int fresh;

	strmap_get(&b->names, name, 1, &fresh);
	if (!fresh)
		return 0;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return error("cannot read '%s': %s", path, strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return error("'%s' is not a regular file", path);
	}
	if ((uint64_t)st.st_size > TAR_MAX_SIZE) {
		close(fd);
		return error("'%s' is larger than the bundle's format takes (8 GiB)", path);
	}
	if (tar_header(b, name, (uint64_t)st.st_size, st.st_mtime) < 0) {
		close(fd);
		return -1;
	}
	uint64_t left = (uint64_t)st.st_size;
	while (left) {
		ssize_t n = read(fd, buf, left < sizeof buf ? left : sizeof buf);
		if (n <= 0) {
			close(fd);
			return error("cannot read '%s': %s", path, n < 0 ? strerror(errno) : "it became shorter");
		}
		fwrite(buf, 1, (size_t)n, b->out);
		left -= (uint64_t)n;
	}
	close(fd);
	static const char zeros[TAR_BLOCK];
	fwrite(zeros, 1, (TAR_BLOCK - (size_t)st.st_size % TAR_BLOCK) % TAR_BLOCK, b->out);
	b->bytes += (uint64_t)st.st_size;
	if (snapshot)
		b->nsnaps++;
	else
		b->nfiles++;
	return 0;
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

/* .build-id/xx/yyyySUFFIX for a hex build-id. */
static char *id_name(const char *hexid, const char *suffix)
{
	return xasprintf(".build-id/%.2s/%s%s", hexid, hexid + 2, suffix);
}

/* The file of snapshot seq of process pid in dir, or NULL. */
static char *find_base(const char *dir, uint64_t pid, uint64_t seq)
{
	char *prefix = xasprintf("%s/heapdelta.%llu.%llu.", dir, (unsigned long long)pid, (unsigned long long)seq);
	char *found = NULL, **paths = NULL;
	char *args[1] = { (char *)dir };
	int n = 0;

	if (snapshot_paths(args, 1, &paths, &n) == 0)
		for (int i = 0; i < n; i++) {
			if (!found && !strncmp(paths[i], prefix, strlen(prefix)))
				found = xstrdup(paths[i]);
			free(paths[i]);
		}
	free(paths);
	free(prefix);
	return found;
}

/* The snapshot at path, its chain of bases, and the files of the modules
 * its stacks point into. */
static int add_snapshot(struct bundle *b, struct symbolizer *sym, const char *path)
{
	struct snapshot s;
	struct strmap seen = { 0 };
	int rc = 0;

	if (snapshot_load(path, &s) < 0)
		return -1;
	if (add_file(b, path, base_name(path), 1) < 0) {
		snapshot_release(&s);
		return -1;
	}
	/* Version 2: the bases it builds on, found as the reader finds them. */
	char *dir = xstrndup(path, strrchr(path, '/') ? (size_t)(strrchr(path, '/') - path) : 1);
	if (!strrchr(path, '/'))
		strcpy(dir, ".");
	uint64_t base = s.meta[HD_META_BASE_SEQ];
	while (!rc && base) {
		char *bp = find_base(dir, s.meta[HD_META_PID], base);
		struct snapshot bs;
		if (!bp || snapshot_load(bp, &bs) < 0) {
			rc = bp ? -1 : error("snapshot %llu of pid %llu, the base of '%s', is missing",
					     (unsigned long long)base, (unsigned long long)s.meta[HD_META_PID], path);
			free(bp);
			break;
		}
		rc = add_file(b, bp, base_name(bp), 1);
		base = bs.meta[HD_META_BASE_SEQ] < base ? bs.meta[HD_META_BASE_SEQ] : 0;
		snapshot_release(&bs);
		free(bp);
	}
	free(dir);
	for (uint32_t i = 0; !rc && i < s.nstacks; i++) {
		const struct hd_stack *st = &s.stacks[i];
		for (uint32_t k = 0; !rc && k < st->depth; k++) {
			if (hd_frame_is_python(st->frames[k]))
				continue;
			const struct hd_module *hm = snapshot_module_of(&s, st->frames[k], st->epoch);
			if (!hm || !hm->build_id_len || !hm->path[0])
				continue;
			char id[2 * HD_MAX_BUILD_ID + 1];
			for (uint32_t j = 0; j < hm->build_id_len; j++)
				sprintf(id + 2 * j, "%02x", hm->build_id[j]);
			int fresh;
			strmap_get(&seen, id, 1, &fresh);
			if (!fresh)
				continue;
			struct sym_files f;
			symbolize_module_files(sym, &s, hm, &f);
			char *names[3] = { id_name(id, ""), id_name(id, ".debug"), f.alt_id ? id_name(f.alt_id, ".debug") : NULL };
			const char *paths[3] = { f.file, f.debug, f.alt };
			for (int j = 0; j < 3; j++) {
				if (!rc && paths[j])
					rc = add_file(b, paths[j], names[j], 0);
				free(names[j]);
			}
		}
	}
	strmap_release(&seen);
	snapshot_release(&s);
	return rc;
}

int cmd_bundle(int argc, char **argv)
{
	static const struct option own[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct option *opts;   /* own and symbolize_options, joined once */
	const char *output = NULL;
	int c;

	if (!opts)
		opts = options_join(own, symbolize_options);
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
		if (symbolize_owns(c)) {
			if (symbolize_option("bundle", c, optarg) < 0)
				return EXIT_USAGE;
			continue;
		}
		switch (c) {
		case 'o': output = optarg; break;
		case 'h': return show_help("bundle");
		case ':': return usage_error("bundle", "option '%s' needs a value", argv[optind - 1]);
		default: return usage_error("bundle", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (!output)
		return usage_error("bundle", "no output file: give -o FILE.tar");
	if (optind >= argc)
		return usage_error("bundle", "expected snapshot files or a directory of them");

	char **paths = NULL;
	int n = 0;
	if (snapshot_paths(argv + optind, argc - optind, &paths, &n) < 0)
		return EXIT_USAGE;
	char *tmp = xasprintf("%s.tmp%ld", output, (long)getpid());
	struct bundle b = { 0 };
	int rc = 0;
	b.out = fopen(tmp, "wbx");
	if (!b.out)
		rc = error("cannot write '%s': %s", tmp, strerror(errno));
	struct symbolizer *sym = rc ? NULL : symbolizer_new();
	for (int i = 0; !rc && i < n; i++)
		rc = add_snapshot(&b, sym, paths[i]);
	symbolizer_free(sym);
	if (!rc) {
		static const char end[2 * TAR_BLOCK];
		fwrite(end, 1, sizeof end, b.out);
	}
	if (b.out && (fclose(b.out) != 0) && !rc)
		rc = error("cannot write '%s': %s", tmp, strerror(errno));
	if (!rc && rename(tmp, output) != 0)
		rc = error("cannot write '%s': %s", output, strerror(errno));
	if (rc && b.out)
		unlink(tmp);
	if (!rc) {
		char size[32];
		fprintf(stderr, "heapdelta: wrote %s (%d snapshot file%s, %d module file%s, %s)\n", output, b.nsnaps,
			b.nsnaps == 1 ? "" : "s", b.nfiles, b.nfiles == 1 ? "" : "s", format_size(size, (double)b.bytes, 0));
	}
	strmap_release(&b.names);
	for (int i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
	free(tmp);
	return rc ? EXIT_USAGE : EXIT_OK;
}
