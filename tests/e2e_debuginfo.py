"""End-to-end tests: symbols for binaries without their debug information
where they ran: stripped binaries, a local debuginfod server, MiniDebugInfo,
snapshots analyzed where their files are elsewhere (--sysroot, --map-path,
--debug-dir, HEAPDELTA_DEBUG_DIRS), and the line that says what is missing.

The fixture is grow (tests/fixtures/grow.c): its sites are checked at their
marked lines with the bytes and counts it prints, so "exact file:line"
is derived, never typed in. A stripped copy is made per test with
objcopy --only-keep-debug and strip --strip-all (the build-id note stays).

The debuginfod test starts Debian's debuginfod (package debuginfod) on a
free port, serving a folder that holds only the stripped copy's debug
file, with the client's cache in a temporary folder; the server is killed
when the test ends, passed or failed. The client (libdebuginfod, loaded by
heapdelta) talks to it over 127.0.0.1 only; debuginfod 0.188 has no option
to listen on loopback alone, so it listens on every interface, on a random
port, for the few seconds of the test.
"""
import socket
import urllib.request

from e2e import *

NO_DEBUG_HELP = "install the distro's debug packages, set DEBUGINFOD_URLS or give --debug-dir DIR"
NOT_FOUND_HELP = "give --sysroot DIR, --map-path OLD=NEW or --debug-dir DIR where the snapshot's files are"


def clean_env(**extra):
    """The environment without debuginfod settings or proxies (libcurl would
    send 127.0.0.1 to a proxy), plus extra."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DEBUGINFOD_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
           and k != "HEAPDELTA_DEBUG_DIRS"}
    env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def hd_env(env, *args, timeout=60):
    return run([HD, *args], env=env, timeout=timeout)


def build_id(path):
    return re.search(r"Build ID: ([0-9a-f]+)", run(["readelf", "-n", path]).stdout).group(1)


def build_id_path(root, bid, suffix=".debug"):
    return os.path.join(root, ".build-id", bid[:2], bid[2:] + suffix)


def stripped_grow(d):
    """grow copied to d/grow and stripped of everything but its dynamic
    symbols; its debug file d/grow.debug (no debuglink: found by build-id
    only).  Returns (binary, debug file, build-id)."""
    prog, dbg = os.path.join(d, "grow"), os.path.join(d, "grow.debug")
    shutil.copy(os.path.join(BIN, "grow"), prog)
    eq(run(["objcopy", "--only-keep-debug", prog, dbg]).returncode, 0, "objcopy --only-keep-debug")
    eq(run(["strip", "--strip-all", prog]).returncode, 0, "strip")
    sections = run(["readelf", "-S", prog]).stdout
    check(".debug_info" not in sections and ".symtab" not in sections, "the stripped copy has no DWARF, no .symtab")
    return prog, dbg, build_id(prog)


def run_grow(prog, d):
    """prog traced: its exit snapshot, what it expects, all its snapshots."""
    out = os.path.join(d, "out")
    p, snaps = traced([prog], out)
    eq(p.returncode, 0, f"fixture exit status ({p.stderr.strip()})")
    return snaps_of(out, "exit")[0], expectations(p.stdout), snaps


def report(env, snap, *args):
    p = hd_env(env, "top", snap, "--limit", "0", "--format", "json", *args)
    eq(p.returncode, 0, f"top exit status (stderr: {p.stderr.strip()})")
    return json.loads(p.stdout), p.stderr


def site_module(s):
    """The module of an entry's site frame (after its wrapper frames)."""
    return s["traceback"][s.get("wrapper_frames", 0)]["module"]


def grow_frames(r):
    return [s for s in r["stats"] if site_module(s) == "grow"]


