"""End-to-end tests: long-running services.  Snapshots that grow with what
changed (format version 2), bounded disk (--keep), and files that stay
readable whatever happens to the process."""
import signal

from e2e import *


def by_pid(d):
    """{pid: [files in seq order]} of the snapshots in d."""
    out = {}
    for f in sorted(glob.glob(os.path.join(d, "heapdelta.*.snap")), key=snap_order):
        out.setdefault(re.search(r"heapdelta\.(\d+)\.", f).group(1), []).append(f)
    return out


def v1_size(path):
    """The size the same snapshot takes in format version 1 (every stack
    with its counters in every file), computed from the file and its chain:
    the v2 file without NEW_STACKS and COUNTERS, plus a STACKS section."""
    _, secs = snapshot_sections(path)
    _, stacks = read_snapshot(path)
    v2 = os.path.getsize(path)
    return v2 - sum(16 + len(secs[t]) for t in (8, 9)) + 16 + 4 + sum(40 + 8 * s[0] for s in stacks.values())


@test
def a_python_services_snapshots_hold_what_changed_not_what_exists():
    # The asyncio service of the README, a snapshot every 0.1 s.  Each
    # stack's frames are written once; a snapshot holds the counters that
    # changed.  Against the same snapshots in format version 1: a steady
    # interval snapshot at most 1/20 of the size, the run at most 1/10.
    d = tmpdir()
    env = {**os.environ, "PYTHONMALLOC": "malloc"}
    p, _ = traced(["/usr/bin/python3", os.path.join(FIX, "svc.py"), "3"], d, "--interval", "0.1", env=env)
    eq(p.returncode, 0, f"exit status (stderr: {p.stderr.strip()})")
    files = max(by_pid(d).values(), key=len)
    check(len(files) >= 10, f"{len(files)} snapshots")
    sizes = [(os.path.getsize(f), v1_size(f)) for f in files]
    total2, total1 = sum(a for a, _ in sizes), sum(b for _, b in sizes)
    check(total2 * 10 <= total1, f"the run: {total2} bytes, {total1} in version 1")
    steady = [s for f, s in zip(files, sizes) if ".interval." in f][len(files) // 2:]
    med2, med1 = sorted(a for a, _ in steady)[len(steady) // 2], sorted(b for _, b in steady)[len(steady) // 2]
    check(med2 * 20 <= med1, f"a steady interval snapshot: {med2} bytes, {med1} in version 1")
    # heapdelta composes the chain as the test's own reader does.
    for f in (files[len(files) // 2], files[-1]):
        meta, stacks = read_snapshot(f)
        info = snap_info(f)
        eq([info["live_bytes"], info["live_count"], info["alloc_bytes"], info["alloc_count"]],
           [sum(s[k] for s in stacks.values()) for k in range(1, 5)], f"{os.path.basename(f)}: totals of the chain")
        eq(info["stacks"], len(stacks), f"{os.path.basename(f)}: stacks in the chain")


@test
def a_process_killed_mid_run_leaves_every_snapshot_readable_and_a_missing_base_is_named():
    d = tmpdir()
    env = {**os.environ, "LD_PRELOAD": SHIM, "HEAPDELTA_OUT": d, "HEAPDELTA_INTERVAL": "0.02"}
    proc = subprocess.Popen([os.path.join(BIN, "longrun"), "60"], env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while len(glob.glob(os.path.join(d, "heapdelta.*.snap"))) < 12 and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    files = sorted(glob.glob(os.path.join(d, "heapdelta.*.snap")), key=snap_order)
    check(len(files) >= 12, f"{len(files)} snapshots before the kill")
    for f in files:
        p = hd("info", f)
        eq(p.returncode, 0, f"{os.path.basename(f)} reads after SIGKILL: {p.stderr.strip()}")
    # Take away one base in the middle: a later snapshot names it.
    gone = files[3]
    os.unlink(gone)
    pid, seq = re.search(r"heapdelta\.(\d+)\.(\d+)\.", os.path.basename(gone)).groups()
    p = hd("top", files[-1])
    eq(p.returncode, 2, "exit status with a base missing")
    eq(p.stderr, f"heapdelta: snapshot {seq} of pid {pid}, the base of '{files[4]}', is missing\n", "the error line")
    eq(p.stdout, "", "no report")
    # Files before it still read.
    eq(hd("top", files[2]).returncode, 0, "an earlier snapshot reads")


@test
def keep_holds_at_most_n_interval_snapshots_spread_over_the_run():
    # 1000 ticks of 5 ms, a snapshot every 10 ms: about 250 interval
    # snapshots, at most 20 on disk at any moment (checked while it runs).
    d = tmpdir()
    proc = subprocess.Popen([HD, "run", "-o", d, "--interval", "0.01", "--keep", "20", "--",
                             os.path.join(BIN, "slowleak"), "1000", "1000000"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    most = 0
    while proc.poll() is None:
        most = max(most, len(glob.glob(os.path.join(d, "heapdelta.*.interval.snap"))))
        time.sleep(0.005)
    err = proc.stderr.read()
    eq(proc.returncode, 0, f"exit status ({err.strip()})")
    files = sorted(glob.glob(os.path.join(d, "heapdelta.*.snap")), key=snap_order)
    intervals = [f for f in files if ".interval." in f]
    check(most <= 20, f"{most} interval snapshots on disk at once")
    eq(len(intervals), 20, "interval snapshots kept")
    infos = sorted(snap_infos(*files), key=lambda i: i["seq"])
    eq(infos[0]["seq"], 1, "the first snapshot is kept")
    check(infos[-1]["trigger"] == "exit" and infos[-2]["trigger"] == "interval", "the latest interval snapshot is kept")
    check(infos[-2]["seq"] > 200, f"the latest interval snapshot is number {infos[-2]['seq']}")
    # Kept snapshots span the run: no gap longer than a fifth of it.
    t = [i["mono_ns"] for i in infos if i["trigger"] == "interval"]
    check(max(b - a for a, b in zip(t, t[1:])) < (t[-1] - t[0]) / 5, "kept snapshots spread over the run")
    # The leak first, its rate within 10% of what the kept snapshots hold.
    line = markers("slowleak.c")["leak"]

    def leak_bytes(f):
        return next(s["size"] for s in top_json(f)["stats"] if s["file"] and s["file"].endswith("slowleak.c") and s["line"] == line)

    first, last = intervals[0], intervals[-1]
    true_rate = (leak_bytes(last) - leak_bytes(first)) / ((infos[-2]["mono_ns"] - infos[0]["mono_ns"]) / 1e9)
    r = json.loads(hd("trend", d, "--format", "json", "--limit", "1").stdout)
    top = r["sites"][0]
    eq((os.path.basename(top["file"] or ""), top["line"]), ("slowleak.c", line), "the leak ranks first")
    check(abs(top["rate"] - true_rate) <= 0.1 * true_rate, f"rate {top['rate']:.0f} B/s, the snapshots say {true_rate:.0f}")
