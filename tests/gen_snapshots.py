#!/usr/bin/env python3
"""Write synthetic heapdelta snapshots, following format/FORMAT.md on its own
(an independent writer of the format, used to test the reader and to build
large reports).

    tests/gen_snapshots.py [--exit] [--reach] [--version N] OUTDIR SNAPSHOTS SITES [MODULE]

One process; SITES stacks of three frames whose addresses lie in MODULE's
text (default: this machine's /bin/true), so they symbolize; site i grows by
(i % 7) * 16 bytes per snapshot, every third site also shrinks at random.
Interval snapshots; with --exit, the last is the exit snapshot, and with
--reach it carries a REACH section (site i's blocks all of kind i % 4:
definite, indirect, possible, reachable).  Version 1 files (every file
complete) unless --version 2 (each file builds on the one before).

As a module (tests import it): Process(outdir, module).snapshot(trigger,
stacks, reach=...) writes one snapshot of a process, with any stacks and
REACH records (or a REACH payload of any bytes), in version 1 or 2.
"""
import os
import random
import struct
import sys

MAGIC = b"HEAPDLTA"
META, STRINGS, MODULES, STACKS, END = 1, 2, 3, 4, 0xFFFF
NEW_STACKS, COUNTERS, REACH = 8, 9, 11
NFIELDS = 32
TRIGGERS = {"interval": 1, "signal": 2, "api": 3, "exit": 4}
KINDS = ("definite", "indirect", "possible", "reachable")   # a REACH record's order


def section(tag, payload):
    return struct.pack("<IIQ", tag, 0, len(payload)) + payload


def string(s):
    b = s.encode()
    return struct.pack("<I", len(b)) + b


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def zigzag(v):
    return (v << 1) ^ (v >> 63) if v >= 0 else ((-v) << 1) - 1


def text_segment(path):
    """(vaddr, memsz, offset, flags) of each PT_LOAD, and whether the file
    is position independent."""
    with open(path, "rb") as f:
        data = f.read(1 << 16)
    e_type, = struct.unpack_from("<H", data, 16)
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    segs = []
    for i in range(phnum):
        p_type, p_flags, p_offset, p_vaddr, _, _, p_memsz, _ = struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize)
        if p_type == 1:
            segs.append((p_vaddr, p_memsz, p_offset, p_flags))
    return segs, e_type == 3


def reach_payload(status, records, threads=1, ns=250_000, root_bytes=65536, block_bytes=None):
    """A REACH section's payload: status, then (when 0) one record per
    stack id of records, {id: ((bytes, count) of each kind in KINDS order)}."""
    recs = sorted(records.items()) if status == 0 else []
    if block_bytes is None:
        block_bytes = sum(b for _, kinds in recs for b, _ in kinds)
    out = bytearray(struct.pack("<IIQQQI", status, threads, ns, root_bytes, block_bytes, len(recs)))
    prev = 0
    for sid, kinds in recs:
        out += varint(sid - prev)
        prev = sid
        for b, c in kinds:
            out += varint(b) + varint(c)
    return bytes(out)


