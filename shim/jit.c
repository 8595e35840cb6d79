/*
 * jit.c - names for JIT-compiled code, from the perf map the runtime writes
 * (/tmp/perf-PID.map: Node.js with --perf-basic-prof, the JVM's perf-map
 * agents, .NET with DOTNET_PerfMapEnabled=1, CPython 3.12 with -X perf),
 * copied into the snapshot for the frames that need them (format/FORMAT.md,
 * the JIT section): by the time anyone analyzes, the file may be gone, or
 * rewritten by another process of the same pid.
 *
 * The map is text, one entry a line, "START SIZE name", START and SIZE in
 * hexadecimal (an "0x" is accepted).  Runtimes only append to it: code
 * that moves, or is freed and its address reused, gets a new line, so for
 * an address the last line that covers it is the one in force.  At a
 * snapshot, each return address of the stacks new in it that lies outside
 * every module is looked up in the map as it is then, and gets the last
 * line covering it; lines that cover none are not kept.
 *
 * Workload: once per snapshot, and the file is opened only when such
 * frames exist (never in a program without JIT code).  The cost is
 * lines x log(addresses looked up).  Memory: the file (at most its last
 * JIT_MAP_MAX bytes) read into memory from hds_map() with open and pread,
 * given back before returning: no malloc, no stdio, nothing that is not
 * async-signal-safe (the exit snapshot may be written from _exit).
 *
 * Hazards:
 *  - the runtime may be appending while we read: only the bytes up to the
 *    size fstat gave are used, and a last line without its newline is left
 *    for the next snapshot;
 *  - /tmp is anyone's: the file is opened without following a symbolic
 *    link and without blocking (a FIFO planted under that name), and used
 *    only when it is a regular file owned by the process's effective user
 *    or by root (perf's own rule for these files);
 *  - a malformed line is skipped; a name is cut at JIT_NAME_MAX bytes.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define JIT_MAP_MAX  (UINT64_C(64) << 20)   /* bytes of the map read: its last 64 MiB */
#define JIT_NAME_MAX 4096

struct pair {        /* sorted by hds_sort_pairs: by line, then address */
	uint64_t line;   /* offset of the covering line in the buffer, plus 1 */
	uint64_t addr;
};
_Static_assert(sizeof(struct pair) == 16, "two words, as hds_sort_pairs sorts");

/* ---- sorting without libc's qsort (it may call malloc) -------------------- */

/* ---- reading the map ------------------------------------------------------- */

/* A hexadecimal number at *p (up to `end`), an "0x" allowed; 0 on success
 * with *p past it, -1 when there is none or it overflows. */
static int hex(const char **p, const char *end, uint64_t *v)
{
	const char *c = *p;
	uint64_t r = 0;
	int digits = 0;

	if (end - c > 2 && c[0] == '0' && (c[1] == 'x' || c[1] == 'X'))
		c += 2;
	for (; c < end; c++, digits++) {
		int d = *c >= '0' && *c <= '9' ? *c - '0' : *c >= 'a' && *c <= 'f' ? *c - 'a' + 10
			: *c >= 'A' && *c <= 'F' ? *c - 'A' + 10 : -1;
		if (d < 0)
			break;
		if (r >> 60)
			return -1;
		r = r << 4 | (uint64_t)d;
	}
	if (!digits)
		return -1;
	*p = c;
	*v = r;
	return 0;
}

/* One line [p, end) (without its newline): 0 with the entry, -1 when it
 * is not "START SIZE name". */
static int parse_line(const char *p, const char *end, uint64_t *start, uint64_t *size, const char **name,
		      size_t *name_len)
{
	if (hex(&p, end, start) < 0 || p == end || *p != ' ')
		return -1;
	p++;
	if (hex(&p, end, size) < 0 || p == end || *p != ' ')
		return -1;
	p++;
	while (end > p && (end[-1] == '\r' || end[-1] == ' '))
		end--;
	if (!*size || *start > UINT64_MAX - *size)
		return -1;
	*name = p;
	*name_len = (size_t)(end - p) < JIT_NAME_MAX ? (size_t)(end - p) : JIT_NAME_MAX;
	return 0;
}

/* /tmp/perf-PID.map of this process into path (64 bytes). */
static void map_path(char *path)
{
	char *p = path;

	memcpy(p, "/tmp/perf-", 10);
	p = hds_put_dec(p + 10, (uint64_t)hds.pid);
	memcpy(p, ".map", 5);
}

