/*
 * cmd_stats.c - `heapdelta top` and `heapdelta diff`: tracemalloc's
 * Snapshot.statistics() and Snapshot.compare_to() for native snapshots
 * (the model: stats.c; the writers: write_stats.c, write_collapsed.c,
 * write_pprof.c).
 */
#include "cmd.h"
#include "group.h"
#include "stats.h"
#include "util.h"
#include "write.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum stats_format { FMT_TEXT, FMT_JSON, FMT_COLLAPSED, FMT_PPROF };

struct stats_args {
	struct group_opts g;
	long limit;
	enum stats_format format;
	const char *output;
	char *paths[2];
	int npaths;
	regex_t focus, ignore;
	struct alloc_fns af;
};

static int add_filter(struct stats_args *a, const char *arg, int inclusive)
{
	struct file_filter f = { NULL, -1, inclusive };
	const char *colon = strrchr(arg, ':');
	long line;

	if (colon && colon[1] && parse_count(colon + 1, 1L << 30, &line) == 0) {
		f.pattern = xstrndup(arg, (size_t)(colon - arg));
		f.line = (int)line;
	} else {
		f.pattern = xstrdup(arg);
	}
	a->g.filters = xrealloc(a->g.filters, (size_t)(a->g.nfilters + 1) * sizeof *a->g.filters);
	a->g.filters[a->g.nfilters++] = f;
	return 0;
}

