"""End-to-end tests: threads that end, and counters read while threads run."""
from e2e import *


@test
def destructors_that_allocate_after_the_shims_own_thread_exit_hook_are_exact():
    # Key destructors in every one of glibc's rounds and C++ thread_local
    # destructors allocate and free after the shim's key destructor has run
    # (it runs first: its key is the oldest).  This crashed the program.
    d = tmpdir()
    p, snaps = traced([os.path.join(BIN, "teardown"), "rounds"], d)
    eq(p.returncode, 0, f"exit status (stderr: {p.stderr.strip()})")
    exits = snaps_of(d, "exit")
    eq(len(exits), 1, "one exit snapshot")
    check_sites(top_json(exits[0]), "teardown.cpp", expectations(p.stdout))


@test
def a_hundred_thousand_short_lived_threads_leave_the_shims_memory_flat():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "teardown"), "churn", "100000"], d, timeout=300)
    eq(p.returncode, 0, f"exit status (stderr: {p.stderr.strip()})")
    infos = {i["label"]: i for i in snap_infos(*snaps_of(d, "api"))}
    early, late = infos["early"], infos["late"]
    # 90,000 threads between the two snapshots: each one takes the bundle
    # (counters and unwinder memory) the previous one gave back.  The shim
    # may map a little for new stacks; 64 KiB is under one byte per thread.
    check(late["shim_bytes"] <= early["shim_bytes"] + (64 << 10),
          f"shim memory {early['shim_bytes']} bytes after 10,000 threads, {late['shim_bytes']} after 100,000")
    eq(late["live_count"], early["live_count"], "live blocks")


@test
def every_snapshot_of_eight_churning_threads_is_consistent_per_site_and_in_total():
    # Interval snapshots every 10 ms and the exit snapshot, all written while
    # eight threads allocate and free 40- and 72-byte blocks without pause.
    # How many snapshots half a second gives depends on the machine's load
    # (each is written while eight threads compete with the writer): the
    # run is repeated, up to ten times, until at least 10 snapshots with a
    # churn site were checked.
    marks = markers("churn.c")
    size_of = {marks["forty"]: 40, marks["seventy_two"]: 72}
    total = runs = 0
    while total < 10 and runs < 10:
        runs += 1
        d = tmpdir()
        p, snaps = traced([os.path.join(BIN, "churn"), "0.5"], d, "--interval", "0.01")
        eq(p.returncode, 0, f"run {runs}: exit status (stderr: {p.stderr.strip()})")
        eq(len(snaps_of(d, "exit")), 1, f"run {runs}: one exit snapshot")
        # A snapshot may come before the threads' first allocation (the first
        # interval falls 10 ms after start, and a loaded machine may not have
        # run them yet).  From the first snapshot with a churn site on, each
        # thread holds 64 blocks, so every later snapshot has one.
        churning = 0
        for snap in snaps:
            meta, stacks = read_snapshot(snap)
            sums = [sum(s[i] for s in stacks.values()) for i in range(1, 5)]
            eq([meta[11], meta[12], meta[15], meta[16]], sums,
               f"{os.path.basename(snap)}: META live/alloc bytes and counts against the sum of the stacks")
            seen = set()
            for st in top_json(snap)["stats"]:
                if st["file"] and os.path.basename(st["file"]) == "churn.c" and st["line"] in size_of:
                    seen.add(st["line"])
                    eq(st["size"], st["count"] * size_of[st["line"]],
                       f"{os.path.basename(snap)}: bytes of churn.c:{st['line']} ({st['count']} blocks)")
            if seen:
                churning += 1
            else:
                check(not churning, f"{os.path.basename(snap)}: no churn site after {churning} snapshots with one")
        total += churning
    check(total >= 10, f"only {total} snapshots with a churn site in {runs} runs")


def peaks_of_the_phases(env=None):
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "peak")], d, env=env)
    eq(p.returncode, 0, f"exit status (stderr: {p.stderr.strip()})")
    rises = {label: v[0] for label, v in expectations(p.stdout).items()}
    eq(sorted(rises), ["climbed", "nudged", "steps", "together"], "the fixture's intervals")
    infos = snap_infos(*snaps_of(d, "api"))
    eq([i["label"] for i in infos], ["held", "climbed", "together", "steps", "nudged"], "the snapshots requested")
    highest = infos[0]["peak_since_prev"]
    for prev, cur in zip(infos, infos[1:]):
        eq(cur["peak_since_prev"], prev["live_bytes"] + rises[cur["label"]],
           f"{cur['label']}: peak since '{prev['label']}' ({prev['live_bytes']} bytes live then)")
        highest = max(highest, cur["peak_since_prev"])
        eq(cur["peak_bytes"], highest, f"{cur['label']}: the peak of the whole run")


