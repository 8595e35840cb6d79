"""End-to-end tests: allocation wrappers are looked through.

The site is the line that asked for memory, not the wrapper it asked
through: an xmalloc-style wrapper in the executable, a g_malloc-style one in
a shared library, glibc's own (strdup, asprintf, fopen and fprintf's buffer,
getline, realpath), each exact at the fixture's calling line; the wrapper
frames still in the traceback; a wrapper nobody named, looked through with
--alloc-fn from the command line, the environment or a file, in top, diff,
trend, leaks and check --baseline; the hint that names it; bad expressions;
and Debian's redis-server under redis-benchmark, sited at redis's own
functions rather than zmalloc.
"""
import socket

from e2e import *

SRC = "wrappers.c"
POOL = ["pool_a", "pool_b", "pool_c", "pool_d", "pool_e"]
CALLED = ["xmalloc", "xmalloc_loop", "g_malloc", "g_strdup", "strdup", "asprintf", "fprintf", "getline", "realpath"]

_RUN = {}


def wrappers_run():
    """One traced run of the fixture (shared by the tests): its output
    directory, expectations, per-round pool figures and snapshots."""
    if not _RUN:
        d = tmpdir()
        p, snaps = traced([os.path.join(BIN, "wrappers"), d], os.path.join(d, "snaps"))
        eq(p.returncode, 0, f"fixture exit status (stderr: {p.stderr})")
        rounds = {}
        for line in p.stdout.splitlines():
            parts = line.split()
            if parts and parts[0] == "round":
                rounds[(parts[1], int(parts[2]))] = (int(parts[3]), int(parts[4]))
        apis = snaps_of(os.path.join(d, "snaps"), "api")
        eq(len(apis), 4, "API snapshots, one per round")
        _RUN.update(dir=d, snapdir=os.path.join(d, "snaps"), exp=expectations(p.stdout), rounds=rounds,
                    apis=apis, exit=snaps_of(os.path.join(d, "snaps"), "exit")[0])
    return _RUN


def pick(exp, names):
    return {k: exp[k] for k in names}


def glibc_file_size(r, site):
    """What glibc's __fopen_internal allocated for the FILE of the fopen at
    `site`, as the report without the built-in list shows it (no header
    gives sizeof(struct locked_FILE))."""
    line = markers(SRC)[site]
    st = [s for s in top_json(r["exit"], "--no-default-alloc-fns", "--by", "traceback")["stats"]
          if s["traceback"][0]["function"] == "__fopen_internal" and s["traceback"][1]["line"] == line]
    eq(len(st), 1, f"glibc's stack of the fopen at line {line}")
    return st[0]["size"], st[0]["count"]


@test
def every_site_through_a_known_wrapper_is_the_calling_line_exactly():
    r = wrappers_run()
    exp = dict(pick(r["exp"], CALLED))
    for site in ("fopen", "fopen_read"):
        exp[site] = glibc_file_size(r, site)
        check(exp[site][0] >= 216, f"a FILE is at least sizeof(FILE): {exp[site]}")
    report = top_json(r["exit"])
    sites = check_sites(report, SRC, exp)
    # Nothing is left at a wrapper's line or in glibc's sources.
    check_sites(report, SRC, {"xmalloc_inner": (0, 0)})
    eq([s["key"] for s in report["stats"] if s["file"] and not s["file"].startswith("/")], [], "sites in glibc")
    eq([s["key"] for s in report["stats"] if s["file"] and s["file"].endswith("gwrap.c")], [], "sites in gwrap.c")
    m = markers(SRC)
    eq(sites[m["xmalloc"]]["wrapper_frames"], 1, "xmalloc's frame before the site")
    eq(sites[m["g_strdup"]]["wrapper_frames"], 2, "g_malloc's and g_strdup's frames before the site")
    eq(sites[m["strdup"]]["function"], "main", "site function of strdup")
    # Without the built-in list, the wrappers' own lines, exact.
    bare = top_json(r["exit"], "--no-default-alloc-fns")
    check_sites(bare, SRC, {"xmalloc_inner": r["exp"]["xmalloc_inner"], "xmalloc": (0, 0), "strdup": (0, 0)})
    check_sites(bare, "gwrap.c", pick(r["exp"], ["g_malloc_inner"]))
    check(any(s["file"] == "./string/strdup.c" for s in bare["stats"]), "strdup.c is a site without the list")


