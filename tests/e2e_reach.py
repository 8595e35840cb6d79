"""End-to-end tests: reachability at exit (the shim's REACH section), with
valgrind's memcheck as the referee.

tests/fixtures/reach.c leaves blocks in every state memcheck tells apart,
each from its own marked line; the same program runs under valgrind
(--leak-check=full --show-leak-kinds=all --xml=yes) and under heapdelta,
and the bytes and blocks of every kind must agree line by line.
"""
import xml.etree.ElementTree as ET

from e2e import *

REACH_TAG = 11
VG_KINDS = {"Leak_DefinitelyLost": "definite", "Leak_IndirectlyLost": "indirect",
            "Leak_PossiblyLost": "possible", "Leak_StillReachable": "reachable"}
SRC = "reach.c"


def reach_section(snap):
    """(status, threads, ns, root bytes, block bytes, {id: [8 counters]})
    of an exit snapshot's REACH section, read here from FORMAT.md."""
    _, secs = snapshot_sections(snap)
    check(REACH_TAG in secs, f"{snap}: no REACH section")
    p = secs[REACH_TAG]
    status, threads, ns, roots, blocks, n = struct.unpack_from("<IIQQQI", p, 0)
    pos, last, recs = 36, 0, {}
    for _ in range(n):
        d, pos = varint(p, pos)
        last += d
        vals = []
        for _ in range(8):
            v, pos = varint(p, pos)
            vals.append(v)
        recs[last] = vals
    eq(pos, len(p), "REACH payload length")
    return status, threads, ns, roots, blocks, recs


def valgrind_by_line(args):
    """{(kind, line): [bytes, blocks]} from memcheck's loss records, by the
    innermost frame in reach.c; and the program's exit status."""
    if not shutil.which("valgrind"):
        skip("valgrind is not installed (scripts/deps.sh test installs it)")
    d = tmpdir()
    xml = os.path.join(d, "vg.xml")
    p = run(["valgrind", "--leak-check=full", "--show-leak-kinds=all", "--xml=yes", f"--xml-file={xml}",
             os.path.join(BIN, "reach"), *args], timeout=300)
    out = {}
    for e in ET.parse(xml).getroot().findall("error"):
        kind = VG_KINDS.get(e.findtext("kind"))
        if not kind:
            continue
        x = e.find("xwhat")
        size, blocks = int(x.findtext("leakedbytes")), int(x.findtext("leakedblocks"))
        m = re.search(r"\((\d+) direct, \d+ indirect\)", x.findtext("text"))
        if m:   # a definitely lost record counts the blocks it holds too
            size = int(m.group(1))
        line = next((int(f.findtext("line")) for f in e.find("stack").findall("frame")
                     if f.findtext("file") == SRC), None)
        acc = out.setdefault((kind, line), [0, 0])
        acc[0] += size
        acc[1] += blocks
    return out, p


def heapdelta_by_line(outdir):
    """The same from `heapdelta leaks --show-kinds all --format json`."""
    p = hd("leaks", "--show-kinds", "all", "--format", "json", outdir)
    eq(p.returncode, 0, f"leaks exit status ({p.stderr.strip()})")
    rep = json.loads(p.stdout)
    check(rep["reachability"]["classified"], f"not classified: {rep['reachability']}")
    out = {}
    for s in rep["sites"]:
        line = None
        for f in s["traceback"]:
            if f["file"] and os.path.basename(f["file"]) == SRC:
                line = f["line"]
                break
        acc = out.setdefault((s["kind"], line), [0, 0])
        acc[0] += s["size"]
        acc[1] += s["count"]
    return out, rep


def agree_with_valgrind(mode, want):
    """Run `reach MODE` under valgrind and under heapdelta: both must give
    `want` ({(kind, line): [bytes, blocks]}) on the marked lines, and the
    same blocks of every kind on every line (bytes may differ off the marked
    lines: the threads' TLS vectors are one entry larger per module the
    shim loads).  Returns heapdelta's snapshots."""
    vg, vp = valgrind_by_line([mode])
    eq(vp.returncode, 0, "exit status under valgrind")
    d = tmpdir()
    p, snaps = traced([os.path.join(BIN, "reach"), mode], d)
    eq(p.returncode, 0, f"exit status under heapdelta ({p.stderr.strip()})")
    ours, _ = heapdelta_by_line(d)
    marked = set(markers(SRC).values())
    for name, got in (("valgrind", vg), ("heapdelta", ours)):
        eq({k: v for k, v in got.items() if k[1] in marked}, want, f"{name}'s records on the marked lines")
    eq({k: v[1] for k, v in ours.items()}, {k: v[1] for k, v in vg.items()}, "blocks of every kind by line")
    return snaps


@test
def every_kind_agrees_with_valgrind_line_by_line():
    site = markers(SRC)
    # The marked lines: bytes and blocks of every kind, exactly.
    want = {
        ("reachable", site["tree_node"]): [12 * 32, 12],
        ("indirect", site["tree_node"]): [2 * 32, 2],
        ("definite", site["tree_node"]): [32, 1],
        ("definite", site["cycle"]): [48, 1],
        ("indirect", site["cycle"]): [2 * 48, 2],
        ("possible", site["interior"]): [100, 1],
        ("reachable", site["length64"]): [64, 1],
        ("reachable", site["global"]): [72, 1],
        ("reachable", site["tls"]): [88, 1],
        ("definite", site["lost"]): [200, 1],
        ("reachable", site["thread_stack"]): [120, 1],
        ("reachable", site["register"]): [136, 1],
        ("reachable", site["main_stack"]): [56, 1],
    }
    snaps = agree_with_valgrind("cases", want)
    # Each stack's kinds add up to its live counters (the reader checks
    # that too); two threads were stopped.
    status, threads, _, roots, blocks, recs = reach_section(snaps[-1])
    eq((status, threads), (0, 2), "status, threads stopped")
    info = hd("info", snaps[-1]).stdout
    check(re.search(r"^  reachability: classified in [0-9.]+ ms, 2 threads stopped, \d+ bytes of roots and \d+ of blocks "
                    r"scanned$", info, re.M), info)
    check(roots > 0 and blocks > 0, f"bytes scanned: roots {roots}, blocks {blocks}")
    _, stacks = read_snapshot(snaps[-1])
    for sid, k in recs.items():
        eq([k[0] + k[2] + k[4] + k[6], k[1] + k[3] + k[5] + k[7]], stacks[sid][1:3], f"stack {sid}'s kinds")


