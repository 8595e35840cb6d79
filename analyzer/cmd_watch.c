/*
 * cmd_watch.c - `heapdelta watch DIR`: the trend of a running process,
 * refreshed as its snapshots arrive (the model: trend.c, fed one snapshot
 * at a time; the frame: write_watch_text() in write_trend.c).
 *
 * DIR is polled (a readdir every --interval-poll seconds): the files of
 * the process followed (--pid, or the one with the most files) that are
 * newer than the last one read are loaded in sequence order, added to the
 * model and released; version 2 chains are read once that way.  A file
 * that cannot be read yet (its base thinned away under it by --keep, say)
 * is tried again at the next poll, and skipped after five tries.
 *
 * On a terminal the frame is redrawn in place on the alternate screen,
 * cut to the terminal's size, with the keyboard in non-canonical mode so
 * that `q` quits at once; the terminal is restored on every way out:
 * `q`, the end of input, SIGINT, SIGTERM, SIGHUP, exit().  Otherwise one
 * plain-text frame is printed each time a poll finds new snapshots, and
 * the command ends once the process's exit snapshot has been shown (or on
 * SIGINT, SIGTERM).
 */
#include "cmd.h"
#include "trend.h"
#include "util.h"
#include "write.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_TRIES 5

/* ---- the terminal -------------------------------------------------------- */

static struct termios saved_tio;
static int raw_on, alt_on;
static volatile sig_atomic_t stop_signal, resized;

static void on_stop(int sig)
{
	stop_signal = sig;
}

static void on_winch(int sig)
{
	(void)sig;
	resized = 1;
}

/* Back to the screen and keyboard as they were; idempotent (atexit too). */
static void term_restore(void)
{
	if (alt_on) {
		fputs("\033[?25h\033[?1049l", stdout);
		fflush(stdout);
		alt_on = 0;
	}
	if (raw_on) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
		raw_on = 0;
	}
}

static void term_enter(void)
{
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_tio) == 0) {
		struct termios t = saved_tio;
		t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);   /* keys at once, unechoed; ^C still SIGINT */
		t.c_cc[VMIN] = 1;
		t.c_cc[VTIME] = 0;
		if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) == 0)
			raw_on = 1;
	}
	fputs("\033[?1049h\033[?25l\033[H\033[2J", stdout);   /* alternate screen, no cursor */
	fflush(stdout);
	alt_on = 1;
	atexit(term_restore);
}

static void term_size(int *rows, int *cols)
{
	struct winsize ws;

	*rows = 24;
	*cols = 80;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
		*rows = ws.ws_row;
		*cols = ws.ws_col;
	}
}

/* One line of at most cols columns (UTF-8: a column per character), then
 * "clear to the end of the line". */
static void put_cut(const char *line, size_t len, int cols)
{
	int w = 0;
	size_t i = 0;

	for (; i < len; i++) {
		if (((unsigned char)line[i] & 0xc0) != 0x80 && ++w > cols)
			break;
	}
	fwrite(line, 1, i, stdout);
	fputs("\033[K", stdout);
}

/* Draw text (lines ending in '\n') from the top, cut to the terminal, and
 * status on the last row. */
static void term_draw(const char *text, const char *status)
{
	int rows, cols, row = 0;
	const char *p = text;

	term_size(&rows, &cols);
	fputs("\033[H", stdout);
	while (*p && row < rows - 2) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		put_cut(p, len, cols);
		fputs("\r\n", stdout);
		row++;
		p += len + (nl != NULL);
	}
	fprintf(stdout, "\033[J\033[%d;1H", rows);
	put_cut(status, strlen(status), cols);
	fflush(stdout);
}

/* ---- the directory -------------------------------------------------------- */

struct entry {
	uint64_t pid, seq;
	char *path;
};

static int by_seq(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;

	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return 0;
}

