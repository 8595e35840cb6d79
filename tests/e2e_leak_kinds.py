"""End-to-end tests: `leaks` and `check` by reachability (the REACH section).

Snapshots with known REACH numbers are written by tests/gen_snapshots.py
(the format's independent writer), with stacks whose frames lie in the
`leaky` fixture's functions at their marked lines, so they symbolize as a
real run's would: entries per kind in text and JSON, --show-kinds,
check --max-lost, suppressions and baselines by kind, JUnit, SARIF and
GitHub annotations, snapshots without classification reported as before
with the reason, and malformed REACH sections.
"""
from e2e import *

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_snapshots  # noqa: E402

LEAKY = os.path.join(BIN, "leaky")
SRC = os.path.join(FIX, "leaky.c")


def main_line():
    """The line of main that calls known_leak()."""
    with open(SRC) as f:
        return [n for n, line in enumerate(f, 1) if line.strip() == "known_leak();"][0]


def leaky_addresses():
    """{name: virtual address in leaky} of a return address (looked up at
    address - 1, as the symbolizer does) at each marked line, and in main
    where it calls known_leak()."""
    syms = {}
    for line in run(["nm", "-S", "--defined-only", LEAKY]).stdout.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tT":
            syms[p[3]] = (int(p[0], 16), int(p[1], 16))
    m = markers("leaky.c")
    want = {"known_leak": ("known_leak", m["known_leak"]), "intentional_cache": ("intentional_cache", m["intentional_cache"]),
            "new_leak": ("new_leak", m["new_leak"]), "main": ("main", main_line())}
    out = {}
    for name, (fn, line) in want.items():
        start, size = syms[fn]
        addrs = list(range(start + 1, start + size + 1))
        res = run(["addr2line", "-e", LEAKY] + [hex(a - 1) for a in addrs]).stdout.splitlines()
        out[name] = next(a for a, r in zip(addrs, res) if re.search(rf":{line}( |$)", r))
    return out


# The exit snapshot's stacks: id -> (site, bytes, blocks), all called from
# main; stack 5 (known_leak without main) holds nothing any more.
STACKS = {1: ("known_leak", 1000, 10), 2: ("intentional_cache", 320, 5), 3: ("new_leak", 999, 3)}
# Per stack, (bytes, blocks) definitely lost, indirectly lost, possibly lost, still reachable.
REACH = {1: ((400, 4), (300, 3), (200, 2), (100, 1)), 2: ((0, 0), (0, 0), (0, 0), (320, 5)),
         3: ((999, 3), (0, 0), (0, 0), (0, 0))}
CLASSIFIED_SUMMARY = ("SUMMARY: heapdelta: definitely lost 1399 bytes in 7 blocks, indirectly lost 300 bytes in 3 blocks, "
                      "possibly lost 200 bytes in 2 blocks, still reachable 420 bytes in 6 blocks")


def write_process(d, reach=(0, REACH), version=2, pid=424242, reach_bytes=None, stacks=STACKS):
    """A process's snapshots in d: an interval snapshot holding half of
    known_leak's blocks (stack 1, when stacks has it, and 5), then the exit
    snapshot of stacks and 5 with
    reach (None: no REACH section) or the REACH payload reach_bytes.
    Returns (exit snapshot path, Process, {name: runtime address})."""
    proc = gen_snapshots.Process(d, LEAKY, pid=pid, version=version)
    a = {k: proc.address(v) for k, v in leaky_addresses().items()}
    frames = {sid: (a[site], a["main"]) for sid, (site, _, _) in stacks.items()}
    frames[5] = (a["known_leak"],)
    first = {5: (frames[5], 64, 1, 64, 1)}
    if 1 in stacks:
        first[1] = (frames[1], 500, 5, 500, 5)
    proc.snapshot("interval", first)
    now = {sid: (frames[sid], b, c, b, c) for sid, (_, b, c) in stacks.items()}
    now[5] = (frames[5], 0, 0, 64, 1)
    path = proc.snapshot("exit", now, reach=reach, reach_bytes=reach_bytes)
    return path, proc, a


def stack_lines(a, site):
    return [f"    #0 0x{a[site]:x} in {site} {SRC}:{markers('leaky.c')[site]}",
            f"    #1 0x{a['main']:x} in main {SRC}:{main_line()}"]