@test
def leaks_shows_lost_blocks_by_default_and_check_max_lost_gates_on_them():
    d = tmpdir()
    traced([os.path.join(BIN, "reach"), "cases"], d)
    p = hd("leaks", d)
    eq(p.returncode, 0, "leaks exit status")
    lines = p.stdout.splitlines()
    # The possibly lost bytes include the threads' TLS vectors, whose size
    # depends on the modules loaded: the rest is exact.
    check(re.fullmatch(r"SUMMARY: heapdelta: definitely lost 280 bytes in 3 blocks, indirectly lost 160 bytes in "
                       r"4 blocks, possibly lost \d+ bytes in 3 blocks, still reachable 920 bytes in 18 blocks",
                       lines[-1]), lines[-1])
    check("Direct leak of 200 byte(s) in 1 object(s) allocated from:" in lines, p.stdout)
    check(not any(line.startswith("Still reachable") for line in lines), "reachable blocks hidden by default")
    eq(hd("check", "--max-lost", "0", d).returncode, 1, "check --max-lost 0 on lost blocks")
    eq(hd("check", "--max-lost", "440", d).returncode, 0, "check --max-lost at the lost bytes")
    c = tmpdir()
    p, _ = traced([os.path.join(BIN, "reach"), "cache"], c)
    eq(p.returncode, 0, "cache exit status")
    p = hd("check", "--max-lost", "0", c)
    eq(p.returncode, 0, f"a cache kept until exit is not lost: {p.stdout}")


@test
def sixteen_threads_allocating_while_main_exits_are_stopped_and_classified():
    for i in range(5):
        d = tmpdir()
        p, snaps = traced([os.path.join(BIN, "reach"), "busy"], d, timeout=60)
        eq(p.returncode, 0, f"run {i}: exit status ({p.stderr.strip()})")
        status, threads, ns, _, _, recs = reach_section(snaps[-1])
        eq((status, threads), (0, 16), f"run {i}: status, threads stopped")
        _, stacks = read_snapshot(snaps[-1])
        for sid, k in recs.items():
            eq([k[0] + k[2] + k[4] + k[6], k[1] + k[3] + k[5] + k[7]], stacks[sid][1:3], f"run {i}: stack {sid}")
        live = {sid for sid, s in stacks.items() if s[2]}
        eq(set(recs), live, f"run {i}: every stack with live blocks is classified")
        eq(hd("leaks", d).returncode, 0, f"run {i}: leaks reads it")


@test
def classification_skipped_says_why_and_never_hangs_the_exit():
    cases = [
        (["blocked"], {}, 4, "a thread could not be stopped"),
        (["quick"], {}, 5, "the exit came through _exit"),
        (["cases"], {"HEAPDELTA_REACH": "0"}, 1, "turned off"),
    ]
    for args, env, status, reason in cases:
        d = tmpdir()
        start = time.monotonic()
        p, snaps = traced([os.path.join(BIN, "reach"), *args], d, env={**os.environ, **env}, timeout=60)
        took = time.monotonic() - start
        eq(p.returncode, 0, f"{args}: exit status")
        check(took < 30, f"{args}: took {took:.1f} s")
        got = reach_section(snaps[-1])
        eq((got[0], got[5]), (status, {}), f"{args}: status, records")
        check(f"  reachability: not classified: {reason}" in hd("info", snaps[-1]).stdout, f"{args}: info")
        out = hd("leaks", d)
        eq(out.returncode, 0, f"{args}: leaks exit status")
        check(any(reason in line for line in out.stdout.splitlines()), f"{args}: reason line in {out.stdout}")
        eq(hd("check", "--max-lost", "0", d).returncode, 2, f"{args}: --max-lost without a classification")


@test
def a_thread_on_a_stack_the_program_allocated_is_scanned_from_its_stack_pointer():
    site = markers(SRC)
    agree_with_valgrind("ownstack", {("reachable", site["thread_stack"]): [120, 1],
                                     ("reachable", site["own_stack"]): [256 << 10, 1]})


@test
def a_thread_with_the_smallest_stack_takes_a_snapshot_and_exits_the_process():
    # The snapshot writer and the exit's scan keep their buffers off the
    # stack: both once overflowed a stack of PTHREAD_STACK_MIN (SIGSEGV).
    site = markers(SRC)
    for env in ({}, {"HEAPDELTA_REACH": "0"}):
        d = tmpdir()
        p, snaps = traced([os.path.join(BIN, "reach"), "smallstack"], d, env={**os.environ, **env})
        eq(p.returncode, 0, f"{env}: exit status ({p.stderr.strip()})")
        eq([s.rsplit(".", 2)[-2] for s in snaps], ["api", "exit"], f"{env}: snapshots")
        check_sites(top_json(snaps[-1]), SRC, {"small_stack": (72, 1)})
        status = reach_section(snaps[-1])[0]
        eq(status, 1 if env else 0, f"{env}: reach status")
