/*
 * options.c - the shim's configuration, read once from HEAPDELTA_*
 * environment variables at start-up.  A bad value is warned about once and
 * replaced by the default: the program runs on whatever we are told.
 * Parsed by hand: no stdio, no malloc, before anything else is set up.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static int parse_uint(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (!s || !*s)
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

/* Seconds with an optional fraction ("5", "0.25"), without strtod's locale. */
static int parse_seconds(const char *s, uint64_t *ns)
{
	uint64_t whole = 0, frac = 0, scale = 1000000000u;
	const char *c = s;

	if (!s || !*s)
		return -1;
	for (; *c >= '0' && *c <= '9'; c++) {
		whole = whole * 10 + (uint64_t)(*c - '0');
		if (whole > 100000000)
			return -1;
	}
	if (*c == '.') {
		for (c++; *c >= '0' && *c <= '9'; c++) {
			if (scale > 1) {
				scale /= 10;
				frac += (uint64_t)(*c - '0') * scale;
			}
		}
	}
	if (*c || c == s)
		return -1;
	*ns = whole * 1000000000u + frac;
	return 0;
}

static int parse_signal(const char *s, int *signo)
{
	static const struct { const char *name; int no; } names[] = {
		{ "USR1", SIGUSR1 }, { "USR2", SIGUSR2 }, { "HUP", SIGHUP },
		{ "PROF", SIGPROF }, { "WINCH", SIGWINCH }, { "URG", SIGURG },
	};
	unsigned long v;

	if (parse_uint(s, 0, (unsigned long)SIGRTMAX, &v) == 0) {
		*signo = (int)v;
		return 0;
	}
	if (s && strncmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; s && i < sizeof names / sizeof names[0]; i++)
		if (strcmp(s, names[i].name) == 0) {
			*signo = names[i].no;
			return 0;
		}
	return -1;
}

void hds_config_load(struct hds_config *cfg)
{
	const char *v;
	unsigned long n;

	cfg->unwinder = HD_UNWIND_CFI;
	cfg->depth = 32;
	cfg->interval_ns = 0;
	cfg->signo = SIGUSR2;
	cfg->children = 1;
	cfg->max_stacks = 1u << 20;
	cfg->reach = 1;

	if ((v = getenv("HEAPDELTA_UNWIND")) && *v) {
		if (strcmp(v, "fp") == 0)
			cfg->unwinder = HD_UNWIND_FP;
		else if (strcmp(v, "libunwind") == 0)
			cfg->unwinder = HD_UNWIND_LIBUNWIND;
		else if (strcmp(v, "cfi") != 0)
			hds_warn("HEAPDELTA_UNWIND must be 'cfi', 'libunwind' or 'fp'; using cfi", v);
	}
	if ((v = getenv("HEAPDELTA_UNWIND_CHECK")) && *v)
		cfg->unwind_check = strcmp(v, "0") != 0;
	if ((v = getenv("HEAPDELTA_DEPTH")) && *v) {
		if (parse_uint(v, 1, HD_MAX_DEPTH, &n) == 0)
			cfg->depth = (int)n;
		else
			hds_warn("HEAPDELTA_DEPTH must be 1 to 256; using 32", v);
	}
	if ((v = getenv("HEAPDELTA_INTERVAL")) && *v) {
		if (parse_seconds(v, &cfg->interval_ns) < 0 || (cfg->interval_ns && cfg->interval_ns < 1000000)) {
			hds_warn("HEAPDELTA_INTERVAL must be seconds (at least 0.001, 0 for none); no periodic snapshots", v);
			cfg->interval_ns = 0;
		}
	}
	if ((v = getenv("HEAPDELTA_SIGNAL")) && *v) {
		if (parse_signal(v, &cfg->signo) < 0 || cfg->signo == SIGKILL || cfg->signo == SIGSTOP) {
			hds_warn("HEAPDELTA_SIGNAL must be a signal number or name, or 0; using SIGUSR2", v);
			cfg->signo = SIGUSR2;
		}
	}
	if ((v = getenv("HEAPDELTA_REACH")) && *v)
		cfg->reach = strcmp(v, "0") != 0;
	if ((v = getenv("HEAPDELTA_CHILDREN")) && *v)
		cfg->children = strcmp(v, "0") != 0;
	if ((v = getenv("HEAPDELTA_SAMPLE")) && *v) {
		if (parse_uint(v, 0, UINT64_C(1) << 40, &n) == 0)
			cfg->sample_bytes = n;
		else
			hds_warn("HEAPDELTA_SAMPLE must be a mean interval in bytes (0: every allocation); recording every allocation", v);
	}
	if ((v = getenv("HEAPDELTA_MAX_STACKS")) && *v) {
		if (parse_uint(v, 16, HDS_LIVE_MAX_STACK, &n) == 0)
			cfg->max_stacks = (uint32_t)n;
		else
			hds_warn("HEAPDELTA_MAX_STACKS must be 16 to 16777214; using 1048576", v);
	}

	if ((v = getenv("HEAPDELTA_KEEP")) && *v) {
		if (parse_uint(v, 3, 1000000, &n) == 0)
			cfg->keep = (uint32_t)n;
		else
			hds_warn("HEAPDELTA_KEEP must be 3 to 1000000; keeping every snapshot", v);
	}

	v = getenv("HEAPDELTA_OUT");
	if (!v || !*v)
		v = ".";
	cfg->outdir[0] = 0;
	if (v[0] != '/') {
		if (!getcwd(cfg->outdir, sizeof cfg->outdir - 2))
			cfg->outdir[0] = 0;
		size_t l = strlen(cfg->outdir);
		if (l && cfg->outdir[l - 1] != '/')
			strcat(cfg->outdir, "/");
	}
	if (strlen(cfg->outdir) + strlen(v) + 1 > sizeof cfg->outdir) {
		hds_warn("HEAPDELTA_OUT is too long; using the current directory", NULL);
		v = ".";
	}
	strcat(cfg->outdir, v);
}
