#!/usr/bin/env python3
"""End-to-end tests: the real heapdelta binaries on fixture programs.

This file is the harness and the runner; the tests are in the area files
tests/e2e_AREA.py (see tests/README.md for what each covers), which do
`from e2e import *` and register their tests with @test.

Expected file:line values come from `@site NAME` markers in the fixture
sources; expected bytes and counts come from the fixtures themselves
("expect NAME BYTES COUNT", computed from what their calls returned).
Expected text is built with CPython's own tracemalloc._format_size, so the
layout is checked against tracemalloc itself.

Usage (from anywhere; `make test-build` first):
    tests/e2e.py                   every area
    tests/e2e.py --area AREA       one area file, tests/e2e_AREA.py
    tests/e2e.py -k SUBSTRING      the tests whose name contains SUBSTRING
    tests/e2e.py --list            the areas and their tests, without running
Prints one line per test ("ok - ...", "FAIL - ..." with the reason below,
"skip - ... (reason)") and ends with "# N passed, M failed" (plus
", K skipped" when a test could not run here).
"""
import glob
import json
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from tracemalloc import _format_size

# No test reaches the network: desktops set DEBUGINFOD_URLS to their
# distro's server (profile.d), and heapdelta would ask it for every module
# without debug information.  The debuginfod tests set it to a local server.
os.environ.pop("DEBUGINFOD_URLS", None)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
HD = os.path.join(BUILD, "heapdelta")
SHIM = os.path.join(BUILD, "libheapdelta.so")
FIX = os.path.join(ROOT, "tests", "fixtures")
BIN = os.path.join(BUILD, "tests")
TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


class Failure(Exception):
    pass


class Skip(Exception):
    """Raised by skip(): the test cannot run here (say why); it counts as
    neither passed nor failed."""


def skip(reason):
    raise Skip(reason)


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def eq(got, want, what):
    if got != want:
        raise Failure(f"{what}: got {got!r}, want {want!r}")


def markers(src):
    """{name: line} for every `@site NAME` in a fixture source."""
    out = {}
    with open(os.path.join(FIX, src)) as f:
        for n, line in enumerate(f, 1):
            m = re.search(r"@site (\w+)", line)
            if m:
                out[m.group(1)] = n
    return out


