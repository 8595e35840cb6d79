#!/usr/bin/env python3
"""End-to-end tests: the real heapdelta binaries on fixture programs.

Expected file:line values come from `@site NAME` markers in the fixture
sources; expected bytes and counts come from the fixtures themselves
("expect NAME BYTES COUNT", computed from what their calls returned).
Expected text is built with CPython's own tracemalloc._format_size, so the
layout is checked against tracemalloc itself.

Usage: tests/e2e.py [-k SUBSTRING]   (run from anywhere)
"""
import glob
import json
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from tracemalloc import _format_size

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
HD = os.path.join(BUILD, "heapdelta")
SHIM = os.path.join(BUILD, "libheapdelta.so")
FIX = os.path.join(ROOT, "tests", "fixtures")
BIN = os.path.join(BUILD, "tests")
TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def eq(got, want, what):
    if got != want:
        raise Failure(f"{what}: got {got!r}, want {want!r}")


def markers(src):
    """{name: line} for every `@site NAME` in a fixture source."""
    out = {}
    with open(os.path.join(FIX, src)) as f:
        for n, line in enumerate(f, 1):
            m = re.search(r"@site (\w+)", line)
            if m:
                out[m.group(1)] = n
    return out


def run(cmd, timeout=120, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def hd(*args, timeout=120):
    return run([HD, *args], timeout=timeout)


def traced(cmd, outdir, *opts, env=None, timeout=120):
    """Run cmd under `heapdelta run`; return the process and its snapshots."""
    p = run([HD, "run", "-o", outdir, *opts, "--", *cmd], env=env, timeout=timeout)
    return p, sorted(glob.glob(os.path.join(outdir, "heapdelta.*.snap")), key=snap_order)


def snap_order(path):
    m = re.search(r"heapdelta\.(\d+)\.(\d+)\.", os.path.basename(path))
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def snaps_of(outdir, trigger):
    return [s for s in sorted(glob.glob(os.path.join(outdir, "heapdelta.*.snap")), key=snap_order)
            if s.endswith(f".{trigger}.snap")]


def expectations(stdout):
    exp = {}
    for line in stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == "expect":
            exp[parts[1]] = tuple(int(x) for x in parts[2:])
    return exp


def top_json(snap, *args):
    p = hd("top", snap, "--limit", "0", "--format", "json", *args)
    eq(p.returncode, 0, f"heapdelta top exit status (stderr: {p.stderr.strip()})")
    return json.loads(p.stdout)


def by_site(report, src):
    """{line: stat} for the entries whose site is in fixture src."""
    out = {}
    for st in report["stats"]:
        if st["file"] and os.path.basename(st["file"]) == src:
            check(st["line"] not in out, f"two entries for {src}:{st['line']}")
            out[st["line"]] = st
    return out


def check_sites(report, src, exp, names=None):
    marks = markers(src)
    sites = by_site(report, src)
    for name, (size, count) in exp.items():
        if names is not None and name not in names:
            continue
        line = marks[name]
        st = sites.get(line)
        if count == 0:
            check(st is None or (st["size"] == 0 and st["count"] == 0),
                  f"{name} ({src}:{line}) should hold nothing, has {st and (st['size'], st['count'])}")
        else:
            check(st is not None, f"{name} ({src}:{line}) missing from the report")
            eq((st["size"], st["count"]), (size, count), f"{name} ({src}:{line}) size, count")
    return sites


def stat_line(key, size, count, size_diff=None, count_diff=None):
    text = f"{key}: size={_format_size(size, False)}"
    if size_diff is not None:
        text += f" ({_format_size(size_diff, True)})"
    text += f", count={count}"
    if count_diff is not None:
        text += f" ({count_diff:+d})"
    if count:
        text += f", average={_format_size(size / count, False)}"
    return text


TMPS = []


def tmpdir():
    TMPS.append(tempfile.mkdtemp(prefix="hd-e2e-"))
    return TMPS[-1]


# ---------------------------------------------------------------------------
# The shim records exactly what the program holds.

@test
def every_allocation_api_is_recorded_exactly_at_its_line():
    d = tmpdir()
    p, snaps = traced([os.path.join(BIN, "sites")], d)
    eq(p.returncode, 0, f"fixture exit status (stdout: {p.stdout})")
    check("done 0 failures" in p.stdout, p.stdout)
    exits = snaps_of(d, "exit")
    eq(len(exits), 1, "exit snapshots")
    exp = expectations(p.stdout)
    check(len(exp) >= 20, f"fixture printed {len(exp)} expectations")
    direct = {k: v for k, v in exp.items() if k != "strdup"}
    check_sites(top_json(exits[0]), "sites.c", direct)
    # strdup allocates inside glibc: the fixture's line is a caller, so it
    # is checked in the cumulative view, where every frame is charged.
    check_sites(top_json(exits[0], "--cumulative"), "sites.c", {"strdup": exp["strdup"]})
    info = json.loads(hd("info", "--format", "json", exits[0]).stdout)[0]
    eq(info["unknown_frees"], 1, "unknown frees (one __libc_malloc block freed)")
    eq(info["dropped_allocs"], 0, "dropped allocations")


@test
def frame_pointer_mode_gives_the_same_sites():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "sites_fp")], d, "--unwind", "fp")
    eq(p.returncode, 0, "fixture exit status")
    exp = expectations(p.stdout)
    snap = snaps_of(d, "exit")[0]
    info = json.loads(hd("info", "--format", "json", snap).stdout)[0]
    eq(info["unwinder"], "fp", "unwinder recorded in the snapshot")
    direct = {k: v for k, v in exp.items() if k != "strdup"}
    check_sites(top_json(snap), "sites.c", direct)


@test
def frame_pointer_mode_never_crashes_a_program_built_without_them():
    # python3 is built without frame pointers: rbp holds arbitrary values.
    script = "d={str(i):[i]*3 for i in range(100000)}\nprint(len(d))"
    env = {**os.environ, "PYTHONMALLOC": "malloc"}
    for _ in range(3):
        d = tmpdir()
        p, _ = traced(["/usr/bin/python3", "-c", script], d, "--unwind", "fp", env=env)
        eq((p.returncode, p.stdout), (0, "100000\n"), "python3 under the frame-pointer unwinder")


@test
def top_text_is_tracemalloc_format_exactly():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "sites")], d)
    exp = expectations(p.stdout)
    snap = snaps_of(d, "exit")[0]
    marks = markers("sites.c")
    src = os.path.join(FIX, "sites.c")
    rows = [(size, count, marks[name]) for name, (size, count) in exp.items()
            if count and name != "strdup"]
    # tracemalloc's order: size, count, then the frame, all descending.
    rows.sort(key=lambda r: (r[0], r[1], r[2]), reverse=True)
    want = [stat_line(f"{src}:{line}", size, count) for size, count, line in rows]
    total_size = sum(r[0] for r in rows)
    total_count = sum(r[1] for r in rows)
    want.append(f"Total: size={_format_size(total_size, False)}, count={total_count}")
    out = hd("top", snap, "--limit", "0", "--include", "*/sites.c")
    eq(out.returncode, 0, "exit status")
    lines = out.stdout.splitlines()
    eq(lines[:-1], want, "top text")
    check(re.fullmatch(r"Peak: \d+(\.\d)? (B|KiB|MiB)", lines[-1]), f"peak line {lines[-1]!r}")
    # --limit: the rest is summarized on one line.
    out = hd("top", snap, "--limit", "2", "--include", "*/sites.c").stdout.splitlines()
    eq(out[:2], want[:2], "first two lines with --limit 2")
    rest = rows[2:]
    eq(out[2], f"{len(rest)} other: size={_format_size(sum(r[0] for r in rest), False)}, "
               f"count={sum(r[1] for r in rest)}", "other line")


@test
def cpp_sites_show_demangled_names_and_the_line_that_called_new():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "sites_cpp")], d)
    eq(p.returncode, 0, f"fixture exit status (stdout: {p.stdout})")
    check("caught 500" in p.stdout, "exceptions thrown and caught under the shim")
    exp = expectations(p.stdout)
    report = top_json(snaps_of(d, "exit")[0])
    sites = check_sites(report, "sites_cpp.cpp", {k: v for k, v in exp.items() if k != "string"})
    fill = sites[markers("sites_cpp.cpp")["cache_fill"]]
    eq(fill["function"], "app::Cache::fill(int)", "demangled site function")
    eq(sites[markers("sites_cpp.cpp")["new"]]["function"], "main", "site function of new")