@test
def traceback_view_still_shows_the_wrapper_frames():
    r = wrappers_run()
    m, gm = markers(SRC), markers("gwrap.c")
    src, gsrc = os.path.join(FIX, SRC), os.path.join(FIX, "gwrap.c")
    tb = top_json(r["exit"], "--by", "traceback", "--include", f"{src}:{m['g_strdup']}")["stats"]
    eq(len(tb), 1, "one traceback for the g_strdup line")
    eq([(f["function"], f["line"]) for f in tb[0]["traceback"][:3]],
       [("g_malloc", gm["g_malloc_inner"]), ("g_strdup", tb[0]["traceback"][1]["line"]), ("main", m["g_strdup"])],
       "g_strdup's traceback")
    out = hd("top", r["exit"], "--by", "traceback", "--include", f"{src}:{m['xmalloc']}").stdout.splitlines()
    eq(out[:5], [f"{src}:{m['xmalloc']}: size=200 B, count=1, average=200 B",
                 f'  File "{src}", line {m["xmalloc_inner"]}, in xmalloc (allocation wrapper)',
                 "    void *p = malloc(n); /* @site xmalloc_inner */",
                 f'  File "{src}", line {m["xmalloc"]}, in main',
                 "    kept(xmalloc(200)); /* @site xmalloc */"], "xmalloc's traceback text")
    # leaks shows the stack from the wrapper, marked, then the caller
    # (whatever the block's kind of reachability).
    text = hd("leaks", "--show-kinds", "all", r["exit"]).stdout.splitlines()
    i = [k for k, line in enumerate(text)
         if re.fullmatch(r"(Direct leak of |Indirect leak of |Possible leak of |Still reachable: )200 byte\(s\) in 1 object\(s\) "
                         r"allocated from:|200 bytes in 1 allocations not freed at exit, allocated from:", line)][0]
    check(re.fullmatch(rf"    #0 0x[0-9a-f]+ in xmalloc {re.escape(src)}:{m['xmalloc_inner']} \(allocation wrapper\)",
                       text[i + 1]), text[i + 1])
    check(frame_line_re(1, "main", SRC, "xmalloc").match(text[i + 2]), text[i + 2])
    check(any(gsrc in line and "(allocation wrapper)" in line for line in text), "g_malloc marked in leaks")


def pool_expected(r):
    return pick(r["exp"], POOL)


@test
def a_wrapper_nobody_named_is_the_site_until_alloc_fn_names_it():
    r = wrappers_run()
    pool = pool_expected(r)
    nothing = {k: (0, 0) for k in POOL}
    # Without options: pool_alloc's own line holds every block.
    check_sites(top_json(r["exit"]), SRC, {"pool_alloc": r["exp"]["pool_alloc"], **nothing})
    ways = {
        "the command line": (["--alloc-fn", "pool_alloc"], None, None),
        "two options": (["--alloc-fn", "nothing_here", "--alloc-fn", "pool_.*"], None, None),
        "the environment": ([], {"HEAPDELTA_ALLOC_FNS": "nothing_here:pool_alloc"}, None),
        "the default file": ([], None, "# our wrappers\npool_alloc\n"),
        "--alloc-fns-file": (["--alloc-fns-file", os.path.join(r["dir"], "team-alloc-fns")], None, None),
    }
    with open(os.path.join(r["dir"], "team-alloc-fns"), "w") as f:
        f.write("nothing_here\n\npool_alloc\n")
    for way, (args, env, default_file) in ways.items():
        cwd = tmpdir()
        if default_file:
            with open(os.path.join(cwd, ".heapdelta-alloc-fns"), "w") as f:
                f.write(default_file)
        p = run([HD, "top", r["exit"], "--limit", "0", "--format", "json", *args],
                env={**os.environ, **(env or {})}, cwd=cwd)
        eq(p.returncode, 0, f"top with {way} (stderr: {p.stderr})")
        report = json.loads(p.stdout)
        check_sites(report, SRC, {**pool, "pool_alloc": (0, 0)})
        eq(report["wrapper_hint"], None, f"no hint once pool_alloc is named ({way})")


