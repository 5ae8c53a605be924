# Source faults against tests/e2e/faultserver.py: transient ones (500, 503, 429 with
# Retry-After, a reset mid-body, a body shorter than its Content-Length, a stall mid-body)
# are survived by retry and the book ends byte-exact; permanent ones (404, a tampered
# book) fail only that book, with no retry of a 404; a wrong passphrase stops the run
# after --max-consecutive-failures; a list of 404s runs to its end.

make_books "$T/src" 10 256K
: >"$T/rules"
start_faultserver "$T/src" --rules "$T/rules" || exit 1

# A tampered book: a byte flipped in the middle of the encrypted data (past the packet
# headers, so the damage reaches the MDC check, not the parser).
tampered=$T/src/TEST0008.tar.gz.gpg
size=$(stat -c %s "$tampered")
mid=$((size / 2))
byte=$(od -An -tu1 -j "$mid" -N1 "$tampered" | tr -d ' ')
printf "$(printf '\\%03o' $((byte ^ 0x55)))" |
	dd of="$tampered" bs=1 seek="$mid" count=1 conv=notrunc status=none
if gpg --homedir "$T/gnupg" --batch --quiet --pinentry-mode loopback --passphrase-file "$PASSFILE" \
	-o /dev/null -d "$tampered" 2>/dev/null; then
	fail "faults: fixture: gpg rejects the tampered book" "gpg decrypted it"
fi

# Each fault hits its book's first requests only (COUNT), so a retry gets the real file.
# at=100000: the faults cut the 262 KB body in its middle.
cat >"$T/rules" <<'EOF'
TEST0001 500 2
TEST0002 503 2
TEST0003 429 1 retry_after=2
TEST0004 reset 1 at=100000
TEST0005 short 1 at=100000
TEST0006 stall 1 at=100000 secs=20
TEST0007 404 always
EOF

# run_quire NAME [options...] LIST: quire through the fault server, stderr to $T/NAME.err
run_quire() {
	local name=$1
	shift
	"$QUIRE" run --dest "$T/$name" --passphrase-file "$PASSFILE" --journal "$T/$name.journal" \
		--source "$FAULT_URL/{barcode}.tar.gz.gpg" --stall-timeout 2 "$@" 2>"$T/$name.err"
}

# requests B: every request the fault server saw for book B, one line each.
requests() { grep "^[A-Z]* /$1.tar.gz.gpg " "$FAULT_LOG"; }

expect_exit 1 "faults: a run with two permanent failures exits 1" \
	run_quire faults --retries 4 "$T/src/barcodes.txt"

