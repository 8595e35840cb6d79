"""End-to-end tests: exports for other tools.

Collapsed stacks for flame graphs (top and diff) and pprof profiles decoded
with protoc against profile.proto.  (Zero-byte blocks in every export are
in e2e_outputs.py.)
"""
from e2e import *


@test
def collapsed_stacks_feed_flame_graphs():
    d = tmpdir()
    traced([os.path.join(BIN, "grow")], d)
    before, after = snaps_of(d, "api")
    exit_snap = snaps_of(d, "exit")[0]
    lines = hd("top", exit_snap, "--format", "collapsed").stdout.splitlines()
    total = top_json(exit_snap)["total"]["size"]
    eq(sum(int(l.rsplit(" ", 1)[1]) for l in lines), total, "the stacks add up to the total")
    check(any(l.endswith(";main;add_records;make_record 1000") for l in lines), "the inlined frame is a frame of its own")
    check(all(l.startswith("_start;") or ";" not in l for l in lines), lines[:3])
    diff = hd("diff", before, after, "--format", "collapsed").stdout.splitlines()
    check(all(len(l.rsplit(" ", 2)) == 3 for l in diff), "two columns for a diff")
    grow_a = [l for l in diff if l.endswith(" 0 50000")]
    eq(len(grow_a), 1, f"grow_a's stack went from 0 to 50000: {diff}")


@test
def pprof_profiles_decode_against_profile_proto():
    d = tmpdir()
    traced([os.path.join(BIN, "grow")], d)
    snap = snaps_of(d, "exit")[0]
    out = os.path.join(d, "heap.pb.gz")
    eq(hd("top", snap, "--format", "pprof", "--output", out).returncode, 0, "exit status")
    raw = subprocess.run(["gzip", "-dc", out], capture_output=True).stdout
    p = subprocess.run(["protoc", "--decode=perftools.profiles.Profile", f"--proto_path={os.path.join(ROOT, 'analyzer')}",
                        "profile.proto"], input=raw, capture_output=True)
    eq(p.returncode, 0, f"protoc --decode: {p.stderr}")
    text = p.stdout.decode()
    strings = re.findall(r'^string_table: "(.*)"$', text, re.M)
    eq(strings[0], "", "string_table[0]")
    types = [(strings[int(t)], strings[int(u)]) for t, u in re.findall(r"sample_type \{\n  type: (\d+)\n  unit: (\d+)", text)]
    eq(types, [("alloc_objects", "count"), ("alloc_space", "bytes"), ("inuse_objects", "count"), ("inuse_space", "bytes")],
       "sample types")
    samples = re.findall(r"sample \{\n((?:  location_id: \d+\n)+)((?:  value: -?\d+\n){4})\}", text)
    inuse = sum(int(re.findall(r"value: (-?\d+)", v)[3]) for _, v in samples)
    eq(inuse, top_json(snap)["total"]["size"], "inuse_space adds up to the total")
    # The inlined allocation: one location, two lines (make_record, then add_records).
    fn_names = {m[0]: strings[int(m[1])] for m in re.findall(r"function \{\n  id: (\d+)\n  name: (\d+)", text)}
    locs = re.findall(r"location \{\n  id: \d+\n  mapping_id: \d+\n  address: \d+\n((?:  line \{\n    function_id: \d+\n    line: \d+\n  \}\n)+)", text)
    inline = [[fn_names[f] for f in re.findall(r"function_id: (\d+)", l)] for l in locs]
    check(["make_record", "add_records"] in inline, f"inline chain in one location: {inline[:5]}")
    info = snap_info(snap)
    check(info["modules"][0]["build_id"] in strings, "the executable's build-id is in its mapping")
