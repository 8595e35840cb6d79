"""End-to-end tests: CPython 3.11 programs, with their Python frames in the
stacks (Debian's /usr/bin/python3.11, unmodified)."""
from e2e import *

PY = "/usr/bin/python3.11"


def python_run(script, *args, opts=(), env=None):
    d = tmpdir()
    p, snaps = traced([PY, os.path.join(FIX, script), *args], d, *opts, env=env)
    eq(p.returncode, 0, f"{script}: exit status (stderr: {p.stderr.strip()})")
    return d, p


@test
def python_lines_and_sizes_agree_with_tracemalloc_exactly():
    # The same program twice: once under tracemalloc (the reference for
    # Python lines), once under heapdelta; at the same point, the bytes and
    # blocks of every marked line.
    tm = run([PY, os.path.join(FIX, "pyalloc.py"), "tracemalloc"], env={**os.environ, "PYTHONMALLOC": "malloc"})
    eq(tm.returncode, 0, f"under tracemalloc: {tm.stderr}")
    want = {int(k): tuple(v) for k, v in json.loads(tm.stdout).items()}
    d, p = python_run("pyalloc.py", "heapdelta")
    eq(p.stdout.strip(), "0", "heapdelta_snapshot_request through ctypes")
    check(p.stderr.startswith("heapdelta: PYTHONMALLOC=malloc"), f"run says it set PYTHONMALLOC: {p.stderr}")
    sites = by_site(top_json(snaps_of(d, "api")[0]), "pyalloc.py")
    for name, line in markers("pyalloc.py").items():
        check(line in want, f"{name}: tracemalloc has nothing at line {line}")
        eq((sites.get(line, {}).get("size"), sites.get(line, {}).get("count")), want[line],
           f"{name} (pyalloc.py:{line}): heapdelta against tracemalloc")


@test
def a_python_function_called_by_a_c_builtin_shows_both_python_frames_and_the_builtin_between():
    d, _ = python_run("pyalloc.py", "heapdelta")
    m = markers("pyalloc.py")
    r = top_json(snaps_of(d, "api")[0], "--by", "traceback")
    st = next(s for s in r["stats"] if any(f["file"] and f["file"].endswith("pyalloc.py") and f["line"] == m["via_map"]
                                           for f in s["traceback"]))
    tb = st["traceback"]
    at = next(i for i, f in enumerate(tb) if f["module"] == "python")
    tb = tb[at:]   # the interpreter's own frames above the innermost Python frame
    eq((tb[0]["function"], tb[0]["line"], tb[0]["module"]), ("square", m["via_map"], "python"),
       "innermost Python frame: the function map calls")
    caller = next(i for i, f in enumerate(tb) if f["function"] == "through_builtin")
    eq(tb[caller]["module"], "python", "the calling Python frame")
    native = [f for f in tb[1:caller] if f["module"] != "python"]
    check(native and all(f["module"] == "python3.11" for f in native),
          f"the builtin's native frames between them: {[(f['function'], f['module']) for f in tb[:caller + 1]]}")
    eq(st["count"], 100, "one bytes object per call")


@test
def an_asyncio_services_task_leak_is_first_in_diff_and_trend():
    d, p = python_run("svc.py", "2", opts=("--interval", "0.1"))
    line = markers("svc.py")["task_leak"]
    files = sorted(glob.glob(os.path.join(d, "heapdelta.*.snap")), key=snap_order)
    pid = max({re.search(r"heapdelta\.(\d+)\.", f).group(1) for f in files},
              key=lambda q: sum(f"heapdelta.{q}." in f for f in files))
    files = [f for f in files if f"heapdelta.{pid}." in f]
    infos = sorted(snap_infos(*files), key=lambda i: i["seq"])
    # The steady state: from the service's start (its API snapshot, after
    # the imports) to the fullest snapshot (the interpreter frees
    # everything at exit).
    start_i = next(k for k, i in enumerate(infos) if i["trigger"] == "api" and i["label"] == "start")
    top_i = max(range(len(infos)), key=lambda k: infos[k]["live_bytes"])
    first, fullest = files[start_i], files[top_i]
    r = json.loads(hd("diff", first, fullest, "--format", "json", "--limit", "1").stdout)
    s0 = r["stats"][0]
    eq((os.path.basename(s0["file"] or ""), s0["line"]), ("svc.py", line), "diff: the task-creating line first")
    t = json.loads(hd("trend", d, "--format", "json", "--limit", "1").stdout)
    top = t["sites"][0]
    eq((os.path.basename(top["file"] or ""), top["line"]), ("svc.py", line), "trend: the task-creating line first")
    # Its rate: the least-squares slope of that line's bytes over the
    # snapshots trend ranks (its steady state, which holds the fullest
    # snapshot: the teardown starts after it, once the heap has fallen by
    # a hundredth of its fall, and how many snapshots a slow teardown
    # leaves at the steady level first depends on timing), from its
    # series, checked against top at the start and at the fullest snapshot.
    steady = t["steady_snapshots"]
    check(top_i < steady, f"the fullest snapshot ({top_i}) in the steady state (the first {steady})")
    series = [(t_, b) for t_, b in top["series"]]
    eq(series[start_i][1], by_site(top_json(first), "svc.py").get(line, {"size": 0})["size"], "series: the start")
    eq(series[top_i][1], by_site(top_json(fullest), "svc.py")[line]["size"], "series: the fullest snapshot")
    xs, ys = [x for x, _ in series[:steady]], [y for _, y in series[:steady]]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    check(abs(top["rate"] - slope) <= 1e-3 * slope, f"rate {top['rate']:.0f} B/s, the snapshots say {slope:.0f}")