/* The snapshot files in dir (by name); -1 with errno set. */
static int list_dir(const char *dir, struct entry **v, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	*v = NULL;
	*n = 0;
	if (!d)
		return -1;
	while ((de = readdir(d))) {
		uint64_t pid, seq;
		if (trend_file_name(de->d_name, &pid, &seq) < 0)
			continue;
		*v = xrealloc(*v, (*n + 1) * sizeof **v);
		(*v)[*n] = (struct entry){ pid, seq, xasprintf("%s/%s", dir, de->d_name) };
		(*n)++;
	}
	closedir(d);
	return 0;
}

static void entries_free(struct entry *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].path);
	free(v);
}

/* ---- the model ------------------------------------------------------------ */

struct watch {
	const char *dir;
	long pid;                 /* followed; -1: none yet */
	int fixed;                /* --pid */
	const struct group_opts *g;
	struct symbolizer *sym;
	struct trend *tr;
	uint64_t last_seq;        /* the last snapshot added */
	int exited;               /* the exit snapshot is in */
	uint64_t failing_seq;     /* a file that would not read, and how often */
	int tries;
};

/* The process with the most files (the one followed already on a tie). */
static long busiest(const struct entry *v, size_t n, long current)
{
	long best = current;
	size_t most = 0;

	for (size_t i = 0; i < n; i++)
		if ((long)v[i].pid == current)
			most++;
	for (size_t i = 0; i < n; i++) {
		size_t c = 0;
		for (size_t k = 0; k < n; k++)
			c += v[k].pid == v[i].pid;
		if (c > most || (c == most && best < 0)) {
			most = c;
			best = (long)v[i].pid;
		}
	}
	return best;
}

/* Read what is new in the directory; the number of snapshots added, or -1
 * with errno set (the directory is gone). */
static int poll_dir(struct watch *w)
{
	struct entry *v;
	size_t n;
	int added = 0;

	if (list_dir(w->dir, &v, &n) < 0)
		return -1;
	long pid = w->fixed ? w->pid : busiest(v, n, w->pid);
	if (pid != w->pid || !w->tr) {
		/* Another process: its own trend, from its first file (room
		 * for its files so far, and a quarter more). */
		int files = 0;
		for (size_t i = 0; i < n; i++)
			files += (long)v[i].pid == pid;
		trend_free(w->tr);
		w->tr = trend_new(w->g, w->sym, files + files / 4 + 16, 0);
		w->pid = pid;
		w->last_seq = 0;
		w->exited = 0;
		w->tries = 0;
	}
	qsort(v, n, sizeof *v, by_seq);
	for (size_t i = 0; i < n && !stop_signal; i++) {
		if ((long)v[i].pid != w->pid || v[i].seq <= w->last_seq)
			continue;
		struct snapshot s;
		if (snapshot_load(v[i].path, &s) < 0) {
			snapshot_release(&s);
			if (w->failing_seq != v[i].seq) {
				w->failing_seq = v[i].seq;
				w->tries = 0;
			}
			if (++w->tries < MAX_TRIES)
				break;          /* again at the next poll */
			w->last_seq = v[i].seq; /* given up on */
			continue;
		}
		if ((long)s.meta[HD_META_PID] != w->pid) {
			snapshot_release(&s);
			w->last_seq = v[i].seq;
			continue;
		}
		w->exited |= s.meta[HD_META_TRIGGER] == HD_TRIGGER_EXIT;
		trend_add(w->tr, &s);
		w->last_seq = v[i].seq;
		added++;
	}
	entries_free(v, n);
	if (added)
		trend_finish(w->tr);
	return added;
}

/* ---- the command ---------------------------------------------------------- */

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

	nanosleep(&ts, NULL);   /* a signal ends it early */
}

