/*
 * suppress.h - LeakSanitizer-format suppression files: `leak:PATTERN`
 * lines and `#` comments; PATTERN may use `*` wildcards and `^`/`$`
 * anchors and is matched against the function, file and module of every
 * frame of a stack.
 */
#ifndef HD_SUPPRESS_H
#define HD_SUPPRESS_H

#include <stdint.h>

#include "hd_format.h"
#include "site.h"

struct suppression {
	char *pattern;         /* as written after "leak:" */
	char *file;            /* the suppression file, for messages */
	int line;
	int64_t hits, bytes;   /* entries and bytes it suppressed */
	/* The same by kind: enum hd_reach_kind, then blocks not classified. */
	int64_t kind_hits[HD_REACH_NKINDS + 1], kind_bytes[HD_REACH_NKINDS + 1];
};

struct suppressions {
	struct suppression *v;
	int n;
};

/* Read a suppression file and append its entries.  0, or -1 after one
 * error line (unreadable file, or a line that is neither a comment nor
 * `leak:PATTERN`: the file name and line number are given). */
int suppressions_load(struct suppressions *s, const char *path);
void suppressions_release(struct suppressions *s);
/* The first suppression that matches a frame of st, or NULL. */
struct suppression *suppressions_match(struct suppressions *s, const struct site_stack *st);
/* LeakSanitizer's template match: `*` any run, `^` start, `$` end,
 * otherwise a substring. */
int suppression_template_match(const char *templ, const char *str);

#endif /* HD_SUPPRESS_H */