@test
def cpp_program_output_is_identical_under_the_shim():
    plain = run([os.path.join(BIN, "sites_cpp")])
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "sites_cpp")], d)
    eq(p.stdout, plain.stdout, "stdout")
    eq(p.returncode, plain.returncode, "exit status")


@test
def eight_threads_with_cross_thread_frees_end_exact():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "threads")], d, timeout=300)
    eq(p.returncode, 0, "fixture exit status")
    exp = expectations(p.stdout)
    snap = snaps_of(d, "exit")[0]
    check_sites(top_json(snap), "threads.c", exp)
    info = json.loads(hd("info", "--format", "json", snap).stdout)[0]
    check(info["alloc_count"] >= 8 * 150000, f"allocations recorded: {info['alloc_count']}")
    eq(info["dropped_allocs"], 0, "dropped allocations")
    eq(info["alloc_bytes"] - info["free_bytes"], info["live_bytes"], "allocated - freed = live")


@test
def every_trigger_writes_its_snapshot():
    d = tmpdir()
    p, snaps = traced([os.path.join(BIN, "triggers"), "1.2"], d, "--interval", "0.25")
    eq(p.returncode, 0, "fixture exit status")
    check("api 0" in p.stdout, f"heapdelta_snapshot() returns 0 under the shim: {p.stdout}")
    kinds = {}
    for s in snaps:
        m = re.fullmatch(r"heapdelta\.(\d+)\.(\d+)\.(interval|signal|api|exit)\.snap", os.path.basename(s))
        check(m, f"snapshot name {s}")
        kinds.setdefault(m.group(3), []).append(s)
        eq(stat.S_IMODE(os.stat(s).st_mode), 0o600, f"mode of {s}")
    eq(len(kinds.get("api", [])), 1, "api snapshots")
    eq(len(kinds.get("signal", [])), 1, "signal snapshots")
    eq(len(kinds.get("exit", [])), 1, "exit snapshots")
    check(len(kinds.get("interval", [])) >= 3, f"interval snapshots: {len(kinds.get('interval', []))}")
    infos = json.loads(hd("info", "--format", "json", *snaps).stdout)
    api = [i for i in infos if i["trigger"] == "api"][0]
    eq(api["label"], "first checkpoint", "api label")
    seqs = sorted(i["seq"] for i in infos)
    eq(seqs, list(range(1, len(snaps) + 1)), "sequence numbers")
    eq([f for f in os.listdir(d) if f.startswith(".")], [], "temporary files left behind")
    # Without the shim the same call is harmless.
    plain = run([os.path.join(BIN, "triggers"), "0"], env={**os.environ, "HEAPDELTA_SIGNAL": "0"})
    check("api -1" in plain.stdout or plain.returncode != 0, plain.stdout)


@test
def heapdelta_snapshot_is_harmless_without_the_shim():
    # SIGUSR2 would kill it without the shim: skip the raise by not tracing
    # and ignoring the signal in the parent (ignored dispositions inherit).
    p = subprocess.run([os.path.join(BIN, "triggers"), "0"], capture_output=True, text=True,
                       preexec_fn=lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN))
    eq(p.returncode, 0, "exit status")
    check("api -1" in p.stdout, p.stdout)


@test
def the_programs_own_handler_for_the_snapshot_signal_is_left_alone():
    d = tmpdir()
    script = "import signal,os; signal.signal(signal.SIGUSR2, lambda *a: print('mine')); os.kill(os.getpid(), signal.SIGUSR2); print('end')"
    p, snaps = traced(["/usr/bin/python3", "-c", script], d)
    eq(p.stdout, "mine\nend\n", "program handler ran")
    eq(snaps_of(d, "signal"), [], "no signal snapshot")


@test
def program_bindings_stay_glibcs_and_exit_from_a_thread_writes_the_exit_snapshot():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "bindings")], d)
    eq(p.returncode, 3, f"exit status from the thread (stdout: {p.stdout})")
    check(p.stdout.startswith("backtrace works"), p.stdout)
    exits = snaps_of(d, "exit")
    eq(len(exits), 1, "exit snapshots")
    sites = by_site(top_json(exits[0]), "bindings.c")
    eq((sites[markers("bindings.c")["thread_leak"]]["size"]), 4321, "block allocated by the exiting thread")


@test
def deep_stacks_are_cut_at_the_depth_and_marked_truncated():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "grow")], d, "--depth", "2")
    snap = snaps_of(d, "exit")[0]
    info = json.loads(hd("info", "--format", "json", snap).stdout)[0]
    eq(info["depth"], 2, "depth recorded")
    check(info["truncated_stacks"] > 0, "some stacks are marked truncated")
    r = top_json(snap)
    check(all(len(s["traceback"]) <= 3 for s in r["stats"]), "at most 2 return addresses (+1 inline frame)")
    check_sites(r, "grow.c", {"grow_a": (50000, 50)})


@test
def a_rebuilt_binary_is_reported_not_misattributed():
    d = tmpdir()
    prog = os.path.join(d, "prog")
    shutil.copy(os.path.join(BIN, "sites"), prog)
    out = os.path.join(d, "out")
    traced([prog], out)
    snap = snaps_of(out, "exit")[0]
    shutil.copy(os.path.join(BIN, "grow"), prog)   # another build-id at the same path
    p = hd("top", snap, "--limit", "0", "--format", "json")
    eq(p.returncode, 0, "exit status")
    check(f"heapdelta: warning: '{prog}' has changed since the snapshot was taken" in p.stderr, p.stderr)
    r = json.loads(p.stdout)
    mine = [s for s in r["stats"] if s["traceback"][0]["module"] == "prog"]
    check(mine, "frames of the rebuilt binary are listed")
    check(all(s["file"] is None and s["key"].startswith("prog+0x") for s in mine), [s["key"] for s in mine])


@test
def the_analyzer_under_asan_gives_the_same_reports():
    d = tmpdir()
    traced([os.path.join(BIN, "grow")], d)
    traced([os.path.join(BIN, "sites_cpp")], d)
    snaps = snaps_of(d, "api") + snaps_of(d, "exit")
    asan = os.path.join(BIN, "heapdelta_asan")
    cmds = [["top", snaps[-1], "--limit", "0"], ["top", snaps[-1], "--by", "traceback"],
            ["top", snaps[-2], "--cumulative", "--format", "json"], ["diff", snaps[0], snaps[1], "--by", "function"],
            ["info", *snaps]]
    for cmd in cmds:
        a, b = hd(*cmd), run([asan, *cmd])
        eq(b.returncode, 0, f"asan {cmd}: {b.stderr[-2000:]}")
        eq(b.stdout, a.stdout, f"output of {cmd}")


# ---------------------------------------------------------------------------
# diff

@test
def diff_puts_the_grown_lines_on_top_with_exact_numbers():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "grow")], d)
    eq(p.returncode, 0, "fixture exit status")
    check("api 0" in p.stdout, p.stdout)
    before, after = snaps_of(d, "api")
    exp = {k: v for k, v in expectations(p.stdout).items()}
    marks = markers("grow.c")
    src = os.path.join(FIX, "grow.c")
    r = json.loads(hd("diff", before, after, "--limit", "0", "--format", "json").stdout)
    top4 = r["stats"][:4]
    order = sorted(exp.items(), key=lambda kv: abs(kv[1][0]), reverse=True)
    for st, (name, (sdiff, cdiff, size, count)) in zip(top4, order):
        eq((st["file"], st["line"]), (src, marks[name]), f"site of {name}")
        eq((st["size_diff"], st["count_diff"], st["size"], st["count"]), (sdiff, cdiff, size, count),
           f"{name} numbers")
    text = hd("diff", before, after, "--limit", "4").stdout.splitlines()
    want = [stat_line(f"{src}:{marks[name]}", size, count, sdiff, cdiff)
            for name, (sdiff, cdiff, size, count) in order]
    eq(text[:4], want, "diff text")
    # The inlined allocation: the inlined function's line, then its caller.
    leaf = [s for s in r["stats"] if s["line"] == marks["inl_leaf"]][0]
    tb = leaf["traceback"]
    eq((tb[0]["line"], tb[0]["function"], tb[0]["inlined"]), (marks["inl_leaf"], "make_record", True), "inline frame")
    eq((tb[1]["line"], tb[1]["function"], tb[1]["inlined"]), (marks["inl_caller"], "add_records", False), "caller frame")


