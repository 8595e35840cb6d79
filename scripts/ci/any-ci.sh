#!/bin/sh
# Gate any CI job on heap memory with heapdelta (POSIX sh, no CI-specific
# features).  Usage: scripts/ci/any-ci.sh TEST_BINARY [ARGS...]
#
# Environment (all optional):
#   HEAPDELTA          the heapdelta command (default: heapdelta, on PATH)
#   HEAPDELTA_BUDGET   bytes allowed to stay allocated at exit (default 0)
#   HEAPDELTA_BASELINE a baseline file, used instead of the budget: when it
#                      exists, only sites that are new or grew past it fail;
#                      when it does not, this run writes it and passes
#   HEAPDELTA_SUPP     a LeakSanitizer-format suppression file
#   HEAPDELTA_REPORTS  directory for report.xml (JUnit) and report.sarif
#
# Exit status: the test's own when it fails; else 0 within budget, 1 over.
set -eu
hd=${HEAPDELTA:-heapdelta}
reports=${HEAPDELTA_REPORTS:-heapdelta-reports}
snaps="$reports/snapshots"
mkdir -p "$reports"
rm -rf "$snaps"

supp=${HEAPDELTA_SUPP:+--suppressions $HEAPDELTA_SUPP}
if [ -z "${HEAPDELTA_BASELINE:-}" ]; then
	gate="--max-leaked ${HEAPDELTA_BUDGET:-0} $supp"
elif [ -f "$HEAPDELTA_BASELINE" ]; then
	gate="--baseline $HEAPDELTA_BASELINE $supp"
else
	echo "heapdelta: no baseline yet: writing $HEAPDELTA_BASELINE" >&2
	gate="--write-baseline $HEAPDELTA_BASELINE $supp"
fi

status=0
# shellcheck disable=SC2086  # $gate is a list of options
"$hd" run -o "$snaps" --check $gate --format junit --output "$reports/report.xml" -- "$@" || status=$?
# The same verdict as SARIF and as text for the log.
# shellcheck disable=SC2086
"$hd" check $gate --format sarif --output "$reports/report.sarif" "$snaps" 2>/dev/null || true
# shellcheck disable=SC2086
"$hd" check $gate "$snaps" || true
exit "$status"
