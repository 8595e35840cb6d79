"""End-to-end tests: real programs behave exactly as without the shim, and
what heapdelta counts agrees with glibc's own allocation log (mtrace).

python3, sqlite3, perl, gcc and the fixtures: same output and status; the
CFI unwinder against libunwind frame for frame; the frame-pointer unwinder
on a program built without frame pointers; a program linked against
jemalloc.
"""
from e2e import *


@test
def cpp_program_output_is_identical_under_the_shim():
    plain = run([os.path.join(BIN, "sites_cpp")])
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "sites_cpp")], d)
    eq(p.stdout, plain.stdout, "stdout")
    eq(p.returncode, plain.returncode, "exit status")


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
    progs = {snap_info(s)["exe"].split("/")[-1] for s in snaps_of(out, "exit")}
    check("cc1" in progs, f"cc1 (a child of gcc) was traced: {progs} {names}")


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
            info = snap_info(s)
            eq(info["unwinder"], "cfi", "default unwinder")
            checked += info["unwind_checked"]
            mismatched += info["unwind_mismatches"]
        check(checked > 1000, f"{cmd[0]}: only {checked} stacks compared")
        eq(mismatched, 0, f"{cmd[0]}: stacks that differ from libunwind's (of {checked})")


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



@test
def sampled_mode_through_jemalloc_takes_out_what_it_recorded():
    # With another allocator every free goes through the shim's general
    # path; in sampled mode the address filter spares the unrecorded ones
    # the map, and a recorded block must still leave it (the small site
    # frees half its blocks: counted twice, the estimate would double).
    prog = os.path.join(BIN, "sampling_jemalloc")
    check("libjemalloc" in run(["ldd", prog]).stdout, "sampling_jemalloc uses jemalloc")
    plain = run([prog])
    d = tmpdir()
    p, _ = traced([prog], d, "--sample", "16KiB")
    eq((p.returncode, p.stdout), (plain.returncode, plain.stdout), "status and output")
    snap = snaps_of(d, "exit")[0]
    r = top_json(snap)
    eq(r["snapshot"]["sampled"], 16384, "the snapshot holds estimates")
    check_estimates(r, "sampling.c", expectations(p.stdout))
    check_gone(r, "sampling.c")
    info = snap_info(snap)
    eq(info["flags"] & 1, 1, "the snapshot says malloc is not glibc's")

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
