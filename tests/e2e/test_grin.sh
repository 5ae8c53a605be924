# GRIN without the engine, against tests/e2e/grin_emulator.py: every list kind against the
# emulator's own truth (many pages, prefixed file names, a page saying "Your request is
# unavailable"), jsonl, unconverted, conversion requests (batching, at most 2 in flight,
# the queue's room, a 429), an expired token refreshed through tokenserver.py, login pages.

# start_grin NAME [grin_emulator.py options]: GRIN_URL, GRIN_LOG, GRIN_PID
start_grin() {
	local d=$T/grin-$1
	shift
	mkdir -p "$d"
	_start_bg grin_emulator "$d/ready" "$d/stderr" python3 "$ROOT/tests/e2e/grin_emulator.py" \
		--ready-file "$d/ready" --log "$d/requests.log" --library TEST "$@" || return 1
	read -r port GRIN_PID <"$d/ready"
	GRIN_URL=http://127.0.0.1:$port
	GRIN_LOG=$d/requests.log
}

# The library: 64 books. G0001-G0015 converted (G0001-G0005 named NLI_G000N.tar.gz.gpg),
# G0016-G0025 in process, G0026-G0035 failed, G0036-G0060 never requested; TEST0001-0004
# have archives (TEST0002 as NLI_TEST0002.tar.gz.gpg): converted, converted, in process, new.
make_books "$T/arch" 4 4K
mv "$T/arch/TEST0002.tar.gz.gpg" "$T/arch/NLI_TEST0002.tar.gz.gpg"
{
	for i in $(seq 1 60); do
		b=$(printf 'G%04d' "$i")
		if [ "$i" -le 5 ]; then printf '%s\tconverted\tNLI_%s.tar.gz.gpg\n' "$b" "$b"
		elif [ "$i" -le 15 ]; then printf '%s\tconverted\n' "$b"
		elif [ "$i" -le 25 ]; then printf '%s\tin_process\n' "$b"
		elif [ "$i" -le 35 ]; then printf '%s\tfailed\t\tMissing page %d of 300\n' "$b" "$i"
		else printf '%s\tnew\n' "$b"; fi
	done
	printf 'TEST0001\tconverted\nTEST0002\tconverted\tNLI_TEST0002.tar.gz.gpg\n'
	printf 'TEST0003\tin_process\nTEST0004\tnew\n'
} >"$T/state"
# The barcodes a list gives: _converted has only file names, whose barcode is the name
# without .tar.gz.gpg (NLI_G0001); the others give the Barcode column.
truth() {
	awk -F'\t' -v s="$1" '$2 == s || s == "all" {
		b = $1; if (s == "converted" && $3) { b = $3; sub(/\.tar\.gz\.gpg$/, "", b) }; print b }' "$T/state" | sort
}
start_grin main --state "$T/state" --archives "$T/arch" --max-page 7
G=(--grin TEST --grin-url "$GRIN_URL")

# --- lists ---------------------------------------------------------------------------
for kind in all converted in-process failed; do
	"$QUIRE" grin list "$kind" "${G[@]}" >"$T/$kind.tsv" 2>"$T/$kind.err"
	rc=$?
	state=${kind/-/_}
	if [ $rc -eq 0 ] && diff <(tail -n +2 "$T/$kind.tsv" | cut -f1 | sort) <(truth "$state") >"$T/$kind.diff"; then
		pass "grin list $kind: exactly the emulator's $(truth "$state" | wc -l) books"
	else
		fail "grin list $kind" "rc=$rc $(head -c 300 "$T/$kind.diff") $(head -3 "$T/$kind.err")"
	fi
done
pages=$(grep -c '^GET /TEST/_all_books' "$GRIN_LOG")
[ "$pages" -eq 10 ] && [ "$(tail -n +2 "$T/all.tsv" | cut -f1 | sort | uniq -d | wc -l)" -eq 0 ] &&
	pass "all: 64 books over $pages pages (7 a page, relative ctoken links), none twice" ||
	fail "all: pages" "$pages pages"
grep -q '^GET /TEST/_converted?result_count=7&first=14 200' "$GRIN_LOG" &&
	pass "converted: absolute first=N Next links followed" ||
	fail "converted: absolute Next links" "$(grep _converted "$GRIN_LOG" | head -3)"