def entry(head, a, site):
    return [head] + stack_lines(a, site) + [""]


@test
def leaks_lists_each_stack_once_per_kind_definitely_and_indirectly_lost_by_default():
    d = tmpdir()
    snap, _, a = write_process(d)
    p = hd("leaks", snap)
    eq((p.returncode, p.stderr), (0, ""), "exit status and stderr")
    want = (entry("Direct leak of 999 byte(s) in 3 object(s) allocated from:", a, "new_leak") +
            entry("Direct leak of 400 byte(s) in 4 object(s) allocated from:", a, "known_leak") +
            entry("Indirect leak of 300 byte(s) in 3 object(s) allocated from:", a, "known_leak") +
            [CLASSIFIED_SUMMARY])
    eq(p.stdout.splitlines(), want, "leaks text")
    # The directory reads the same: the chain composed, REACH the exit file's own.
    eq(hd("leaks", d).stdout, p.stdout, "leaks of the directory")
    # A version 1 file with the same REACH reads the same.
    d1 = tmpdir()
    snap1, _, _ = write_process(d1, version=1)
    eq(hd("leaks", snap1).stdout, p.stdout, "leaks of a version 1 file")


@test
def show_kinds_chooses_the_kinds_listed_and_the_summary_counts_them_all():
    d = tmpdir()
    snap, _, a = write_process(d)
    possible = entry("Possible leak of 200 byte(s) in 2 object(s) allocated from:", a, "known_leak")
    reachable = (entry("Still reachable: 320 byte(s) in 5 object(s) allocated from:", a, "intentional_cache") +
                 entry("Still reachable: 100 byte(s) in 1 object(s) allocated from:", a, "known_leak"))
    lost = (entry("Direct leak of 999 byte(s) in 3 object(s) allocated from:", a, "new_leak") +
            entry("Direct leak of 400 byte(s) in 4 object(s) allocated from:", a, "known_leak") +
            entry("Indirect leak of 300 byte(s) in 3 object(s) allocated from:", a, "known_leak"))
    for kinds, want in [("all", lost + possible + reachable), ("definite,indirect,possible,reachable", lost + possible + reachable),
                        ("reachable,possible", possible + reachable), ("indirect", lost[-4:]), ("none", [])]:
        p = hd("leaks", "--show-kinds", kinds, snap)
        eq(p.returncode, 0, f"--show-kinds {kinds}: exit status")
        eq(p.stdout.splitlines(), want + [CLASSIFIED_SUMMARY], f"--show-kinds {kinds}")
    for bad in ("lost", "definite,", "", "all,,none"):
        p = hd("leaks", "--show-kinds", bad, snap)
        eq(p.returncode, 2, f"--show-kinds '{bad}': exit status")
        eq(p.stderr.splitlines()[0], "heapdelta: --show-kinds takes definite, indirect, possible and reachable, separated "
                                     f"by commas, or all or none, not '{bad}'", f"--show-kinds '{bad}': message")
    p = hd("check", "--show-kinds", "all", "--max-leaked", "1", snap)
    eq((p.returncode, p.stderr.splitlines()[0]), (2, "heapdelta: option '--show-kinds' belongs to 'heapdelta leaks'"),
       "check --show-kinds")
    p = hd("leaks", "--max-lost", "1", snap)
    eq((p.returncode, p.stderr.splitlines()[0]), (2, "heapdelta: option '--max-lost' belongs to 'heapdelta check'"),
       "leaks --max-lost")


