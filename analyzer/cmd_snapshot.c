/*
 * cmd_snapshot.c - `heapdelta snapshot PID`: ask a running traced process
 * for a snapshot and print the new file's path once it is there.
 *
 * What the process's shim was told, it was told through its environment:
 * /proc/PID/environ gives HEAPDELTA_OUT (relative: to the directory the
 * process started in, which the shim made absolute; /proc/PID/cwd, or the
 * PWD it was started with when it has moved since) and HEAPDELTA_SIGNAL.
 * Before anything is sent:
 *   - the shim must be mapped (libheapdelta.so in /proc/PID/maps);
 *   - the signal must be caught (SigCgt in /proc/PID/status): the shim
 *     installs its handler only when the program has none, and a signal
 *     the process ignores or leaves at its default would be lost or end
 *     it.  A caught signal may still be the program's own handler, set
 *     after the shim's (/proc does not say whose): then no snapshot comes,
 *     and the timeout says why that may be.
 * A snapshot file is renamed into place once complete (format/FORMAT.md),
 * so the first new heapdelta.PID.SEQ.signal.snap to appear is the answer.
 * Polled every 10 ms; a snapshot takes milliseconds to tens of
 * milliseconds to write.
 */
#include "cmd.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The contents of /proc/PID/NAME (at most 16 MiB), NUL-terminated, *len
 * bytes; NULL with errno set. */
static char *read_proc(long pid, const char *name, size_t *len)
{
	char path[64];
	FILE *f;
	struct strbuf sb = STRBUF_INIT;
	char buf[4096];
	size_t n;

	snprintf(path, sizeof path, "/proc/%ld/%s", pid, name);
	if (!(f = fopen(path, "re")))
		return NULL;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0 && sb.len < (16u << 20))
		strbuf_add(&sb, buf, n);
	int bad = ferror(f), saved = errno;
	fclose(f);
	if (bad) {
		strbuf_release(&sb);
		errno = saved ? saved : EIO;
		return NULL;
	}
	if (!sb.buf)
		strbuf_add(&sb, "", 0);
	*len = sb.len;
	return sb.buf;
}

/* The value of NAME in a NUL-separated environment block, or NULL. */
static const char *env_get(const char *env, size_t len, const char *name)
{
	size_t l = strlen(name);

	for (const char *p = env; p < env + len; p += strlen(p) + 1)
		if (!strncmp(p, name, l) && p[l] == '=')
			return p + l + 1;
	return NULL;
}

/* HEAPDELTA_SIGNAL as the shim reads it (shim/options.c): a number, or
 * USR1, USR2, HUP, PROF, WINCH, URG with or without SIG; anything else
 * makes the shim use SIGUSR2. */
static int parse_signal(const char *v)
{
	static const struct { const char *name; int no; } names[] = {
		{ "USR1", SIGUSR1 }, { "USR2", SIGUSR2 }, { "HUP", SIGHUP },
		{ "PROF", SIGPROF }, { "WINCH", SIGWINCH }, { "URG", SIGURG },
	};
	long n;

	if (!v || !*v)
		return SIGUSR2;
	if (parse_count(v, SIGRTMAX, &n) == 0)
		return n == SIGKILL || n == SIGSTOP ? SIGUSR2 : (int)n;
	if (!strncmp(v, "SIG", 3))
		v += 3;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (!strcmp(v, names[i].name))
			return names[i].no;
	return SIGUSR2;
}

/* Whether signal signo's bit is set in the hexadecimal mask of /proc
 * status line `field` ("SigCgt:"). */
static int mask_has(const char *status, const char *field, int signo)
{
	const char *p = strstr(status, field);

	if (!p)
		return 0;
	p += strlen(field);
	while (*p == ' ' || *p == '\t')
		p++;
	const char *end = p;
	while ((*end >= '0' && *end <= '9') || (*end >= 'a' && *end <= 'f'))
		end++;
	int bit = signo - 1, digit = bit / 4;
	if (end - p <= digit)
		return 0;
	char c = end[-1 - digit];
	int v = c <= '9' ? c - '0' : c - 'a' + 10;
	return (v >> (bit % 4)) & 1;
}

