# quire report on the journal a real run wrote (books delivered and missing ones), with
# lines of every other outcome appended (skipped, requested, in-process, conversion-failed,
# duplicate, one nobody knows yet), extra columns, durations, a malformed and a torn line;
# its errors; and 1,000,000 lines in memory that does not grow with them.

make_books "$T/src" 6 20K
printf '%s\n' MISS0001 MISS0002 >>"$T/src/barcodes.txt"
J=$T/quire.journal
"$QUIRE" run --source "$T/src/{barcode}.tar.gz.gpg" --dest "$T/out" --journal "$J" \
	--passphrase-file "$PASSFILE" --threads 1 "$T/src/barcodes.txt" 2>"$T/run.err"
rc=$?
[ "$rc" -eq 1 ] && [ "$(grep -c $'\tok\t' "$J")" -eq 6 ] && pass "run: 6 ok, 2 missing" ||
	fail "run: 6 ok, 2 missing" "rc=$rc; $(tail -2 "$T/run.err")"
want_bytes=$(awk -F'\t' '$3 == "ok" { s += $4 } END { print s }' "$J")

# After the run's own lines: an hour on, so the span is known.
now=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M)
{
	printf '%s:00Z\tSKIP0001\tskipped\t0\t-\tunchanged at the source (ETag 9f86d081884c7d65)\n' $now
	printf '%s:01Z\tREQ0001\trequested\t0\t-\t-\n' $now
	printf '%s:02Z\tPROC0001\tin-process\t0\t-\t-\n' $now
	printf '%s:03Z\tCONV0001\tconversion-failed\t0\t-\tGRIN could not convert it\n' $now
	printf '%s:04Z\tCONV0002\tconversion-failed\t0\t-\tGRIN could not convert it\n' $now
	printf '%s:05Z\tDUP0001\tduplicate\t0\t-\t-\n' $now
	printf '%s:06Z\tNEW0001\tfrom-the-future\t0\t-\t-\tand\tmore\tcolumns\n' $now
	printf '%s:07Z\tSLOW0001\tok\t100\t-\t-\t321.5\n' $now
	printf '%s:08Z\tSLOW0002\tfailed\t0\t-\tsource: HTTP 503 (after 5 retries)\t42\n' $now
	printf '%s:09Z\tSLOW0003\tfailed\t0\t-\tsource: HTTP 503 (after 2 retries)\t7.25\n' $now
	printf 'not a journal line\n'
	printf '%s:10Z\tTORN0001\tok\t1' $now
} >>"$J"

"$QUIRE" report "$J" >"$T/report.txt" 2>"$T/report.err"
check "report: exit 0" test $? -eq 0
"$QUIRE" report --format json "$J" >"$T/report.json" 2>>"$T/report.err"
check "report --format json: exit 0" test $? -eq 0
[ ! -s "$T/report.err" ] && pass "report: nothing on stderr" || fail "report: nothing on stderr" "$(head -2 "$T/report.err")"

# The JSON, checked against what awk counts in the same journal.
jq_is() { # NAME FILTER WANT
	local got
	got=$(jq -c "$2" "$T/report.json" 2>&1)
	if [ "$got" = "$3" ]; then pass "$1"; else fail "$1" "$2 = $got, wanted $3"; fi
}
jq_is "json: ok, incl. the timed one" .outcomes.ok 7
jq_is "json: failed, 2 missing + 2 timed" .outcomes.failed 4
jq_is "json: every other outcome" \
	'[.outcomes.skipped, .outcomes.requested, .outcomes["in-process"], .outcomes["conversion-failed"], .outcomes.duplicate, .outcomes["from-the-future"]]' \
	'[1,1,1,2,1,1]'
jq_is "json: malformed and torn lines" '[.malformed, .torn_last_line]' '[1,true]'
jq_is "json: bytes delivered" .bytes.delivered $((want_bytes + 100))
jq_is "json: 404s grouped, two examples" \
	'[.by_reason[] | select(.reason == "not available from the source (no such file)") | .count, .examples]' \
	'[2,["MISS0001","MISS0002"]]'
jq_is "json: retries variants grouped" \
	'[.by_reason[] | select(.reason == "source: HTTP 503") | .count]' '[2]'
jq_is "json: conversion-failed is its own failure" \
	'[.by_reason[] | select(.outcome == "conversion-failed") | .count]' '[2]'
jq_is "json: slowest from the 7th column" '[.slowest[:3][].barcode]' '["SLOW0001","SLOW0002","SLOW0003"]'
# The run's own lines carry their durations too: its 8 books fill the rest of the top 10.
jq_is "json: the run's own books timed in its journal" \
	'[.slowest[3:][].barcode | test("^(TEST|MISS)")] | [length, all]' '[7,true]'
jq_is "json: the time span ends at the last line" '.time.last' "\"$now:09Z\""
jq_is "json: the hour's pause left out" '.time.pauses' 1