@test
def traceback_view_shows_the_inline_chain_and_source_lines():
    d = tmpdir()
    traced([os.path.join(BIN, "grow")], d)
    marks = markers("grow.c")
    src = os.path.join(FIX, "grow.c")
    out = hd("top", snaps_of(d, "exit")[0], "--by", "traceback", "--include", f"{src}:{marks['inl_leaf']}").stdout
    lines = out.splitlines()
    eq(lines[0], stat_line(f"{src}:{marks['inl_leaf']}", 1000, 4), "first line")
    eq(lines[1], f'  File "{src}", line {marks["inl_leaf"]}, in make_record (inlined)', "inline frame")
    eq(lines[2], "    return malloc(n); /* @site inl_leaf */", "source line")
    eq(lines[3], f'  File "{src}", line {marks["inl_caller"]}, in add_records', "caller frame")


@test
def two_runs_of_one_program_diff_to_zero():
    a, b = tmpdir(), tmpdir()
    traced([os.path.join(BIN, "sites")], a)
    traced([os.path.join(BIN, "sites")], b)
    sa, sb = snaps_of(a, "exit")[0], snaps_of(b, "exit")[0]
    ia = json.loads(hd("info", "--format", "json", sa).stdout)[0]
    ib = json.loads(hd("info", "--format", "json", sb).stdout)[0]
    check(ia["modules"][0]["base"] != ib["modules"][0]["base"], "the two runs loaded at different addresses")
    r = json.loads(hd("diff", sa, sb, "--limit", "0", "--format", "json").stdout)
    eq((r["total"]["size_diff"], r["total"]["count_diff"]), (0, 0), "total difference")
    changed = [s["key"] for s in r["stats"] if s["size_diff"] or s["count_diff"]]
    eq(changed, [], "sites that changed")


@test
def separate_debug_files_are_found_by_debuglink_and_by_build_id():
    marks = markers("grow.c")
    for how in ("debuglink", "build-id"):
        d = tmpdir()
        prog, dbg = os.path.join(d, "grow"), os.path.join(d, "grow.debug")
        shutil.copy(os.path.join(BIN, "grow"), prog)
        run(["objcopy", "--only-keep-debug", prog, dbg])
        run(["objcopy", "--strip-debug", prog])
        installed = None
        if how == "debuglink":
            run(["objcopy", f"--add-gnu-debuglink={dbg}", prog], cwd=d)
        else:
            if os.geteuid() != 0:
                raise Failure("needs root to write under /usr/lib/debug")
            bid = re.search(r"Build ID: ([0-9a-f]+)", run(["readelf", "-n", prog]).stdout).group(1)
            installed = f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug"
            os.makedirs(os.path.dirname(installed), exist_ok=True)
            shutil.move(dbg, installed)
        try:
            check("debug_info" not in run(["readelf", "-S", prog]).stdout, "the binary has no DWARF of its own")
            out = os.path.join(d, "out")
            traced([prog], out)
            sites = by_site(top_json(snaps_of(out, "exit")[0]), "grow.c")
            eq(sites.get(marks["grow_a"], {}).get("size"), 50000, f"{how}: grow_a at its line")
        finally:
            if installed:
                os.unlink(installed)


@test
def filters_follow_tracemalloc_semantics():
    d = tmpdir()
    traced([os.path.join(BIN, "grow")], d)
    snap = snaps_of(d, "exit")[0]
    marks = markers("grow.c")
    only = top_json(snap, "--include", f"*grow.c:{marks['grow_b']}")
    eq([(s["line"], s["size"]) for s in only["stats"]], [(marks["grow_b"], 21000)], "include with line")
    eq(only["total"], {"size": 21000, "count": 7}, "total after filter")
    excl = top_json(snap, "--exclude", "*grow.c")
    eq([s for s in excl["stats"] if s["file"] and s["file"].endswith("grow.c")], [], "exclude")
    # All frames: the caller's file also matches the inlined stack.
    focus = top_json(snap, "--focus", "^add_records$")
    eq([(s["line"], s["size"]) for s in focus["stats"]], [(marks["inl_leaf"], 1000)], "focus on a caller")
    ign = top_json(snap, "--ignore", "^add_records$")
    check(all(s["line"] != marks["inl_leaf"] for s in ign["stats"]), "ignore")
    by_fn = top_json(snap, "--by", "function", "--include", "*grow.c")
    eq(sorted((s["key"], s["size"]) for s in by_fn["stats"]),
       [("main", 50000 + 21000 + 1500), ("make_record", 1000)], "by function")
    by_file = top_json(snap, "--by", "filename", "--include", "*grow.c")
    eq([(s["key"], s["size"]) for s in by_file["stats"]], [(os.path.join(FIX, "grow.c"), 73500)], "by filename")
    mod = top_json(snap, "--module", "grow")
    eq(sum(s["size"] for s in mod["stats"]), 73500, "module filter")


# ---------------------------------------------------------------------------
# Real programs behave exactly as without the shim.

def same_behaviour(cmd, cwd=None, stdin=None, env=None):
    plain = subprocess.run(cmd, capture_output=True, cwd=cwd, input=stdin, env=env, timeout=300)
    d = tmpdir()
    traced_env = dict(env or os.environ)
    traced_env.update(LD_PRELOAD=SHIM, HEAPDELTA_OUT=d)
    under = subprocess.run(cmd, capture_output=True, cwd=cwd, input=stdin, env=traced_env, timeout=300)
    eq(under.stdout, plain.stdout, f"stdout of {cmd[0]}")
    eq(under.returncode, plain.returncode, f"exit status of {cmd[0]}")
    snaps = snaps_of(d, "exit")
    check(snaps, f"{cmd[0]} wrote no exit snapshot")
    return d, snaps


@test
def python3_runs_identically():
    script = "import json,collections\nd=collections.Counter(str(i%97) for i in range(200000))\nprint(json.dumps(sorted(d.items())[:5]))\n"
    env = {**os.environ, "PYTHONMALLOC": "malloc"}
    same_behaviour(["/usr/bin/python3", "-c", script], env=env)


@test
def sqlite3_runs_identically():
    sql = "create table t(a,b);" + "".join(f"insert into t values({i},'{'x' * (i % 50)}');" for i in range(2000)) + \
          "select count(*), sum(length(b)) from t; select a from t order by b desc, a limit 3;"
    same_behaviour(["sqlite3", ":memory:"], stdin=sql.encode())


@test
def perl_runs_identically():
    same_behaviour(["perl", "-e", 'my %h; $h{$_ % 1000} .= "x" for 1..200000; print scalar(keys %h), " ", length($h{7}), "\\n"'])


@test
def gcc_compiles_identically():
    d = tmpdir()
    src = os.path.join(d, "unit.c")
    with open(src, "w") as f:
        f.write("".join(f"int f{i}(int x) {{ return x * {i} + {i % 7}; }}\n" for i in range(300)))
    plain_o, traced_o = os.path.join(d, "plain.o"), os.path.join(d, "traced.o")
    subprocess.run(["gcc", "-O2", "-c", src, "-o", plain_o], check=True)
    out = tmpdir()
    env = {**os.environ, "LD_PRELOAD": SHIM, "HEAPDELTA_OUT": out}
    p = subprocess.run(["gcc", "-O2", "-c", src, "-o", traced_o], env=env, capture_output=True)
    eq(p.returncode, 0, "gcc exit status")
    with open(plain_o, "rb") as a, open(traced_o, "rb") as b:
        check(a.read() == b.read(), "object files differ")
    names = " ".join(os.path.basename(s) for s in snaps_of(out, "exit"))
    progs = {json.loads(hd("info", "--format", "json", s).stdout)[0]["exe"].split("/")[-1] for s in snaps_of(out, "exit")}
    check("cc1" in progs, f"cc1 (a child of gcc) was traced: {progs} {names}")