def missing_line(r, module, help_text):
    """The line top's text ends with for a report r (JSON of the same
    snapshot, every entry shown) whose entries without file are module's."""
    shown = sum(abs(s["size"]) for s in r["stats"])
    lacking = [s for s in r["stats"] if not s["file"]]
    eq(sorted({site_module(s) for s in lacking}), [module], "modules of the entries without file")
    pct = 100 * sum(abs(s["size"]) for s in lacking) // shown
    why = "no debug information" if help_text == NO_DEBUG_HELP else "no file with its build-id"
    return f"No file and line for {pct}% of the bytes shown, in {module} ({why}): {help_text}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_served(port, bid, proc, seconds=30):
    """Until the server answers 200 for bid's debug file (it scans its folder
    after starting); False when it died or never did."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = f"http://127.0.0.1:{port}/buildid/{bid}/debuginfo"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with opener.open(url, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


class Debuginfod:
    """Debian's debuginfod serving folder on a free port; a context
    manager that always kills it."""

    def __init__(self, folder, bid, d):
        self.folder, self.bid, self.d, self.proc = folder, bid, d, None

    def __enter__(self):
        if not shutil.which("debuginfod"):
            skip("the debuginfod package is not installed (scripts/deps.sh test installs it as root)")
        for attempt in range(3):   # a port taken between free_port() and the bind: try another
            self.port = free_port()
            log = open(os.path.join(self.d, f"debuginfod.{attempt}.log"), "w")
            self.proc = subprocess.Popen(
                ["debuginfod", "-F", "-p", str(self.port), "-d", os.path.join(self.d, f"db.{attempt}.sqlite"),
                 "-t", "0", "-g", "0", self.folder],
                stdout=log, stderr=subprocess.STDOUT, env=clean_env())
            log.close()
            if wait_served(self.port, self.bid, self.proc):
                return self
            self.stop()
        with open(os.path.join(self.d, "debuginfod.2.log")) as f:
            raise Failure(f"debuginfod did not serve {self.bid}: {f.read()[-2000:]}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __exit__(self, *exc):
        self.stop()
        return False


@test
def a_stripped_binary_gets_file_and_line_from_a_local_debuginfod_server():
    d = tmpdir()
    prog, dbg, bid = stripped_grow(d)
    served = os.path.join(d, "served")
    os.mkdir(served)
    shutil.move(dbg, os.path.join(served, "grow.debug"))
    ex, exp, _ = run_grow(prog, d)
    cache = os.path.join(d, "cache")

    r, err = report(clean_env(DEBUGINFOD_CACHE_PATH=cache), ex)
    check(all(s["file"] is None for s in grow_frames(r)), "without a server: grow's sites have no file")

    with Debuginfod(served, bid, d) as srv:
        env = clean_env(DEBUGINFOD_URLS=f"http://127.0.0.1:{srv.port}", DEBUGINFOD_CACHE_PATH=cache)
        r, err = report(env, ex)
        eq(err, "", "stderr")
        check_sites(r, "grow.c", {k: v[2:] for k, v in exp.items()})
        text = hd_env(env, "top", ex, "--limit", "0")
        eq(text.returncode, 0, f"top exit status ({text.stderr.strip()})")
        check(not [l for l in text.stdout.splitlines() if l.startswith("No file and line")],
              f"a missing-debug-information line with the debug file served:\n{text.stdout}")
        # What the client handed back: a regular file in its cache, used
        # through the same checks as any other.
        got = os.path.join(cache, bid, "debuginfo")
        check(os.path.isfile(got), f"{got} is a regular file in the client's cache")
        # The analyzer under ASan and UBSan, downloading into a cache of its
        # own: the same report, no leak of libdebuginfod's or libcurl's.
        asan_env = dict(env, DEBUGINFOD_CACHE_PATH=os.path.join(d, "cache_asan"))
        p = run([os.path.join(BIN, "heapdelta_asan"), "top", ex, "--limit", "0", "--format", "json"], env=asan_env)
        eq((p.returncode, p.stderr), (0, ""), "the ASan build: exit status and stderr")
        eq(json.loads(p.stdout)["stats"], r["stats"], "the ASan build's report")
        # Another machine: the binary is nowhere, the served debug file
        # stands in for it (found by the snapshot's build-id).
        elsewhere = os.path.join(d, "elsewhere")
        shutil.move(prog, elsewhere)
        away_env = dict(env, DEBUGINFOD_CACHE_PATH=os.path.join(d, "cache_away"))
        away, err = report(away_env, ex)
        eq(err, "", "without the binary: stderr")
        eq(away["stats"], r["stats"], "without the binary: the report")
        shutil.move(elsewhere, prog)
    # Served from the cache now: the same with the server gone.
    r2, err = report(env, ex)
    eq(err, "", "stderr from the cache")
    eq(r2["stats"], r["stats"], "the report from the cache")


@test
def without_its_debuginfod_server_a_note_and_module_offset_frames_never_a_hang():
    d = tmpdir()
    prog, dbg, bid = stripped_grow(d)
    os.unlink(dbg)
    ex, exp, _ = run_grow(prog, d)
    closed = free_port()   # nothing listens there
    # A server that accepts connections and never answers: the listening
    # socket's backlog takes them, nobody reads.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        for url, why, timeout, limit in (
                (f"http://127.0.0.1:{closed}", "connection refused", None, 5),
                (f"http://127.0.0.1:{silent.getsockname()[1]}", "no answer within 1 seconds, DEBUGINFOD_TIMEOUT", "1", 20)):
            env = clean_env(DEBUGINFOD_URLS=url, DEBUGINFOD_CACHE_PATH=os.path.join(d, f"cache{closed}{why[:2]}"))
            if timeout:
                env["DEBUGINFOD_TIMEOUT"] = timeout
            t0 = time.monotonic()
            p = hd_env(env, "top", ex, "--limit", "0", timeout=60)
            took = time.monotonic() - t0
            if not timeout:   # the ASan build gives up as cleanly
                a = run([os.path.join(BIN, "heapdelta_asan"), "top", ex, "--limit", "0"], env=env)
                eq((a.returncode, a.stdout, a.stderr), (p.returncode, p.stdout, p.stderr), f"{why}: the ASan build")
            check(took < limit, f"{why}: top took {took:.1f} s")
            eq(p.returncode, 0, f"{why}: exit status")
            eq(p.stderr.splitlines(),
               [f"heapdelta: note: cannot ask debuginfod at {url} ({why}); debug files are looked for locally only"],
               f"{why}: stderr")
            lines = p.stdout.splitlines()
            check(any(re.match(r"grow\+0x[0-9a-f]+: size=", l) for l in lines), f"{why}: grow+offset sites in\n{p.stdout}")
            r, _ = report(env, ex)
            eq(lines[-1], missing_line(r, "grow", NO_DEBUG_HELP), f"{why}: the last line")
    finally:
        silent.close()


@test
def the_missing_debug_information_line_shows_for_a_stripped_binary_and_not_with_debug_info():
    d = tmpdir()
    prog, dbg, bid = stripped_grow(d)
    os.unlink(dbg)
    ex, exp, snaps = run_grow(prog, d)
    env = clean_env()
    r, err = report(env, ex)
    eq(err, "", "stderr")
    want = missing_line(r, "grow", NO_DEBUG_HELP)
    lacking = sum(s["size"] for s in r["stats"] if not s["file"])
    eq(r["missing_debug_info"], {"size": lacking, "of": sum(s["size"] for s in r["stats"]),
                                 "sites": len([s for s in r["stats"] if not s["file"]]),
                                 "modules": [{"module": "grow", "lacks": "debug_info", "size": lacking}]},
       "top JSON: missing_debug_info")
    # leaks lists every kind of reachability: grow's blocks are still reachable.
    gate = json.loads(hd_env(env, "leaks", "--show-kinds", "all", ex, "--format", "json").stdout)
    eq(gate["missing_debug_info"]["modules"], [{"module": "grow", "lacks": "debug_info", "size": lacking}],
       "leaks JSON: missing_debug_info")
    for argv in (["top", ex, "--limit", "0"], ["top", ex, "--by", "traceback", "--limit", "0"],
                 ["diff", snaps[0], ex, "--limit", "0"]):
        p = hd_env(env, *argv)
        eq(p.returncode, 0, f"{argv[0]} exit status ({p.stderr.strip()})")
        if argv[0] == "diff":
            rd = json.loads(hd_env(env, *argv, "--format", "json").stdout)
            shown = sum(abs(s["size_diff"]) for s in rd["stats"])
            lack = sum(abs(s["size_diff"]) for s in rd["stats"] if not s["file"])
            want_here = re.sub(r"for \d+%", f"for {100 * lack // shown}%", want)
        else:
            want_here = want
        eq(p.stdout.splitlines()[-1], want_here, f"{' '.join(argv[:1] + argv[2:])}: the last line")
    # leaks and check: before the SUMMARY line; trend: at the end.
    p = hd_env(env, "leaks", "--show-kinds", "all", ex)
    eq(p.stdout.splitlines()[-2], want, "leaks: the line before SUMMARY")
    p = hd_env(env, "check", "--max-leaked", "1", ex)
    eq(p.returncode, 1, "check over budget")
    check(p.stdout.splitlines()[-2].startswith("No file and line for ") and p.stdout.splitlines()[-2].endswith(NO_DEBUG_HELP),
          f"check: the line before SUMMARY in\n{p.stdout}")
    p = hd_env(env, "trend", os.path.dirname(ex), "--limit", "0")
    eq(p.returncode, 0, f"trend exit status ({p.stderr.strip()})")
    check(p.stdout.splitlines()[-1].startswith("No file and line for ") and p.stdout.splitlines()[-1].endswith(NO_DEBUG_HELP),
          f"trend: the last line in\n{p.stdout}")

    # With its debug information: no line, in any command.
    d2 = tmpdir()
    ex2, _, _ = run_grow(os.path.join(BIN, "grow"), d2)
    for argv in (["top", ex2, "--limit", "0"], ["leaks", "--show-kinds", "all", ex2], ["trend", os.path.dirname(ex2)]):
        p = hd_env(env, *argv)
        check(not [l for l in p.stdout.splitlines() if l.startswith("No file and line")],
              f"{argv[0]} with debug information:\n{p.stdout}")
    eq(report(env, ex2)[0]["missing_debug_info"], None, "top JSON with debug information")
    eq(json.loads(hd_env(env, "leaks", "--show-kinds", "all", ex2, "--format", "json").stdout)["missing_debug_info"], None,
       "leaks JSON with debug information")


@test
def minidebuginfo_names_the_functions_of_a_stripped_binary():
    """Fedora's MiniDebugInfo: the function symbols, xz-compressed, in
    .gnu_debugdata of the stripped binary."""
    if not shutil.which("xz"):
        raise Failure("xz is not installed (xz-utils)")
    d = tmpdir()
    prog, dbg, bid = stripped_grow(d)
    # As Fedora's find-debuginfo builds it: the debug file's function
    # symbols, no DWARF, compressed and added to the stripped binary.
    nm = run(["nm", dbg, "--format=posix", "--defined-only"]).stdout.splitlines()
    keep = os.path.join(d, "keep")
    with open(keep, "w") as f:
        f.write("".join(l.split()[0] + "\n" for l in nm if len(l.split()) > 1 and l.split()[1] in ("T", "t")))
    mini = os.path.join(d, "mini")
    eq(run(["objcopy", "-S", "--remove-section", ".gdb_index", "--remove-section", ".comment",
            f"--keep-symbols={keep}", dbg, mini]).returncode, 0, "objcopy mini")
    eq(run(["xz", "-f", mini]).returncode, 0, "xz")
    eq(run(["objcopy", f"--add-section=.gnu_debugdata={mini}.xz", prog]).returncode, 0, "objcopy --add-section")
    os.unlink(dbg)
    ex, exp, _ = run_grow(prog, d)
    plain = stripped_grow(tmpdir())
    os.unlink(plain[1])
    stripped_ex, _, _ = run_grow(plain[0], tmpdir())

    r, err = report(clean_env(), ex)
    eq(err, "", "stderr")
    mine = grow_frames(r)
    # The same functions as the symbol table of the unstripped build
    # names (make_record is inlined into add_records), no lines.
    eq(sorted({(s["function"], s["file"]) for s in mine}), [("add_records", None), ("main", None)], "grow's sites")
    plain, _ = report(clean_env(), stripped_ex)
    eq(sorted({s["function"] for s in grow_frames(plain)}), ["??"], "the same binary without .gnu_debugdata")


def traced_copy(d):
    """grow copied to d/app/grow (with its debug information) and run
    there: (app folder, binary, exit snapshot, expectations, snapshots)."""
    app = os.path.join(d, "app")
    os.mkdir(app)
    prog = os.path.join(app, "grow")
    shutil.copy(os.path.join(BIN, "grow"), prog)
    ex, exp, snaps = run_grow(prog, d)
    return app, prog, ex, exp, snaps


@test
def binaries_moved_away_are_found_with_sysroot_map_path_and_debug_dir():
    d = os.path.realpath(tmpdir())
    app, prog, ex, exp, snaps = traced_copy(d)
    env = clean_env()
    want = hd_env(env, "top", ex, "--limit", "0", "--by", "traceback")
    eq((want.returncode, want.stderr), (0, ""), "the report where the binary still is")
    check("grow.c" in want.stdout, "grow's sites symbolized")
    bid = build_id(prog)

    root = os.path.join(d, "root")          # a container's root, say
    shutil.copytree(app, root + app)
    moved = os.path.join(d, "extracted")    # an unpacked image, say
    shutil.copytree(app, moved)
    ids = os.path.join(d, "ids")            # a build-id tree of debug files
    os.makedirs(os.path.dirname(build_id_path(ids, bid)))
    run(["objcopy", "--only-keep-debug", prog, build_id_path(ids, bid)])
    named = os.path.join(d, "named")        # the binary by its name
    os.mkdir(named)
    shutil.copy(prog, named)
    shutil.rmtree(app)

    gone = hd_env(env, "top", ex, "--limit", "0", "--by", "traceback")
    eq(gone.stderr, f"heapdelta: warning: '{prog}' is not readable; its frames are shown as module+offset\n",
       "stderr without the binary")
    eq(gone.stdout.splitlines()[-1], missing_line(report(env, ex)[0], "grow", NOT_FOUND_HELP), "the last line")

    for how, args, extra in (("--sysroot", ["--sysroot", root], {}),
                             ("--map-path", ["--map-path", f"{app}={moved}"], {}),
                             ("--debug-dir with a build-id tree", ["--debug-dir", ids], {}),
                             ("--debug-dir with the binary", ["--debug-dir", os.path.join(d, "nothing"),
                                                              "--debug-dir", named], {}),
                             ("HEAPDELTA_DEBUG_DIRS", [], {"HEAPDELTA_DEBUG_DIRS": f"{ids}:{named}"})):
        if how == "--debug-dir with the binary":
            os.mkdir(os.path.join(d, "nothing"))
        p = hd_env(clean_env(**extra), "top", ex, "--limit", "0", "--by", "traceback", *args)
        eq((p.returncode, p.stderr), (0, ""), f"{how}: exit status and stderr")
        eq(p.stdout, want.stdout, f"{how}: the report")
        r, _ = report(clean_env(**extra), ex, *args)
        check_sites(r, "grow.c", {k: v[2:] for k, v in exp.items()})

    # Every command that symbolizes takes the options.
    marks = markers("grow.c")
    site = f"grow.c:{marks['grow_a']}"
    # (watch through a pipe prints a frame and ends after the exit snapshot's.)
    for argv in (["diff", snaps[0], ex, "--limit", "0"], ["leaks", "--show-kinds", "all", ex], ["check", "--max-leaked", "1GiB", ex],
                 ["trend", os.path.dirname(ex), "--limit", "0"], ["watch", os.path.dirname(ex), "--limit", "0"]):
        p = hd_env(env, *argv, "--sysroot", root)
        eq((p.returncode, p.stderr), (0, ""), f"{argv[0]} --sysroot: exit status and stderr")
        if argv[0] != "check":
            check(site in p.stdout, f"{argv[0]} --sysroot: {site} in\n{p.stdout}")
    html = os.path.join(d, "report.html")
    p = hd_env(env, "report", os.path.dirname(ex), "-o", html, "--map-path", f"{app}={moved}")
    eq(p.returncode, 0, f"report exit status ({p.stderr.strip()})")
    with open(html) as f:
        check(site in f.read(), f"report --map-path: {site} in the page")


@test
def a_rebuilt_binary_where_the_snapshot_points_is_not_used_and_the_right_one_is_found():
    d = os.path.realpath(tmpdir())
    app, prog, ex, exp, snaps = traced_copy(d)
    env = clean_env()
    want = hd_env(env, "top", ex, "--limit", "0", "--by", "traceback").stdout
    bid = build_id(prog)
    ids = os.path.join(d, "ids")
    os.makedirs(os.path.dirname(build_id_path(ids, bid)))
    run(["objcopy", "--only-keep-debug", prog, build_id_path(ids, bid)])
    root = os.path.join(d, "root")
    shutil.copytree(app, root + app)
    shutil.copy(os.path.join(BIN, "sites"), prog)   # another build at the same path
    other = build_id(prog)

    changed = (f"heapdelta: warning: '{prog}' has changed since the snapshot was taken "
               f"(build-id {other}, snapshot has {bid})")
    p = hd_env(env, "top", ex, "--limit", "0")
    eq(p.stderr, changed + "; its frames are shown as module+offset\n", "stderr")
    r, _ = report(env, ex)
    check(grow_frames(r) and all(s["file"] is None for s in grow_frames(r)), "the rebuilt binary is not used")
    eq(p.stdout.splitlines()[-1], missing_line(r, "grow", NOT_FOUND_HELP), "the last line")

    # The sysroot is looked in before the path itself: nothing to say then.
    for args, err in ((["--debug-dir", ids], f"{changed}; using '{build_id_path(ids, bid)}'\n"),
                      (["--sysroot", root], "")):
        p = hd_env(env, "top", ex, "--limit", "0", "--by", "traceback", *args)
        eq(p.stderr, err, f"{args[0]}: stderr")
        eq(p.stdout, want, f"{args[0]}: the report")

    # A stripped binary in the container, its debug file in the
    # container's /usr/lib/debug: both found under --sysroot.
    d2 = os.path.realpath(tmpdir())
    sprog, sdbg, sbid = stripped_grow(d2)
    sex, sexp, _ = run_grow(sprog, d2)
    sroot = os.path.join(d2, "root")
    os.makedirs(os.path.dirname(sroot + sprog))
    shutil.move(sprog, sroot + sprog)
    installed = build_id_path(sroot + "/usr/lib/debug", sbid)
    os.makedirs(os.path.dirname(installed))
    shutil.move(sdbg, installed)
    r, err = report(env, sex, "--sysroot", sroot)
    eq(err, "", "stripped under --sysroot: stderr")
    check_sites(r, "grow.c", {k: v[2:] for k, v in sexp.items()})


@test
def debug_location_options_are_checked():
    d = tmpdir()
    app, prog, ex, exp, snaps = traced_copy(d)
    missing = os.path.join(d, "missing")
    for cmd in (["top", ex], ["diff", ex, ex], ["leaks", ex], ["check", "--max-leaked", "1", ex],
                ["trend", os.path.dirname(ex)], ["report", os.path.dirname(ex), "-o", os.path.join(d, "r.html")],
                ["watch", os.path.dirname(ex)]):
        for opt, arg, msg in (("--debug-dir", missing, f"--debug-dir: '{missing}' is not a directory"),
                              ("--sysroot", missing, f"--sysroot: '{missing}' is not a directory"),
                              ("--map-path", "relative=/x", "--map-path takes OLD=NEW, OLD an absolute path, not 'relative=/x'"),
                              ("--map-path", "/x", "--map-path takes OLD=NEW, OLD an absolute path, not '/x'")):
            p = hd(*cmd, opt, arg)
            eq(p.returncode, 2, f"{cmd[0]} {opt} {arg}: exit status")
            eq(p.stderr.splitlines()[0], f"heapdelta: {msg}", f"{cmd[0]} {opt} {arg}: the error")
        p = hd("help", cmd[0])
        for opt in ("--debug-dir DIR", "--sysroot DIR", "--map-path OLD=NEW"):
            check(opt in p.stdout, f"{opt} in 'heapdelta help {cmd[0]}'")
    p = run([HD, "run", "-o", os.path.join(d, "o"), "--check", "--max-leaked", "1GiB", "--debug-dir", d, "--", prog])
    eq(p.returncode, 0, f"run --check --debug-dir: exit status ({p.stderr.strip()})")


@test
def a_bundle_analyzed_after_every_original_file_is_moved_away_gives_the_same_report():
    from e2e_hostile import rewrite_module_paths   # here: importing it registers its tests
    d = os.path.realpath(tmpdir())
    app = os.path.join(d, "app")
    os.mkdir(app)
    prog, dbg, bid = stripped_grow(app)   # the debug file beside it, by .gnu_debuglink
    eq(run(["objcopy", f"--add-gnu-debuglink={dbg}", prog], cwd=app).returncode, 0, "objcopy --add-gnu-debuglink")
    ex, exp, snaps = run_grow(prog, d)
    env = clean_env()
    want = hd_env(env, "top", ex, "--limit", "0", "--by", "traceback")
    eq((want.returncode, want.stderr), (0, ""), "the report where the files are")
    check_sites(report(env, ex)[0], "grow.c", {k: v[2:] for k, v in exp.items()})

    tar = os.path.join(d, "b.tar")
    p = hd_env(env, "bundle", os.path.dirname(ex), "-o", tar)
    eq(p.returncode, 0, f"bundle exit status ({p.stderr.strip()})")
    check(re.fullmatch(rf"heapdelta: wrote {re.escape(tar)} \(3 snapshot files, [34] module files, .*\)\n", p.stderr),
          f"bundle's line: {p.stderr!r}")
    import tarfile
    with tarfile.open(tar) as t:
        names = sorted(t.getnames())
        check(all(m.isreg() for m in t.getmembers()), "only regular files")
        libc = [m["path"] for m in snap_info(ex)["modules"]
                if "/libc.so" in m["path"]]
        eq(len(libc), 1, "libc in the module map")
        for name in [os.path.basename(s) for s in snaps] + [build_id_path("", bid, ""), build_id_path("", bid)]:
            check(name in names, f"{name} in the bundle: {names}")
        x = os.path.join(d, "x")
        t.extractall(x)
    # Every original file gone: the binary and its debug file moved away,
    # libc named where nothing is.
    os.rename(app, os.path.join(d, "gone"))
    for s in glob.glob(os.path.join(x, "*.snap")):
        rewrite_module_paths(s, s + ".new", {libc[0]: "/gone" + libc[0]})
        os.rename(s + ".new", s)
    got = hd_env(env, "top", os.path.join(x, os.path.basename(ex)), "--limit", "0", "--by", "traceback")
    eq((got.returncode, got.stderr), (0, ""), "the bundle's report: exit status and stderr")
    eq(got.stdout, want.stdout, "the bundle's report")

    for argv, msg in ((["bundle", ex], "no output file: give -o FILE.tar"),
                      (["bundle", "-o", tar], "expected snapshot files or a directory of them")):
        p = hd(*argv)
        eq((p.returncode, p.stderr.splitlines()[0]), (2, f"heapdelta: {msg}"), f"{' '.join(argv)}")
