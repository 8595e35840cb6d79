/*
 * write_collapsed.c - entries as folded stacks, one line per stack, root
 * first: the input of flamegraph.pl, inferno and speedscope.
 */
#include "write.h"
#include "util.h"

#include <inttypes.h>
#include <string.h>

static void frame_label(struct strbuf *sb, const struct sym_frame *f)
{
	size_t start = sb->len;

	if (strcmp(f->function, "??"))
		strbuf_adds(sb, f->function);
	else
		strbuf_addf(sb, "%s+0x%" PRIx64, f->module, f->offset);
	for (size_t i = start; i < sb->len; i++)
		if (sb->buf[i] == ';' || sb->buf[i] == '\n')
			sb->buf[i] = ':';   /* the format's separators */
}

void write_collapsed(FILE *out, const struct stats *r)
{
	struct strbuf sb = STRBUF_INIT;

	for (size_t i = 0; i < r->n; i++) {
		const struct stat_entry *e = r->entries[i];
		for (int k = e->tb.n - 1; k >= 0; k--) {
			frame_label(&sb, e->tb.frames[k]);
			if (k)
				strbuf_adds(&sb, ";");
		}
		if (r->diff)
			strbuf_addf(&sb, " %" PRId64 " %" PRId64 "\n", e->old_size, e->size);
		else
			strbuf_addf(&sb, " %" PRId64 "\n", e->size);
	}
	if (sb.buf)
		fputs(sb.buf, out);
	strbuf_release(&sb);
}