@test
def the_cfi_unwinder_matches_libunwind_frame_for_frame():
    """HEAPDELTA_UNWIND_CHECK=1 unwinds every stack both ways and counts
    differences; real programs and the fixtures must have none."""
    d = tmpdir()
    src = os.path.join(d, "unit.c")
    with open(src, "w") as f:
        f.write("".join(f"static int f{i}(int x) {{ return x * {i}; }}\nint g{i}(int y) {{ return f{i}(y) + {i}; }}\n"
                        for i in range(200)))
    env = {**os.environ, "HEAPDELTA_UNWIND_CHECK": "1", "PYTHONMALLOC": "malloc"}
    sql = "create table t(a,b);" + "".join(f"insert into t values({i},'{i * 7}');" for i in range(500)) + "select count(*) from t;"
    runs = [(["/usr/bin/python3", "-c", "import json; print(len(json.dumps({str(i): [i] * 5 for i in range(20000)})))"], None),
            (["sqlite3", ":memory:"], sql),
            (["perl", "-e", 'my %h; $h{$_} = [$_] for 1..50000; print scalar(keys %h), "\\n"'], None),
            (["gcc", "-O2", "-c", src, "-o", os.path.join(d, "unit.o")], None),
            ([os.path.join(BIN, "sites_cpp")], None),
            ([os.path.join(BIN, "threads")], None)]
    for cmd, stdin in runs:
        out = tmpdir()
        p = subprocess.run([HD, "run", "-o", out, "--", *cmd], env=env, input=stdin, capture_output=True, text=True,
                           timeout=300)
        eq(p.returncode, 0, f"{cmd[0]} exit status: {p.stderr[-500:]}")
        checked = mismatched = 0
        for s in snaps_of(out, "exit"):
            info = json.loads(hd("info", "--format", "json", s).stdout)[0]
            eq(info["unwinder"], "cfi", "default unwinder")
            checked += info["unwind_checked"]
            mismatched += info["unwind_mismatches"]
        check(checked > 1000, f"{cmd[0]}: only {checked} stacks compared")
        eq(mismatched, 0, f"{cmd[0]}: stacks that differ from libunwind's (of {checked})")


# ---------------------------------------------------------------------------
# heapdelta run

@test
def run_passes_exit_status_and_signals_through():
    d = tmpdir()
    p, _ = traced(["sh", "-c", "echo out; echo err >&2; exit 7"], d)
    eq(p.returncode, 7, "exit status")
    eq(p.stdout, "out\n", "stdout")
    check(p.stderr.startswith("err\n"), p.stderr)
    check(re.search(r"^heapdelta: \d+ snapshots? of pid \d+ in ", p.stderr, re.M), p.stderr)
    p, _ = traced(["sh", "-c", "kill -TERM $$"], d)
    eq(p.returncode, -signal.SIGTERM, "killed by the same signal")
    p = run([HD, "run", "-o", d, "--", "cat"], input="stdin passes\n")
    eq(p.stdout, "stdin passes\n", "stdin")


@test
def run_forwards_a_signal_sent_to_it():
    d = tmpdir()
    proc = subprocess.Popen([HD, "run", "-o", d, "--", "sleep", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    eq(proc.returncode, -signal.SIGTERM, "status after forwarding SIGTERM")


@test
def run_refuses_a_static_binary_without_hanging():
    p = hd("run", "-o", tmpdir(), "--", os.path.join(BIN, "static_hello"), timeout=20)
    eq(p.returncode, 2, "exit status")
    lines = p.stderr.splitlines()
    eq(len(lines), 1, f"one line: {p.stderr!r}")
    check("statically linked" in lines[0], lines[0])
    eq(p.stdout, "", "the program did not run")


@test
def children_are_traced_into_their_own_files_unless_disabled():
    d = tmpdir()
    p, snaps = traced(["sh", "-c", f"{os.path.join(BIN, 'sites')} >/dev/null; true"], d)
    pids = {snap_order(s)[0] for s in snaps_of(d, "exit")}
    eq(len(pids), 2, f"exit snapshots from the shell and the program: {snaps}")
    d2 = tmpdir()
    p, snaps = traced(["sh", "-c", f"{os.path.join(BIN, 'sites')} >/dev/null; true"], d2, "--no-children")
    eq(len(snaps_of(d2, "exit")), 1, "only the shell is traced")


@test
def make_install_gives_a_working_heapdelta_without_environment():
    dest = tmpdir()
    p = run(["make", "-C", ROOT, "install", f"DESTDIR={dest}", "PREFIX=/opt/hd"], timeout=300)
    eq(p.returncode, 0, f"make install: {p.stderr}")
    for f in ("bin/heapdelta", "lib/heapdelta/libheapdelta.so", "include/heapdelta.h"):
        check(os.path.exists(os.path.join(dest, "opt/hd", f)), f"installed {f}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEAPDELTA")}
    d = tmpdir()
    p = run([os.path.join(dest, "opt/hd/bin/heapdelta"), "run", "-o", d, "--", "true"], env=env)
    eq(p.returncode, 0, f"installed run: {p.stderr}")
    eq(len(snaps_of(d, "exit")), 1, "exit snapshot via the installed shim")


@test
def sampled_estimates_stay_within_fifteen_percent_of_the_exact_values():
    # One allocation per 16 KiB on average: the estimates' standard
    # deviations here are about 2.5% (mid-sized blocks) and 4% (small ones).
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "sampling")], d, "--sample", "16KiB")
    eq(p.returncode, 0, "exit status")
    snap = snaps_of(d, "exit")[0]
    r = top_json(snap)
    eq(r["snapshot"]["sampled"], 16384, "the snapshot says it holds estimates")
    check("Estimates: one allocation sampled per 16.0 KiB on average" in hd("top", snap).stdout, "the report says so")
    sites = by_site(r, "sampling.c")
    marks = markers("sampling.c")
    for name, (size, count) in expectations(p.stdout).items():
        st = sites[marks[name]]
        check(abs(st["size"] - size) <= 0.15 * size, f"{name}: estimated {st['size']} bytes, exact {size}")
        check(abs(st["count"] - count) <= 0.15 * count, f"{name}: estimated {st['count']} blocks, exact {count}")


# ---------------------------------------------------------------------------
# What real programs do: processes, libraries, signals, exits, files

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
    info = json.loads(hd("info", "--format", "json", snap).stdout)[0]
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
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        raise Failure("needs root and setpriv (util-linux) to run a setuid program as another user")
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


@test
def the_shims_memory_follows_the_live_population_not_the_allocation_count():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "longrun"), "12"], d, "--interval", "0.25", timeout=120)
    eq(p.returncode, 0, "exit status")
    total = int(p.stdout)
    check(total > 5 << 30, f"only {total >> 20} MiB allocated in total")
    infos = json.loads(hd("info", "--format", "json", *snaps_of(d, "interval")).stdout)
    infos.sort(key=lambda i: i["seq"])
    # 48 intervals; the reclaim pass (every second) may delay one now and then.
    check(len(infos) >= 40, f"{len(infos)} interval snapshots")
    # Peaks over the second and the last quarter of the run, each longer
    # than the shim's one-second reclaim period.
    q = len(infos) // 4
    early = max(i["shim_bytes"] for i in infos[q:2 * q])
    late = max(i["shim_bytes"] for i in infos[3 * q:])
    check(late <= early * 1.5 + (1 << 20), f"shim memory grew from {early} to {late} bytes")
    live = min(i["live_bytes"] for i in infos[3 * q:])
    check(late < live / 8, f"shim memory {late >> 20} MiB for {live >> 20} MiB of live blocks")


@test
def the_shim_gives_back_the_memory_of_a_transient_peak():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "longrun"), "3", "transient"], d, timeout=120)
    eq(p.returncode, 0, "exit status")
    infos = {i["label"]: i for i in json.loads(hd("info", "--format", "json", *snaps_of(d, "api")).stdout)}
    peak, after = infos["peak"], infos["after"]
    check(peak["live_count"] >= 2000000, "the peak holds two million blocks")
    check(after["shim_bytes"] < peak["shim_bytes"] / 3,
          f"shim memory {peak['shim_bytes'] >> 20} MiB at the peak, {after['shim_bytes'] >> 20} MiB after")


@test
def a_program_linked_against_jemalloc_is_traced_through_jemalloc():
    for name in ("threads_jemalloc", "leaky_jemalloc"):
        prog = os.path.join(BIN, name)
        check("libjemalloc" in run(["ldd", prog]).stdout, f"{name} uses jemalloc")
        plain = run([prog])
        d = tmpdir()
        p, _ = traced([prog], d, timeout=300)
        eq((p.returncode, p.stdout), (plain.returncode, plain.stdout), f"{name}: status and output")
        check("heapdelta: malloc is not glibc's (another allocator is loaded); tracing it through its malloc"
              in p.stderr.splitlines(), p.stderr)
        src = name.replace("_jemalloc", ".c")
        exp = expectations(p.stdout) if src == "threads.c" else {"known_leak": (1000, 10), "intentional_cache": (320, 5)}
        check_sites(top_json(snaps_of(d, "exit")[0]), src, exp)