@test
def leaks_json_gives_each_entry_its_kind_and_the_totals_by_kind():
    d = tmpdir()
    snap, _, _ = write_process(d)
    p = hd("leaks", "--format", "json", "--show-kinds", "all", snap)
    eq(p.returncode, 0, "exit status")
    eq(p.stderr, CLASSIFIED_SUMMARY + "\n", "summary on stderr")
    r = json.loads(p.stdout)
    eq([(s["kind"], s["function"], s["size"], s["count"]) for s in r["sites"]],
       [("definite", "new_leak", 999, 3), ("definite", "known_leak", 400, 4), ("indirect", "known_leak", 300, 3),
        ("possible", "known_leak", 200, 2), ("reachable", "intentional_cache", 320, 5), ("reachable", "known_leak", 100, 1)],
       "entries")
    eq(r["kinds"], {"definite": {"size": 1399, "count": 7}, "indirect": {"size": 300, "count": 3},
                    "possible": {"size": 200, "count": 2}, "reachable": {"size": 420, "count": 6},
                    "unclassified": {"size": 0, "count": 0}}, "kinds")
    eq(r["lost"], {"size": 1699, "count": 10}, "lost")
    eq(r["leaked"], {"size": 2319, "count": 18}, "leaked: every kind")
    eq(r["reachability"], {"classified": True, "reason": None, "snapshot": None}, "reachability")
    # The default lists what is lost; the totals still count every kind.
    r = json.loads(hd("leaks", "--format", "json", snap).stdout)
    eq([s["kind"] for s in r["sites"]], ["definite", "definite", "indirect"], "default kinds")
    eq(r["kinds"]["reachable"], {"size": 420, "count": 6}, "reachable counted")


@test
def check_max_lost_gates_definitely_and_indirectly_lost_bytes():
    d = tmpdir()
    snap, _, a = write_process(d)
    p = hd("check", "--max-lost", "1699", snap)
    eq(p.returncode, 0, f"exactly at the budget: {p.stdout}")
    lines = p.stdout.splitlines()
    check("definitely and indirectly lost: 1699 B (budget 1699 B)" in lines, p.stdout)
    eq(lines[-1], "SUMMARY: heapdelta: within budget: 2319 B in 18 allocations not freed at exit, "
                  "1699 B in 10 definitely or indirectly lost, peak 2319 B", "summary within budget")
    p = hd("check", "--max-lost", "1KiB", snap)
    eq(p.returncode, 1, "over budget")
    want = (entry("Direct leak of 999 byte(s) in 3 object(s) allocated from:", a, "new_leak") +
            entry("Direct leak of 400 byte(s) in 4 object(s) allocated from:", a, "known_leak") +
            entry("Indirect leak of 300 byte(s) in 3 object(s) allocated from:", a, "known_leak") +
            ["not freed at exit: 2319 B", "definitely and indirectly lost: 1699 B (budget 1024 B): over budget",
             "peak: 2319 B", "SUMMARY: heapdelta: 2 sites over budget, +1699 B in 10 allocations"])
    eq(p.stdout.splitlines(), want, "check text over budget")
    r = json.loads(hd("check", "--max-lost", "1KiB", "--format", "json", snap).stdout)
    eq([(s["kind"], s["fails"]) for s in r["sites"]],
       [("definite", ["lost"]), ("definite", ["lost"]), ("indirect", ["lost"]), ("possible", []), ("reachable", []),
        ("reachable", [])], "failing entries")
    eq(r["budgets"]["max_lost"], 1024, "budget in JSON")
    # --max-leaked counts every kind.
    eq(hd("check", "--max-leaked", "2318", snap).returncode, 1, "--max-leaked over")
    eq(hd("check", "--max-leaked", "2319", snap).returncode, 0, "--max-leaked at")
    # run takes it too, for --check.
    p = hd("run", "--max-lost", "1", "--", "true")
    eq((p.returncode, p.stderr.splitlines()[0]), (2, "heapdelta: budget and report options need --check"),
       "run --max-lost without --check")


