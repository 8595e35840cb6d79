"""End-to-end tests: JIT-compiled code (Node.js), its frames walked through
by their frame pointers and named from the runtime's perf map, which the
snapshot carries (format/FORMAT.md, the JIT section); and a stack that ends
where such a step fails (fixture nocfi.c).

The fixture, tests/fixtures/jitbuffers.js, keeps Buffers of 100,000 bytes
(beyond Node's 8 KiB pool: their memory comes from calloc) from a function
named keepBuffers.  Node runs with --perf-basic-prof (it writes
/tmp/perf-PID.map) and --interpreted-frames-native-stack (each interpreted
function gets code of its own, so it has a name there too, rather than
every one being V8's shared interpreter trampoline).  Every perf map a test
makes is removed before the snapshots are read: the names come from the
snapshots alone.  Node runs in a scratch folder: with --perf-basic-prof V8
also writes an isolate-*-v8.log into its working directory."""
import shutil

from e2e import *

FIXTURE = os.path.join(FIX, "jitbuffers.js")
NODE_FLAGS = ["--perf-basic-prof", "--interpreted-frames-native-stack"]
SIZE = 100000


def node():
    path = shutil.which("node") or shutil.which("nodejs")
    if not path:
        skip("node is not installed (Debian package nodejs; scripts/deps.sh test installs it)")
    return path


def perf_map_gone(pid):
    """Remove the perf map process pid wrote (the test's own leftovers in
    /tmp, and proof that nothing reads it after the run)."""
    try:
        os.unlink(f"/tmp/perf-{pid}.map")
    except FileNotFoundError:
        pass


