/*
 * cmd_info.c - `heapdelta info`: what a snapshot says about its process
 * (the writers: write_info.c).
 */
#include "cmd.h"
#include "json.h"
#include "snapshot.h"
#include "util.h"
#include "write.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

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
	struct json j;
	if (!out)
		return EXIT_USAGE;
	if (json)
		write_info_json_begin(&j, out);
	for (int i = optind; i < argc && !rc; i++) {
		struct snapshot s;
		if (snapshot_load(argv[i], &s) < 0) {
			rc = -1;
		} else if (json) {
			write_info_json(&j, &s);
		} else {
			write_info_text(out, &s);
		}
		snapshot_release(&s);
	}
	if (json && !rc)
		write_info_json_end(&j);
	if (output_close(out, output) < 0)
		rc = -1;
	return rc ? EXIT_USAGE : EXIT_OK;
}
