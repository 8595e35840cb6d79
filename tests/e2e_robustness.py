"""End-to-end tests: what real programs do to the shim.

fork, exec, posix_spawn, vfork, daemons, dlopen/dlclose, signal handlers
that allocate, coroutines on stacks the program maps, every kind of exit, setuid programs, a full disk or an
unwritable directory, and the shim's own memory over a long run (fixture
robust.c and longrun.c).
"""
from e2e import *


ROBUST = os.path.join(BIN, "robust")


def exit_snaps_by_exe_line(d):
    """{pid: {marked site name: (size, count)}} over every exit snapshot."""
    out = {}
    marks = markers("robust.c")
    lines = {v: k for k, v in marks.items()}
    for s in snaps_of(d, "exit"):
        r = top_json(s)
        out[r["snapshot"]["pid"]] = {lines[st["line"]]: (st["size"], st["count"]) for st in r["stats"]
                                     if st["file"] and st["file"].endswith("robust.c") and st["line"] in lines}
    return out


@test
def a_forked_child_writes_its_own_files_and_leaves_the_parents_alone():
    d = tmpdir()
    p, _ = traced([ROBUST, "fork"], d)
    eq(p.returncode, 0, "exit status")
    by_pid = exit_snaps_by_exe_line(d)
    eq(len(by_pid), 2, f"two processes wrote exit snapshots: {by_pid}")
    parent = [v for v in by_pid.values() if "parent_leak" in v]
    child = [v for v in by_pid.values() if "child_leak" in v]
    eq(len(parent), 1, "one parent")
    eq(len(child), 1, "one child")
    eq(parent[0], {"before_fork": (1111, 1), "parent_leak": (3333, 1)}, "the parent's sites")
    # The child inherited the block allocated before fork: it is in its heap too.
    eq(child[0], {"before_fork": (1111, 1), "child_leak": (2222, 1)}, "the child's sites")


@test
def exec_spawn_and_vfork_children_are_traced_into_their_own_files():
    for mode in ("exec", "spawn", "vfork"):
        d = tmpdir()
        p, _ = traced([ROBUST, mode], d)
        eq(p.returncode, 0, f"{mode}: exit status")
        by_pid = exit_snaps_by_exe_line(d)
        eq(sorted(by_pid.values(), key=len), [{}, {"leaf_leak": (4242, 1)}], f"{mode}: the parent and the leaf")


@test
def a_daemon_is_traced_after_it_detaches_and_changes_directory():
    d = tmpdir()
    done = os.path.join(d, "daemon.done")
    p, _ = traced([ROBUST, "daemon", done], d)
    eq(p.returncode, 0, "the launching process exits 0")
    for _ in range(100):
        if os.path.exists(done) and len(snaps_of(d, "exit")) == 3:
            break
        time.sleep(0.05)
    by_pid = exit_snaps_by_exe_line(d)
    eq(len(by_pid), 3, f"the launcher, the first child and the daemon: {by_pid}")
    check({"daemon_leak": (4444, 1)} in by_pid.values(), f"the daemon's leak, written after chdir('/'): {by_pid}")


@test
def a_dlclosed_librarys_frames_still_symbolize():
    d = tmpdir()
    p, _ = traced([ROBUST, "dlopen", os.path.join(BIN, "libplugin.so")], d)
    eq(p.returncode, 0, "exit status")
    snap = snaps_of(d, "exit")[0]
    info = snap_info(snap)
    plug = [m for m in info["modules"] if m["path"].endswith("libplugin.so")]
    eq([m["unloaded"] for m in plug], [True], "the plugin is in the module map, unloaded")
    st = by_site(top_json(snap), "plugin.c")
    eq({k: (v["size"], v["count"], v["function"]) for k, v in st.items()},
       {markers("plugin.c")["plugin_leak"]: (2220, 4, "plugin_work")}, "the plugin's leak at its line")


@test
def threads_calling_dlopen_while_others_allocate_do_not_deadlock():
    d = tmpdir()
    p, _ = traced([ROBUST, "dlthreads", os.path.join(BIN, "libplugin.so")], d, "--interval", "0.02", timeout=60)
    eq(p.returncode, 0, "exit status")
    check(len(snaps_of(d, "interval")) >= 1, "interval snapshots written while threads dlopen")


