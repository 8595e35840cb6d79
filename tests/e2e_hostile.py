"""End-to-end tests: snapshots and files made to hang or crash the analyzer.

A snapshot's module map is written by the traced program, and CI analyzes
snapshots of a pull request's own code: a module path may name a FIFO, a
directory, a device or an empty file. Every command must finish at once,
show that module's frames as module+offset and warn once per module.
"""
import gzip

from e2e import *

# "At once": these commands take under 0.4 s even on a loaded machine; a
# file that makes one wait (a FIFO opened for reading) blocks it until the
# 20-second timeout.  The bound tells the two apart with room for a slow
# machine, and would still catch a wait of its own that gave up after a few
# seconds.
AT_ONCE = 5.0


def rewrite_module_paths(snap, out, paths):
    """Copy snapshot snap to out with module paths replaced ({old: new}),
    re-encoding the strings and the MODULES section's length. Only the
    section framing and the string encoding of format/FORMAT.md are relied on,
    not the layout of a module record."""
    with open(snap, "rb") as f:
        data = f.read()
    body, pos, seen = bytearray(data[:16]), 16, set()
    while pos < len(data):
        tag, reserved, length = struct.unpack_from("<IIQ", data, pos)
        payload = data[pos + 16:pos + 16 + length]
        if tag == 3:   # MODULES
            for old, new in paths.items():
                o, n = old.encode(), new.encode()
                enc_old, enc_new = struct.pack("<I", len(o)) + o, struct.pack("<I", len(n)) + n
                eq(payload.count(enc_old), 1, f"'{old}' in the module map of {snap}")
                payload = payload.replace(enc_old, enc_new)
                seen.add(old)
        body += struct.pack("<IIQ", tag, reserved, len(payload)) + payload
        pos += 16 + length
    eq(seen, set(paths), "module paths replaced")
    with open(out, "wb") as f:
        f.write(body)


def module_paths(snap):
    return [m["path"] for m in snap_info(snap)["modules"]]


def traced_copy_of_grow():
    """grow copied to a directory of its own and run there: its api
    snapshots (two) and exit snapshot, and the copy's path."""
    d = tmpdir()
    prog = os.path.join(d, "grow")
    shutil.copy(os.path.join(BIN, "grow"), prog)
    out = os.path.join(d, "out")
    p, _ = traced([prog], out)
    eq(p.returncode, 0, f"fixture exit status ({p.stderr.strip()})")
    snaps = snaps_of(out, "api") + snaps_of(out, "exit")
    eq(len(snaps), 3, "api and exit snapshots")
    return d, prog, snaps


def hostile_files(d):
    """{kind: (path, what the warning says)}: a FIFO, a directory, a
    character device, an empty regular file and a sparse one larger than
    the analyzer reads (17 GiB, no disk space)."""
    fifo, directory, empty, huge = (os.path.join(d, n) for n in ("fifo", "dir", "empty", "huge"))
    os.mkfifo(fifo)
    os.mkdir(directory)
    open(empty, "wb").close()
    with open(huge, "wb") as f:
        f.truncate(17 << 30)
    return {"fifo": (fifo, "is not a regular file"), "directory": (directory, "is not a regular file"),
            "/dev/zero": ("/dev/zero", "is not a regular file"), "empty file": (empty, "is not an ELF file"),
            "17 GiB file": (huge, "is larger than 16 GiB")}


def warning_line(path, what):
    return f"heapdelta: warning: '{path}' {what}; its frames are shown as module+offset"


def commands(a1, a2, ex, snapdir, outdir):
    """Every command that symbolizes, in every format: (argv, the file it
    writes or None, whether its output names frames as module+offset, or
    "module" when it names only their module)."""
    pb, html = os.path.join(outdir, "top.pb.gz"), os.path.join(outdir, "report.html")
    return [
        (["top", ex, "--limit", "0"], None, True),
        (["top", ex, "--by", "traceback", "--limit", "0"], None, True),
        (["top", ex, "--cumulative", "--by", "function"], None, True),
        (["top", ex, "--format", "json", "--limit", "0"], None, True),
        (["top", ex, "--format", "collapsed"], None, True),
        # pprof: a frame is an address in a mapping, never a name+offset
        (["top", ex, "--format", "pprof", "--output", pb], pb, False),
        (["diff", a1, a2, "--limit", "0"], None, True),
        (["diff", a1, a2, "--format", "json", "--limit", "0"], None, True),
        (["diff", a1, a2, "--format", "collapsed"], None, True),
        (["leaks", "--show-kinds", "all", ex], None, True),
        # leaks/check JSON frames carry no offset (gate_report.c): the module only
        (["leaks", "--show-kinds", "all", ex, "--format", "json"], None, "module"),
        (["check", "--max-leaked", "1GiB", ex], None, False),
        (["check", "--max-leaked", "1GiB", "--format", "json", ex], None, False),
        (["check", "--max-growth-per-site", "1GiB", "--format", "sarif", snapdir], None, False),
        (["trend", snapdir, "--limit", "0"], None, True),
        (["trend", snapdir, "--format", "json", "--limit", "0"], None, True),
        (["report", snapdir, "-o", html], html, True),
    ]


