"""End-to-end tests of the aarch64 shim, run here under qemu-user.

The shim and the fixtures are cross-built (`make ARCH=aarch64`, into
build-aarch64/) and run with `qemu-aarch64 -E LD_PRELOAD=...`; the snapshots
are read and symbolized by the host's (x86-64) heapdelta, whose libdw reads
the aarch64 ELF files and their DWARF.  The checks are the x86-64 ones:
exact bytes and counts per marked line, every allocation API, C++ operators,
eight threads freeing each other's blocks, frame-pointer mode, and the cfi
unwinder against libunwind (libunwind8:arm64, from Debian's multiarch).

The aarch64 libraries come from one place, so that the loader and libc
always match: Debian's multiarch (libc6:arm64 beside libunwind8:arm64, found
at their own paths) when installed, else the cross toolchain's sysroot
(`-L /usr/aarch64-linux-gnu`).  Mixing the two (the sysroot's loader with
multiarch's newer libc) hangs in the first pthread_create.

Budget: about 20 s here (the threads fixture, 1.2 M allocations each
unwound twice, takes most of it).  Nothing here measures speed: emulation
says nothing about speed on hardware.
"""
import shutil

from e2e import *

A64 = os.path.join(ROOT, "build-aarch64")
A64_SHIM = os.path.join(A64, "libheapdelta.so")
A64_BIN = os.path.join(A64, "tests")
MULTIARCH_LD = "/lib/ld-linux-aarch64.so.1"
LIBUNWIND = "/usr/lib/aarch64-linux-gnu/libunwind.so.8"
_READY = []


def aarch64_ready():
    """Build the aarch64 tier if needed; skip (one line, naming the package)
    when this machine cannot run it."""
    if _READY:
        return
    if not shutil.which("qemu-aarch64"):
        skip("qemu-aarch64 missing (Debian package qemu-user; scripts/deps.sh test installs it)")
    if not shutil.which("aarch64-linux-gnu-gcc") or not shutil.which("aarch64-linux-gnu-g++"):
        skip("aarch64 cross compiler missing (gcc-aarch64-linux-gnu, g++-aarch64-linux-gnu, libc6-dev-arm64-cross)")
    p = run(["make", "-s", "-C", ROOT, "ARCH=aarch64", "all"], timeout=600)
    eq(p.returncode, 0, f"make ARCH=aarch64 (stderr: {p.stderr[-2000:]})")
    _READY.append(True)


def qemu(prog, outdir, **env):
    """Run an aarch64 fixture under qemu with the aarch64 shim; return the
    process and its snapshots."""
    cmd = ["qemu-aarch64"]
    if not os.path.exists(MULTIARCH_LD):
        cmd += ["-L", "/usr/aarch64-linux-gnu"]
    cmd += ["-E", f"LD_PRELOAD={A64_SHIM}", "-E", f"HEAPDELTA_OUT={outdir}"]
    for k, v in env.items():
        cmd += ["-E", f"HEAPDELTA_{k}={v}"]
    p = run(cmd + [os.path.join(A64_BIN, prog)], timeout=300)
    return p, sorted(glob.glob(os.path.join(outdir, "heapdelta.*.snap")), key=snap_order)


def info_of(snap):
    return json.loads(hd("info", "--format", "json", snap).stdout)[0]


def exit_snapshot(d):
    exits = snaps_of(d, "exit")
    eq(len(exits), 1, "exit snapshots")
    return exits[0]


@test
def aarch64_every_allocation_api_is_recorded_exactly_at_its_line():
    aarch64_ready()
    d = tmpdir()
    p, _ = qemu("sites", d)
    eq(p.returncode, 0, f"fixture exit status (stdout: {p.stdout}, stderr: {p.stderr[-500:]})")
    check("done 0 failures" in p.stdout, p.stdout)
    snap = exit_snapshot(d)
    exp = expectations(p.stdout)
    check(len(exp) >= 20, f"fixture printed {len(exp)} expectations")
    check_sites(top_json(snap), "sites.c", exp)
    info = info_of(snap)
    eq(info["unwinder"], "cfi", "default unwinder")
    eq(info["unknown_frees"], 1, "unknown frees (one __libc_malloc block freed)")
    eq(info["dropped_allocs"], 0, "dropped allocations")
    eq(info["unwind_fallbacks"], 0, "stacks handed to libunwind")


def cxx_ready():
    if os.path.exists(MULTIARCH_LD) and not os.path.exists("/usr/lib/aarch64-linux-gnu/libstdc++.so.6"):
        skip("libstdc++6:arm64 missing beside libc6:arm64 (apt-get install libstdc++6:arm64)")


