#!/usr/bin/env python3
"""heapdelta's benchmark: real, unmodified, allocation-heavy programs and a
synthetic multi-threaded churn program, each run untraced, recorded by
heaptrack and recorded by heapdelta, interleaved, RUNS times each; then a
real server under load (Debian's redis-server driven by redis-benchmark).

Recording against recording: heaptrack's run is `heaptrack -o FILE PROGRAM`,
which in heaptrack 1.4 runs the program with its recorder preloaded and
heaptrack_interpret (and zstd) reading its pipe, and never heaptrack_print;
heapdelta's is the shim writing its snapshots.  Each tool's analysis of what
it wrote (heaptrack_print on its file, `heapdelta top` on the exit snapshot)
is timed on its own and shown in its own columns.

Prints a markdown table of median ratios to the untraced run (wall time, CPU
time of the whole process tree, peak RSS of the whole process tree: heaptrack
runs a second process), the sizes
of what each tool wrote, the analysis times, the shim's own memory per live
block, and whether the program's output under heapdelta was identical; then
the server's table: requests/s and p50/p99 latency per command.  Also writes
it all to build/bench/results.md.

    scripts/bench.py [--runs N] [--only NAME] [--modes untraced,heaptrack,...] [--quick]
    scripts/bench.py --instructions [--only NAME] [--modes heapdelta,sampled]

Run by `make bench`.  With --instructions (`make bench-instructions`), each
workload runs once per mode under valgrind's cachegrind instead, and the
table gives the instructions executed by the whole process tree: a cost that
does not vary from run to run, where wall time on a shared machine varies by
more than the differences to be seen (sampled mode's few percent).
"""
import argparse
import csv
import glob
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
WORK = os.path.join(BUILD, "bench")
SHIM = os.path.join(BUILD, "libheapdelta.so")
HD = os.path.join(BUILD, "heapdelta")
HEAPTRACK_AS_LIMIT = 8 << 30   # heaptrack's analysis can grow without bound
PYTHON = "/usr/bin/python3.11"   # Debian's: the CPython whose frames the shim reads
# The load on the server: pipelined (8 requests per round trip, 50
# connections) so that the server, not the client, is the bottleneck.
REDIS_LOAD = ["-P", "8", "-r", "100000", "-n", "300000", "-t", "set,get,lpush,lpop,sadd,hset", "--csv"]