@test
def without_reachability_leaks_reports_as_before_and_says_why():
    for reach, why in [(None, "no reachability data in this snapshot"),
                       ((5, {}), "the exit came through _exit (or a fatal signal), where threads cannot be stopped safely"),
                       ((1, {}), "turned off (HEAPDELTA_REACH=0)"),
                       ((99, {}), "reachability status 99, unknown to this heapdelta")]:
        d = tmpdir()
        snap, _, a = write_process(d, reach=reach)
        p = hd("leaks", snap)
        eq((p.returncode, p.stderr), (0, ""), f"{why}: exit status and stderr")
        want = (entry("1000 bytes in 10 allocations not freed at exit, allocated from:", a, "known_leak") +
                entry("999 bytes in 3 allocations not freed at exit, allocated from:", a, "new_leak") +
                entry("320 bytes in 5 allocations not freed at exit, allocated from:", a, "intentional_cache") +
                [f"Not classified by reachability: {why}",
                 "SUMMARY: heapdelta: 2319 bytes in 18 allocations not freed at exit"])
        eq(p.stdout.splitlines(), want, f"{why}: leaks text")
        eq(hd("leaks", "--show-kinds", "definite", snap).stdout, p.stdout, f"{why}: --show-kinds lists them all")
        r = json.loads(hd("leaks", "--format", "json", snap).stdout)
        eq([(s["kind"], s["size"]) for s in r["sites"]], [("unclassified", 1000), ("unclassified", 999), ("unclassified", 320)],
           f"{why}: JSON kinds")
        eq((r["lost"], r["reachability"]), (None, {"classified": False, "reason": why, "snapshot": snap}),
           f"{why}: JSON lost and reachability")
        eq(r["kinds"]["unclassified"], {"size": 2319, "count": 18}, f"{why}: JSON unclassified")
        p = hd("check", "--max-lost", "1GiB", snap)
        eq((p.returncode, p.stdout, p.stderr),
           (2, "", f"heapdelta: --max-lost: '{snap}' is not classified by reachability: {why}\n"),
           f"{why}: --max-lost is an error, not a pass")
        p = hd("check", "--max-leaked", "1", snap)
        eq(p.returncode, 1, f"{why}: --max-leaked gates as before")
        check("1000 bytes in 10 allocations not freed at exit, allocated from:" in p.stdout.splitlines(), p.stdout)
        check(not [l for l in p.stdout.splitlines() if "lost" in l or "classified" in l], p.stdout)


@test
def a_process_not_classified_beside_a_classified_one_is_named():
    d = tmpdir()
    write_process(d, pid=1001)
    write_process(d, pid=1002, reach=None, stacks={3: ("new_leak", 999, 3)})
    p = hd("leaks", d)
    eq(p.returncode, 0, "exit status")
    lines = p.stdout.splitlines()
    check("999 bytes in 3 allocations not freed at exit, allocated from:" in lines, p.stdout)
    eq(lines[-2], "Not classified by reachability in 1 of 2 processes (pid 1002): no reachability data in this snapshot",
       "reason line")
    eq(lines[-1], CLASSIFIED_SUMMARY + ", not classified 999 bytes in 3 blocks", "summary")


@test
def suppressed_entries_are_counted_by_kind():
    d = tmpdir()
    snap, _, a = write_process(d)
    supp = os.path.join(d, "supp")
    with open(supp, "w") as f:
        f.write("leak:known_leak\n")
    p = hd("leaks", "--suppressions", supp, "--print-suppressions", "--show-kinds", "all", snap)
    eq(p.returncode, 0, "exit status")
    want = (entry("Direct leak of 999 byte(s) in 3 object(s) allocated from:", a, "new_leak") +
            entry("Still reachable: 320 byte(s) in 5 object(s) allocated from:", a, "intentional_cache") +
            ["-----------------------------------------------------", "Suppressions used:", "  count      bytes template",
             "      1        400 leak:known_leak (definitely lost)", "      1        300 leak:known_leak (indirectly lost)",
             "      1        200 leak:known_leak (possibly lost)", "      1        100 leak:known_leak (still reachable)",
             "-----------------------------------------------------",
             "SUMMARY: heapdelta: definitely lost 999 bytes in 3 blocks, indirectly lost 0 bytes in 0 blocks, possibly lost "
             "0 bytes in 0 blocks, still reachable 320 bytes in 5 blocks (suppressed: definitely lost 400 bytes in 4 blocks, "
             "indirectly lost 300 bytes in 3 blocks, possibly lost 200 bytes in 2 blocks, still reachable 100 bytes in 1 blocks)"])
    eq(p.stdout.splitlines(), want, "leaks with a suppression")
    r = json.loads(hd("leaks", "--suppressions", supp, "--format", "json", snap).stdout)
    eq(r["suppressed"]["kinds"]["indirect"], {"size": 300, "count": 3}, "JSON suppressed by kind")
    eq([(s["kind"], s["suppressed_by"]) for s in r["sites"]],
       [("definite", None), ("definite", "known_leak"), ("indirect", "known_leak")], "JSON entries shown")
    eq(hd("check", "--max-lost", "999", "--suppressions", supp, snap).returncode, 0, "suppressed lost bytes do not count")