static int compile(regex_t *re, const char *pattern, const char *cmd, const char *opt)
{
	if (regcomp(re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
		return usage_error(cmd, "%s: invalid regular expression '%s'", opt, pattern);
	return 0;
}

/* Parse argv into a.  0 when the command goes on, else nonzero with
 * *status set (help shown, or a usage error). */
static int parse_args(const char *cmd, int argc, char **argv, struct stats_args *a, int want, int *status)
{
	enum { O_BY = 256, O_CUM, O_LIMIT, O_INC, O_EXC, O_ALL, O_MOD, O_FOCUS, O_IGNORE, O_FORMAT };
	static const struct option own[] = {
		{ "by", required_argument, NULL, O_BY },
		{ "cumulative", no_argument, NULL, O_CUM },
		{ "limit", required_argument, NULL, O_LIMIT },
		{ "include", required_argument, NULL, O_INC },
		{ "exclude", required_argument, NULL, O_EXC },
		{ "all-frames", no_argument, NULL, O_ALL },
		{ "module", required_argument, NULL, O_MOD },
		{ "focus", required_argument, NULL, O_FOCUS },
		{ "ignore", required_argument, NULL, O_IGNORE },
		{ "format", required_argument, NULL, O_FORMAT },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct option *opts;   /* own, alloc_fns_options and symbolize_options, joined once */
	int c;

	site_command_options(&opts, own);
	memset(a, 0, sizeof *a);
	alloc_fns_init(&a->af);
	a->g.alloc_fns = &a->af;
	a->limit = 10;
	*status = EXIT_USAGE;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
		int shared = site_command_option(cmd, &a->af, c, optarg);
		if (shared < 0)
			return EXIT_USAGE;
		if (shared)
			continue;
		switch (c) {
		case O_BY:
			if (site_by_parse(optarg, &a->g.by) < 0)
				return usage_error(cmd, "--by must be lineno, filename, function or traceback, not '%s'", optarg);
			break;
		case O_CUM: a->g.cumulative = 1; break;
		case O_LIMIT:
			if (parse_count(optarg, 1L << 30, &a->limit) < 0)
				return usage_error(cmd, "--limit takes a number, not '%s'", optarg);
			break;
		case O_INC: add_filter(a, optarg, 1); break;
		case O_EXC: add_filter(a, optarg, 0); break;
		case O_ALL: a->g.all_frames = 1; break;
		case O_MOD:
			a->g.modules = xrealloc(a->g.modules, (size_t)(a->g.nmodules + 1) * sizeof *a->g.modules);
			a->g.modules[a->g.nmodules++] = optarg;
			break;
		case O_FOCUS:
			if (compile(&a->focus, optarg, cmd, "--focus"))
				return EXIT_USAGE;
			a->g.focus = &a->focus;
			break;
		case O_IGNORE:
			if (compile(&a->ignore, optarg, cmd, "--ignore"))
				return EXIT_USAGE;
			a->g.ignore = &a->ignore;
			break;
		case O_FORMAT:
			if (!strcmp(optarg, "json")) a->format = FMT_JSON;
			else if (!strcmp(optarg, "collapsed")) a->format = FMT_COLLAPSED;
			else if (!strcmp(optarg, "pprof")) a->format = FMT_PPROF;
			else if (!strcmp(optarg, "text")) a->format = FMT_TEXT;
			else return usage_error(cmd, "--format must be text, json, collapsed or pprof, not '%s'", optarg);
			break;
		case 'o':
			a->output = optarg;
			break;
		case 'h':
			*status = show_help(cmd);
			return 1;
		case ':':
			return usage_error(cmd, "option '%s' needs a value", argv[optind - 1]);
		default:
			return usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (a->g.cumulative && a->g.by == BY_TRACEBACK)
		return usage_error(cmd, "--cumulative cannot be used with --by traceback");
	if (a->format == FMT_PPROF && want == 2)
		return usage_error(cmd, "--format pprof writes one snapshot: use 'heapdelta top'");
	if (a->format == FMT_COLLAPSED || a->format == FMT_PPROF) {
		/* One entry per stack, all of them. */
		if (a->g.cumulative)
			return usage_error(cmd, "--cumulative does not apply to --format collapsed or pprof");
		a->g.by = BY_TRACEBACK;
		a->g.whole_stack = 1;
		a->limit = 0;
	}
	if (argc - optind != want)
		return usage_error(cmd, "expected %d snapshot file%s, got %d", want, want > 1 ? "s" : "", argc - optind);
	if (alloc_fns_load(&a->af) < 0)
		return EXIT_USAGE;
	for (int i = 0; i < want; i++)
		a->paths[i] = argv[optind + i];
	a->npaths = want;
	return 0;
}

static void args_release(struct stats_args *a)
{
	for (int i = 0; i < a->g.nfilters; i++)
		free(a->g.filters[i].pattern);
	free(a->g.filters);
	free(a->g.modules);
	if (a->g.focus)
		regfree(&a->focus);
	if (a->g.ignore)
		regfree(&a->ignore);
	alloc_fns_release(&a->af);
}

/* The format asked for, to the output asked for; 0, or -1 after an error
 * line. */
static int write_stats(const struct stats_args *a, const struct stats *r)
{
	FILE *out = output_open(a->output);
	int rc = 0;

	if (!out)
		return -1;
	switch (a->format) {
	case FMT_TEXT: write_stats_text(out, r); break;
	case FMT_JSON: write_stats_json(out, r); break;
	case FMT_COLLAPSED: write_collapsed(out, r); break;
	case FMT_PPROF: rc = write_pprof(out, r); break;
	}
	if (output_close(out, a->output) < 0)
		rc = -1;
	return rc;
}

static int run_stats(const char *cmd, int argc, char **argv, int diff)
{
	struct stats_args a;
	struct snapshot snaps[2];
	int status, loaded = 0;

	memset(snaps, 0, sizeof snaps);
	if (parse_args(cmd, argc, argv, &a, diff ? 2 : 1, &status)) {
		args_release(&a);
		return status;
	}
	while (loaded < a.npaths && snapshot_load(a.paths[loaded], &snaps[loaded]) == 0)
		loaded++;
	status = EXIT_USAGE;
	if (loaded == a.npaths) {
		struct symbolizer *sym = symbolizer_new();
		struct stats r;
		stats_build(&r, &a.g, sym, &snaps[diff ? 1 : 0], diff ? &snaps[0] : NULL, (size_t)a.limit);
		if (write_stats(&a, &r) == 0)
			status = EXIT_OK;
		stats_release(&r);
		symbolizer_free(sym);
	}
	for (int i = 0; i < a.npaths; i++)
		snapshot_release(&snaps[i]);
	args_release(&a);
	return status;
}

int cmd_top(int argc, char **argv)
{
	return run_stats("top", argc, argv, 0);
}

int cmd_diff(int argc, char **argv)
{
	return run_stats("diff", argc, argv, 1);
}