def generate_inputs():
    os.makedirs(WORK, exist_ok=True)
    with open(os.path.join(WORK, "alloc.py"), "w") as f:
        f.write("import collections, json\n"
                "d = {}\n"
                "for i in range(260000):\n"
                "    d[str(i)] = [i, str(i * 2), (i, i + 1), {'k': i}]\n"
                "s = json.dumps(list(d.items())[:60000])\n"
                "c = collections.Counter(x % 1000 for x in range(600000))\n"
                "words = ' '.join(str(i) for i in range(200000)).split()\n"
                "print(len(s), len(c), len(words))\n")
    with open(os.path.join(WORK, "load.sql"), "w") as f:
        f.write("create table t(a integer primary key, b text, c real);\ncreate index tb on t(b);\n")
        f.write("begin;\n")
        for i in range(120000):
            f.write(f"insert into t(b, c) values('{'k%07d' % ((i * 7919) % 100003)}-{'x' * (i % 40)}', {i * 0.5});\n")
        f.write("commit;\n")
        f.write("select count(*), sum(length(b)) from t;\n")
        f.write("select b, count(*) from t group by substr(b, 1, 4) order by 2 desc limit 5;\n")
        f.write("create table u as select a, upper(b) as b from t where a % 3 = 0;\n")
        f.write("select count(*) from t join u using (a);\n")
    with open(os.path.join(WORK, "gen.c"), "w") as f:
        f.write("#include <stddef.h>\n")
        for i in range(260):
            f.write(f"struct s{i} {{ int a; long b[{i % 7 + 1}]; struct s{i} *next; }};\n"
                    f"static int helper{i}(struct s{i} *p, int n) {{ int t = 0; for (int k = 0; k < n; k++) "
                    f"{{ t += p->a * k + (int)p->b[k % {i % 7 + 1}]; if (t > {i}) t -= {i % 13 + 1}; }} return t; }}\n"
                    f"int api{i}(struct s{i} *p) {{ return p ? helper{i}(p, {i % 17 + 3}) + "
                    f"api{max(i - 1, 0)}((void *)0) : {i}; }}\n")
    with open(os.path.join(WORK, "gen.cpp"), "w") as f:
        f.write("#include <vector>\n#include <string>\n#include <map>\n")
        for i in range(900):
            f.write(f"namespace n{i % 17} {{ template <typename T> class Widget{i} : public std::vector<T> {{ public: "
                    f"Widget{i}(int a,int b):x(a),y(b){{}} int sum() const {{ int t=0; for(auto v:*this) t+=v*{i}; "
                    f"return t+x*y; }} std::map<std::string,int> m; private: int x; int y; }}; }}\n"
                    f"int use{i}() {{ n{i % 17}::Widget{i}<int> w({i},{i + 1}); w.push_back({i}); "
                    f"return w.sum(); }}\n")
    with open(os.path.join(WORK, "work.pl"), "w") as f:
        f.write("my %h; my @a;\n"
                "for my $i (1..900000) { my $k = 'key' . ($i % 50000); $h{$k} .= chr(65 + $i % 26); "
                "push @a, [$i, $k] if $i % 3 == 0; }\n"
                "my $n = 0; for my $r (@a) { $n += length($h{$r->[1]}); }\n"
                "my @s = sort { $a cmp $b } keys %h; my $j = join(',', @s[0..9]);\n"
                "(my $t = $j) =~ s/key/K/g; print scalar(@a), ' ', $n, ' ', $t, \"\\n\";\n")
    with open(os.path.join(WORK, "check.c"), "w") as f:
        # cppcheck's value flow over many small functions with branches on
        # known values: about 7 M allocations/s; one out-of-bounds read each.
        f.write("#include <stdlib.h>\n#include <string.h>\n\n"
                "#define CLAMP(x, lo, hi) ((x) < (lo) ? (lo) : (x) > (hi) ? (hi) : (x))\n\n")
        for i in range(120):
            n = i % 8 + 2
            f.write(f"struct ctx{i} {{ int mode; unsigned flags; size_t len; char *buf; int vals[{n}]; }};\n\n"
                    f"static int step{i}(struct ctx{i} *c, int a, int b)\n{{\n"
                    f"    int x = a + {i}, y = b - {i % 13}, z = 0;\n"
                    f"    if (c->mode == {i % 3}) {{\n"
                    f"        x = CLAMP(x, 0, {i + 100});\n        y = CLAMP(y, -{i}, {i * 2 + 1});\n"
                    f"    }} else if (c->mode > {i % 5}) {{\n        z = x * y % {i % 17 + 3};\n    }}\n"
                    f"    for (int k = 0; k < {n}; k++) {{\n"
                    f"        c->vals[k] += (c->flags & (1u << k)) ? x : y;\n"
                    f"        if (c->vals[k] > {1000 + i}) c->vals[k] -= z;\n    }}\n"
                    f"    if (c->len && c->buf) c->buf[c->len - 1] = (char)(x ^ y);\n"
                    f"    return x + y + z;\n}}\n\n"
                    f"int process{i}(const char *s, int n)\n{{\n"
                    f"    struct ctx{i} c;\n    int total = 0;\n    memset(&c, 0, sizeof c);\n"
                    f"    c.len = strlen(s);\n    c.buf = malloc(c.len + 1);\n    if (!c.buf) return -1;\n"
                    f"    memcpy(c.buf, s, c.len + 1);\n"
                    f"    for (int r = 0; r < n; r++) {{\n        c.mode = r % 4;\n"
                    f"        c.flags = (unsigned)r * {i % 29 + 1}u;\n        total += step{i}(&c, r, n - r);\n    }}\n"
                    f"    if (total == {i * 7}) return total;\n    free(c.buf);\n"
                    f"    return total + c.vals[{n}];\n}}\n\n")
    for name, extra in (("churn", []), ("churn-fp", ["-fno-omit-frame-pointer"])):
        subprocess.run(["cc", "-O2", "-g", "-pthread", *extra, "-o", os.path.join(WORK, name),
                        os.path.join(ROOT, "scripts", "bench", "churn.c")], check=True)


def workloads():
    cc1 = subprocess.run(["gcc", "-print-prog-name=cc1"], capture_output=True, text=True).stdout.strip()
    w = os.path.join
    py = {"PYTHONMALLOC": "malloc"}
    # (name, command, environment, standard input, frame-pointer build)
    return [
        ("python3 (native frames)", [PYTHON, w(WORK, "alloc.py")], {**py, "HEAPDELTA_PYTHON": "0"}, None, False),
        ("python3 (Python frames)", [PYTHON, w(WORK, "alloc.py")], py, None, False),
        ("sqlite3", ["sqlite3", ":memory:"], {}, w(WORK, "load.sql"), False),
        ("cc1", [cc1, "-quiet", "-O2", w(WORK, "gen.c"), "-o", w(WORK, "gen.s")], {}, None, False),
        ("clang-format", ["clang-format", w(WORK, "gen.cpp")], {}, None, False),
        ("perl", ["perl", w(WORK, "work.pl")], {}, None, False),
        # Its findings go to stderr unless written to a file: to stdout
        # here, so that they are compared with the untraced run's.
        ("cppcheck", ["cppcheck", "--quiet", "--output-file=/dev/stdout", w(WORK, "check.c")], {}, None, False),
        ("churn, 2 threads", [w(WORK, "churn"), "3000000", "2"], {}, None, False),
        ("churn, 2 threads, fp build", [w(WORK, "churn-fp"), "3000000", "2"], {}, None, True),
    ]