head -1 "$T/all.tsv" >"$T/all.head"
printf 'barcode\tBarcode\tTitle\tScanned Date\tConverted Date\tDownloaded Date\tProcessed Date\tAnalyzed Date\tOCR'"'"'d Date\tGoogle Books Link\tState\n' >"$T/all.want"
same_file "all: TSV header is barcode then GRIN's columns as GRIN spells them (no checkbox column)" \
	"$T/all.head" "$T/all.want"
# Cells: entities decoded, UTF-8 kept, the link column gives its target
grep -q $'^G0007\tG0007\tÉtudes & <notes> of G0007 — vol. 5\t.*\thttps://books.google.com/books?vid=G0007\tCONVERTED$' "$T/all.tsv" &&
	pass "all: cell text decoded (&amp; &lt; UTF-8), link column as its URL" ||
	fail "all: cell text" "$(grep '^G0007' "$T/all.tsv")"
# Prefixed file names: barcode = file name without .tar.gz.gpg, file name as GRIN gave it
want=$(awk -F'\t' '$2 == "converted" { f = $3 ? $3 : $1 ".tar.gz.gpg"; b = f; sub(/\.tar\.gz\.gpg$/, "", b); print b "\t" f }' "$T/state" | sort)
got=$(tail -n +2 "$T/converted.tsv" | cut -f1,2 | sort)
[ "$got" = "$want" ] && grep -q $'^NLI_G0003\tNLI_G0003.tar.gz.gpg\t' "$T/converted.tsv" &&
	pass "converted: prefixed file names kept (NLI_G0003.tar.gz.gpg), barcode is the name without the suffix" ||
	fail "converted: file names" "$(diff <(echo "$got") <(echo "$want") | head -5)"
grep -q $'^G0030\tG0030\t.*\tMissing page 30 of 300\tDetailed: Missing page 30 of 300 (code 17)$' "$T/failed.tsv" &&
	pass "failed: GRIN's reasons in their columns" || fail "failed: reasons" "$(grep G0030 "$T/failed.tsv")"

# jsonl, parsed by Python's json
"$QUIRE" grin list all "${G[@]}" --format jsonl >"$T/all.jsonl" 2>"$T/all-jsonl.err"
if python3 - "$T/all.jsonl" "$T/all.tsv" <<'EOF'; then
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
tsv = [l.rstrip("\n").split("\t") for l in open(sys.argv[2], encoding="utf-8")]
head, body = tsv[0], tsv[1:]
assert len(rows) == len(body) == 64, (len(rows), len(body))
for r, t in zip(rows, body):
    assert list(r.keys()) == head, (list(r.keys()), head)
    assert list(r.values()) == t, (r, t)
EOF
	pass "jsonl: 64 objects, json-parsed, same keys and values as the TSV"
else
	fail "jsonl" "$(head -2 "$T/all.jsonl")"
fi

# unconverted = all - converted - in process - failed (a prefixed converted book included)
"$QUIRE" grin list unconverted "${G[@]}" >"$T/unconv.tsv" 2>"$T/unconv.err"
rc=$?
[ $rc -eq 0 ] && diff <(tail -n +2 "$T/unconv.tsv" | cut -f1 | sort) <(truth new) >/dev/null &&
	head -1 "$T/unconv.tsv" | cmp -s - "$T/all.want" &&
	pass "unconverted: exactly the $(truth new | wc -l) never-requested books, _all_books' columns" ||
	fail "unconverted" "rc=$rc $(tail -n +2 "$T/unconv.tsv" | cut -f1 | tr '\n' ' ') $(cat "$T/unconv.err")"

# --- archives: served only once converted, ETag and Content-Length --------------------
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
size=$(stat -c %s "$T/arch/NLI_TEST0002.tar.gz.gpg")
head_out=$(curl -sI "$GRIN_URL/TEST/NLI_TEST0002.tar.gz.gpg" | tr -d '\r')
if [ "$(code "$GRIN_URL/TEST/TEST0003.tar.gz.gpg")" = 404 ] &&
	grep -qi "^content-length: $size$" <<<"$head_out" && grep -qi '^etag: "' <<<"$head_out" &&
	curl -s "$GRIN_URL/TEST/NLI_TEST0002.tar.gz.gpg" | cmp -s - "$T/arch/NLI_TEST0002.tar.gz.gpg"; then
	pass "archives: 404 while in process; HEAD gives ETag and Content-Length; GET the file"
else
	fail "archives" "$head_out"
