"""End-to-end tests: symbolization, offline and by module.

Two runs at different load addresses give the same sites; a binary rebuilt
since the snapshot is reported, not misattributed; separate debug files
are found by .gnu_debuglink and by build-id.
"""
from e2e import *


@test
def two_runs_of_one_program_diff_to_zero():
    a, b = tmpdir(), tmpdir()
    traced([os.path.join(BIN, "sites")], a)
    traced([os.path.join(BIN, "sites")], b)
    sa, sb = snaps_of(a, "exit")[0], snaps_of(b, "exit")[0]
    ia = snap_info(sa)
    ib = snap_info(sb)
    check(ia["modules"][0]["base"] != ib["modules"][0]["base"], "the two runs loaded at different addresses")
    r = json.loads(hd("diff", sa, sb, "--limit", "0", "--format", "json").stdout)
    eq((r["total"]["size_diff"], r["total"]["count_diff"]), (0, 0), "total difference")
    changed = [s["key"] for s in r["stats"] if s["size_diff"] or s["count_diff"]]
    eq(changed, [], "sites that changed")


@test
def a_rebuilt_binary_is_reported_not_misattributed():
    d = tmpdir()
    prog = os.path.join(d, "prog")
    shutil.copy(os.path.join(BIN, "sites"), prog)
    out = os.path.join(d, "out")
    traced([prog], out)
    snap = snaps_of(out, "exit")[0]
    shutil.copy(os.path.join(BIN, "grow"), prog)   # another build-id at the same path
    p = hd("top", snap, "--limit", "0", "--format", "json")
    eq(p.returncode, 0, "exit status")
    check(f"heapdelta: warning: '{prog}' has changed since the snapshot was taken" in p.stderr, p.stderr)
    r = json.loads(p.stdout)
    mine = [s for s in r["stats"] if s["traceback"][0]["module"] == "prog"]
    check(mine, "frames of the rebuilt binary are listed")
    check(all(s["file"] is None and s["key"].startswith("prog+0x") for s in mine), [s["key"] for s in mine])


@test
def separate_debug_files_are_found_by_debuglink_and_by_build_id():
    marks = markers("grow.c")
    for how in ("debuglink", "build-id"):
        d = tmpdir()
        prog, dbg = os.path.join(d, "grow"), os.path.join(d, "grow.debug")
        shutil.copy(os.path.join(BIN, "grow"), prog)
        run(["objcopy", "--only-keep-debug", prog, dbg])
        run(["objcopy", "--strip-debug", prog])
        installed = None
        if how == "debuglink":
            run(["objcopy", f"--add-gnu-debuglink={dbg}", prog], cwd=d)
        else:
            if os.geteuid() != 0:
                skip("debuglink is checked; the build-id lookup needs root to write under /usr/lib/debug")
            bid = re.search(r"Build ID: ([0-9a-f]+)", run(["readelf", "-n", prog]).stdout).group(1)
            installed = f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug"
            os.makedirs(os.path.dirname(installed), exist_ok=True)
            shutil.move(dbg, installed)
        try:
            check("debug_info" not in run(["readelf", "-S", prog]).stdout, "the binary has no DWARF of its own")
            out = os.path.join(d, "out")
            traced([prog], out)
            sites = by_site(top_json(snaps_of(out, "exit")[0]), "grow.c")
            eq(sites.get(marks["grow_a"], {}).get("size"), 50000, f"{how}: grow_a at its line")
        finally:
            if installed:
                os.unlink(installed)
