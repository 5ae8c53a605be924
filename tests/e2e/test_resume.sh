# Resume (issue 13): a download cut at random offsets continues from the byte where it
# broke, with Range + If-Range, into the same decryptor. Every book byte-exact; the bytes
# fetched stay within 1.05x of the archives' sizes; a server without ranges, and an object
# that changed between attempts, still give byte-exact books (started over from byte 0); a
# server that caps its ranges has the rest asked for again.

make_books "$T/src" 12 1M-3M

# Each book's body is cut twice, at random offsets of each answer's body.
rules=$T/rules
: >"$rules"
while read -r b; do
	size=$(stat -c %s "$T/src/$b.tar.gz.gpg")
	echo "$b reset 1 at=$((RANDOM * 32768 % (size - 1024) + 512))" >>"$rules"
	echo "$b reset 1 at=$((RANDOM % 65536 + 1))" >>"$rules"
done <"$T/src/barcodes.txt"
start_faultserver "$T/src" --rules "$rules" --no-name-faults

run_quire() {
	local name=$1
	shift
	"$QUIRE" run --dest "$T/$name" --passphrase-file "$PASSFILE" --journal "$T/$name.journal" \
		--source "$FAULT_URL/{barcode}.tar.gz.gpg" --retries 4 "$@" "$T/src/barcodes.txt" \
		2>"$T/$name.err"
}

# all_exact DIR: every book of the corpus in DIR, byte-identical to its plaintext.
all_exact() {
	local b
	while read -r b; do
		cmp -s "$T/plain/$b.tar.gz" "$1/$b.tar.gz" || { echo "$b differs" >&2; return 1; }
	done <"$T/src/barcodes.txt"
}

