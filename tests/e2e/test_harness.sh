# The harness itself, so that a hang, a skip or a crash is reported as what it is:
# tests/e2e/run.sh's counts and deadline (a timed-out suite's servers stopped, its quire
# killed, its cleanup run), wait_exit, and tests/unit/run.sh's counts and deadline.

RUN=$ROOT/tests/e2e/run.sh
# A stand-in for quire that hangs: run.sh names the processes whose binary is QUIRE.
mkdir -p "$T/fake"
cp "$(command -v sleep)" "$T/fake/quire"

# A suite that passes once, skips once, starts a server and hangs in "quire".
cat >"$T/test_hang.sh" <<'EOF'
pass "before the hang"
skip "a case" "not here"
python3 -m http.server 0 --bind 127.0.0.1 >/dev/null 2>&1 &
echo $! >"$HARNESS_DIR/server.pid"
on_exit "echo ran >'$HARNESS_DIR/cleanup'; stop_pid $!"
echo "$T" >"$HARNESS_DIR/suite.T"
"$QUIRE" 1000
pass "never reached"
EOF
cat >"$T/test_skiponly.sh" <<'EOF'
skip "everything" "nothing to run here"
EOF
export HARNESS_DIR=$T

start=$(date +%s)
E2E_TIMEOUT=3 E2E_GRACE=20 "$RUN" "$T/fake/quire" "$T/test_hang.sh" >"$T/hang.out" 2>&1
rc=$?
took=$(($(date +%s) - start))
check "run.sh: a suite past its deadline makes the run fail" test "$rc" -eq 1
check "run.sh: the last line counts 1 passed, 1 failed, 1 skipped" \
	test "$(tail -1 "$T/hang.out")" = "e2e: 1 passed, 1 failed, 1 skipped"
check "run.sh: the failure names the suite and its deadline" \
	grep -q "^  $T/test_hang.sh: timed out after 3 s" "$T/hang.out"
check "run.sh: the hung quire is named with where it sleeps" \
	grep -qE "^   killed [0-9]+: $T/fake/quire 1000 +\[threads in: " "$T/hang.out"
server=$(cat "$T/server.pid" 2>/dev/null)
check "run.sh: the timed-out suite's server is stopped" \
	test -n "$server" -a ! -e "/proc/${server:-0}"
check "run.sh: the timed-out suite's on_exit list ran" test "$(cat "$T/cleanup" 2>/dev/null)" = ran
suite_t=$(cat "$T/suite.T" 2>/dev/null)
check "run.sh: the timed-out suite's scratch directory is gone" \
	test -n "$suite_t" -a ! -e "${suite_t:-/}"
# The deadline is a bound, not a measurement: the run must not have waited out the grace.
check "run.sh: done well before deadline + grace (took $took s)" test "$took" -lt 20

"$RUN" "$T/fake/quire" "$T/test_skiponly.sh" >"$T/skip.out" 2>&1
rc=$?
if [ "$rc" -eq 1 ] && grep -q 'nothing passed' "$T/skip.out" &&
	[ "$(tail -1 "$T/skip.out")" = "e2e: 0 passed, 0 failed, 1 skipped" ] &&
	grep -q '^  everything: nothing to run here' "$T/skip.out"; then
	pass "run.sh: a run in which everything skipped fails, and lists the skip with why"
else
	fail "run.sh: skips only" "rc=$rc $(tail -3 "$T/skip.out")"
fi

# wait_exit: a child's own status; past the deadline, killed and 124.
(exit 3) &
wait_exit $! 10
check "wait_exit: a child's exit status" test $? -eq 3
"$T/fake/quire" 1000 &
pid=$!
wait_exit "$pid" 1 2>/dev/null
rc=$?
check "wait_exit: past its deadline, 124 and the child killed" test "$rc" -eq 124 -a ! -e "/proc/$pid"

# tests/unit/run.sh: cmocka's counts summed; a crash or a hang counts as one failure.
if [ -x "$ROOT/build/asan/tests/test_status" ]; then
	"$ROOT/tests/unit/run.sh" "$ROOT/build/asan/tests/test_status" >"$T/unit.out" 2>&1
	check "unit runner: a passing binary is counted from cmocka's summary" \
		grep -qE '^unit: [1-9][0-9]* passed, 0 failed, 0 skipped$' "$T/unit.out"
else
	skip "unit runner: counts of a passing binary" "build/asan/tests/test_status not built (make asan)"
fi
printf '#!/bin/sh\nexec sleep 1000\n' >"$T/fake/hang"
chmod +x "$T/fake/hang"
UNIT_TIMEOUT=1 "$ROOT/tests/unit/run.sh" "$(command -v false)" "$T/fake/hang" >"$T/unit2.out" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && [ "$(tail -1 "$T/unit2.out")" = "unit: 0 passed, 2 failed, 0 skipped" ] &&
	grep -q 'false: exited 1 without a cmocka failure' "$T/unit2.out" &&
	grep -q 'hang: timed out after 1 s' "$T/unit2.out"; then
	pass "unit runner: a crash and a hang are failures, named"
else
	fail "unit runner: crash and hang" "rc=$rc $(tail -4 "$T/unit2.out")"
fi