@test
def alloc_fn_moves_the_sites_of_diff_trend_leaks_and_check_baseline():
    r = wrappers_run()
    m = markers(SRC)
    src = os.path.join(FIX, SRC)
    opt = ["--alloc-fn", "pool_alloc"]
    # diff: the first round's snapshot against the last one's.
    d = json.loads(hd("diff", r["apis"][0], r["apis"][3], "--limit", "0", "--format", "json", *opt).stdout)
    got = {s["line"]: (s["size"], s["count"], s["size_diff"], s["count_diff"]) for s in d["stats"] if s["file"] == src}
    want = {m[k]: (r["rounds"][(k, 4)] + (r["rounds"][(k, 4)][0] - r["rounds"][(k, 1)][0], 3)) for k in POOL}
    eq(got, want, "diff of the pool's callers")
    # trend: every snapshot of the process, each caller's series exact.
    t = json.loads(hd("trend", r["snapdir"], "--limit", "0", "--format", "json", *opt).stdout)
    series = {s["line"]: [b for _, b in s["series"]] for s in t["sites"] if s["file"] == src and s["line"] in
              [m[k] for k in POOL + ["pool_alloc"]]}
    eq(series, {m[k]: [r["rounds"][(k, i)][0] for i in (1, 2, 3, 4)] + [r["exp"][k][0]] for k in POOL},
       "trend series of the pool's callers")
    plain = json.loads(hd("trend", r["snapdir"], "--limit", "0", "--format", "json").stdout)
    eq([s["line"] for s in plain["sites"] if s["file"] == src and s["line"] in [m[k] for k in POOL]], [],
       "without --alloc-fn trend ranks pool_alloc's line, not its callers")
    # leaks: the callers' lines, with pool_alloc's frame first.
    lk = json.loads(hd("leaks", r["exit"], "--format", "json", *opt).stdout)
    got = {s["line"]: (s["size"], s["count"]) for s in lk["sites"] if s["file"] == src and s["line"] in
           [m[k] for k in POOL + ["pool_alloc"]]}
    eq(got, {m[k]: r["exp"][k] for k in POOL}, "leaks of the pool's callers")
    check(all(s["traceback"][0]["function"] == "pool_alloc" and s["wrapper_frames"] == 1
              for s in lk["sites"] if s["line"] in [m[k] for k in POOL]), "pool_alloc's frame before each site")
    # Suppressions match every frame, the wrapper's too (as LeakSanitizer's).
    supp = os.path.join(r["dir"], "supp")
    with open(supp, "w") as f:
        f.write("leak:^pool_alloc$\n")
    lk = json.loads(hd("leaks", r["exit"], "--format", "json", "--suppressions", supp, *opt).stdout)
    eq(sorted((s["line"], s["suppressed_by"]) for s in lk["sites"] if s["line"] in [m[k] for k in POOL]),
       sorted((m[k], "^pool_alloc$") for k in POOL), "the pool's callers suppressed through pool_alloc's frame")
    # check --baseline: a baseline written with the option passes with it.
    base = os.path.join(r["dir"], "with.baseline")
    eq(hd("check", "--write-baseline", base, r["exit"], *opt).returncode, 0, "write the baseline")
    lines = open(base).read().splitlines()
    for fn, k in zip(["make_user", "make_group", "make_session", "make_token", "make_cache"], POOL):
        check(any(l.endswith(f" {r['exp'][k][0]} {r['exp'][k][1]} {fn} {src}:{m[k]}") for l in lines),
              f"{fn} in the baseline: {lines}")
    p = hd("check", "--baseline", base, r["exit"], *opt)
    eq(p.returncode, 0, f"check against it: {p.stdout}")
    states = [l.split()[1:4] for l in p.stdout.splitlines() if l.startswith("baseline:")]
    # (paths below the current directory are shown relative to it)
    check(any(s[:2] == ["unchanged", "make_cache"] and s[2].endswith(f"{SRC}:{m['pool_e']}:") for s in states),
          f"make_cache unchanged: {states}")
    check(all(s[0] == "unchanged" for s in states), f"every site unchanged: {states}")
    # The same reports when the name comes from the environment or a file.
    clean, with_file = tmpdir(), tmpdir()
    with open(os.path.join(with_file, ".heapdelta-alloc-fns"), "w") as f:
        f.write("pool_alloc\n")
    for args in (["diff", r["apis"][0], r["apis"][3], "--format", "json"], ["trend", r["snapdir"], "--format", "json"],
                 ["leaks", r["exit"], "--format", "json"], ["check", "--baseline", base, r["exit"], "--format", "json"]):
        want = run([HD, *args, *opt], cwd=clean)
        for way, env, cwd in (("environment", {"HEAPDELTA_ALLOC_FNS": "pool_alloc"}, clean), ("file", {}, with_file)):
            got = run([HD, *args], env={**os.environ, **env}, cwd=cwd)
            eq((got.returncode, got.stdout), (want.returncode, want.stdout), f"{args[0]} with the name from the {way}")
    # Naming a wrapper moves its sites: a baseline from before is one
    # re-baseline away (the callers new, pool_alloc's line gone).
    old = os.path.join(r["dir"], "without.baseline")
    eq(hd("check", "--write-baseline", old, r["exit"]).returncode, 0, "write the old baseline")
    p = hd("check", "--baseline", old, r["exit"], *opt)
    eq(p.returncode, 1, "the old baseline fails")
    states = [l.split()[1:3] for l in p.stdout.splitlines() if l.startswith("baseline:")]
    eq(sorted(s[1] for s in states if s[0] == "new"),
       sorted(["make_user", "make_group", "make_session", "make_token", "make_cache"]), "new sites")
    eq([s[1] for s in states if s[0] == "gone"], ["pool_alloc"] * 5, "gone sites (pool_alloc from each caller)")


