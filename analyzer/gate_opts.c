/*
 * gate_opts.c - the options `heapdelta check`, `heapdelta leaks` and
 * `heapdelta run --check` share: budgets, baselines, suppressions, format
 * and output, and the allocation functions sites look through.
 */
#include "cmd.h"
#include "gate.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

const struct option gate_options[] = {
	{ "max-leaked", required_argument, NULL, GATE_OPT_MAX_LEAKED },
	{ "max-lost", required_argument, NULL, GATE_OPT_MAX_LOST },
	{ "show-kinds", required_argument, NULL, GATE_OPT_SHOW_KINDS },
	{ "max-growth", required_argument, NULL, GATE_OPT_MAX_GROWTH },
	{ "max-growth-per-site", required_argument, NULL, GATE_OPT_MAX_SITE_GROWTH },
	{ "max-peak", required_argument, NULL, GATE_OPT_MAX_PEAK },
	{ "suppressions", required_argument, NULL, GATE_OPT_SUPPRESSIONS },
	{ "print-suppressions", no_argument, NULL, GATE_OPT_PRINT_SUPP },
	{ "gen-suppressions", no_argument, NULL, GATE_OPT_GEN_SUPP },
	{ "baseline", required_argument, NULL, GATE_OPT_BASELINE },
	{ "write-baseline", required_argument, NULL, GATE_OPT_WRITE_BASELINE },
	{ "baseline-slack", required_argument, NULL, GATE_OPT_SLACK },
	{ "baseline-lines", no_argument, NULL, GATE_OPT_LINES },
	{ "format", required_argument, NULL, GATE_OPT_FORMAT },
	{ "output", required_argument, NULL, GATE_OPT_OUTPUT },
	{ "alloc-fn", required_argument, NULL, ALLOC_OPT_FN },
	{ "alloc-fns-file", required_argument, NULL, ALLOC_OPT_FILE },
	{ "no-default-alloc-fns", no_argument, NULL, ALLOC_OPT_NO_DEFAULTS },
	{ "native-site", no_argument, NULL, ALLOC_OPT_NATIVE_SITE },
	{ "debug-dir", required_argument, NULL, SYM_OPT_DEBUG_DIR },
	{ "sysroot", required_argument, NULL, SYM_OPT_SYSROOT },
	{ "map-path", required_argument, NULL, SYM_OPT_MAP_PATH },
	{ NULL, 0, NULL, 0 },
};

static size_t count_options(const struct option *v)
{
	size_t n = 0;

	while (v[n].name)
		n++;
	return n;
}

struct option *gate_options_with(const struct option *own)
{
	size_t nown = count_options(own), ngate = count_options(gate_options);
	struct option *v = xcalloc(nown + ngate + 1, sizeof *v);

	memcpy(v, own, nown * sizeof *v);
	memcpy(v + nown, gate_options, ngate * sizeof *v);
	return v;   /* v[nown + ngate] is zeroed: the terminator */
}

void gate_opts_init(struct gate_opts *o)
{
	memset(o, 0, sizeof *o);
	o->max_leaked = o->max_lost = o->max_growth = o->max_site_growth = o->max_peak = -1;
	/* LeakSanitizer's default: what is lost, not what is still reachable. */
	o->show_kinds = 1u << HD_REACH_DEFINITE | 1u << HD_REACH_INDIRECT;
	alloc_fns_init(&o->alloc_fns);
}

void gate_opts_release(struct gate_opts *o)
{
	suppressions_release(&o->supp);
	alloc_fns_release(&o->alloc_fns);
}

static int size_arg(const char *cmd, const char *opt, const char *arg, int64_t *out)
{
	uint64_t v;

	if (parse_size(arg, &v) < 0 || v > INT64_MAX) {
		usage_error(cmd, "%s takes a size such as 100KiB or 2MB, not '%s'", opt, arg);
		return -1;
	}
	*out = (int64_t)v;
	return 0;
}

