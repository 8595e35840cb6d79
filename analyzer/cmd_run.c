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

/* What `heapdelta run` was asked. */
struct run_args {
	const char *out, *interval, *depth, *unwind, *sig, *keep;
	char sample[32];               /* --sample in bytes; "" when not given */
	int children, check, gate_args;
	struct gate_opts gate;         /* --check's budgets, baseline, report */
	char **cmd;                    /* the program and its arguments */
};

/* run's own options (the gate's are GATE_OPT_*, above them). */
enum { O_INTERVAL = 256, O_DEPTH, O_UNWIND, O_SIGNAL, O_NOCHILD, O_CHECK, O_SAMPLE, O_KEEP };

/* One of run's own options: 0, or EXIT_USAGE after a usage message. */
static int run_option(struct run_args *a, int c, const char *arg)
{
	char *end;
	long n;
	uint64_t v;

	switch (c) {
	case 'o': a->out = arg; return 0;
	case O_INTERVAL:
		if (strtod(arg, &end) < 0 || *end || !*arg)
			return usage_error("run", "--interval takes seconds, not '%s'", arg);
		a->interval = arg;
		return 0;
	case O_DEPTH:
		if (parse_count(arg, 256, &n) < 0 || n < 1)
			return usage_error("run", "--depth takes 1 to 256, not '%s'", arg);
		a->depth = arg;
		return 0;
	case O_UNWIND:
		if (strcmp(arg, "fp") && strcmp(arg, "libunwind") && strcmp(arg, "cfi"))
			return usage_error("run", "--unwind must be cfi, libunwind or fp, not '%s'", arg);
		a->unwind = arg;
		return 0;
	case O_SIGNAL: a->sig = arg; return 0;
	case O_NOCHILD: a->children = 0; return 0;
	case O_SAMPLE:
		if (parse_size(arg, &v) < 0)
			return usage_error("run", "--sample takes a size such as 512KiB, not '%s'", arg);
		snprintf(a->sample, sizeof a->sample, "%llu", (unsigned long long)v);
		return 0;
	case O_CHECK: a->check = 1; return 0;
	case O_KEEP:
		if (parse_count(arg, 1000000, &n) < 0 || n < 3)
			return usage_error("run", "--keep takes 3 to 1000000 snapshots, not '%s'", arg);
		a->keep = arg;
		return 0;
	}
	return usage_error("run", "unknown option");
}

/* Parse argv into a.  0 when the command goes on, else 1 with *status set
 * (help shown, or a usage error). */