fi

# --- conversion requests --------------------------------------------------------------
"$QUIRE" grin request "${G[@]}" G0001 NLI_G0001 G0016 G0026 TEST0004 'x/y' >"$T/req1.out" 2>"$T/req1.err"
rc=$?
printf '%s\n' $'G0001\talready converted\tBook is already available for download' \
	$'G0016\talready in process\tBook is already in process' \
	$'G0026\trefused\tConversion previously failed: Missing page 26 of 300' \
	$'NLI_G0001\trefused\tBarcode not found' $'TEST0004\trequested' >"$T/req1.want"
if [ $rc -eq 1 ] && sort "$T/req1.out" | cmp -s - "$T/req1.want" && grep -q "'x/y' is not a barcode" "$T/req1.err"; then
	pass "request: one line per barcode (requested, already converted/in process, refused with GRIN's text); bad barcode named; exit 1"
else
	fail "request outcomes" "rc=$rc $(cat "$T/req1.out" "$T/req1.err")"
fi
curl -s -X POST "$GRIN_URL/_emu/convert?barcodes=TEST0004,TEST0003" >/dev/null
[ "$(code "$GRIN_URL/TEST/TEST0004.tar.gz.gpg")" = 200 ] &&
	"$QUIRE" grin list converted "${G[@]}" 2>/dev/null | grep -q $'^TEST0004\tTEST0004.tar.gz.gpg' &&
	pass "a requested book the emulator converted is listed and served" ||
	fail "conversion on command" "$(code "$GRIN_URL/TEST/TEST0004.tar.gz.gpg")"

# Batches of 3 from stdin, a slow _process so that requests overlap: at most 2 in flight.
start_grin slow --state "$T/state" --process-delay 0.3
truth new | grep '^G' >"$T/new.txt" # 25 barcodes
"$QUIRE" grin request --grin TEST --grin-url "$GRIN_URL" --request-batch 3 - <"$T/new.txt" >"$T/req2.out" 2>"$T/req2.err"
rc=$?
calls=$(grep -c '^GET /TEST/_process' "$GRIN_LOG")
maxin=$(grep '^GET /TEST/_process' "$GRIN_LOG" | sed 's/.*inflight=\([0-9]*\).*/\1/' | sort -n | tail -1)
sent=$(grep '^GET /TEST/_process' "$GRIN_LOG" | sed 's/.*barcodes=\([^ ]*\) .*/\1/' | tr ',' '\n' | sort)
biggest=$(grep '^GET /TEST/_process' "$GRIN_LOG" | sed 's/.*barcodes=\([^ ]*\) .*/\1/' | awk -F, '{ print NF }' | sort -n | tail -1)
if [ $rc -eq 0 ] && [ "$calls" -eq 9 ] && [ "$biggest" -eq 3 ] && [ "$maxin" -le 2 ] &&
	[ "$sent" = "$(sort "$T/new.txt")" ] && [ "$(grep -c $'\trequested$' "$T/req2.out")" -eq 25 ]; then
	pass "request --request-batch 3: 25 barcodes in 9 requests of at most 3, at most $maxin in flight (limit 2), each sent once"
else
	fail "request batching" "rc=$rc calls=$calls biggest=$biggest maxin=$maxin $(head -3 "$T/req2.err")"
fi

# A 429 mid-run: the queue takes 5 more books (10 in process + 1); the rest is not requested, no failure.
start_grin full --state "$T/state" --queue-capacity 16 --process-delay 0.05
"$QUIRE" grin request --grin TEST --grin-url "$GRIN_URL" - <"$T/new.txt" >"$T/req3.out" 2>"$T/req3.err"
rc=$?
n429=$(grep -c '^GET /TEST/_process.* 429 ' "$GRIN_LOG")
after=$(awk '/^GET \/TEST\/_process.* 429 / { seen = 1; next } seen && /_process/ { n++ } END { print n + 0 }' "$GRIN_LOG")
req=$(grep -c $'\trequested$' "$T/req3.out")
notreq=$(grep -c $'\tnot requested\tGRIN.s conversion queue is full (HTTP 429)$' "$T/req3.out")
if [ $rc -eq 0 ] && [ "$req" -eq 5 ] && [ "$notreq" -eq 20 ] && [ "$n429" -ge 1 ] && [ "$after" -le 1 ]; then
	pass "429: 5 requested, 20 not requested (queue full), exit 0; no request after the 429 but the one in flight"
