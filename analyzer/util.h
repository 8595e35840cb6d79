/*
 * util.h - small helpers shared by every analyzer file: errors, memory,
 * growable strings, sizes.
 */
#ifndef HD_UTIL_H
#define HD_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Print "heapdelta: MSG" on stderr and return -1, so callers can write
 * `return error(...)`. */
int error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* error() with a va_list. */
int verror(const char *fmt, va_list ap);
/* Like error() but prefixed "heapdelta: warning: "; returns nothing. */
void warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Where a command's -o/--output sends its report: path, created or
 * truncated, or standard output when path is NULL.  NULL after an error
 * line. */
FILE *output_open(const char *path);
/* Flush what output_open returned and close it unless it is standard
 * output; 0, or -1 after an error line naming the file. */
int output_close(FILE *out, const char *path);

/* Allocation that cannot fail: out of memory ends the analyzer (exit 2). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
/* A line of a configuration file (suppressions, allocation functions):
 * trimmed of surrounding white space in place; NULL when it is blank or a
 * '#' comment. */
char *config_line(char *buf);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A growable NUL-terminated string. */
struct strbuf {
	char *buf;
	size_t len, cap;
};
#define STRBUF_INIT { NULL, 0, 0 }
void strbuf_add(struct strbuf *sb, const char *s, size_t n);
void strbuf_adds(struct strbuf *sb, const char *s);
void strbuf_addf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_release(struct strbuf *sb);

/* A map from strings to numbers (open addressing; keys copied). */
struct strmap {
	char **keys;
	uint64_t *vals;
	size_t cap, n;
};
/* The value of key; when key is new, insert it with value `next` and set
 * *fresh. */
uint64_t strmap_get(struct strmap *m, const char *key, uint64_t next, int *fresh);
void strmap_release(struct strmap *m);

/* tracemalloc's _format_size: "123 B", "10.0 KiB", "1234 KiB"; with
 * sign, "+1.2 MiB".  Writes into buf (at least 32 bytes), returns buf. */
char *format_size(char *buf, double size, int sign);

/* Parse "10", "1.5MiB", "2 MB", "3k": B, KiB/MiB/GiB/TiB (powers of 1024),
 * KB/MB/GB/TB (powers of 1000), K/M/G/T (1024).  0 or -1. */
int parse_size(const char *s, uint64_t *out);

/* Parse a non-negative integer option value; 0 or -1. */
int parse_count(const char *s, long max, long *out);

#endif /* HD_UTIL_H */
