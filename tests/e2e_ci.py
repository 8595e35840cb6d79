"""End-to-end tests: heapdelta in CI.

`leaks`, `check` with budgets, suppressions and baselines, `run --check`,
growth budgets, JUnit and SARIF against their schemas, GitHub annotations,
and the plain CI snippet (scripts/ci/any-ci.sh).
"""
from e2e import *


def leaky_run(*args, env=None):
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "leaky"), *args], d, env=env)
    return d, p


LEAKY_SUMMARY = ("SUMMARY: heapdelta: definitely lost 1000 bytes in 10 blocks, indirectly lost 0 bytes in 0 blocks, "
                 "possibly lost 0 bytes in 0 blocks, still reachable 320 bytes in 5 blocks")


@test
def leaks_lists_what_was_lost_by_stack_and_everything_not_freed_without_reachability():
    d, _ = leaky_run()
    p = hd("leaks", d)
    eq(p.returncode, 0, "exit status")
    lines = p.stdout.splitlines()
    eq(lines[0], "Direct leak of 1000 byte(s) in 10 object(s) allocated from:", "first entry")
    check(frame_line_re(0, "known_leak", "leaky.c", "known_leak").match(lines[1]), lines[1])
    check(not [l for l in lines if "intentional_cache" in l], f"the cache, still reachable, is not listed:\n{p.stdout}")
    eq(lines[-1], LEAKY_SUMMARY, "summary")
    lines = hd("leaks", "--show-kinds", "all", d).stdout.splitlines()
    i = lines.index("Still reachable: 320 byte(s) in 5 object(s) allocated from:")
    check(frame_line_re(0, "intentional_cache", "leaky.c", "intentional_cache").match(lines[i + 1]), lines[i + 1])
    # Without reachability, every block not freed, largest first, and why.
    d, _ = leaky_run(env={**os.environ, "HEAPDELTA_REACH": "0"})
    p = hd("leaks", d)
    eq(p.returncode, 0, "exit status")
    lines = p.stdout.splitlines()
    eq(lines[0], "1000 bytes in 10 allocations not freed at exit, allocated from:", "first site")
    check(frame_line_re(0, "known_leak", "leaky.c", "known_leak").match(lines[1]), lines[1])
    i = lines.index("320 bytes in 5 allocations not freed at exit, allocated from:")
    check(frame_line_re(0, "intentional_cache", "leaky.c", "intentional_cache").match(lines[i + 1]), lines[i + 1])
    eq(lines[-2], "Not classified by reachability: turned off (HEAPDELTA_REACH=0)", "why")
    eq(lines[-1], "SUMMARY: heapdelta: 1320 bytes in 15 allocations not freed at exit", "summary")


@test
def check_fails_over_budget_and_passes_with_a_suppression():
    d, _ = leaky_run()
    p = hd("check", "--max-leaked", "1KiB", d)
    eq(p.returncode, 1, "over budget")
    lines = p.stdout.splitlines()
    eq(lines[-1], "SUMMARY: heapdelta: 2 sites over budget, +1320 B in 15 allocations", "summary")
    check("not freed at exit: 1320 B (budget 1024 B): over budget" in lines, p.stdout)
    check("Direct leak of 1000 byte(s) in 10 object(s) allocated from:" in lines, "failing site listed")
    check("Still reachable: 320 byte(s) in 5 object(s) allocated from:" in lines, "--max-leaked counts every kind")
    p = hd("check", "--max-leaked", "1320", d)
    eq(p.returncode, 0, "exactly at the budget")
    supp = os.path.join(d, "supp.txt")
    with open(supp, "w") as f:
        f.write("# kept until exit on purpose\nleak:^intentional_cache$\n")
    p = hd("check", "--max-leaked", "1000B", "--suppressions", supp, "--print-suppressions", d)
    eq(p.returncode, 0, f"suppressed: {p.stdout}")
    out = p.stdout.splitlines()
    check("      1        320 leak:^intentional_cache$ (still reachable)" in out, p.stdout)
    eq(out[-1], "SUMMARY: heapdelta: within budget: 1000 B in 10 allocations not freed at exit, "
                "1000 B in 10 definitely or indirectly lost, peak 2320 B", "summary")
    # What is lost: the cache, still reachable, needs no suppression.
    eq(hd("check", "--max-lost", "1000", d).returncode, 0, "--max-lost at what is lost")
    eq(hd("check", "--max-lost", "999", d).returncode, 1, "--max-lost under it")
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
    for args, msg in [(["check", d], "no budget: give --max-leaked, --max-lost, --max-growth, --max-growth-per-site, --max-peak or --baseline"),
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
    check('<failure type="baseline-new" message="Direct leak of 999 byte(s) in 3 object(s) [new]">' in xml, xml)
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
                 "Direct leak of 1000 byte(s) in 10 object(s) in known_leak", "annotation")
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