else
	fail "429 mid-run" "rc=$rc requested=$req not=$notreq 429s=$n429 after=$after"
fi

# The room left: --queue-max 13 with 11 in process leaves room for 2.
start_grin room --state "$T/state"
"$QUIRE" grin request --grin TEST --grin-url "$GRIN_URL" --queue-max 13 - <"$T/new.txt" >"$T/req4.out" 2>"$T/req4.err"
rc=$?
[ $rc -eq 0 ] && [ "$(grep -c '^GET /TEST/_process' "$GRIN_LOG")" -eq 2 ] &&
	[ "$(grep -c $'\tnot requested\tno room left' "$T/req4.out")" -eq 23 ] &&
	pass "room: 11 in process, queue of 13: 2 requested, 23 not requested, 2 requests sent" ||
	fail "queue room" "rc=$rc $(grep -c _process "$GRIN_LOG") requests"

# --- credentials -----------------------------------------------------------------------
d=$T/tokensrv
mkdir -p "$d"
_start_bg tokenserver "$d/ready" "$d/stderr" python3 "$ROOT/tests/e2e/tokenserver.py" \
	--ready-file "$d/ready" --log "$d/requests.log" --client-id quire-test \
	--client-secret csecret-g --refresh-token rtoken-g --publish "$T/tokens"
read -r tport _ <"$d/ready"
(umask 077 && printf '{"client_id": "quire-test", "client_secret": "csecret-g", "refresh_token": "rtoken-g", "token_uri": "http://127.0.0.1:%s/token"}\n' "$tport" >"$T/oauth.json")
: >"$T/tokens"
# Each token is good for 6 requests: the 7th of the 10 pages meets a 302 to ServiceLogin.
start_grin auth --state "$T/state" --max-page 7 --tokens "$T/tokens" --expire-after 6
"$QUIRE" grin list all --grin TEST --grin-url "$GRIN_URL" --oauth "$T/oauth.json" >"$T/auth.tsv" 2>"$T/auth.err"
rc=$?
issued=$(grep -c ' 200 tok-' "$d/requests.log")
if [ $rc -eq 0 ] && [ "$issued" -eq 2 ] && cmp -s "$T/auth.tsv" "$T/all.tsv" &&
	[ "$(grep -c ' 302 .*auth=expired' "$GRIN_LOG")" -eq 1 ]; then
	pass "expired token: one 302 to ServiceLogin, one refresh through the token server, the whole list once"
else
	fail "expired token refresh" "rc=$rc issued=$issued $(grep -c 302 "$GRIN_LOG") $(head -3 "$T/auth.err")"
fi
expect_exit 2 "no credentials: a 302 to ServiceLogin is a login error (exit 2)" \
	"$QUIRE" grin list converted --grin TEST --grin-url "$GRIN_URL" 2>"$T/nocred.err" >"$T/nocred.out"
grep -q "GRIN wants a login (a redirect to ServiceLogin)" "$T/nocred.err" && [ "$(wc -l <"$T/nocred.err")" -eq 1 ] &&
	pass "no credentials: one line saying GRIN wants a login" || fail "login message" "$(cat "$T/nocred.err")"
