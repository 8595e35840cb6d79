"""End-to-end tests: `heapdelta trend` and the HTML report.

The trend's numbers recomputed from the snapshots themselves; the report
rendered in headless Chromium, at 1,000 snapshots of 10,000 sites too.
"""
from e2e import *


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
    infos = sorted(json.loads(hd("info", "--format", "json", *snaps).stdout), key=lambda i: i["seq"])
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