# transient BOOK WHAT FAULT_RE N: the book got N faulty answers matching FAULT_RE, then a
# clean 200 (its whole body), and it is delivered byte-exact.
transient() {
	local b=$1 what=$2 re=$3 n=$4 log
	log=$(requests "$b")
	if [ "$(printf '%s\n' "$log" | grep -cE "$re")" -eq "$n" ] &&
		[ "$(printf '%s\n' "$log" | wc -l)" -eq $((n + 1)) ] &&
		printf '%s\n' "$log" | tail -1 | grep -qE '^GET [^ ]+ 200 - ' &&
		cmp -s "$T/plain/$b.tar.gz" "$T/faults/$b.tar.gz" &&
		grep -q "^quire: $b: attempt $n failed" "$T/faults.err"; then
		pass "faults: $what: retried $n time(s), then delivered byte-exact"
	else
		fail "faults: $what" "requests: $log; quire: $(grep "$b" "$T/faults.err")"
	fi
}
transient TEST0001 "HTTP 500" ' 500 500 ' 2
transient TEST0002 "HTTP 503" ' 503 503 ' 2
transient TEST0003 "HTTP 429 with Retry-After" ' 429 429 ' 1
# resumed BOOK WHAT FAULT_RE: the book's body broke after 100000 bytes; the retry asked
# for the rest only (a 206 carrying exactly size - 100000 bytes, issue 13), and the book
# is delivered byte-exact: the same decryptor carried on.
resumed() {
	local b=$1 what=$2 re=$3 log size
	log=$(requests "$b")
	size=$(stat -c %s "$T/src/$b.tar.gz.gpg")
	if [ "$(printf '%s\n' "$log" | grep -cE "$re")" -eq 1 ] &&
		[ "$(printf '%s\n' "$log" | wc -l)" -eq 2 ] &&
		printf '%s\n' "$log" | tail -1 | grep -qE "^GET [^ ]+ 206 - $((size - 100000)) " &&
		cmp -s "$T/plain/$b.tar.gz" "$T/faults/$b.tar.gz" &&
		grep -q "^quire: $b: attempt 1 failed" "$T/faults.err" &&
		grep -qP "\t$b\tok\t.*\tresumed 1 time\(s\): [0-9]+ bytes not fetched again" "$T/faults.journal"; then
		pass "faults: $what: resumed from byte 100000 with a range request, delivered byte-exact"
	else
		fail "faults: $what" "requests: $log; quire: $(grep "$b" "$T/faults.err")"
	fi
}
resumed TEST0004 "connection reset mid-body" ' 200 reset 100000 '
resumed TEST0005 "body shorter than Content-Length, then close" ' 200 short 100000 '
resumed TEST0006 "stall mid-body (--stall-timeout 2)" ' 200 stall 100000 ' 

# Retry-After: 2 is the wait quire announces (a stated value, not a measured time).
if grep -q '^quire: TEST0003: attempt 1 failed (source: HTTP 429); retrying in 2.0 s' "$T/faults.err"; then
	pass "faults: 429's Retry-After: 2 is the backoff quire takes"
else
	fail "faults: Retry-After honoured" "$(grep TEST0003 "$T/faults.err")"
fi
# The stall was cut by quire's --stall-timeout, not by the server closing.
if grep -q '^quire: TEST0006: attempt 1 failed (source: stalled: no byte for 2 s)' "$T/faults.err"; then
	pass "faults: the stall is detected by --stall-timeout (the server never closed)"
else
	fail "faults: stall detection" "$(grep TEST0006 "$T/faults.err")"
fi

# 404: exactly one request, failed once, named, in the journal.
n404=$(requests TEST0007 | wc -l)
if [ "$n404" -eq 1 ] && grep -q '^quire: TEST0007 (line 7): failed: not available from the source (HTTP 404)' "$T/faults.err" &&
	grep -q $'\tTEST0007\tfailed\t' "$T/faults.journal" && [ ! -e "$T/faults/TEST0007.tar.gz" ] &&
	! grep -q 'TEST0007: attempt' "$T/faults.err"; then
	pass "faults: 404: one request, no retry, the book failed and named"
else
	fail "faults: 404" "$n404 requests; $(grep TEST0007 "$T/faults.err" "$T/faults.journal")"
fi

# Tampered: an integrity failure, not retried (one request), nothing delivered.
ntamp=$(requests TEST0008 | wc -l)
if [ "$ntamp" -eq 1 ] && grep -q '^quire: TEST0008 (line 8): failed: integrity check failed' "$T/faults.err" &&
	grep -q $'\tTEST0008\tfailed\t' "$T/faults.journal" && [ ! -e "$T/faults/TEST0008.tar.gz" ]; then
	pass "faults: tampered book: integrity failure, not retried, nothing delivered"
else
	fail "faults: tampered" "$ntamp requests; $(grep TEST0008 "$T/faults.err" "$T/faults.journal")"
fi

