"""End-to-end tests: `heapdelta trend` and the HTML report.

The trend's numbers recomputed from the snapshots themselves; the report
rendered in headless Chromium, at 1,000 snapshots of 10,000 sites too.
"""
from e2e import *


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