@test
def a_baseline_with_kinds_tolerates_the_same_kinds_and_an_older_one_the_same_sites():
    d = tmpdir()
    snap, _, _ = write_process(d)
    base = os.path.join(d, "heap.baseline")
    eq(hd("check", "--write-baseline", base, snap).returncode, 0, "write baseline")
    lines = open(base).read().splitlines()
    eq(lines[0], "# heapdelta baseline 2 nolines", "format 2 header")
    eq(sorted(l.split()[1:4] for l in lines[2:]),
       sorted([["definite", "999", "3"], ["definite", "400", "4"], ["indirect", "300", "3"], ["possible", "200", "2"],
               ["reachable", "320", "5"], ["reachable", "100", "1"]]), "entries with kinds")
    p = run([HD, "check", "--baseline", base, snap], cwd=ROOT)
    eq(p.returncode, 0, f"the same snapshot passes: {p.stdout}")
    check(re.search(r"^baseline: unchanged known_leak tests/fixtures/leaky\.c:%d: 300 bytes in 3 allocations, indirectly lost "
                    r"\(baseline 300 bytes\) \[[0-9a-f]{16}\]$" % markers("leaky.c")["known_leak"], p.stdout, re.M), p.stdout)
    # The same bytes, now all definitely lost: the definitely lost entry grew, the other kinds are gone.
    d2 = tmpdir()
    moved = {1: ((1000, 10), (0, 0), (0, 0), (0, 0)), 2: REACH[2], 3: REACH[3]}
    snap2, _, _ = write_process(d2, reach=(0, moved))
    r = json.loads(hd("check", "--baseline", base, "--format", "json", snap2).stdout)
    eq([(s["kind"], s["function"], s["baseline"]) for s in r["sites"]],
       [("definite", "known_leak", "grew"), ("definite", "new_leak", "unchanged"), ("reachable", "intentional_cache", "unchanged")],
       "states by kind")
    eq(sorted((g["kind"], g["baseline_size"]) for g in r["gone"]), [("indirect", 300), ("possible", 200), ("reachable", 100)],
       "gone by kind")
    eq(hd("check", "--baseline", base, snap2).returncode, 1, "fails")
    # A baseline without kinds (written from a snapshot not classified)
    # holds each site's entries together.
    d3 = tmpdir()
    snap3, _, _ = write_process(d3, reach=None)
    old = os.path.join(d3, "old.baseline")
    eq(hd("check", "--write-baseline", old, snap3).returncode, 0, "write a baseline without kinds")
    eq(open(old).readline(), "# heapdelta baseline 1 nolines\n", "format 1 header")
    p = hd("check", "--baseline", old, snap)
    eq(p.returncode, 0, f"an older baseline passes the classified snapshot: {p.stdout}")
    p = hd("check", "--baseline", base, snap3)
    eq(p.returncode, 0, f"a baseline with kinds passes the snapshot not classified: {p.stdout}")
    eq(hd("check", "--baseline", old, snap2).returncode, 0, "kinds moving inside a site pass an older baseline")
    bad = os.path.join(d, "bad.baseline")
    with open(bad, "w") as f:
        f.write("# heapdelta baseline 2 nolines\n35e98cfb1bfa11d9 lost 10 1 f x.c:1\n")
    p = hd("check", "--baseline", bad, snap)
    eq((p.returncode, p.stderr), (2, f"heapdelta: '{bad}': line 2: expected 'FINGERPRINT KIND BYTES COUNT SITE'\n"),
       "an unknown kind in a baseline")


