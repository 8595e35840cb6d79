/*
 * cmd_info.c - `heapdelta info`: what a snapshot says about its process,
 * without symbolizing anything.
 */
#include "cmd.h"
#include "snapshot.h"
#include "util.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char *const meta_names[HD_META_NFIELDS] = {
	"pid", "ppid", "seq", "trigger", "unwinder", "depth", "sample_bytes", "flags",
	"wall_ns", "mono_ns", "start_mono_ns", "live_bytes", "live_count", "peak_bytes",
	"peak_since_prev", "alloc_bytes", "alloc_count", "free_bytes", "free_count",
	"unknown_frees", "dropped_allocs", "dropped_stacks", "rss_bytes", "shim_bytes",
	"untracked_allocs", "unwind_fallbacks", "unwind_checked", "unwind_mismatches",
	"mismatched_frees",
};

static unsigned truncated_stacks(const struct snapshot *s)
{
	unsigned n = 0;

	for (uint32_t i = 0; i < s->nstacks; i++)
		n += (s->stacks[i].flags & HD_STACK_TRUNCATED) != 0;
	return n;
}

static void print_text(FILE *out, const struct snapshot *s)
{
	fprintf(out, "%s:\n", s->path);
	fprintf(out, "  trigger: %s\n", hd_trigger_name(s->meta[HD_META_TRIGGER]));
	fprintf(out, "  label: %s\n", s->label);
	fprintf(out, "  exe: %s\n", s->exe);
	fprintf(out, "  argv:");
	for (uint32_t i = 0; i < s->argc; i++)
		fprintf(out, " %s", s->argv[i]);
	fprintf(out, "\n  unwinder: %s\n", hd_unwinder_name(s->meta[HD_META_UNWINDER]));
	for (int i = 0; i < HD_META_NFIELDS; i++)
		if (i != HD_META_TRIGGER && i != HD_META_UNWINDER)
			fprintf(out, "  %s: %" PRIu64 "\n", meta_names[i], s->meta[i]);
	fprintf(out, "  stacks: %u (%u truncated)\n  modules: %u\n", s->nstacks, truncated_stacks(s), s->nmodules);
	for (uint32_t i = 0; i < s->nmodules; i++) {
		const struct hd_module *m = &s->modules[i];
		fprintf(out, "    0x%" PRIx64 " %s%s%s build-id ", m->base, m->path,
			m->flags & HD_MOD_UNLOADED ? " (unloaded)" : "", m->flags & HD_MOD_MAIN ? " (main)" : "");
		for (uint32_t k = 0; k < m->build_id_len; k++)
			fprintf(out, "%02x", m->build_id[k]);
		fputc('\n', out);
	}
}

static void print_json(FILE *out, const struct snapshot *s, int first)
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
	fputs(sb.buf, out);
	strbuf_release(&sb);
}

int cmd_info(int argc, char **argv)
{
	enum { O_FORMAT = 256 };
	static const struct option opts[] = {
		{ "format", required_argument, NULL, O_FORMAT },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *output = NULL;
	int json = 0, c, rc = 0;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
		switch (c) {
		case O_FORMAT:
			if (strcmp(optarg, "json") && strcmp(optarg, "text"))
				return usage_error("info", "--format must be text or json, not '%s'", optarg);
			json = !strcmp(optarg, "json");
			break;
		case 'o': output = optarg; break;
		case 'h': return show_help("info");
		case ':': return usage_error("info", "option '%s' needs a value", argv[optind - 1]);
		default: return usage_error("info", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error("info", "expected at least one snapshot file");
	FILE *out = output_open(output);
	if (!out)
		return EXIT_USAGE;
	if (json)
		fputs("[", out);
	for (int i = optind; i < argc && !rc; i++) {
		struct snapshot s;
		if (snapshot_load(argv[i], &s) < 0) {
			rc = -1;
		} else if (json) {
			print_json(out, &s, i == optind);
		} else {
			print_text(out, &s);
		}
		snapshot_release(&s);
	}
	if (json && !rc)
		fputs("]\n", out);
	if (output_close(out, output) < 0)
		rc = -1;
	return rc ? EXIT_USAGE : EXIT_OK;
}