def untraced(args):
    """The fixture without heapdelta: its stdout."""
    p = subprocess.Popen([node(), *NODE_FLAGS, FIXTURE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=tmpdir())
    try:
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        perf_map_gone(p.pid)
    eq((p.returncode, err), (0, ""), "the fixture without heapdelta: exit status and stderr")
    return out


def node_traced(argv, d, opts=(), env=None):
    """heapdelta run -o d OPTS -- node ARGV, in a scratch folder: the process
    and its snapshots."""
    p = run([HD, "run", "-o", d, *opts, "--", node(), *argv], env=env, cwd=tmpdir())
    return p, sorted(glob.glob(os.path.join(d, "heapdelta.*.snap")), key=snap_order)


def node_run(args=(), opts=(), env=None):
    """The fixture under heapdelta run: (process, snapshot directory, its
    exit snapshot), the perf map already removed."""
    d = tmpdir()
    p, snaps = node_traced([*NODE_FLAGS, FIXTURE, *args], d, opts, env)
    pids = {int(re.search(r"heapdelta\.(\d+)\.", os.path.basename(s)).group(1)) for s in snaps}
    for pid in pids:
        perf_map_gone(pid)
    eq(p.returncode, 0, f"exit status (stderr: {p.stderr.strip()})")
    exits = snaps_of(d, "exit")
    eq(len(exits), 1, "exit snapshots")
    return p, d, exits[0]


def keep_buffers_re():
    """The perf map's name of keepBuffers as V8 writes it: "JS:~keepBuffers
    FILE:LINE:COLUMN" (Node 20; "LazyCompile:~keepBuffers FILE:LINE" in
    older ones; * for optimized code, ^ for baseline)."""
    with open(FIXTURE) as f:
        line = next(n for n, text in enumerate(f, 1) if text.startswith("function keepBuffers("))
    return re.compile(rf"^\w+:[~^*+]?keepBuffers {re.escape(FIXTURE)}:{line}(:\d+)?$")


def buffer_stacks(snap):
    """The tracebacks (JSON) that run through keepBuffers and hold blocks of
    exactly the buffers' size (the buffers' memory; V8's own small records
    of each buffer are elsewhere)."""
    name = keep_buffers_re()
    out = []
    for st in top_json(snap, "--by", "traceback")["stats"]:
        if st["count"] and st["size"] == st["count"] * SIZE and any(name.match(f["function"]) for f in st["traceback"]):
            out.append(st)
    return out


@test
def node_a_javascript_function_that_keeps_buffers_appears_by_name_in_the_traceback():
    want_out = untraced([])
    p, d, snap = node_run()
    eq(p.stdout, want_out, "the fixture's stdout, with heapdelta against without")
    (_, size, count), = [tuple(line.split()[1:]) for line in p.stdout.splitlines() if line.startswith("expect keepBuffers")]
    stacks = buffer_stacks(snap)
    check(stacks, "no traceback with keepBuffers holds the buffers")
    eq((sum(st["size"] for st in stacks), sum(st["count"] for st in stacks)), (int(size), int(count)),
       "bytes and buffers kept under keepBuffers")
    name = keep_buffers_re()
    frame = next(f for f in stacks[0]["traceback"] if name.match(f["function"]))
    eq((frame["module"], frame["file"], frame["line"]), ("[jit]", None, 0), "keepBuffers's frame: module, file, line")
    # The same frame in the text traceback: "[jit]+0xOFFSET, in NAME".
    text = hd("top", snap, "--by", "traceback", "--limit", "0")
    eq(text.returncode, 0, f"top --by traceback (stderr: {text.stderr})")
    lines = [m.group(1) for m in re.finditer(r"^  \[jit\]\+0x[0-9a-f]+, in (.*)$", text.stdout, re.M)]
    check(any(name.match(n) for n in lines), f"no '[jit]+0x..., in ...keepBuffers...' line in:\n{text.stdout[:3000]}")
    # The frames between the allocator and the JavaScript code (V8's
    # builtins, in the node binary without CFI) were walked through too:
    # the stack goes on past the JavaScript frames to V8's entry from C++.
    tb = [f["function"] for f in stacks[0]["traceback"]]
    at = next(i for i, f in enumerate(tb) if name.match(f))
    check(any("JSEntry" in f for f in tb[at:]), f"V8's JSEntry outside the JavaScript frames: {tb}")


@test
def node_stacks_through_jit_code_are_counted_apart_from_the_libunwind_comparison():
    # libunwind stops at the first frame without CFI: such stacks are not
    # compared (META unwind_nocfi), and are kept as the cfi unwinder found
    # them.
    p, d, snap = node_run(env={**os.environ, "HEAPDELTA_UNWIND_CHECK": "1"})
    info = snap_info(snap)
    eq(info["unwind_mismatches"], 0, f"stacks that differ from libunwind's (of {info['unwind_checked']})")
    check(info["unwind_checked"] > 0, f"stacks compared: {info['unwind_checked']}")
    check(info["unwind_nocfi"] > 0, f"stacks through code without CFI: {info['unwind_nocfi']}")
    eq(sum(st["count"] for st in buffer_stacks(snap)), int(re.search(r"expect keepBuffers \d+ (\d+)", p.stdout).group(1)),
       "buffers kept under keepBuffers")


@test
def node_thinned_interval_snapshots_keep_the_javascript_names():
    # One buffer a timer tick, a snapshot every 50 ms, at most three
    # interval snapshots kept: the merged files carry the JIT entries of the
    # stacks first written in the files they replaced.
    p, d, snap = node_run(["ticks", "40"], opts=("--interval", "0.05", "--keep", "3"))
    intervals = snaps_of(d, "interval")
    check(len(intervals) <= 3, f"interval snapshots on disk: {len(intervals)}")
    check(snap_order(snap)[1] > len(intervals) + 1, f"no snapshot was thinned away: {os.listdir(d)}")
    (_, size, count), = [tuple(line.split()[1:]) for line in p.stdout.splitlines() if line.startswith("expect keepBuffers")]
    stacks = buffer_stacks(snap)
    eq((sum(st["size"] for st in stacks), sum(st["count"] for st in stacks)), (int(size), int(count)),
       "bytes and buffers kept under keepBuffers, through the thinned chain")


@test
def node_without_a_perf_map_each_jit_frame_is_shown_by_its_own_address():
    # No --perf-basic-prof: nothing names the JIT code, and each frame
    # outside every module keeps its own address.
    d = tmpdir()
    p, snaps = node_traced(["--interpreted-frames-native-stack", FIXTURE], d)
    eq(p.returncode, 0, f"exit status (stderr: {p.stderr.strip()})")
    st = max(top_json(snaps_of(d, "exit")[0], "--by", "traceback")["stats"], key=lambda s: s["size"])
    unknown = [f["address"] for f in st["traceback"] if f["module"] == "?"]
    check(len(unknown) >= 3, f"frames outside every module in the largest traceback: {unknown}")
    eq(len(set(unknown)), len(unknown), "their addresses, each its own")
    check(all(f["function"] == "??" for f in st["traceback"] if f["module"] == "?"), "unnamed")


@test
def a_stack_that_ends_where_a_frame_pointer_step_fails_is_not_handed_out_again():
    """nocfi.c: a function without CFI calls malloc from one place, in turn
    with a frame pointer that is no frame record (the walk ends there) and
    with its caller's frame record (the walk goes on into main).  Only the
    frame pointer differs, so the first stack must not be reused or taken
    from the memo for the second: 1,000 blocks each, exactly.  x86-64: the
    fixture's aarch64 variant builds, but a native aarch64 run of it has
    not been checked (aarch64 is tested under qemu-user, tests/e2e_aarch64.py)."""
    if os.uname().machine != "x86_64":
        skip("the nocfi fixture's stacks are checked on x86-64 only")
    d = tmpdir()
    p, _ = traced([os.path.join(BIN, "nocfi")], d)
    eq(p.returncode, 0, p.stderr[-300:])
    exp = expectations(p.stdout)
    r = top_json(snaps_of(d, "exit")[0], "--by", "traceback")
    got = {}
    for st in r["stats"]:
        fns = [f["function"] for f in st["traceback"]]
        if fns and fns[0] == "nocfi_alloc":
            got["goes_on" if "main" in fns else "ends_here"] = (st["size"], st["count"])
    eq(got, exp, "the two stacks through the function without CFI")