/* Append to *names the heapdelta.PID.SEQ.signal.snap files in dir. */
static void list_signal_snaps(const char *dir, long pid, char ***names, size_t *n)
{
	char prefix[48];
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return;
	snprintf(prefix, sizeof prefix, "heapdelta.%ld.", pid);
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (strncmp(de->d_name, prefix, strlen(prefix)) || l < 12 || strcmp(de->d_name + l - 12, ".signal.snap"))
			continue;
		*names = xrealloc(*names, (*n + 1) * sizeof **names);
		(*names)[(*n)++] = xasprintf("%s/%s", dir, de->d_name);
	}
	closedir(d);
}

/* The first of names[0 .. n) that is not in old[0 .. nold), or NULL. */
static const char *first_new(char **names, size_t n, char **old, size_t nold)
{
	for (size_t i = 0; i < n; i++) {
		int seen = 0;
		for (size_t k = 0; k < nold && !seen; k++)
			seen = !strcmp(names[i], old[k]);
		if (!seen)
			return names[i];
	}
	return NULL;
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* "heapdelta: MSG" and EXIT_USAGE: every failure of this command. */
static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(fmt, ap);
	va_end(ap);
	return EXIT_USAGE;
}

static const char *signame(int signo)
{
	const char *s = sigabbrev_np(signo);

	return s ? s : "?";
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int cmd_snapshot(int argc, char **argv)
{
	enum { O_LABEL = 256, O_TIMEOUT };
	static const struct option opts[] = {
		{ "label", required_argument, NULL, O_LABEL },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	double timeout = 10;
	const char *label = NULL;
	long pid;
	int c;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case O_LABEL: label = optarg; break;
		case O_TIMEOUT: {
			char *end;
			errno = 0;
			timeout = strtod(optarg, &end);
			if (errno || *end || !(timeout > 0) || timeout > 86400)
				return usage_error("snapshot", "--timeout takes seconds (up to 86400), not '%s'", optarg);
			break;
		}
		case 'h': return show_help("snapshot");
		case ':': return usage_error("snapshot", "option '%s' needs a value", argv[optind - 1]);
		default: return usage_error("snapshot", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		return usage_error("snapshot", "expected one process id");
	if (parse_count(argv[optind], INT_MAX, &pid) < 0 || pid < 1)
		return usage_error("snapshot", "expected a process id, not '%s'", argv[optind]);
	if (label && strlen(label) > 1024)
		return usage_error("snapshot", "--label takes 1024 bytes at most");

	size_t len;
	char *maps = read_proc(pid, "maps", &len);
	if (!maps) {
		if (errno == ENOENT || errno == ESRCH)
			return fail("no process %ld", pid);
		return fail("not permitted to inspect process %ld: %s", pid, strerror(errno));
	}
	int traced = strstr(maps, "/libheapdelta.so") != NULL;
	free(maps);
	if (!traced)
		return fail("process %ld is not traced by heapdelta (libheapdelta.so is not loaded in it)", pid);
	size_t envlen;
	char *env = read_proc(pid, "environ", &envlen);
	if (!env)
		return fail("not permitted to read process %ld's environment: %s", pid, strerror(errno));
	const char *sigv = env_get(env, envlen, "HEAPDELTA_SIGNAL");
	if (sigv && !strcmp(sigv, "0")) {
		free(env);
		return fail("process %ld takes no snapshot on a signal (HEAPDELTA_SIGNAL=0)", pid);
	}
	int signo = parse_signal(sigv);
	char *status = read_proc(pid, "status", &len);
	if (!status) {
		free(env);
		return fail("not permitted to inspect process %ld: %s", pid, strerror(errno));
	}
	int caught = mask_has(status, "SigCgt:", signo), ignored = mask_has(status, "SigIgn:", signo);
	free(status);
	if (!caught) {
		free(env);
		if (ignored)
			return fail("process %ld ignores SIG%s, so heapdelta's handler was not installed: no snapshot on "
				    "a signal", pid, signame(signo));
		return fail("process %ld has no handler for SIG%s (heapdelta's was not installed): the signal would "
			    "end it", pid, signame(signo));
	}

	/* Where it writes: HEAPDELTA_OUT, made absolute against the directory
	 * it started in (its cwd now, or the PWD it was given). */
	const char *out = env_get(env, envlen, "HEAPDELTA_OUT");
	char *dirs[2] = { NULL, NULL };
	if (!out || !*out)
		out = ".";
	if (out[0] == '/') {
		dirs[0] = xstrdup(out);
	} else {
		char link[64], cwd[PATH_MAX];
		snprintf(link, sizeof link, "/proc/%ld/cwd", pid);
		ssize_t l = readlink(link, cwd, sizeof cwd - 1);
		if (l > 0) {
			cwd[l] = 0;
			dirs[0] = xasprintf("%s/%s", cwd, out);
		}
		const char *pwd = env_get(env, envlen, "PWD");
		if (pwd && pwd[0] == '/' && !(l > 0 && !strcmp(pwd, cwd)))
			dirs[dirs[0] ? 1 : 0] = xasprintf("%s/%s", pwd, out);
		if (!dirs[0]) {
			int e = errno;
			free(env);
			return fail("not permitted to read process %ld's working directory: %s", pid, strerror(e));
		}
	}
	free(env);

	char **before = NULL, **now = NULL;
	size_t nbefore = 0, nnow = 0;
	const char *fresh = NULL;
	int rc = EXIT_OK;
	for (int i = 0; i < 2 && dirs[i]; i++)
		list_signal_snaps(dirs[i], pid, &before, &nbefore);
	/* A label goes in a file the shim reads when the signal comes (a
	 * signal carries none): created exclusively, mode 0600, so that one
	 * request at a time is pending and nothing else is overwritten. */
	char *label_path = NULL;
	if (label) {
		label_path = xasprintf("%s/.heapdelta.%ld.label", dirs[0], pid);
		int fd = open(label_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		int e = 0;
		if (fd < 0) {
			e = errno;
			rc = e == EEXIST ? fail("another labelled snapshot of process %ld is pending ('%s')", pid, label_path)
					 : fail("cannot write the label in '%s': %s", dirs[0], strerror(e));
		} else {
			size_t llen = strlen(label);
			int ok = write(fd, label, llen) == (ssize_t)llen;
			if (close(fd) != 0 || !ok) {
				unlink(label_path);
				rc = fail("cannot write the label in '%s'", dirs[0]);
			}
		}
		if (rc != EXIT_OK) {
			free(label_path);
			free_names(before, nbefore);
			free(dirs[0]);
			free(dirs[1]);
			return rc;
		}
	}
	if (kill((pid_t)pid, signo) < 0) {
		rc = errno == ESRCH ? fail("no process %ld", pid)
				    : fail("not permitted to signal process %ld: %s", pid, strerror(errno));
	} else {
		double deadline = now_s() + timeout;
		for (;;) {
			int gone = kill((pid_t)pid, 0) < 0 && errno == ESRCH;
			free_names(now, nnow);
			now = NULL;
			nnow = 0;
			for (int i = 0; i < 2 && dirs[i]; i++)
				list_signal_snaps(dirs[i], pid, &now, &nnow);
			if ((fresh = first_new(now, nnow, before, nbefore)))
				break;
			if (gone) {
				rc = fail("process %ld ended before its snapshot was written", pid);
				break;
			}
			if (now_s() >= deadline) {
				rc = fail("no snapshot from process %ld within %g s in '%s' (has the program a handler of its "
					  "own for SIG%s?)", pid, timeout, dirs[0], signame(signo));
				break;
			}
			struct timespec pause = { 0, 10 * 1000000 };
			nanosleep(&pause, NULL);
		}
	}
	if (label_path) {
		unlink(label_path);   /* not taken (no snapshot): nothing left behind */
		free(label_path);
	}
	if (fresh) {
		printf("%s\n", fresh);
		if (fflush(stdout) != 0)
			rc = fail("cannot write to standard output: %s", strerror(errno));
	}
	free_names(now, nnow);
	free_names(before, nbefore);
	free(dirs[0]);
	free(dirs[1]);
	return rc;
}