def tree_rss_kib(pid):
    """Sum of VmRSS over pid and its descendants, in KiB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            pass
    return total


class PeakRss:
    """The peak RSS in KiB of the process tree under pid (tree_rss_kib),
    sampled every 10 ms by a thread of its own between start() and stop()."""

    def __init__(self, pid):
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(pid,), daemon=True)

    def _sample(self, pid):
        while not self._done.wait(0.01):
            self.peak = max(self.peak, tree_rss_kib(pid))

    def start(self):
        self._thread.start()

    def stop(self):
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()


def measure(cmd, env, stdin_path, limit_as=None, timeout=600):
    """Run cmd; return wall, CPU (user+sys of the tree), peak RSS in KiB (the
    sum over the process tree, sampled every 10 ms, or the largest single
    process if that is more), stdout bytes and the exit status."""
    out = tempfile.TemporaryFile()
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL

    def limits():
        if limit_as:
            resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))

    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=stdin, stdout=out, stderr=subprocess.DEVNULL, env=env, preexec_fn=limits)
    rss = PeakRss(p.pid)
    rss.start()
    deadline = t0 + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            p.kill()
            pid, status, ru = os.wait4(p.pid, 0)
            break
        time.sleep(0.002)
    wall = time.perf_counter() - t0
    rss.stop()
    p.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    data = out.read()
    if stdin_path:
        stdin.close()
    return wall, ru.ru_utime + ru.ru_stime, max(ru.ru_maxrss, rss.peak), data, p.returncode


def dir_size(pattern):
    return sum(os.path.getsize(f) for f in glob.glob(pattern))


def fmt_ratio(v):
    return "-" if v is None else f"{v:.2f}x"


def fmt_size(n):
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def fmt_count(n):
    if n is None:
        return "-"
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.0f} k" if n >= 1e3 else f"{n:.0f}"


def fmt_secs(v):
    return "-" if v is None else f"{v:.2f} s"


def fmt_bytes(v):
    return "-" if v is None else f"{v:.1f} B"


def missing(prog, what):
    """True, after one line saying so, if prog is not installed."""
    if shutil.which(prog):
        return False
    print(f"bench: {prog} is not installed (scripts/deps.sh bench installs it): {what}", file=sys.stderr)
    return True


def snapshot_infos(d):
    """`heapdelta info --format json` of every snapshot in d: a list of dicts."""
    files = glob.glob(os.path.join(d, "heapdelta.*.snap"))
    if not files:
        return []
    try:
        r = subprocess.run([HD, "info", "--format", "json", *files], capture_output=True, text=True)
        return json.loads(r.stdout) if r.returncode == 0 else []
    except (OSError, ValueError) as e:
        print(f"bench: heapdelta info: {e}", file=sys.stderr)
        return []


def shim_per_block(infos):
    """The shim's own memory per live block at the snapshot with the most
    live blocks: (bytes per block, live blocks), or None."""
    if not infos:
        return None
    s = max(infos, key=lambda i: i["live_count"])
    return (s["shim_bytes"] / s["live_count"], s["live_count"]) if s["live_count"] else None


def analysis_time(mode, odir, limit):
    """Wall seconds of the tool's own analysis of what one run wrote:
    heaptrack_print on heaptrack's file, `heapdelta top` on the exit
    snapshot; None if there is nothing to analyze or it failed."""
    if mode == "heaptrack":
        files = glob.glob(os.path.join(odir, "ht.*"))
        cmd = ["heaptrack_print", files[0]] if files else None
    else:
        files = glob.glob(os.path.join(odir, "heapdelta.*.exit.snap"))
        cmd = [HD, "top", files[0]] if files else None
    if not cmd:
        return None
    try:
        wall, _, _, _, rc = measure(cmd, os.environ, None, limit)
    except OSError as e:
        print(f"bench: {cmd[0]}: {e}", file=sys.stderr)
        return None
    return wall if rc == 0 else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", help="only the workloads whose name contains this (redis: the server; "
                    "threads: the thread-scaling table alone)")
    ap.add_argument("--modes", default="untraced,heaptrack,heapdelta,heapdelta-fp,sampled")
    ap.add_argument("--quick", action="store_true",
                    help="one run per mode, without the analyzer's and the thread-scaling tables")
    ap.add_argument("--instructions", action="store_true",
                    help="instructions executed under cachegrind instead of times (one run per mode)")
    args = ap.parse_args()
    if args.quick:
        args.runs = 1
    # A SIGTERM ends the bench through the finally clauses that stop a server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    modes = args.modes.split(",")
    if "heaptrack" in modes and (missing("heaptrack", "no heaptrack columns")
                                 or missing("heaptrack_print", "no heaptrack columns")):
        modes.remove("heaptrack")
    if shutil.which("heaptrack_gui"):
        print("bench: heaptrack_gui is installed: `heaptrack` opens it after recording, inside the timed run",
              file=sys.stderr)
    generate_inputs()
    if args.instructions:
        chosen = args.modes.split(",") if "--modes" in sys.argv else INSTRUCTION_MODES
        text = instruction_counts([m for m in INSTRUCTION_MODES if m in chosen], args.only)
        print(text)
        with open(os.path.join(WORK, "instructions.md"), "w") as f:
            f.write(text)
        return
    if args.only == "threads":
        print(thread_scaling(args.runs))
        return
    base_env = dict(os.environ)
    rows = []
    for name, cmd, extra_env, stdin_path, fp_build in workloads():
        if args.only and args.only not in name:
            continue
        if missing(cmd[0], f"no {name} row"):
            continue
        env = {**base_env, **extra_env}
        wl_modes = [m for m in modes if m != "heapdelta-fp" or fp_build]
        res = {m: [] for m in wl_modes}
        outputs, status, sizes, died, analysis, nosnap = {}, {}, {}, {}, {}, set()
        for run in range(args.runs):
            for mode in wl_modes:   # interleaved: one run of each mode per round
                odir = tempfile.mkdtemp(prefix="hd-bench-")
                c, e = mode_command(mode, cmd, env, odir)
                limit = HEAPTRACK_AS_LIMIT if mode == "heaptrack" else None
                wall, cpu, rss, data, rc = measure(c, e, stdin_path, limit)
                if mode == "heaptrack":
                    size = dir_size(os.path.join(odir, "ht*"))
                    if rc != 0 or size == 0:
                        died[mode] = True
                else:
                    size = dir_size(os.path.join(odir, "heapdelta.*.snap")) if mode != "untraced" else 0
                    if mode != "untraced" and size == 0:
                        nosnap.add(mode)   # the shim did not load, or wrote nothing
                    outputs.setdefault(mode, data)
                    if data != outputs.get("untraced", data) or rc != status.get("untraced", rc):
                        outputs[mode] = None   # differs from the untraced run
                    status.setdefault(mode, rc)
                if mode in ("heaptrack", "heapdelta") and not died.get(mode):
                    t = analysis_time(mode, odir, limit)
                    if t is not None:
                        analysis.setdefault(mode, []).append(t)
                sizes.setdefault(mode, []).append(size)
                res[mode].append((wall, cpu, rss))
                shutil.rmtree(odir, ignore_errors=True)
                print(f"  {name:28} {mode:13} run {run + 1}: {wall:6.2f}s cpu {cpu:6.2f}s rss {rss / 1024:7.1f} MiB"
                      f"{'  (died)' if died.get(mode) and mode == 'heaptrack' else ''}"
                      f"{'  (no snapshot)' if mode in nosnap else ''}", file=sys.stderr)
        med = {m: tuple(statistics.median(x[i] for x in res[m]) for i in range(3)) for m in wl_modes}
        base = med["untraced"]
        ratio = {m: tuple(med[m][i] / base[i] for i in range(3)) for m in wl_modes}
        memory = workload_memory(cmd, env, stdin_path) if "heapdelta" in wl_modes else None
        rows.append((name, base, ratio, {m: statistics.median(sizes[m]) for m in wl_modes}, died,
                     {m: outputs.get(m) is not None for m in wl_modes if m.startswith("heapdelta")},
                     {m: statistics.median(t) for m, t in analysis.items()}, memory, nosnap))

    lines = ["| workload | allocs/s | untraced | heaptrack wall | heapdelta wall | fp wall | sampled wall "
             "| overhead vs heaptrack's | heaptrack CPU | heapdelta CPU | heaptrack RSS | heapdelta RSS "
             "| heaptrack output | snapshots | heaptrack_print | heapdelta top | live blocks | shim B/block "
             "| output identical |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    for name, base, ratio, sizes, died, same, analysis, memory, nosnap in rows:
        ht = ratio.get("heaptrack")
        hdm = ratio.get("heapdelta")
        fp = ratio.get("heapdelta-fp")
        smp = ratio.get("sampled")
        if ht and hdm and not died.get("heaptrack"):
            share = f"{(hdm[0] - 1) / (ht[0] - 1) * 100:.0f}%" if ht[0] > 1 else "-"
            if fp:
                share += f" (fp {(fp[0] - 1) / (ht[0] - 1) * 100:.0f}%)"
        else:
            share = "heaptrack died" if died.get("heaptrack") else "-"
        htw = "died" if died.get("heaptrack") else fmt_ratio(ht and ht[0])
        allocs, per_block = (memory or (None, None))
        lines.append(f"| {name} | {fmt_count(allocs and allocs / base[0])} | {base[0]:.2f}s | {htw} "
                     f"| {fmt_ratio(hdm and hdm[0])} | {fmt_ratio(fp and fp[0])} "
                     f"| {fmt_ratio(smp and smp[0])} "
                     f"| {share} | {fmt_ratio(ht and ht[1])} | {fmt_ratio(hdm and hdm[1])} "
                     f"| {fmt_ratio(ht and ht[2])} | {fmt_ratio(hdm and hdm[2])} "
                     f"| {fmt_size(sizes.get('heaptrack'))} | {fmt_size(sizes.get('heapdelta'))} "
                     f"| {fmt_secs(analysis.get('heaptrack'))} | {fmt_secs(analysis.get('heapdelta'))} "
                     f"| {fmt_count(per_block and per_block[1])} | {fmt_bytes(per_block and per_block[0])} "
                     f"| {'yes' if all(same.values()) else 'NO'}"
                     f"{''.join(f', no snapshot from {m}' for m in sorted(nosnap))} |")
    text = ""
    if rows:
        text = (f"{args.runs} runs per mode, interleaved; medians; ratios to the untraced run.\n\n"
                + "\n".join(lines) + "\n")
    if not args.only or args.only in "redis-server":
        server = redis_bench(args.runs, [m for m in modes if m in ("untraced", "heaptrack", "heapdelta", "sampled")])
        if server:
            text += "\n" + server + "\n"
    extra = [] if args.only or args.quick else [analyzer_speed(), analyzer_at_scale(), thread_scaling(args.runs)]
    if not args.quick and (not args.only or args.only in "python3 frames"):
        extra.append(python_frames_cost(args.runs))
    for e in extra:
        if e:
            text += "\n" + e + "\n"
    print(text)
    with open(os.path.join(WORK, "results.md"), "w") as f:
        f.write(text)


# --instructions counts heapdelta's modes against the untraced run; heaptrack,
# a script that starts its interpreter and zstd beside the program, is left out.
INSTRUCTION_MODES = ["untraced", "heapdelta", "sampled"]


def mode_command(mode, cmd, env, odir):
    """The command and environment of one run of cmd in mode."""
    if mode == "untraced":
        return cmd, env
    if mode == "heaptrack":
        # heaptrack 1.4: the recorder and heaptrack_interpret (compressed by
        # zstd); heaptrack_print is not run.
        return ["heaptrack", "-o", os.path.join(odir, "ht"), *cmd], env
    e = {**env, "LD_PRELOAD": SHIM, "HEAPDELTA_OUT": odir}
    if mode == "heapdelta-fp":
        e["HEAPDELTA_UNWIND"] = "fp"
    if mode == "sampled":
        e["HEAPDELTA_SAMPLE"] = str(512 << 10)
    return cmd, e


def instructions(cmd, env, stdin_path):
    """Instructions executed by cmd and every process it starts, counted by
    cachegrind (None if it did not run to the end)."""
    log = tempfile.NamedTemporaryFile(prefix="hd-bench-", suffix=".log", delete=False)
    log.close()
    vg = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--trace-children=yes",
          "--cachegrind-out-file=/dev/null", f"--log-file={log.name}.%p"]
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    try:
        p = subprocess.run(vg + cmd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=env, timeout=3600)
        total = 0
        for f in glob.glob(log.name + ".*"):
            with open(f) as fh:
                for line in fh:
                    if "I   refs:" in line:
                        total += int(line.split()[-1].replace(",", ""))
        return total if p.returncode == 0 and total else None
    finally:
        if stdin_path:
            stdin.close()
        for f in glob.glob(log.name + "*"):
            os.unlink(f)


def instruction_counts(modes, only):
    """The --instructions table: per workload, the instructions of the
    untraced run and each mode's ratio to it."""
    if missing("valgrind", "no instruction counts"):
        return ""
    if "untraced" not in modes:
        modes.insert(0, "untraced")
    # Python's string hashes are salted per run, which moves its instruction
    # count by a percent or so: fixed here.
    base_env = {**os.environ, "PYTHONHASHSEED": "0"}
    head = ["workload", "untraced"] + [m for m in modes if m != "untraced"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for name, cmd, extra_env, stdin_path, _ in workloads():
        if only and only not in name:
            continue
        if missing(cmd[0], f"no {name} row"):
            continue
        counts = {}
        for mode in modes:
            odir = tempfile.mkdtemp(prefix="hd-bench-")
            try:
                c, e = mode_command(mode, cmd, {**base_env, **extra_env}, odir)
                counts[mode] = instructions(c, e, stdin_path)
            finally:
                shutil.rmtree(odir, ignore_errors=True)
            n = counts[mode]
            print(f"  {name:28} {mode:13} {'failed' if n is None else f'{n:,} instructions'}", file=sys.stderr)
        base = counts["untraced"]
        cells = [name, "failed" if base is None else f"{base / 1e6:,.0f} M"]
        for m in modes[1:]:
            n = counts[m]
            cells.append("failed" if n is None or base is None else f"{n / base:.3f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return ("Instructions executed (cachegrind, the whole process tree), one run per mode; "
            "ratios to the untraced run.\n\n" + "\n".join(lines) + "\n")


def workload_memory(cmd, env, stdin_path):
    """One more run under heapdelta, untimed, with a snapshot every 0.1 s:
    the allocations of the whole run and the shim's memory per live block
    at the snapshot with the most live blocks (bytes, blocks)."""
    d = tempfile.mkdtemp(prefix="hd-bench-")
    try:
        measure(cmd, {**env, "LD_PRELOAD": SHIM, "HEAPDELTA_OUT": d, "HEAPDELTA_INTERVAL": "0.1"}, stdin_path)
        infos = snapshot_infos(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    if not infos:
        return None
    return max(i["alloc_count"] for i in infos), shim_per_block(infos)


def free_port():
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_send(port, line, timeout=1.0):
    """Send one inline command to the server on port; the first bytes of its
    reply (b"" if it closed the connection).  Raises OSError if it cannot
    connect."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(line + b"\r\n")
        try:
            return s.recv(64)
        except OSError:
            return b""


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def stop_group(p):
    """End p's whole process group (the server, and under heaptrack its
    script and heaptrack_interpret): SIGTERM, SIGKILL after 5 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            p.poll()   # reaps the leader, so that it no longer counts
            if not group_alive(p.pid):
                break
            time.sleep(0.05)
    p.wait()


def redis_run(mode, odir):
    """One redis-server in one mode on a free loopback port, loaded by
    redis-benchmark (REDIS_LOAD), then stopped by SHUTDOWN NOSAVE.  Returns
    {command: (requests/s, p50 ms, p99 ms)}, the peak RSS in KiB of the
    server's process tree and its exit status; raises RuntimeError, naming
    what failed, if it does not start or the benchmark fails.  Whatever
    happens, nothing it started is left running when it returns."""
    port = free_port()
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", odir, "--logfile", ""]
    env, limit = dict(os.environ), None
    if mode == "heaptrack":
        cmd, limit = ["heaptrack", "-o", os.path.join(odir, "ht"), *cmd], HEAPTRACK_AS_LIMIT
    elif mode in ("heapdelta", "sampled"):
        env.update(LD_PRELOAD=SHIM, HEAPDELTA_OUT=odir, HEAPDELTA_INTERVAL="1")
        if mode == "sampled":
            env["HEAPDELTA_SAMPLE"] = str(512 << 10)
    log_path = os.path.join(odir, "server.log")

    def limits():
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    def log_tail():
        with open(log_path, errors="replace") as f:
            return " | ".join(f.read().splitlines()[-3:])

    with open(log_path, "wb") as log:
        # Its own process group, so that all of it can be stopped at once.
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True, preexec_fn=limits)
    rss = PeakRss(p.pid)
    try:
        deadline = time.monotonic() + 60
        while True:
            if p.poll() is not None:
                raise RuntimeError(f"redis-server exited with status {p.returncode} before it answered: {log_tail()}")
            try:
                if redis_send(port, b"PING").startswith(b"+PONG"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer PING within 60 s: {log_tail()}")
            time.sleep(0.05)
        rss.start()
        r = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), *REDIS_LOAD],
                           capture_output=True, text=True, timeout=900)
        rss.stop()
        if r.returncode != 0:
            raise RuntimeError(f"redis-benchmark exited with status {r.returncode}: {r.stderr.strip()[-200:]}")
        redis_send(port, b"SHUTDOWN NOSAVE", timeout=30)
        rc = p.wait(timeout=300)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"timed out: {' '.join(e.cmd) if isinstance(e.cmd, list) else e.cmd}")
    except OSError as e:
        raise RuntimeError(f"redis-server on port {port}: {e}")
    finally:
        rss.stop()
        if p.poll() is None or group_alive(p.pid):
            stop_group(p)
            if mode == "heaptrack":   # the script's FIFO, which its exit trap would have removed
                try:
                    os.unlink(f"/tmp/heaptrack_fifo{p.pid}")
                except FileNotFoundError:
                    pass
    tests = {rec["test"]: (float(rec["rps"]), float(rec["p50_latency_ms"]), float(rec["p99_latency_ms"]))
             for rec in csv.DictReader(r.stdout.splitlines())}
    return tests, rss.peak, rc


