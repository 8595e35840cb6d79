"""End-to-end tests of what the reports show: zero-byte blocks in every
command and format, with totals that agree.

Registered into tests/e2e.py's runner (it imports every tests/e2e_*.py);
run with `python3 tests/e2e.py -k NAME`.
"""
from e2e import *

ZERO_SRC = "zero.c"
ZERO_SITES = ("malloc0", "calloc0", "realloc0", "aligned0")


def zero_run(reach=True):
    """Run the zero fixture (without reachability classification unless
    reach); return its output directory and exit snapshot."""
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "zero")], d, env=None if reach else {**os.environ, "HEAPDELTA_REACH": "0"})
    eq(p.returncode, 0, f"fixture exit status (a call returned NULL?) stderr: {p.stderr}")
    exits = snaps_of(d, "exit")
    eq(len(exits), 1, "exit snapshots")
    return d, exits[0]


def zero_expected():
    """[(site name, line, bytes, count)] in the order leaks and check list
    them: largest first, then by line (the fixture keeps them two-digit)."""
    m = markers(ZERO_SRC)
    return [("hundred", m["hundred"], 100, 1)] + sorted(((n, m[n], 0, 1) for n in ZERO_SITES), key=lambda e: e[1])


def site_blocks(text):
    """The 'N bytes in N allocations ..., allocated from:' blocks of a
    leaks/check text report: [(header, [frame lines])]."""
    blocks = []
    for line in text.splitlines():
        if line.endswith(", allocated from:"):
            blocks.append((line, []))
        elif line.startswith("    #") and blocks:
            blocks[-1][1].append(line)
    return blocks


def check_zero_blocks(text, what):
    exp = zero_expected()
    blocks = site_blocks(text)
    eq([h for h, _ in blocks], [f"{b} bytes in {c} allocations not freed at exit, allocated from:" for _, _, b, c in exp],
       f"{what}: site headers")
    for (name, _, _, _), (_, frames) in zip(exp, blocks):
        check(frame_line_re(0, "main", ZERO_SRC, name).match(frames[0]), f"{what}: {name}: {frames[0]}")


def pprof_decode(path):
    raw = subprocess.run(["gzip", "-dc", path], capture_output=True).stdout
    p = subprocess.run(["protoc", "--decode=perftools.profiles.Profile", f"--proto_path={os.path.join(ROOT, 'analyzer')}",
                        "profile.proto"], input=raw, capture_output=True)
    eq(p.returncode, 0, f"protoc --decode: {p.stderr}")
    return p.stdout.decode()


def pprof_samples(text):
    """[(line of the sample's first location, (values...))] of a decoded
    profile: the first location is the allocation site."""
    first_line = {}
    for lid, body in re.findall(r"^location \{\n  id: (\d+)\n(.*?)^\}", text, re.M | re.S):
        lines = re.findall(r"^    line: (\d+)$", body, re.M)
        first_line[lid] = int(lines[0]) if lines else 0
    out = []
    for locs, vals in re.findall(r"^sample \{\n((?:  location_id: \d+\n)+)((?:  value: -?\d+\n)+)\}", text, re.M):
        out.append((first_line[re.findall(r"\d+", locs)[0]], tuple(int(v) for v in re.findall(r"-?\d+", vals))))
    return out


