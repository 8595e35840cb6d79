"""End-to-end tests: `heapdelta trend` and the HTML report.

The trend's numbers recomputed from the snapshots themselves; a clean
shutdown's teardown set apart, the leak's rate checked against what the
program leaked; the report rendered in headless Chromium, at 1,000
snapshots of 10,000 sites too.
"""
import math

from e2e import *
from tracemalloc import _format_size


def slowleak_run():
    """Run the slowleak fixture, which asks for a snapshot every 20 ticks;
    return its folder and, per snapshot, the bytes (leak, cache, noise) it
    printed that the snapshot holds."""
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "slowleak")], d)
    eq(p.returncode, 0, "exit status")
    held = []
    for k, line in enumerate(p.stdout.splitlines(), 1):
        f = line.split()
        check(len(f) == 8 and f[:2] == ["snapshot", str(k)], f"fixture line {line!r}")
        held.append((int(f[3]), int(f[5]), int(f[7])))
    eq(len(held), 30, "tick snapshots")
    return d, held


def trend_model(t, y):
    """What `heapdelta trend` promises for a site whose bytes are y at times
    t (seconds), computed on its own: rate (least squares over the run),
    recent_rate (over the last third, at least 3 snapshots), steadiness
    ((intervals up - intervals down) / intervals), linearity (R^2 of the
    line), growth, plateaued (grew, recent rate under a tenth of the rate)
    and score (recent x steadiness x linearity, each at least 0)."""
    def slope(t, y):
        k = len(t)
        if k < 2:
            return 0.0, 0.0
        mt, my = sum(t) / k, sum(y) / k
        stt = sum((a - mt) ** 2 for a in t)
        sty = sum((a - mt) * (b - my) for a, b in zip(t, y))
        syy = sum((b - my) ** 2 for b in y)
        return (sty / stt if stt > 0 else 0.0), (sty * sty / (stt * syy) if stt > 0 and syy > 0 else 0.0)
    n = len(y)
    rate, linearity = slope(t, y)
    last = max(n // 3, min(3, n))
    recent, _ = slope(t[n - last:], y[n - last:])
    steadiness = sum((b > a) - (b < a) for a, b in zip(y, y[1:])) / (n - 1) if n > 1 else 0.0
    growth = y[-1] - y[0]
    return {"rate": rate, "recent_rate": recent, "steadiness": steadiness, "linearity": linearity, "growth": growth,
            "plateaued": growth > 0 and rate > 0 and recent < rate / 10,
            "score": max(recent, 0) * max(steadiness, 0) * linearity}


@test
def trend_puts_the_steady_leak_first_with_its_true_rate():
    # The fixture takes its snapshots at fixed ticks, so what each one holds
    # is known exactly; only their timestamps depend on the machine, and they
    # are read from the snapshots.  The true rate is the least-squares slope
    # of the leak's known bytes over those timestamps.  The ranking follows
    # from the data whatever the timing: the leak grows at every tick (a
    # positive score), the cache is flat over the last third (recent rate 0)
    # and the noise goes down more often than up (steadiness below 0).
    d, held = slowleak_run()
    snaps = glob.glob(os.path.join(d, "heapdelta.*.snap"))
    infos = sorted(snap_infos(*snaps), key=lambda i: i["seq"])
    eq([(i["seq"], i["trigger"]) for i in infos], [(k, "api") for k in range(1, 31)] + [(31, "exit")],
       "sequence numbers and triggers: one snapshot per 20 ticks, then the exit snapshot")
    eq(len({i["pid"] for i in infos}), 1, "one process")
    held.append(held[-1])   # nothing changes after the last tick snapshot: the exit snapshot holds the same
    t = [(i["mono_ns"] - infos[0]["mono_ns"]) / 1e9 for i in infos]
    r = json.loads(hd("trend", d, "--format", "json", "--limit", "0").stdout)
    eq(r["snapshots"], 31, "snapshots in the trend")
    check(abs(r["duration"] - t[-1]) < 1e-6, f"duration {r['duration']}, the timestamps say {t[-1]}")
    marks = markers("slowleak.c")
    sites = {s["line"]: s for s in r["sites"] if s["file"] and s["file"].endswith("slowleak.c")}
    for k, name in enumerate(("leak", "cache", "noise")):
        s = sites[marks[name]]
        y = [h[k] for h in held]
        eq([b for _, b in s["series"]], y, f"{name}: bytes in each snapshot")
        check(all(abs(a - b) < 1e-6 for (a, _), b in zip(s["series"], t)), f"{name}: times {s['series']} vs {t}")
        want = trend_model(t, y)
        for key in ("growth", "plateaued"):
            eq(s[key], want[key], f"{name}: {key}")
        for key, places in (("rate", 3), ("recent_rate", 3), ("steadiness", 4), ("linearity", 4), ("score", 3)):
            check(abs(s[key] - want[key]) <= 10 ** -places + 1e-9 * abs(want[key]),
                  f"{name}: {key} {s[key]}, computed from the snapshots {want[key]}")
    eq((r["steady_snapshots"], r["teardown"]), (31, None), "no teardown: the exit snapshot holds what the last one did")
    first = r["sites"][0]
    eq((os.path.basename(first["file"] or ""), first["line"]), ("slowleak.c", marks["leak"]), "the leak ranks first")
    scores = [s["score"] for s in r["sites"]]
    eq(scores, sorted(scores, reverse=True), "sites in order of score")
    cache, noise = sites[marks["cache"]], sites[marks["noise"]]
    check(cache["plateaued"], "the cache plateaued")
    check(cache["score"] < first["score"] / 10 and noise["score"] < first["score"] / 10,
          f"scores: leak {first['score']:.0f}, cache {cache['score']:.0f}, noise {noise['score']:.0f}")
    text = hd("trend", d, "--limit", "1").stdout.splitlines()
    check(re.match(rf"^{re.escape(os.path.join(FIX, 'slowleak.c'))}:{marks['leak']}: \+\d+(\.\d)? (B|KiB)/s, steady \d+%, "
                   rf"\+\d+(\.\d)? (B|KiB|MiB) over \d+\.\d s, size=\S+ \S+ ?[\u2581-\u2588]+$", text[1]), text[1])


def service_run(ticks=700, interval="0.1"):
    """Run the service fixture for `ticks` ticks with interval snapshots;
    return its folder, its snapshots' META (by seq), its tick log [(ns,
    bytes leaked so far)] and when its teardown began (CLOCK_MONOTONIC ns,
    the clock of the snapshots' mono_ns)."""
    d = tmpdir()
    p, snaps = traced([os.path.join(BIN, "service"), str(ticks), "log"], d, "--interval", interval)
    eq(p.returncode, 0, f"exit status (stderr: {p.stderr.strip()})")
    log, teardown = [], None
    for line in p.stdout.splitlines():
        f = line.split()
        if f[0] == "tick":
            log.append((int(f[1]), int(f[2])))
        elif f[0] == "teardown":
            teardown = int(f[1])
    eq(len(log), ticks, "ticks logged")
    infos = sorted(snap_infos(*snaps), key=lambda i: i["seq"])
    return d, infos, log, teardown


def leaked_at(log, ns):
    """What the service had leaked at CLOCK_MONOTONIC ns, by its own log."""
    return max([b for t, b in log if t <= ns], default=0)


def lsq_slope(t, y):
    mt, my = sum(t) / len(t), sum(y) / len(y)
    return sum((a - mt) * (b - my) for a, b in zip(t, y)) / sum((a - mt) ** 2 for a in t)


def check_teardown_and_leak(infos, log, teardown, steady, torn, rate, what):
    """The snapshots [steady, n) are the teardown: the exit snapshot, and
    every snapshot the program took while freeing but the first (which may
    still hold all it had); the steady state keeps most of the snapshots
    before it; and `rate` is the leak's true rate within 10%: the slope of
    what the program had leaked (its log) at each steady snapshot's
    timestamp."""
    n = len(infos)
    eq(infos[-1]["trigger"], "exit", "the exit snapshot is there, last")
    eq(torn, n - steady, f"{what}: teardown snapshots")
    check(steady < n, f"{what}: the exit snapshot is the teardown's")
    after = [i for i, info in enumerate(infos) if info["mono_ns"] > teardown]
    check(steady <= after[0] + 1, f"{what}: steady state of {steady} snapshots, the teardown began before "
                                  f"snapshot {after[0] + 1}")
    before = n - len(after)
    check(steady >= before // 2, f"{what}: steady state of {steady} snapshots of the {before} before the teardown")
    t = [(i["mono_ns"] - infos[0]["mono_ns"]) / 1e9 for i in infos[:steady]]
    true = lsq_slope(t, [leaked_at(log, i["mono_ns"]) for i in infos[:steady]])
    check(abs(rate - true) <= 0.1 * true, f"{what}: the leak's rate {rate:.0f} B/s, the program's own {true:.0f} B/s")


@test
def trend_ranks_a_clean_shutdown_by_its_steady_state_and_shows_the_teardown_apart():
    # The service leaks 1000 bytes a tick, keeps a full cache and noise, and
    # frees everything before returning from main, slowly enough for
    # interval snapshots to fall inside the teardown.  Ranked with the
    # teardown, the leak would end in a fall; over the steady state it comes
    # first, at the rate the program's own log gives.
    d, infos, log, teardown = service_run()
    r = json.loads(hd("trend", d, "--format", "json", "--limit", "0").stdout)
    n, k = r["snapshots"], r["steady_snapshots"]
    eq(n, len(infos), "snapshots in the trend")
    check(r["teardown"] is not None, f"a teardown: {r['teardown']}")
    marks = markers("service.c")
    first = r["sites"][0]
    eq((os.path.basename(first["file"] or ""), first["line"]), ("service.c", marks["leak"]), "the leak ranks first")
    check_teardown_and_leak(infos, log, teardown, k, r["teardown"]["snapshots"], first["rate"], "trend")
    t = [(i["mono_ns"] - infos[0]["mono_ns"]) / 1e9 for i in infos]
    check(abs(r["steady_duration"] - t[k - 1]) < 1e-6 and abs(r["teardown"]["from"] - t[k]) < 1e-6,
          f"steady state and teardown times: {r['steady_duration']}, {r['teardown']['from']}; the snapshots say "
          f"{t[k - 1]}, {t[k]}")
    eq((r["teardown"]["heap_before"], r["teardown"]["heap_after"]), (infos[k - 1]["live_bytes"], infos[-1]["live_bytes"]),
       "the heap before and after the teardown")
    eq(first["size"], first["series"][k - 1][1], "size: at the end of the steady state")
    eq(first["series"][-1][1], 0, "the series goes on through the teardown: the leak freed at exit")
    text = hd("trend", d, "--limit", "3").stdout.splitlines()
    eq(text[0], f"{n} snapshots of pid {infos[0]['pid']} over {t[-1]:.1f} s, sites ranked by steady growth over the "
                f"first {k} ({t[k - 1]:.1f} s):", "header")
    # The leak never shrinks while the service runs; it grows at every
    # steady interval that had a tick of the service in it (a loaded
    # machine may write two snapshots with none between): its steadiness
    # is what its own series says.
    held = [b for _, b in first["series"][:k]]
    check(all(b >= a for a, b in zip(held, held[1:])), f"the leak never shrinks in the steady state: {held}")
    check(held[-1] > held[0], f"the leak grows over the steady state: {held}")
    ups = sum(b > a for a, b in zip(held, held[1:]))
    check(text[1].startswith(f"{os.path.join(FIX, 'service.c')}:{marks['leak']}: +") and
          f" steady {math.floor(ups / (k - 1) * 100 + 0.5)}%, " in text[1],   # lround
          f"the leak first, growing at {ups} of {k - 1} steady intervals: {text[1]}")
    size = lambda b: _format_size(b, False)
    torn = (f"teardown: the exit snapshot, at {t[-1]:.1f} s" if n - k == 1 else
            f"teardown: the last {n - k} snapshots, {t[k]:.1f} s to {t[-1]:.1f} s, the exit snapshot last")
    eq(text[-1], f"{torn}: heap {size(infos[k - 1]['live_bytes'])} -> {size(infos[-1]['live_bytes'])} (not ranked)",
       "the teardown line")


def report_data(html):
    """The data a report page was built from (its JSON, as embedded)."""
    page = open(html).read()
    m = re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


@test
def the_report_ranks_and_charts_a_clean_shutdown_as_trend_does():
    d, infos, log, teardown = service_run()
    html = os.path.join(d, "report.html")
    p = hd("report", d, "-o", html)
    eq(p.returncode, 0, f"report: {p.stderr}")
    data = report_data(html)
    r = json.loads(hd("trend", d, "--format", "json", "--limit", "0").stdout)
    k = r["steady_snapshots"]
    eq((data["steady"], data["teardown"]["snapshots"]), (k, r["teardown"]["snapshots"]), "the steady state of trend")
    marks = markers("service.c")
    eq(data["sites"][0]["k"], f"{os.path.join(FIX, 'service.c')}:{marks['leak']}", "the leak ranks first")
    eq([s["k"] for s in data["sites"]], [f"{s['file']}:{s['line']}" if s["file"] else s["key"] for s in r["sites"]],
       "the report's ranking is trend's")
    check(abs(data["sites"][0]["r"] - r["sites"][0]["rate"]) < 0.1, "the leak's rate is trend's")
    check_teardown_and_leak(infos, log, teardown, data["steady"], data["teardown"]["snapshots"], data["sites"][0]["r"],
                            "report")
    eq(data["sites"][0]["z"], r["sites"][0]["size"], "size at the end of the steady state")
    dom, console = browser(html)
    eq(console, [], "console messages")
    body = re.search(r"<body[^>]*>", dom).group(0)
    check('data-ready="1"' in body and "data-error" not in body, f"the page's script ran to the end: {body}")
    check(re.search(r'<rect class="teardown"', dom) and "teardown (not ranked)" in dom, "the chart shows the teardown")
    check(re.search(r"the last \d+ are the process's teardown", dom), "the subtitle says what the teardown is")
    check("live memory at the end of the steady state" in dom, "the flame graph is of the steady state")


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
def a_report_of_a_thousand_snapshots_and_ten_thousand_sites_renders_a_bounded_page():
    # What keeps a big report quick to open, checked on the page itself, not
    # with a stopwatch: the file stays small, the script runs to its end (it
    # sets data-ready as its last statement, data-error on any exception), the
    # table draws 200 rows and a button for the rest, and the flame graphs
    # skip what would be narrower than 1.5 px (1070 px wide: at most 714 boxes
    # per level, four levels for gen_snapshots.py's three-frame stacks).  The
    # times are printed for information only.
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
    body = re.search(r"<body[^>]*>", dom).group(0)
    check('data-ready="1"' in body and "data-error" not in body, f"the page's script ran to the end: {body}")
    eq(len(re.findall(r'<tr class="site"', dom)), 200, "site rows drawn at first")
    more = re.search(r"<button>show 200 more of (\d+)</button>", dom)
    eq(more and int(more.group(1)), 10000 - 200, "a button for the other sites")
    boxes = len(re.findall(r'<div class="f', dom))
    check(0 < boxes <= 2 * 4 * 714, f"{boxes} flame graph boxes")
    ms = int(re.search(r'data-ms="(\d+)"', dom).group(1))
    print(f"  (1000 snapshots x 10000 sites: report built in {build:.1f} s, {os.path.getsize(html) >> 10} KiB, "
          f"browser run {load:.1f} s, page ready after {ms} ms)")
