/*
 * snapshot.c - the snapshot reader.  Every read is bounds-checked against
 * its section and the file; every count is checked against the bytes left
 * before anything is allocated for it, so a corrupt or hostile file costs
 * at most its own size in memory and ends in one error line, never a crash.
 */
#include "snapshot.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILE (UINT64_C(4) << 30)

struct cursor {
	const unsigned char *data;
	size_t pos, end;          /* absolute offsets into data */
	const char *path;
};

static int bad(const struct cursor *c, size_t at, const char *what)
{
	return error("'%s': byte %zu: %s", c->path, at, what);
}

static int need(const struct cursor *c, size_t n, const char *what)
{
	if (c->end - c->pos < n) {
		char msg[256];
		snprintf(msg, sizeof msg, "truncated: %zu bytes left, %zu needed, reading %s",
			 c->end - c->pos, n, what);
		return bad(c, c->pos, msg);
	}
	return 0;
}

static int rd_u16(struct cursor *c, uint16_t *v, const char *what)
{
	if (need(c, 2, what)) return -1;
	*v = hd_get_u16(c->data + c->pos);
	c->pos += 2;
	return 0;
}

static int rd_u32(struct cursor *c, uint32_t *v, const char *what)
{
	if (need(c, 4, what)) return -1;
	*v = hd_get_u32(c->data + c->pos);
	c->pos += 4;
	return 0;
}

static int rd_u64(struct cursor *c, uint64_t *v, const char *what)
{
	if (need(c, 8, what)) return -1;
	*v = hd_get_u64(c->data + c->pos);
	c->pos += 8;
	return 0;
}

static int rd_string(struct cursor *c, char **out, const char *what)
{
	uint32_t len;

	if (rd_u32(c, &len, what) || need(c, len, what))
		return -1;
	*out = xstrndup((const char *)c->data + c->pos, len);
	c->pos += len;
	return 0;
}

/* A count of items each at least `min` bytes long must fit in what is left. */
static int check_count(const struct cursor *c, uint64_t n, size_t min, const char *what)
{
	if (n > (c->end - c->pos) / min) {
		char msg[256];
		snprintf(msg, sizeof msg, "%s count %llu does not fit in the %zu bytes left",
			 what, (unsigned long long)n, c->end - c->pos);
		return bad(c, c->pos - 4, msg);
	}
	return 0;
}

static int parse_meta(struct cursor *c, struct snapshot *s)
{
	size_t len = c->end - c->pos;

	if (len % 8)
		return bad(c, c->pos, "META section length is not a multiple of 8");
	for (size_t i = 0; i < len / 8; i++) {
		uint64_t v;
		if (rd_u64(c, &v, "META field"))
			return -1;
		if (i < HD_META_NFIELDS)
			s->meta[i] = v;
	}
	return 0;
}

static int parse_strings(struct cursor *c, struct snapshot *s)
{
	uint32_t n;

	if (rd_u32(c, &n, "string count") || check_count(c, n, 4, "string"))
		return -1;
	if (n < 2)
		return bad(c, c->pos - 4, "STRINGS section has fewer than 2 strings (label, executable)");
	if (rd_string(c, &s->label, "label") || rd_string(c, &s->exe, "executable path"))
		return -1;
	s->argc = n - 2;
	s->argv = xcalloc(s->argc + 1, sizeof *s->argv);
	for (uint32_t i = 0; i < s->argc; i++)
		if (rd_string(c, &s->argv[i], "argv"))
			return -1;
	return 0;
}

static int parse_modules(struct cursor *c, struct snapshot *s)
{
	uint32_t n;

	if (rd_u32(c, &n, "module count") || check_count(c, n, 24, "module"))
		return -1;
	s->modules = xcalloc(n, sizeof *s->modules);
	s->nmodules = n;
	for (uint32_t i = 0; i < n; i++) {
		struct hd_module *m = &s->modules[i];
		if (rd_u64(c, &m->base, "module base") || rd_u32(c, &m->flags, "module flags") ||
		    rd_u32(c, &m->build_id_len, "build-id length"))
			return -1;
		if (m->build_id_len > HD_MAX_BUILD_ID)
			return bad(c, c->pos - 4, "build-id longer than 64 bytes");
		if (need(c, m->build_id_len, "build-id"))
			return -1;
		memcpy(m->build_id, c->data + c->pos, m->build_id_len);
		c->pos += m->build_id_len;
		if (rd_u32(c, &m->nseg, "segment count"))
			return -1;
		if (m->nseg > HD_MAX_SEGMENTS)
			return bad(c, c->pos - 4, "more than 64 segments in a module");
		if (check_count(c, m->nseg, 28, "segment"))
			return -1;
		m->seg = xcalloc(m->nseg, sizeof *m->seg);
		for (uint32_t k = 0; k < m->nseg; k++)
			if (rd_u64(c, &m->seg[k].start, "segment start") ||
			    rd_u64(c, &m->seg[k].size, "segment size") ||
			    rd_u64(c, &m->seg[k].offset, "segment offset") ||
			    rd_u32(c, &m->seg[k].flags, "segment flags"))
				return -1;
		if (rd_string(c, &m->path, "module path"))
			return -1;
	}
	return 0;
}