def redis_bench(runs, modes):
    """Debian's redis-server under load (REDIS_LOAD), untraced, recorded by
    heaptrack and by heapdelta (a snapshot every second; every allocation,
    and sampled), interleaved, RUNS times each: per command the median requests/s, the throughput kept
    under each tool and the median p50 and p99 latency; the server's peak
    RSS, each tool's analysis of what it wrote, and the shim's memory per
    live block at the interval snapshot with the most live blocks (the end
    of the load).  A markdown table, or None if redis is not installed."""
    if missing("redis-server", "no server table") or missing("redis-benchmark", "no server table"):
        return None
    res = {m: [] for m in modes}
    rss, status, analysis, memory, failed = {}, {}, {}, [], {}
    for run in range(runs):
        for mode in modes:   # interleaved: one run of each mode per round
            odir = tempfile.mkdtemp(prefix="hd-bench-")
            try:
                tests, peak, rc = redis_run(mode, odir)
                res[mode].append(tests)
                rss.setdefault(mode, []).append(peak)
                status.setdefault(mode, set()).add(rc)
                if mode in ("heaptrack", "heapdelta"):
                    t = analysis_time(mode, odir, HEAPTRACK_AS_LIMIT if mode == "heaptrack" else None)
                    if t is not None:
                        analysis.setdefault(mode, []).append(t)
                if mode == "heapdelta":
                    m = shim_per_block([i for i in snapshot_infos(odir) if i["trigger"] == "interval"])
                    if m:
                        memory.append(m)
                summary = " ".join(f"{k} {v[0] / 1000:.0f}k/s" for k, v in tests.items())
            except RuntimeError as e:
                failed[mode] = True
                summary = f"failed: {e}"
            finally:
                shutil.rmtree(odir, ignore_errors=True)
            print(f"  {'redis-server':28} {mode:13} run {run + 1}: {summary}", file=sys.stderr)
    if not res.get("untraced"):
        return "redis-server: no untraced run completed." if "untraced" in modes else None
    commands = list(res["untraced"][0])

    def med(mode, cmd, i):
        v = [t[cmd][i] for t in res.get(mode, []) if cmd in t]
        return statistics.median(v) if v else None

    def cell(v, fmt):
        return "-" if v is None else fmt.format(v)

    shown = ("untraced", "heapdelta", "sampled", "heaptrack")
    lines = [f"`redis-server` on a loopback port under `redis-benchmark {' '.join(REDIS_LOAD)}`: "
             f"{runs} runs per mode, interleaved; medians (heapdelta: every allocation, a snapshot every "
             f"second; sampled: the same with HEAPDELTA_SAMPLE={512 << 10}).", "",
             "| command | " + " | ".join(f"{m} req/s" for m in shown) + " | "
             + " | ".join(f"{m} / untraced" for m in shown[1:]) + " | "
             + " | ".join(f"p{q} {m}" for q in (50, 99) for m in shown) + " |",
             "|---|" + "---:|" * (len(shown) * 4 - 1)]
    for c in commands:
        u = med("untraced", c, 0)
        rps = [med(m, c, 0) for m in shown]
        lines.append(f"| {c} | " + " | ".join(cell(v, '{:.0f}') for v in rps) + " | "
                     + " | ".join(cell(v and v / u * 100, '{:.0f}%') for v in rps[1:]) + " "
                     + "".join(f"| {cell(med(m, c, i), '{:.3f} ms')} " for i in (1, 2) for m in shown) + "|")
    base = statistics.median(rss["untraced"])
    notes = [f"server peak RSS: untraced {base / 1024:.0f} MiB"]
    notes += [f"{m} {statistics.median(rss[m]) / base:.2f}x" for m in ("heapdelta", "sampled", "heaptrack") if rss.get(m)]
    notes += [f"{tool} {statistics.median(analysis[m]):.2f} s"
              for m, tool in (("heaptrack", "heaptrack_print"), ("heapdelta", "heapdelta top")) if analysis.get(m)]
    if memory:
        per_block = statistics.median(m[0] for m in memory)
        notes.append(f"shim memory {per_block:.1f} B per live block "
                     f"({fmt_count(statistics.median(m[1] for m in memory))} blocks)")
    notes.append("exit status " + ", ".join(f"{m} {'/'.join(map(str, sorted(s)))}" for m, s in status.items()))
    notes += [f"{m} FAILED (see above)" for m in failed]
    lines += ["", "; ".join(notes) + "."]
    return "\n".join(lines)


