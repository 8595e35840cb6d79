/*
 * cmd_trend.c - `heapdelta trend`: the sites that grow steadily over many
 * snapshots of one process, its teardown set apart (the model: trend.c,
 * fed one snapshot at a time; the writers: write_trend.c).
 */
#include "cmd.h"
#include "trend.h"
#include "util.h"
#include "write.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_trend(int argc, char **argv)
{
	enum { O_BY = 256, O_LIMIT, O_FORMAT, O_PID };
	static const struct option own[] = {
		{ "by", required_argument, NULL, O_BY },
		{ "limit", required_argument, NULL, O_LIMIT },
		{ "format", required_argument, NULL, O_FORMAT },
		{ "pid", required_argument, NULL, O_PID },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct option *opts;   /* own, alloc_fns_options and symbolize_options, joined once */
	struct alloc_fns af;
	struct group_opts g = { .by = BY_LINENO, .alloc_fns = &af };
	const char *output = NULL;
	long limit = 10, pid = -1;
	int json = 0, c;

	site_command_options(&opts, own);
	alloc_fns_init(&af);
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
		int shared = site_command_option("trend", &af, c, optarg);
		if (shared < 0)
			return EXIT_USAGE;
		if (shared)
			continue;
		switch (c) {
		case O_BY:
			if (site_by_parse(optarg, &g.by) < 0)
				return usage_error("trend", "--by must be lineno, filename, function or traceback, not '%s'", optarg);
			break;
		case O_LIMIT:
			if (parse_count(optarg, 1L << 30, &limit) < 0)
				return usage_error("trend", "--limit takes a number, not '%s'", optarg);
			break;
		case O_FORMAT:
			if (!strcmp(optarg, "json")) json = 1;
			else if (strcmp(optarg, "text")) return usage_error("trend", "--format must be text or json, not '%s'", optarg);
			break;
		case O_PID:
			if (parse_count(optarg, 1L << 30, &pid) < 0)
				return usage_error("trend", "--pid takes a process id, not '%s'", optarg);
			break;
		case 'o': output = optarg; break;
		case 'h': return show_help("trend");
		case ':': return usage_error("trend", "option '%s' needs a value", argv[optind - 1]);
		default: return usage_error("trend", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error("trend", "expected snapshot files or a directory of them");
	if (alloc_fns_load(&af) < 0)
		return EXIT_USAGE;

	char **paths;
	int n;
	if (trend_files(argv + optind, argc - optind, pid, &paths, &n) < 0)
		return EXIT_USAGE;
	if (n < 2) {
		for (int i = 0; i < n; i++)
			free(paths[i]);
		free(paths);
		return usage_error("trend", "a trend needs at least two snapshots of the process");
	}
	struct symbolizer *sym = symbolizer_new();
	struct trend *tr = trend_read(paths, n, &g, sym, 0);
	int rc = tr ? 0 : -1;
	FILE *out = tr ? output_open(output) : NULL;
	if (out) {
		if (json)
			write_trend_json(out, tr, (size_t)limit);
		else
			write_trend_text(out, tr, (size_t)limit);
		if (!json)
			write_trend_debuginfo_line(out, tr, (size_t)limit);
		rc = output_close(out, output);
	} else {
		rc = -1;
	}
	trend_free(tr);
	symbolizer_free(sym);
	alloc_fns_release(&af);
	for (int i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
	return rc ? EXIT_USAGE : EXIT_OK;
}
