/*
 * cmd_check.c - `heapdelta leaks` and `heapdelta check`, and the gate
 * options that `heapdelta run --check` shares with them.
 */
#include "cmd.h"
#include "gate.h"
#include "util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

const struct option gate_options[] = {
	{ "max-leaked", required_argument, NULL, GATE_OPT_MAX_LEAKED },
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
	{ NULL, 0, NULL, 0 },
};

void gate_opts_init(struct gate_opts *o)
{
	memset(o, 0, sizeof *o);
	o->max_leaked = o->max_growth = o->max_site_growth = o->max_peak = -1;
}

static int size_arg(const char *cmd, const char *opt, const char *arg, int64_t *out)
{
	uint64_t v;

	if (parse_size(arg, &v) < 0 || v > INT64_MAX)
		return usage_error(cmd, "%s takes a size such as 100KiB or 2MB, not '%s'", opt, arg);
	*out = (int64_t)v;
	return 0;
}

int gate_option(const char *cmd, struct gate_opts *o, int c, const char *arg)
{
	switch (c) {
	case GATE_OPT_MAX_LEAKED: return size_arg(cmd, "--max-leaked", arg, &o->max_leaked);
	case GATE_OPT_MAX_GROWTH: return size_arg(cmd, "--max-growth", arg, &o->max_growth);
	case GATE_OPT_MAX_SITE_GROWTH: return size_arg(cmd, "--max-growth-per-site", arg, &o->max_site_growth);
	case GATE_OPT_MAX_PEAK: return size_arg(cmd, "--max-peak", arg, &o->max_peak);
	case GATE_OPT_SLACK: return size_arg(cmd, "--baseline-slack", arg, &o->slack);
	case GATE_OPT_SUPPRESSIONS: return suppressions_load(&o->supp, arg) < 0 ? EXIT_USAGE : 0;
	case GATE_OPT_PRINT_SUPP: o->print_supp = 1; return 0;
	case GATE_OPT_GEN_SUPP: o->gen_supp = 1; return 0;
	case GATE_OPT_BASELINE: o->baseline = arg; return 0;
	case GATE_OPT_WRITE_BASELINE: o->write_baseline = arg; return 0;
	case GATE_OPT_LINES: o->baseline_lines = 1; return 0;
	case GATE_OPT_OUTPUT: o->output = arg; return 0;
	case GATE_OPT_FORMAT:
		if (!strcmp(arg, "text")) o->format = GATE_TEXT;
		else if (!strcmp(arg, "json")) o->format = GATE_JSON;
		else if (!strcmp(arg, "junit")) o->format = GATE_JUNIT;
		else if (!strcmp(arg, "sarif")) o->format = GATE_SARIF;
		else if (!strcmp(arg, "github")) o->format = GATE_GITHUB;
		else return usage_error(cmd, "--format must be text, json, junit, sarif or github, not '%s'", arg);
		return 0;
	}
	return usage_error(cmd, "unknown option");
}

int gate_has_budget(const struct gate_opts *o)
{
	return o->max_leaked >= 0 || o->max_growth >= 0 || o->max_site_growth >= 0 || o->max_peak >= 0 ||
	       o->baseline || o->write_baseline;
}

static int run_gate(const char *cmd, int argc, char **argv, int leaks)
{
	struct gate_opts o;
	int c, rc;

	struct option opts[32];
	size_t n = 0;
	for (const struct option *g = gate_options; g->name && n < 30; g++)
		opts[n++] = *g;
	opts[n++] = (struct option){ "help", no_argument, NULL, 'h' };
	opts[n] = (struct option){ NULL, 0, NULL, 0 };

	gate_opts_init(&o);
	o.leaks_only = leaks;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
		if (c == 'o')
			c = GATE_OPT_OUTPUT;
		if (c == 'h') {
			suppressions_release(&o.supp);
			return show_help(cmd);
		}
		if (c == ':' || c == '?') {
			suppressions_release(&o.supp);
			return c == ':' ? usage_error(cmd, "option '%s' needs a value", argv[optind - 1])
					: usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
		}
		if (leaks && c != GATE_OPT_SUPPRESSIONS && c != GATE_OPT_FORMAT && c != GATE_OPT_OUTPUT &&
		    c != GATE_OPT_PRINT_SUPP) {
			suppressions_release(&o.supp);
			return usage_error(cmd, "option '%s' belongs to 'heapdelta check'", argv[optind - 1]);
		}
		if ((rc = gate_option(cmd, &o, c, optarg))) {
			suppressions_release(&o.supp);
			return rc;
		}
	}
	if (optind >= argc) {
		suppressions_release(&o.supp);
		return usage_error(cmd, "expected snapshot files or a directory of them");
	}
	if (!leaks && !gate_has_budget(&o)) {
		suppressions_release(&o.supp);
		return usage_error(cmd, "no budget: give --max-leaked, --max-growth, --max-growth-per-site, --max-peak or --baseline");
	}
	rc = gate_run(&o, argv + optind, argc - optind);
	suppressions_release(&o.supp);
	return rc;
}

int cmd_leaks(int argc, char **argv)
{
	return run_gate("leaks", argc, argv, 1);
}

int cmd_check(int argc, char **argv)
{
	return run_gate("check", argc, argv, 0);
}
