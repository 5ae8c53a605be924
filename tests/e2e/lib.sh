# shellcheck shell=bash
# Sourced by every end-to-end test (through tests/e2e/run.sh). Gives:
#   $QUIRE  the binary under test      $ROOT  the project root
#   $T      a fresh directory for this test (under $E2E_TMPDIR when run.sh gives one),
#           removed when it ends
#   pass NAME / fail NAME WHY          record a result (run.sh counts them)
#   skip NAME WHY                      record that NAME was not run and why (counted apart:
#                                      a skip is never a pass)
#   await NAME WAIT...                 run a wait (wait_for_file, wait_for_line, wait_exit,
#                                      ...); when it fails, record NAME failed, return 1
#   check NAME CMD...                  pass when CMD exits 0, else fail with its exit code
#   expect_exit N NAME CMD...          pass when CMD exits with N
#   same_file NAME A B                 pass when A and B are byte-identical
#   on_exit CMD                        run CMD when the test ends (servers, ...)
# Test peers (tests/e2e/servers.sh, documented there): free_port, wait_port,
#   wait_for_file, wait_for_line, wait_count, wait_exit, stop_pid, make_ca, start_nginx,
#   start_s3rver, start_faultserver, start_s3_faultproxy, start_sigv4check. Fixtures, S3:
#   make_books DIR N SIZE [PREFIX]     N gpg-encrypted books PREFIX0001.. (default TEST) in
#                                      DIR, plaintexts in $T/plain/BARCODE.tar.gz, list in
#                                      DIR/barcodes.txt, sums in DIR/plain.sha256,
#                                      passphrase $PASSFILE ($T/pass, 0600). SIZE: bytes,
#                                      K/M/G suffix, or MIN-MAX. BOOKS_S2K (65536),
#                                      BOOKS_COMPRESS (none), BOOKS_FORMAT (raw|targz) tune.
#   s3client ARGS...                   tests/e2e/s3client.mjs (get/head/list/...)
#   s3_get BUCKET KEY OUT              object to the file OUT (independent client)
#   s3_head_json BUCKET KEY            HeadObject as JSON (ContentLength, ETag, Metadata...)
set -uo pipefail
T=$(mktemp -d "${E2E_TMPDIR:-/tmp}/quire-test.XXXXXX")
_on_exit=()
on_exit() { _on_exit+=("$*"); }
# Only the suite's own shell cleans up: a child forked for `CMD &` is a copy of this shell
# (with these traps) until it execs, and a signal in that window must not run them.
_cleanup() {
	local i
	[ "$BASHPID" = "$$" ] || return 0
	for ((i = ${#_on_exit[@]} - 1; i >= 0; i--)); do eval "${_on_exit[$i]}" || true; done
	rm -rf "$T"
}
trap _cleanup EXIT
# So that a test interrupted by a signal still stops its servers.
trap 'exit 130' INT
trap 'exit 143' TERM
pass() { echo "  ok   $1"; echo "pass $1" >>"$RESULTS"; }
fail() { echo "  FAIL $1: ${2:-}"; echo "fail $1: ${2:-}" >>"$RESULTS"; }
skip() {
	if [ -z "${2:-}" ]; then
		fail "$1" "skipped without saying why"
		return
	fi
	echo "  SKIP $1: $2"
	echo "skip $1: $2" >>"$RESULTS"
}
await() {
	local name=$1 rc
	shift
	"$@"
	rc=$?
	[ "$rc" -eq 0 ] || fail "$name" "$1 failed (exit $rc)"
	return "$rc"
}
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
# whole_or_absent DIR: every file in DIR is a whole, byte-exact book (its plaintext in
# $T/plain); prints their count, fails on a stray or partial file.
whole_or_absent() {
	local f n=0
	for f in "$1"/*; do
		[ -e "$f" ] || continue
		case $f in *.tar.gz) ;; *) echo "stray $f" >&2; return 1 ;; esac
		cmp -s "$f" "$T/plain/$(basename "$f")" || { echo "partial $f" >&2; return 1; }
		n=$((n + 1))
	done
	echo "$n"
}

same_file() {
	if cmp -s "$2" "$3"; then pass "$1"; else fail "$1" "$2 and $3 differ"; fi
}

# shellcheck source=tests/e2e/servers.sh
source "$ROOT/tests/e2e/servers.sh"

PASSFILE=$T/pass
export PASSFILE
make_books() {
	local dir=$1 n=$2 size=$3 prefix=${4:-TEST}
	[ -s "$PASSFILE" ] || (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '\n=+/' >"$PASSFILE")
	mkdir -p "$T/gnupg" && chmod 700 "$T/gnupg"
	if [ -z "${_books_gpg_kill:-}" ]; then
		_books_gpg_kill=1
		on_exit "gpgconf --homedir '$T/gnupg' --kill all >/dev/null 2>&1"
	fi
	"$ROOT/tools/mkcorpus" -q --prefix "$prefix" --passphrase-file "$PASSFILE" \
		--gnupg "$T/gnupg" --plain "$T/plain" --format "${BOOKS_FORMAT:-raw}" \
		--compress "${BOOKS_COMPRESS:-none}" "$dir" "$n" "$size" "${BOOKS_S2K:-65536}"
}

s3client() { node "$ROOT/tests/e2e/s3client.mjs" "$@"; }
s3_get() { s3client get "$1" "$2" "$3"; }
s3_head_json() { s3client head "$1" "$2"; }