# ---------------------------------------------------------------------------
# The oracle: glibc's own allocation log (mtrace) for the same run

MALLOC_DEBUG = "/lib/x86_64-linux-gnu/libc_malloc_debug.so.0"


def mtrace_live(log):
    """Blocks allocated and not freed, from an mtrace log: {address: [sizes]}.

    glibc's debugging free logs "- ADDR" after the real free, so in a
    threaded program another thread may be handed ADDR and log "+ ADDR"
    first.  A second "+" for a live address is that; the next "-" for the
    address then frees the older block (first in, first out)."""
    live = {}
    with open(log, errors="replace") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] == "@":          # "@ caller" prefix
                parts = parts[2:] if len(parts) > 2 and parts[1] not in "+-<>!" else parts[1:]
            if not parts or parts[0] == "=":
                continue
            if parts[0] in ("+", ">"):             # malloc family, realloc's new block
                live.setdefault(parts[1], []).append(int(parts[2], 16))
            elif parts[0] in ("-", "<"):           # free, realloc's old block
                sizes = live.get(parts[1])
                if sizes:
                    sizes.pop(0)
                    if not sizes:
                        del live[parts[1]]
            # "!": a failed realloc; the old block stays
    return live


def oracle_compare(cmd, stdin=None, env=None, adjust=None):
    """Run cmd once under heapdelta and glibc's mtrace together; return
    (heapdelta's bytes and count at exit, mtrace's)."""
    d = tmpdir()
    log = os.path.join(d, "mtrace.log")
    # heapdelta first (the program's malloc), then the helper that starts
    # mtrace and stops it right after heapdelta's exit snapshot (its
    # destructor runs next, before libc_malloc_debug's own exit-time
    # __libc_freeres), then glibc's debugging malloc, which writes the log.
    e = {**(env or os.environ), "MALLOC_TRACE": log, "HEAPDELTA_OUT": d, "HEAPDELTA_SIGNAL": "0",
         "LD_PRELOAD": f"{SHIM}:{os.path.join(BIN, 'libmtrace_start.so')}:{MALLOC_DEBUG}"}
    p = subprocess.run(cmd, input=stdin, env=e, capture_output=True, timeout=300)
    eq(p.returncode, 0, f"{cmd[0]} exit status")
    live = mtrace_live(log)
    r = top_json(snaps_of(d, "exit")[0], "--by", "traceback")
    # mtrace's own blocks (its log FILE) are invisible to mtrace.
    mine = [s for s in r["stats"] if not any(f["module"] == "libc_malloc_debug.so.0" for f in s["traceback"])]
    ours = [sum(s["size"] for s in mine), sum(s["count"] for s in mine)]
    if adjust:
        adjust(mine, ours)
    return tuple(ours), (sum(sum(v) for v in live.values()), sum(len(v) for v in live.values()))


@test
def heapdelta_agrees_exactly_with_glibcs_own_allocation_log():
    if not os.path.exists(MALLOC_DEBUG):
        raise Failure(f"{MALLOC_DEBUG} is missing (glibc 2.34+ ships it)")
    cc1 = run(["gcc", "-print-prog-name=cc1"]).stdout.strip()
    d = tmpdir()
    src = os.path.join(d, "unit.c")
    with open(src, "w") as f:
        f.write("".join(f"static int f{i}(int x) {{ return x * {i}; }}\nint g{i}(int y) {{ return f{i}(y); }}\n" for i in range(100)))
    sql = ("create table t(a, b); " + "".join(f"insert into t values({i}, '{'x' * (i % 30)}'); " for i in range(300)) +
           "select count(*), sum(length(b)) from t;").encode()

    def pvalloc_logged_rounded(mine, ours):
        # glibc's debugging pvalloc logs the page-rounded size plus one;
        # heapdelta counts the size the program asked for.
        line = markers("sites.c")["pvalloc"]
        for s in mine:
            if s["line"] == line:
                ours[0] += ((s["size"] + 4095) // 4096 * 4096 + 1) - s["size"]

    def before_mtrace_could_start(mine, ours):
        # libstdc++'s initializer (run by the loader's _dl_init) allocates
        # its emergency exception pool before any preloaded constructor
        # runs, so before mtrace() starts.
        for s in mine:
            tb = s["traceback"]
            if tb[0]["module"] == "libstdc++.so.6" and tb[-1]["module"].startswith("ld-linux"):
                ours[0] -= s["size"]
                ours[1] -= s["count"]

    cases = [
        (["/usr/bin/python3", "-c", "import json; print(len(json.dumps({str(i): [i] * 3 for i in range(5000)})))"],
         None, {**os.environ, "PYTHONMALLOC": "malloc"}, None),
        (["perl", "-e", 'my %h; $h{$_} = [$_] for 1..5000; print scalar(keys %h), "\\n"'], None, None, None),
        (["sqlite3", ":memory:"], sql, None, None),
        ([cc1, "-quiet", "-O2", src, "-o", os.path.join(d, "unit.s")], None, None, None),
        ([os.path.join(BIN, "grow")], None, None, None),
        ([os.path.join(BIN, "threads")], None, None, None),
        ([os.path.join(BIN, "leaky")], None, None, None),
        ([os.path.join(BIN, "sites")], None, None, pvalloc_logged_rounded),
        ([os.path.join(BIN, "sites_cpp")], None, None, before_mtrace_could_start),
    ]
    for cmd, stdin, env, adjust in cases:
        ours, theirs = oracle_compare(cmd, stdin, env, adjust)
        check(theirs[1] > 0, f"{os.path.basename(cmd[0])}: mtrace logged nothing")
        eq(ours, theirs, f"{os.path.basename(cmd[0])}: (bytes, blocks) not freed at exit, heapdelta vs mtrace")


# ---------------------------------------------------------------------------
# CI: leaks, check, suppressions, baselines, reports

def leaky_run(*args):
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "leaky"), *args], d)
    return d, p


def frame_line_re(n, fn, src, site):
    return re.compile(rf"^    #{n} 0x[0-9a-f]+ in {re.escape(fn)} {re.escape(os.path.join(FIX, src))}:{markers(src)[site]}$")


@test
def leaks_lists_what_was_not_freed_by_stack_largest_first():
    d, _ = leaky_run()
    p = hd("leaks", d)
    eq(p.returncode, 0, "exit status")
    lines = p.stdout.splitlines()
    eq(lines[0], "1000 bytes in 10 allocations not freed at exit, allocated from:", "first site")
    check(frame_line_re(0, "known_leak", "leaky.c", "known_leak").match(lines[1]), lines[1])
    i = lines.index("320 bytes in 5 allocations not freed at exit, allocated from:")
    check(frame_line_re(0, "intentional_cache", "leaky.c", "intentional_cache").match(lines[i + 1]), lines[i + 1])
    eq(lines[-1], "SUMMARY: heapdelta: 1320 bytes in 15 allocations not freed at exit", "summary")


@test
def check_fails_over_budget_and_passes_with_a_suppression():
    d, _ = leaky_run()
    p = hd("check", "--max-leaked", "1KiB", d)
    eq(p.returncode, 1, "over budget")
    lines = p.stdout.splitlines()
    eq(lines[-1], "SUMMARY: heapdelta: 2 sites over budget, +1320 B in 15 allocations", "summary")
    check("not freed at exit: 1320 B (budget 1024 B): over budget" in lines, p.stdout)
    check("1000 bytes in 10 allocations not freed at exit, allocated from:" in lines, "failing site listed")
    p = hd("check", "--max-leaked", "1320", d)
    eq(p.returncode, 0, "exactly at the budget")
    supp = os.path.join(d, "supp.txt")
    with open(supp, "w") as f:
        f.write("# kept until exit on purpose\nleak:^intentional_cache$\n")
    p = hd("check", "--max-leaked", "1000B", "--suppressions", supp, "--print-suppressions", d)
    eq(p.returncode, 0, f"suppressed: {p.stdout}")
    out = p.stdout.splitlines()
    check("      1        320 leak:^intentional_cache$" in out, p.stdout)
    eq(out[-1], "SUMMARY: heapdelta: within budget: 1000 B in 10 allocations not freed at exit, peak 2320 B", "summary")
    # Powers of 1000: 1KB is 1000 bytes.
    eq(hd("check", "--max-leaked", "1KB", "--suppressions", supp, d).returncode, 0, "1KB = 1000 B")
    eq(hd("check", "--max-leaked", "0.9KB", "--suppressions", supp, d).returncode, 1, "0.9KB = 900 B")
    # Patterns: file names and modules match too; * wildcards.
    for pat in ("leak:leaky.c", "leak:intentional_*", "leak:*cache"):
        with open(supp, "w") as f:
            f.write(pat + "\n")
        p = hd("check", "--max-leaked", "0", "--suppressions", supp, d)
        eq(p.returncode, 0 if pat == "leak:leaky.c" else 1, f"pattern {pat}")
    p = hd("check", "--max-leaked", "0", "--gen-suppressions", d)
    check("leak:known_leak\nleak:intentional_cache\n" in p.stdout, p.stdout)


