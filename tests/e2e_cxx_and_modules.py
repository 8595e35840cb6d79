"""End-to-end tests: C++ operators with their requested sizes and families,
and libraries that share an address one after the other."""
from e2e import *


@test
def two_libraries_loaded_at_one_address_keep_their_own_lines():
    d = tmpdir()
    a, b = os.path.join(BIN, "libreload_a.so"), os.path.join(BIN, "libreload_b.so")
    p, snaps = traced([os.path.join(BIN, "reload"), a, b], d)
    eq(p.returncode, 0, f"exit status (stderr: {p.stderr.strip()})")
    check("same base 1" in p.stdout, f"the second library was not loaded at the first one's address: {p.stdout}")
    exp = expectations(p.stdout)
    snap = snaps_of(d, "exit")[0]
    report = top_json(snap)
    check_sites(report, "reload_a.c", {"leak_a": exp["leak_a"]})
    check_sites(report, "reload_b.c", {"leak_b": exp["leak_b"]})
    # Collapsed stacks: two stacks through leak(), one per library (one
    # stack of both blocks when the second library's frames were read as
    # the first one's).
    col = hd("top", snap, "--format", "collapsed")
    eq(col.returncode, 0, "collapsed exit status")
    eq(sorted(int(l.rsplit(" ", 1)[1]) for l in col.stdout.splitlines() if l.rsplit(" ", 1)[0].endswith(";main;round_at_one_address;leak")),
       sorted([exp["leak_a"][0], exp["leak_b"][0]]), "collapsed stacks through leak()")


@test
def every_operator_new_form_reports_the_size_the_program_asked_for():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "cxxops")], d)
    eq(p.returncode, 0, f"exit status (stderr: {p.stderr.strip()})")
    snap = snaps_of(d, "exit")[0]
    check_sites(top_json(snap), "cxxops.cpp", expectations(p.stdout))
    info = snap_info(snap)
    eq(info["mismatched_frees"], 0, "a matched program's mismatched releases")
    leaks = hd("leaks", snap)
    check("Mismatched release" not in leaks.stdout, leaks.stdout)


@test
def mismatched_releases_are_counted_and_listed_with_both_stacks():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "cxxops"), "mismatched"], d)
    eq(p.returncode, 0, f"exit status (stderr: {p.stderr.strip()})")
    snap = snaps_of(d, "exit")[0]
    check_sites(top_json(snap), "cxxops.cpp", expectations(p.stdout))
    info = snap_info(snap)
    eq(info["mismatched_frees"], 3, "mismatched releases")
    m = markers("cxxops.cpp")
    want = [("free", "operator new", 24, "free_a_new_block", "free_of_new", "mismatch_new"),
            ("operator delete", "operator new[]", 96, "delete_a_new_array", "delete_of_new_array", "mismatch_new_array"),
            ("operator delete[]", "malloc", 48, "delete_array_of_malloc", "delete_array_of_malloc", "mismatch_malloc")]
    r = json.loads(hd("leaks", snap, "--format", "json").stdout)
    eq(r["mismatched_frees"], 3, "JSON mismatched_frees")
    got = [(x["released_with"], x["allocated_with"], x["size"], x["released_at"][0]["function"],
            x["released_at"][0]["line"], x["allocated_at"][0]["line"]) for x in r["mismatches"]]
    eq(got, [(rw, aw, size, fn, m[rel], m[alloc]) for rw, aw, size, fn, rel, alloc in want], "JSON mismatches")
    text = hd("leaks", snap).stdout
    heads = [l for l in text.splitlines() if l.startswith("Mismatched release")]
    eq(heads, [f"Mismatched release: {rw} of {size} bytes from {aw}, released at:" for rw, aw, size, *_ in want],
       "text headers")
    for rw, aw, size, fn, rel, alloc in want:
        block = text.split(f"Mismatched release: {rw} of {size} bytes from {aw}, released at:\n", 1)[1].split("\n\n")[0]
        check(re.search(rf"#0 0x[0-9a-f]+ in {fn} \S*cxxops\.cpp:{m[rel]}\n", block), f"release stack of {rw}:\n{block}")
        check(re.search(rf"  allocated at:\n    #0 0x[0-9a-f]+ in main \S*cxxops\.cpp:{m[alloc]}\n", block),
              f"allocation stack of {rw}:\n{block}")


@test
def operators_a_library_replaces_get_every_new_and_delete_in_every_mode():
    # libpoolnew.so's operator new and delete are the program's allocator:
    # the shim forwards to them rather than to glibc (the pool counts what
    # it served), records what they hand out, and never gives a block of
    # theirs to glibc's free or one of glibc's to them (either crashes).
    exe = os.path.join(BIN, "cxxpool")
    plain = run([exe])
    eq(plain.returncode, 0, "untraced exit status")
    for opts in ([], ["--sample", "16KiB"]):
        d = tmpdir()
        p, _ = traced([exe], d, *opts)
        eq((p.returncode, p.stdout), (plain.returncode, plain.stdout), f"status and output {opts}")
        r = top_json(snaps_of(d, "exit")[0])
        if not opts:
            check_sites(r, "cxxpool.cpp", {"kept": (32 * 1000, 1000), "churn": (0, 0), "array": (0, 0)})
