#!/usr/bin/env bash
# scripts/demo.sh - heapdelta's main job on a real program: run a leaking
# server-like program with a snapshot every quarter second, then find the line
# that grows: diff of the first and last snapshots, the trend over all of
# them, and an HTML report.  Run by `make demo` after the build.
set -eu
cd "$(dirname "$0")/.."
mkdir -p build/demo
cc -O2 -g -o build/demo/taskd scripts/demo/taskd.c
rm -rf build/demo/snaps

echo "\$ build/heapdelta run -o build/demo/snaps --interval 0.25 -- build/demo/taskd 4"
build/heapdelta run -o build/demo/snaps --interval 0.25 -- build/demo/taskd 4

first=$(ls build/demo/snaps/heapdelta.*.interval.snap | sort -t. -k3,3n | head -n 1)
last=$(ls build/demo/snaps/heapdelta.*.exit.snap | head -n 1)
echo
echo "\$ build/heapdelta diff $first $last --limit 5"
build/heapdelta diff "$first" "$last" --limit 5
echo
echo "\$ build/heapdelta trend build/demo/snaps --limit 4"
build/heapdelta trend build/demo/snaps --limit 4
echo
echo "\$ build/heapdelta top $last --by traceback --limit 1"
build/heapdelta top "$last" --by traceback --limit 1
echo
echo "\$ build/heapdelta report build/demo/snaps -o build/demo/report.html"
build/heapdelta report build/demo/snaps -o build/demo/report.html