@test
def check_usage_errors_exit_2():
    d, _ = leaky_run()
    for args, msg in [(["check", d], "no budget: give --max-leaked, --max-growth, --max-growth-per-site, --max-peak or --baseline"),
                      (["check", "--max-leaked", "lots", d], "--max-leaked takes a size such as 100KiB or 2MB, not 'lots'"),
                      (["check", "--max-leaked", "1"], "expected snapshot files or a directory of them"),
                      (["check", "--format", "xml", "--max-leaked", "1", d], "--format must be text, json, junit, sarif or github, not 'xml'")]:
        p = hd(*args)
        eq(p.returncode, 2, f"exit status of {args}")
        eq(p.stderr.splitlines()[0], f"heapdelta: {msg}", f"message of {args}")
    bad = os.path.join(d, "bad.supp")
    with open(bad, "w") as f:
        f.write("leak:ok\nthis is not a suppression\n")
    p = hd("check", "--max-leaked", "1", "--suppressions", bad, d)
    eq(p.returncode, 2, "bad suppression file")
    eq(p.stderr.strip(), f"heapdelta: '{bad}': line 2: expected 'leak:PATTERN', got 'this is not a suppression'", "message")
    p = hd("check", "--max-growth", "1", d)
    eq(p.returncode, 2, "growth with one snapshot")


@test
def a_baseline_passes_the_same_build_and_names_only_a_new_site():
    d1, _ = leaky_run()
    base = os.path.join(d1, "heap.baseline")
    p = hd("check", "--write-baseline", base, d1)
    eq(p.returncode, 0, f"write baseline: {p.stderr}")
    eq(len([l for l in open(base) if not l.startswith("#")]), 2, "two sites in the baseline")
    d2, _ = leaky_run()           # the same build, another run (other addresses)
    p = hd("check", "--baseline", base, d2)
    eq(p.returncode, 0, f"unchanged build: {p.stdout}")
    check(all(l.startswith("baseline: unchanged") for l in p.stdout.splitlines() if l.startswith("baseline:")), p.stdout)
    d3, _ = leaky_run("new-leak")
    p = hd("check", "--baseline", base, "--format", "json", d3)
    eq(p.returncode, 1, "a new leaking site fails")
    r = json.loads(p.stdout)
    states = {s["traceback"][0]["function"]: s["baseline"] for s in r["sites"]}
    eq(states, {"known_leak": "unchanged", "intentional_cache": "unchanged", "new_leak": "new"}, "baseline states")
    failing = [s["traceback"][0]["function"] for s in r["sites"] if s["fails"]]
    eq(failing, ["new_leak"], "only the new site fails")
    eq(p.stderr.strip(), "SUMMARY: heapdelta: 1 site over budget, +999 B in 3 allocations", "summary on stderr")
    # A slack covers small growth; a site that grew past it fails as grew.
    p = hd("check", "--baseline", base, "--baseline-slack", "1KB", d3)
    eq(p.returncode, 0, "new site within the slack")


@test
def run_check_keeps_a_failing_programs_status():
    d = tmpdir()
    p = run([HD, "run", "-o", d, "--check", "--max-leaked", "10MB", "--", os.path.join(BIN, "leaky"), "fail"])
    eq(p.returncode, 3, "the program's own status wins")
    check(f"heapdelta: '{os.path.join(BIN, 'leaky')}' itself failed (exit status 3): its status is kept" in p.stderr, p.stderr)
    p = run([HD, "run", "-o", d, "--check", "--max-leaked", "100", "--", os.path.join(BIN, "leaky")])
    eq(p.returncode, 1, "over budget")
    eq(p.stdout, "", "the report stays off the program's stdout")
    check(p.stderr.rstrip().endswith("SUMMARY: heapdelta: 2 sites over budget, +1320 B in 15 allocations"), p.stderr)
    p = run([HD, "run", "-o", d, "--check", "--max-leaked", "10MB", "--", os.path.join(BIN, "leaky")])
    eq(p.returncode, 0, "within budget")
    eq(run([HD, "run", "--max-leaked", "1", "--", "true"]).returncode, 2, "budget without --check")


@test
def growth_budgets_gate_what_grew_between_snapshots():
    d = tmpdir()
    traced([os.path.join(BIN, "grow")], d)
    before, after = snaps_of(d, "api")
    p = hd("check", "--max-growth-per-site", "30000", "--format", "json", before, after)
    eq(p.returncode, 1, "grow_a grew 50000 bytes")
    r = json.loads(p.stdout)
    over = [(s["traceback"][0]["line"], s["growth"]) for s in r["sites"] if "site-growth" in s["fails"]]
    eq(over, [(markers("grow.c")["grow_a"], 50000)], "the site over its budget")
    eq(r["growth"], {"size": 50000 + 21000 + 1000 - 500, "count": 50 + 7 + 4 - 5}, "total growth")
    eq(hd("check", "--max-growth", "80000", before, after).returncode, 0, "total within budget")
    eq(hd("check", "--max-growth", "70000", before, after).returncode, 1, "total over budget")


@test
def junit_and_sarif_reports_validate_against_their_schemas():
    import jsonschema
    d1, _ = leaky_run()
    base = os.path.join(d1, "b")
    hd("check", "--write-baseline", base, d1)
    d2, _ = leaky_run("new-leak")
    junit = os.path.join(d2, "report.xml")
    p = hd("check", "--baseline", base, "--max-leaked", "1", "--format", "junit", "--output", junit, d2)
    eq(p.returncode, 1, "over budget")
    v = run(["xmllint", "--noout", "--schema", os.path.join(ROOT, "tests/data/JUnit.xsd"), junit])
    eq(v.returncode, 0, f"xmllint: {v.stderr}")
    xml = open(junit).read()
    check('tests="4" failures="4"' in xml, "budget and three sites, all failing")
    check('<failure type="baseline-new" message="999 bytes in 3 allocations not freed at exit [new]">' in xml, xml)
    p = hd("check", "--baseline", base, "--format", "sarif", d2)
    eq(p.returncode, 1, "sarif exit status")
    sarif = json.loads(p.stdout)
    schema = json.load(open(os.path.join(ROOT, "tests/data/sarif-schema-2.1.0.json")))
    jsonschema.Draft4Validator(schema).validate(sarif)
    results = sarif["runs"][0]["results"]
    states = sorted((r["baselineState"], r["level"]) for r in results)
    eq(states, [("new", "error"), ("unchanged", "note"), ("unchanged", "note")], "baseline states")
    new = [r for r in results if r["baselineState"] == "new"][0]
    loc = new["locations"][0]["physicalLocation"]
    eq(loc["region"]["startLine"], markers("leaky.c")["new_leak"], "location line")
    check(loc["artifactLocation"]["uri"].endswith("tests/fixtures/leaky.c"), loc)
    eq(len(new["partialFingerprints"]["heapdeltaStack/v1"]), 16, "fingerprint")
    eq(new["stacks"][0]["frames"][0]["location"]["logicalLocations"][0]["fullyQualifiedName"], "new_leak", "stack")


@test
def github_annotations_point_at_the_site():
    d, _ = leaky_run()
    p = run([HD, "check", "--max-leaked", "0", "--format", "github", d], cwd=ROOT)
    eq(p.returncode, 1, "exit status")
    lines = p.stdout.splitlines()
    eq(lines[0], f"::error file=tests/fixtures/leaky.c,line={markers('leaky.c')['known_leak']},title=heapdelta::"
                 "1000 bytes in 10 allocations not freed at exit in known_leak", "annotation")
    eq(lines[-1], "SUMMARY: heapdelta: 2 sites over budget, +1320 B in 15 allocations", "summary")