@test
def a_c_extensions_malloc_is_its_c_line_with_the_python_line_that_called_it():
    d, p = python_run("pyext_user.py", os.path.join(BIN, "pyext"))
    snap = snaps_of(d, "api")[0]
    ext, user = markers("pyext.c"), markers("pyext_user.py")
    sites = by_site(top_json(snap), "pyext.c")
    eq((sites[ext["ext_malloc"]]["size"], sites[ext["ext_malloc"]]["count"]), (432100, 100), "the extension's line")
    r = top_json(snap, "--by", "traceback")
    st = next(s for s in r["stats"] if s["traceback"][0]["file"] and s["traceback"][0]["file"].endswith("pyext.c"))
    py = [(os.path.basename(f["file"]), f["line"], f["function"]) for f in st["traceback"] if f["module"] == "python"]
    eq(py[0], ("pyext_user.py", user["ext_caller"], "use_it"), "the Python line that called it")


@test
def native_site_chooses_the_innermost_native_frame_in_python_programs_too():
    d, _ = python_run("pyalloc.py", "heapdelta")
    snap = snaps_of(d, "api")[0]
    line = markers("pyalloc.py")["bytearrays"]
    check(line in by_site(top_json(snap), "pyalloc.py"), "by default the Python line is a site")
    # bytearray's buffer is allocated by the interpreter's C code: with
    # --native-site that C function is the site.  (Where the eval loop
    # allocates itself, a list literal say, its Python frame stands in for
    # it: the eval loop's native frame is what was replaced.)
    native = top_json(snap, "--native-site")
    check(line not in by_site(native, "pyalloc.py"), f"with --native-site pyalloc.py:{line} is not a site")
    check(any(s["traceback"][0]["module"] == "python3.11" for s in native["stats"]), "native sites in python3.11")


@test
def every_stack_of_a_python_program_is_recorded_once():
    # A stack with Python frames is hashed in two parts (the native frames
    # outside its outermost Python frame, the rest apart), one without by
    # the unwinder's chain: the same frames must never become two stacks,
    # whichever path found them.  pyalloc.py's calls come from eval loops,
    # C builtins, generators, coroutines and a second thread.
    # A snapshot lists the stacks its bases did not: the run's snapshots
    # together list each once.
    d, _ = python_run("pyalloc.py", "heapdelta")
    snaps = sorted(glob.glob(os.path.join(d, "heapdelta.*.snap")), key=snap_order)
    eq(len({snap_order(s)[0] for s in snaps}), 1, "one process")
    seen, total = {}, 0
    for snap in snaps:
        _, secs = snapshot_sections(snap)
        buf = secs[8]
        (n,), p = struct.unpack_from("<I", buf), 4
        total += n
        for _ in range(n):
            sid, depth, flags = struct.unpack_from("<IHH", buf, p)
            key = (flags, buf[p + 8:p + 8 + 8 * depth])
            check(key not in seen, f"{os.path.basename(snap)}: stacks {seen.get(key)} and {sid} have the same frames")
            seen[key] = sid
            p += 8 + 8 * depth
    check(total > 100, f"only {total} stacks")
