"""End-to-end tests: `heapdelta run`.

The program's exit status, output and signals pass through; a signal sent
to heapdelta reaches the program; a static binary is refused at once;
children are traced into their own files unless --no-children.
(`run --check` is in e2e_ci.py.)
"""
from e2e import *


@test
def run_passes_exit_status_and_signals_through():
    d = tmpdir()
    p, _ = traced(["sh", "-c", "echo out; echo err >&2; exit 7"], d)
    eq(p.returncode, 7, "exit status")
    eq(p.stdout, "out\n", "stdout")
    check(p.stderr.startswith("err\n"), p.stderr)
    check(re.search(r"^heapdelta: \d+ snapshots? of pid \d+ in ", p.stderr, re.M), p.stderr)
    p, _ = traced(["sh", "-c", "kill -TERM $$"], d)
    eq(p.returncode, -signal.SIGTERM, "killed by the same signal")
    p = run([HD, "run", "-o", d, "--", "cat"], input="stdin passes\n")
    eq(p.stdout, "stdin passes\n", "stdin")


@test
def run_forwards_a_signal_sent_to_it():
    # The program blocks SIGTERM, says it is ready, takes the signal with
    # sigtimedwait and prints who sent it, then exits 42.  Only a SIGTERM
    # that heapdelta sent it gives that line and that status: without
    # forwarding, heapdelta dies of the signal (-15) and the program prints
    # nothing.  (heapdelta blocks the signals it forwards from before fork
    # until its handlers are in place, so "ready" is late enough.)
    script = ("import os, signal, sys\n"
              "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])\n"
              "print('ready', os.getpid(), flush=True)\n"
              "si = signal.sigtimedwait([signal.SIGTERM], 60)\n"
              "print(f'got signal {si.si_signo} from pid {si.si_pid}' if si else 'no signal', flush=True)\n"
              "sys.exit(42 if si else 1)\n")
    d = tmpdir()
    proc = subprocess.Popen([HD, "run", "-o", d, "--", "/usr/bin/python3", "-c", script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = proc.stdout.readline().split()
    try:
        check(ready[:1] == ["ready"], f"the program did not start: {ready}")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.returncode != 42:
            proc.kill()
            proc.wait()
            try:  # heapdelta died without forwarding: the program still waits
                with open(f"/proc/{int(ready[1])}/cmdline", "rb") as f:
                    if b"sigtimedwait" in f.read():
                        os.kill(int(ready[1]), signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass
    out, err = proc.communicate(timeout=120)
    eq(out, f"got signal {int(signal.SIGTERM)} from pid {proc.pid}\n",
       f"the program's own account (heapdelta's status {proc.returncode}, stderr {err!r})")
    eq(proc.returncode, 42, "heapdelta's status is the program's, which took the signal")


@test
def run_refuses_a_static_binary_without_hanging():
    p = hd("run", "-o", tmpdir(), "--", os.path.join(BIN, "static_hello"), timeout=20)
    eq(p.returncode, 2, "exit status")
    lines = p.stderr.splitlines()
    eq(len(lines), 1, f"one line: {p.stderr!r}")
    check("statically linked" in lines[0], lines[0])
    eq(p.stdout, "", "the program did not run")


@test
def children_are_traced_into_their_own_files_unless_disabled():
    d = tmpdir()
    p, snaps = traced(["sh", "-c", f"{os.path.join(BIN, 'sites')} >/dev/null; true"], d)
    pids = {snap_order(s)[0] for s in snaps_of(d, "exit")}
    eq(len(pids), 2, f"exit snapshots from the shell and the program: {snaps}")
    d2 = tmpdir()
    p, snaps = traced(["sh", "-c", f"{os.path.join(BIN, 'sites')} >/dev/null; true"], d2, "--no-children")
    eq(len(snaps_of(d2, "exit")), 1, "only the shell is traced")