@test
def the_plain_ci_snippet_writes_a_baseline_then_gates_on_it():
    d = tmpdir()
    script = os.path.join(ROOT, "scripts", "ci", "any-ci.sh")
    env = {**os.environ, "HEAPDELTA": HD, "HEAPDELTA_BASELINE": os.path.join(d, "base")}
    p = run([script, os.path.join(BIN, "leaky")], cwd=d, env=env)
    eq(p.returncode, 0, f"first run writes the baseline: {p.stderr}")
    check(os.path.exists(os.path.join(d, "base")), "baseline written")
    eq(run([script, os.path.join(BIN, "leaky")], cwd=d, env=env).returncode, 0, "unchanged build passes")
    p = run([script, os.path.join(BIN, "leaky"), "new-leak"], cwd=d, env=env)
    eq(p.returncode, 1, "a new leak fails")
    for f in ("report.xml", "report.sarif"):
        check(os.path.getsize(os.path.join(d, "heapdelta-reports", f)) > 0, f)
    eq(run([script, os.path.join(BIN, "leaky"), "fail"], cwd=d, env=env).returncode, 3, "the test's own failure wins")


# ---------------------------------------------------------------------------
# Trends, reports and exports

def slowleak_run():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "slowleak"), "3"], d, "--interval", "0.1")
    eq(p.returncode, 0, "exit status")
    return d, float(p.stdout.split()[1])


@test
def trend_puts_the_steady_leak_first_with_its_true_rate():
    d, rate = slowleak_run()
    r = json.loads(hd("trend", d, "--format", "json", "--limit", "0").stdout)
    check(r["snapshots"] >= 20, f"{r['snapshots']} snapshots")
    marks = markers("slowleak.c")
    sites = {s["line"]: s for s in r["sites"] if s["file"] and s["file"].endswith("slowleak.c")}
    first = r["sites"][0]
    eq((os.path.basename(first["file"] or ""), first["line"]), ("slowleak.c", marks["leak"]), "the leak ranks first")
    check(abs(first["rate"] - rate) <= 0.1 * rate, f"rate {first['rate']:.0f} B/s, true {rate:.0f} B/s")
    check(first["steadiness"] > 0.9, f"steadiness {first['steadiness']}")
    cache, noise = sites[marks["cache"]], sites[marks["noise"]]
    check(cache["plateaued"], "the cache plateaued")
    check(not first["plateaued"], "the leak did not")
    check(cache["score"] < first["score"] / 10 and noise["score"] < first["score"] / 10,
          f"scores: leak {first['score']:.0f}, cache {cache['score']:.0f}, noise {noise['score']:.0f}")
    text = hd("trend", d, "--limit", "1").stdout.splitlines()
    check(re.match(rf"^{re.escape(os.path.join(FIX, 'slowleak.c'))}:{marks['leak']}: \+\d+(\.\d)? (B|KiB)/s, steady \d+%, "
                   rf"\+\d+(\.\d)? (B|KiB|MiB) over \d+\.\d s, size=\S+ \S+ ?[\u2581-\u2588]+$", text[1]), text[1])


@test
def collapsed_stacks_feed_flame_graphs():
    d = tmpdir()
    traced([os.path.join(BIN, "grow")], d)
    before, after = snaps_of(d, "api")
    exit_snap = snaps_of(d, "exit")[0]
    lines = hd("top", exit_snap, "--format", "collapsed").stdout.splitlines()
    total = top_json(exit_snap)["total"]["size"]
    eq(sum(int(l.rsplit(" ", 1)[1]) for l in lines), total, "the stacks add up to the total")
    check(any(l.endswith(";main;add_records;make_record 1000") for l in lines), "the inlined frame is a frame of its own")
    check(all(l.startswith("_start;") or ";" not in l for l in lines), lines[:3])
    diff = hd("diff", before, after, "--format", "collapsed").stdout.splitlines()
    check(all(len(l.rsplit(" ", 2)) == 3 for l in diff), "two columns for a diff")
    grow_a = [l for l in diff if l.endswith(" 0 50000")]
    eq(len(grow_a), 1, f"grow_a's stack went from 0 to 50000: {diff}")


@test
def pprof_profiles_decode_against_profile_proto():
    d = tmpdir()
    traced([os.path.join(BIN, "grow")], d)
    snap = snaps_of(d, "exit")[0]
    out = os.path.join(d, "heap.pb.gz")
    eq(hd("top", snap, "--format", "pprof", "--output", out).returncode, 0, "exit status")
    raw = subprocess.run(["gzip", "-dc", out], capture_output=True).stdout
    p = subprocess.run(["protoc", "--decode=perftools.profiles.Profile", f"--proto_path={os.path.join(ROOT, 'analyzer')}",
                        "profile.proto"], input=raw, capture_output=True)
    eq(p.returncode, 0, f"protoc --decode: {p.stderr}")
    text = p.stdout.decode()
    strings = re.findall(r'^string_table: "(.*)"$', text, re.M)
    eq(strings[0], "", "string_table[0]")
    types = [(strings[int(t)], strings[int(u)]) for t, u in re.findall(r"sample_type \{\n  type: (\d+)\n  unit: (\d+)", text)]
    eq(types, [("alloc_objects", "count"), ("alloc_space", "bytes"), ("inuse_objects", "count"), ("inuse_space", "bytes")],
       "sample types")
    samples = re.findall(r"sample \{\n((?:  location_id: \d+\n)+)((?:  value: -?\d+\n){4})\}", text)
    inuse = sum(int(re.findall(r"value: (-?\d+)", v)[3]) for _, v in samples)
    eq(inuse, top_json(snap)["total"]["size"], "inuse_space adds up to the total")
    # The inlined allocation: one location, two lines (make_record, then add_records).
    fn_names = {m[0]: strings[int(m[1])] for m in re.findall(r"function \{\n  id: (\d+)\n  name: (\d+)", text)}
    locs = re.findall(r"location \{\n  id: \d+\n  mapping_id: \d+\n  address: \d+\n((?:  line \{\n    function_id: \d+\n    line: \d+\n  \}\n)+)", text)
    inline = [[fn_names[f] for f in re.findall(r"function_id: (\d+)", l)] for l in locs]
    check(["make_record", "add_records"] in inline, f"inline chain in one location: {inline[:5]}")
    info = json.loads(hd("info", "--format", "json", snap).stdout)[0]
    check(info["modules"][0]["build_id"] in strings, "the executable's build-id is in its mapping")


CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0", "--window-size=1200,2000", "--virtual-time-budget=5000"]


def browser(html, fragment="", screenshot=None):
    """Load html in headless Chromium; return the rendered DOM and the
    console messages."""
    if not shutil.which("chromium"):
        raise Failure("chromium is not installed (scripts/deps.sh test installs it)")
    profile = tmpdir()
    url = "file://" + html + fragment
    args = ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    dom = run([*args, "--dump-dom", url], timeout=120)
    if screenshot:
        run([*args, f"--screenshot={screenshot}", url], timeout=120)
    console = [l for l in dom.stderr.splitlines() if ":CONSOLE" in l]
    return dom.stdout, console


@test
def the_html_report_renders_in_a_real_browser_without_errors():
    d, _ = slowleak_run()
    html = os.path.join(d, "report.html")
    p = hd("report", d, "-o", html)
    eq(p.returncode, 0, f"report: {p.stderr}")
    page = open(html).read()
    check(not re.search(r"(src|href)=[\"']?(https?:)?//", page), "nothing fetched from the network")
    shot = os.path.join(d, "report.png")
    dom, console = browser(html, "#search-live=main&expand=0&zoom-growth=main", shot)
    eq(console, [], "console messages")
    body = re.search(r"<body[^>]*>", dom).group(0)
    check('data-ready="1"' in body and "data-error" not in body, f"the page's script ran to the end: {body}")
    sites = len(re.findall(r'<tr class="site"', dom))
    eq(sites, len(json.loads(hd("trend", d, "--format", "json", "--limit", "0").stdout)["sites"]), "a row per site")
    check(re.search(r'<tr class="stack"><td colspan="6">main  ' + re.escape(os.path.join(FIX, "slowleak.c")), dom),
          "the first row expanded to its stack")
    check(len(re.findall(r"<polygon", dom)) >= 3, "stacked areas in the chart")
    check('class="f hit"' in dom, "search highlights frames")
    check(re.search(r"matched: \d", dom), "search reports what it matched")
    check(os.path.getsize(shot) > 20000, "a screenshot was taken")


