"""End-to-end tests: the shim records exactly what the program holds.

Every allocation API at its marked line with its exact bytes and count, in
both unwinders; C++ sites with demangled names; eight threads freeing each
other's blocks; the program's own bindings (backtrace, exit from a thread);
stacks cut at --depth; paths that meet at one stack pointer; sampled
estimates.
"""
from e2e import *


@test
def every_allocation_api_is_recorded_exactly_at_its_line():
    d = tmpdir()
    p, snaps = traced([os.path.join(BIN, "sites")], d)
    eq(p.returncode, 0, f"fixture exit status (stdout: {p.stdout})")
    check("done 0 failures" in p.stdout, p.stdout)
    exits = snaps_of(d, "exit")
    eq(len(exits), 1, "exit snapshots")
    exp = expectations(p.stdout)
    check(len(exp) >= 20, f"fixture printed {len(exp)} expectations")
    # strdup and the buffer of standard output allocate inside glibc: the
    # fixture's line that called into glibc is their site.
    check_sites(top_json(exits[0]), "sites.c", exp)
    info = snap_info(exits[0])
    eq(info["unknown_frees"], 1, "unknown frees (one __libc_malloc block freed)")
    eq(info["dropped_allocs"], 0, "dropped allocations")


@test
def frame_pointer_mode_gives_the_same_sites():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "sites_fp")], d, "--unwind", "fp")
    eq(p.returncode, 0, "fixture exit status")
    exp = expectations(p.stdout)
    snap = snaps_of(d, "exit")[0]
    info = snap_info(snap)
    eq(info["unwinder"], "fp", "unwinder recorded in the snapshot")
    # glibc is built without frame pointers: the walk stops in strdup and in
    # the stdio buffer's allocation, before the fixture's line.
    direct = {k: v for k, v in exp.items() if k not in ("strdup", "stdout_buffer")}
    check_sites(top_json(snap), "sites.c", direct)


@test
def cpp_sites_show_demangled_names_and_the_line_that_called_new():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "sites_cpp")], d)
    eq(p.returncode, 0, f"fixture exit status (stdout: {p.stdout})")
    check("caught 500" in p.stdout, "exceptions thrown and caught under the shim")
    exp = expectations(p.stdout)
    report = top_json(snaps_of(d, "exit")[0])
    sites = check_sites(report, "sites_cpp.cpp", exp)
    fill = sites[markers("sites_cpp.cpp")["cache_fill"]]
    eq(fill["function"], "app::Cache::fill(int)", "demangled site function")
    eq(sites[markers("sites_cpp.cpp")["new"]]["function"], "main", "site function of new")


@test
def eight_threads_with_cross_thread_frees_end_exact():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "threads")], d, timeout=300)
    eq(p.returncode, 0, "fixture exit status")
    exp = expectations(p.stdout)
    snap = snaps_of(d, "exit")[0]
    check_sites(top_json(snap), "threads.c", exp)
    info = snap_info(snap)
    check(info["alloc_count"] >= 8 * 150000, f"allocations recorded: {info['alloc_count']}")
    eq(info["dropped_allocs"], 0, "dropped allocations")
    eq(info["alloc_bytes"] - info["free_bytes"], info["live_bytes"], "allocated - freed = live")


@test
def sampled_blocks_that_other_threads_free_leave_the_map():
    # The same eight threads in sampled mode: most frees go straight to
    # glibc, and a recorded block freed by another thread than the one
    # that recorded it must still be taken out (the churn site ends empty).
    # Which thread draws which sampling seed depends on scheduling, so the
    # kept blocks' estimate is left to sampling.c's tests.
    d = tmpdir()
    exe = os.path.join(BIN, "threads")
    plain = run([exe], timeout=300)
    p, _ = traced([exe], d, "--sample", "4KiB", timeout=300)
    eq((p.returncode, p.stdout), (plain.returncode, plain.stdout), "status and output as untraced")
    r = top_json(snaps_of(d, "exit")[0])
    eq(r["snapshot"]["sampled"], 4096, "the snapshot holds estimates")
    check_gone(r, "threads.c", ["churn"])


@test
def program_bindings_stay_glibcs_and_exit_from_a_thread_writes_the_exit_snapshot():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "bindings")], d)
    eq(p.returncode, 3, f"exit status from the thread (stdout: {p.stdout})")
    check(p.stdout.startswith("backtrace works"), p.stdout)
    exits = snaps_of(d, "exit")
    eq(len(exits), 1, "exit snapshots")
    sites = by_site(top_json(exits[0]), "bindings.c")
    eq((sites[markers("bindings.c")["thread_leak"]]["size"]), 4321, "block allocated by the exiting thread")