@test
def aarch64_cpp_operators_are_recorded_at_the_line_that_called_new():
    aarch64_ready()
    cxx_ready()
    d = tmpdir()
    p, _ = qemu("sites_cpp", d)
    eq(p.returncode, 0, f"fixture exit status (stdout: {p.stdout}, stderr: {p.stderr[-500:]})")
    check("caught 500" in p.stdout, "exceptions thrown and caught under the shim")
    sites = check_sites(top_json(exit_snapshot(d)), "sites_cpp.cpp", expectations(p.stdout))
    eq(sites[markers("sites_cpp.cpp")["cache_fill"]]["function"], "app::Cache::fill(int)", "demangled site function")


@test
def aarch64_frame_pointer_mode_gives_the_same_sites():
    aarch64_ready()
    d = tmpdir()
    p, _ = qemu("sites_fp", d, UNWIND="fp")
    eq(p.returncode, 0, f"fixture exit status (stderr: {p.stderr[-500:]})")
    snap = exit_snapshot(d)
    eq(info_of(snap)["unwinder"], "fp", "unwinder recorded in the snapshot")
    # glibc is built without frame pointers: the walk cannot reach the
    # fixture's line from strdup or the stdio buffer's allocation.
    exp = {k: v for k, v in expectations(p.stdout).items() if k not in ("strdup", "stdout_buffer")}
    check_sites(top_json(snap), "sites.c", exp)


@test
def aarch64_cfi_unwinder_matches_libunwind_frame_for_frame_and_threads_end_exact():
    """HEAPDELTA_UNWIND_CHECK=1: every stack also unwound by libunwind
    (libunwind8:arm64) and compared; the threads fixture (1.2 M stacks,
    eight threads freeing each other's blocks) must also end exact."""
    aarch64_ready()
    cxx_ready()
    if not os.path.exists(LIBUNWIND) or not os.path.exists(MULTIARCH_LD):
        skip("libunwind8:arm64 missing (dpkg --add-architecture arm64; apt-get install libunwind8:arm64; "
             "scripts/deps.sh test does it)")
    for prog, src, least in (("sites", "sites.c", 15), ("sites_cpp", "sites_cpp.cpp", 500), ("threads", "threads.c", 8 * 150000)):
        d = tmpdir()
        p, _ = qemu(prog, d, UNWIND_CHECK="1")
        eq(p.returncode, 0, f"{prog} exit status (stderr: {p.stderr[-500:]})")
        snap = exit_snapshot(d)
        info = info_of(snap)
        check(info["unwind_checked"] >= least, f"{prog}: only {info['unwind_checked']} stacks compared")
        eq(info["unwind_mismatches"], 0, f"{prog}: stacks that differ from libunwind's (of {info['unwind_checked']})")
        eq(info["unwind_fallbacks"], 0, f"{prog}: stacks handed to libunwind")
        check_sites(top_json(snap), src, expectations(p.stdout))
        if prog == "threads":
            eq(info["dropped_allocs"], 0, "dropped allocations")
            eq(info["alloc_bytes"] - info["free_bytes"], info["live_bytes"], "allocated - freed = live")


@test
def aarch64_return_addresses_signed_by_pointer_authentication_are_stripped():
    """sites.c built with -mbranch-protection=pac-ret: main saves x30 signed
    (qemu's default cpu implements pointer authentication).  The stacks
    must reach _start through main's saved x30, stripped.  libunwind 1.6.2
    stops at such a frame (it repeats main's frame and ends): no check mode
    here."""
    aarch64_ready()
    d = tmpdir()
    p, _ = qemu("sites_pac", d)
    eq(p.returncode, 0, f"fixture exit status (stderr: {p.stderr[-500:]})")
    snap = exit_snapshot(d)
    check_sites(top_json(snap), "sites.c", expectations(p.stdout))
    eq(info_of(snap)["unwind_fallbacks"], 0, "stacks handed to libunwind")
    line = markers("sites.c")["malloc"]
    st = [s for s in top_json(snap, "--by", "traceback")["stats"] if s["line"] == line and s["file"].endswith("sites.c")]
    eq(len(st), 1, f"one traceback of the malloc site (sites.c:{line})")
    names = [(f["module"], f["function"]) for f in st[0]["traceback"]]
    eq(names[0], ("sites_pac", "main"), "innermost frame")
    eq(names[-1], ("sites_pac", "_start"), f"outermost frame (traceback {names})")
    check(("libc.so.6", "__libc_start_main") in names, f"__libc_start_main in the traceback {names}")