@test
def a_report_of_a_thousand_snapshots_and_ten_thousand_sites_opens_in_seconds():
    d = tmpdir()
    run([sys.executable, os.path.join(ROOT, "tests", "gen_snapshots.py"), d, "1000", "10000"], timeout=300)
    html = os.path.join(d, "big.html")
    t0 = time.time()
    p = hd("report", d, "-o", html, timeout=300)
    build = time.time() - t0
    eq(p.returncode, 0, f"report: {p.stderr}")
    check(os.path.getsize(html) < 8 << 20, f"page size {os.path.getsize(html)} bytes")
    t0 = time.time()
    dom, console = browser(html)
    load = time.time() - t0
    eq(console, [], "console messages")
    check('data-ready="1"' in dom, "rendered")
    ms = int(re.search(r'data-ms="(\d+)"', dom).group(1))
    check(load < 10 and ms < 3000, f"browser run {load:.1f} s, page ready after {ms} ms")
    print(f"  (1000 snapshots x 10000 sites: report built in {build:.1f} s, {os.path.getsize(html) >> 10} KiB, "
          f"browser run {load:.1f} s, page ready after {ms} ms)")


# ---------------------------------------------------------------------------
# Usage and bad input

@test
def usage_errors_exit_2_with_one_line_and_the_usage():
    for args, msg in [(["top"], "expected 1 snapshot file, got 0"),
                      (["diff", "a"], "expected 2 snapshot files, got 1"),
                      (["top", "--by", "nope", "x"], "--by must be lineno, filename, function or traceback, not 'nope'"),
                      (["top", "--frob", "x"], "unknown option '--frob'"),
                      (["top", "--cumulative", "--by", "traceback", "x"], "--cumulative cannot be used with --by traceback"),
                      (["run"], "no command to run"),
                      (["run", "--depth", "0", "--", "true"], "--depth takes 1 to 256, not '0'")]:
        p = hd(*args)
        eq(p.returncode, 2, f"exit status of {args}")
        lines = p.stderr.splitlines()
        eq(lines[0], f"heapdelta: {msg}", f"message for {args}")
        eq(len(lines), 2, f"message and usage for {args}")
        check(lines[1].startswith("usage: heapdelta "), lines[1])
    p = hd("frobnicate")
    eq(p.returncode, 2, "unknown command")
    check(p.stderr.startswith("heapdelta: unknown command 'frobnicate'\n"), p.stderr)


@test
def help_describes_every_command_and_option():
    for cmd in ("top", "diff", "run", "info", "leaks", "check", "trend", "report"):
        a, b = hd("help", cmd), hd(cmd, "--help")
        eq(a.returncode, 0, f"help {cmd}")
        eq(a.stdout, b.stdout, f"help {cmd} == {cmd} --help")
        check(a.stdout.startswith("usage: heapdelta " + cmd), a.stdout)
    text = hd("help", "top").stdout
    for opt in ("--by", "--cumulative", "--limit", "--include", "--exclude", "--all-frames",
                "--module", "--focus", "--ignore", "--format"):
        check(opt in text, f"top --help mentions {opt}")
    check("once per stack" in text, "--help says where --cumulative differs from tracemalloc")
    eq(hd("--help").returncode, 0, "heapdelta --help")


@test
def bad_snapshot_files_get_one_line_and_exit_2():
    d = tmpdir()
    traced([os.path.join(BIN, "sites")], d)
    good = open(snaps_of(d, "exit")[0], "rb").read()
    cases = {
        "empty": b"",
        "random": os.urandom(3000),
        "magic": b"NOTASNAP" + good[8:],
        "future": good[:8] + (99).to_bytes(4, "little") + good[12:],
        "trailing": good + b"x",
    }
    for cut in (1, 8, 15, 16, 40, len(good) // 3, len(good) // 2, len(good) - 17, len(good) - 1):
        cases[f"cut{cut}"] = good[:cut]
    # A count pointing past the end: the first section's length, made huge.
    cases["count"] = good[:24] + (1 << 40).to_bytes(8, "little") + good[32:]
    for name, data in cases.items():
        path = os.path.join(d, f"bad-{name}.snap")
        with open(path, "wb") as f:
            f.write(data)
        for cmd in (["top", path], ["diff", path, path], ["info", path]):
            p = hd(*cmd)
            eq(p.returncode, 2, f"exit status of {cmd[0]} on {name}")
            lines = p.stderr.splitlines()
            eq(len(lines), 1, f"one line for {name}: {p.stderr!r}")
            check(lines[0].startswith(f"heapdelta: '{path}': byte "), f"{name}: {lines[0]}")
    p = hd("top", os.path.join(d, "missing.snap"))
    eq(p.returncode, 2, "missing file")
    check(p.stderr.startswith("heapdelta: cannot open"), p.stderr)


def stacks_header_offset(path):
    """File offset of the STACKS section header in a snapshot."""
    data = open(path, "rb").read()
    off = 16
    while off < len(data):
        tag, _, length = struct.unpack_from("<IIQ", data, off)
        if tag == 4:
            return off
        off += 16 + length
    raise Failure("no STACKS section")


@test
def a_field_patched_across_a_buffer_flush_is_written_whole():
    # The writer fills in the STACKS section's length after the stacks; put
    # that field across the 256 KiB buffer boundary with a long argv.  (The
    # sites fixture's section is longer than 255 bytes: the length's second
    # byte is not zero.)
    prog = os.path.join(BIN, "sites")
    d = tmpdir()
    base = ["x" * 100000, "y" * 100000]
    traced([prog, *base], d)
    first = stacks_header_offset(snaps_of(d, "exit")[0])
    pad = (256 << 10) - (first + 8) - 1          # one byte of the length before the boundary, seven after
    check(0 < pad < 100000, f"pad {pad}")
    d2 = tmpdir()
    traced([prog, *base, "z" * (pad - 4)], d2)   # one more string: 4 bytes of length + its bytes
    snap = snaps_of(d2, "exit")[0]
    eq(stacks_header_offset(snap) + 8, (256 << 10) - 1, "the length field straddles the boundary")
    p = hd("info", snap)
    eq(p.returncode, 0, f"the snapshot reads back: {p.stderr}")
    data = open(snap, "rb").read()
    length = struct.unpack_from("<Q", data, stacks_header_offset(snap) + 8)[0]
    check(length > 255, f"section length {length}")


@test
def snapshots_never_overwrite_and_never_follow_links():
    d = tmpdir()
    # A planted symlink at the temporary name of the next snapshot of a
    # process is not followed: pid is unknown in advance, so plant one for
    # every sequence of a process we control: run once to learn nothing
    # else is written through it.
    target = os.path.join(d, "victim")
    with open(target, "w") as f:
        f.write("precious")
    p = subprocess.Popen([os.path.join(BIN, "triggers"), "0.5"],
                         env={**os.environ, "LD_PRELOAD": SHIM, "HEAPDELTA_OUT": d},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Plant links for this pid's exit snapshot under its final and temporary names.
    for seq in range(1, 6):
        for name in (f".heapdelta.{p.pid}.{seq}.exit.tmp", f"heapdelta.{p.pid}.{seq}.exit.snap"):
            try:
                os.symlink(target, os.path.join(d, name))
            except FileExistsError:
                pass
    p.communicate(timeout=30)
    eq(open(target).read(), "precious", "the link target is untouched")
    exits = [s for s in snaps_of(d, "exit") if not os.path.islink(s)]
    eq(len(exits), 1, f"one exit snapshot under a free name: {os.listdir(d)}")


def load_areas():
    """Import the area files tests/e2e_*.py: each does `from e2e import *`
    and registers its tests with @test, after the ones above."""
    import importlib
    sys.modules.setdefault("e2e", sys.modules[__name__])
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "e2e_*.py"))):
        importlib.import_module(os.path.basename(path)[:-3])


def main():
    load_areas()
    only = sys.argv[sys.argv.index("-k") + 1] if "-k" in sys.argv else None
    passed = failed = 0
    for fn in TESTS:
        if only and only not in fn.__name__:
            continue
        name = fn.__name__.replace("_", " ")
        t0 = time.time()
        try:
            fn()
        except Exception as e:  # a failing test reports and the run goes on
            failed += 1
            detail = str(e) if isinstance(e, Failure) else traceback.format_exc()
            print(f"FAIL - e2e: {name}\n  {detail}")
        else:
            passed += 1
            print(f"ok - e2e: {name} ({time.time() - t0:.1f}s)")
        sys.stdout.flush()
    print(f"# {passed} passed, {failed} failed")
    for d in TMPS:
        shutil.rmtree(d, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
