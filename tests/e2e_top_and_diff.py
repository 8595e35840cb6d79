"""End-to-end tests: `heapdelta top` and `heapdelta diff`.

tracemalloc's text layout and order exactly, --limit; diff's numbers and
order; the traceback view with inline chains and source lines; filters
(--include, --exclude, --focus, --ignore, --module, --by); the analyzer
built with ASan and UBSan gives the same reports.
"""
from tracemalloc import _format_size

from e2e import *


@test
def top_text_is_tracemalloc_format_exactly():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "sites")], d)
    exp = expectations(p.stdout)
    snap = snaps_of(d, "exit")[0]
    marks = markers("sites.c")
    src = os.path.join(FIX, "sites.c")
    rows = [(size, count, marks[name]) for name, (size, count) in exp.items()
            if count]
    # tracemalloc's order: size, count, then the frame, all descending.
    rows.sort(key=lambda r: (r[0], r[1], r[2]), reverse=True)
    want = [stat_line(f"{src}:{line}", size, count) for size, count, line in rows]
    total_size = sum(r[0] for r in rows)
    total_count = sum(r[1] for r in rows)
    want.append(f"Total: size={_format_size(total_size, False)}, count={total_count}")
    out = hd("top", snap, "--limit", "0", "--include", "*/sites.c")
    eq(out.returncode, 0, "exit status")
    lines = out.stdout.splitlines()
    eq(lines[:-1], want, "top text")
    check(re.fullmatch(r"Peak: \d+(\.\d)? (B|KiB|MiB)", lines[-1]), f"peak line {lines[-1]!r}")
    # --limit: the rest is summarized on one line.
    out = hd("top", snap, "--limit", "2", "--include", "*/sites.c").stdout.splitlines()
    eq(out[:2], want[:2], "first two lines with --limit 2")
    rest = rows[2:]
    eq(out[2], f"{len(rest)} other: size={_format_size(sum(r[0] for r in rest), False)}, "
               f"count={sum(r[1] for r in rest)}", "other line")


@test
def diff_puts_the_grown_lines_on_top_with_exact_numbers():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "grow")], d)
    eq(p.returncode, 0, "fixture exit status")
    check("api 0" in p.stdout, p.stdout)
    before, after = snaps_of(d, "api")
    exp = {k: v for k, v in expectations(p.stdout).items()}
    marks = markers("grow.c")
    src = os.path.join(FIX, "grow.c")
    r = json.loads(hd("diff", before, after, "--limit", "0", "--format", "json").stdout)
    top4 = r["stats"][:4]
    order = sorted(exp.items(), key=lambda kv: abs(kv[1][0]), reverse=True)
    for st, (name, (sdiff, cdiff, size, count)) in zip(top4, order):
        eq((st["file"], st["line"]), (src, marks[name]), f"site of {name}")
        eq((st["size_diff"], st["count_diff"], st["size"], st["count"]), (sdiff, cdiff, size, count),
           f"{name} numbers")
    text = hd("diff", before, after, "--limit", "4").stdout.splitlines()
    want = [stat_line(f"{src}:{marks[name]}", size, count, sdiff, cdiff)
            for name, (sdiff, cdiff, size, count) in order]
    eq(text[:4], want, "diff text")
    # The inlined allocation: the inlined function's line, then its caller.
    leaf = [s for s in r["stats"] if s["line"] == marks["inl_leaf"]][0]
    tb = leaf["traceback"]
    eq((tb[0]["line"], tb[0]["function"], tb[0]["inlined"]), (marks["inl_leaf"], "make_record", True), "inline frame")
    eq((tb[1]["line"], tb[1]["function"], tb[1]["inlined"]), (marks["inl_caller"], "add_records", False), "caller frame")


@test
def traceback_view_shows_the_inline_chain_and_source_lines():
    d = tmpdir()
    traced([os.path.join(BIN, "grow")], d)
    marks = markers("grow.c")
    src = os.path.join(FIX, "grow.c")
    out = hd("top", snaps_of(d, "exit")[0], "--by", "traceback", "--include", f"{src}:{marks['inl_leaf']}").stdout
    lines = out.splitlines()
    eq(lines[0], stat_line(f"{src}:{marks['inl_leaf']}", 1000, 4), "first line")
    eq(lines[1], f'  File "{src}", line {marks["inl_leaf"]}, in make_record (inlined)', "inline frame")
    eq(lines[2], "    return malloc(n); /* @site inl_leaf */", "source line")
    eq(lines[3], f'  File "{src}", line {marks["inl_caller"]}, in add_records', "caller frame")


@test
def filters_follow_tracemalloc_semantics():
    d = tmpdir()
    traced([os.path.join(BIN, "grow")], d)
    snap = snaps_of(d, "exit")[0]
    marks = markers("grow.c")
    only = top_json(snap, "--include", f"*grow.c:{marks['grow_b']}")
    eq([(s["line"], s["size"]) for s in only["stats"]], [(marks["grow_b"], 21000)], "include with line")
    eq(only["total"], {"size": 21000, "count": 7}, "total after filter")
    excl = top_json(snap, "--exclude", "*grow.c")
    eq([s for s in excl["stats"] if s["file"] and s["file"].endswith("grow.c")], [], "exclude")
    # All frames: the caller's file also matches the inlined stack.
    focus = top_json(snap, "--focus", "^add_records$")
    eq([(s["line"], s["size"]) for s in focus["stats"]], [(marks["inl_leaf"], 1000)], "focus on a caller")
    ign = top_json(snap, "--ignore", "^add_records$")
    check(all(s["line"] != marks["inl_leaf"] for s in ign["stats"]), "ignore")
    # The first printf's line holds standard output's buffer, which glibc
    # allocates for it: a pipe's st_blksize when under BUFSIZ (8192).
    r, w = os.pipe()
    blk = os.fstat(w).st_blksize
    os.close(r)
    os.close(w)
    buf = blk if 0 < blk < 8192 else 8192
    eq(by_site(top_json(snap), "grow.c")[marks["stdout_buffer"]]["size"], buf, "standard output's buffer")
    by_fn = top_json(snap, "--by", "function", "--include", "*grow.c")
    eq(sorted((s["key"], s["size"]) for s in by_fn["stats"]),
       [("main", 50000 + 21000 + 1500 + buf), ("make_record", 1000)], "by function")
    by_file = top_json(snap, "--by", "filename", "--include", "*grow.c")
    eq([(s["key"], s["size"]) for s in by_file["stats"]], [(os.path.join(FIX, "grow.c"), 73500 + buf)], "by filename")
    mod = top_json(snap, "--module", "grow")
    eq(sum(s["size"] for s in mod["stats"]), 73500 + buf, "module filter")


@test
def the_analyzer_under_asan_gives_the_same_reports():
    d = tmpdir()
    traced([os.path.join(BIN, "grow")], d)
    traced([os.path.join(BIN, "sites_cpp")], d)
    snaps = snaps_of(d, "api") + snaps_of(d, "exit")
    asan = os.path.join(BIN, "heapdelta_asan")
    cmds = [["top", snaps[-1], "--limit", "0"], ["top", snaps[-1], "--by", "traceback"],
            ["top", snaps[-2], "--cumulative", "--format", "json"], ["diff", snaps[0], snaps[1], "--by", "function"],
            ["info", *snaps]]
    for cmd in cmds:
        a, b = hd(*cmd), run([asan, *cmd])
        eq(b.returncode, 0, f"asan {cmd}: {b.stderr[-2000:]}")
        eq(b.stdout, a.stdout, f"output of {cmd}")