@test
def run_check_looks_through_the_wrapper_alloc_fn_names():
    d = tmpdir()
    p = run([HD, "run", "-o", os.path.join(d, "snaps"), "--check", "--max-leaked", "1", "--alloc-fn", "pool_alloc",
             "--format", "json", "--output", os.path.join(d, "gate.json"), "--", os.path.join(BIN, "wrappers"), d])
    eq(p.returncode, 1, f"over budget: {p.stderr}")
    exp, m = expectations(p.stdout), markers(SRC)
    gate = json.load(open(os.path.join(d, "gate.json")))
    got = {s["line"]: (s["size"], s["count"]) for s in gate["sites"] if s["file"] == os.path.join(FIX, SRC)
           and s["line"] in [m[k] for k in POOL + ["pool_alloc"]]}
    eq(got, {m[k]: exp[k] for k in POOL}, "the gate's sites of the pool's callers")


@test
def a_python_function_named_by_alloc_fn_is_looked_through_too():
    d = tmpdir()
    p, _ = traced(["/usr/bin/python3.11", os.path.join(FIX, "pyalloc.py"), "heapdelta"], d)
    eq(p.returncode, 0, f"pyalloc.py: {p.stderr}")
    snap = snaps_of(d, "api")[0]

    def by_function(*args):
        r = top_json(snap, "--by", "function", "--include", "*pyalloc.py", *args)
        return {s["key"]: (s["size"], s["count"]) for s in r["stats"]}

    before, after = by_function(), by_function("--alloc-fn", "square")
    check("square" in before and "square" not in after, f"square's entry: {before.get('square')}")
    t0 = before.get("through_builtin", (0, 0))
    eq(after["through_builtin"], (t0[0] + before["square"][0], t0[1] + before["square"][1]),
       "square's bytes and blocks at the line that maps it")