int hds_jit_map_exists(void)
{
	char path[64];

	map_path(path);
	return faccessat(AT_FDCWD, path, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

/* The map of this process, read into memory from hds_map (*len bytes,
 * *cap mapped); NULL when there is none we may use. */
static char *read_map(size_t *len, size_t *cap)
{
	char path[64];
	struct stat st;

	map_path(path);
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_uid != geteuid() && st.st_uid != 0) ||
	    st.st_size <= 0) {
		close(fd);
		return NULL;
	}
	uint64_t size = (uint64_t)st.st_size, from = size > JIT_MAP_MAX ? size - JIT_MAP_MAX : 0;
	*cap = (size_t)(size - from) + 1;
	char *buf = hds_map(*cap);
	size_t got = 0;
	while (buf && got < size - from) {
		ssize_t n = pread(fd, buf + got, (size_t)(size - from) - got, (off_t)(from + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (!buf)
		return NULL;
	size_t skip = 0;
	if (from) {   /* read from the middle of a line: start at the next */
		while (skip < got && buf[skip] != '\n')
			skip++;
		skip = skip < got ? skip + 1 : got;
		memmove(buf, buf + skip, got - skip);
		got -= skip;
	}
	*len = got;
	return buf;
}

/* ---- the section -------------------------------------------------------------- */

/* Index of the first of v[0..n) (sorted) that is >= a. */
static size_t lower_bound(const struct pair *v, size_t n, uint64_t a)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid].addr < a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

unsigned char *hds_jit_encode(const uint64_t *addrs, size_t n, size_t *len, size_t *cap)
{
	size_t map_len = 0, map_cap = 0, pairs_cap = sizeof(struct pair) * (n ? n : 1), k = 0;
	unsigned char *out = NULL;
	char *map = NULL;
	struct pair *v = NULL;

	*len = *cap = 0;
	if (!n || !(v = hds_map(pairs_cap)))
		return NULL;
	/* The addresses, sorted and each once (line 0: not covered yet). */
	for (size_t i = 0; i < n; i++)
		v[i] = (struct pair){ 0, addrs[i] };
	hds_sort_pairs(v, n);
	for (size_t i = 0; i < n; i++)
		if (!k || v[i].addr != v[k - 1].addr)
			v[k++] = v[i];
	n = k;
	if (!(map = read_map(&map_len, &map_cap)))
		goto done;

	/* Each line, in file order, claims the addresses it covers: the last
	 * line covering an address is its entry. */
	for (size_t at = 0; at < map_len;) {
		const char *nl = memchr(map + at, '\n', map_len - at);
		if (!nl)
			break;   /* being written: left for the next snapshot */
		uint64_t start, size;
		const char *name;
		size_t name_len;
		if (parse_line(map + at, nl, &start, &size, &name, &name_len) == 0)
			for (size_t i = lower_bound(v, n, start); i < n && v[i].addr - start < size; i++)
				v[i].line = at + 1;
		at = (size_t)(nl - map) + 1;
	}

	/* Group the covered addresses by line. */
	k = 0;
	for (size_t i = 0; i < n; i++)
		if (v[i].line)
			v[k++] = v[i];
	if (!k)
		goto done;
	hds_sort_pairs(v, k);
	size_t need = 4;
	uint32_t entries = 0;
	for (size_t i = 0; i < k; i++) {
		if (i && v[i].line == v[i - 1].line) {
			need += 8;
			continue;
		}
		const char *line = map + v[i].line - 1, *nl = memchr(line, '\n', map_len - (size_t)(line - map));
		uint64_t start, size;
		const char *name;
		size_t name_len;
		parse_line(line, nl, &start, &size, &name, &name_len);
		need += 8 + 8 + 4 + name_len + 4 + 8;
		entries++;
	}
	if (!(out = hds_map(need)))
		goto done;
	unsigned char *o = hd_put_u32(out, entries);
	for (size_t i = 0; i < k;) {
		const char *line = map + v[i].line - 1, *nl = memchr(line, '\n', map_len - (size_t)(line - map));
		uint64_t start, size;
		const char *name;
		size_t name_len, j = i;
		parse_line(line, nl, &start, &size, &name, &name_len);
		while (j < k && v[j].line == v[i].line)
			j++;
		o = hd_put_u64(o, start);
		o = hd_put_u64(o, size);
		o = hd_put_u32(o, (uint32_t)name_len);
		memcpy(o, name, name_len);
		o += name_len;
		o = hd_put_u32(o, (uint32_t)(j - i));
		for (; i < j; i++)
			o = hd_put_u64(o, v[i].addr);
	}
	*len = (size_t)(o - out);
	*cap = need;
done:
	if (map)
		hds_unmap(map, map_cap);
	hds_unmap(v, pairs_cap);
	return out;
}
