#!/usr/bin/env bash
# Runs cmocka test binaries, each under a deadline, and ends with the plain closing line
# "unit: N passed, N failed, N skipped" (UNIT_NAME replaces "unit") summed from cmocka's
# own counts. A binary that exits non-zero without cmocka counting a failure (a crash, a
# sanitizer report, the deadline) counts as one failed test, named.
#   Usage: tests/unit/run.sh BINARY...       (from the project root: fixtures are relative)
#   UNIT_TIMEOUT  seconds a binary may take (300); then SIGTERM, SIGKILL 10 s later
set -uo pipefail
NAME=${UNIT_NAME:-unit}
TIMEOUT=${UNIT_TIMEOUT:-300}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
passed=0 failed=0 skipped=0 broken=()

# count WHAT: the sum of cmocka's "[  WHAT  ] N test(s)" summary lines in the log (one
# per group a binary runs).
count() {
	sed -nE "s/^\[ *$1 *\] ([0-9]+) test\(s\).*/\1/p" "$log" | awk '{ s += $1 } END { print s + 0 }'
}

for t in "$@"; do
	echo "== $t"
	timeout --kill-after=10 "$TIMEOUT" "$t" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	p=$(count PASSED) f=$(count FAILED) s=$(count SKIPPED)
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		case $rc in
		124 | 137) why="timed out after $TIMEOUT s (UNIT_TIMEOUT)" ;;
		*) why="exited $rc without a cmocka failure (crash or sanitizer report above)" ;;
		esac
		echo "FAIL $t: $why"
		broken+=("$t: $why")
		f=1
	fi
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
done
if [ ${#broken[@]} -gt 0 ]; then
	echo "broken binaries:"
	printf '  %s\n' "${broken[@]}"
fi
[ "$passed" -gt 0 ] || echo "nothing passed: that is a failure"
echo "$NAME: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