@test
def the_peak_is_exact_while_four_threads_churn_below_it_and_climb_past_it():
    # The per-CPU leases (total.c): the fixture drops the total far below
    # its peak, churns there on four threads (frees of each other's blocks
    # included), then climbs past it from one thread and from four at once.
    # Each interval's peak is the previous snapshot's live bytes plus the
    # rise the fixture made, to the byte.
    peaks_of_the_phases()


@test
def the_peak_is_exact_without_restartable_sequences():
    # glibc's rseq registration off: every update takes the shared word.
    peaks_of_the_phases(env=dict(os.environ, GLIBC_TUNABLES="glibc.pthread.rseq=0"))


@test
def the_peak_is_exact_under_a_signal_storm_and_in_forked_children():
    # A profiling timer every 200 us whose handler allocates (signals land
    # inside the shim's slot updates and its slow path), ten forks while
    # four threads churn (the lock is held across fork; each child opens
    # and closes leases of its own): the program's output and status are
    # its own, the parent's interval and every child's are exact.
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "peak"), "storm"], d)
    eq(p.returncode, 0, f"exit status (stderr: {p.stderr.strip()})")
    exp = expectations(p.stdout)
    eq(exp["children"], (10, 0), "children forked, and those that did not exit 0")
    infos = snap_infos(*snaps_of(d, "api"))
    by_pid = {}
    for i in infos:
        by_pid.setdefault(i["pid"], []).append(i)
    parent = [v for v in by_pid.values() if v[0]["label"] == "held"]
    eq(len(parent), 1, "one parent")
    held, climbed = parent[0]
    eq(climbed["peak_since_prev"], held["live_bytes"] + exp["climbed"][0], "the parent's climb")
    kids = [v for v in by_pid.values() if v[0]["label"] == "child-start"]
    eq(len(kids), 10, "children with snapshots")
    for start, end in kids:
        eq(end["peak_since_prev"], start["live_bytes"] + (1 << 20) + 4096, f"child {start['pid']}: its climb")


@test
def threads_using_a_dlopened_librarys_thread_local_storage_run_as_untraced():
    # The DTV (glibc keeps it at %fs:8) reaches a dlopened library's TLS;
    # the shim's per-CPU slot updates write into the thread's rseq area,
    # also reached from %fs: with and without glibc's rseq registration,
    # the program's output and status are its own.
    cmd = [os.path.join(BIN, "dyntls"), os.path.join(BIN, "libtlsplug.so")]
    for tunables in ("", "glibc.pthread.rseq=0"):
        env = dict(os.environ, GLIBC_TUNABLES=tunables)
        plain = run(cmd, env=env)
        eq(plain.returncode, 0, f"untraced, GLIBC_TUNABLES={tunables!r}: exit status")
        d = tmpdir()
        p, _ = traced(cmd, d, env=env)
        eq((p.returncode, p.stdout), (0, plain.stdout), f"traced, GLIBC_TUNABLES={tunables!r}: exit status and output")


@test
def a_sandbox_that_makes_membarrier_fail_keeps_its_behaviour_and_an_exact_peak():
    # A seccomp filter installed after start-up makes the settling's
    # membarrier call raise SIGSYS (handled by the program, whose handler
    # allocates) or fail with EPERM.  SIGSYS must not be blocked then: the
    # kernel would kill the program.  The leases end, with one line.
    for mode in ("trap", "errno"):
        cmd = [os.path.join(BIN, "sandbox"), mode]
        plain = run(cmd)
        eq(plain.returncode, 0, f"{mode}: untraced exit status")
        d = tmpdir()
        p, _ = traced(cmd, d)
        eq((p.returncode, p.stdout), (0, plain.stdout), f"{mode}: exit status and output")
        check("heapdelta: membarrier failed" in p.stderr, f"{mode}: the warning (stderr: {p.stderr.strip()})")
        before, after = snap_infos(*snaps_of(d, "api"))
        eq(after["peak_since_prev"], before["live_bytes"] + expectations(p.stdout)["sandboxed"][0],
           f"{mode}: the peak since 'before'")
