/*
 * cmd_run.c - `heapdelta run`: run a program with the shim preloaded.
 *
 * The program runs as our child with its standard streams untouched.  We
 * forward the signals someone sends us (not the ones the terminal already
 * sends the whole process group), wait, print one line on stderr naming the
 * snapshots, and leave with the child's own status: its exit code, or the
 * same signal re-raised (without a core file of our own).
 */
#include "cmd.h"
#include "gate.h"
#include "util.h"

#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef HD_PREFIX
#define HD_PREFIX "/usr/local"
#endif

static volatile pid_t child_pid;

static void forward(int sig, siginfo_t *si, void *ctx)
{
	(void)ctx;
	/* The terminal signals the whole foreground group: the child has it. */
	if (si && si->si_code == SI_KERNEL)
		return;
	if (child_pid > 0)
		kill(child_pid, sig);
}

static const int forwarded[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM, SIGWINCH, SIGCONT };

/* The shim next to this executable (build tree) or in PREFIX/lib/heapdelta. */
static char *find_shim(void)
{
	char exe[PATH_MAX];
	const char *env = getenv("HEAPDELTA_SHIM");
	ssize_t n;

	if (env && *env)
		return realpath(env, NULL);
	n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = 0;
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			const char *rel[] = { "/libheapdelta.so", "/../lib/heapdelta/libheapdelta.so" };
			for (size_t i = 0; i < 2; i++) {
				char *p = xasprintf("%s%s", exe, rel[i]);
				char *r = realpath(p, NULL);
				free(p);
				if (r)
					return r;
			}
		}
	}
	return realpath(HD_PREFIX "/lib/heapdelta/libheapdelta.so", NULL);
}

/* Find cmd as execvp would; NULL when not found. */
static char *find_program(const char *cmd)
{
	if (strchr(cmd, '/'))
		return access(cmd, F_OK) == 0 ? xstrdup(cmd) : NULL;
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t len = strcspn(path, ":");
		char *p = xasprintf("%.*s/%s", (int)len, len ? path : ".", cmd);
		if (access(p, X_OK) == 0)
			return p;
		free(p);
		path += len;
		if (*path == ':')
			path++;
	}
	return NULL;
}

/* 1 when file is an ELF executable without a program interpreter (static),
 * 0 otherwise (dynamic, a script, unreadable: let exec decide). */
static int is_static_elf(const char *file)
{
	Elf64_Ehdr eh;
	int fd = open(file, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return 0;
	if (pread(fd, &eh, sizeof eh, 0) == (ssize_t)sizeof eh && !memcmp(eh.e_ident, ELFMAG, SELFMAG) &&
	    eh.e_ident[EI_CLASS] == ELFCLASS64 && (eh.e_type == ET_EXEC || eh.e_type == ET_DYN)) {
		int interp = 0, dynamic = 0;
		for (int i = 0; i < eh.e_phnum; i++) {
			Elf64_Phdr ph;
			if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * eh.e_phentsize)) != (ssize_t)sizeof ph)
				break;
			interp |= ph.p_type == PT_INTERP;
			dynamic |= ph.p_type == PT_DYNAMIC;
		}
		/* A static PIE has PT_DYNAMIC but no interpreter; a shared library
		 * run directly has neither marker we need: only ET_EXEC or a
		 * static-pie lacks PT_INTERP. */
		rc = !interp && (eh.e_type == ET_EXEC || dynamic);
	}
	close(fd);
	return rc;
}

static int mkdir_p(const char *dir)
{
	char *p = xstrdup(dir);

	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0777) < 0 && errno != EEXIST) {
			free(p);
			return -1;
		}
		*s = '/';
	}
	int rc = mkdir(p, 0777) < 0 && errno != EEXIST ? -1 : 0;
	free(p);
	return rc;
}

/* Names of the snapshot files in dir, sorted; NULL-terminated. */
static char **list_snapshots(const char *dir, int *n)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **v = NULL;

	*n = 0;
	while (d && (de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (strncmp(de->d_name, "heapdelta.", 10) || l < 6 || strcmp(de->d_name + l - 5, ".snap"))
			continue;
		v = xrealloc(v, (size_t)(*n + 2) * sizeof *v);
		v[(*n)++] = xasprintf("%s/%s", dir, de->d_name);
	}
	if (d)
		closedir(d);
	v = xrealloc(v, (size_t)(*n + 1) * sizeof *v);
	v[*n] = NULL;
	return v;
}