static int format_arg(const char *cmd, const char *arg, enum gate_format *format)
{
	static const char *const names[] = { "text", "json", "junit", "sarif", "github" };

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (!strcmp(arg, names[i])) {
			*format = (enum gate_format)i;
			return 0;
		}
	usage_error(cmd, "--format must be text, json, junit, sarif or github, not '%s'", arg);
	return -1;
}

/* valgrind's --show-leak-kinds: a comma list of definite, indirect,
 * possible and reachable, or all, or none. */
static int kinds_arg(const char *cmd, const char *arg, unsigned *kinds)
{
	char *list = xstrdup(arg), *save = NULL;
	int rc = 0;

	*kinds = 0;
	for (char *w = strtok_r(list, ",", &save); w && !rc; w = strtok_r(NULL, ",", &save)) {
		int k = 0;
		while (k < HD_REACH_NKINDS && strcmp(w, snapshot_reach_kind_name(k)))
			k++;
		if (k < HD_REACH_NKINDS)
			*kinds |= 1u << k;
		else if (!strcmp(w, "all"))
			*kinds |= (1u << HD_REACH_NKINDS) - 1;
		else if (strcmp(w, "none"))
			rc = -1;
	}
	free(list);
	if (rc || !arg[0] || arg[0] == ',' || arg[strlen(arg) - 1] == ',' || strstr(arg, ",,")) {
		usage_error(cmd, "--show-kinds takes definite, indirect, possible and reachable, separated by commas, "
			    "or all or none, not '%s'", arg);
		return -1;
	}
	return 0;
}

int gate_option(const char *cmd, struct gate_opts *o, int c, const char *arg)
{
	int shared = site_command_option(cmd, &o->alloc_fns, c, arg);
	if (shared)
		return shared < 0 ? -1 : 0;
	switch (c) {
	case GATE_OPT_MAX_LEAKED: return size_arg(cmd, "--max-leaked", arg, &o->max_leaked);
	case GATE_OPT_MAX_LOST: return size_arg(cmd, "--max-lost", arg, &o->max_lost);
	case GATE_OPT_SHOW_KINDS:
		if (!o->leaks_only) {
			usage_error(cmd, "option '--show-kinds' belongs to 'heapdelta leaks'");
			return -1;
		}
		return kinds_arg(cmd, arg, &o->show_kinds);
	case GATE_OPT_MAX_GROWTH: return size_arg(cmd, "--max-growth", arg, &o->max_growth);
	case GATE_OPT_MAX_SITE_GROWTH: return size_arg(cmd, "--max-growth-per-site", arg, &o->max_site_growth);
	case GATE_OPT_MAX_PEAK: return size_arg(cmd, "--max-peak", arg, &o->max_peak);
	case GATE_OPT_SLACK: return size_arg(cmd, "--baseline-slack", arg, &o->slack);
	case GATE_OPT_SUPPRESSIONS: return suppressions_load(&o->supp, arg);
	case GATE_OPT_PRINT_SUPP: o->print_supp = 1; return 0;
	case GATE_OPT_GEN_SUPP: o->gen_supp = 1; return 0;
	case GATE_OPT_BASELINE: o->baseline = arg; return 0;
	case GATE_OPT_WRITE_BASELINE: o->write_baseline = arg; return 0;
	case GATE_OPT_LINES: o->baseline_lines = 1; return 0;
	case GATE_OPT_OUTPUT: o->output = arg; return 0;
	case GATE_OPT_FORMAT: return format_arg(cmd, arg, &o->format);
	}
	usage_error(cmd, "unknown option");
	return -1;
}

int gate_has_budget(const struct gate_opts *o)
{
	return o->max_leaked >= 0 || o->max_lost >= 0 || o->max_growth >= 0 || o->max_site_growth >= 0 || o->max_peak >= 0 ||
	       o->baseline || o->write_baseline;
}
