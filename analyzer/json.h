/*
 * json.h - the one JSON emitter every JSON output is written with (in the
 * spirit of jemalloc's emitter.h): a writer says what comes (begin an
 * object, a key, a value, end it) and the emitter writes the commas, the
 * quotes and the escapes.
 *
 * Layout stays the writer's, so outputs keep their shape byte for byte:
 * items are separated by ", " (by "," in a container marked compact), a key
 * is followed by ": ", and json_break() puts the next separator, or the
 * close of the current container, on a new line with an indent.
 *
 *   json_object_begin(&j);
 *   json_kv_int(&j, "pid", 42);        {"pid": 42,
 *   json_break(&j, 1);                  "sizes": [1,2]}
 *   json_key(&j, "sizes");
 *   json_array_begin(&j);
 *   json_compact(&j);
 *   json_int(&j, 1);
 *   json_int(&j, 2);
 *   json_array_end(&j);
 *   json_object_end(&j);
 *
 * The emitter does not check the document: a key outside an object or an
 * unbalanced end writes what was asked (nesting deeper than JSON_MAX_DEPTH
 * keeps the separators of the deepest tracked level).
 */
#ifndef HD_JSON_H
#define HD_JSON_H

#include <stdint.h>
#include <stdio.h>

#include "util.h"

#define JSON_MAX_DEPTH 32

struct json {
	FILE *out;                 /* the sink: a stream, */
	struct strbuf *sb;         /* or a string */
	int depth;
	struct json_level {
		int items;             /* values written in this container so far */
		int compact;           /* separate them with "," */
	} level[JSON_MAX_DEPTH + 1];   /* [0]: the document */
	int brk;                   /* indent of a pending line break, or -1 */
	int after_key;             /* a key was written: its value comes next */
};

/* Emit to a stream, or append to a string. */
void json_init(struct json *j, FILE *out);
void json_init_strbuf(struct json *j, struct strbuf *sb);

void json_object_begin(struct json *j);
void json_object_end(struct json *j);
void json_array_begin(struct json *j);
void json_array_end(struct json *j);
/* The container just begun separates its items with "," alone. */
void json_compact(struct json *j);
/* The next separator (or the current container's close) ends the line and
 * indents the next one by `indent` spaces. */
void json_break(struct json *j, int indent);
/* How many items the current container holds so far. */
int json_items(const struct json *j);
/* A newline after the document. */
void json_end_line(struct json *j);

/* An object member's key; its value is the next value written. */
void json_key(struct json *j, const char *key);

/* Values.  json_string(NULL) writes null. */
void json_string(struct json *j, const char *s);
void json_int(struct json *j, int64_t v);
void json_uint(struct json *j, uint64_t v);
/* v with `decimals` digits after the point (printf's %.*f). */
void json_double(struct json *j, double v, int decimals);
void json_bool(struct json *j, int v);
void json_null(struct json *j);
/* v as a string of hexadecimal: "0x1f". */
void json_hex(struct json *j, uint64_t v);

/* Key and value in one call. */
void json_kv_string(struct json *j, const char *key, const char *s);
void json_kv_int(struct json *j, const char *key, int64_t v);
void json_kv_uint(struct json *j, const char *key, uint64_t v);
void json_kv_double(struct json *j, const char *key, double v, int decimals);
void json_kv_bool(struct json *j, const char *key, int v);
void json_kv_hex(struct json *j, const char *key, uint64_t v);

#endif /* HD_JSON_H */