@test
def junit_sarif_and_github_annotations_name_the_kind():
    import jsonschema
    d = tmpdir()
    snap, _, _ = write_process(d)
    junit = os.path.join(d, "report.xml")
    p = hd("check", "--max-lost", "1", "--format", "junit", "--output", junit, snap)
    eq(p.returncode, 1, "over budget")
    v = run(["xmllint", "--noout", "--schema", os.path.join(ROOT, "tests/data/JUnit.xsd"), junit])
    eq(v.returncode, 0, f"xmllint: {v.stderr}")
    xml = open(junit).read()
    check('tests="7" failures="4"' in xml, "the budget and six entries, four failing")
    check('<failure type="max-lost" message="Indirect leak of 300 byte(s) in 3 object(s)">' in xml, xml)
    check(re.search(r'<testcase classname="heapdelta.site" name="intentional_cache \S+leaky.c:\d+ \(still reachable\) '
                    r'\[[0-9a-f]{16}\]" time="0"/>', xml), xml)
    p = hd("check", "--max-lost", "1", "--format", "sarif", snap)
    eq(p.returncode, 1, "sarif exit status")
    sarif = json.loads(p.stdout)
    jsonschema.Draft4Validator(json.load(open(os.path.join(ROOT, "tests/data/sarif-schema-2.1.0.json")))).validate(sarif)
    eq([(r["message"]["text"], r["properties"]["kind"]) for r in sarif["runs"][0]["results"]],
       [("Direct leak of 999 byte(s) in 3 object(s)", "definite"), ("Direct leak of 400 byte(s) in 4 object(s)", "definite"),
        ("Indirect leak of 300 byte(s) in 3 object(s)", "indirect")], "SARIF results")
    p = run([HD, "check", "--max-lost", "1", "--format", "github", snap], cwd=ROOT)
    eq(p.returncode, 1, "github exit status")
    m = markers("leaky.c")
    eq(p.stdout.splitlines(),
       [f"::error file=tests/fixtures/leaky.c,line={m['new_leak']},title=heapdelta::Direct leak of 999 byte(s) in 3 object(s) in new_leak",
        f"::error file=tests/fixtures/leaky.c,line={m['known_leak']},title=heapdelta::Direct leak of 400 byte(s) in 4 object(s) in known_leak",
        f"::error file=tests/fixtures/leaky.c,line={m['known_leak']},title=heapdelta::Indirect leak of 300 byte(s) in 3 object(s) in known_leak",
        "SUMMARY: heapdelta: 2 sites over budget, +1699 B in 10 allocations"], "annotations")


def reach_error(d, payload=None, reach=None):
    snap, _, _ = write_process(d, reach=reach, reach_bytes=payload)
    p = hd("leaks", snap)
    check(p.returncode == 2 and p.stdout == "" and len(p.stderr.splitlines()) == 1 and
          p.stderr.startswith(f"heapdelta: '{snap}': byte "), f"status {p.returncode}, stdout {p.stdout!r}, stderr {p.stderr!r}")
    return p.stderr.split(": ", 3)[3].rstrip("\n")


@test
def a_malformed_reach_section_is_one_error_line_naming_the_file():
    good = gen_snapshots.reach_payload(0, REACH)
    eq(reach_error(tmpdir(), good[:len(good) - 3]), "bad varint in a reachability record's count", "records cut short")
    eq(reach_error(tmpdir(), good[:30]), "truncated: 6 bytes left, 8 needed, reading reachability block bytes", "header cut short")
    eq(reach_error(tmpdir(), good + b"\0"), "section has bytes after its last record", "a byte too many")
    eq(reach_error(tmpdir(), bytes(range(7, 250, 3))), "reachability record count 1886218855 does not fit in the 45 bytes left",
       "garbage")
    eq(reach_error(tmpdir(), good[:32] + struct.pack("<I", 1 << 30) + good[36:]),
       f"reachability record count {1 << 30} does not fit in the {len(good) - 36} bytes left", "a huge count")
    eq(reach_error(tmpdir(), reach=(0, {**REACH, 9: ((0, 0),) * 4})), "REACH names stack 9, which no file of its chain has",
       "an unknown stack")
    eq(reach_error(tmpdir(), reach=(0, {**REACH, 2: ((0, 0), (0, 0), (0, 0), (321, 5))})),
       "REACH's kinds of stack 2 do not add up to its 320 live bytes in 5 blocks", "kinds that do not add up")
    eq(reach_error(tmpdir(), reach=(0, {1: REACH[1], 3: REACH[3]})),
       "stack 2 has live blocks, but REACH has no record of it", "a stack without a record")
    eq(reach_error(tmpdir(), struct.pack("<I", 3) + good[4:]), "REACH has records, but its status says nothing was classified",
       "records under a status")
    v = gen_snapshots.varint
    twice = good[:32] + struct.pack("<I", 2) + b"".join(v(delta) + b"".join(v(x) for k in REACH[2] for x in k) for delta in (2, 0))
    eq(reach_error(tmpdir(), twice), "reachability records' stack ids not in increasing order", "ids not increasing")