@test
def zero_byte_blocks_are_in_top_and_every_export_with_count_one():
    d, snap = zero_run()
    exp = zero_expected()
    src = os.path.join(FIX, ZERO_SRC)
    r = top_json(snap)
    check_sites(r, ZERO_SRC, {n: (b, c) for n, _, b, c in exp})
    eq(sorted(by_site(r, ZERO_SRC)), sorted(line for _, line, _, _ in exp), "zero.c lines in top")
    eq(r["total"], {"size": 100, "count": 5}, "JSON total")
    eq(r["not_shown"], {"entries": 0, "size": 0, "count": 0}, "nothing left out")
    eq(sum(s["count"] for s in r["stats"]), 5, "the entries' counts add up to the total")
    # Text: tracemalloc's order (size, count, then key, all descending).
    p = hd("top", snap, "--limit", "0")
    eq(p.returncode, 0, "top exit status")
    want = [stat_line(f"{src}:{line}", b, c) for _, line, b, c in sorted(exp, key=lambda e: (e[2], e[3], e[1]), reverse=True)]
    eq(p.stdout.splitlines(), want + ["Total: size=100 B, count=5", "Peak: 100 B"], "top text")
    # Folded stacks: one line per stack, the zero-byte ones with 0.
    tb = top_json(snap, "--by", "traceback")
    eq(sorted((s["traceback"][0]["line"], s["size"], s["count"]) for s in tb["stats"]),
       sorted((line, b, c) for _, line, b, c in exp), "one traceback per site")
    p = hd("top", snap, "--format", "collapsed")
    eq(p.returncode, 0, "collapsed exit status")
    eq(p.stdout.splitlines(), [";".join(f["function"] for f in reversed(s["traceback"])) + f" {s['size']}"
                               for s in tb["stats"]], "collapsed stacks")
    eq(len([l for l in p.stdout.splitlines() if l.endswith(";main 0")]), 4, "four zero-byte stacks")
    # pprof: alloc_objects, alloc_space, inuse_objects, inuse_space per site.
    out = os.path.join(d, "heap.pb.gz")
    eq(hd("top", snap, "--format", "pprof", "--output", out).returncode, 0, "pprof exit status")
    eq(sorted(pprof_samples(pprof_decode(out))), sorted((line, (c, b, c, b)) for _, line, b, c in exp), "pprof samples")


@test
def zero_byte_blocks_are_in_leaks_and_its_json_totals_equal_the_text():
    d, _ = zero_run(reach=False)   # the wording of blocks not classified by reachability
    exp = zero_expected()
    p = hd("leaks", d)
    eq(p.returncode, 0, "leaks exit status")
    check_zero_blocks(p.stdout, "leaks text")
    eq(p.stdout.splitlines()[-1], "SUMMARY: heapdelta: 100 bytes in 5 allocations not freed at exit", "leaks summary")
    p = hd("leaks", "--format", "json", d)
    eq(p.returncode, 0, "leaks json exit status")
    r = json.loads(p.stdout)
    eq([(s["traceback"][0]["line"], s["size"], s["count"]) for s in r["sites"]],
       [(line, b, c) for _, line, b, c in exp], "leaks json sites")
    eq(r["leaked"], {"size": 100, "count": 5}, "leaks json total")
    eq(p.stderr, "SUMMARY: heapdelta: 100 bytes in 5 allocations not freed at exit\n", "leaks json summary (stderr)")
    # Classified by reachability: each is an entry of its kind, counted by kind.
    d, _ = zero_run()
    r = json.loads(hd("leaks", "--format", "json", "--show-kinds", "all", d).stdout)
    eq(sorted((s["traceback"][0]["line"], s["size"], s["count"]) for s in r["sites"]),
       sorted((line, b, c) for _, line, b, c in exp), "classified: leaks json entries")
    eq((sum(k["size"] for k in r["kinds"].values()), sum(k["count"] for k in r["kinds"].values())), (100, 5),
       "classified: the kinds add up")
    eq(r["kinds"]["unclassified"], {"size": 0, "count": 0}, "classified: every block")