def run_all_quickly(cmds, want_warnings, name):
    """Run every command: each must finish at once (AT_ONCE), succeed, print
    exactly want_warnings, show name's frames as name+0x... and attribute
    nothing to grow.c, the source of the module the snapshot no longer
    names."""
    for argv, written, names_frames in cmds:
        t0 = time.monotonic()
        p = hd(*argv, timeout=20)
        took = time.monotonic() - t0
        what = " ".join(argv[:1] + [a for a in argv[1:] if a.startswith("-")])
        check(took < AT_ONCE, f"{what} took {took:.2f} s")
        eq(p.returncode, 0, f"{what} exit status (stderr: {p.stderr.strip()})")
        warnings = [l for l in p.stderr.splitlines() if "warning" in l]
        eq(sorted(warnings), sorted(want_warnings), f"{what} warnings")
        if written:
            with open(written, "rb") as f:
                out = f.read()
            out = gzip.decompress(out) if written.endswith(".gz") else out
            out = out.decode("utf-8", "replace")
        else:
            out = p.stdout
        marker = f'"module": "{name}"' if names_frames == "module" else f"{name}+0x"
        if names_frames:
            check(marker in out, f"{what}: no {marker} frame in {out[:3000]!r}")
        check("grow.c" not in out, f"{what}: grow.c attributed through a hostile module: {out[:3000]!r}")


@test
def a_module_path_naming_a_fifo_a_directory_dev_zero_an_empty_or_a_huge_file_is_refused_at_once():
    d, prog, snaps = traced_copy_of_grow()
    clean = top_json(snaps[2], "--limit", "0")
    mine = [s for s in clean["stats"] if s["traceback"][0]["module"] == "grow"]
    check(mine and all(s["file"] and s["file"].endswith("grow.c") for s in mine),
          "the clean snapshot symbolizes grow's sites to grow.c")
    for kind, (path, what) in hostile_files(d).items():
        name = os.path.basename(path)
        h = os.path.join(d, name + ".snaps")
        os.mkdir(h)
        for s in snaps:
            rewrite_module_paths(s, os.path.join(h, os.path.basename(s)), {prog: path})
        a1, a2, ex = (os.path.join(h, os.path.basename(s)) for s in snaps)
        eq(module_paths(ex)[0], path, f"{kind}: the executable's module path")
        run_all_quickly(commands(a1, a2, ex, h, d), [warning_line(path, what)], name)

        # Exactly the clean snapshot's stacks, each site as name+offset.
        r = top_json(ex, "--limit", "0")
        eq((r["total"]["size"], r["total"]["count"]), (clean["total"]["size"], clean["total"]["count"]),
           f"{kind}: total")
        want = {}
        for s in mine:
            key = f"{name}+{s['traceback'][0]['offset']}"
            size, count = want.get(key, (0, 0))
            want[key] = (size + s["size"], count + s["count"])
        got = {s["key"]: (s["size"], s["count"]) for s in r["stats"] if s["traceback"][0]["module"] == name}
        eq(got, want, f"{kind}: sites of the hostile module")
        frames = [f for s in r["stats"] for f in s["traceback"] if f["module"] == name]
        check(frames and all(f["file"] is None and f["line"] in (0, None) for f in frames),
              f"{kind}: frames of the hostile module have no file: {frames[:3]}")
        text = hd("top", ex, "--limit", "0").stdout.splitlines()
        for key, (size, count) in want.items():
            check(stat_line(key, size, count) in text, f"{kind}: {stat_line(key, size, count)!r} in\n" + "\n".join(text))


