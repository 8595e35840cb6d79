#!/usr/bin/env bash
# scripts/demo.sh - heapdelta's main job on a real program: run a leaking
# server-like program with a snapshot every half second, then diff the first
# snapshot against the last.  Run by `make demo` after the build.
set -eu
cd "$(dirname "$0")/.."
mkdir -p build/demo
cc -O2 -g -o build/demo/taskd scripts/demo/taskd.c
rm -rf build/demo/snaps

echo "\$ build/heapdelta run -o build/demo/snaps --interval 0.5 -- build/demo/taskd 3"
build/heapdelta run -o build/demo/snaps --interval 0.5 -- build/demo/taskd 3

first=$(ls build/demo/snaps/heapdelta.*.interval.snap | sort -t. -k3,3n | head -n 1)
last=$(ls build/demo/snaps/heapdelta.*.exit.snap | head -n 1)
echo
echo "\$ build/heapdelta diff $first $last --limit 5"
build/heapdelta diff "$first" "$last" --limit 5
echo
echo "\$ build/heapdelta top $last --by traceback --limit 1"
build/heapdelta top "$last" --by traceback --limit 1
