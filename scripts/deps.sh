#!/usr/bin/env bash
# scripts/deps.sh build|test|bench - make sure the Debian packages heapdelta
# needs are installed: installs them when run as root (apt-get), otherwise
# names exactly what is missing and exits 1.
set -eu
build="gcc g++ make libc6-dev libunwind-dev libdw-dev libelf-dev uthash-dev libprotobuf-c-dev protobuf-c-compiler zlib1g-dev"
case "${1:-build}" in
build) want="$build" ;;
test)  want="$build python3 python3-jsonschema libxml2-utils sqlite3 perl clang libclang-rt-14-dev libjemalloc-dev protobuf-compiler chromium python3.11-dev redis-server redis-tools debuginfod xz-utils binutils tmux" ;;
bench) want="$build python3 sqlite3 perl heaptrack clang-format time" ;;
*)     echo "usage: scripts/deps.sh build|test|bench" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
	echo "heapdelta: missing Debian packages:$missing" >&2
	echo "heapdelta: install them with: sudo apt-get install$missing" >&2
	exit 1
fi
echo "heapdelta: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends $missing >/dev/null
