# Hostile neighbours and lying servers (issue 14): another local user's links in staging,
# a second quire on a running run's directory, secrets in core dumps and /proc, closed
# standard fds, SIGHUP, a source that trickles, a decompression bomb, the queue's bound.

declare -F skip >/dev/null || skip() {
	echo "  SKIP $1: $2"
	echo "skip $1: $2" >>"$RESULTS"
}

make_books "$T/src" 6 256K-1M
start_nginx "$T/src"
LIST=$T/src/barcodes.txt
# A source that holds TEST0001 in flight: its first 1000 bytes, then 8 s of silence (each
# request), so a run is caught with a staging file open (--stall-timeout is 60 s).
echo "TEST0001 stall always at=1000 secs=8" >"$T/hold.rules"
start_faultserver "$T/src" --rules "$T/hold.rules" --no-name-faults
HOLD_URL=$FAULT_URL

quire_run() { # quire_run NAME DEST [options...]: stderr to $T/NAME.err
	local name=$1 dest=$2
	shift 2
	"$QUIRE" run --dest "$dest" --passphrase-file "$PASSFILE" --journal "$T/$name.journal" \
		--source "${SOURCE:-$NGINX_HTTP}/{barcode}.tar.gz.gpg" "$@" 2>"$T/$name.err"
}
# wait_exists PATH SECONDS: PATH exists (staging files stay empty until a buffer fills).
wait_exists() {
	local end=$(($(date +%s) + $2))
	while [ "$(date +%s)" -le "$end" ]; do
		[ -e "$1" ] && return 0
		sleep 0.05
	done
	echo "wait_exists: $1 did not appear within $2 s" >&2
	return 1
}
# held NAME DEST [options...]: quire_run against the holding source, in the background,
# as the shell's child itself (QPID is quire's pid), once TEST0001 is staging.
held() {
	local name=$1 dest=$2
	shift 2
	# exec: QPID is quire's own pid, not a subshell's.
	(exec "$QUIRE" run --dest "$dest" --passphrase-file "$PASSFILE" \
		--journal "$T/$name.journal" --source "$HOLD_URL/{barcode}.tar.gz.gpg" "$@" \
		2>"$T/$name.err") &
	QPID=$!
	wait_exists "$dest/.quire-staging/TEST0001.tar.gz.quire-part" 20
}

# --- another user's staging directory and links (14.2) ------------------------------------
if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null; then
	skip "planted staging links" "needs root and setpriv to act as another user"
else
	as_nobody() { setpriv --reuid nobody --regid nogroup --clear-groups "$@"; }
	# A place the other user can reach (the suite's own directory is private).
	pub=$(mktemp -d /tmp/quire-neighbours.XXXXXX) && chmod 755 "$pub"
	on_exit rm -rf "$pub"
	victim=$pub/victim
	echo "precious" >"$victim"
	chmod 666 "$victim"
	mkdir -p "$pub/shared" && chmod 1777 "$pub/shared" # a destination others can write
	as_nobody mkdir -m 777 "$pub/shared/.quire-staging"
	as_nobody ln -s "$victim" "$pub/shared/.quire-staging/TEST0001.tar.gz.quire-part"
	expect_exit 2 "a staging directory made by another user: configuration error" \
		quire_run planted "$pub/shared" "$LIST"
	if grep -q 'owned by uid 65534' "$T/planted.err" && [ "$(cat "$victim")" = precious ] &&
		[ ! -e "$pub/shared/TEST0001.tar.gz" ]; then
		pass "planted link: refused with a clear error, the file it pointed at untouched"
	else
		fail "planted link" "$(cat "$T/planted.err"); victim: $(cat "$victim")"
	fi
	# The same user's own directory, but open to others: refused too.
	mkdir -m 755 "$T/open" "$T/open/.quire-staging"
	expect_exit 2 "a staging directory others can enter: refused" quire_run open "$T/open" "$LIST"
	check "the mode is named" grep -q 'mode 755 lets others in' "$T/open.err"
	# DEST/.quire-incoming planted the same way (the copy area for another filesystem).
	mkdir -p "$pub/shared2" && chmod 1777 "$pub/shared2"
	as_nobody mkdir -m 777 "$pub/shared2/.quire-incoming"
	expect_exit 2 "a planted DEST/.quire-incoming: refused" \
		quire_run incoming "$pub/shared2" --staging "$T/st-incoming" "$LIST"
