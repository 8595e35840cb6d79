#!/usr/bin/env bash
# scripts/deps.sh build|test|bench - make sure the Debian packages heapdelta
# needs are installed: installs them when run as root (apt-get), otherwise
# names exactly what is missing and exits 1.
set -eu
build="gcc g++ make libc6-dev libunwind-dev libdw-dev libelf-dev uthash-dev libprotobuf-c-dev protobuf-c-compiler zlib1g-dev"
case "${1:-build}" in
build) want="$build" ;;
test)  want="$build python3 python3-jsonschema libxml2-utils sqlite3 perl clang libclang-rt-14-dev libjemalloc-dev protobuf-compiler chromium python3.11-dev redis-server redis-tools debuginfod xz-utils binutils tmux valgrind"
       # The aarch64 tier (tests/e2e_aarch64.py, under qemu-user): the cross
       # toolchain, and from Debian's multiarch the aarch64 libraries the
       # fixtures run with (optional: without them that part is skipped).
       want="$want qemu-user gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross"
       multiarch="libc6:arm64 libstdc++6:arm64 libunwind8:arm64"
       # Node.js, for the JIT tests (tests/e2e_jit.py; optional: they skip
       # without it).
       optional="nodejs" ;;
bench) want="$build python3 sqlite3 perl heaptrack zstd clang-format cppcheck redis-server redis-tools time valgrind" ;;
*)     echo "usage: scripts/deps.sh build|test|bench" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
missing_multiarch=""
for p in ${multiarch:-}; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing_multiarch="$missing_multiarch $p"
done
missing_optional=""
for p in ${optional:-}; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing_optional="$missing_optional $p"
done
[ -z "$missing" ] && [ -z "$missing_multiarch" ] && [ -z "$missing_optional" ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
	if [ -n "$missing_multiarch" ]; then
		echo "heapdelta: optional aarch64 libraries missing (tests skip what needs them):$missing_multiarch" >&2
		echo "heapdelta: install them with: sudo dpkg --add-architecture arm64 && sudo apt-get update && sudo apt-get install$missing_multiarch" >&2
	fi
	if [ -n "$missing_optional" ]; then
		echo "heapdelta: optional packages missing (tests skip what needs them):$missing_optional" >&2
		echo "heapdelta: install them with: sudo apt-get install$missing_optional" >&2
	fi
	[ -z "$missing" ] && exit 0
	echo "heapdelta: missing Debian packages:$missing" >&2
	echo "heapdelta: install them with: sudo apt-get install$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if [ -n "$missing_multiarch" ]; then
	dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
fi
apt-get update -qq >/dev/null
if [ -n "$missing" ]; then
	echo "heapdelta: installing$missing" >&2
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
if [ -n "$missing_multiarch" ]; then
	echo "heapdelta: installing$missing_multiarch" >&2
	apt-get install -y -qq --no-install-recommends $missing_multiarch >/dev/null ||
		echo "heapdelta: cannot install$missing_multiarch (multiarch); the aarch64 tests skip what needs them" >&2
fi
if [ -n "$missing_optional" ]; then
	echo "heapdelta: installing$missing_optional" >&2
	apt-get install -y -qq --no-install-recommends $missing_optional >/dev/null ||
		echo "heapdelta: cannot install$missing_optional; the tests skip what needs them" >&2
fi
