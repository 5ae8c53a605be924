# Sourced by every end-to-end test (through tests/e2e/run.sh). Gives:
#   $QUIRE  the binary under test      $ROOT  the project root
#   $T      a fresh directory for this test, removed when it ends
#   pass NAME / fail NAME WHY          record a result (run.sh counts them)
#   check NAME CMD...                  pass when CMD exits 0, else fail with its exit code
#   expect_exit N NAME CMD...          pass when CMD exits with N
#   same_file NAME A B                 pass when A and B are byte-identical
#   on_exit CMD                        run CMD when the test ends (servers, ...)
set -uo pipefail
T=$(mktemp -d /tmp/quire-test.XXXXXX)
_on_exit=()
on_exit() { _on_exit+=("$*"); }
_cleanup() {
	local i
	for ((i = ${#_on_exit[@]} - 1; i >= 0; i--)); do eval "${_on_exit[$i]}" || true; done
	rm -rf "$T"
}
trap _cleanup EXIT
pass() { echo "  ok   $1"; echo "pass $1" >>"$RESULTS"; }
fail() { echo "  FAIL $1: ${2:-}"; echo "fail $1: ${2:-}" >>"$RESULTS"; }
check() {
	local name=$1
	shift
	if "$@"; then pass "$name"; else fail "$name" "exit $?"; fi
}
expect_exit() {
	local want=$1 name=$2
	shift 2
	"$@"
	local rc=$?
	if [ "$rc" -eq "$want" ]; then pass "$name"; else fail "$name" "exit $rc, wanted $want"; fi
}
same_file() {
	if cmp -s "$2" "$3"; then pass "$1"; else fail "$1" "$2 and $3 differ"; fi
}