static int parse_stacks(struct cursor *c, struct snapshot *s)
{
	uint32_t n;
	const size_t rec = 4 + 2 + 2 + 32;

	if (rd_u32(c, &n, "stack count") || check_count(c, n, rec, "stack"))
		return -1;
	/* Every frame is 8 bytes of the section: this bounds the pool. */
	size_t max_frames = (c->end - c->pos - (size_t)n * rec) / 8;
	s->frame_pool = xcalloc(max_frames + 1, sizeof *s->frame_pool);
	s->stacks = xcalloc(n, sizeof *s->stacks);
	s->nstacks = n;
	size_t used = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct hd_stack *st = &s->stacks[i];
		if (rd_u32(c, &st->id, "stack id") || rd_u16(c, &st->depth, "stack depth") ||
		    rd_u16(c, &st->flags, "stack flags") || rd_u64(c, &st->live_bytes, "stack live bytes") ||
		    rd_u64(c, &st->live_count, "stack live count") || rd_u64(c, &st->alloc_bytes, "stack allocated bytes") ||
		    rd_u64(c, &st->alloc_count, "stack allocated count"))
			return -1;
		if (st->depth > HD_MAX_DEPTH)
			return bad(c, c->pos - 36, "stack depth above 256");
		if (need(c, (size_t)st->depth * 8, "stack frames"))
			return -1;
		/* The frames must leave room for the records still to come. */
		if (used + st->depth > max_frames)
			return bad(c, c->pos, "stack frames run into the records that follow");
		if (st->live_count > st->alloc_count)
			return bad(c, c->pos - 16, "stack has more live blocks than it ever allocated");
		st->frames = s->frame_pool + used;
		for (int k = 0; k < st->depth; k++)
			rd_u64(c, &st->frames[k], "frame");
		used += st->depth;
	}
	return 0;
}

int snapshot_parse(const char *path, const unsigned char *data, size_t len, struct snapshot *s)
{
	struct cursor c = { data, 0, len, path };
	uint32_t version, tag, reserved;
	uint64_t slen;
	int seen_meta = 0, seen_end = 0;

	memset(s, 0, sizeof *s);
	s->path = xstrdup(path);
	if (len == 0)
		return bad(&c, 0, "empty file");
	if (len < HD_MAGIC_LEN || memcmp(data, HD_MAGIC, HD_MAGIC_LEN) != 0)
		return bad(&c, 0, "not a heapdelta snapshot (wrong magic)");
	c.pos = HD_MAGIC_LEN;
	if (rd_u32(&c, &version, "format version"))
		return -1;
	if (version != HD_VERSION) {
		char msg[128];
		snprintf(msg, sizeof msg, "format version %u is not supported (this heapdelta reads version %d)",
			 version, HD_VERSION);
		return bad(&c, 8, msg);
	}
	if (rd_u32(&c, &reserved, "header flags"))
		return -1;

	while (!seen_end) {
		size_t at = c.pos;
		if (c.pos == c.end)
			return bad(&c, at, "truncated: file ends before the END section");
		if (rd_u32(&c, &tag, "section tag") || rd_u32(&c, &reserved, "section header") ||
		    rd_u64(&c, &slen, "section length"))
			return -1;
		if (slen > c.end - c.pos) {
			char msg[160];
			snprintf(msg, sizeof msg, "truncated: section %u claims %llu bytes, %zu left",
				 tag, (unsigned long long)slen, c.end - c.pos);
			return bad(&c, at, msg);
		}
		struct cursor sec = { data, c.pos, c.pos + (size_t)slen, path };
		int rc = 0;
		switch (tag) {
		case HD_SEC_META:    rc = parse_meta(&sec, s); seen_meta = 1; break;
		case HD_SEC_STRINGS: rc = s->exe ? bad(&c, at, "second STRINGS section") : parse_strings(&sec, s); break;
		case HD_SEC_MODULES: rc = s->modules ? bad(&c, at, "second MODULES section") : parse_modules(&sec, s); break;
		case HD_SEC_STACKS:  rc = s->stacks ? bad(&c, at, "second STACKS section") : parse_stacks(&sec, s); break;
		case HD_SEC_END:     seen_end = 1; break;
		default:             break;  /* a newer writer's section: skip */
		}
		if (rc)
			return -1;
		if (tag != HD_SEC_END && sec.pos != sec.end && (tag == HD_SEC_STRINGS || tag == HD_SEC_MODULES || tag == HD_SEC_STACKS))
			return bad(&sec, sec.pos, "section has bytes after its last record");
		c.pos += (size_t)slen;
	}
	if (c.pos != c.end)
		return bad(&c, c.pos, "data after the END section");
	if (!seen_meta)
		return bad(&c, HD_FILE_HDR_LEN, "no META section");
	if (!s->exe) {
		s->exe = xstrdup("");
		s->label = xstrdup("");
		s->argv = xcalloc(1, sizeof *s->argv);
	}
	return 0;
}

