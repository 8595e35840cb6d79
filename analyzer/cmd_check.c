/*
 * cmd_check.c - `heapdelta leaks` and `heapdelta check`: parse the gate's
 * options (gate_opts.c), evaluate the gate (gate.c), write it
 * (write_gate.c), and map its verdict to the exit status.
 */
#include "cmd.h"
#include "gate.h"
#include "util.h"
#include "write.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

/* The report, the suppression lists asked for, and the summary, to
 * o->output, standard output, or standard error (run --check).  0, or -1
 * after an error line. */
static int write_outputs(const struct gate *g)
{
	const struct gate_opts *o = g->o;
	FILE *out = o->output ? output_open(o->output) : o->to_stderr ? stderr : stdout;

	if (!out)
		return -1;
	write_gate(out, g);
	if (o->print_supp)
		write_gate_suppressions_used(out, g);
	if (o->gen_supp)
		write_gate_gen_suppressions(out, g);
	/* The summary ends the text; machine formats keep it on stderr. */
	write_gate_summary(o->format == GATE_TEXT || o->format == GATE_GITHUB ? out : stderr, g);
	return o->output ? output_close(out, o->output) : 0;
}

int check_snapshots(struct gate_opts *o, char **paths, int npaths)
{
	struct gate g;
	enum gate_verdict v = gate_evaluate(&g, o, paths, npaths);

	if (v != GATE_ERROR && write_outputs(&g) < 0)
		v = GATE_ERROR;
	if (v != GATE_ERROR && o->write_baseline && baseline_write(&g, o->write_baseline) < 0)
		v = GATE_ERROR;
	gate_release(&g);
	switch (v) {
	case GATE_PASS: return EXIT_OK;
	case GATE_FAIL: return EXIT_NO;
	case GATE_ERROR: break;
	}
	return EXIT_USAGE;
}

/* The long name of option value c in opts. */
static const char *option_name(const struct option *opts, int c)
{
	while (opts->name && opts->val != c)
		opts++;
	return opts->name ? opts->name : "?";
}

/* Parse argv into o.  0 when the command goes on, else 1 with *status set
 * (help shown, or a usage error). */
static int parse_options(const char *cmd, int argc, char **argv, struct gate_opts *o, int *status)
{
	static const struct option own[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct option *opts = gate_options_with(own);
	int c, helped = 0;

	opterr = 0;
	optind = 1;
	*status = 0;
	while (!helped && !*status && (c = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
		if (c == 'o')
			c = GATE_OPT_OUTPUT;
		switch (c) {
		case 'h':
			helped = 1;
			*status = show_help(cmd);
			break;
		case ':': *status = usage_error(cmd, "option '%s' needs a value", argv[optind - 1]); break;
		case '?': *status = usage_error(cmd, "unknown option '%s'", argv[optind - 1]); break;
		default:
			if (o->leaks_only && c != GATE_OPT_SUPPRESSIONS && c != GATE_OPT_FORMAT && c != GATE_OPT_OUTPUT &&
			    c != GATE_OPT_PRINT_SUPP && c != GATE_OPT_SHOW_KINDS && c < ALLOC_OPT_FN)
				*status = usage_error(cmd, "option '--%s' belongs to 'heapdelta check'", option_name(opts, c));
			else if (gate_option(cmd, o, c, optarg) < 0)
				*status = EXIT_USAGE;
		}
	}
	free(opts);
	if (!helped && !*status && alloc_fns_load(&o->alloc_fns) < 0)
		*status = EXIT_USAGE;
	return helped || *status;
}

static int run_gate(const char *cmd, int argc, char **argv, int leaks)
{
	struct gate_opts o;
	int status;

	gate_opts_init(&o);
	o.leaks_only = leaks;
	if (!parse_options(cmd, argc, argv, &o, &status)) {
		if (optind >= argc)
			status = usage_error(cmd, "expected snapshot files or a directory of them");
		else if (!leaks && !gate_has_budget(&o))
			status = usage_error(cmd, "no budget: give --max-leaked, --max-lost, --max-growth, "
					     "--max-growth-per-site, --max-peak or --baseline");
		else
			status = check_snapshots(&o, argv + optind, argc - optind);
	}
	gate_opts_release(&o);
	return status;
}

int cmd_leaks(int argc, char **argv)
{
	return run_gate("leaks", argc, argv, 1);
}

int cmd_check(int argc, char **argv)
{
	return run_gate("check", argc, argv, 0);
}
