"""End-to-end tests of the aarch64 shim, run here under qemu-user.

The shim and the fixtures are cross-built (`make ARCH=aarch64`, into
build-aarch64/) and run with `qemu-aarch64 -E LD_PRELOAD=...`; the snapshots
are read and symbolized by the host's (x86-64) heapdelta, whose libdw reads
the aarch64 ELF files and their DWARF.  The checks are the x86-64 ones:
exact bytes and counts per marked line, every allocation API, C++ operators,
eight threads freeing each other's blocks, frame-pointer mode, the cfi
unwinder against libunwind (libunwind8:arm64, from Debian's multiarch); the
four snapshot triggers, fork and fork+exec, each run also natively (the
same fixture with the host's shim) and compared snapshot by snapshot; and
Debian's own arm64 sqlite3, downloaded and unpacked into
build-aarch64/debian/ (not installed), against its run without the shim,
libunwind and glibc's mtrace.

The aarch64 libraries come from one place, so that the loader and libc
always match: Debian's multiarch (libc6:arm64 beside libunwind8:arm64, found
at their own paths) when installed, else the cross toolchain's sysroot
(`-L /usr/aarch64-linux-gnu`).  Mixing the two (the sysroot's loader with
multiarch's newer libc) hangs in the first pthread_create.

Budget: about 20 s here (the threads fixture, 1.2 M allocations each
unwound twice, takes 8 s; sqlite3 6 s, and 3 s more the first time, to
download it).  Nothing here measures speed: emulation says nothing about
speed on hardware.
"""
import shutil

from e2e import *

A64 = os.path.join(ROOT, "build-aarch64")
A64_SHIM = os.path.join(A64, "libheapdelta.so")
A64_BIN = os.path.join(A64, "tests")
MULTIARCH_LD = "/lib/ld-linux-aarch64.so.1"
LIBUNWIND = "/usr/lib/aarch64-linux-gnu/libunwind.so.8"
_READY = []


def aarch64_ready():
    """Build the aarch64 tier if needed; skip (one line, naming the package)
    when this machine cannot run it."""
    if _READY:
        return
    if not shutil.which("qemu-aarch64"):
        skip("qemu-aarch64 missing (Debian package qemu-user; scripts/deps.sh test installs it)")
    if not shutil.which("aarch64-linux-gnu-gcc") or not shutil.which("aarch64-linux-gnu-g++"):
        skip("aarch64 cross compiler missing (gcc-aarch64-linux-gnu, g++-aarch64-linux-gnu, libc6-dev-arm64-cross)")
    p = run(["make", "-s", "-C", ROOT, "ARCH=aarch64", "all"], timeout=600)
    eq(p.returncode, 0, f"make ARCH=aarch64 (stderr: {p.stderr[-2000:]})")
    # The host's builds of the fixtures the aarch64 runs are compared with
    # (make test-build builds them too).
    p = run(["make", "-s", "-C", ROOT, *(f"build/tests/{t}" for t in ("checkpoints", "forkexec", "robust"))], timeout=600)
    eq(p.returncode, 0, f"make build/tests/... (stderr: {p.stderr[-2000:]})")
    _READY.append(True)


def qemu_prefix():
    """qemu-aarch64, with the cross toolchain's sysroot when multiarch's
    aarch64 loader is not installed."""
    return ["qemu-aarch64"] + ([] if os.path.exists(MULTIARCH_LD) else ["-L", "/usr/aarch64-linux-gnu"])


def qemu_cmd(argv, env=None, shim=True):
    """(command, environment) that run argv under qemu-user, preloading the
    aarch64 shim.  The loader's variables (LD_*) go through -E: in qemu's
    own environment the host loader would act on them.  Everything else
    (HEAPDELTA_*) goes in qemu's environment, which qemu hands on to the
    program, so that /proc/PID/environ shows it as `heapdelta snapshot PID`
    reads it."""
    cmd, host = qemu_prefix(), dict(os.environ)
    env = dict(env or {})
    if shim:
        env.setdefault("LD_PRELOAD", A64_SHIM)
    for k, v in env.items():
        if k.startswith("LD_"):
            cmd += ["-E", f"{k}={v}"]
        else:
            host[k] = v
    return cmd + argv, host


