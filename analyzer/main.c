/*
 * main.c - the heapdelta command: a table of commands, their help, and
 * dispatch to cmd_<name>().
 */
#include "alloc_fns.h"
#include "cmd.h"
#include "hd_format.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The options of every command that chooses sites. */
#define ALLOC_FN_OPTIONS \
"  --alloc-fn REGEX    a function that allocates for its callers (a wrapper of\n" \
"                      malloc): look through it, so its callers are the sites;\n" \
"                      REGEX matches the whole name (C++: with or without its\n" \
"                      parameters); repeatable. Also read from HEAPDELTA_ALLOC_FNS\n" \
"                      (separated by newlines or single colons) and from\n" \
"                      .heapdelta-alloc-fns in the current directory (one a line)\n" \
"  --alloc-fns-file FILE  read them from FILE instead of .heapdelta-alloc-fns\n" \
"  --no-default-alloc-fns  do not look through the built-in list of wrappers\n" \
"                      ('heapdelta help sites')\n" \
"  --native-site       in Python programs too, the site is the innermost native\n" \
"                      frame (default: the innermost Python frame or C extension)\n"

/* The options of every command that symbolizes (symbolize_opts.c). */
#define SYMBOL_OPTIONS \
"  --debug-dir DIR     look in DIR for binaries and debug files too, by build-id\n" \
"                      (DIR/.build-id/xx/yyyy.debug) and by name; repeatable;\n" \
"                      HEAPDELTA_DEBUG_DIRS adds more (separated by colons)\n" \
"  --sysroot DIR       look for the snapshot's files under DIR first: the root\n" \
"                      of the container it was taken in (/proc/PID/root, an\n" \
"                      unpacked image)\n" \
"  --map-path OLD=NEW  look for files under OLD at NEW first; repeatable\n" \
"                      (a file is used only if it has the snapshot's build-id;\n" \
"                      with DEBUGINFOD_URLS set, debuginfod is asked last)\n"

#define SITE_NOTE \
"The allocation site of a stack is its innermost frame that is not an\n" \
"allocation function: the malloc family, C++ operator new/delete, and the\n" \
"wrappers of 'heapdelta help sites' (strdup, fopen's buffer, std::allocator,\n" \
"g_malloc, xmalloc, zmalloc, ...) and --alloc-fn. A wrapper's frames stay in\n" \
"the traceback, marked (allocation wrapper).\n"

#define STATS_OPTIONS \
"  --by KEY            group by lineno (default), filename, function or traceback\n" \
"  --cumulative        charge each stack to every frame in it, each location\n" \
"                      once per stack (tracemalloc counts a location as often as\n" \
"                      it appears in a traceback; heapdelta counts it once)\n" \
"  --limit N           show the first N entries (default 10; 0 shows all)\n" \
"  --include PAT[:LINE]  keep stacks whose site file matches the fnmatch glob\n" \
"                      (and line); repeatable: any include may match\n" \
"  --exclude PAT[:LINE]  drop stacks whose site file matches; repeatable\n" \
"  --all-frames        --include/--exclude/--module test every frame, not only\n" \
"                      the allocation site\n" \
"  --module GLOB       keep stacks whose site is in a module (file name) matching GLOB\n" \
"  --focus REGEX       keep stacks with a function matching REGEX in any frame\n" \
"  --ignore REGEX      drop stacks with a function matching REGEX in any frame\n" \
"  --format FMT        text (default), json, collapsed (folded stacks for\n" \
"                      flamegraph.pl, inferno and speedscope: 'root;...;site\n" \
"                      BYTES', with diff 'root;...;site OLD NEW' for\n" \
"                      differential flame graphs) or pprof (top only: a\n" \
"                      gzipped profile.proto with alloc_objects, alloc_space,\n" \
"                      inuse_objects and inuse_space, for pprof, Pyroscope,\n" \
"                      Parca)\n" \
"  -o, --output FILE   write the report to FILE (default: standard output)\n" \
ALLOC_FN_OPTIONS \
SYMBOL_OPTIONS \
"\n" \
SITE_NOTE

