"""End-to-end tests: the command line as a user meets it.

Usage errors (one line, the usage, exit 2), --help for every command,
unreadable and corrupt snapshot files (one line naming the byte, exit 2),
and `make install` giving a heapdelta that works without any environment.
"""
from e2e import *


@test
def usage_errors_exit_2_with_one_line_and_the_usage():
    for args, msg in [(["top"], "expected 1 snapshot file, got 0"),
                      (["diff", "a"], "expected 2 snapshot files, got 1"),
                      (["top", "--by", "nope", "x"], "--by must be lineno, filename, function or traceback, not 'nope'"),
                      (["top", "--frob", "x"], "unknown option '--frob'"),
                      (["top", "--cumulative", "--by", "traceback", "x"], "--cumulative cannot be used with --by traceback"),
                      (["run"], "no command to run"),
                      (["run", "--depth", "0", "--", "true"], "--depth takes 1 to 256, not '0'")]:
        p = hd(*args)
        eq(p.returncode, 2, f"exit status of {args}")
        lines = p.stderr.splitlines()
        eq(lines[0], f"heapdelta: {msg}", f"message for {args}")
        eq(len(lines), 2, f"message and usage for {args}")
        check(lines[1].startswith("usage: heapdelta "), lines[1])
    p = hd("frobnicate")
    eq(p.returncode, 2, "unknown command")
    check(p.stderr.startswith("heapdelta: unknown command 'frobnicate'\n"), p.stderr)


@test
def help_describes_every_command_and_option():
    for cmd in ("top", "diff", "run", "info", "leaks", "check", "trend", "report"):
        a, b = hd("help", cmd), hd(cmd, "--help")
        eq(a.returncode, 0, f"help {cmd}")
        eq(a.stdout, b.stdout, f"help {cmd} == {cmd} --help")
        check(a.stdout.startswith("usage: heapdelta " + cmd), a.stdout)
    text = hd("help", "top").stdout
    for opt in ("--by", "--cumulative", "--limit", "--include", "--exclude", "--all-frames",
                "--module", "--focus", "--ignore", "--format"):
        check(opt in text, f"top --help mentions {opt}")
    check("once per stack" in text, "--help says where --cumulative differs from tracemalloc")
    eq(hd("--help").returncode, 0, "heapdelta --help")


@test
def bad_snapshot_files_get_one_line_and_exit_2():
    d = tmpdir()
    traced([os.path.join(BIN, "sites")], d)
    good = open(snaps_of(d, "exit")[0], "rb").read()
    cases = {
        "empty": b"",
        "random": os.urandom(3000),
        "magic": b"NOTASNAP" + good[8:],
        "future": good[:8] + (99).to_bytes(4, "little") + good[12:],
        "trailing": good + b"x",
    }
    for cut in (1, 8, 15, 16, 40, len(good) // 3, len(good) // 2, len(good) - 17, len(good) - 1):
        cases[f"cut{cut}"] = good[:cut]
    # A count pointing past the end: the first section's length, made huge.
    cases["count"] = good[:24] + (1 << 40).to_bytes(8, "little") + good[32:]
    for name, data in cases.items():
        path = os.path.join(d, f"bad-{name}.snap")
        with open(path, "wb") as f:
            f.write(data)
        for cmd in (["top", path], ["diff", path, path], ["info", path]):
            p = hd(*cmd)
            eq(p.returncode, 2, f"exit status of {cmd[0]} on {name}")
            lines = p.stderr.splitlines()
            eq(len(lines), 1, f"one line for {name}: {p.stderr!r}")
            check(lines[0].startswith(f"heapdelta: '{path}': byte "), f"{name}: {lines[0]}")
    p = hd("top", os.path.join(d, "missing.snap"))
    eq(p.returncode, 2, "missing file")
    check(p.stderr.startswith("heapdelta: cannot open"), p.stderr)


@test
def make_install_gives_a_working_heapdelta_without_environment():
    dest = tmpdir()
    p = run(["make", "-C", ROOT, "install", f"DESTDIR={dest}", "PREFIX=/opt/hd"], timeout=300)
    eq(p.returncode, 0, f"make install: {p.stderr}")
    for f in ("bin/heapdelta", "lib/heapdelta/libheapdelta.so", "include/heapdelta.h"):
        check(os.path.exists(os.path.join(dest, "opt/hd", f)), f"installed {f}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEAPDELTA")}
    d = tmpdir()
    p = run([os.path.join(dest, "opt/hd/bin/heapdelta"), "run", "-o", d, "--", "true"], env=env)
    eq(p.returncode, 0, f"installed run: {p.stderr}")
    eq(len(snaps_of(d, "exit")), 1, "exit snapshot via the installed shim")
