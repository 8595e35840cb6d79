/*
 * cmd_info.c - `heapdelta info`: what a snapshot says about its process,
 * without symbolizing anything.
 */
#include "cmd.h"
#include "snapshot.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char *const meta_names[HD_META_NFIELDS] = {
	"pid", "ppid", "seq", "trigger", "unwinder", "depth", "sample_bytes", "flags",
	"wall_ns", "mono_ns", "start_mono_ns", "live_bytes", "live_count", "peak_bytes",
	"peak_since_prev", "alloc_bytes", "alloc_count", "free_bytes", "free_count",
	"unknown_frees", "dropped_allocs", "dropped_stacks", "rss_bytes", "shim_bytes",
	"untracked_allocs", "unwind_fallbacks", "unwind_checked", "unwind_mismatches",
};

static unsigned truncated_stacks(const struct snapshot *s)
{
	unsigned n = 0;

	for (uint32_t i = 0; i < s->nstacks; i++)
		n += (s->stacks[i].flags & HD_STACK_TRUNCATED) != 0;
	return n;
}

static void print_text(const struct snapshot *s)
{
	printf("%s:\n", s->path);
	printf("  trigger: %s\n", hd_trigger_name(s->meta[HD_META_TRIGGER]));
	printf("  label: %s\n", s->label);
	printf("  exe: %s\n", s->exe);
	printf("  argv:");
	for (uint32_t i = 0; i < s->argc; i++)
		printf(" %s", s->argv[i]);
	printf("\n  unwinder: %s\n", hd_unwinder_name(s->meta[HD_META_UNWINDER]));
	for (int i = 0; i < HD_META_NFIELDS; i++)
		if (i != HD_META_TRIGGER && i != HD_META_UNWINDER)
			printf("  %s: %" PRIu64 "\n", meta_names[i], s->meta[i]);
	printf("  stacks: %u (%u truncated)\n  modules: %u\n", s->nstacks, truncated_stacks(s), s->nmodules);
	for (uint32_t i = 0; i < s->nmodules; i++) {
		const struct hd_module *m = &s->modules[i];
		printf("    0x%" PRIx64 " %s%s%s build-id ", m->base, m->path,
		       m->flags & HD_MOD_UNLOADED ? " (unloaded)" : "", m->flags & HD_MOD_MAIN ? " (main)" : "");
		for (uint32_t k = 0; k < m->build_id_len; k++)
			printf("%02x", m->build_id[k]);
		putchar('\n');
	}
}

static void print_json(const struct snapshot *s, int first)
{
	struct strbuf sb = STRBUF_INIT;

	strbuf_adds(&sb, first ? "{\"path\": " : ",\n {\"path\": ");
	strbuf_add_json(&sb, s->path);
	strbuf_adds(&sb, ", \"trigger\": ");
	strbuf_add_json(&sb, hd_trigger_name(s->meta[HD_META_TRIGGER]));
	strbuf_adds(&sb, ", \"label\": ");
	strbuf_add_json(&sb, s->label);
	strbuf_adds(&sb, ", \"exe\": ");
	strbuf_add_json(&sb, s->exe);
	strbuf_adds(&sb, ", \"argv\": [");
	for (uint32_t i = 0; i < s->argc; i++) {
		if (i)
			strbuf_adds(&sb, ", ");
		strbuf_add_json(&sb, s->argv[i]);
	}
	strbuf_adds(&sb, "], \"unwinder\": ");
	strbuf_add_json(&sb, hd_unwinder_name(s->meta[HD_META_UNWINDER]));
	for (int i = 0; i < HD_META_NFIELDS; i++)
		if (i != HD_META_TRIGGER && i != HD_META_UNWINDER)
			strbuf_addf(&sb, ", \"%s\": %" PRIu64, meta_names[i], s->meta[i]);
	strbuf_addf(&sb, ", \"stacks\": %u, \"truncated_stacks\": %u, \"modules\": [", s->nstacks,
		    truncated_stacks(s));
	for (uint32_t i = 0; i < s->nmodules; i++) {
		const struct hd_module *m = &s->modules[i];
		strbuf_adds(&sb, i ? ", {\"path\": " : "{\"path\": ");
		strbuf_add_json(&sb, m->path);
		strbuf_addf(&sb, ", \"base\": \"0x%" PRIx64 "\", \"unloaded\": %s, \"build_id\": \"", m->base,
			    m->flags & HD_MOD_UNLOADED ? "true" : "false");
		for (uint32_t k = 0; k < m->build_id_len; k++)
			strbuf_addf(&sb, "%02x", m->build_id[k]);
		strbuf_adds(&sb, "\"}");
	}
	strbuf_adds(&sb, "]}");
	fputs(sb.buf, stdout);
	strbuf_release(&sb);
}

int cmd_info(int argc, char **argv)
{
	int json = 0, first = 1, nfiles = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return show_help("info");
		if (!strcmp(argv[i], "--format") && i + 1 < argc) {
			if (strcmp(argv[i + 1], "json") && strcmp(argv[i + 1], "text"))
				return usage_error("info", "--format must be text or json, not '%s'", argv[i + 1]);
			json = !strcmp(argv[++i], "json");
		} else if (argv[i][0] == '-' && argv[i][1]) {
			return usage_error("info", "unknown option '%s'", argv[i]);
		} else {
			nfiles++;
		}
	}
	if (!nfiles)
		return usage_error("info", "expected at least one snapshot file");
	if (json)
		fputs("[", stdout);
	for (int i = 1; i < argc; i++) {
		struct snapshot s;
		if (!strcmp(argv[i], "--format")) {
			i++;
			continue;
		}
		if (snapshot_load(argv[i], &s) < 0) {
			snapshot_release(&s);
			return EXIT_USAGE;
		}
		if (json)
			print_json(&s, first);
		else
			print_text(&s);
		first = 0;
		snapshot_release(&s);
	}
	if (json)
		fputs("]\n", stdout);
	return EXIT_OK;
}