struct cmd {
	const char *name;
	int (*fn)(int, char **);
	const char *usage;
	const char *summary;
	const char *help;
};

static const struct cmd commands[] = {
	{ "run", cmd_run,
	  "heapdelta run [-o DIR] [--interval S] [--keep N] [--depth N] [--unwind cfi|libunwind|fp] [--sample SIZE] [--signal SIG] [--no-children] [--check BUDGETS...] -- CMD [ARGS...]",
	  "run a program with the shim preloaded; snapshots go to DIR",
	  "  -o, --out DIR       where snapshots are written (default: the current\n"
	  "                      directory; created if missing)\n"
	  "  --interval S        also write a snapshot every S seconds (fractions allowed)\n"
	  "  --keep N            keep at most N interval snapshots per process on disk,\n"
	  "                      the first, the latest and evenly spread ones between\n"
	  "  --depth N           frames kept per stack, 1 to 256 (default 32)\n"
	  "  --unwind MODE       cfi (default): heapdelta's cached .eh_frame unwinder, exact\n"
	  "                      without frame pointers, libunwind where it cannot follow;\n"
	  "                      libunwind: libunwind's unw_backtrace for every stack;\n"
	  "                      fp: frame pointers, for programs built with them\n"
	  "  --signal SIG        snapshot signal (default USR2; 0 disables)\n"
	  "  --sample SIZE       record one allocation per SIZE bytes on average (e.g.\n"
	  "                      512KiB), weighted so that per-site figures are unbiased\n"
	  "                      estimates; far cheaper than recording every allocation\n"
	  "  --no-children       do not trace programs that CMD executes\n"
	  "  --check             after CMD ends, gate its snapshots as 'heapdelta check'\n"
	  "                      does, with the same budget, baseline, suppression and\n"
	  "                      report options; the report goes to stderr, or to FILE\n"
	  "                      with --output FILE (-o is the snapshot directory)\n"
	  "with --check, as 'heapdelta check' takes them:\n"
	  ALLOC_FN_OPTIONS
	  SYMBOL_OPTIONS
	  "\n"
	  "With --check the exit status is CMD's own when CMD fails, else the gate's:\n"
	  "0 within budget, 1 over budget.\n"
	  "CMD's standard streams, exit status and signals pass through unchanged.\n"
	  "Options after CMD belong to CMD. A statically linked CMD cannot be traced:\n"
	  "heapdelta says so and exits 2 without running it.\n" },
	{ "top", cmd_top,
	  "heapdelta top SNAP [options]",
	  "what is live in a snapshot, by site (tracemalloc's statistics())",
	  STATS_OPTIONS },
	{ "diff", cmd_diff,
	  "heapdelta diff OLD NEW [options]",
	  "what grew between two snapshots (tracemalloc's compare_to())",
	  STATS_OPTIONS
	  "\nSites are matched by their symbolized location, so OLD and NEW may come\n"
	  "from two runs of the same program. Sorted by the absolute size difference.\n" },
	{ "leaks", cmd_leaks,
	  "heapdelta leaks SNAP... | DIR [--show-kinds KINDS] [--suppressions FILE] [--format text|json] [-o FILE]",
	  "what was not freed at exit, by allocation stack, largest first",
	  "  --show-kinds KINDS  the kinds of reachability listed, separated by commas:\n"
	  "                      definite, indirect, possible, reachable, or all or\n"
	  "                      none (default: definite,indirect)\n"
	  "  --suppressions FILE  LeakSanitizer-format file of leak:PATTERN lines;\n"
	  "                      repeatable\n"
	  "  --print-suppressions  show which suppressions matched, and how much\n"
	  "  --format FMT        text (default) or json\n"
	  "  -o, --output FILE   write the report to FILE (default: standard output)\n"
	  ALLOC_FN_OPTIONS
	  SYMBOL_OPTIONS
	  "\n"
	  "Blocks still allocated when the program exited. When the exit snapshot\n"
	  "classifies them by reachability, each stack is listed once per kind, as\n"
	  "valgrind's loss records (definitely lost, indirectly lost, possibly lost,\n"
	  "still reachable), and the SUMMARY line counts every kind. Otherwise every\n"
	  "block not freed is listed, memory a program keeps until exit on purpose\n"
	  "too (use suppressions), and one line says why they were not classified.\n"
	  "Given several snapshots, the last of each process counts.\n"
	  "Exit status 0, or 2 on unreadable input.\n" },
	{ "check", cmd_check,
	  "heapdelta check [budgets] [options] SNAP... | DIR",
	  "fail a build when memory is over budget or grew past a baseline",
	  "budgets (SIZE: 123, 10KiB, 1.5MiB, 2GiB in powers of 1024; 10KB, 2MB, 1GB in\n"
	  "powers of 1000):\n"
	  "  --max-leaked SIZE   bytes not freed at exit (the last snapshot of each process)\n"
	  "  --max-lost SIZE     bytes definitely and indirectly lost at exit (snapshots\n"
	  "                      classified by reachability; others are an error)\n"
	  "  --max-growth SIZE   growth from the first to the last snapshot of each process,\n"
	  "                      or from OLD to NEW when given two files of two runs\n"
	  "  --max-growth-per-site SIZE  the same, for each allocation stack\n"
	  "  --max-peak SIZE     peak live heap\n"
	  "baselines (sites are allocation stacks, fingerprinted by function and file\n"
	  "names, not addresses):\n"
	  "  --write-baseline FILE  record every site's bytes and count not freed\n"
	  "  --baseline FILE     fail on sites that are new, or grew past their\n"
	  "                      baselined bytes; report each as new, grew, unchanged, gone\n"
	  "  --baseline-slack SIZE  growth a site may have before it counts as grown\n"
	  "  --baseline-lines    fingerprints include line numbers (default: they do not,\n"
	  "                      so unrelated edits keep them)\n"
	  "suppressions and output:\n"
	  "  --suppressions FILE  LeakSanitizer format: leak:PATTERN lines, # comments,\n"
	  "                      * wildcards, ^ and $ anchors, matched against the\n"
	  "                      function, file and module of every frame; repeatable\n"
	  "  --print-suppressions  which suppressions matched, and how much\n"
	  "  --gen-suppressions  a ready-to-paste leak: line for each failing site\n"
	  "  --format FMT        text (default), json, junit, sarif or github\n"
	  "  -o, --output FILE   write the report to FILE (default: standard output)\n"
	  "sites:\n"
	  ALLOC_FN_OPTIONS
	  SYMBOL_OPTIONS
	  "\n"
	  "A site's fingerprint starts at its allocation site: naming a wrapper with\n"
	  "--alloc-fn moves the sites below it, so a baseline written before needs\n"
	  "writing again once.\n"
	  "Exit status: 0 within budget, 1 over budget, 2 usage error, unreadable\n"
	  "input, or --max-lost of a snapshot not classified by reachability. The last\n"
	  "line of text output is a SUMMARY line (on stderr for json, junit and sarif).\n" },
	{ "trend", cmd_trend,
	  "heapdelta trend SNAP... | DIR [--by KEY] [--limit N] [--pid PID] [--format text|json] [-o FILE]",
	  "the sites that grow steadily over many snapshots of one process",
	  "  --by KEY            lineno (default), filename, function or traceback\n"
	  "  --limit N           show the first N sites (default 10; 0 shows all)\n"
	  "  --pid PID           the process to follow (default: the one with the most\n"
	  "                      snapshots)\n"
	  "  --format FMT        text (default) or json\n"
	  "  -o, --output FILE   write the report to FILE (default: standard output)\n"
	  ALLOC_FN_OPTIONS
	  SYMBOL_OPTIONS
	  "\n"
	  "For each site: its growth rate (least squares, bytes per second), how\n"
	  "steadily it grows ((intervals that grew - intervals that shrank) / intervals),\n"
	  "how well a straight line fits it (R^2, linearity), its growth over the run,\n"
	  "its size now and a sparkline. Sites rank by their rate over the last third of\n"
	  "the run times their steadiness times their linearity, so a leak comes first,\n"
	  "and a cache that filled up and stays flat (marked plateaued) or noise that\n"
	  "goes up and down does not.\n"
	  "\n"
	  "A clean shutdown is set apart: when the last snapshot is the exit snapshot,\n"
	  "the traced heap fell at each of the final snapshots and the exit snapshot\n"
	  "holds under half of what the fall started from, those snapshots are the\n"
	  "teardown (a last line 'teardown: ... (not ranked)'), and the figures are those\n"
	  "of the steady state before it.\n" },
	{ "report", cmd_report,
	  "heapdelta report SNAP... | DIR -o report.html [--by KEY] [--pid PID]",
	  "one self-contained HTML page: memory over time, sites by growth, flame graphs",
	  "  -o, --output FILE   the HTML file to write\n"
	  "  --by KEY            lineno (default), filename, function or traceback\n"
	  "  --pid PID           the process to show (default: the one with the most\n"
	  "                      snapshots)\n"
	  ALLOC_FN_OPTIONS
	  SYMBOL_OPTIONS
	  "\n"
	  "The page holds: live memory over time (the largest sites stacked, the traced\n"
	  "heap, and the process's RSS beside it: a widening gap is memory the heap does\n"
	  "not explain); the sites ranked as 'heapdelta trend' ranks them, each row\n"
	  "expanding to its stack; flame graphs of live memory at the last snapshot and\n"
	  "of growth from the first to the last, zoomable (click) and searchable. No\n"
	  "network access is needed to view it. A process's teardown (see 'heapdelta\n"
	  "help trend') is shown in the chart and not ranked; the table and the flame\n"
	  "graphs are then of the steady state before it.\n" },
	{ "watch", cmd_watch,
	  "heapdelta watch DIR [--interval-poll S] [--limit N] [--by KEY] [--pid PID]",
	  "a live view of a running process: heap, RSS, the sites growing fastest",
	  "  --interval-poll S   look for new snapshots every S seconds (default 0.5)\n"
	  "  --limit N           show the first N sites (default 10; 0 shows all)\n"
	  "  --by KEY            lineno (default), filename, function or traceback\n"
	  "  --pid PID           the process to follow (default: the one with the most\n"
	  "                      snapshots)\n"
	  ALLOC_FN_OPTIONS
	  SYMBOL_OPTIONS
	  "\n"
	  "Shows the process's heap and RSS now with sparklines, then its sites ranked as\n"
	  "'heapdelta trend' ranks them, refreshed as snapshots arrive. On a terminal the\n"
	  "view is redrawn in place; q quits. Otherwise a plain-text frame is printed each\n"
	  "time new snapshots arrive, and watch ends once the process's exit snapshot has\n"
	  "been shown (or on SIGINT or SIGTERM).\n" },
	{ "snapshot", cmd_snapshot,
	  "heapdelta snapshot PID [--label TEXT] [--timeout S]",
	  "ask a running traced process for a snapshot and print its path",
	  "  --timeout S         wait at most S seconds for the snapshot (default 10)\n"
	  "  --label TEXT        the snapshot's label (1024 bytes at most), left for the\n"
	  "                      process in OUTDIR/.heapdelta.PID.label, which it reads\n"
	  "                      and deletes when the signal comes\n"
	  "\n"
	  "Sends the process its snapshot signal (HEAPDELTA_SIGNAL, default SIGUSR2, read\n"
	  "from /proc/PID/environ) and waits for the new heapdelta.PID.SEQ.signal.snap in\n"
	  "its output directory (HEAPDELTA_OUT); a snapshot file appears only once\n"
	  "complete. Fails with exit status 2 when there is no such process, it is not\n"
	  "traced, it may not be inspected or signalled, it does not catch the signal\n"
	  "(it ignores it, or heapdelta's handler was not installed because the program\n"
	  "had its own), or no snapshot appears in time.\n" },
	{ "bundle", cmd_bundle,
	  "heapdelta bundle SNAP... | DIR -o FILE.tar [--debug-dir DIR] [--sysroot DIR] [--map-path OLD=NEW]",
	  "pack snapshots with the binaries and debug files their frames need",
	  "  -o, --output FILE   the tar file to write\n"
	  SYMBOL_OPTIONS
	  "\n"
	  "The tar holds the snapshot files (with the earlier snapshots they build on)\n"
	  "and a .build-id tree of the binaries and debug files of every module a stack\n"
	  "points into, found as every command finds them (the options above,\n"
	  "/usr/lib/debug, DEBUGINFOD_URLS) and checked by build-id. Unpacked anywhere,\n"
	  "its snapshots symbolize from that tree without any option:\n"
	  "  tar xf FILE.tar -C DIR && heapdelta top DIR/heapdelta.PID.SEQ.exit.snap\n" },
	{ "info", cmd_info,
	  "heapdelta info SNAP... [--format text|json] [-o FILE]",
	  "a snapshot's process, trigger, counters and modules",
	  "  --format FMT        text (default) or json\n"
	  "  -o, --output FILE   write the report to FILE (default: standard output)\n" },
};