@test
def signal_handlers_that_allocate_and_a_handled_sigterm_keep_the_exit_snapshot():
    d = tmpdir()
    p, _ = traced([ROBUST, "signals"], d)
    eq(p.returncode, 0, "the program handled SIGTERM and exited normally")
    eq(list(exit_snaps_by_exe_line(d).values()), [{"handler_alloc": (99, 1)}], "the handler's allocation")


@test
def coroutines_on_stacks_the_program_maps_and_unmaps_are_counted_at_their_lines():
    """coroutines.c: ucontext coroutines allocate on stacks of two sizes,
    each unmapped after its coroutine ends, the next often mapped in its
    place; then a coroutine whose frames lie where an earlier one's did,
    on a stack that ends lower, under a page that cannot be read (an
    unwinder that took the earlier stack's outer frames as still there
    would read it).  Output and status as without the shim, every block at
    its line, with the unwinder alone and checked against libunwind, none
    handed to libunwind for want of a rule."""
    prog = os.path.join(BIN, "coroutines")
    plain = run([prog])
    eq(plain.returncode, 0, "the fixture ran (its two coroutines' frames lined up)")
    for env in ({}, {"HEAPDELTA_UNWIND_CHECK": "1"}):
        d = tmpdir()
        p, _ = traced([prog], d, env={**os.environ, **env})
        eq((p.returncode, p.stdout), (plain.returncode, plain.stdout), f"status and output {env}")
        snap = snaps_of(d, "exit")[0]
        info = snap_info(snap)
        eq(info["unwind_mismatches"], 0, f"stacks that differ from libunwind's {env}")
        eq(info["unwind_fallbacks"], 0, f"stacks handed to libunwind {env}")
        check_sites(top_json(snap), "coroutines.c", expectations(p.stdout))


@test
def exits_that_write_an_exit_snapshot_and_exits_that_cannot():
    d = tmpdir()
    p, _ = traced([ROBUST, "_exit"], d)
    eq(p.returncode, 5, "_exit status")
    eq(list(exit_snaps_by_exe_line(d).values()), [{"before__exit": (6666, 1)}], "_exit writes the exit snapshot")
    d = tmpdir()
    p, _ = traced([ROBUST, "abort"], d)
    eq(p.returncode, -signal.SIGABRT, "abort status")
    eq(snaps_of(d, "exit"), [], "abort: no exit snapshot (documented)")


@test
def a_setuid_program_keeps_the_shim_passive():
    if os.geteuid() != 0:
        skip("needs root: the shim is installed set-user-ID in a system directory and the program run as nobody")
    check(shutil.which("setpriv"), "needs setpriv (util-linux) to run the setuid program as another user")
    libdir = "/usr/lib/x86_64-linux-gnu"
    lib = os.path.join(libdir, f"libheapdelta-test-{os.getpid()}.so")
    d = tmpdir()
    prog = os.path.join(d, "robust-setuid")
    out = os.path.join(d, "out")
    os.mkdir(out)
    os.chmod(out, 0o777)
    os.chmod(d, 0o755)
    try:
        # The loader preloads into a secure-execution program only a library
        # named without a slash, from a system directory, with the set-user-ID bit.
        shutil.copy(SHIM, lib)
        os.chmod(lib, 0o4755)
        shutil.copy(ROBUST, prog)
        os.chmod(prog, 0o4755)
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", prog, "secure"],
                           env={**os.environ, "LD_PRELOAD": os.path.basename(lib), "HEAPDELTA_OUT": out},
                           capture_output=True, text=True, cwd="/")
        eq((p.returncode, p.stdout), (0, "loaded 1 api -1\n"), f"loaded but passive: {p.stderr}")
        eq(os.listdir(out), [], "a setuid program writes no snapshot")
        # The same program without the set-user-ID bit is traced.
        os.chmod(prog, 0o755)
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", prog, "secure"],
                           env={**os.environ, "LD_PRELOAD": lib, "HEAPDELTA_OUT": out}, capture_output=True, text=True, cwd="/")
        eq(p.stdout, "loaded 1 api 0\n", "traced when not setuid")
    finally:
        os.unlink(lib)


