# shellcheck shell=bash
# Issue 9's backoff case, shared by tests/e2e/test_engine.sh and tools/stress-backoff: 40
# books each answering 503 three times, on one worker thread with 20 downloads and 40
# books in flight, so that dozens of backoff timers and libcurl's own timer are armed,
# fired, cancelled and re-armed on one loop at once. Sourced after lib.sh.
#   backoff_corpus        the 40 books (BO0001..BO0040) in $T/backoff-src, made once
#   backoff_run NAME      one run into $T/NAME against a fresh fault server (call it from
#                         the test's own shell); sets BACKOFF_LINE to one line saying what
#                         held and what did not; returns 0 only when quire
#                         exited 0 without a crash, with every book byte-exact and exactly
#                         4 GETs (3 answered 503, then 200) for each in the server's log
BACKOFF_BOOKS=40
BACKOFF_GETS=4

backoff_corpus() {
	make_books "$T/backoff-src" "$BACKOFF_BOOKS" 16K-128K BO
}

# _backoff_crash ERRFILE RC: what a crashed run left, or nothing when it did not crash.
_backoff_crash() {
	local line
	line=$(grep -m1 -E 'ERROR: AddressSanitizer|runtime error:|WARNING: ThreadSanitizer|Assertion .* failed|LeakSanitizer' "$1")
	if [ -n "$line" ]; then
		echo "${line:0:160}"
	elif [ "$2" -eq 124 ]; then
		echo "still running after 120 s (killed)"
	elif [ "$2" -gt 128 ]; then
		echo "killed by signal $(($2 - 128))"
	fi
}

backoff_run() {
	local name=$1 dest=$T/$1 rc crash b n wrong_count=0 wrong_bytes=0 first_count='' first_bytes=''
	local t0 ms
	# Its own fault server: the caller's stays as it was.
	# shellcheck disable=SC2034 # start_faultserver sets them all
	local FAULT_URL FAULT_LOG FAULT_PID FAULT_PORT
	echo "BO* 503 $((BACKOFF_GETS - 1))" >"$T/$name.rules"
	if ! start_faultserver "$T/backoff-src" --rules "$T/$name.rules" --no-name-faults; then
		BACKOFF_LINE="$name: the fault server did not start"
		return 2
	fi
	t0=$(date +%s%N)
	"$QUIRE" run --dest "$dest" --passphrase-file "$PASSFILE" --journal "$T/$name.journal" \
		--source "$FAULT_URL/{barcode}.tar.gz.gpg" --threads 1 --downloads 20 --workers 40 \
		"$T/backoff-src/barcodes.txt" 2>"$T/$name.err" &
	wait_exit $! 120
	rc=$?
	ms=$((($(date +%s%N) - t0) / 1000000))
	stop_pid "$FAULT_PID"
	crash=$(_backoff_crash "$T/$name.err" "$rc")
	while read -r b; do
		n=$(grep -c "^GET /$b\.tar\.gz\.gpg " "$FAULT_LOG")
		if [ "$n" -ne "$BACKOFF_GETS" ]; then
			wrong_count=$((wrong_count + 1))
			first_count=${first_count:-" (first: $b $n GETs)"}
		fi
		if ! cmp -s "$T/plain/$b.tar.gz" "$dest/$b.tar.gz"; then
			wrong_bytes=$((wrong_bytes + 1))
			first_bytes=${first_bytes:-" (first: $b)"}
		fi
	done <"$T/backoff-src/barcodes.txt"
	BACKOFF_LINE="$name: exit $rc, ${crash:-no crash}; $wrong_count books not at $BACKOFF_GETS"
	BACKOFF_LINE+=" GETs$first_count; $wrong_bytes books missing or not byte-exact$first_bytes; $ms ms"
	[ "$rc" -eq 0 ] && [ -z "$crash" ] && [ "$wrong_count" -eq 0 ] && [ "$wrong_bytes" -eq 0 ]
}
