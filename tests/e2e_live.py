"""End-to-end tests: a process looked at while it runs.  `heapdelta watch`
in a real terminal (tmux runs it, capture-pane reads the screen, stty says
the terminal was given back as it was) and through a pipe (a frame per
poll, the last one's site lines exactly trend's); `heapdelta snapshot PID`
on a traced service, and its one-line refusals."""
import signal

from e2e import *


class Service:
    """The service fixture under `heapdelta run` with interval snapshots,
    running until stop() (SIGTERM: it frees everything and exits)."""

    def __init__(self, d, interval="0.1", *args):
        self.proc = subprocess.Popen([HD, "run", "-o", d, "--interval", interval, "--",
                                      os.path.join(BIN, "service"), "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        check(line[:1] == ["ready"], f"the service did not start: {line} {self.proc.stderr.read() if not line else ''}")
        self.pid = int(line[1])

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err


def wait_for(what, cond, timeout=60):
    """Wait until cond() is true (polled every 50 ms); fail after timeout s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise Failure(f"timed out waiting for {what}")


class Tmux:
    """A tmux server of our own, one 150x40 pane running a plain shell."""

    def __init__(self):
        if not shutil.which("tmux"):
            raise Failure("tmux is not installed (scripts/deps.sh test installs it)")
        self.sock = f"hd-e2e-{os.getpid()}"
        self.tmux("new-session", "-d", "-s", "w", "-x", "150", "-y", "40", "env -i PATH=/usr/bin:/bin TERM=tmux-256color "
                  "bash --norc --noprofile")

    def tmux(self, *args):
        p = run(["tmux", "-L", self.sock, *args])
        eq(p.returncode, 0, f"tmux {' '.join(args)}: {p.stderr.strip()}")
        return p.stdout

    def keys(self, *keys):
        self.tmux("send-keys", "-t", "w", *keys)

    def screen(self):
        return self.tmux("capture-pane", "-p", "-t", "w")

    def alternate(self):
        return self.tmux("display", "-p", "-t", "w", "#{alternate_on}").strip() == "1"

    def close(self):
        run(["tmux", "-L", self.sock, "kill-server"])


@test
def watch_shows_the_growing_site_in_a_terminal_and_gives_the_terminal_back():
    # watch runs in a tmux pane on the snapshots of a running service; the
    # pane shows the leak's line (a positive rate) on the alternate screen.
    # Ended by q, by SIGINT (^C) and by SIGTERM, it leaves the alternate
    # screen and the terminal's modes exactly as stty printed them before.
    d = tmpdir()
    leak = f"{os.path.join(FIX, 'service.c')}:{markers('service.c')['leak']}: +"
    svc = Service(d)
    term = Tmux()
    try:
        term.keys(f"stty -a > {d}/stty.before", "Enter")
        wait_for("stty", lambda: os.path.exists(f"{d}/stty.before"))
        for k, how in enumerate(("q", "sigint", "sigterm")):
            after = f"{d}/stty.{how}"
            term.keys(f"{HD} watch {d} --interval-poll 0.05 --limit 5; echo watch ended $?; stty -a > {after}", "Enter")
            growing = re.compile(rf"^{re.escape(leak)}[1-9]\d*(\.\d)? (B|KiB|MiB)/s, steady \d+%, \+\S+ \S+ over "
                                 rf"\d+\.\d s, size=\S+ \S+ [\u2581-\u2588]+", re.M)
            wait_for("the leak growing in the pane", lambda: growing.search(term.screen()))
            check(term.alternate(), "watch draws on the alternate screen")
            if how == "q":
                term.keys("q")
            elif how == "sigint":
                term.keys("C-c")
            else:
                pid = wait_for("watch's pid", lambda: run(["pgrep", "-f", f"^{HD} watch {d} "]).stdout.split())
                eq(len(pid), 1, "one watch running")
                os.kill(int(pid[0]), signal.SIGTERM)
            wait_for(f"watch to end on {how}", lambda: os.path.exists(after) and os.path.getsize(after) > 0)
            # The file is there once the shell ran stty, but tmux may not
            # have read the pane's output up to it yet (a loaded machine):
            # wait for the status line, which watch's last output precedes.
            ended = wait_for(f"the status line after watch on {how}",
                             lambda: re.search(r"^watch ended (\d+)$", term.screen(), re.M))
            eq(ended.group(1), "0", f"{how}: exit status:\n{term.screen()}")
            check(not term.alternate(), f"{how}: back from the alternate screen")
            eq(open(after).read(), open(f"{d}/stty.before").read(), f"{how}: the terminal's modes")
            term.keys("clear", "Enter")
    finally:
        term.close()
        rc, err = svc.stop()
    eq(rc, 0, f"the service's exit status ({err.strip()})")


def frames_of(text):
    """The frames watch printed: lists of lines, each starting 'heapdelta watch '."""
    frames = []
    for line in text.splitlines():
        if line.startswith("heapdelta watch "):
            frames.append([])
        if line and frames:
            frames[-1].append(line)
    return frames


@test
def watch_prints_frames_through_a_pipe_and_ends_after_the_exit_snapshot():
    # watch is started on an empty folder, then the service runs 600 ticks
    # with a snapshot every 0.1 s.  Through a pipe watch prints a frame
    # each time it finds new snapshots and ends by itself after the frame
    # with the exit snapshot; that frame's site lines and teardown line are
    # exactly what `heapdelta trend` prints for the same snapshots.
    d = tmpdir()
    w = subprocess.Popen([HD, "watch", d, "--interval-poll", "0.05", "--limit", "0"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    p, snaps = traced([os.path.join(BIN, "service"), "600"], d, "--interval", "0.1")
    eq(p.returncode, 0, f"the service's exit status ({p.stderr.strip()})")
    out, err = w.communicate(timeout=60)
    eq((w.returncode, err), (0, ""), "watch's exit status and stderr")
    frames = frames_of(out)
    check(len(frames) >= 3, f"{len(frames)} frames")
    header = re.compile(r"^heapdelta watch (\S+): pid (\d+) (\S+), (\d+) snapshots over \d+\.\d s, "
                        r"the latest #(\d+) \((interval|exit)\)$")
    heads = [header.match(f[0]) for f in frames]
    check(all(heads), f"frame headers: {[f[0] for f in frames]}")
    counts = [int(h.group(4)) for h in heads]
    eq(counts, sorted(set(counts)), "every frame shows more snapshots than the one before")
    eq([h.group(6) for h in heads].count("exit"), 1, "the exit snapshot is shown once")
    last = frames[-1]
    eq((heads[-1].group(1), heads[-1].group(3), heads[-1].group(4), heads[-1].group(6)),
       (d, os.path.join(BIN, "service"), str(len(snaps)), "exit"), "the last frame: the whole run")
    check(re.match(r"^heap \S+ \S+ [\u2581-\u2588]+  rss \S+ \S+ [\u2581-\u2588]+$", last[1]), last[1])
    eq(last[2], "sites growing fastest:", "the sites' heading")
    trend = hd("trend", d, "--limit", "0").stdout.splitlines()
    torn = next(i for i, l in enumerate(trend) if l.startswith("teardown: "))
    eq(last[3:], trend[1:torn + 1], "the last frame's sites and teardown, as trend prints them")
    leak = f"{os.path.join(FIX, 'service.c')}:{markers('service.c')['leak']}: +"
    check(any(l.startswith(leak) for l in last[3:]) and last[-1].startswith("teardown: "),
          "the leak's line and the teardown line")


@test
def snapshot_returns_the_path_of_a_complete_snapshot_of_a_traced_service():
    d = tmpdir()
    svc = Service(d, "1000")   # no interval snapshot in the way
    try:
        paths = []
        for _ in range(2):
            p = hd("snapshot", str(svc.pid))
            eq((p.returncode, p.stderr), (0, ""), "exit status and stderr")
            paths.append(p.stdout.rstrip("\n"))
            eq(p.stdout.count("\n"), 1, "one line")
        for k, path in enumerate(paths):
            check(re.fullmatch(rf"{re.escape(d)}/heapdelta\.{svc.pid}\.\d+\.signal\.snap", path), path)
            info = snap_info(path)
            eq((info["pid"], info["trigger"]), (svc.pid, "signal"), f"{path}: pid and trigger")
        check(paths[0] != paths[1], f"two snapshots, two files: {paths}")
        eq(hd("top", paths[1]).returncode, 0, "the snapshot reads")
    finally:
        rc, err = svc.stop()
    eq(rc, 0, f"the service's exit status ({err.strip()})")


@test
def snapshot_with_a_label_writes_it_into_the_snapshot():
    d = tmpdir()
    svc = Service(d, "1000")
    try:
        p = hd("snapshot", str(svc.pid), "--label", "before the deploy")
        eq((p.returncode, p.stderr), (0, ""), "exit status and stderr")
        info = snap_info(p.stdout.rstrip("\n"))
        eq((info["trigger"], info["label"]), ("signal", "before the deploy"), "trigger and label")
        eq(glob.glob(os.path.join(d, ".heapdelta.*.label")), [], "the label file is gone")
        p = hd("snapshot", str(svc.pid))
        info = snap_info(p.stdout.rstrip("\n"))
        eq(info["label"], "", "the next snapshot has no label")
        # A pending request is not overwritten: a second one is refused.
        planted = os.path.join(d, f".heapdelta.{svc.pid}.label")
        with open(planted, "w") as f:
            f.write("someone else's")
        refusal([str(svc.pid), "--label", "x"], rf"heapdelta: another labelled snapshot of process {svc.pid} is pending .*")
        eq(open(planted).read(), "someone else's", "the pending label is untouched")
        os.unlink(planted)
    finally:
        rc, err = svc.stop()
    eq(rc, 0, f"the service's exit status ({err.strip()})")


def refusal(args, want):
    """heapdelta snapshot ARGS fails with exit status 2 and the one line want
    (a regular expression)."""
    p = hd("snapshot", *args)
    eq((p.returncode, p.stdout), (2, ""), f"snapshot {' '.join(args)}: exit status and stdout")
    lines = p.stderr.splitlines()
    check(len(lines) == 1 and re.fullmatch(want, lines[0]), f"snapshot {' '.join(args)}: stderr {p.stderr!r}")


@test
def snapshot_refuses_in_one_line_what_it_cannot_ask():
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        refusal([str(sleeper.pid)], rf"heapdelta: process {sleeper.pid} is not traced by heapdelta "
                                    r"\(libheapdelta.so is not loaded in it\)")
        if os.geteuid() == 0:   # as nobody, root's process may not be looked at
            p = run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", HD, "snapshot", str(sleeper.pid)])
            eq(p.returncode, 2, f"as nobody: {p.stderr}")
            check(re.fullmatch(rf"heapdelta: not permitted to inspect process {sleeper.pid}: Permission denied\n",
                               p.stderr), p.stderr)
    finally:
        sleeper.kill()
        sleeper.wait()
    refusal([str(sleeper.pid)], rf"heapdelta: no process {sleeper.pid}")
    d = tmpdir()
    # A traced program that ignores the signal: heapdelta's handler was not
    # installed, and nothing is sent.
    # The process that prints its pid is the one asked: the ignored signal
    # is inherited through exec, and the pid is printed once the program
    # runs with the shim loaded (an `echo $$` before `exec` left a moment
    # when the new image had not mapped the shim yet).
    ign = subprocess.Popen([HD, "run", "-o", d, "--", "sh", "-c",
                            "trap '' USR2; exec /usr/bin/python3 -c 'import os, time; print(os.getpid(), flush=True); "
                            "time.sleep(60)'"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    pid = int(ign.stdout.readline())
    refusal([str(pid)], rf"heapdelta: process {pid} ignores SIGUSR2, so heapdelta's handler was not installed: "
                        r"no snapshot on a signal")
    os.kill(pid, signal.SIGTERM)
    ign.wait()
    # A program with its own handler, set after heapdelta's: the signal
    # goes to it, and no snapshot comes.
    script = ("import os, signal, time\n"
              "signal.signal(signal.SIGUSR2, lambda *a: print('its own', flush=True))\n"
              "print(os.getpid(), flush=True)\n"
              "time.sleep(60)\n")
    own = subprocess.Popen([HD, "run", "-o", d, "--", "/usr/bin/python3", "-c", script], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    pid = int(own.stdout.readline())
    refusal([str(pid), "--timeout", "0.5"], rf"heapdelta: no snapshot from process {pid} within 0.5 s in "
                                            rf"'{re.escape(d)}' \(has the program a handler of its own for SIGUSR2\?\)")
    eq(own.stdout.readline(), "its own\n", "the program's handler took the signal")
    os.kill(pid, signal.SIGTERM)
    own.wait()
    eq(glob.glob(os.path.join(d, "*.signal.snap")), [], "no signal snapshot")
    p = hd("snapshot", "1", "--label", "x" * 1025)
    check(p.returncode == 2 and p.stderr.startswith("heapdelta: --label takes 1024 bytes at most\n"), p.stderr)
    p = hd("snapshot", "nope")
    check(p.returncode == 2 and p.stderr.startswith("heapdelta: expected a process id, not 'nope'"), p.stderr)