static int parse_options(int argc, char **argv, struct run_args *a, int *status)
{
	static const struct option own[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "interval", required_argument, NULL, O_INTERVAL },
		{ "depth", required_argument, NULL, O_DEPTH },
		{ "unwind", required_argument, NULL, O_UNWIND },
		{ "signal", required_argument, NULL, O_SIGNAL },
		{ "no-children", no_argument, NULL, O_NOCHILD },
		{ "check", no_argument, NULL, O_CHECK },
		{ "sample", required_argument, NULL, O_SAMPLE },
		{ "keep", required_argument, NULL, O_KEEP },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	/* run's own options, then the gate's (for --check). */
	struct option *opts = gate_options_with(own);
	int c, help = 0;

	memset(a, 0, sizeof *a);
	a->out = ".";
	a->children = 1;
	gate_opts_init(&a->gate);
	opterr = 0;
	optind = 1;
	*status = 0;
	while (!help && !*status && (c = getopt_long(argc, argv, "+:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			help = 1;
			*status = show_help("run");
			break;
		case ':': *status = usage_error("run", "option '%s' needs a value", argv[optind - 1]); break;
		case '?': *status = usage_error("run", "unknown option '%s'", argv[optind - 1]); break;
		default:
			if (c < GATE_OPT_MAX_LEAKED) {
				*status = run_option(a, c, optarg);
				break;
			}
			a->gate_args = 1;
			if (gate_option("run", &a->gate, c, optarg) < 0)
				*status = EXIT_USAGE;
		}
	}
	free(opts);
	if (help || *status)
		return 1;
	if (optind >= argc)
		*status = usage_error("run", "no command to run");
	else if (a->gate_args && !a->check)
		*status = usage_error("run", "budget and report options need --check");
	else if (a->check && !gate_has_budget(&a->gate))
		*status = usage_error("run", "--check needs a budget: --max-leaked, --max-lost, --max-growth, "
				      "--max-growth-per-site, --max-peak or --baseline");
	else if (a->check && alloc_fns_load(&a->gate.alloc_fns) < 0)
		*status = EXIT_USAGE;
	a->cmd = argv + optind;
	return *status != 0;
}

/* The shim, a traceable program, and a writable output directory (its
 * real path into *outdir).  0, or an exit status after an error line. */
static int prepare(const struct run_args *a, char **shim, char **outdir)
{
	char *prog;

	*outdir = NULL;
	if (!(*shim = find_shim())) {
		error("cannot find libheapdelta.so (looked beside the heapdelta executable and in %s/lib/heapdelta; "
		      "set HEAPDELTA_SHIM)", HD_PREFIX);
		return EXIT_USAGE;
	}
	if (!(prog = find_program(a->cmd[0]))) {
		error("'%s': command not found", a->cmd[0]);
		return 127;
	}
	if (is_static_elf(prog)) {
		error("'%s' is statically linked: LD_PRELOAD cannot reach its malloc, so heapdelta cannot trace it", prog);
		free(prog);
		return EXIT_USAGE;
	}
	free(prog);
	if (mkdir_p(a->out) < 0) {
		error("cannot create output directory '%s': %s", a->out, strerror(errno));
		return EXIT_USAGE;
	}
	*outdir = realpath(a->out, NULL);
	if (!*outdir || access(*outdir, W_OK) != 0) {
		error("output directory '%s' is not writable", a->out);
		return EXIT_USAGE;
	}
	return 0;
}

/* Is cmd CPython: named python*, or a script whose #! line names it? */
static int runs_python(const char *cmd)
{
	const char *base = strrchr(cmd, '/');
	char line[256] = "";
	FILE *f;

	base = base ? base + 1 : cmd;
	if (strncmp(base, "python", 6) == 0)
		return 1;
	if (!strchr(cmd, '/') || !(f = fopen(cmd, "re")))
		return 0;
	if (!fgets(line, sizeof line, f))
		line[0] = 0;
	fclose(f);
	return strncmp(line, "#!", 2) == 0 && strstr(line, "python") != NULL;
}

/* The environment the shim reads; returns the LD_PRELOAD value, which must
 * live until the exec. */
static char *set_environment(const struct run_args *a, const char *shim, const char *outdir)
{
	/* CPython serves objects of 512 bytes or less from arenas of its own,
	 * unseen; its malloc mode sends them through malloc, as tracemalloc
	 * sees them. */
	if (runs_python(a->cmd[0]) && !getenv("PYTHONMALLOC")) {
		setenv("PYTHONMALLOC", "malloc", 1);
		fprintf(stderr, "heapdelta: PYTHONMALLOC=malloc, so that every Python object reaches malloc\n");
	}
	const char *old = getenv("LD_PRELOAD");
	char *preload = old && *old ? xasprintf("%s:%s", shim, old) : xstrdup(shim);

	setenv("LD_PRELOAD", preload, 1);
	setenv("HEAPDELTA_OUT", outdir, 1);
	if (a->interval) setenv("HEAPDELTA_INTERVAL", a->interval, 1);
	if (a->keep) setenv("HEAPDELTA_KEEP", a->keep, 1);
	if (a->depth) setenv("HEAPDELTA_DEPTH", a->depth, 1);
	if (a->unwind) setenv("HEAPDELTA_UNWIND", a->unwind, 1);
	if (a->sig) setenv("HEAPDELTA_SIGNAL", a->sig, 1);
	if (*a->sample) setenv("HEAPDELTA_SAMPLE", a->sample, 1);
	if (!a->children) setenv("HEAPDELTA_CHILDREN", "0", 1);
	return preload;
}

/* Run cmd as our child, forwarding the signals sent to us, and wait for
 * it: its pid, with its wait status in *status; -1 after an error line.
 * The signals are blocked from before the fork until the handlers are in
 * place, so none sent meanwhile is lost or kills us instead. */
static pid_t spawn_and_wait(char **cmd, int *status)
{
	struct sigaction sa;
	sigset_t block, oldmask;
	size_t nfwd = sizeof forwarded / sizeof forwarded[0];

	fflush(NULL);
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = forward;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigemptyset(&block);
	for (size_t i = 0; i < nfwd; i++)
		sigaddset(&block, forwarded[i]);
	sigprocmask(SIG_BLOCK, &block, &oldmask);

	pid_t pid = fork();
	if (pid < 0) {
		sigprocmask(SIG_SETMASK, &oldmask, NULL);
		return error("cannot fork: %s", strerror(errno));
	}
	if (pid == 0) {
		sigprocmask(SIG_SETMASK, &oldmask, NULL);
		execvp(cmd[0], cmd);
		int e = errno;
		fprintf(stderr, "heapdelta: cannot run '%s': %s\n", cmd[0], strerror(e));
		_exit(e == ENOENT ? 127 : 126);
	}
	child_pid = pid;
	for (size_t i = 0; i < nfwd; i++)
		sigaction(forwarded[i], &sa, NULL);
	sigprocmask(SIG_SETMASK, &oldmask, NULL);

	while (waitpid(pid, status, 0) < 0)
		if (errno != EINTR)
			return error("waiting for '%s': %s", cmd[0], strerror(errno));
	for (size_t i = 0; i < nfwd; i++)
		signal(forwarded[i], SIG_DFL);
	return pid;
}

/* --check: gate the snapshots in outdir that were not in `before`; the
 * report goes to stderr (the program owns standard output). */
static int check_run(struct run_args *a, const char *outdir, char **before)
{
	int nafter = 0, nnew = 0, rc = EXIT_USAGE;
	char **after = list_snapshots(outdir, &nafter);
	char **fresh = xcalloc((size_t)nafter + 1, sizeof *fresh);

	for (int i = 0; i < nafter; i++)
		if (!listed_in(before, after[i]))
			fresh[nnew++] = after[i];
	a->gate.to_stderr = 1;
	if (nnew)
		rc = check_snapshots(&a->gate, fresh, nnew);
	else
		error("the run wrote no snapshots to check");
	free(fresh);
	free_list(after);
	return rc;
}

/* Leave as the child did: its exit code, or the same signal re-raised
 * (without a core file of our own). */
static int exit_like(int status)
{
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

/* Run the program traced; its own exit status, or with --check the gate's
 * when the program itself succeeded. */
static int trace(struct run_args *a, const char *shim, const char *outdir)
{
	int nbefore = 0, status, verdict = EXIT_USAGE;
	/* With --check, the gate looks at this run's snapshots only. */
	char **before = a->check ? list_snapshots(outdir, &nbefore) : NULL;
	char *preload = set_environment(a, shim, outdir);
	pid_t pid = spawn_and_wait(a->cmd, &status);

	free(preload);
	if (pid < 0) {
		free_list(before);
		return EXIT_USAGE;
	}
	report_snapshots(outdir, pid);
	if (a->check)
		verdict = check_run(a, outdir, before);
	free_list(before);
	int failed = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
	if (a->check && failed)
		fprintf(stderr, "heapdelta: '%s' itself failed (%s %d): its status is kept\n", a->cmd[0],
			WIFEXITED(status) ? "exit status" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	if (a->check && !failed)
		return verdict;
	return exit_like(status);
}

int cmd_run(int argc, char **argv)
{
	struct run_args a;
	char *shim = NULL, *outdir = NULL;
	int status;

	if (!parse_options(argc, argv, &a, &status) && !(status = prepare(&a, &shim, &outdir)))
		status = trace(&a, shim, outdir);
	gate_opts_release(&a.gate);
	free(outdir);
	free(shim);
	return status;
}