def analyzer_speed():
    """Seconds for top and diff of cc1's snapshots, symbolization included."""
    cc1 = subprocess.run(["gcc", "-print-prog-name=cc1"], capture_output=True, text=True).stdout.strip()
    d = tempfile.mkdtemp(prefix="hd-bench-")
    env = {**os.environ, "LD_PRELOAD": SHIM, "HEAPDELTA_OUT": d, "HEAPDELTA_INTERVAL": "0.3"}
    subprocess.run([cc1, "-quiet", "-O2", os.path.join(WORK, "gen.c"), "-o", os.path.join(WORK, "gen.s")], env=env, check=True)
    snaps = sorted(glob.glob(os.path.join(d, "heapdelta.*.snap")), key=lambda p: int(p.split(".")[-3]))
    times = {}
    for name, args in (("top", ["top", snaps[-1]]), ("diff", ["diff", snaps[0], snaps[-1]])):
        t0 = time.perf_counter()
        subprocess.run([HD, *args], capture_output=True, check=True)
        times[name] = time.perf_counter() - t0
    stacks = subprocess.run([HD, "info", snaps[-1]], capture_output=True, text=True).stdout
    nstacks = [l for l in stacks.splitlines() if l.strip().startswith("stacks:")][0].split()[1]
    shutil.rmtree(d, ignore_errors=True)
    return (f"Analyzer on cc1's snapshots ({nstacks} stacks, symbolized from scratch): "
            f"`heapdelta top` {times['top']:.2f} s, `heapdelta diff` {times['diff']:.2f} s.")