def qemu(prog, outdir, **env):
    """Run an aarch64 fixture under qemu with the aarch64 shim; return the
    process and its snapshots."""
    cmd, host = qemu_cmd([os.path.join(A64_BIN, prog)],
                         {"HEAPDELTA_OUT": outdir, **{f"HEAPDELTA_{k}": v for k, v in env.items()}})
    p = run(cmd, timeout=300, env=host)
    return p, sorted(glob.glob(os.path.join(outdir, "heapdelta.*.snap")), key=snap_order)


def exit_snapshot(d):
    exits = snaps_of(d, "exit")
    eq(len(exits), 1, "exit snapshots")
    return exits[0]


@test
def aarch64_every_allocation_api_is_recorded_exactly_at_its_line():
    aarch64_ready()
    d = tmpdir()
    p, _ = qemu("sites", d)
    eq(p.returncode, 0, f"fixture exit status (stdout: {p.stdout}, stderr: {p.stderr[-500:]})")
    check("done 0 failures" in p.stdout, p.stdout)
    snap = exit_snapshot(d)
    exp = expectations(p.stdout)
    check(len(exp) >= 20, f"fixture printed {len(exp)} expectations")
    check_sites(top_json(snap), "sites.c", exp)
    info = snap_info(snap)
    eq(info["unwinder"], "cfi", "default unwinder")
    eq(info["unknown_frees"], 1, "unknown frees (one __libc_malloc block freed)")
    eq(info["dropped_allocs"], 0, "dropped allocations")
    eq(info["unwind_fallbacks"], 0, "stacks handed to libunwind")


def cxx_ready():
    if os.path.exists(MULTIARCH_LD) and not os.path.exists("/usr/lib/aarch64-linux-gnu/libstdc++.so.6"):
        skip("libstdc++6:arm64 missing beside libc6:arm64 (apt-get install libstdc++6:arm64)")


@test
def aarch64_cpp_operators_are_recorded_at_the_line_that_called_new():
    aarch64_ready()
    cxx_ready()
    d = tmpdir()
    p, _ = qemu("sites_cpp", d)
    eq(p.returncode, 0, f"fixture exit status (stdout: {p.stdout}, stderr: {p.stderr[-500:]})")
    check("caught 500" in p.stdout, "exceptions thrown and caught under the shim")
    sites = check_sites(top_json(exit_snapshot(d)), "sites_cpp.cpp", expectations(p.stdout))
    eq(sites[markers("sites_cpp.cpp")["cache_fill"]]["function"], "app::Cache::fill(int)", "demangled site function")


@test
def aarch64_frame_pointer_mode_gives_the_same_sites():
    aarch64_ready()
    d = tmpdir()
    p, _ = qemu("sites_fp", d, UNWIND="fp")
    eq(p.returncode, 0, f"fixture exit status (stderr: {p.stderr[-500:]})")
    snap = exit_snapshot(d)
    eq(snap_info(snap)["unwinder"], "fp", "unwinder recorded in the snapshot")
    # glibc is built without frame pointers: the walk cannot reach the
    # fixture's line from strdup or the stdio buffer's allocation.
    exp = {k: v for k, v in expectations(p.stdout).items() if k not in ("strdup", "stdout_buffer")}
    check_sites(top_json(snap), "sites.c", exp)


@test
def aarch64_cfi_unwinder_matches_libunwind_frame_for_frame_and_threads_end_exact():
    """HEAPDELTA_UNWIND_CHECK=1: every stack also unwound by libunwind
    (libunwind8:arm64) and compared; the threads fixture (1.2 M stacks,
    eight threads freeing each other's blocks) must also end exact."""
    aarch64_ready()
    cxx_ready()
    if not os.path.exists(LIBUNWIND) or not os.path.exists(MULTIARCH_LD):
        skip("libunwind8:arm64 missing (dpkg --add-architecture arm64; apt-get install libunwind8:arm64; "
             "scripts/deps.sh test does it)")
    for prog, src, least in (("sites", "sites.c", 15), ("sites_cpp", "sites_cpp.cpp", 500), ("threads", "threads.c", 8 * 150000)):
        d = tmpdir()
        p, _ = qemu(prog, d, UNWIND_CHECK="1")
        eq(p.returncode, 0, f"{prog} exit status (stderr: {p.stderr[-500:]})")
        snap = exit_snapshot(d)
        info = snap_info(snap)
        check(info["unwind_checked"] >= least, f"{prog}: only {info['unwind_checked']} stacks compared")
        eq(info["unwind_mismatches"], 0, f"{prog}: stacks that differ from libunwind's (of {info['unwind_checked']})")
        eq(info["unwind_fallbacks"], 0, f"{prog}: stacks handed to libunwind")
        check_sites(top_json(snap), src, expectations(p.stdout))
        if prog == "threads":
            eq(info["dropped_allocs"], 0, "dropped allocations")
            eq(info["alloc_bytes"] - info["free_bytes"], info["live_bytes"], "allocated - freed = live")


