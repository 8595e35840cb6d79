/*
 * write_info.c - what a snapshot says about its process (`heapdelta info`),
 * as text or JSON, without symbolizing anything.
 */
#include "json.h"
#include "write.h"

#include <inttypes.h>
#include <stdio.h>

static const char *const meta_names[HD_META_NFIELDS] = {
	"pid", "ppid", "seq", "trigger", "unwinder", "depth", "sample_bytes", "flags",
	"wall_ns", "mono_ns", "start_mono_ns", "live_bytes", "live_count", "peak_bytes",
	"peak_since_prev", "alloc_bytes", "alloc_count", "free_bytes", "free_count",
	"unknown_frees", "dropped_allocs", "dropped_stacks", "rss_bytes", "shim_bytes",
	"untracked_allocs", "unwind_fallbacks", "unwind_checked", "unwind_mismatches",
	"mismatched_frees", "run_id", "base_seq", "machine", "unwind_nocfi",
	"unwind_memo_hits",
};

static unsigned truncated_stacks(const struct snapshot *s)
{
	unsigned n = 0;

	for (uint32_t i = 0; i < s->nstacks; i++)
		n += (s->stacks[i].flags & HD_STACK_TRUNCATED) != 0;
	return n;
}

void write_info_text(FILE *out, const struct snapshot *s)
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
	if (s->reach.present && s->reach.status == 0) {
		fprintf(out, "  reachability: classified in %.1f ms, %u threads stopped, %" PRIu64 " bytes of roots and %" PRIu64
			" of blocks scanned\n", (double)s->reach.ns / 1e6, s->reach.threads, s->reach.root_bytes, s->reach.block_bytes);
	} else if (s->reach.present) {
		char why[256];
		fprintf(out, "  reachability: not classified: %s\n", snapshot_reach_reason(s, why, sizeof why));
	}
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

void write_info_json_begin(struct json *j, FILE *out)
{
	json_init(j, out);
	json_array_begin(j);
}

void write_info_json(struct json *j, const struct snapshot *s)
{
	char id[2 * HD_MAX_BUILD_ID + 1];

	if (json_items(j))
		json_break(j, 1);
	json_object_begin(j);
	json_kv_string(j, "path", s->path);
	json_kv_string(j, "trigger", hd_trigger_name(s->meta[HD_META_TRIGGER]));
	json_kv_string(j, "label", s->label);
	json_kv_string(j, "exe", s->exe);
	json_key(j, "argv");
	json_array_begin(j);
	for (uint32_t i = 0; i < s->argc; i++)
		json_string(j, s->argv[i]);
	json_array_end(j);
	json_kv_string(j, "unwinder", hd_unwinder_name(s->meta[HD_META_UNWINDER]));
	for (int i = 0; i < HD_META_NFIELDS; i++)
		if (i != HD_META_TRIGGER && i != HD_META_UNWINDER)
			json_kv_uint(j, meta_names[i], s->meta[i]);
	json_kv_uint(j, "stacks", s->nstacks);
	json_kv_uint(j, "truncated_stacks", truncated_stacks(s));
	json_key(j, "reachability");   /* exit snapshots: the REACH section's facts */
	if (s->reach.present) {
		char why[256];
		json_object_begin(j);
		json_kv_uint(j, "status", s->reach.status);
		json_kv_bool(j, "classified", s->reach.status == 0);
		if (s->reach.status)
			json_kv_string(j, "reason", snapshot_reach_reason(s, why, sizeof why));
		json_kv_uint(j, "threads", s->reach.threads);
		json_kv_uint(j, "ns", s->reach.ns);
		json_kv_uint(j, "root_bytes", s->reach.root_bytes);
		json_kv_uint(j, "block_bytes", s->reach.block_bytes);
		json_object_end(j);
	} else {
		json_null(j);
	}
	json_key(j, "modules");
	json_array_begin(j);
	for (uint32_t i = 0; i < s->nmodules; i++) {
		const struct hd_module *m = &s->modules[i];
		for (uint32_t k = 0; k < m->build_id_len; k++)
			snprintf(id + 2 * k, 3, "%02x", m->build_id[k]);
		id[2 * m->build_id_len] = 0;
		json_object_begin(j);
		json_kv_string(j, "path", m->path);
		json_kv_hex(j, "base", m->base);
		json_kv_bool(j, "unloaded", m->flags & HD_MOD_UNLOADED);
		json_kv_string(j, "build_id", id);
		json_object_end(j);
	}
	json_array_end(j);
	json_object_end(j);
}

void write_info_json_end(struct json *j)
{
	json_array_end(j);
	json_end_line(j);
}