fi

# --- a second process on a running run (14.3) ---------------------------------------------
if held first "$T/two" --workers 2 --downloads 2 "$LIST"; then
	first=$(cat "$T/two/.quire-staging/.quire-lock")
	quire_run second "$T/two" "$LIST"
	rc=$?
	if [ "$rc" -eq 2 ] && grep -q "another quire (pid $first) is using" "$T/second.err" &&
		[ "$(readlink "/proc/$first/exe")" = "$(readlink -f "$QUIRE")" ] &&
		[ -e "$T/two/.quire-staging/TEST0001.tar.gz.quire-part" ]; then
		pass "a second run on the same directory: exit 2 naming the first's pid, nothing swept"
	else
		fail "second run" "rc=$rc; $(cat "$T/second.err")"
	fi
else
	fail "second run" "the first run never staged a book"
fi
wait "$QPID"
rc=$?
if [ "$rc" -eq 0 ] && [ "$(whole_or_absent "$T/two")" -eq 6 ]; then
	pass "the first run went on untouched: every book delivered"
else
	fail "first run" "rc=$rc; $(tail -3 "$T/first.err")"
fi

# --- secrets: core dumps and /proc/PID/environ (14.7, 14.10) ----------------------------
pattern=$(cat /proc/sys/kernel/core_pattern)
if [ "${pattern#|}" != "$pattern" ] || [ "${pattern#/}" != "$pattern" ]; then
	skip "core dumps hold no secret" "core_pattern '$pattern' does not write a core here"
else
	# core_dump NAME [options]: SIGABRT to a run with cores allowed by ulimit; prints the
	# core's path (or nothing).
	core_dump() {
		local name=$1 d=$T/core-$1 pid
		shift
		mkdir -p "$d"
		# ASan keeps cores off unless told (its shadow memory is not dumped).
		(
			cd "$d" && ulimit -c unlimited &&
				export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}disable_coredump=0 &&
				exec "$QUIRE" run --dest "$d/out" --passphrase-file "$PASSFILE" \
					--journal "$d/j" --source "$HOLD_URL/{barcode}.tar.gz.gpg" "$@" \
					"$LIST" 2>"$d/err"
		) &
		pid=$!
		wait_exists "$d/out/.quire-staging/TEST0001.tar.gz.quire-part" 20
		kill -ABRT "$pid"
		wait "$pid"
		find "$d" -mindepth 1 -maxdepth 1 -type f -name 'core*' | head -1
	}
	pass_bytes=$(cat "$PASSFILE")
	core=$(core_dump allowed --allow-core-dumps)
	if [ -n "$core" ] && grep -qaF "$pass_bytes" "$core"; then
		# The control: with dumps allowed the passphrase is there to find.
		core=$(core_dump default)
		if [ -z "$core" ]; then
			pass "SIGABRT: no core dump holding the passphrase (the process is not dumpable)"
		elif grep -qaF "$pass_bytes" "$core"; then
			fail "core dump" "the passphrase is in $core"
		else
			pass "SIGABRT: the core holds no passphrase"
		fi
	else
		skip "core dumps hold no secret" "this kernel wrote no readable core even when allowed"
	fi
fi
QUIRE_PASSPHRASE=$(cat "$PASSFILE") "$QUIRE" run --dest "$T/env" --journal "$T/env.journal" \
	--source "$HOLD_URL/{barcode}.tar.gz.gpg" "$LIST" 2>"$T/env.err" &