@test
def aarch64_return_addresses_signed_by_pointer_authentication_are_stripped():
    """sites.c built with -mbranch-protection=pac-ret: main saves x30 signed
    (qemu's default cpu implements pointer authentication).  The stacks
    must reach _start through main's saved x30, stripped.  libunwind 1.6.2
    stops at such a frame (it repeats main's frame and ends): no check mode
    here."""
    aarch64_ready()
    d = tmpdir()
    p, _ = qemu("sites_pac", d)
    eq(p.returncode, 0, f"fixture exit status (stderr: {p.stderr[-500:]})")
    snap = exit_snapshot(d)
    check_sites(top_json(snap), "sites.c", expectations(p.stdout))
    eq(snap_info(snap)["unwind_fallbacks"], 0, "stacks handed to libunwind")
    line = markers("sites.c")["malloc"]
    st = [s for s in top_json(snap, "--by", "traceback")["stats"] if s["line"] == line and s["file"].endswith("sites.c")]
    eq(len(st), 1, f"one traceback of the malloc site (sites.c:{line})")
    names = [(f["module"], f["function"]) for f in st[0]["traceback"]]
    eq(names[0], ("sites_pac", "main"), "innermost frame")
    eq(names[-1], ("sites_pac", "_start"), f"outermost frame (traceback {names})")
    check(("libc.so.6", "__libc_start_main") in names, f"__libc_start_main in the traceback {names}")


# ---- the snapshot triggers, fork and exec: each aarch64 run against the
# same fixture's x86-64 run (build/tests/, the host's shim)

def native_cmd(argv, env):
    """(command, environment) that run a host fixture with the host's shim."""
    return argv, {**os.environ, "LD_PRELOAD": SHIM, **env}


def fixture_sites(snap, src):
    """{marked site name: (bytes, count)} of fixture src in a snapshot; a
    site of src at a line without a mark fails."""
    names = {line: name for name, line in markers(src).items()}
    out = {}
    for line, st in by_site(top_json(snap), src).items():
        check(line in names, f"{snap}: a site at {src}:{line}, which is not marked")
        if st["count"]:
            out[names[line]] = (st["size"], st["count"])
    return out