@test
def two_hostile_modules_in_one_snapshot_warn_once_each():
    d, prog, snaps = traced_copy_of_grow()
    libc = [p for p in module_paths(snaps[2]) if "/libc.so" in p]
    eq(len(libc), 1, "libc in the module map")
    files = hostile_files(d)
    fifo, directory = files["fifo"][0], files["directory"][0]
    h = os.path.join(d, "both")
    os.mkdir(h)
    for s in snaps:
        rewrite_module_paths(s, os.path.join(h, os.path.basename(s)), {prog: fifo, libc[0]: directory})
    a1, a2, ex = (os.path.join(h, os.path.basename(s)) for s in snaps)
    # libc's installed debug file (libc6-dbg), found by build-id, stands in
    # for the refused path: libc's frames then symbolize from it.
    info = snap_info(ex)["modules"]
    bid = [m["build_id"] for m in info if m["path"] == directory][0]
    dbg = f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug"
    found = os.path.isfile(dbg)
    libc_tail = f"using '{dbg}'" if found else "its frames are shown as module+offset"
    want = [warning_line(fifo, "is not a regular file"),
            f"heapdelta: warning: '{directory}' is not a regular file; {libc_tail}"]
    run_all_quickly(commands(a1, a2, ex, h, d), want, "fifo")
    r = top_json(ex, "--limit", "0")
    libc_frames = [f for s in r["stats"] for f in s["traceback"] if f["module"] == "dir"]
    if found:
        check(libc_frames and any(f["file"] for f in libc_frames), f"libc's frames from {dbg}: {libc_frames[:3]}")
    else:
        check(libc_frames and all(f["file"] is None for f in libc_frames),
              f"libc's frames as dir+offset: {libc_frames[:3]}")


@test
def a_fifo_named_like_a_snapshot_in_a_directory_is_refused_without_waiting():
    d, prog, snaps = traced_copy_of_grow()
    out = os.path.dirname(snaps[0])
    fifo = os.path.join(out, "heapdelta.1.1.exit.snap")
    os.mkfifo(fifo)
    t0 = time.monotonic()
    p = hd("leaks", out, timeout=20)
    check(time.monotonic() - t0 < AT_ONCE, f"leaks DIR with a FIFO took {AT_ONCE:g} s or more")
    eq(p.returncode, 2, f"exit status (stderr: {p.stderr.strip()})")
    eq(p.stderr.splitlines(), [f"heapdelta: '{fifo}' is not a regular file"], "stderr")


@test
def a_debug_file_that_is_a_fifo_is_refused_and_the_module_keeps_its_symbols():
    """The separate debug file found by .gnu_debuglink or by build-id, or the
    dwz alternate file named by .gnu_debugaltlink, is a FIFO."""
    for how in ("debuglink", "build-id", "dwz alternate file"):
        d = os.path.realpath(tmpdir())   # the alternate file is looked for in the real directory
        prog, dbg = os.path.join(d, "grow"), os.path.join(d, "grow.debug")
        shutil.copy(os.path.join(BIN, "grow"), prog)
        installed = None
        if how == "dwz alternate file":
            # An alternate file name and a build-id nothing has: the DWARF stays in grow.
            link = os.path.join(d, "altlink")
            with open(link, "wb") as f:
                f.write(b"grow.alt\0" + bytes(range(1, 21)))
            eq(run(["objcopy", f"--add-section=.gnu_debugaltlink={link}", prog]).returncode, 0, "objcopy")
            refused = os.path.join(d, "grow.alt")
            os.mkfifo(refused)
        else:
            run(["objcopy", "--only-keep-debug", prog, dbg])
            run(["objcopy", "--strip-debug", prog])
            run(["objcopy", f"--add-gnu-debuglink={dbg}", prog], cwd=d)
            os.unlink(dbg)
            check("debug_info" not in run(["readelf", "-S", prog]).stdout, "the binary has no DWARF of its own")
        if how == "debuglink":
            os.mkfifo(dbg)
            refused = dbg
        elif how == "build-id":
            if os.geteuid() != 0:
                raise Failure("needs root to write under /usr/lib/debug")
            bid = re.search(r"Build ID: ([0-9a-f]+)", run(["readelf", "-n", prog]).stdout).group(1)
            installed = refused = f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug"
            os.makedirs(os.path.dirname(installed), exist_ok=True)
            os.mkfifo(installed)
        try:
            out = os.path.join(d, "out")
            traced([prog], out)
            ex = snaps_of(out, "exit")[0]
            t0 = time.monotonic()
            p = hd("top", ex, "--limit", "0", "--format", "json", timeout=20)
            check(time.monotonic() - t0 < AT_ONCE, f"{how}: top took {AT_ONCE:g} s or more")
            eq(p.returncode, 0, f"{how}: exit status (stderr: {p.stderr.strip()})")
            eq(p.stderr.splitlines(),
               [f"heapdelta: warning: '{refused}' is not a regular file; frames of '{prog}' are shown as module+offset"],
               f"{how}: stderr")
            r = json.loads(p.stdout)
            mine = [s for s in r["stats"] if s["traceback"][0]["module"] == "grow"]
            # The functions from the symbol table (make_record is inlined), no lines.
            eq(sorted({(s["function"], s["file"]) for s in mine}), [("add_records", None), ("main", None)],
               f"{how}: grow's sites")
            check(all(re.fullmatch(r"grow\+0x[0-9a-f]+", s["key"]) for s in mine), [s["key"] for s in mine])
        finally:
            if installed:
                os.unlink(installed)
