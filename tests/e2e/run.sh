#!/usr/bin/env bash
# Runs end-to-end suites against a quire binary and ends with the plain closing line
# "e2e: N passed, N failed, N skipped" (E2E_NAME replaces "e2e"). A skip is never a pass,
# and a run in which nothing passed fails.
#   Usage: tests/e2e/run.sh BUILD/quire tests/e2e/test_*.sh
#   E2E_TIMEOUT  seconds a suite may take (300); past it the suite fails, named
#   E2E_GRACE    seconds a timed-out suite gets to stop its servers (30)
#
# Each suite runs in its own process group, so that whatever it started can be found and
# stopped: at the deadline every process of the group but the suite's shell is killed
# (quire first of all: a deadlock is what a timeout usually means) and the shell gets
# SIGTERM, which runs its on_exit list (servers, gpg-agent, mounts) once the command it
# waits for is gone; what is still there after E2E_GRACE is killed with the group.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
QUIRE=$(realpath "$1")
shift
NAME=${E2E_NAME:-e2e}
TIMEOUT=${E2E_TIMEOUT:-300}
GRACE=${E2E_GRACE:-30}
E2E_TMPDIR=$(mktemp -d /tmp/quire-e2e.XXXXXX)
export ROOT QUIRE E2E_TMPDIR
results=$E2E_TMPDIR/results
: >"$results"
suite_pid=

# group_members PGID: the pids of the process group PGID, one a line.
group_members() {
	local pgid=$1 f s
	for f in /proc/[0-9]*/stat; do
		s=$(cat "$f" 2>/dev/null) || continue
		s=${s##*) }
		# shellcheck disable=SC2086 # the fields after the command name, split
		set -- $s
		[ "${3:-}" = "$pgid" ] && { f=${f#/proc/}; echo "${f%/stat}"; }
	done
}

# describe_stuck PID: what a process of a timed-out suite was doing, for the log: its
# command line and where each of its threads sleeps in the kernel.
describe_stuck() {
	local pid=$1 cmd waits
	cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-160)
	waits=$(cat /proc/"$pid"/task/*/wchan 2>/dev/null | tr '\0' '\n' | sort | uniq -c |
		awk '{ printf "%s%s x%s", (NR > 1 ? ", " : ""), $2, $1 }')
	echo "   killed $pid: $cmd [threads in: $waits]"
}

# stop_suite PID WHY: ends a running suite and everything in its process group.
stop_suite() {
	local pid=$1 why=$2 p n=0 wd who=
	echo "STOP $current: $why"
	kill -TERM "$pid" 2>/dev/null
	for p in $(group_members "$pid"); do
		[ "$p" = "$pid" ] && continue
		[ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$QUIRE" ] && describe_stuck "$p"
		kill -KILL "$p" 2>/dev/null && n=$((n + 1))
	done
	sleep "$GRACE" &
	wd=$!
	wait -n -p who "$pid" "$wd"
	if [ "$who" = "$pid" ]; then
		kill -KILL "$wd" 2>/dev/null
	else
		echo "   its shell did not finish its cleanup within $GRACE s: killing the group"
	fi
	kill -KILL -- "-$pid" 2>/dev/null
	wait "$wd" 2>/dev/null
	wait "$pid" 2>/dev/null
	echo "fail $current: $why ($n processes killed)" >>"$results"
}

# sweep: what a killed suite could not remove itself (its scratch directory, the mounts
# and gpg-agents in it).
sweep() {
	local d m
	for d in "$E2E_TMPDIR"/quire-test.*; do
		[ -d "$d" ] || continue
		[ -d "$d/gnupg" ] && gpgconf --homedir "$d/gnupg" --kill all >/dev/null 2>&1
		awk -v d="$d/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
			while read -r m; do umount -l "$m"; done
		rm -rf "$d"
	done
}

# Watchdogs are stopped with SIGKILL: a child forked for `sleep &` is a copy of this shell,
# with this trap, until it has exec'd.
on_interrupt() {
	[ "$BASHPID" = "$$" ] || exit 130
	trap - INT TERM
	[ -n "$suite_pid" ] && stop_suite "$suite_pid" "interrupted"
	sweep
	rm -rf "$E2E_TMPDIR"
	exit 130
}
trap on_interrupt INT TERM

for t in "$@"; do
	current=$t
	echo "== $t"
	start=$(date +%s)
	before=$(grep -c '' "$results")
	# Job control on: the suite gets a process group of its own (pgid = its pid).
	set -m
	RESULTS=$results bash -c 'source "$ROOT/tests/e2e/lib.sh"; source "$1"' _ "$t" </dev/null &
	suite_pid=$!
	set +m
	sleep "$TIMEOUT" &
	watchdog=$!
	who=
	wait -n -p who "$suite_pid" "$watchdog"
	rc=$?
	if [ "$who" = "$suite_pid" ]; then
		kill -KILL "$watchdog" 2>/dev/null
		wait "$watchdog" 2>/dev/null
		if [ $rc -ne 0 ]; then
			echo "FAIL $t: script exited $rc"
			echo "fail $t: script exited $rc" >>"$results"
		fi
		# Whatever the suite left running in its group (a background job it never
		# waited for) goes with it.
		kill -KILL -- "-$suite_pid" 2>/dev/null
	else
		stop_suite "$suite_pid" "timed out after $TIMEOUT s (E2E_TIMEOUT)"
	fi
	suite_pid=
	sweep
	counts=$(tail -n +$((before + 1)) "$results" | awk '{ n[$1]++ }
		END { printf "%d passed, %d failed, %d skipped", n["pass"], n["fail"], n["skip"] }')
	echo "   ($(($(date +%s) - start)) s: $counts)"
done
passed=$(grep -c '^pass ' "$results")
failed=$(grep -c '^fail ' "$results")
skipped=$(grep -c '^skip ' "$results")
if [ "$skipped" -gt 0 ]; then
	echo "skipped:"
	grep '^skip ' "$results" | sed 's/^skip /  /'
fi
if [ "$failed" -gt 0 ]; then
	echo "failures:"
	grep '^fail ' "$results" | sed 's/^fail /  /'
fi
if [ "$passed" -eq 0 ]; then
	echo "nothing passed: that is a failure"
fi
rm -rf "$E2E_TMPDIR"
echo "$NAME: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