@test
def zero_byte_blocks_fail_check_with_the_others_in_every_format():
    import jsonschema
    d, _ = zero_run(reach=False)   # the wording of blocks not classified by reachability
    exp = zero_expected()
    # Over budget: every site not freed is listed as failing, in every format.
    p = hd("check", "--max-leaked", "0", d)
    eq(p.returncode, 1, "over budget")
    check_zero_blocks(p.stdout, "check text")
    lines = p.stdout.splitlines()
    check("not freed at exit: 100 B (budget 0 B): over budget" in lines, p.stdout)
    eq(lines[-1], "SUMMARY: heapdelta: 5 sites over budget, +100 B in 5 allocations", "check summary")
    p = hd("check", "--max-leaked", "0", "--format", "json", d)
    eq(p.returncode, 1, "json exit status")
    r = json.loads(p.stdout)
    eq([(s["traceback"][0]["line"], s["size"], s["count"], s["fails"]) for s in r["sites"]],
       [(line, b, c, ["leaked"]) for _, line, b, c in exp], "check json sites")
    eq(r["leaked"], {"size": 100, "count": 5}, "check json total")
    eq(p.stderr, "SUMMARY: heapdelta: 5 sites over budget, +100 B in 5 allocations\n", "json summary on stderr")
    junit = os.path.join(d, "report.xml")
    eq(hd("check", "--max-leaked", "0", "--format", "junit", "--output", junit, d).returncode, 1, "junit exit status")
    v = run(["xmllint", "--noout", "--schema", os.path.join(ROOT, "tests/data/JUnit.xsd"), junit])
    eq(v.returncode, 0, f"xmllint: {v.stderr}")
    xml = open(junit).read()
    check('tests="6" failures="6"' in xml, "the budget and five sites, all failing")
    eq(xml.count('<failure type="max-leaked" message="0 bytes in 1 allocations not freed at exit">'), 4,
       "zero-byte failures in JUnit")
    p = hd("check", "--max-leaked", "0", "--format", "sarif", d)
    eq(p.returncode, 1, "sarif exit status")
    sarif = json.loads(p.stdout)
    jsonschema.Draft4Validator(json.load(open(os.path.join(ROOT, "tests/data/sarif-schema-2.1.0.json")))).validate(sarif)
    eq([(x["locations"][0]["physicalLocation"]["region"]["startLine"], x["properties"]["bytes"],
         x["properties"]["allocations"], x["level"]) for x in sarif["runs"][0]["results"]],
       [(line, b, c, "error") for _, line, b, c in exp], "sarif results")
    p = run([HD, "check", "--max-leaked", "0", "--format", "github", d], cwd=ROOT)
    eq(p.returncode, 1, "github exit status")
    eq(p.stdout.splitlines(),
       [f"::error file=tests/fixtures/{ZERO_SRC},line={line},title=heapdelta::{b} bytes in {c} allocations not freed "
        f"at exit in main" for _, line, b, c in exp] +
       ["SUMMARY: heapdelta: 5 sites over budget, +100 B in 5 allocations"], "github annotations")
    # Within budget: still listed, none failing.
    p = hd("check", "--max-leaked", "100", "--format", "json", d)
    eq(p.returncode, 0, "within budget")
    r = json.loads(p.stdout)
    eq([(s["traceback"][0]["line"], s["size"], s["count"], s["fails"]) for s in r["sites"]],
       [(line, b, c, []) for _, line, b, c in exp], "within budget: json sites")
    eq(p.stderr, "SUMMARY: heapdelta: within budget: 100 B in 5 allocations not freed at exit, peak 100 B\n", "summary")
    # A baseline: the zero-byte sites are in it; a baseline without them
    # names them new (no slack covers a site that was not there).
    base = os.path.join(d, "heap.baseline")
    eq(hd("check", "--write-baseline", base, d).returncode, 0, "write baseline")
    rows = [l.split(" ", 3) for l in open(base) if not l.startswith("#")]
    eq(sorted((int(b), int(c)) for _, b, c, _ in rows), [(0, 1)] * 4 + [(100, 1)], "baseline rows")
    eq(hd("check", "--baseline", base, d).returncode, 0, "the same run against its own baseline")
    with open(base) as f:
        kept = [l for l in f if l.startswith("#") or l.split(" ")[1] != "0"]
    with open(base, "w") as f:
        f.writelines(kept)
    p = hd("check", "--baseline", base, "--format", "json", d)
    eq(p.returncode, 1, "zero-byte sites missing from the baseline fail")
    eq([(s["traceback"][0]["line"], s["baseline"], s["fails"]) for s in json.loads(p.stdout)["sites"]],
       [(line, "unchanged" if b else "new", [] if b else ["baseline"]) for _, line, b, _ in exp], "baseline states")


# ---------------------------------------------------------------------------
# The traceback of a line's entry