def holds(stdout, point):
    """{name: (bytes, count)} from a fixture's "holds POINT NAME BYTES COUNT"
    lines (what it holds at that point)."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split()
        if parts[:2] == ["holds", point]:
            out[parts[2]] = (int(parts[3]), int(parts[4]))
    return out


def held_at_exit(stdout):
    """expect lines without the sites that hold nothing."""
    return {k: v for k, v in expectations(stdout).items() if v[1]}


def checkpoints_run(cmd, env, d):
    """The checkpoints fixture through its three steps: its API snapshot,
    then, while it blocks with A and B held, a signal snapshot asked by
    `heapdelta snapshot PID` and two interval snapshots after it, then its
    exit.  Returns (stdout, the signal snapshot's path)."""
    p = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        out = ""
        while not out.endswith("\n") or not out.splitlines()[-1].startswith("ready "):
            line = p.stdout.readline()
            check(line, f"the fixture ended before it was ready (stdout {out!r})")
            out += line
        eq(int(out.splitlines()[-1].split()[1]), p.pid, "the pid the program sees (under qemu-user: qemu's own)")
        s = hd("snapshot", str(p.pid), "--label", "from outside")
        eq((s.returncode, s.stderr), (0, ""), "heapdelta snapshot PID: exit status and stderr")
        sig = s.stdout.rstrip("\n")
        after = lambda: [f for f in snaps_of(d, "interval") if snap_order(f)[1] > snap_order(sig)[1]]
        deadline = time.time() + 60
        while len(after()) < 2:
            check(time.time() < deadline, f"no two interval snapshots after the signal's within 60 s: {os.listdir(d)}")
            time.sleep(0.02)
        rest, err = p.communicate("\n", timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    eq(p.returncode, 0, f"fixture exit status (stderr: {err[-500:]})")
    eq(err, "", "the fixture's stderr")
    return out + rest, sig


def checkpoint_snapshots(d, sig):
    """{what: [snapshot, ...]} of one checkpoints run, in sequence order;
    checks their names, sequence numbers and labels."""
    snaps = sorted(glob.glob(os.path.join(d, "heapdelta.*.snap")), key=snap_order)
    eq(sorted({snap_order(s)[0] for s in snaps}), [snap_order(sig)[0]], "one process wrote them")
    eq([snap_order(s)[1] for s in snaps], list(range(1, len(snaps) + 1)), "sequence numbers")
    api, signals, exits = snaps_of(d, "api"), snaps_of(d, "signal"), snaps_of(d, "exit")
    eq((len(api), signals, len(exits)), (1, [sig], 1), "api, signal and exit snapshots")
    eq(snap_info(api[0])["label"], "checkpoint 1", "the API snapshot's label")
    eq(snap_info(sig)["label"], "from outside", "the signal snapshot's label")
    ticks = snaps_of(d, "interval")
    return {"api": api, "signal": [sig], "exit": exits, "interval": ticks,
            "interval after the signal": [t for t in ticks if snap_order(t)[1] > snap_order(sig)[1]][:2]}


@test
def aarch64_every_snapshot_trigger_holds_the_sites_of_the_x86_64_run():
    """The four triggers under qemu-aarch64: the API snapshot, a signal
    snapshot asked by `heapdelta snapshot PID` (qemu takes the host's
    signal and delivers it to the program), interval snapshots and the exit
    snapshot, each exact at the fixture's lines, and the same as the
    x86-64 run of the fixture with the host's shim."""
    aarch64_ready()
    env = {"HEAPDELTA_INTERVAL": "0.05"}
    runs = {}
    for arch, (cmd, host) in (("aarch64", qemu_cmd([os.path.join(A64_BIN, "checkpoints")], env)),
                              ("x86-64", native_cmd([os.path.join(BIN, "checkpoints")], env))):
        d = tmpdir()
        host["HEAPDELTA_OUT"] = d
        out, sig = checkpoints_run(cmd, host, d)
        check("api 0" in out.splitlines(), f"{arch}: heapdelta_snapshot() returned 0: {out}")
        snaps = checkpoint_snapshots(d, sig)
        eq(snap_info(snaps["exit"][0])["machine"], {"aarch64": 183, "x86-64": 62}[arch], f"{arch}: META machine")
        sites = {s: fixture_sites(s, "checkpoints.c") for s in glob.glob(os.path.join(d, "heapdelta.*.snap"))}
        api, waiting, at_exit = holds(out, "api"), holds(out, "waiting"), held_at_exit(out)
        want = {"api": api, "signal": waiting, "interval after the signal": waiting, "exit": at_exit}
        runs[arch] = {what: [sites[s] for s in snaps[what]] for what in want}
        for what, exp in want.items():
            eq(runs[arch][what], [exp] * len(snaps[what]), f"{arch}: the {what} snapshot's sites")
        # Every snapshot holds one of the states the fixture goes through,
        # in their order: nothing, A, A and B, B, B and C.
        states = [{}, api, waiting, {k: v for k, v in at_exit.items() if k in waiting}, at_exit]
        seen = [states.index(sites[s]) if sites[s] in states else sites[s] for s in sorted(sites, key=snap_order)]
        check(all(isinstance(k, int) for k in seen), f"{arch}: a snapshot in none of the states: {seen}")
        check(seen == sorted(seen), f"{arch}: the states of the snapshots in sequence order: {seen}")
    eq(runs["aarch64"], runs["x86-64"], "the aarch64 run's sites, snapshot by snapshot, against the x86-64 run's")


# qemu-user 7.2 (Debian 12) aborts a forked child that creates a thread if
# the parent had a second thread at fork ("qemu_plugin_vcpu_init_hook:
# assertion failed", plugins/core.c:221, exit status 127; a plain program
# that starts a thread, forks and starts one in the child does the same),
# and the shim has its snapshot thread, which it starts again in a forked
# child.  The fork tests run without that thread: no signal trigger, no
# interval.
NO_WRITER_THREAD = {"HEAPDELTA_SIGNAL": "0"}


def launch(cmd, env):
    """Run cmd to its end; (the process, its stdout, its stderr)."""
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p, out, err


def processes(d, *srcs):
    """{(pid, seq, trigger, label, exe name): {src:name: (bytes, count)}} of
    every snapshot in d."""
    out = {}
    for s in sorted(glob.glob(os.path.join(d, "heapdelta.*.snap")), key=snap_order):
        i = snap_info(s)
        sites = {f"{src}:{k}": v for src in srcs for k, v in fixture_sites(s, src).items()}
        out[(i["pid"], i["seq"], i["trigger"], i["label"], os.path.basename(i["exe"]))] = sites
    return out


def by_role(procs, parent):
    """The snapshots of processes() with the parent's pid as "parent" and
    any other as "child": the same keys on both architectures."""
    return {("parent" if pid == parent else "child", *rest): v for (pid, *rest), v in procs.items()}


@test
def aarch64_a_forked_child_writes_its_own_files_as_on_x86_64():
    """robust fork: the parent's and the child's exit snapshots, each under
    its own pid with the block allocated before fork, as
    tests/e2e_robustness.py has them on x86-64."""
    aarch64_ready()
    runs = {}
    for arch, (cmd, host) in (("aarch64", qemu_cmd([os.path.join(A64_BIN, "robust"), "fork"], NO_WRITER_THREAD)),
                              ("x86-64", native_cmd([os.path.join(BIN, "robust"), "fork"], NO_WRITER_THREAD))):
        d = tmpdir()
        host["HEAPDELTA_OUT"] = d
        p, out, err = launch(cmd, host)
        eq((p.returncode, err), (0, ""), f"{arch}: exit status and stderr")
        runs[arch] = by_role(processes(d, "robust.c"), p.pid)
        eq(runs[arch], {("parent", 1, "exit", "", "robust"): {"robust.c:before_fork": (1111, 1), "robust.c:parent_leak": (3333, 1)},
                        ("child", 1, "exit", "", "robust"): {"robust.c:before_fork": (1111, 1), "robust.c:child_leak": (2222, 1)}},
           f"{arch}: the parent's and the child's exit snapshots")
    eq(runs["aarch64"], runs["x86-64"], "the aarch64 run against the x86-64 run")


@test
def aarch64_fork_and_exec_children_write_their_own_files_as_on_x86_64():
    """forkexec: the child's API snapshot before exec holds the block it
    inherited and its own; exec leaves that heap without an exit snapshot;
    the exec'd program (robust leaf) writes its exit snapshot under the same
    pid, the next sequence number.  Here an aarch64 program cannot exec
    another (no binfmt_misc): the child execs qemu-aarch64 with the
    program, as binfmt_misc would, and the environment it passes on
    (LD_PRELOAD, HEAPDELTA_OUT) traces it.  The host's loader, which sees
    that LD_PRELOAD first, says in one line that it cannot use it."""
    aarch64_ready()
    leaf = [os.path.join(A64_BIN, "robust"), "leaf"]
    launcher = [shutil.which("qemu-aarch64")] + qemu_prefix()[1:]
    runs = {}
    for arch, (cmd, host) in (("aarch64", qemu_cmd([os.path.join(A64_BIN, "forkexec"), *launcher, *leaf], NO_WRITER_THREAD)),
                              ("x86-64", native_cmd([os.path.join(BIN, "forkexec"), os.path.join(BIN, "robust"), "leaf"],
                                                    NO_WRITER_THREAD))):
        d = tmpdir()
        host["HEAPDELTA_OUT"] = d
        p, out, err = launch(cmd, host)
        eq(p.returncode, 0, f"{arch}: exit status (stderr: {err[-500:]})")
        if arch == "aarch64":
            preload = re.compile(rf"ERROR: ld\.so: object '{re.escape(A64_SHIM)}' from LD_PRELOAD cannot be preloaded \(.*\): ignored\.")
            check(len(err.splitlines()) == 1 and preload.fullmatch(err.splitlines()[0]), f"{arch}: stderr {err!r}")
        else:
            eq(err, "", f"{arch}: stderr")
        child = int(re.search(r"^child (\d+)$", out, re.M).group(1))
        procs = processes(d, "forkexec.c", "robust.c")
        eq(sorted({k[0] for k in procs}), sorted({p.pid, child}), f"{arch}: the processes that wrote snapshots")
        runs[arch] = by_role(procs, p.pid)
        prefixed = lambda sites: {f"forkexec.c:{k}": v for k, v in sites.items()}
        eq(runs[arch], {("parent", 1, "exit", "", "forkexec"): prefixed(held_at_exit(out)),
                        ("child", 1, "api", "before exec", "forkexec"): prefixed(holds(out, "child")),
                        ("child", 2, "exit", "", "robust"): {"robust.c:leaf_leak": (4242, 1)}},
           f"{arch}: the parent's, the child's before exec and the exec'd program's snapshots")
    eq(runs["aarch64"], runs["x86-64"], "the aarch64 run against the x86-64 run")


@test
def aarch64_a_signal_handlers_stack_goes_on_past_qemus_trampoline_as_on_x86_64():
    """robust signals: the handler's allocation has the handler's frame,
    then the code the signal interrupted (main's raise), as on x86-64.
    qemu-user's signal trampoline has no CFI: the cfi unwinder knows it by
    its two instructions and hands that stack to libunwind, which steps
    through the signal frame (one fallback)."""
    aarch64_ready()
    frames = {}
    for arch, (cmd, host) in (("aarch64", qemu_cmd([os.path.join(A64_BIN, "robust"), "signals"])),
                              ("x86-64", native_cmd([os.path.join(BIN, "robust"), "signals"], {}))):
        d = tmpdir()
        host["HEAPDELTA_OUT"] = d
        p, out, err = launch(cmd, host)
        eq((p.returncode, err), (0, ""), f"{arch}: exit status and stderr")
        snap = exit_snapshot(d)
        line = markers("robust.c")["handler_alloc"]
        st = [s for s in top_json(snap, "--by", "traceback")["stats"] if s["line"] == line and s["file"].endswith("robust.c")]
        eq(len(st), 1, f"{arch}: the handler's allocation")
        frames[arch] = [(f["function"], f["line"]) for f in st[0]["traceback"] if (f["file"] or "").endswith("robust.c")]
        if arch == "aarch64":
            eq(snap_info(snap)["unwind_fallbacks"], 1, "aarch64: stacks handed to libunwind (the handler's)")
    eq(len(frames["x86-64"]), 2, f"x86-64: the handler's frame and main's ({frames['x86-64']})")
    eq(frames["aarch64"], frames["x86-64"], "the handler's stack in robust.c, aarch64 against x86-64")


# ---- a real Debian arm64 program

DEBIAN = os.path.join(A64, "debian")
SQLITE3_DEBS = ["sqlite3:arm64", "libsqlite3-0:arm64", "libreadline8:arm64", "libtinfo6:arm64", "zlib1g:arm64"]


def debian_arm64(pkgs):
    """Debian's arm64 packages pkgs, downloaded (apt-get download) and
    unpacked (dpkg -x) into build-aarch64/debian/root once, not installed:
    installing sqlite3:arm64 would replace the host's sqlite3.  Returns the
    root; skips in one line when apt cannot download them (it needs the
    arm64 architecture, which scripts/deps.sh test adds, and the network)."""
    root, stamp = os.path.join(DEBIAN, "root"), os.path.join(DEBIAN, "unpacked")
    if os.path.exists(stamp) and open(stamp).read() == " ".join(pkgs):
        return root
    shutil.rmtree(DEBIAN, ignore_errors=True)
    debs = os.path.join(DEBIAN, "debs")
    os.makedirs(debs)
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        skip(f"{' '.join(pkgs)} cannot be downloaded here: no apt-get or dpkg")
    p = run(["apt-get", "download", *pkgs], cwd=debs, timeout=300)
    if p.returncode != 0:
        why = [l for l in p.stderr.splitlines() if l.startswith("E:")][:1] or p.stderr.splitlines()[-1:]
        skip(f"{' '.join(pkgs)} cannot be downloaded (apt-get download: {' '.join(why)}; "
             "dpkg --add-architecture arm64 and apt-get update, as scripts/deps.sh test does)")
    for deb in sorted(glob.glob(os.path.join(debs, "*.deb"))):
        p = run(["dpkg", "-x", deb, root])
        eq(p.returncode, 0, f"dpkg -x {deb}: {p.stderr}")
    with open(stamp, "w") as f:
        f.write(" ".join(pkgs))
    return root


def sql_workload():
    """A deterministic workload: tables, a transaction of inserts, an index,
    joins, grouping, a recursive CTE, string functions."""
    q = ["create table person(id integer primary key, name text, city integer, born integer);",
         "create table city(id integer primary key, name text);",
         "begin;"]
    q += [f"insert into city values({i}, 'city{i:02d}');" for i in range(40)]
    q += [f"insert into person(name, city, born) values('{'ab'[i % 2]}{i * 7919 % 10007:05d}', {i % 40}, {1930 + i % 80});"
          for i in range(3000)]
    q += ["commit;",
          "create index person_city on person(city, born);",
          "select count(*), sum(born), min(name), max(name) from person;",
          "select c.name, count(*), avg(p.born) from person p join city c on c.id = p.city "
          "group by c.name order by count(*) desc, c.name limit 5;",
          "with recursive n(i) as (select 1 union all select i + 1 from n where i < 500) "
          "select sum(i * i), group_concat(i % 7, '') from n where i % 50 = 0;",
          "select upper(name), length(name) from person where born = 1955 order by name limit 4;",
          "update person set name = name || '-x' where id % 3 = 0;",
          "delete from person where id % 5 = 0;",
          "select count(*), sum(length(name)) from person;",
          # The shell exits at once with its database open: the exit
          # snapshot holds what libsqlite3 allocated (pages, schema).
          ".exit 3"]
    return "\n".join(q) + "\n"


def dynamic_functions(path):
    """[(start, end, name)] of the functions in an ELF file's dynamic
    symbol table, read by binutils' readelf."""
    p = run(["readelf", "--dyn-syms", "-W", path])
    eq(p.returncode, 0, f"readelf --dyn-syms {path}")
    out = []
    for line in p.stdout.splitlines():
        f = line.split()
        if len(f) >= 8 and f[3] == "FUNC" and f[6] != "UND":
            start = int(f[1], 16)
            out.append((start, start + int(f[2], 0), f[7].split("@")[0]))
    return out


@test
def aarch64_debian_sqlite3_runs_identically_with_stacks_as_libunwind_has_them():
    """Debian's own arm64 sqlite3 (stripped, libraries from the arm64
    packages) under qemu: the same output and exit status with the shim;
    every stack unwound by the cfi unwinder and by libunwind agrees; what
    it holds at exit agrees with glibc's own allocation log (mtrace, by
    libc_malloc_debug.so.0 of libc6:arm64); frames are named from the
    dynamic symbol tables, as readelf lists them."""
    aarch64_ready()
    if not os.path.exists(LIBUNWIND) or not os.path.exists(MULTIARCH_LD):
        skip("libunwind8:arm64 missing (dpkg --add-architecture arm64; apt-get install libunwind8:arm64; "
             "scripts/deps.sh test does it)")
    root = debian_arm64(SQLITE3_DEBS)
    libs = {"LD_LIBRARY_PATH": f"{root}/usr/lib/aarch64-linux-gnu:{root}/lib/aarch64-linux-gnu"}
    argv = [os.path.join(root, "usr", "bin", "sqlite3"), ":memory:"]
    sql = sql_workload()

    def sqlite3(env, shim=True):
        cmd, host = qemu_cmd(argv, {**libs, **env}, shim=shim)
        return subprocess.run(cmd, env=host, input=sql.encode(), capture_output=True, timeout=120)

    plain = sqlite3({}, shim=False)
    eq(plain.returncode, 3, f"sqlite3's exit status without the shim (stderr: {plain.stderr[-500:]})")
    check(plain.stdout.count(b"\n") > 10, f"sqlite3's output: {plain.stdout[:300]}")
    d = tmpdir()
    p = sqlite3({"HEAPDELTA_OUT": d, "HEAPDELTA_UNWIND_CHECK": "1"})
    eq(p.stdout, plain.stdout, "sqlite3's standard output with the shim")
    eq(p.returncode, plain.returncode, "sqlite3's exit status with the shim")
    eq(p.stderr, plain.stderr, "sqlite3's standard error with the shim")
    snap = exit_snapshot(d)
    info = snap_info(snap)
    eq(info["unwind_checked"], info["alloc_count"], "stacks compared with libunwind's (every allocation's)")
    check(info["unwind_checked"] > 10000, f"only {info['unwind_checked']} stacks compared")
    eq(info["unwind_mismatches"], 0, f"stacks that differ from libunwind's (of {info['unwind_checked']})")
    eq(info["unwind_fallbacks"], 0, "stacks handed to libunwind")
    eq(info["dropped_allocs"], 0, "dropped allocations")
    eq((info["alloc_bytes"] - info["free_bytes"], info["alloc_count"] - info["free_count"]),
       (info["live_bytes"], info["live_count"]), "allocated - freed = live")
    report = top_json(snap, "--by", "traceback")
    eq((report["total"]["size"], report["total"]["count"]), (info["live_bytes"], info["live_count"]),
       "the report's total against META's live bytes and blocks")

    # Names: the executable exports no function of its own (all frames
    # unnamed); Debian's libsqlite3 exports its internal functions too.
    tables = {"sqlite3": dynamic_functions(argv[0]),
              "libsqlite3.so.0": dynamic_functions(os.path.join(root, "usr/lib/aarch64-linux-gnu/libsqlite3.so.0"))}
    eq(tables["sqlite3"], [], "functions in the stripped sqlite3's dynamic symbol table")
    named = set()
    for st in report["stats"]:
        for f in st["traceback"]:
            if f["module"] in tables:
                pc = int(f["offset"], 16) - 1          # a return address: the call is before it
                want = [name for start, end, name in tables[f["module"]] if start <= pc < end]
                eq([f["function"]] if want else f["function"], want or "??", f"frame {f['module']}+{f['offset']}")
                named.add(f["function"])
    check({"sqlite3_step", "sqlite3VdbeExec", "sqlite3Malloc"} <= named, f"libsqlite3 functions named: {sorted(named)}")
    top = top_json(snap)["stats"][0]
    eq((top["file"], top["line"]), (None, 0), "the biggest site: no file and line (no debug information)")
    check(top["key"].startswith("libsqlite3.so.0+0x"), f"the biggest site is in libsqlite3: {top['key']}")

    # glibc's allocation log, written by libc_malloc_debug.so.0 beside the
    # shim in the same run (tests/e2e_programs.py does the same on x86-64).
    from e2e_programs import mtrace_live
    d = tmpdir()
    log = os.path.join(d, "mtrace.log")
    p = sqlite3({"HEAPDELTA_OUT": d, "HEAPDELTA_SIGNAL": "0", "MALLOC_TRACE": log,
                 "LD_PRELOAD": f"{A64_SHIM}:{os.path.join(A64_BIN, 'libmtrace_start.so')}:"
                               "/lib/aarch64-linux-gnu/libc_malloc_debug.so.0"})
    eq((p.stdout, p.returncode), (plain.stdout, plain.returncode), "sqlite3's output and exit status under mtrace")
    live = mtrace_live(log)
    check(len(live) > 100, f"mtrace logged {len(live)} blocks live at exit")
    mine = [s for s in top_json(exit_snapshot(d), "--by", "traceback")["stats"]
            if not any(f["module"] == "libc_malloc_debug.so.0" for f in s["traceback"])]
    eq((sum(s["size"] for s in mine), sum(s["count"] for s in mine)),
       (sum(sum(v) for v in live.values()), sum(len(v) for v in live.values())),
       "(bytes, blocks) not freed at exit, heapdelta against mtrace")
