/*
 * util.c - errors, memory, strings and sizes for the analyzer.
 */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int verror(const char *fmt, va_list ap)
{
	fputs("heapdelta: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	return -1;
}

int error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(fmt, ap);
	va_end(ap);
	return -1;
}

void warning(const char *fmt, ...)
{
	va_list ap;

	fputs("heapdelta: warning: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

FILE *output_open(const char *path)
{
	FILE *f;

	if (!path)
		return stdout;
	if (!(f = fopen(path, "w")))
		error("cannot write '%s': %s", path, strerror(errno));
	return f;
}

int output_close(FILE *out, const char *path)
{
	int bad = fflush(out) != 0 || ferror(out);

	if (out != stdout)
		bad |= fclose(out) != 0;
	return bad ? error("cannot write '%s': %s", path ? path : "standard output", strerror(errno)) : 0;
}

static void oom(size_t n)
{
	error("out of memory allocating %zu bytes", n);
	exit(2);
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *xcalloc(size_t n, size_t m)
{
	void *p = calloc(n ? n : 1, m ? m : 1);
	if (!p)
		oom(n * m);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		oom(strlen(fmt));
	va_end(ap);
	return s;
}

void strbuf_add(struct strbuf *sb, const char *s, size_t n)
{
	if (sb->len + n + 1 > sb->cap) {
		sb->cap = (sb->len + n + 1) * 2;
		sb->buf = xrealloc(sb->buf, sb->cap);
	}
	memcpy(sb->buf + sb->len, s, n);
	sb->len += n;
	sb->buf[sb->len] = 0;
}

void strbuf_adds(struct strbuf *sb, const char *s)
{
	strbuf_add(sb, s, strlen(s));
}

void strbuf_addf(struct strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	char small[256];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < (int)sizeof small) {
		strbuf_add(sb, small, (size_t)n);
		return;
	}
	char *big = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	strbuf_add(sb, big, (size_t)n);
	free(big);
}

void strbuf_release(struct strbuf *sb)
{
	free(sb->buf);
	sb->buf = NULL;
	sb->len = sb->cap = 0;
}

char *format_size(char *buf, double size, int sign)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };

	for (int i = 0; i < 5; i++) {
		if (fabs(size) < 100 && i) {
			snprintf(buf, 32, sign ? "%+.1f %s" : "%.1f %s", size, units[i]);
			return buf;
		}
		if (fabs(size) < 10 * 1024 || i == 4) {
			snprintf(buf, 32, sign ? "%+.0f %s" : "%.0f %s", size, units[i]);
			return buf;
		}
		size /= 1024;
	}
	return buf;
}

int parse_size(const char *s, uint64_t *out)
{
	static const struct { const char *unit; double mult; } units[] = {
		{ "", 1 }, { "b", 1 },
		{ "k", 1024.0 }, { "kib", 1024.0 }, { "kb", 1e3 },
		{ "m", 1048576.0 }, { "mib", 1048576.0 }, { "mb", 1e6 },
		{ "g", 1073741824.0 }, { "gib", 1073741824.0 }, { "gb", 1e9 },
		{ "t", 1099511627776.0 }, { "tib", 1099511627776.0 }, { "tb", 1e12 },
	};
	char *end;
	char unit[8];
	size_t n = 0;

	if (!s || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || v < 0)
		return -1;
	while (*end == ' ')
		end++;
	for (; *end && n < sizeof unit - 1; end++)
		unit[n++] = (char)tolower((unsigned char)*end);
	unit[n] = 0;
	if (*end)
		return -1;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
		if (strcmp(unit, units[i].unit) == 0) {
			double bytes = v * units[i].mult;
			if (bytes > 1.8e19)
				return -1;
			*out = (uint64_t)llround(bytes);
			return 0;
		}
	return -1;
}

int parse_count(const char *s, long max, long *out)
{
	char *end;
	long v;

	if (!s || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < 0 || v > max)
		return -1;
	*out = v;
	return 0;
}

static uint64_t str_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3u;
	return h;
}

uint64_t strmap_get(struct strmap *m, const char *key, uint64_t next, int *fresh)
{
	if (2 * (m->n + 1) > m->cap) {
		struct strmap old = *m;
		m->cap = m->cap ? 2 * m->cap : 1024;
		m->keys = xcalloc(m->cap, sizeof *m->keys);
		m->vals = xcalloc(m->cap, sizeof *m->vals);
		m->n = 0;
		for (size_t i = 0; i < old.cap; i++) {
			if (!old.keys[i])
				continue;
			size_t k = str_hash(old.keys[i]) & (m->cap - 1);
			while (m->keys[k])
				k = (k + 1) & (m->cap - 1);
			m->keys[k] = old.keys[i];
			m->vals[k] = old.vals[i];
			m->n++;
		}
		free(old.keys);
		free(old.vals);
	}
	size_t k = str_hash(key) & (m->cap - 1);
	while (m->keys[k]) {
		if (!strcmp(m->keys[k], key)) {
			*fresh = 0;
			return m->vals[k];
		}
		k = (k + 1) & (m->cap - 1);
	}
	m->keys[k] = xstrdup(key);
	m->vals[k] = next;
	m->n++;
	*fresh = 1;
	return next;
}

void strmap_release(struct strmap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->keys[i]);
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof *m);
}

char *config_line(char *buf)
{
	char *l = buf, *end;

	while (isspace((unsigned char)*l))
		l++;
	end = l + strlen(l);
	while (end > l && isspace((unsigned char)end[-1]))
		*--end = 0;
	return *l && *l != '#' ? l : NULL;
}