if grep -q -e 'tok-[0-9]' -e csecret -e rtoken "$T"/*.err "$T"/*.tsv; then
	fail "secrets" "a token or client secret in an output"
else
	pass "no token or client secret in any output"
fi

# An HTML login page (200) where a list was expected; HTML where a text list was expected
start_grin login --state "$T/state" --login-page
"$QUIRE" grin list converted --grin TEST --grin-url "$GRIN_URL" >"$T/login.out" 2>"$T/login.err"
rc=$?
[ $rc -eq 2 ] && [ ! -s "$T/login.out" ] &&
	grep -q 'an HTML page without a list (a login or permission page?): "Sign in - Google Accounts"' "$T/login.err" &&
	pass "HTML login page instead of a list: exit 2, no rows, one clear line" ||
	fail "login page" "rc=$rc $(cat "$T/login.err")"
"$QUIRE" grin list in-process --grin TEST --grin-url "$GRIN_URL" >"$T/login2.out" 2>"$T/login2.err"
rc=$?
[ $rc -eq 2 ] && [ ! -s "$T/login2.out" ] && grep -q 'HTML page where a text list was expected' "$T/login2.err" &&
	pass "HTML login page instead of a text list: exit 2, no rows" || fail "login page (text)" "rc=$rc $(cat "$T/login2.err")"

# "Your request is unavailable" on page 3 ends the list there (two pages of 7 given).
start_grin unavail --state "$T/state" --max-page 7 --unavailable all_books:3
"$QUIRE" grin list all --grin TEST --grin-url "$GRIN_URL" >"$T/unav.tsv" 2>"$T/unav.err"
rc=$?
[ $rc -eq 0 ] && [ "$(tail -n +2 "$T/unav.tsv" | wc -l)" -eq 14 ] &&
	grep -q 'Your request is unavailable"; the list ends at page 3' "$T/unav.err" &&
	pass "\"Your request is unavailable\" on page 3: the list ends there (14 rows), said on stderr" ||
	fail "unavailable page" "rc=$rc $(tail -n +2 "$T/unav.tsv" | wc -l) rows $(cat "$T/unav.err")"

# A page that breaks half-way and one that answers 503 twice: retried, no row twice or lost.
start_grin faults --state "$T/state" --max-page 7 --break-page all_books:3 --fail all_books:6:2
"$QUIRE" grin list all --grin TEST --grin-url "$GRIN_URL" >"$T/faults.tsv" 2>"$T/faults.err"
rc=$?
if [ $rc -eq 0 ] && cmp -s "$T/faults.tsv" "$T/all.tsv" &&
	[ "$(grep -c '_all_books.* 503 ' "$GRIN_LOG")" -eq 2 ]; then
	pass "a page cut half-way and a page answering 503 twice: retried, every row exactly once"
else
	fail "list retries" "rc=$rc $(diff "$T/faults.tsv" "$T/all.tsv" | head -3) $(head -3 "$T/faults.err")"
fi

# A redirect to another origin: followed without the token (the other server never sees it).
start_grin other --state "$T/state" --tokens "$T/tokens"
other_url=$GRIN_URL other_log=$GRIN_LOG
start_grin redir --state "$T/state" --tokens "$T/tokens" --redirect-to "$other_url"
"$QUIRE" grin list failed --grin TEST --grin-url "$GRIN_URL" --oauth "$T/oauth.json" >/dev/null 2>"$T/redir.err"
rc=$?
if [ $rc -eq 2 ] && grep -q ' 302 .*auth=ok' "$GRIN_LOG" && grep -q 'auth=missing' "$other_log" &&
	! grep -q 'auth=ok\|auth=bad\|auth=expired' "$other_log" && grep -q 'GRIN wants a login' "$T/redir.err"; then
	pass "redirect to another origin: followed without the bearer token, which never reached it"
else
	fail "cross-origin redirect" "rc=$rc $(cat "$other_log") $(cat "$T/redir.err")"
fi

# --format feed: the lines a run's feeder reads (the file name GRIN gave, else BARCODE.tar.gz.gpg)
start_grin feed --state "$T/state" --max-page 7
"$QUIRE" grin list converted --grin TEST --grin-url "$GRIN_URL" --format feed >"$T/feed.txt" 2>"$T/feed.err"
rc=$?
"$QUIRE" grin list unconverted --grin TEST --grin-url "$GRIN_URL" --format feed >"$T/feed2.txt" 2>>"$T/feed.err"
rc2=$?
want=$(awk -F'\t' '$2 == "converted" { f = $3 ? $3 : $1 ".tar.gz.gpg"; b = f; sub(/\.tar\.gz\.gpg$/, "", b); print b "\t" f }' "$T/state" | sort)
want2=$(awk -F'\t' '$2 == "new" { print $1 "\t" $1 ".tar.gz.gpg" }' "$T/state" | sort)
[ $rc -eq 0 ] && [ $rc2 -eq 0 ] && [ "$(sort "$T/feed.txt")" = "$want" ] && [ "$(sort "$T/feed2.txt")" = "$want2" ] &&
	pass "--format feed: BARCODE<TAB>FILE lines for converted and unconverted, no header" ||
	fail "feed format" "rc=$rc/$rc2 $(head -3 "$T/feed.txt") $(cat "$T/feed.err")"

# Usage errors
expect_exit 2 "grin list without --grin: usage error" "$QUIRE" grin list all 2>/dev/null
expect_exit 2 "grin list of an unknown kind: usage error" "$QUIRE" grin list nope --grin TEST 2>/dev/null