pid=$!
if wait_exists "$T/env/.quire-staging/TEST0001.tar.gz.quire-part" 20 &&
	! tr '\0' '\n' <"/proc/$pid/environ" | grep -q "^QUIRE_PASSPHRASE=" &&
	! grep -qaF "$(cat "$PASSFILE")" "/proc/$pid/environ"; then
	pass "QUIRE_PASSPHRASE is gone from /proc/PID/environ once read"
else
	fail "environ" "$(tr '\0' '\n' <"/proc/$pid/environ" | grep -c QUIRE) QUIRE lines"
fi
wait "$pid"

# --- fds 0-2 closed at exec (14.10) ----------------------------------------------------------
quire_run closed "$T/closed" "$LIST" <&- >&- 2>&-
rc=$?
if [ "$rc" -eq 0 ] && [ "$(whole_or_absent "$T/closed")" -eq 6 ] &&
	! grep -v -P '^[^\t]+\t[^\t]+\t[^\t]+\t[0-9]+\t[^\t]+\t[^\t]*(\t[^\t]*)?$' "$T/closed.journal" |
	grep -q .; then
	pass "started with fds 0-2 closed: the journal holds journal lines only"
else
	fail "closed fds" "rc=$rc; $(head -3 "$T/closed.journal")"
fi

# --- SIGHUP drains like SIGTERM (14.10) ------------------------------------------------------
held hup "$T/hup" --workers 2 --queue-size 1 "$LIST"
kill -HUP "$QPID"
wait "$QPID"
rc=$?
n=$(whole_or_absent "$T/hup")
if [ "$rc" -eq 130 ] && [ -e "$T/hup/TEST0001.tar.gz" ] && grep -q "SIGHUP: finishing" "$T/hup.err" &&
	[ -z "$(ls -A "$T/hup/.quire-staging" 2>/dev/null)" ]; then
	pass "SIGHUP: drained (the book in flight finished whole, $n in all), exit 130, staging empty"
else
	fail "SIGHUP" "rc=$rc n=$n; $(tail -2 "$T/hup.err")"
fi

# --- only quire's own names are swept (14.10) --------------------------------------------
mkdir -m 700 -p "$T/sweep"
echo other >"$T/sweep/notes.quire-part"
echo leftover >"$T/sweep/TEST0009.tar.gz.quire-part"
quire_run sweep "$T/sweep-out" --staging "$T/sweep" "$LIST"
if [ -e "$T/sweep/notes.quire-part" ] && [ ! -e "$T/sweep/TEST0009.tar.gz.quire-part" ]; then
	pass "the start-up sweep removes quire's leftovers only, not other tools' files"
else
	fail "sweep" "$(ls -A "$T/sweep")"
fi

# --- a list that cannot be read (14.10) ------------------------------------------------------
expect_exit 2 "a directory as the barcode list: exit 2" quire_run listdir "$T/ld" "$T/src"
check "the list's error is named" grep -q 'Is a directory' "$T/listdir.err"

# --- the queue holds to --queue-size (14.10) -------------------------------------------------
for i in $(seq 1 150); do echo "TEST000$((i % 6 + 1))"; done >"$T/many"
quire_run queue "$T/queue" --queue-size 100 --workers 1 --status-every 1 "$T/many"
max=$(grep -oE 'queued: [0-9]+' "$T/queue.err" | awk '{ if ($2 > m) m = $2 } END { print m + 0 }')
if [ "$max" -le 100 ]; then
	pass "status never shows more queued than --queue-size (at most $max)"
else
	fail "queue bound" "queued: $max"
fi

# --- a source that trickles (14.4) ----------------------------------------------------------
stop_pid "$NGINX_PID"
echo "TEST0002 trickle 1 at=20000 secs=0.2" >"$T/trickle.rules"
start_faultserver "$T/src" --rules "$T/trickle.rules" --no-name-faults
echo TEST0002 >"$T/one"
"$QUIRE" run --dest "$T/trickle" --passphrase-file "$PASSFILE" --journal "$T/trickle.journal" \
	--source "$FAULT_URL/{barcode}.tar.gz.gpg" --min-rate 64KiB --min-rate-window 2 \
	--downloads 1 "$T/one" 2>"$T/trickle.err"