@test
def deep_stacks_are_cut_at_the_depth_and_marked_truncated():
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "grow")], d, "--depth", "2")
    snap = snaps_of(d, "exit")[0]
    info = snap_info(snap)
    eq(info["depth"], 2, "depth recorded")
    check(info["truncated_stacks"] > 0, "some stacks are marked truncated")
    r = top_json(snap)
    check(all(len(s["traceback"]) <= 3 for s in r["stats"]), "at most 2 return addresses (+1 inline frame)")
    check_sites(r, "grow.c", {"grow_a": (50000, 50)})


@test
def paths_that_meet_at_one_return_address_and_stack_pointer_keep_their_own_stacks():
    """samesp.c: leaf is reached in turn by paths whose frames lie at the
    same addresses.  The unwinder's memo of whole stacks finds an entry for
    that place every time and must tell the paths apart by what the stack
    holds further out: each path exact, with and without the check against
    libunwind, and the memo in use (without it, or had it matched on the
    place alone, the counts would be off)."""
    prog = os.path.join(BIN, "samesp")
    for env in ({}, {"HEAPDELTA_UNWIND_CHECK": "1"}):
        d = tmpdir()
        p, _ = traced([prog], d, env={**os.environ, **env})
        eq(p.returncode, 0, f"exit status {env}: {p.stderr[-300:]}")
        snap = snaps_of(d, "exit")[0]
        info = snap_info(snap)
        eq(info["unwind_mismatches"], 0, f"stacks that differ from libunwind's {env}")
        # 6,000 allocations from 4 stacks: each walked once, then found,
        # the near pair's after the far pair's in between.
        check(info["unwind_memo_hits"] >= 5996, f"memo hits {env}: {info['unwind_memo_hits']}")
        r = top_json(snap, "--alloc-fn", "leaf", "--alloc-fn", "mid")
        check_sites(r, "samesp.c", expectations(p.stdout))


@test
def sampled_estimates_stay_within_fifteen_percent_of_the_exact_values():
    # One allocation per 16 KiB on average: the estimates' standard
    # deviations here are about 2.5% (mid-sized blocks) and 4% (small ones).
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "sampling")], d, "--sample", "16KiB")
    eq(p.returncode, 0, "exit status")
    snap = snaps_of(d, "exit")[0]
    r = top_json(snap)
    eq(r["snapshot"]["sampled"], 16384, "the snapshot says it holds estimates")
    check("Estimates: one allocation sampled per 16.0 KiB on average" in hd("top", snap).stdout, "the report says so")
    check_estimates(r, "sampling.c", expectations(p.stdout))
    check_gone(r, "sampling.c")


@test
def sampled_cxx_operators_take_out_every_recorded_block_they_delete():
    # Most news and deletes go straight to glibc in sampled mode; a deleted
    # block that was recorded must still leave the map (churn holds
    # nothing), kept blocks are estimated, and releases by the wrong
    # family are caught on blocks that were recorded.
    d = tmpdir()
    exe = os.path.join(BIN, "sampling_cpp")
    plain = run([exe])
    p, _ = traced([exe], d, "--sample", "16KiB")
    eq((p.returncode, p.stdout), (plain.returncode, plain.stdout), "status and output as untraced")
    snap = snaps_of(d, "exit")[0]
    r = top_json(snap)
    eq(r["snapshot"]["sampled"], 16384, "the snapshot holds estimates")
    check_gone(r, "sampling_cpp.cpp", ["churn", "mismatched"])
    check_estimates(r, "sampling_cpp.cpp", expectations(p.stdout))
    info = snap_info(snap)
    eq(info["mismatched_frees"], 4, "new[] blocks released by delete")


@test
def the_snapshot_thread_is_started_only_for_intervals_and_the_signal():
    # A second thread makes glibc's malloc take its arena's lock: without an
    # interval and with the signal off, the shim starts none.  The program
    # counts its own threads (the shim's start-up ran before its main).
    count = ["/usr/bin/python3.11", "-c", "import os; print(len(os.listdir('/proc/self/task')))"]
    for env, want in (({"HEAPDELTA_SIGNAL": "0"}, "1"), ({}, "2"), ({"HEAPDELTA_SIGNAL": "0", "HEAPDELTA_INTERVAL": "60"}, "2")):
        d = tmpdir()
        p = run(count, env={**os.environ, "LD_PRELOAD": SHIM, "HEAPDELTA_OUT": d, **env})
        eq((p.returncode, p.stdout.strip()), (0, want), f"threads with {env}")
        check(len(snaps_of(d, "exit")) == 1, f"an exit snapshot with {env}")