@test
def the_hint_names_a_likely_wrapper_and_not_in_a_program_without_one():
    r = wrappers_run()
    report = top_json(r["exit"])
    pool = r["exp"]["pool_alloc"][0]
    eq(report["wrapper_hint"], {"function": "pool_alloc", "size": pool, "callers": 5, "alloc_fn": "pool_alloc"},
       "the hint in JSON")
    hint = (f"Hint: {100 * pool // report['total']['size']}% of these bytes are allocated in pool_alloc, called from "
            f"5 places; if it allocates for its callers, --alloc-fn 'pool_alloc' makes them the sites")
    eq(hd("top", r["exit"]).stdout.splitlines()[-1], hint, "the last line of top")
    leaks = hd("leaks", r["exit"]).stdout.splitlines()
    eq(leaks[-2], hint, "the hint above the summary of leaks")
    check(leaks[-1].startswith("SUMMARY: "), leaks[-1])
    eq(json.loads(hd("leaks", r["exit"], "--format", "json").stdout)["wrapper_hint"]["function"], "pool_alloc",
       "the hint in leaks' JSON")
    # Named, or in a program without a wrapper: no hint.
    check("Hint:" not in hd("top", r["exit"], "--alloc-fn", "pool_alloc").stdout, "no hint once named")
    for prog in ("sites", "leaky"):
        d = tmpdir()
        traced([os.path.join(BIN, prog)], d)
        snap = snaps_of(d, "exit")[0]
        for args in (["top", snap], ["leaks", snap], ["check", "--max-leaked", "1", snap]):
            p = hd(*args)
            check("Hint:" not in p.stdout, f"{prog}: no hint in {args[0]}: {p.stdout}")
        eq(top_json(snap)["wrapper_hint"], None, f"{prog}: no hint in JSON")


@test
def bad_alloc_fn_expressions_are_usage_errors():
    r = wrappers_run()
    for cmd in (["top", r["exit"]], ["diff", r["exit"], r["exit"]], ["leaks", r["exit"]],
                ["check", "--max-leaked", "1", r["exit"]], ["trend", r["snapdir"]],
                ["report", "-o", os.path.join(r["dir"], "r.html"), r["snapdir"]],
                ["run", "--check", "--max-leaked", "1", "--", "true"]):
        p = hd(*cmd[:1], "--alloc-fn", "(", *cmd[1:])
        eq(p.returncode, 2, f"{cmd[0]} --alloc-fn '(': exit status")
        lines = p.stderr.splitlines()
        eq(lines[0], "heapdelta: --alloc-fn: invalid regular expression '('", f"{cmd[0]}: message")
        eq(len(lines), 2, f"{cmd[0]}: message and usage")
        check(f"--alloc-fn REGEX" in hd("help", cmd[0]).stdout, f"help {cmd[0]} describes --alloc-fn")
    p = run([HD, "top", r["exit"]], env={**os.environ, "HEAPDELTA_ALLOC_FNS": "ok:bad["})
    eq((p.returncode, p.stderr), (2, "heapdelta: HEAPDELTA_ALLOC_FNS: invalid regular expression 'bad['\n"),
       "a bad expression in the environment")
    cwd = tmpdir()
    with open(os.path.join(cwd, ".heapdelta-alloc-fns"), "w") as f:
        f.write("ok\n*bad\n")
    p = run([HD, "leaks", r["exit"]], cwd=cwd)
    eq((p.returncode, p.stderr), (2, "heapdelta: '.heapdelta-alloc-fns': line 2: invalid regular expression '*bad'\n"),
       "a bad expression in the file")
    os.mkfifo(os.path.join(cwd, "fifo"))
    p = run([HD, "top", r["exit"], "--alloc-fns-file", "fifo"], cwd=cwd, timeout=20)
    eq((p.returncode, p.stderr),
       (2, "heapdelta: cannot read allocation functions file 'fifo': not a regular file\n"), "a FIFO is refused")
    p = hd("run", "--alloc-fn", "x", "--", "true")
    eq(p.returncode, 2, "run --alloc-fn without --check")
    out = hd("help", "sites").stdout
    for name in ("libc.so.6", "std::.*", "g_(try_)?(malloc|malloc0|realloc)(_n)?", "zmalloc", "sqlite3Malloc",
                 "PyMem_Malloc", "xmalloc", "--alloc-fn", "--no-default-alloc-fns", "HEAPDELTA_ALLOC_FNS"):
        check(name in out, f"help sites names {name}")


