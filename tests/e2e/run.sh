#!/usr/bin/env bash
# Runs end-to-end test scripts against a quire binary and ends with the plain closing line
# "N passed, N failed". Usage: tests/e2e/run.sh BUILD/quire tests/e2e/test_*.sh
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
QUIRE=$(realpath "$1")
shift
export ROOT QUIRE
results=$(mktemp)
for t in "$@"; do
	echo "== $t"
	start=$(date +%s)
	RESULTS=$results bash -c 'source "$ROOT/tests/e2e/lib.sh"; source "$1"' _ "$t"
	rc=$?
	if [ $rc -ne 0 ]; then
		echo "FAIL $t: script exited $rc"
		echo "fail $t: script exited $rc" >>"$results"
	fi
	echo "   ($(($(date +%s) - start)) s)"
done
passed=$(grep -c '^pass ' "$results")
failed=$(grep -c '^fail ' "$results")
if [ "$failed" -gt 0 ]; then
	echo "failures:"
	grep '^fail ' "$results" | sed 's/^fail /  /'
fi
rm -f "$results"
echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