int snapshot_load(const char *path, struct snapshot *s)
{
	struct stat st;
	unsigned char *data;
	size_t done = 0;
	int fd, rc;

	memset(s, 0, sizeof *s);
	/* O_NONBLOCK: a FIFO named like a snapshot (in a directory the traced
	 * program could write to) must be refused below, not waited on. */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return error("cannot open '%s': %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return error("'%s' is not a regular file", path);
	}
	if ((uint64_t)st.st_size > MAX_FILE) {
		close(fd);
		return error("'%s' is larger than 4 GiB; not a snapshot", path);
	}
	data = xmalloc((size_t)st.st_size + 1);
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, data + done, (size_t)st.st_size - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	close(fd);
	rc = snapshot_parse(path, data, done, s);
	free(data);
	return rc;
}

void snapshot_release(struct snapshot *s)
{
	free(s->path);
	free(s->label);
	free(s->exe);
	for (uint32_t i = 0; s->argv && i < s->argc; i++)
		free(s->argv[i]);
	free(s->argv);
	for (uint32_t i = 0; s->modules && i < s->nmodules; i++) {
		free(s->modules[i].seg);
		free(s->modules[i].path);
	}
	free(s->modules);
	free(s->stacks);
	free(s->frame_pool);
	memset(s, 0, sizeof *s);
}

const struct hd_module *snapshot_module_of(const struct snapshot *s, uint64_t addr)
{
	const struct hd_module *unloaded = NULL;

	for (uint32_t i = 0; i < s->nmodules; i++) {
		const struct hd_module *m = &s->modules[i];
		for (uint32_t k = 0; k < m->nseg; k++) {
			if (addr - m->seg[k].start < m->seg[k].size) {
				if (!(m->flags & HD_MOD_UNLOADED))
					return m;
				if (!unloaded)
					unloaded = m;
			}
		}
	}
	return unloaded;
}

int snapshot_paths(char **args, int nargs, char ***paths, int *npaths)
{
	for (int i = 0; i < nargs; i++) {
		struct stat st;
		if (stat(args[i], &st) < 0)
			return error("cannot open '%s': %s", args[i], strerror(errno));
		if (!S_ISDIR(st.st_mode)) {
			*paths = xrealloc(*paths, (size_t)(*npaths + 1) * sizeof **paths);
			(*paths)[(*npaths)++] = xstrdup(args[i]);
			continue;
		}
		DIR *d = opendir(args[i]);
		struct dirent *de;
		if (!d)
			return error("cannot open directory '%s': %s", args[i], strerror(errno));
		while ((de = readdir(d))) {
			size_t l = strlen(de->d_name);
			if (de->d_name[0] == '.' || l < 6 || strcmp(de->d_name + l - 5, ".snap"))
				continue;
			*paths = xrealloc(*paths, (size_t)(*npaths + 1) * sizeof **paths);
			(*paths)[(*npaths)++] = xasprintf("%s/%s", args[i], de->d_name);
		}
		closedir(d);
	}
	return 0;
}