@test
def a_full_disk_or_an_unwritable_directory_costs_one_warning_and_nothing_else():
    d = tmpdir()
    p, _ = traced([ROBUST, "fsize"], d)
    eq(p.returncode, 6, "the program's own status despite RLIMIT_FSIZE")
    warnings = [l for l in p.stderr.splitlines() if "cannot write" in l]
    eq(len(warnings), 1, f"one warning: {p.stderr}")
    eq(os.listdir(d), [], "no partial file left")
    env = {**os.environ, "LD_PRELOAD": SHIM, "HEAPDELTA_OUT": "/nonexistent/heapdelta"}
    p = subprocess.run([os.path.join(BIN, "sites")], env=env, capture_output=True, text=True)
    eq(p.returncode, 0, "runs on without an output directory")
    eq(len(p.stderr.splitlines()), 1, f"one warning: {p.stderr!r}")
    check(p.stderr.startswith("heapdelta: cannot create a snapshot file in /nonexistent/heapdelta: "), p.stderr)
    plain = subprocess.run([os.path.join(BIN, "sites")], capture_output=True, text=True)
    eq(p.stdout, plain.stdout, "same output")
    # Not writable: run as nobody against a directory owned by root.
    if shutil.which("setpriv") and os.geteuid() == 0:
        ro = tmpdir()
        os.chmod(ro, 0o755)
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", os.path.join(BIN, "sites")],
                           env={**os.environ, "LD_PRELOAD": SHIM, "HEAPDELTA_OUT": ro}, capture_output=True, text=True, cwd="/")
        eq(p.returncode, 0, f"runs on as nobody: {p.stderr}")
        check("Permission denied" in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr)
        eq(os.listdir(ro), [], "nothing written")
    else:
        skip("the full disk is checked; the unwritable directory needs root and setpriv, to write as nobody")


@test
def the_shims_memory_follows_the_live_blocks_not_the_allocation_count():
    # 20,000 live blocks of 16 B to 64 KiB, 2.4 million allocations and
    # frees (tens of GiB) in 24 rounds, an API snapshot after each: the
    # shim's memory is bounded by the number of live blocks (README: 21 to 48
    # bytes per block of 256 bytes or more, 8 bytes per 32 bytes of heap
    # under that), whatever went through malloc before.
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "longrun"), "24", "rounds"], d, timeout=300)
    eq(p.returncode, 0, "exit status")
    check(int(p.stdout) > 30 << 30, f"only {int(p.stdout) >> 20} MiB allocated in total")
    infos = snap_infos(*snaps_of(d, "api"))
    infos.sort(key=lambda i: i["seq"])
    eq([i["label"] for i in infos], [f"round {r}" for r in range(1, 25)], "one snapshot per round")
    fixed = 8 << 20   # stack table, module map, unwinder caches, per-thread counters
    for i in infos:
        check(19000 <= i["live_count"] <= 20010, f"{i['label']}: {i['live_count']} live blocks")
        bound = fixed + 128 * i["live_count"]
        check(i["shim_bytes"] <= bound,
              f"{i['label']}: shim memory {i['shim_bytes']} bytes for {i['live_count']} live blocks (bound {bound})")
    # And it stays put: the last rounds cost no more than the early ones.
    early, late = max(i["shim_bytes"] for i in infos[2:8]), max(i["shim_bytes"] for i in infos[16:])
    check(late <= early + (1 << 20), f"shim memory grew from {early} to {late} bytes")


@test
def the_shim_gives_back_the_memory_of_a_transient_peak():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "longrun"), "3", "transient"], d, timeout=120)
    eq(p.returncode, 0, "exit status")
    infos = {i["label"]: i for i in snap_infos(*snaps_of(d, "api"))}
    peak, after = infos["peak"], infos["after"]
    check(peak["live_count"] >= 2000000, "the peak holds two million blocks")
    check(after["shim_bytes"] < peak["shim_bytes"] / 3,
          f"shim memory {peak['shim_bytes'] >> 20} MiB at the peak, {after['shim_bytes'] >> 20} MiB after")