class Process:
    """The snapshots of one process, in sequence; version 2 files build on
    the one before, as the shim writes them."""

    def __init__(self, outdir, module, pid=424242, version=1, run_id=77):
        self.outdir, self.module, self.pid, self.version, self.run_id = outdir, module, pid, version, run_id
        segs, pie = text_segment(module)
        self.base = 0x555555554000 if pie else 0
        self.segs = segs
        self.seq = 0
        self.prev = {}         # id -> (live_bytes, live_count, alloc_bytes, alloc_count) of the last file
        os.makedirs(outdir, exist_ok=True)

    def address(self, vaddr):
        """The runtime address of a virtual address of the module."""
        return self.base + vaddr

    def snapshot(self, trigger, stacks, reach=None, reach_bytes=None, peak=None):
        """Write the next snapshot; return its path.  stacks: {id: (frames,
        live_bytes, live_count, alloc_bytes, alloc_count)}, every stack of
        the process so far (frames: runtime addresses, innermost first).
        reach: None (no REACH section), or (status, {id: ((bytes, count) x
        4 kinds)}); reach_bytes: a REACH payload written as is."""
        self.seq += 1
        total = sum(s[1] for s in stacks.values())
        count = sum(s[2] for s in stacks.values())
        meta = [0] * NFIELDS
        meta[0], meta[2], meta[3], meta[4], meta[5] = self.pid, self.seq, TRIGGERS[trigger], 3, 32
        meta[8] = 1_700_000_000_000_000_000 + self.seq * 100_000_000
        meta[9] = self.seq * 100_000_000
        meta[11], meta[12], meta[13] = total, count, peak if peak is not None else total
        meta[15] = sum(s[3] for s in stacks.values())
        meta[16] = sum(s[4] for s in stacks.values())
        meta[17], meta[18] = meta[15] - total, meta[16] - count
        meta[22] = total + (8 << 20)
        meta[31] = 62
        modules = struct.pack("<I", 1) + struct.pack("<QII", self.base, 2, 0) + struct.pack("<I", len(self.segs))
        for vaddr, memsz, offset, flags in self.segs:
            modules += struct.pack("<QQQI", self.base + vaddr, memsz, offset, flags)
        modules += string(self.module)
        strings = struct.pack("<I", 3) + string("") + string(self.module) + string(self.module)
        if self.version == 1:
            meta_n = 28
            body = bytearray(struct.pack("<I", len(stacks)))
            for sid, (frames, lb, lc, ab, ac) in sorted(stacks.items()):
                body += struct.pack("<IHHQQQQ", sid, len(frames), 0, lb, lc, ab, ac)
                body += struct.pack(f"<{len(frames)}Q", *frames)
            stack_sections = section(STACKS, bytes(body))
        else:
            meta_n = NFIELDS
            meta[29] = self.run_id
            meta[30] = self.seq - 1
            new = [sid for sid in sorted(stacks) if sid not in self.prev]
            body = bytearray(struct.pack("<I", len(new)))
            for sid in new:
                frames = stacks[sid][0]
                body += struct.pack("<IHH", sid, len(frames), 0) + struct.pack(f"<{len(frames)}Q", *frames)
            changed = [sid for sid in sorted(stacks) if tuple(stacks[sid][1:]) != self.prev.get(sid, (0, 0, 0, 0))]
            counters = bytearray(struct.pack("<I", len(changed)))
            last = 0
            for sid in changed:
                old = self.prev.get(sid, (0, 0, 0, 0))
                counters += varint(sid - last)
                last = sid
                for now, was in zip(stacks[sid][1:], old):
                    counters += varint(zigzag(now - was))
            stack_sections = section(NEW_STACKS, bytes(body)) + section(COUNTERS, bytes(counters))
        self.prev = {sid: tuple(s[1:]) for sid, s in stacks.items()}
        data = (MAGIC + struct.pack("<II", self.version, 0) + section(META, struct.pack(f"<{meta_n}Q", *meta[:meta_n])) +
                section(STRINGS, strings) + section(MODULES, modules) + stack_sections)
        if reach_bytes is not None:
            data += section(REACH, reach_bytes)
        elif reach is not None:
            data += section(REACH, reach_payload(*reach))
        data += section(END, b"")
        path = os.path.join(self.outdir, f"heapdelta.{self.pid}.{self.seq}.{trigger}.snap")
        with open(path, "wb") as f:
            f.write(data)
        return path


def main():
    flags = {"--exit", "--reach"}
    argv = sys.argv[1:]
    version = 1
    if "--version" in argv:
        i = argv.index("--version")
        version = int(argv[i + 1])
        del argv[i:i + 2]
    args = [a for a in argv if a not in flags]
    last_exit, with_reach = "--exit" in argv, "--reach" in argv
    out, nsnaps, nsites = args[0], int(args[1]), int(args[2])
    module = args[3] if len(args) > 3 else "/bin/true"
    proc = Process(out, module, version=version)
    text = [s for s in proc.segs if s[3] & 1][0]
    rng = random.Random(1)
    frames = [tuple(proc.address(v) for v in (text[0] + 16 + (i * 97) % max(1, text[1] - 32),
                                               text[0] + 8 + (i * 31) % max(1, text[1] - 32), text[0] + 4))
              for i in range(nsites)]
    live = [0] * nsites
    for seq in range(1, nsnaps + 1):
        stacks = {}
        for i in range(nsites):
            live[i] += (i % 7) * 16
            if i % 3 == 0:
                live[i] = max(0, live[i] + rng.randint(-200, 200))
            n = live[i] // 64 + 1
            stacks[i] = (frames[i], live[i], n, live[i] + 1000, n + 10)
        trigger = "exit" if last_exit and seq == nsnaps else "interval"
        reach = None
        if with_reach and trigger == "exit":
            reach = (0, {i: tuple((s[1], s[2]) if k == i % 4 else (0, 0) for k in range(4)) for i, s in stacks.items()})
        proc.snapshot(trigger, stacks, reach=reach)


if __name__ == "__main__":
    main()