for want in " ok 7" " failed 4" " skipped 1" " requested 1" " in-process 1" " conversion-failed 2" \
	" duplicate 1" " from-the-future 1" "not available from the source (no such file)  e.g. MISS0001, MISS0002" \
	"conversion-failed: GRIN could not convert it  e.g. CONV0001, CONV0002" \
	"(a torn last line ignored)" "321.5 s  SLOW0001  ok"; do
	grep -qF -- "$want" "$T/report.txt" && pass "text: $want" || fail "text: $want" "$(cat "$T/report.txt")"
done
# Plain text for a pipe: no control characters but newlines.
if LC_ALL=C grep -q '[[:cntrl:]]' "$T/report.txt"; then fail "text: no control characters" "found"; else
	pass "text: no control characters"
fi
# From stdin, the same report.
"$QUIRE" report --format json - <"$J" | jq -c 'del(.journal)' >"$T/stdin.json"
jq -c 'del(.journal)' "$T/report.json" | cmp -s - "$T/stdin.json" && pass "report - reads stdin" ||
	fail "report - reads stdin" "differs"

# Errors: one line naming what was wrong.
expect_exit 1 "report: missing journal exits 1" "$QUIRE" report "$T/none.journal" 2>"$T/e1"
grep -q "none.journal: No such file" "$T/e1" && [ "$(wc -l <"$T/e1")" -eq 1 ] &&
	pass "report: missing journal named" || fail "report: missing journal named" "$(cat "$T/e1")"
expect_exit 1 "report: a directory exits 1" "$QUIRE" report "$T" 2>"$T/e2"
expect_exit 2 "report: no journal is a usage error" "$QUIRE" report 2>"$T/e3"
grep -q 'missing JOURNAL' "$T/e3" && pass "report: says what is missing" || fail "report: says what is missing" "$(cat "$T/e3")"
expect_exit 2 "report: bad --format" "$QUIRE" report --format xml "$J" 2>"$T/e4"
grep -q -- "--format: expected one of text json, got 'xml'" "$T/e4" && pass "report: bad --format named" ||
	fail "report: bad --format named" "$(cat "$T/e4")"

# A million lines: the same counts as awk's, in memory that does not grow with the journal.
awk -v n=1000000 'BEGIN {
	split("ok ok ok ok ok ok ok skipped failed failed", kind, " ")
	for (i = 0; i < n; i++) {
		k = kind[i % 10 + 1]
		t = 1795000000 + int(i / 20)
		d = k == "failed" ? (i % 3 ? "source: HTTP 503 (after " i % 6 " retries)" : "not available from the source (HTTP 404)") : "-"
		printf "%s\t%014d\t%s\t%d\t-\t%s\t%.3f\n", strftime("%Y-%m-%dT%H:%M:%SZ", t, 1), i, k, k == "ok" ? 1000 + i % 977 : 0, d, (i * 7919) % 100000 / 1000
	}
}' >"$T/big.journal"
head -1000 "$T/big.journal" >"$T/small.journal"
/usr/bin/time -f '%M %e' -o "$T/small.time" "$QUIRE" report --format json "$T/small.journal" >/dev/null
/usr/bin/time -f '%M %e' -o "$T/big.time" "$QUIRE" report --format json "$T/big.journal" >"$T/big.json"
check "1M lines: exit 0" test $? -eq 0
want=$(awk -F'\t' '{ c[$3]++; if ($3 == "ok") b += $4 } END { printf "[%d,%d,%d,%d]", c["ok"], c["failed"], c["skipped"], b }' "$T/big.journal")
got=$(jq -c '[.outcomes.ok, .outcomes.failed, .outcomes.skipped, .bytes.delivered]' "$T/big.json")
[ "$got" = "$want" ] && pass "1M lines: counts and bytes match awk" || fail "1M lines: counts and bytes match awk" "$got vs $want"
jq_big() { jq -c "$1" "$T/big.json"; }
[ "$(jq_big '[.by_reason[].reason]')" = '["source: HTTP 503","not available from the source (HTTP 404)"]' ] &&
	pass "1M lines: two reasons" || fail "1M lines: two reasons" "$(jq_big '[.by_reason[] | [.reason, .count]]')"
[ "$(jq_big '.slowest | length')" = 10 ] && [ "$(jq_big '.slowest[0].seconds')" = 99.999 ] &&
	pass "1M lines: top 10 slowest" || fail "1M lines: top 10 slowest" "$(jq_big '.slowest[0:2]')"
read -r small_kb small_s <"$T/small.time"
read -r big_kb big_s <"$T/big.time"
echo "  note: 1,000,000 lines ($(($(stat -c %s "$T/big.journal") / 1000000)) MB): ${big_s} s, max RSS ${big_kb} KiB; 1,000 lines: ${small_kb} KiB ($(basename "$QUIRE"))"
# Bounded: a thousand times the lines may not cost more than a few MiB more.
[ $((big_kb - small_kb)) -lt 8192 ] && pass "1M lines: RSS within 8 MiB of a 1,000-line report" ||
	fail "1M lines: RSS within 8 MiB of a 1,000-line report" "$small_kb KiB -> $big_kb KiB"