rc=$?
if [ "$rc" -eq 0 ] && grep -q 'too slow: under 65536 bytes/s over 2 s' "$T/trickle.err" &&
	cmp -s "$T/plain/TEST0002.tar.gz" "$T/trickle/TEST0002.tar.gz"; then
	pass "a trickling source is cut by --min-rate and retried; the book delivered exact"
else
	fail "trickle" "rc=$rc; $(cat "$T/trickle.err")"
fi

# --- a decompression bomb (14.4) -------------------------------------------------------------
mkdir -p "$T/bomb-src"
head -c 300000000 /dev/zero >"$T/zeros"
gpg --batch -q --homedir "$T/gnupg" --pinentry-mode loopback --passphrase-file "$PASSFILE" \
	--s2k-count 65536 --compress-algo zlib -z 9 -o "$T/bomb-src/BOMB0001.tar.gz.gpg" -c "$T/zeros"
rm -f "$T/zeros"
echo BOMB0001 >"$T/bomb.txt"
"$QUIRE" run --dest "$T/bomb" --passphrase-file "$PASSFILE" --journal "$T/bomb.journal" \
	--source "$T/bomb-src/{barcode}.tar.gz.gpg" --max-book-size 10MiB "$T/bomb.txt" 2>"$T/bomb.err"
rc=$?
if [ "$rc" -eq 1 ] && grep -q $'\tBOMB0001\tfailed\t.*larger than --max-book-size' "$T/bomb.journal" &&
	[ -z "$(ls -A "$T/bomb/.quire-staging")" ] && [ ! -e "$T/bomb/BOMB0001.tar.gz" ]; then
	pass "a $(stat -c %s "$T/bomb-src/BOMB0001.tar.gz.gpg")-byte bomb of 300 MB stops at --max-book-size, nothing left"
else
	fail "bomb" "rc=$rc; $(cat "$T/bomb.err")"
fi

# --- an S2K bomb in a run (14.5): the book fails alone, the worker's other books go on -----
printf '%s' "$(cat "$PASSFILE")" >"$T/bomb-pass"
head -c 200000 /dev/urandom >"$T/s2k-plain"
mkdir -p "$T/s2k-src"
if python3 "$ROOT/tests/e2e/craftpgp.py" skesks 300 "$(cat "$T/bomb-pass")" "$T/s2k-plain" \
	"$T/s2k-src/S2KB0001.tar.gz.gpg"; then
	cp "$T/src/TEST0003.tar.gz.gpg" "$T/src/TEST0004.tar.gz.gpg" "$T/s2k-src/"
	printf 'S2KB0001\nTEST0003\nTEST0004\n' >"$T/s2k.txt"
	"$QUIRE" run --dest "$T/s2k" --passphrase-file "$PASSFILE" --journal "$T/s2k.journal" \
		--source "$T/s2k-src/{barcode}.tar.gz.gpg" --threads 1 "$T/s2k.txt" 2>"$T/s2k.err"
	rc=$?
	if [ "$rc" -eq 1 ] && grep -q $'\tS2KB0001\tfailed\t.*S2K bomb' "$T/s2k.journal" &&
		cmp -s "$T/plain/TEST0003.tar.gz" "$T/s2k/TEST0003.tar.gz" &&
		cmp -s "$T/plain/TEST0004.tar.gz" "$T/s2k/TEST0004.tar.gz"; then
		pass "an S2K bomb (300 key packets) fails alone after 4 derivations; the other books delivered"
	else
		fail "S2K bomb in a run" "rc=$rc; $(cat "$T/s2k.err")"
	fi
else
	fail "S2K bomb in a run" "craftpgp.py could not make the message"
fi