static int listed_in(char **list, const char *path)
{
	for (; *list; list++)
		if (!strcmp(*list, path))
			return 1;
	return 0;
}

static void free_list(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
}

static void report_snapshots(const char *dir, pid_t pid)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char prefix[64];
	int mine = 0;

	if (!d)
		return;
	snprintf(prefix, sizeof prefix, "heapdelta.%d.", (int)pid);
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, prefix, strlen(prefix)) && strstr(de->d_name, ".snap"))
			mine++;
	closedir(d);
	fprintf(stderr, "heapdelta: %d snapshot%s of pid %d in %s (heapdelta.%d.*.snap)\n",
		mine, mine == 1 ? "" : "s", (int)pid, dir, (int)pid);
}

int cmd_run(int argc, char **argv)
{
	enum { O_INTERVAL = 256, O_DEPTH, O_UNWIND, O_SIGNAL, O_NOCHILD, O_CHECK, O_SAMPLE };
	static const struct option own[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "interval", required_argument, NULL, O_INTERVAL },
		{ "depth", required_argument, NULL, O_DEPTH },
		{ "unwind", required_argument, NULL, O_UNWIND },
		{ "signal", required_argument, NULL, O_SIGNAL },
		{ "no-children", no_argument, NULL, O_NOCHILD },
		{ "check", no_argument, NULL, O_CHECK },
		{ "sample", required_argument, NULL, O_SAMPLE },
		{ "help", no_argument, NULL, 'h' },
	};
	/* run's own options, then the gate's (for --check). */
	struct option opts[sizeof own / sizeof own[0] + 32];
	size_t nopts = 0;
	for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
		opts[nopts++] = own[i];
	for (const struct option *g = gate_options; g->name && nopts < sizeof opts / sizeof opts[0] - 1; g++)
		opts[nopts++] = *g;
	memset(&opts[nopts], 0, sizeof opts[nopts]);

	const char *out = ".", *interval = NULL, *depth = NULL, *unwind = NULL, *sig = NULL;
	char sample[32] = "";
	int children = 1, check = 0, gate_args = 0, c;
	long n;
	struct gate_opts gate;

	gate_opts_init(&gate);
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+:o:h", opts, NULL)) != -1) {
		if (c >= GATE_OPT_MAX_LEAKED) {
			int rc = gate_option("run", &gate, c, optarg);
			if (rc)
				return rc;
			gate_args = 1;
			continue;
		}
		switch (c) {
		case 'o': out = optarg; break;
		case O_INTERVAL: {
			char *end;
			double v = strtod(optarg, &end);
			if (*end || v < 0 || !*optarg)
				return usage_error("run", "--interval takes seconds, not '%s'", optarg);
			interval = optarg;
			break;
		}
		case O_DEPTH:
			if (parse_count(optarg, 256, &n) < 0 || n < 1)
				return usage_error("run", "--depth takes 1 to 256, not '%s'", optarg);
			depth = optarg;
			break;
		case O_UNWIND:
			if (strcmp(optarg, "fp") && strcmp(optarg, "libunwind") && strcmp(optarg, "cfi"))
				return usage_error("run", "--unwind must be cfi, libunwind or fp, not '%s'", optarg);
			unwind = optarg;
			break;
		case O_SIGNAL: sig = optarg; break;
		case O_NOCHILD: children = 0; break;
		case O_SAMPLE: {
			uint64_t v;
			if (parse_size(optarg, &v) < 0)
				return usage_error("run", "--sample takes a size such as 512KiB, not '%s'", optarg);
			snprintf(sample, sizeof sample, "%llu", (unsigned long long)v);
			break;
		}
		case O_CHECK: check = 1; break;
		case 'h': return show_help("run");
		case ':': return usage_error("run", "option '%s' needs a value", argv[optind - 1]);
		default: return usage_error("run", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error("run", "no command to run");
	if (gate_args && !check)
		return usage_error("run", "budget and report options need --check");
	if (check && !gate_has_budget(&gate))
		return usage_error("run", "--check needs a budget: --max-leaked, --max-growth, --max-growth-per-site, "
				   "--max-peak or --baseline");
	char **cmd = argv + optind;

	char *shim = find_shim();
	if (!shim) {
		error("cannot find libheapdelta.so (looked beside the heapdelta executable and in %s/lib/heapdelta; "
		      "set HEAPDELTA_SHIM)", HD_PREFIX);
		return EXIT_USAGE;
	}
	char *prog = find_program(cmd[0]);
	if (!prog) {
		error("'%s': command not found", cmd[0]);
		return 127;
	}
	if (is_static_elf(prog)) {
		error("'%s' is statically linked: LD_PRELOAD cannot reach its malloc, so heapdelta cannot trace it", prog);
		return EXIT_USAGE;
	}
	free(prog);
	if (mkdir_p(out) < 0) {
		error("cannot create output directory '%s': %s", out, strerror(errno));
		return EXIT_USAGE;
	}
	char *outdir = realpath(out, NULL);
	if (!outdir || access(outdir, W_OK) != 0) {
		error("output directory '%s' is not writable", out);
		return EXIT_USAGE;
	}

	/* With --check, the gate looks at this run's snapshots only. */
	int nbefore = 0;
	char **before = check ? list_snapshots(outdir, &nbefore) : NULL;

	const char *old = getenv("LD_PRELOAD");
	char *preload = old && *old ? xasprintf("%s:%s", shim, old) : xstrdup(shim);
	setenv("LD_PRELOAD", preload, 1);
	setenv("HEAPDELTA_OUT", outdir, 1);
	if (interval) setenv("HEAPDELTA_INTERVAL", interval, 1);
	if (depth) setenv("HEAPDELTA_DEPTH", depth, 1);
	if (unwind) setenv("HEAPDELTA_UNWIND", unwind, 1);
	if (sig) setenv("HEAPDELTA_SIGNAL", sig, 1);
	if (*sample) setenv("HEAPDELTA_SAMPLE", sample, 1);
	if (!children) setenv("HEAPDELTA_CHILDREN", "0", 1);

	fflush(NULL);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = forward;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigset_t block, oldmask;
	sigemptyset(&block);
	for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
		sigaddset(&block, forwarded[i]);
	sigprocmask(SIG_BLOCK, &block, &oldmask);

	pid_t pid = fork();
	if (pid < 0) {
		sigprocmask(SIG_SETMASK, &oldmask, NULL);
		error("cannot fork: %s", strerror(errno));
		return EXIT_USAGE;
	}
	if (pid == 0) {
		sigprocmask(SIG_SETMASK, &oldmask, NULL);
		execvp(cmd[0], cmd);
		int e = errno;
		fprintf(stderr, "heapdelta: cannot run '%s': %s\n", cmd[0], strerror(e));
		_exit(e == ENOENT ? 127 : 126);
	}
	child_pid = pid;
	for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
		sigaction(forwarded[i], &sa, NULL);
	sigprocmask(SIG_SETMASK, &oldmask, NULL);

	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			error("waiting for '%s': %s", cmd[0], strerror(errno));
			return EXIT_USAGE;
		}
	for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
		signal(forwarded[i], SIG_DFL);

	report_snapshots(outdir, pid);
	int verdict = -1;
	if (check) {
		int nafter = 0, nnew = 0;
		char **after = list_snapshots(outdir, &nafter);
		char **fresh = xcalloc((size_t)nafter + 1, sizeof *fresh);
		for (int i = 0; i < nafter; i++)
			if (!listed_in(before, after[i]))
				fresh[nnew++] = after[i];
		/* The program owns standard output. */
		gate.to_stderr = 1;
		verdict = nnew ? gate_run(&gate, fresh, nnew) : (error("the run wrote no snapshots to check"), EXIT_USAGE);
		free(fresh);
		free_list(after);
		free_list(before);
	}
	suppressions_release(&gate.supp);
	free(outdir);
	free(preload);
	free(shim);
	int failed = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
	if (check && failed)
		fprintf(stderr, "heapdelta: '%s' itself failed (%s %d): its status is kept\n", cmd[0],
			WIFEXITED(status) ? "exit status" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	if (check && !failed)
		return verdict;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status)) {
		int s = WTERMSIG(status);
		struct rlimit no_core = { 0, 0 };
		setrlimit(RLIMIT_CORE, &no_core);
		fflush(NULL);
		signal(s, SIG_DFL);
		sigset_t one;
		sigemptyset(&one);
		sigaddset(&one, s);
		sigprocmask(SIG_UNBLOCK, &one, NULL);
		raise(s);
		return 128 + s;
	}
	return EXIT_USAGE;
}
