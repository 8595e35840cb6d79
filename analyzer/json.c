/*
 * json.c - the JSON emitter (json.h).  Separators are decided when the next
 * item comes, from the current container's state, so writers never track
 * "first" flags or strip trailing commas.
 */
#include "json.h"

#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

void json_init(struct json *j, FILE *out)
{
	memset(j, 0, sizeof *j);
	j->out = out;
	j->brk = -1;
}

void json_init_strbuf(struct json *j, struct strbuf *sb)
{
	json_init(j, NULL);
	j->sb = sb;
}

static void put(struct json *j, const char *s, size_t n)
{
	if (j->sb)
		strbuf_add(j->sb, s, n);
	else
		fwrite(s, 1, n, j->out);
}

static void put_str(struct json *j, const char *s)
{
	put(j, s, strlen(s));
}

static struct json_level *cur(struct json *j)
{
	return &j->level[j->depth < JSON_MAX_DEPTH ? j->depth : JSON_MAX_DEPTH];
}

static void newline(struct json *j)
{
	put_str(j, "\n");
	for (int i = 0; i < j->brk; i++)
		put_str(j, " ");
	j->brk = -1;
}

/* Before an item of the current container: its separator, unless it is the
 * value of a key just written. */
static void item(struct json *j)
{
	struct json_level *l = cur(j);

	if (j->after_key) {
		j->after_key = 0;
		return;
	}
	if (l->items)
		put_str(j, ",");
	if (j->brk >= 0)
		newline(j);
	else if (l->items && !l->compact)
		put_str(j, " ");
	l->items++;
}

static void begin(struct json *j, const char *open)
{
	item(j);
	put_str(j, open);
	j->depth++;
	*cur(j) = (struct json_level){ 0, 0 };
}

static void end(struct json *j, const char *close)
{
	if (j->brk >= 0)
		newline(j);
	put_str(j, close);
	if (j->depth > 0)
		j->depth--;
}

void json_object_begin(struct json *j) { begin(j, "{"); }
void json_object_end(struct json *j) { end(j, "}"); }
void json_array_begin(struct json *j) { begin(j, "["); }
void json_array_end(struct json *j) { end(j, "]"); }

void json_compact(struct json *j)
{
	cur(j)->compact = 1;
}

void json_break(struct json *j, int indent)
{
	j->brk = indent;
}

int json_items(const struct json *j)
{
	return j->level[j->depth < JSON_MAX_DEPTH ? j->depth : JSON_MAX_DEPTH].items;
}

void json_end_line(struct json *j)
{
	put_str(j, "\n");
}

/* s as a JSON string literal: quotes, backslashes and control characters
 * escaped; other bytes (UTF-8 included) as they are. */
static void quoted(struct json *j, const char *s)
{
	char esc[8];

	put_str(j, "\"");
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		switch (*c) {
		case '"':  put_str(j, "\\\""); break;
		case '\\': put_str(j, "\\\\"); break;
		case '\n': put_str(j, "\\n"); break;
		case '\t': put_str(j, "\\t"); break;
		case '\r': put_str(j, "\\r"); break;
		default:
			if (*c < 0x20 || *c == 0x7f) {
				snprintf(esc, sizeof esc, "\\u%04x", *c);
				put_str(j, esc);
			} else {
				put(j, (const char *)c, 1);
			}
		}
	}
	put_str(j, "\"");
}

void json_key(struct json *j, const char *key)
{
	item(j);
	quoted(j, key);
	put_str(j, ": ");
	j->after_key = 1;
}

void json_string(struct json *j, const char *s)
{
	item(j);
	if (s)
		quoted(j, s);
	else
		put_str(j, "null");
}

static void number(struct json *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void number(struct json *j, const char *fmt, ...)
{
	char buf[512];   /* %.9f of the largest double fits */
	va_list ap;

	item(j);
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	put_str(j, buf);
}

void json_int(struct json *j, int64_t v) { number(j, "%" PRId64, v); }
void json_uint(struct json *j, uint64_t v) { number(j, "%" PRIu64, v); }
void json_double(struct json *j, double v, int decimals) { number(j, "%.*f", decimals, v); }
void json_hex(struct json *j, uint64_t v) { number(j, "\"0x%" PRIx64 "\"", v); }

void json_bool(struct json *j, int v)
{
	item(j);
	put_str(j, v ? "true" : "false");
}

void json_null(struct json *j)
{
	item(j);
	put_str(j, "null");
}

void json_kv_string(struct json *j, const char *key, const char *s) { json_key(j, key); json_string(j, s); }
void json_kv_int(struct json *j, const char *key, int64_t v) { json_key(j, key); json_int(j, v); }
void json_kv_uint(struct json *j, const char *key, uint64_t v) { json_key(j, key); json_uint(j, v); }
void json_kv_double(struct json *j, const char *key, double v, int decimals) { json_key(j, key); json_double(j, v, decimals); }
void json_kv_bool(struct json *j, const char *key, int v) { json_key(j, key); json_bool(j, v); }
void json_kv_hex(struct json *j, const char *key, uint64_t v) { json_key(j, key); json_hex(j, v); }