# ---- redis ---------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


@test
def redis_sites_are_its_own_functions_that_call_zmalloc():
    server, bench = shutil.which("redis-server"), shutil.which("redis-benchmark")
    check(server and bench, "redis-server and redis-benchmark are test dependencies (scripts/deps.sh test)")
    d = tmpdir()
    data, snaps = os.path.join(d, "data"), os.path.join(d, "snaps")
    os.mkdir(data)
    proc = None
    try:
        for attempt in range(3):
            port = free_port()
            proc = subprocess.Popen([HD, "run", "-o", snaps, "--", server, "--port", str(port), "--bind", "127.0.0.1",
                                     "--save", "", "--appendonly", "no", "--dir", data, "--daemonize", "no"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    start_new_session=True)
            if wait_for_port(port, proc, 30):
                break
            proc.kill()
            proc.wait(timeout=30)
            proc = None
        check(proc is not None, "redis-server never listened")
        b = run([bench, "-h", "127.0.0.1", "-p", str(port), "-n", "20000", "-r", "100000", "-q",
                 "-t", "set,sadd,hset,lpush"], timeout=120)
        eq(b.returncode, 0, f"redis-benchmark: {b.stderr}")
        # heapdelta run passes SIGTERM on; redis shuts down and exits.
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        eq(proc.returncode, 0, f"redis-server's exit status: {proc.stdout.read()[-2000:]}")
    finally:
        if proc and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    snap = snaps_of(snaps, "exit")[0]
    zfamily = re.compile(r"z(try)?(malloc|calloc|realloc)(_usable|_usable_internal|_num|_no_tcache)?|zstrdup")
    plain = top_json(snap, "--by", "function", "--no-default-alloc-fns")["stats"]
    check(zfamily.fullmatch(plain[0]["key"]), f"without the list, zmalloc's family comes first: {plain[0]['key']}")
    first = top_json(snap, "--by", "function")["stats"][:5]
    keys = [s["key"] for s in first]
    eq([k for k in keys if zfamily.fullmatch(k)], [], "zmalloc's family among the first five sites")
    check("dictAddRaw" in keys, f"dictAddRaw among the first five: {keys}")
    # Each reaches the heap through zmalloc's family: its frames come first.
    for s in first:
        tb = s["traceback"]
        if s["function"] == "dictAddRaw":
            check(s["wrapper_frames"] >= 1 and zfamily.fullmatch(tb[0]["function"]),
                  f"dictAddRaw's traceback starts in zmalloc's family: {tb[:2]}")
            eq(tb[s["wrapper_frames"]]["module"], os.path.basename(os.path.realpath(server)), "dictAddRaw's module")
