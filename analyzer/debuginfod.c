/*
 * debuginfod.c - files by build-id from debuginfod servers, through
 * libdebuginfod (elfutils' client) loaded with dlopen() when
 * DEBUGINFOD_URLS is set, so that heapdelta runs without it.
 *
 * The client downloads into its cache (DEBUGINFOD_CACHE_PATH) and hands
 * back an open descriptor and the cached file's path: the descriptor is
 * closed here and only the path is returned, so the symbolizer opens the
 * file through its own checks (a regular ELF file with the right
 * build-id) like any other.
 *
 * Never a hang: libdebuginfod gives up on a server after DEBUGINFOD_TIMEOUT
 * seconds without progress (connecting, or under 100 KiB/s); its default is
 * 90, ours 10 (set in our environment when the user has not).  A server
 * that cannot be reached, or times out, is not asked again by this client:
 * a report can name hundreds of modules, each one question.  Misses (no
 * server has the file) are normal and silent; libdebuginfod remembers them
 * in its cache for a while (cache_miss_s).
 */
#include "debuginfod.h"
#include "util.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LIBDEBUGINFOD "libdebuginfod.so.1"
#define DEFAULT_TIMEOUT "10"

typedef struct debuginfod_client debuginfod_client;
typedef int find_fn(debuginfod_client *c, const unsigned char *id, int n, char **path);

struct debuginfod {
	void *lib;
	debuginfod_client *client;
	find_fn *find_debuginfo, *find_executable;
	void (*end)(debuginfod_client *c);
	int dead;                      /* said why, asks no more */
};

static void give_up(struct debuginfod *d, const char *why)
{
	const char *urls = getenv("DEBUGINFOD_URLS");

	d->dead = 1;
	fprintf(stderr, "heapdelta: note: cannot ask debuginfod at %s (%s); debug files are looked for locally only\n",
		urls ? urls : "", why);
}

struct debuginfod *debuginfod_new(void)
{
	const char *urls = getenv("DEBUGINFOD_URLS");

	if (!urls || !urls[strspn(urls, " \t")])
		return NULL;
	return xcalloc(1, sizeof(struct debuginfod));
}

/* Load libdebuginfod and start a client, on the first question. */
static int start(struct debuginfod *d)
{
	debuginfod_client *(*begin)(void);

	if (d->client)
		return 0;
	/* Never unloaded: libcurl and its TLS library keep process-wide state
	 * that libdebuginfod's destructor would tear down under other users,
	 * and that leak checkers would call lost once its code is unmapped. */
	d->lib = dlopen(LIBDEBUGINFOD, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
	if (!d->lib) {
		give_up(d, LIBDEBUGINFOD " cannot be loaded; Debian: apt-get install libdebuginfod1");
		return -1;
	}
	*(void **)&begin = dlsym(d->lib, "debuginfod_begin");
	*(void **)&d->end = dlsym(d->lib, "debuginfod_end");
	*(void **)&d->find_debuginfo = dlsym(d->lib, "debuginfod_find_debuginfo");
	*(void **)&d->find_executable = dlsym(d->lib, "debuginfod_find_executable");
	if (!begin || !d->end || !d->find_debuginfo || !d->find_executable) {
		give_up(d, LIBDEBUGINFOD " lacks the functions of its interface");
		return -1;
	}
	setenv("DEBUGINFOD_TIMEOUT", DEFAULT_TIMEOUT, 0);
	d->client = begin();
	if (!d->client) {
		give_up(d, "its client cannot start");
		return -1;
	}
	return 0;
}

void debuginfod_free(struct debuginfod *d)
{
	if (!d)
		return;
	if (d->client)
		d->end(d->client);
	if (d->lib)
		dlclose(d->lib);
	free(d);
}

char *debuginfod_fetch(struct debuginfod *d, enum debuginfod_kind kind, const unsigned char *id, size_t n)
{
	char *path = NULL, why[160];
	int fd;

	if (!d || d->dead || n == 0 || n > 64 || start(d) < 0)
		return NULL;
	find_fn *find = kind == DEBUGINFOD_DEBUGINFO ? d->find_debuginfo : d->find_executable;
	fd = find(d->client, id, (int)n, &path);
	if (fd >= 0) {
		close(fd);
		char *copy = path ? xstrdup(path) : NULL;
		free(path);
		return copy;
	}
	free(path);
	switch (-fd) {
	case ENOENT:                   /* no server has it */
	case ENOSYS:                   /* no server named after all */
		return NULL;
	case ETIME:
	case ETIMEDOUT: {
		const char *t = getenv("DEBUGINFOD_TIMEOUT");
		snprintf(why, sizeof why, "no answer within %s seconds, DEBUGINFOD_TIMEOUT", t ? t : DEFAULT_TIMEOUT);
		break;
	}
	case ECONNREFUSED: snprintf(why, sizeof why, "connection refused"); break;
	case EHOSTUNREACH: snprintf(why, sizeof why, "host not found or unreachable"); break;
	default: snprintf(why, sizeof why, "%s", strerror(-fd)); break;
	}
	give_up(d, why);
	return NULL;
}
