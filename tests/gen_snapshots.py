#!/usr/bin/env python3
"""Write synthetic heapdelta snapshots, following format/FORMAT.md on its own
(an independent writer of the format, used to test the reader and to build
large reports).

    tests/gen_snapshots.py [--exit] OUTDIR SNAPSHOTS SITES [MODULE]

One process; SITES stacks of three frames whose addresses lie in MODULE's
text (default: this machine's /bin/true), so they symbolize; site i grows by
(i % 7) * 16 bytes per snapshot, every third site also shrinks at random.
Interval snapshots; with --exit, the last is the exit snapshot.
"""
import os
import random
import struct
import sys

MAGIC = b"HEAPDLTA"
META, STRINGS, MODULES, STACKS, END = 1, 2, 3, 4, 0xFFFF
NFIELDS = 28


def section(tag, payload):
    return struct.pack("<IIQ", tag, 0, len(payload)) + payload


def string(s):
    b = s.encode()
    return struct.pack("<I", len(b)) + b


def text_segment(path):
    """(vaddr, memsz, offset, flags) of the executable PT_LOAD, and whether
    the file is position independent."""
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


def main():
    args = [a for a in sys.argv[1:] if a != "--exit"]
    last_exit = len(args) < len(sys.argv) - 1
    out, nsnaps, nsites = args[0], int(args[1]), int(args[2])
    module = args[3] if len(args) > 3 else "/bin/true"
    segs, pie = text_segment(module)
    base = 0x555555554000 if pie else 0
    text = [s for s in segs if s[3] & 1][0]
    os.makedirs(out, exist_ok=True)
    rng = random.Random(1)
    pid = 424242
    modules = struct.pack("<I", 1) + struct.pack("<QII", base, 2, 0) + struct.pack("<I", len(segs))
    for vaddr, memsz, offset, flags in segs:
        modules += struct.pack("<QQQI", base + vaddr, memsz, offset, flags)
    modules += string(module)
    strings = struct.pack("<I", 3) + string("") + string(module) + string(module)
    frames = [(base + text[0] + 16 + (i * 97) % max(1, text[1] - 32), base + text[0] + 8 + (i * 31) % max(1, text[1] - 32),
               base + text[0] + 4) for i in range(nsites)]
    live = [0] * nsites
    for seq in range(1, nsnaps + 1):
        stacks = bytearray(struct.pack("<I", nsites))
        total = count = 0
        for i in range(nsites):
            live[i] += (i % 7) * 16
            if i % 3 == 0:
                live[i] = max(0, live[i] + rng.randint(-200, 200))
            n = live[i] // 64 + 1
            stacks += struct.pack("<IHHQQQQ", i, 3, 0, live[i], n, live[i] + 1000, n + 10)
            stacks += struct.pack("<QQQ", *frames[i])
            total += live[i]
            count += n
        meta = [0] * NFIELDS
        trigger = "exit" if last_exit and seq == nsnaps else "interval"
        meta[0], meta[2], meta[3], meta[4], meta[5] = pid, seq, 4 if trigger == "exit" else 1, 3, 32
        meta[8] = 1_700_000_000_000_000_000 + seq * 100_000_000
        meta[9] = seq * 100_000_000
        meta[11], meta[12], meta[13] = total, count, total
        meta[22] = total + (8 << 20)
        body = (MAGIC + struct.pack("<II", 1, 0) + section(META, struct.pack(f"<{NFIELDS}Q", *meta)) +
                section(STRINGS, strings) + section(MODULES, modules) + section(STACKS, bytes(stacks)) + section(END, b""))
        with open(os.path.join(out, f"heapdelta.{pid}.{seq}.{trigger}.snap"), "wb") as f:
            f.write(body)


if __name__ == "__main__":
    main()
