/*
 * triggers.c - when snapshots are written: every interval and on the
 * snapshot signal (by the writer thread), at the program's request
 * (heapdelta.h), and at exit; and the writer thread's housekeeping.
 *
 * Hazards handled here:
 *  - the signal handler only sets a flag and posts a semaphore (both
 *    async-signal-safe); the writer thread does the work;
 *  - the writer thread blocks every signal, so it never takes one meant for
 *    the program;
 *  - credentials: glibc applies setuid and friends in every thread, and the
 *    writer steps aside meanwhile (creds.c calls hds_writer_pause/resume);
 *  - fork: the child gets its own writer thread;
 *  - exit: a snapshot under way in the writer thread is given up to 2 s
 *    to finish, so no temporary file is left behind.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static sem_t wake;
static _Atomic int signal_pending;
static _Atomic int stopping;
static _Atomic int exit_done;
static _Atomic int writer_stop;
static int writer_running;
static pthread_t writer;

static void on_signal(int signo)
{
	int saved = errno;
	(void)signo;
	atomic_store_relaxed(&signal_pending, 1);
	sem_post(&wake);
	errno = saved;
}

/*
 * A label for a signal snapshot: `heapdelta snapshot PID --label TEXT`
 * writes OUTDIR/.heapdelta.PID.label (created exclusively, mode 0600) before
 * it sends the signal.  Taken only if it is a regular file of our own user,
 * of 1 KiB at most, opened without following a link and without blocking;
 * deleted once read.  "" otherwise.
 */
static const char *requested_label(char *buf, size_t cap)
{
	char path[4400];
	struct stat st;
	ssize_t n;

	buf[0] = 0;
	hds_snapshot_name(path, "/.heapdelta.", 0, "", "");
	/* hds_snapshot_name gives OUTDIR/.heapdelta.PID.0.: make it .label */
	size_t len = strlen(path);
	if (len < 3)
		return buf;
	memcpy(path + len - 3, ".label", 7);
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return buf;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() && st.st_size < (off_t)cap &&
	    (n = read(fd, buf, cap - 1)) >= 0)
		buf[n] = 0;
	close(fd);
	unlink(path);
	return buf;
}

#define RECLAIM_NS (UINT64_C(1) * 1000000000u)   /* housekeeping period */

static void *writer_main(void *arg)
{
	uint64_t interval = hds.cfg.interval_ns;
	uint64_t now = hds_now_ns(CLOCK_MONOTONIC);
	uint64_t next = interval ? now + interval : UINT64_MAX;
	uint64_t next_reclaim = now + RECLAIM_NS;
	(void)arg;

	hds_busy = 1;   /* this thread's own allocations are not the program's */
	hds_reach_note_thread();
	for (;;) {
		uint64_t wake_at = next < next_reclaim ? next : next_reclaim;
		struct timespec ts = { (time_t)(wake_at / 1000000000u), (long)(wake_at % 1000000000u) };
		hds_tl_nopark = 0;   /* the exit's scan may stop this thread only while it waits */
		sem_clockwait(&wake, CLOCK_MONOTONIC, &ts);
		hds_tl_nopark = 1;
		if (atomic_load_relaxed(&stopping) || atomic_load_relaxed(&writer_stop)) {
			hds_tl_nopark = 0;
			break;
		}
		if (atomic_exchange(&signal_pending, 0)) {
			char label[1025];
			hds_snapshot_write(HD_TRIGGER_SIGNAL, requested_label(label, sizeof label), 1);
		}
		now = hds_now_ns(CLOCK_MONOTONIC);
		if (now >= next_reclaim) {
			hds_live_reclaim();
			next_reclaim = hds_now_ns(CLOCK_MONOTONIC) + RECLAIM_NS;
		}
		if (now >= next) {
			hds_snapshot_write(HD_TRIGGER_INTERVAL, "", 1);
			now = hds_now_ns(CLOCK_MONOTONIC);
			next += interval;
			if (next <= now)   /* fell behind: do not write a burst */
				next = now + interval;
		}
	}
	return NULL;
}