static void print_usage_list(FILE *out)
{
	fprintf(out, "usage: heapdelta COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\n'heapdelta help COMMAND' or 'heapdelta COMMAND --help' describes a command;\n"
		     "'heapdelta help sites' lists the allocation wrappers sites look through.\n");
}

static const struct cmd *find_cmd(const char *name)
{
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

int usage_error(const char *cmd, const char *fmt, ...)
{
	const struct cmd *c = find_cmd(cmd);
	va_list ap;

	va_start(ap, fmt);
	verror(fmt, ap);
	va_end(ap);
	if (c)
		fprintf(stderr, "usage: %s\n", c->usage);
	return EXIT_USAGE;
}

int show_help(const char *cmd)
{
	const struct cmd *c = find_cmd(cmd);

	if (!c)
		return usage_error("", "unknown command '%s'", cmd);
	printf("usage: %s\n\n%s.\n\n%s", c->usage, c->summary, c->help);
	return EXIT_OK;
}

/* `heapdelta help sites`: how a site is chosen, and the built-in list. */
static int help_sites(void)
{
	printf("The allocation site of a stack is its innermost frame that is not an\n"
	       "allocation function: the malloc family, C++ operator new/delete, and the\n"
	       "wrappers below, which allocate on behalf of their caller, so the line that\n"
	       "called them is the site. A wrapper's frames stay in the traceback, marked\n"
	       "(allocation wrapper). The list is built in; add your own with\n"
	       "--alloc-fn REGEX (repeatable), with " ALLOC_FNS_ENV " (expressions\n"
	       "separated by newlines or single colons) or with a file of expressions, one\n"
	       "a line (" ALLOC_FNS_FILE " in the current directory, or\n"
	       "--alloc-fns-file FILE); --no-default-alloc-fns turns the list off.\n"
	       "An expression (POSIX extended) matches a function's whole name (without the\n"
	       "return type a C++ template function's name starts with), with or without\n"
	       "its parameters and clone suffix. Baselines fingerprint the\n"
	       "stack from its site: a wrapper added to the list moves the sites below it,\n"
	       "so baselines written before need writing again, once.\n\n");
	alloc_fns_print_builtin(stdout);
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		print_usage_list(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		print_usage_list(stdout);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("heapdelta 0.1 (snapshot format %d)\n", HD_VERSION);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "help")) {
		if (argc < 3) {
			print_usage_list(stdout);
			return EXIT_OK;
		}
		if (!strcmp(argv[2], "sites"))
			return help_sites();
		return find_cmd(argv[2]) ? show_help(argv[2])
					 : usage_error("", "unknown command '%s'", argv[2]);
	}
	const struct cmd *c = find_cmd(argv[1]);
	if (!c) {
		error("unknown command '%s'", argv[1]);
		print_usage_list(stderr);
		return EXIT_USAGE;
	}
	return c->fn(argc - 1, argv + 1);
}
