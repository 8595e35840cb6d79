"""End-to-end tests: the snapshot files and what writes them.

Every trigger (API, signal, interval, exit), file names, modes and sequence
numbers; heapdelta_snapshot() without the shim; a program's own handler for
the snapshot signal; the writer's buffer; never overwriting a file or
following a link.
"""
from e2e import *


@test
def every_trigger_writes_its_snapshot():
    # The fixture waits until it sees three interval snapshots of its own
    # (a minute at most), so their number does not depend on the machine's
    # speed; what the timer promises, never to be early, is checked on the
    # timestamps inside them.
    d = tmpdir()
    p, snaps = traced([os.path.join(BIN, "triggers"), "0.3", "3"], d, "--interval", "0.25")
    eq(p.returncode, 0, "fixture exit status")
    check("api 0" in p.stdout, f"heapdelta_snapshot() returns 0 under the shim: {p.stdout}")
    check("intervals 3" in p.stdout, f"the fixture saw three interval snapshots: {p.stdout}")
    kinds = {}
    for s in snaps:
        m = re.fullmatch(r"heapdelta\.(\d+)\.(\d+)\.(interval|signal|api|exit)\.snap", os.path.basename(s))
        check(m, f"snapshot name {s}")
        kinds.setdefault(m.group(3), []).append(s)
        eq(stat.S_IMODE(os.stat(s).st_mode), 0o600, f"mode of {s}")
    eq(len(kinds.get("api", [])), 1, "api snapshots")
    eq(len(kinds.get("signal", [])), 1, "signal snapshots")
    eq(len(kinds.get("exit", [])), 1, "exit snapshots")
    check(len(kinds.get("interval", [])) >= 3, f"interval snapshots: {len(kinds.get('interval', []))}")
    infos = snap_infos(*snaps)
    api = [i for i in infos if i["trigger"] == "api"][0]
    eq(api["label"], "first checkpoint", "api label")
    seqs = sorted(i["seq"] for i in infos)
    eq(seqs, list(range(1, len(snaps) + 1)), "sequence numbers")
    ticks = sorted((i for i in infos if i["trigger"] == "interval"), key=lambda i: i["seq"])
    for k, i in enumerate(ticks, 1):
        after = i["mono_ns"] - i["start_mono_ns"]
        check(after >= k * 250000000, f"interval snapshot {k} taken {after / 1e6:.1f} ms after start, before {k * 250} ms")
    eq([f for f in os.listdir(d) if f.startswith(".")], [], "temporary files left behind")
    # Without the shim the same call is harmless.
    plain = run([os.path.join(BIN, "triggers"), "0"], env={**os.environ, "HEAPDELTA_SIGNAL": "0"})
    check("api -1" in plain.stdout or plain.returncode != 0, plain.stdout)


@test
def heapdelta_snapshot_is_harmless_without_the_shim():
    # SIGUSR2 would kill it without the shim: skip the raise by not tracing
    # and ignoring the signal in the parent (ignored dispositions inherit).
    p = subprocess.run([os.path.join(BIN, "triggers"), "0"], capture_output=True, text=True,
                       preexec_fn=lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN))
    eq(p.returncode, 0, "exit status")
    check("api -1" in p.stdout, p.stdout)


@test
def the_programs_own_handler_for_the_snapshot_signal_is_left_alone():
    d = tmpdir()
    script = "import signal,os; signal.signal(signal.SIGUSR2, lambda *a: print('mine')); os.kill(os.getpid(), signal.SIGUSR2); print('end')"
    p, snaps = traced(["/usr/bin/python3", "-c", script], d)
    eq(p.stdout, "mine\nend\n", "program handler ran")
    eq(snaps_of(d, "signal"), [], "no signal snapshot")


def stacks_header_offset(path):
    """File offset of the NEW_STACKS section header in a snapshot (the first
    section whose length the writer patches after writing it)."""
    data = open(path, "rb").read()
    off = 16
    while off < len(data):
        tag, _, length = struct.unpack_from("<IIQ", data, off)
        if tag == 8:
            return off
        off += 16 + length
    raise Failure("no NEW_STACKS section")


@test
def a_field_patched_across_a_buffer_flush_is_written_whole():
    # The writer fills in the NEW_STACKS section's length after the stacks; put
    # that field across the 256 KiB buffer boundary with a long argv.  (The
    # sites fixture's section is longer than 255 bytes: the length's second
    # byte is not zero.)
    prog = os.path.join(BIN, "sites")
    d = tmpdir()
    base = ["x" * 100000, "y" * 100000]
    traced([prog, *base], d)
    first = stacks_header_offset(snaps_of(d, "exit")[0])
    pad = (256 << 10) - (first + 8) - 1          # one byte of the length before the boundary, seven after
    check(0 < pad < 100000, f"pad {pad}")
    d2 = tmpdir()
    traced([prog, *base, "z" * (pad - 4)], d2)   # one more string: 4 bytes of length + its bytes
    snap = snaps_of(d2, "exit")[0]
    eq(stacks_header_offset(snap) + 8, (256 << 10) - 1, "the length field straddles the boundary")
    p = hd("info", snap)
    eq(p.returncode, 0, f"the snapshot reads back: {p.stderr}")
    data = open(snap, "rb").read()
    length = struct.unpack_from("<Q", data, stacks_header_offset(snap) + 8)[0]
    check(length > 255, f"section length {length}")


@test
def snapshots_never_overwrite_and_never_follow_links():
    d = tmpdir()
    # A planted symlink at the temporary name of the next snapshot of a
    # process is not followed: pid is unknown in advance, so plant one for
    # every sequence of a process we control: run once to learn nothing
    # else is written through it.
    target = os.path.join(d, "victim")
    with open(target, "w") as f:
        f.write("precious")
    p = subprocess.Popen([os.path.join(BIN, "triggers"), "0.5"],
                         env={**os.environ, "LD_PRELOAD": SHIM, "HEAPDELTA_OUT": d},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Plant links for this pid's exit snapshot under its final and temporary names.
    for seq in range(1, 6):
        for name in (f".heapdelta.{p.pid}.{seq}.exit.tmp", f"heapdelta.{p.pid}.{seq}.exit.snap"):
            try:
                os.symlink(target, os.path.join(d, name))
            except FileExistsError:
                pass
    p.communicate(timeout=30)
    eq(open(target).read(), "precious", "the link target is untouched")
    exits = [s for s in snaps_of(d, "exit") if not os.path.islink(s)]
    eq(len(exits), 1, f"one exit snapshot under a free name: {os.listdir(d)}")