static void start_writer(void)
{
	pthread_attr_t attr;
	sigset_t all, old;
	int outer = hds_busy;

	writer_running = 0;
	atomic_store_relaxed(&writer_stop, 0);
	if (!hds.cfg.interval_ns && !hds.cfg.signo)
		return;
	hds_busy = 1;
	sem_init(&wake, 0, 0);
	/* The new thread inherits this mask: it must never take a signal
	 * meant for the program. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 << 10);
	if (pthread_create(&writer, &attr, writer_main, NULL) == 0)
		writer_running = 1;
	else
		hds_warn("cannot start the snapshot thread; interval and signal snapshots are off", NULL);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	hds_busy = outer;
}

void hds_triggers_start(void)
{
	start_writer();
	if (hds.cfg.signo && writer_running) {
		struct sigaction old, sa;
		if (sigaction(hds.cfg.signo, NULL, &old) == 0 && old.sa_handler == SIG_DFL &&
		    !(old.sa_flags & SA_SIGINFO)) {
			memset(&sa, 0, sizeof sa);
			sa.sa_handler = on_signal;
			sa.sa_flags = SA_RESTART;
			sigemptyset(&sa.sa_mask);
			sigaction(hds.cfg.signo, &sa, NULL);
		}
	}
}

void hds_writer_pause(void)
{
	if (!writer_running || atomic_load_relaxed(&stopping))
		return;
	atomic_store_relaxed(&writer_stop, 1);
	sem_post(&wake);
	pthread_join(writer, NULL);
	writer_running = 0;
}

void hds_writer_resume(void)
{
	if (!writer_running && !atomic_load_relaxed(&stopping) && atomic_load_relaxed(&writer_stop))
		start_writer();
}

void hds_triggers_after_fork(void)
{
	atomic_store_relaxed(&exit_done, 0);
	atomic_store_relaxed(&signal_pending, 0);
	hds_snapshot_after_fork();   /* the peak since the previous snapshot: total.c's */
	hds_modules_after_fork();
	hds_live_after_fork();
	if (!atomic_load_relaxed(&stopping))
		start_writer();
}

void hds_snapshot_at_exit(int from_exit_call)
{
	/* A vfork child shares our memory but has its own pid and never ran
	 * the fork handlers: it is not the process these tables describe. */
	if (from_exit_call && getpid() != hds.pid)
		return;
	if (atomic_exchange(&exit_done, 1))
		return;
	atomic_store_relaxed(&stopping, 1);
	if (writer_running)
		sem_post(&wake);
	/* Let a snapshot the writer thread has under way finish (at most 2 s),
	 * so the process does not end with its temporary file behind. */
	for (int i = 0; i < 2000 && hds_snapshot_writing(); i++) {
		struct timespec ms = { 0, 1000000 };
		nanosleep(&ms, NULL);
	}
	/* Then let it end (at most 2 s more): the exit's reachability scan
	 * stops every thread but this one, and the writer has nothing of the
	 * program's, nor a signal it could take. */
	if (!from_exit_call && writer_running) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 2;
		int outer = hds_busy;
		hds_busy = 1;   /* the join frees the thread's TLS: not the program's frees */
		if (pthread_timedjoin_np(writer, NULL, &until) == 0)
			writer_running = 0;
		hds_busy = outer;
	}
	if (from_exit_call) {
		/* _exit, perhaps from a signal handler: no stopping threads here. */
		memset(&hds_reach, 0, sizeof hds_reach);
		hds_reach.status = hds.cfg.reach ? HD_REACH_UNSAFE_EXIT : HD_REACH_OFF;
		hds_snapshot_write(HD_TRIGGER_EXIT, "", 0);
		return;
	}
	hds_modules_refresh(1);   /* now: the loader's lock may be held by a thread stopped below */
	int outer = hds_busy;
	hds_busy = 1;   /* what the loader and libunwind allocate for it is not the program's */
	int classified = hds_reach_exit() == 0;
	hds_busy = outer;
	if (classified) {
		hds_snapshot_write(HD_TRIGGER_EXIT, "", 0);
		hds_reach_resume();
		return;
	}
	hds_snapshot_write(HD_TRIGGER_EXIT, "", 1);
}

/* heapdelta.h's heapdelta_snapshot() finds this with dlsym. */
HDS_EXPORT int heapdelta_snapshot_request(const char *label);
int heapdelta_snapshot_request(const char *label)
{
	if (atomic_load_acquire(&hds.state) != HDS_ACTIVE)
		return -1;
	return hds_snapshot_write(HD_TRIGGER_API, label ? label : "", 1);
}