# The rest untouched; the summary counts 8 ok and 2 failed; nothing else in the destination.
if cmp -s "$T/plain/TEST0009.tar.gz" "$T/faults/TEST0009.tar.gz" &&
	cmp -s "$T/plain/TEST0010.tar.gz" "$T/faults/TEST0010.tar.gz" &&
	grep -qE '^summary: 10/10 .*ok: 8, skipped: 0, failed: 2\]' "$T/faults.err" &&
	[ "$(find "$T/faults" -mindepth 1 -not -path "$T/faults/.quire-staging" | wc -l)" -eq 8 ] &&
	[ -z "$(ls -A "$T/faults/.quire-staging")" ] &&
	[ "$(grep -c $'\tok\t' "$T/faults.journal")" -eq 8 ]; then
	pass "faults: summary ok 8 failed 2; destination holds exactly the 8 good books, staging empty"
else
	fail "faults: summary and destination" "$(tail -1 "$T/faults.err"); $(ls -A "$T/faults")"
fi

# Retries exhausted: a book that always answers 503 fails after --retries, the run goes on.
printf '%s\n' 'TEST0001 503 always' >"$T/rules"
printf 'TEST0001\nTEST0002\n' >"$T/two.txt"
: >"$FAULT_LOG"
expect_exit 1 "faults: 503 forever: exit 1" run_quire always --retries 2 "$T/two.txt"
n=$(requests TEST0001 | wc -l)
if [ "$n" -eq 3 ] && grep -q '^quire: TEST0001 (line 1): failed: source: HTTP 503 (after 2 retries)' "$T/always.err" &&
	cmp -s "$T/plain/TEST0002.tar.gz" "$T/always/TEST0002.tar.gz" && [ ! -e "$T/always/TEST0001.tar.gz" ]; then
	pass "faults: 503 forever: 1 + --retries 2 requests, then failed; the other book delivered"
else
	fail "faults: retries exhausted" "$n requests; $(cat "$T/always.err")"
fi
: >"$T/rules"

# A wrong passphrase: every book fails the session-key check; after 3 in a row the run
# stops taking books, drains and says why. --workers 2 and a short queue keep most of the
# 10 books unrequested when it stops.
: >"$FAULT_LOG"
echo "not-the-passphrase" >"$T/wrongpass"
chmod 600 "$T/wrongpass"
expect_exit 1 "wrong passphrase: exit 1" \
	"$QUIRE" run --dest "$T/wrong" --passphrase-file "$T/wrongpass" --journal "$T/wrong.journal" \
	--source "$FAULT_URL/{barcode}.tar.gz.gpg" --workers 2 --queue-size 1 --threads 1 \
	--max-consecutive-failures 3 "$T/src/barcodes.txt" 2>"$T/wrong.err"
nget=$(grep -c '^GET ' "$FAULT_LOG")
if grep -qE '^quire: stopped early: 3 books in a row failed .*wrong passphrase' "$T/wrong.err" &&
	[ "$nget" -ge 3 ] && [ "$nget" -lt 10 ] && [ -z "$(ls "$T/wrong"/*.tar.gz 2>/dev/null)" ]; then
	pass "wrong passphrase: the run stops after 3 failures in a row ($nget of 10 books requested) and says why"
else
	fail "wrong passphrase" "$nget GETs; $(grep -v 'attempt' "$T/wrong.err" | tail -4)"
fi

# A list of 404s runs to its end: 404 never counts toward --max-consecutive-failures.
: >"$FAULT_LOG"
for i in $(seq 1 40); do printf 'NOSUCH%04d\n' "$i"; done >"$T/missing.txt"
expect_exit 1 "40 missing books: exit 1" \
	run_quire missing --max-consecutive-failures 3 --retries 4 "$T/missing.txt"
nget=$(grep -c '^GET /NOSUCH' "$FAULT_LOG")
if [ "$nget" -eq 40 ] && ! grep -q 'stopped early' "$T/missing.err" &&
	grep -qE '^summary: 40/40 .*failed: 40\]' "$T/missing.err" &&
	[ "$(grep -c $'\tfailed\t' "$T/missing.journal")" -eq 40 ]; then
	pass "40 missing books: each requested once, all 40 failed, the run went to its end"
else
	fail "404s run to the end" "$nget GETs; $(tail -2 "$T/missing.err")"
fi