def run(cmd, timeout=120, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def hd(*args, timeout=120):
    return run([HD, *args], timeout=timeout)


def snap_infos(*snaps):
    """`heapdelta info --format json` of the snapshots: one dict each."""
    return json.loads(hd("info", "--format", "json", *snaps).stdout)


def snap_info(snap):
    """`heapdelta info --format json` of one snapshot."""
    return snap_infos(snap)[0]


def traced(cmd, outdir, *opts, env=None, timeout=120):
    """Run cmd under `heapdelta run`; return the process and its snapshots."""
    p = run([HD, "run", "-o", outdir, *opts, "--", *cmd], env=env, timeout=timeout)
    return p, sorted(glob.glob(os.path.join(outdir, "heapdelta.*.snap")), key=snap_order)


def snap_order(path):
    m = re.search(r"heapdelta\.(\d+)\.(\d+)\.", os.path.basename(path))
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def snaps_of(outdir, trigger):
    return [s for s in sorted(glob.glob(os.path.join(outdir, "heapdelta.*.snap")), key=snap_order)
            if s.endswith(f".{trigger}.snap")]


def expectations(stdout):
    exp = {}
    for line in stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == "expect":
            exp[parts[1]] = tuple(int(x) for x in parts[2:])
    return exp


def top_json(snap, *args):
    p = hd("top", snap, "--limit", "0", "--format", "json", *args)
    eq(p.returncode, 0, f"heapdelta top exit status (stderr: {p.stderr.strip()})")
    return json.loads(p.stdout)


def by_site(report, src):
    """{line: stat} for the entries whose site is in fixture src."""
    out = {}
    for st in report["stats"]:
        if st["file"] and os.path.basename(st["file"]) == src:
            check(st["line"] not in out, f"two entries for {src}:{st['line']}")
            out[st["line"]] = st
    return out


def check_sites(report, src, exp, names=None):
    marks = markers(src)
    sites = by_site(report, src)
    for name, (size, count) in exp.items():
        if names is not None and name not in names:
            continue
        line = marks[name]
        st = sites.get(line)
        if count == 0:
            check(st is None or (st["size"] == 0 and st["count"] == 0),
                  f"{name} ({src}:{line}) should hold nothing, has {st and (st['size'], st['count'])}")
        else:
            check(st is not None, f"{name} ({src}:{line}) missing from the report")
            eq((st["size"], st["count"]), (size, count), f"{name} ({src}:{line}) size, count")
    return sites


def check_estimates(report, src, exp, within=0.15):
    """Sampled mode: each site of exp {name: (bytes, count)} estimated
    within a share of its exact bytes and count."""
    marks, sites = markers(src), by_site(report, src)
    for name, (size, count) in exp.items():
        st = sites[marks[name]]
        check(abs(st["size"] - size) <= within * size, f"{name}: estimated {st['size']} bytes, exact {size}")
        check(abs(st["count"] - count) <= within * count, f"{name}: estimated {st['count']} blocks, exact {count}")


def check_gone(report, src, names=None):
    """The sites of fixture src named (by default every one marked `@site
    gone...`) released all their blocks: none may be left at them."""
    marks, sites = markers(src), by_site(report, src)
    for name in names if names is not None else [n for n in marks if n.startswith("gone")]:
        line = marks[name]
        check(line not in sites, f"{name}: every block released, yet {sites.get(line)}")


def stat_line(key, size, count, size_diff=None, count_diff=None):
    text = f"{key}: size={_format_size(size, False)}"
    if size_diff is not None:
        text += f" ({_format_size(size_diff, True)})"
    text += f", count={count}"
    if count_diff is not None:
        text += f" ({count_diff:+d})"
    if count:
        text += f", average={_format_size(size / count, False)}"
    return text


def frame_line_re(n, fn, src, site):
    """Frame n of a stack in leaks/check text: fn in fixture src at its @site line."""
    return re.compile(rf"^    #{n} 0x[0-9a-f]+ in {re.escape(fn)} {re.escape(os.path.join(FIX, src))}:{markers(src)[site]}$")


TMPS = []


def snapshot_sections(path):
    """(version, {tag: payload bytes}) of one snapshot file."""
    data = open(path, "rb").read()
    version = struct.unpack_from("<I", data, 8)[0]
    off, secs = 16, {}
    while off < len(data):
        tag, _, length = struct.unpack_from("<IIQ", data, off)
        secs[tag] = data[off + 16:off + 16 + length]
        off += 16 + length
    return version, secs


def varint(buf, pos):
    v = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        v |= (b & 0x7f) << shift
        shift += 7
        if not b & 0x80:
            return v, pos


_READ = {}


def read_snapshot(path):
    """A test's own reading of format/FORMAT.md, independent of heapdelta's:
    (META fields, {stack id: [depth, live_bytes, live_count, alloc_bytes,
    alloc_count]}), following a version 2 file's chain of bases in its
    directory.  The caller gets its own copy."""
    key = (path, os.path.getmtime(path))
    if key not in _READ:
        _READ[key] = _read_snapshot(path)
    meta, stacks = _READ[key]
    return list(meta), {k: list(v) for k, v in stacks.items()}


def _read_snapshot(path):
    version, secs = snapshot_sections(path)
    meta = list(struct.unpack_from(f"<{len(secs[1]) // 8}Q", secs[1]))
    if version == 1:
        stacks, buf = {}, secs[4]
        (n,), p = struct.unpack_from("<I", buf), 4
        for _ in range(n):
            sid, depth, _flags, lb, lc, ab, ac = struct.unpack_from("<IHHQQQQ", buf, p)
            stacks[sid] = [depth, lb, lc, ab, ac]
            p += 40 + 8 * depth
        return meta, stacks
    stacks = {}
    if meta[30]:   # base_seq
        base = glob.glob(os.path.join(os.path.dirname(path), f"heapdelta.{meta[0]}.{meta[30]}.*.snap"))
        if len(base) != 1:
            raise Failure(f"{path}: base snapshot {meta[30]} not found")
        bmeta, stacks = read_snapshot(base[0])
        check(bmeta[29] == meta[29], f"{path}: base of another run")
    buf = secs[8]
    (n,), p = struct.unpack_from("<I", buf), 4
    for _ in range(n):
        sid, depth, _flags = struct.unpack_from("<IHH", buf, p)
        check(sid not in stacks, f"{path}: stack {sid} new twice")
        stacks[sid] = [depth, 0, 0, 0, 0]
        p += 8 + 8 * depth
    buf = secs[9]
    (n,), p, sid = struct.unpack_from("<I", buf), 4, 0
    for _ in range(n):
        d, p = varint(buf, p)
        sid += d
        for k in range(4):
            z, p = varint(buf, p)
            stacks[sid][1 + k] += (z >> 1) ^ -(z & 1)
    return meta, stacks


def tmpdir():
    TMPS.append(tempfile.mkdtemp(prefix="hd-e2e-"))
    return TMPS[-1]


def load_areas():
    """Import the area files tests/e2e_*.py: each does `from e2e import *`
    and registers its tests with @test."""
    import importlib
    sys.modules.setdefault("e2e", sys.modules[__name__])
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "e2e_*.py"))):
        importlib.import_module(os.path.basename(path)[:-3])


def area_of(fn):
    """The area of a test: its file's name without e2e_ (robustness for
    tests/e2e_robustness.py)."""
    return fn.__module__.removeprefix("e2e_")


def usage(msg):
    print(f"e2e.py: {msg}\nusage: tests/e2e.py [--area AREA] [-k SUBSTRING] [--list]", file=sys.stderr)
    return 2


def main():
    load_areas()
    areas = sorted({area_of(fn) for fn in TESTS})
    only = area = None
    listing = False
    args = sys.argv[1:]
    while args:
        opt = args.pop(0)
        if opt == "--list":
            listing = True
        elif opt in ("-k", "--area"):
            if not args:
                return usage(f"{opt} needs a value")
            if opt == "-k":
                only = args.pop(0)
            else:
                area = args.pop(0).removesuffix(".py").removeprefix("tests/").removeprefix("e2e_")
                if area not in areas:
                    return usage(f"no area '{area}'; the areas are {', '.join(areas)}")
        else:
            return usage(f"unknown argument '{opt}'")
    chosen = [fn for fn in TESTS if (not area or area_of(fn) == area) and (not only or only in fn.__name__)]
    if listing:
        for fn in chosen:
            print(f"{area_of(fn)}: {fn.__name__}")
        return 0
    passed = failed = skipped = 0
    for fn in chosen:
        name = fn.__name__.replace("_", " ")
        t0 = time.time()
        try:
            fn()
        except Skip as e:
            skipped += 1
            print(f"skip - e2e: {name} ({e})")
        except Exception as e:  # a failing test reports and the run goes on
            failed += 1
            detail = str(e) if isinstance(e, Failure) else traceback.format_exc()
            print(f"FAIL - e2e: {name}\n  {detail}")
        else:
            passed += 1
            print(f"ok - e2e: {name} ({time.time() - t0:.1f}s)")
        sys.stdout.flush()
    print(f"# {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    for d in TMPS:
        shutil.rmtree(d, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