int cmd_watch(int argc, char **argv)
{
	enum { O_BY = 256, O_LIMIT, O_PID, O_POLL };
	static const struct option own[] = {
		{ "by", required_argument, NULL, O_BY },
		{ "limit", required_argument, NULL, O_LIMIT },
		{ "pid", required_argument, NULL, O_PID },
		{ "interval-poll", required_argument, NULL, O_POLL },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct option *opts;   /* own, alloc_fns_options and symbolize_options, joined once */
	struct alloc_fns af;
	struct group_opts g = { .by = BY_LINENO, .alloc_fns = &af };
	struct watch w = { .pid = -1, .g = &g };
	double every = 0.5;
	long limit = 10;
	int c;

	site_command_options(&opts, own);
	alloc_fns_init(&af);
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		int shared = site_command_option("watch", &af, c, optarg);
		if (shared < 0)
			return EXIT_USAGE;
		if (shared)
			continue;
		switch (c) {
		case O_BY:
			if (site_by_parse(optarg, &g.by) < 0)
				return usage_error("watch", "--by must be lineno, filename, function or traceback, not '%s'", optarg);
			break;
		case O_LIMIT:
			if (parse_count(optarg, 1L << 30, &limit) < 0)
				return usage_error("watch", "--limit takes a number, not '%s'", optarg);
			break;
		case O_PID:
			if (parse_count(optarg, 1L << 30, &w.pid) < 0)
				return usage_error("watch", "--pid takes a process id, not '%s'", optarg);
			w.fixed = 1;
			break;
		case O_POLL: {
			char *end;
			errno = 0;
			every = strtod(optarg, &end);
			if (errno || *end || !(every >= 0.01 && every <= 3600))
				return usage_error("watch", "--interval-poll takes seconds (0.01 to 3600), not '%s'", optarg);
			break;
		}
		case 'h': return show_help("watch");
		case ':': return usage_error("watch", "option '%s' needs a value", argv[optind - 1]);
		default: return usage_error("watch", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		return usage_error("watch", "expected one directory of snapshots");
	w.dir = argv[optind];
	struct stat st;
	if (stat(w.dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return usage_error("watch", "'%s' is not a directory: %s", w.dir, errno ? strerror(errno) : "not one");
	if (alloc_fns_load(&af) < 0)
		return EXIT_USAGE;

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop;         /* no SA_RESTART: poll() and sleeps end */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = on_winch;
	sigaction(SIGWINCH, &sa, NULL);

	int tty = isatty(STDOUT_FILENO), rc = EXIT_OK, drawn = 0;
	w.sym = symbolizer_new();
	if (tty)
		term_enter();
	while (!stop_signal) {
		int added = poll_dir(&w);
		if (added < 0) {
			int e = errno;
			if (tty)
				term_restore();   /* the line goes to the screen it will stay on */
			error("cannot read directory '%s': %s", w.dir, strerror(e));
			rc = EXIT_USAGE;
			break;
		}
		if (tty && (added || resized || !drawn)) {
			char *frame = NULL, status[512];
			size_t len = 0;
			FILE *f = open_memstream(&frame, &len);
			if (w.tr && w.tr->n)
				write_watch_text(f, w.tr, (size_t)limit, w.dir);
			else
				fprintf(f, "heapdelta watch %s: waiting for snapshots\n", w.dir);
			fclose(f);
			snprintf(status, sizeof status, "q quits; polling every %g s%s", every,
				 w.exited ? "; the process has exited" : "");
			term_draw(frame, status);
			free(frame);
			resized = 0;
			drawn = 1;
		} else if (!tty && added) {
			write_watch_text(stdout, w.tr, (size_t)limit, w.dir);
			fputc('\n', stdout);
			if (fflush(stdout) != 0) {
				error("cannot write to standard output: %s", strerror(errno));
				rc = EXIT_USAGE;
				break;
			}
			if (w.exited)
				break;
		}
		if (!tty) {
			sleep_s(every);
			continue;
		}
		/* Keys while waiting: q (or the end of input) quits. */
		struct pollfd pfd = { raw_on ? STDIN_FILENO : -1, POLLIN, 0 };
		if (poll(&pfd, 1, (int)(every * 1000)) > 0 && (pfd.revents & (POLLIN | POLLHUP))) {
			char key[32];
			ssize_t k = read(STDIN_FILENO, key, sizeof key);
			if (k <= 0 || memchr(key, 'q', (size_t)k) || memchr(key, 'Q', (size_t)k))
				break;
		}
	}
	if (tty)
		term_restore();
	trend_free(w.tr);
	symbolizer_free(w.sym);
	alloc_fns_release(&af);
	return rc;
}
