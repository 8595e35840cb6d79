#!/usr/bin/env python3
"""heapdelta's benchmark: real, unmodified, allocation-heavy programs and a
synthetic multi-threaded churn program, each run untraced, recorded by
heaptrack and recorded by heapdelta, interleaved, RUNS times each.

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
block, and whether the program's output under heapdelta was identical.
Also writes it to build/bench/results.md.

    scripts/bench.py [--runs N] [--only NAME] [--modes untraced,heaptrack,...] [--quick]

Run by `make bench`.
"""
import argparse
import glob
import json
import os
import resource
import shutil
import signal
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
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.wait(0.01):
            peak[0] = max(peak[0], tree_rss_kib(p.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
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
    done.set()
    sampler.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    data = out.read()
    if stdin_path:
        stdin.close()
    return wall, ru.ru_utime + ru.ru_stime, max(ru.ru_maxrss, peak[0]), data, p.returncode


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
    r = subprocess.run([HD, "info", "--format", "json", *files], capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 else []


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
    wall, _, _, _, rc = measure(cmd, os.environ, None, limit)
    return wall if rc == 0 else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", help="only the workloads whose name contains this")
    ap.add_argument("--modes", default="untraced,heaptrack,heapdelta,heapdelta-fp,sampled")
    ap.add_argument("--quick", action="store_true",
                    help="one run per mode, without the analyzer's and the thread-scaling tables")
    args = ap.parse_args()
    if args.quick:
        args.runs = 1
    modes = args.modes.split(",")
    if "heaptrack" in modes and (missing("heaptrack", "no heaptrack columns")
                                 or missing("heaptrack_print", "no heaptrack columns")):
        modes.remove("heaptrack")
    if shutil.which("heaptrack_gui"):
        print("bench: heaptrack_gui is installed: `heaptrack` opens it after recording, inside the timed run",
              file=sys.stderr)
    generate_inputs()
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
                limit = None
                if mode == "untraced":
                    c, e = cmd, env
                elif mode == "heaptrack":
                    # heaptrack 1.4: the recorder and heaptrack_interpret
                    # (compressed by zstd); heaptrack_print is not run.
                    c, e = ["heaptrack", "-o", os.path.join(odir, "ht"), *cmd], env
                    limit = HEAPTRACK_AS_LIMIT
                else:
                    c = cmd
                    e = {**env, "LD_PRELOAD": SHIM, "HEAPDELTA_OUT": odir}
                    if mode == "heapdelta-fp":
                        e["HEAPDELTA_UNWIND"] = "fp"
                    if mode == "sampled":
                        e["HEAPDELTA_SAMPLE"] = str(512 << 10)
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
    extra = [] if args.only or args.quick else [analyzer_speed(), analyzer_at_scale(), thread_scaling(args.runs)]
    for e in extra:
        text += "\n" + e + "\n"
    print(text)
    with open(os.path.join(WORK, "results.md"), "w") as f:
        f.write(text)


def workload_memory(cmd, env, stdin_path):
    """One more run under heapdelta, untimed, with a snapshot every 0.1 s:
    the allocations of the whole run and the shim's memory per live block
    at the snapshot with the most live blocks (bytes, blocks)."""
    d = tempfile.mkdtemp(prefix="hd-bench-")
    measure(cmd, {**env, "LD_PRELOAD": SHIM, "HEAPDELTA_OUT": d, "HEAPDELTA_INTERVAL": "0.1"}, stdin_path)
    infos = snapshot_infos(d)
    shutil.rmtree(d, ignore_errors=True)
    if not infos:
        return None
    return max(i["alloc_count"] for i in infos), shim_per_block(infos)


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


def thread_scaling(runs):
    """The churn program's overhead with 1, 2 and 8 threads doing the same
    total work: with a global lock on the hot path, more threads would cost
    more, not less."""
    churn = os.path.join(WORK, "churn")
    rows = ["| churn threads | untraced | heapdelta | ratio |", "|---:|---:|---:|---:|"]
    for threads in (1, 2, 8):
        cmd = [churn, str(2000000 // threads), str(threads)]
        u, h = [], []
        for _ in range(runs):
            u.append(measure(cmd, os.environ, None)[0])
            d = tempfile.mkdtemp(prefix="hd-bench-")
            h.append(measure(cmd, {**os.environ, "LD_PRELOAD": SHIM, "HEAPDELTA_OUT": d}, None)[0])
            shutil.rmtree(d, ignore_errors=True)
        mu, mh = statistics.median(u), statistics.median(h)
        rows.append(f"| {threads} | {mu:.2f}s | {mh:.2f}s | {mh / mu:.2f}x |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
