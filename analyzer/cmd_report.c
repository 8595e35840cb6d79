/*
 * cmd_report.c - `heapdelta report`: the trend model of one process written
 * as one self-contained HTML page (write_html.c).
 */
#include "cmd.h"
#include "trend.h"
#include "util.h"
#include "write.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

int cmd_report(int argc, char **argv)
{
	enum { O_BY = 256, O_PID };
	static const struct option own[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "by", required_argument, NULL, O_BY },
		{ "pid", required_argument, NULL, O_PID },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct option *opts;   /* own, alloc_fns_options and symbolize_options, joined once */
	struct alloc_fns af;
	struct group_opts g = { .by = BY_LINENO, .alloc_fns = &af };
	const char *out = NULL;
	long pid = -1;
	int c;

	site_command_options(&opts, own);
	alloc_fns_init(&af);
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
		int shared = site_command_option("report", &af, c, optarg);
		if (shared < 0)
			return EXIT_USAGE;
		if (shared)
			continue;
		switch (c) {
		case 'o': out = optarg; break;
		case O_BY:
			if (site_by_parse(optarg, &g.by) < 0)
				return usage_error("report", "--by must be lineno, filename, function or traceback, not '%s'", optarg);
			break;
		case O_PID:
			if (parse_count(optarg, 1L << 30, &pid) < 0)
				return usage_error("report", "--pid takes a process id, not '%s'", optarg);
			break;
		case 'h': return show_help("report");
		case ':': return usage_error("report", "option '%s' needs a value", argv[optind - 1]);
		default: return usage_error("report", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (!out)
		return usage_error("report", "no output file: give -o report.html");
	if (optind >= argc)
		return usage_error("report", "expected snapshot files or a directory of them");
	if (alloc_fns_load(&af) < 0)
		return EXIT_USAGE;

	char **paths;
	int n;
	if (trend_files(argv + optind, argc - optind, pid, &paths, &n) < 0)
		return EXIT_USAGE;
	struct symbolizer *sym = symbolizer_new();
	struct trend *tr = trend_read(paths, n, &g, sym, 1);
	int rc = tr ? write_html(out, tr, &g, sym) : -1;
	if (!rc) {
		fprintf(stderr, "heapdelta: wrote %s (%d snapshots, %zu sites)\n", out, n, tr->nsites);
		write_trend_debuginfo_line(stderr, tr, 0);   /* the page is no place for it */
	}
	trend_free(tr);
	symbolizer_free(sym);
	alloc_fns_release(&af);
	for (int i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
	return rc ? EXIT_USAGE : EXIT_OK;
}