@test
def a_lines_traceback_is_its_stack_holding_the_most_bytes():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "twostacks")], d)
    eq(p.returncode, 0, f"fixture exit status: {p.stderr}")
    snap = snaps_of(d, "exit")[0]
    m = markers("twostacks.c")
    # (line, its function, bytes, blocks, the caller line of the stack shown)
    want = [("bytes", "by_bytes", 10 + 3 * 1000, 4, "bytes_big"),      # 3000 B beats 10 B
            ("count", "by_count", 200 + 2 * 100, 3, "count_two"),      # 200 B each: 2 blocks beat 1
            ("id", "by_id", 2 * 300, 2, "id_first")]                   # a tie: the lowest stack id
    for args in ([], ["--by", "function"]):
        sites = by_site(top_json(snap, *args), "twostacks.c")
        eq(sorted(sites), sorted(m[w[0]] for w in want), f"entries {args}")
        for line, fn, size, count, caller in want:
            st = sites[m[line]]
            eq((st["size"], st["count"], st["function"]), (size, count, fn), f"{line} {args}")
            eq([(f["function"], f["line"]) for f in st["traceback"][:2]], [(fn, m[line]), ("main", m[caller])],
               f"traceback of {line} {args}")
    # diff shows the newer snapshot's stack the same way.
    p = hd("diff", snap, snap, "--format", "json", "--limit", "0")
    eq(p.returncode, 0, "diff exit status")
    sites = by_site(json.loads(p.stdout), "twostacks.c")
    eq({ln: [f["line"] for f in st["traceback"][:2]] for ln, st in sites.items()},
       {m[line]: [m[line], m[caller]] for line, _, _, _, caller in want}, "diff tracebacks")


# ---------------------------------------------------------------------------
# -o/--output

def hd_bytes(*args):
    return subprocess.run([HD, *args], capture_output=True, timeout=120)


@test
def every_command_that_writes_a_report_takes_o_and_output_alike():
    d = tmpdir()
    traced([os.path.join(BIN, "grow")], d)
    snaps = sorted(glob.glob(os.path.join(d, "heapdelta.*.snap")), key=snap_order)
    eq(len(snaps), 3, "grow's snapshots (before, after, exit)")
    old, snap = snaps[0], snaps[-1]
    cases = [["top", snap], ["top", snap, "--format", "json"], ["top", snap, "--format", "collapsed"],
             ["top", snap, "--format", "pprof"], ["diff", old, snap], ["diff", old, snap, "--format", "json"],
             ["leaks", d], ["leaks", d, "--format", "json"],
             ["check", "--max-leaked", "0", d], ["check", "--max-leaked", "0", "--format", "sarif", d],
             ["check", "--max-leaked", "10MB", "--format", "github", d],
             ["trend", d], ["trend", d, "--format", "json"], ["info", snap], ["info", "--format", "json", old, snap]]
    for args in cases:
        ref = hd_bytes(*args)
        check(ref.returncode in (0, 1) and len(ref.stdout) > 0, f"{args}: status {ref.returncode}, {ref.stderr}")
        for opt in ("-o", "--output"):
            out = os.path.join(d, "out")
            p = hd_bytes(*args, opt, out)
            eq((p.returncode, p.stdout, p.stderr), (ref.returncode, b"", ref.stderr), f"{args} {opt}: status, stdout, stderr")
            eq(open(out, "rb").read(), ref.stdout, f"{args} {opt}: the file holds what standard output did")
            os.unlink(out)
    # Unwritable: one line naming the file, exit status 2.
    bad = os.path.join(d, "missing", "out")
    for args in (["top", snap], ["diff", old, snap], ["leaks", d], ["check", "--max-leaked", "0", d], ["trend", d],
                 ["info", snap]):
        p = hd(*args, "-o", bad)
        eq((p.returncode, p.stdout, p.stderr), (2, "", f"heapdelta: cannot write '{bad}': No such file or directory\n"),
           f"{args} -o into a missing directory")
    for cmd in ("top", "diff", "leaks", "check", "trend", "info"):
        p = hd(cmd, "-o")
        eq(p.returncode, 2, f"{cmd} -o without a file")
        lines = p.stderr.splitlines()
        eq(lines[0], "heapdelta: option '-o' needs a value", f"{cmd} -o without a file")
        check(len(lines) == 2 and lines[1].startswith(f"usage: heapdelta {cmd}"), p.stderr)
        check(re.search(r"^  -o, --output FILE   write the report to FILE", hd("help", cmd).stdout, re.M),
              f"help {cmd} lists -o, --output")