expect_exit 0 "resume: a run with every book cut twice exits 0" run_quire cut --status-format json
check "resume: every book byte-exact" all_exact "$T/cut"
archives=$(cat "$T"/src/*.tar.gz.gpg | wc -c)
# What reached quire (its summary's bytes_in): the server's log would also count what its
# reset threw away unsent.
fetched=$(grep '"event":"summary"' "$T/cut.err" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_in"])')
ranged=$(grep -c '^GET [^ ]* 206 ' "$FAULT_LOG")
if [ "$fetched" -le $((archives * 105 / 100)) ] && [ "$ranged" -ge 12 ]; then
	pass "resume: $fetched bytes fetched for $archives of archives ($ranged range requests)"
else
	fail "resume: bytes fetched" "$fetched for $archives; $ranged range requests"
fi
if [ "$(grep -c $'\tok\t.*\tresumed 2 time(s)' "$T/cut.journal")" -eq 12 ]; then
	pass "resume: the journal says each book was resumed twice"
else
	fail "resume: journal" "$(cut -f2,3,6 "$T/cut.journal")"
fi

# A server that ignores Range: each retry is a whole body again; quire starts over.
stop_pid "$FAULT_PID"
start_faultserver "$T/src" --rules "$rules" --no-name-faults --no-range
expect_exit 0 "no ranges: exit 0" run_quire norange
check "no ranges: every book byte-exact (started over from byte 0)" all_exact "$T/norange"
if ! grep -q '^GET [^ ]* 206 ' "$FAULT_LOG" && ! grep -q 'resumed' "$T/norange.journal"; then
	pass "no ranges: no 206, no book counted as resumed"
else
	fail "no ranges" "$(grep -c ' 206 ' "$FAULT_LOG") 206s"
fi

# A server that caps its ranges: the 206 after a cut stops half-way to the end, its
# Content-Range saying so. The rest is asked for again, not a cut book taken for whole.
stop_pid "$FAULT_PID"
printf '%s\n' 'TEST0001 reset 1 at=400000' 'TEST0001 shortrange 1' >"$T/capped-rules"
start_faultserver "$T/src" --rules "$T/capped-rules" --no-name-faults
expect_exit 0 "capped range: exit 0" run_quire capped
check "capped range: every book byte-exact" all_exact "$T/capped"
check "capped range: the rest after the capped 206 asked for with a range" \
	test "$(grep -c '^GET /TEST0001.tar.gz.gpg 206 ' "$FAULT_LOG")" -eq 2
check "capped range: said where it ended" \
	grep -q "TEST0001: attempt 2 failed (source: HTTP 206 ended at byte [0-9]* of [0-9]*)" \
	"$T/capped.err"

# A server that serves another object's bytes to the resumed range, under the same ETag
# (it ignored If-Range): the MDC fails. The book is fetched once more from byte 0, not
# resumed, and delivered exact; only a book that fails from byte 0 too is called damaged.
stop_pid "$FAULT_PID"
printf '%s\n' 'TEST0001 reset 1 at=400000' 'TEST0001 splice 1 from=TEST0002.tar.gz.gpg' \
	>"$T/splice-rules"
start_faultserver "$T/src" --rules "$T/splice-rules" --no-name-faults
expect_exit 0 "spliced resume: exit 0" run_quire spliced
check "spliced resume: every book byte-exact" all_exact "$T/spliced"
check "spliced resume: fetched from byte 0 after the spliced 206 (GETs: 200, 206, 200)" \
	test "$(grep '^GET /TEST0001.tar.gz.gpg ' "$FAULT_LOG" | awk '{print $3}' | tr '\n' ' ')" = \
	"200 206 200 "
check "spliced resume: said why" \
	grep -q "TEST0001: attempt 2 failed (.* after a resume)" "$T/spliced.err"

# A source that ends every answer early, 2 MB in (a clean close short of Content-Length):
# three cuts of one 8 MB book with --retries 1. Each moved the book on by over 1 MiB, so
# none spends a retry and the book arrives exact; a source that fails without progress
# still runs out (the 503s of test_faults.sh and the backoff suite).
mkdir -p "$T/cuts-src"
BOOKS_S2K=65536 make_books "$T/cuts-src" 1 8M CUTS
echo "CUTS0001 short 3 at=2000000" >"$T/cuts-rules"
stop_pid "$FAULT_PID"
start_faultserver "$T/cuts-src" --rules "$T/cuts-rules" --no-name-faults
echo CUTS0001 >"$T/cuts.txt"
expect_exit 0 "three cuts, --retries 1: exit 0" "$QUIRE" run --dest "$T/cuts" \
	--passphrase-file "$PASSFILE" --journal "$T/cuts.journal" \
	--source "$FAULT_URL/{barcode}.tar.gz.gpg" --retries 1 "$T/cuts.txt" 2>"$T/cuts.err"
check "three cuts: the book exact" cmp -s "$T/plain/CUTS0001.tar.gz" "$T/cuts/CUTS0001.tar.gz"
check "three cuts: one GET and three ranged ones" \
	test "$(grep '^GET /CUTS0001.tar.gz.gpg ' "$FAULT_LOG" | awk '{print $3}' | tr '\n' ' ')" = \
	"200 206 206 206 "
check "three cuts: each said, none counted as a retry" \
	test "$(grep -c 'CUTS0001: attempt [0-9] failed .*(it moved the book on: not counted as a retry)' \
		"$T/cuts.err")" -eq 3

# The object changes between the cut and the retry: If-Range sends it whole, and the new
# book is what gets delivered, whole and exact.
mkdir -p "$T/chg" "$T/chg-src"
BOOKS_S2K=65536 make_books "$T/chg-src" 1 2M CHG
cp "$T/plain/CHG0001.tar.gz" "$T/chg-old.tar.gz"
mv "$T/chg-src/CHG0001.tar.gz.gpg" "$T/chg-old.gpg"
BOOKS_S2K=65536 make_books "$T/chg-src" 1 2M CHG # a new book under the same name
mv "$T/chg-src/CHG0001.tar.gz.gpg" "$T/chg-new.gpg"
cp "$T/chg-old.gpg" "$T/chg-src/CHG0001.tar.gz.gpg"
echo "CHG0001 stall 1 at=300000 secs=30 then=close" >"$T/chg-rules"
stop_pid "$FAULT_PID"
start_faultserver "$T/chg-src" --rules "$T/chg-rules" --no-name-faults
echo CHG0001 >"$T/chg.txt"
"$QUIRE" run --dest "$T/chg" --passphrase-file "$PASSFILE" --journal "$T/chg.journal" \
	--source "$FAULT_URL/{barcode}.tar.gz.gpg" --stall-timeout 2 "$T/chg.txt" 2>"$T/chg.err" &
qpid=$!
# Swap the object while the first attempt stalls (it is cut after 2 s of silence).
if wait_for_line "$FAULT_LOG" "CHG0001.tar.gz.gpg 200 stall" 20; then
	cp "$T/chg-new.gpg" "$T/chg-src/CHG0001.tar.gz.gpg.tmp" &&
		mv "$T/chg-src/CHG0001.tar.gz.gpg.tmp" "$T/chg-src/CHG0001.tar.gz.gpg"
fi
wait "$qpid"
rc=$?
if [ "$rc" -eq 0 ] && cmp -s "$T/plain/CHG0001.tar.gz" "$T/chg/CHG0001.tar.gz" &&
	! cmp -s "$T/chg-old.tar.gz" "$T/chg/CHG0001.tar.gz" &&
	[ "$(grep -c '^GET /CHG0001.tar.gz.gpg 200 ' "$FAULT_LOG")" -eq 2 ]; then
	pass "changed object: If-Range answered with the whole new object; the new book delivered exact"
else
	fail "changed object" "rc=$rc; $(cat "$FAULT_LOG"); $(cat "$T/chg.err")"
fi
