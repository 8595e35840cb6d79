/*
 * symbolize_opts.c - where the symbolizer looks for the files a snapshot
 * names, set by the options every command that symbolizes takes:
 * --debug-dir DIR (repeatable; HEAPDELTA_DEBUG_DIRS adds more, colon
 * separated), --sysroot DIR and --map-path OLD=NEW (repeatable).  One set
 * per process, read by every symbolizer (symbolize.c), so a command's
 * models need not carry it.
 */
#include "cmd.h"
#include "symbolize.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const struct option symbolize_options[] = {
	{ "debug-dir", required_argument, NULL, SYM_OPT_DEBUG_DIR },
	{ "sysroot", required_argument, NULL, SYM_OPT_SYSROOT },
	{ "map-path", required_argument, NULL, SYM_OPT_MAP_PATH },
	{ NULL, 0, NULL, 0 },
};

static struct sym_paths paths;
static int env_read;

static int is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A copy of path without trailing slashes ("/" stays "/"). */
static char *trimmed(const char *path, size_t len)
{
	while (len > 1 && path[len - 1] == '/')
		len--;
	return xstrndup(path, len);
}

static void add_debug_dir(char *dir)
{
	paths.debug_dirs = xrealloc(paths.debug_dirs, (paths.ndebug_dirs + 1) * sizeof *paths.debug_dirs);
	paths.debug_dirs[paths.ndebug_dirs++] = dir;
}

int symbolize_option(const char *cmd, int c, const char *arg)
{
	const char *eq;

	switch (c) {
	case SYM_OPT_DEBUG_DIR:
		if (!is_dir(arg)) {
			usage_error(cmd, "--debug-dir: '%s' is not a directory", arg);
			return -1;
		}
		add_debug_dir(trimmed(arg, strlen(arg)));
		return 0;
	case SYM_OPT_SYSROOT:
		if (!is_dir(arg)) {
			usage_error(cmd, "--sysroot: '%s' is not a directory", arg);
			return -1;
		}
		free(paths.sysroot);
		paths.sysroot = trimmed(arg, strlen(arg));
		if (!strcmp(paths.sysroot, "/")) {     /* the root itself: nothing to add */
			free(paths.sysroot);
			paths.sysroot = NULL;
		}
		return 0;
	case SYM_OPT_MAP_PATH:
		eq = strchr(arg, '=');
		if (!eq || arg[0] != '/' || !eq[1]) {
			usage_error(cmd, "--map-path takes OLD=NEW, OLD an absolute path, not '%s'", arg);
			return -1;
		}
		paths.maps = xrealloc(paths.maps, (paths.nmaps + 1) * sizeof *paths.maps);
		paths.maps[paths.nmaps].from = trimmed(arg, (size_t)(eq - arg));
		paths.maps[paths.nmaps].to = trimmed(eq + 1, strlen(eq + 1));
		paths.nmaps++;
		return 0;
	}
	usage_error(cmd, "unknown option");
	return -1;
}

const struct sym_paths *symbolize_paths(void)
{
	const char *env = getenv("HEAPDELTA_DEBUG_DIRS");

	if (!env_read && env) {
		for (const char *p = env; *p;) {
			size_t len = strcspn(p, ":");
			char *dir = len ? trimmed(p, len) : NULL;
			if (dir && is_dir(dir))
				add_debug_dir(dir);
			else if (dir) {
				warning("HEAPDELTA_DEBUG_DIRS: '%s' is not a directory", dir);
				free(dir);
			}
			p += len + (p[len] == ':');
		}
	}
	env_read = 1;
	return &paths;
}

char *symbolize_map_path(const char *path)
{
	const struct sym_map *best = NULL;
	size_t bestlen = 0;

	for (size_t i = 0; i < paths.nmaps; i++) {
		const struct sym_map *m = &paths.maps[i];
		size_t len = strlen(m->from);
		if (strncmp(path, m->from, len) == 0 && (path[len] == '/' || !path[len] || len == 1) && len >= bestlen) {
			best = m;
			bestlen = len;
		}
	}
	if (!best)
		return NULL;
	const char *rest = path + bestlen;
	if (bestlen == 1)                  /* "/" maps every path */
		rest = path;
	return xasprintf("%s%s", strcmp(best->to, "/") ? best->to : "", rest);
}