def python_service_run(d, count):
    """Debian's python3 running scripts/bench/asyncsvc.py (an asyncio service
    keeping every finished task) under heapdelta, a snapshot every 0.01 s,
    stopped by SIGTERM once `count` interval snapshots of it are on disk: it
    shuts down cleanly, so its teardown and exit snapshot follow."""
    p = subprocess.Popen([HD, "run", "-o", d, "--interval", "0.01", "--", "/usr/bin/python3",
                          os.path.join(ROOT, "scripts", "bench", "asyncsvc.py")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while p.poll() is None and len(glob.glob(os.path.join(d, "heapdelta.*.interval.snap"))) < count:
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)   # heapdelta run passes it on
    p.wait()


def analyzer_at_scale():
    """trend, report and watch (one frame: the folder holds the exit snapshot)
    over 2,000 snapshots of one process, each loaded, used and released in
    turn: synthetic version 1 files of 10,000 sites (tests/gen_snapshots.py),
    and a Python service's own version 2 files.  Wall time and peak RSS."""
    rows = ["| snapshots of | snapshots | sites | stacks | on disk | `trend` | `report` | `watch` |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in ("synthetic, version 1", "python3 asyncio service, version 2"):
        d = tempfile.mkdtemp(prefix="hd-bench-")
        if name.startswith("synthetic"):
            subprocess.run([sys.executable, os.path.join(ROOT, "tests", "gen_snapshots.py"), "--exit", d, "2000", "10000"],
                           check=True)
        else:
            python_service_run(d, 2000)
        cells = []
        for cmd in (["trend", d], ["report", d, "-o", os.path.join(d, "report.html")],
                    ["watch", d, "--interval-poll", "0.1"]):
            wall, _, rss, out, rc = measure([HD, *cmd], os.environ, None)
            cells.append(f"{wall:.1f} s, {rss / 1024:.0f} MiB" if rc == 0 else f"failed ({rc})")
            if cmd[0] == "trend":
                head = out.decode(errors="replace").splitlines()[0]
        # (--limit 1: parsing every series here would swell this process,
        # and a child forked from it starts with its peak RSS.)
        info = json.loads(subprocess.run([HD, "trend", d, "--format", "json", "--limit", "1"], capture_output=True,
                                         check=True).stdout)
        nsites = int(subprocess.run([HD, "trend", d, "--limit", "1"], capture_output=True, text=True,
                                    check=True).stdout.splitlines()[2].split()[0]) + 1
        files = glob.glob(os.path.join(d, f"heapdelta.{info['pid']}.*.snap"))
        last = max(files, key=lambda f: int(f.split(".")[-3]))
        stacks = [l for l in subprocess.run([HD, "info", last], capture_output=True, text=True).stdout.splitlines()
                  if l.strip().startswith("stacks:")][0].split()[1]
        rows.append(f"| {name} | {info['snapshots']} | {nsites} | {stacks} | "
                    f"{fmt_size(sum(os.path.getsize(f) for f in files))} | {cells[0]} | {cells[1]} | {cells[2]} |")
        print(f"  {name}: {head}", file=sys.stderr)
        shutil.rmtree(d, ignore_errors=True)
    return "\n".join(rows)


def python_frames_cost(runs):
    """heapdelta on the python3 workload with native frames only and with
    Python frames, the two interleaved round by round (the python3 rows of
    the main table run one after the other, which on a noisy machine moves
    their ratio more than the frames do), CPU time, medians."""
    if missing(PYTHON, "no Python frames table"):
        return None
    cmd = [PYTHON, os.path.join(WORK, "alloc.py")]
    env = {**os.environ, "PYTHONMALLOC": "malloc", "LD_PRELOAD": SHIM}
    cpu = {"0": [], "1": []}
    rounds = max(2 * runs + 1, 9)
    for run in range(rounds):
        for frames in ("0", "1"):
            d = tempfile.mkdtemp(prefix="hd-bench-")
            cpu[frames].append(measure(cmd, {**env, "HEAPDELTA_OUT": d, "HEAPDELTA_PYTHON": frames}, None)[1])
            shutil.rmtree(d, ignore_errors=True)
            print(f"  {'python3 frames':28} {'Python' if frames == '1' else 'native':13} run {run + 1}: "
                  f"cpu {cpu[frames][-1]:6.2f}s", file=sys.stderr)
    native, python = statistics.median(cpu["0"]), statistics.median(cpu["1"])
    paired = statistics.median(b / a for a, b in zip(cpu["0"], cpu["1"]))
    return (f"Python frames on the python3 workload, heapdelta only, {rounds} rounds interleaved, "
            f"CPU time, medians:\n\n"
            "| frames | heapdelta CPU | against native frames only | median of the rounds' ratios |\n"
            "|---|---:|---:|---:|\n"
            f"| native only | {native:.2f}s | - | - |\n"
            f"| Python | {python:.2f}s | {(python / native - 1) * 100:+.0f}% | {(paired - 1) * 100:+.0f}% |")


def thread_scaling(runs):
    """The churn program's overhead with 1, 2 and 8 threads doing the same
    total work: with a global lock on the hot path, more threads would cost
    more, not less.  Wall time, and CPU time (user + system), whose ratio
    is the work the shim adds whatever the machine's other load."""
    churn = os.path.join(WORK, "churn")
    rows = ["| churn threads | untraced | heapdelta | ratio | untraced CPU | heapdelta CPU | CPU ratio |",
            "|---:|---:|---:|---:|---:|---:|---:|"]
    for threads in (1, 2, 8):
        cmd = [churn, str(2000000 // threads), str(threads)]
        u, h, uc, hc = [], [], [], []
        for _ in range(runs):
            wall, cpu = measure(cmd, os.environ, None)[:2]
            u.append(wall)
            uc.append(cpu)
            d = tempfile.mkdtemp(prefix="hd-bench-")
            wall, cpu = measure(cmd, {**os.environ, "LD_PRELOAD": SHIM, "HEAPDELTA_OUT": d}, None)[:2]
            h.append(wall)
            hc.append(cpu)
            shutil.rmtree(d, ignore_errors=True)
        mu, mh = statistics.median(u), statistics.median(h)
        cu, ch = statistics.median(uc), statistics.median(hc)
        rows.append(f"| {threads} | {mu:.2f}s | {mh:.2f}s | {mh / mu:.2f}x | {cu:.2f}s | {ch:.2f}s | {ch / cu:.2f}x |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
