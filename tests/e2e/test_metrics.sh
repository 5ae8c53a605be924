# --metrics-file: a run against the fault server with retries of every kind it can cause
# (503s, a 429, a reset, a short body, a stall), a 404, a duplicate and an invalid line;
# the file parsed by Prometheus's own parser (Debian's python3-prometheus-client) and its
# figures checked against the journal, the fault server's request log and the book files;
# a reader that keeps reading it during the run never sees it half-written. Then a run
# stopped by SIGINT ends with quire_draining 1, and a path that cannot be written is a
# configuration error. The journal's 7th column (durations) is read back by quire report.

PY=/usr/bin/python3 # Debian's, where apt put prometheus_client (not a pyenv's python3)
if ! "$PY" -c 'import prometheus_client.parser' 2>/dev/null; then
	fail "metrics: python3-prometheus-client" "missing (tools/deps.sh installs it)"
	return 0
fi

BOOKS_S2K=default make_books "$T/src" 12 48K # gpg's own S2K count: the S2K time is real
{
	head -7 "$T/src/barcodes.txt"
	echo TEST0007 # listed again while the first copy is in flight: a duplicate
	echo 'not a barcode'
	tail -5 "$T/src/barcodes.txt"
} >"$T/list"
# at=0: a cut answer carries no body byte, so the bytes fetched are exactly the files'.
cat >"$T/rules" <<'EOF'
TEST0001 503 2
TEST0002 503 1 retry_after=1
TEST0003 reset 1 at=0
TEST0004 404 always
TEST0005 429 1 retry_after=1
TEST0006 stall 1 at=0 secs=30
TEST0008 short 1 at=0
EOF
start_faultserver "$T/src" --rules "$T/rules" || return 0
mkdir -p "$T/m"
M=$T/m/quire.prom
J=$T/run.journal

# The reader: reads and parses the file as fast as it can until told to stop; any read
# that is not a whole exposition, and any other *.prom file (a temporary one the textfile
# collector would scrape), counts as bad.
cat >"$T/reader.py" <<'EOF'
import os, sys, time
from prometheus_client.parser import text_string_to_metric_families
path, stop, out = sys.argv[1:4]
reads = bad = versions = 0
last, why = None, []
while True:
    stopping = os.path.exists(stop)
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = None
    if text is not None:
        reads += 1
        try:
            ok = text.endswith("\n") and any(
                f.name == "quire_build_info" for f in text_string_to_metric_families(text))
        except Exception as e:
            ok, text = False, "%s: %r" % (e, text[-80:])
        if not ok:
            bad += 1
            why.append("partial read: %r" % text[-80:])
        elif text != last:
            versions += 1
            last = text
    for n in os.listdir(os.path.dirname(path)):
        if n.endswith(".prom") and n != os.path.basename(path):
            bad += 1
            why.append("stray file " + n)
    if stopping:
        break
    time.sleep(0.005)
with open(out, "w") as f:
    f.write("%d %d %d\n" % (reads, bad, versions))
    f.write("\n".join(why[:5]) + "\n")
EOF
"$PY" "$T/reader.py" "$M" "$T/reader.stop" "$T/reader.out" &
READER=$!
on_exit "kill $READER 2>/dev/null"

t0=$(date +%s)
"$QUIRE" run --dest "$T/out" --passphrase-file "$PASSFILE" --journal "$J" \
	--source "$FAULT_URL/{barcode}.tar.gz.gpg" --stall-timeout 1 --retries 5 \
	--metrics-file "$M" --metrics-interval 1 "$T/list" 2>"$T/run.err"
rc=$?
t1=$(date +%s)
touch "$T/reader.stop"
wait "$READER"
[ "$rc" -eq 1 ] && pass "metrics run: exit 1 (one book missing at the source, one invalid line)" ||
	fail "metrics run: exit 1" "rc=$rc; $(grep -v "attempt\|failed:" "$T/run.err" | tail -5)"

read -r reads bad versions <"$T/reader.out"
echo "  note: the reader read the file $reads times during the run ($versions versions)"
if [ "$bad" -eq 0 ] && [ "$reads" -gt 0 ] && [ "$versions" -ge 2 ]; then
	pass "metrics: $reads reads during the run, $versions versions, none half-written, no stray *.prom"
else
	fail "metrics: reads during the run" "$reads reads, $bad bad, $versions versions: $(tail -n +2 "$T/reader.out")"
fi

# The file as Prometheus reads it: "family NAME TYPE HELP" and "sample NAME LABELS VALUE".
"$PY" - "$M" >"$T/parsed" 2>"$T/parse.err" <<'EOF'
import sys
from prometheus_client.parser import text_string_to_metric_families
for f in text_string_to_metric_families(open(sys.argv[1]).read()):
    print("family", f.name, f.type, f.documentation.replace(" ", "_") or "-")
    for s in f.samples:
        labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items())) or "-"
        v = s.value
        print("sample", s.name, labels, int(v) if v == int(v) else v)
EOF
check "metrics: the final file parses" test $? -eq 0 -a -s "$T/parsed"

# metric NAME [LABELS]: the sample's value, or "absent"
metric() { awk -v n="$1" -v l="${2:--}" '$1 == "sample" && $2 == n && $3 == l { print $4; f = 1 } END { if (!f) print "absent" }' "$T/parsed"; }
is() { # WHAT GOT WANT
	if [ "$2" = "$3" ]; then pass "metrics: $1 = $3"; else fail "metrics: $1" "got $2, wanted $3"; fi
}

# Every family documented and typed, named quire_..., units in the counters' names.
fams=$(awk '$1 == "family"' "$T/parsed")
if [ -n "$fams" ] && ! echo "$fams" | awk '$3 == "unknown" || $4 == "-" || $2 !~ /^quire_/' | grep -q .; then
	pass "metrics: every family has # HELP and # TYPE, named quire_..."
else
	fail "metrics: HELP and TYPE" "$(echo "$fams" | awk '$3 == "unknown" || $4 == "-"')"
fi
typed=$(
	for name in quire_books quire_retries quire_fetched_bytes quire_delivered_bytes \
		quire_download_busy_seconds quire_upload_busy_seconds quire_s2k_seconds; do
		echo "$fams" | grep -q "^family $name counter " || echo "$name is no counter"
	done
	for name in quire_books quire_download_slots quire_upload_slots quire_books_listed \
		quire_start_time_seconds quire_draining quire_build_info; do
		echo "$fams" | grep -q "^family $name gauge " || echo "$name is no gauge"
	done
)
[ -z "$typed" ] && pass "metrics: the counters (_total, _bytes_total, _seconds_total) and gauges expected" ||
	fail "metrics: families" "$typed"

# Outcomes against the journal (the invalid line has none: quire names it on stderr).
jcount() { awk -F'\t' -v o="$1" '$3 == o' "$J" | wc -l; }
is "books ok (journal's ok lines)" "$(metric quire_books_total outcome=ok)" "$(jcount ok)"
is "books failed (journal's failed lines)" "$(metric quire_books_total outcome=failed)" "$(jcount failed)"
is "books duplicate (journal's duplicate lines)" "$(metric quire_books_total outcome=duplicate)" "$(jcount duplicate)"
is "books skipped" "$(metric quire_books_total outcome=skipped)" "$(jcount skipped)"
is "invalid lines (named on stderr)" "$(metric quire_books_total outcome=invalid)" \
	"$(grep -c 'invalid barcode' "$T/run.err")"
is "books ok" "$(metric quire_books_total outcome=ok)" 11
is "books listed (lines of the list)" "$(metric quire_books_listed)" "$(grep -c . "$T/list")"
total=$(awk '$1 == "sample" && $2 == "quire_books_total" { s += $4 } END { print s }' "$T/parsed")
is "books by outcome add up to the list" "$total" "$(grep -c . "$T/list")"

# Retries against the fault server's log: each faulty answer cost exactly one retry.
flog() { awk "$1" "$FAULT_LOG" | wc -l; }
is "retries 5xx (the 503s answered)" "$(metric quire_retries_total cause=5xx)" "$(flog '$3 == 503')"
is "retries 429" "$(metric quire_retries_total cause=429)" "$(flog '$3 == 429')"
is "retries reset" "$(metric quire_retries_total cause=reset)" "$(flog '$4 == "reset"')"
is "retries short" "$(metric quire_retries_total cause=short)" "$(flog '$4 == "short"')"
is "retries stall" "$(metric quire_retries_total cause=stall)" "$(flog '$4 == "stall"')"
is "503s answered" "$(flog '$3 == 503')" 3
retries=$(awk '$1 == "sample" && $2 == "quire_retries_total" { s += $4 } END { print s }' "$T/parsed")
is "retries in all (quire's 'attempt N failed' lines)" "$retries" "$(grep -c ': attempt [0-9]* failed' "$T/run.err")"
is "retries 401 (none caused)" "$(metric quire_retries_total cause=401)" 0

# Bytes: fetched = the encrypted files of the delivered books (each fetched whole once:
# the cut answers carried none); delivered = the journal's bytes = the plaintexts.
want_in=$(awk -F'\t' '$3 == "ok" { print $2 }' "$J" | sort -u | while read -r b; do stat -c %s "$T/src/$b.tar.gz.gpg"; done | awk '{ s += $1 } END { print s }')
is "fetched bytes (the delivered books' .gpg files)" "$(metric quire_fetched_bytes_total)" "$want_in"
want_out=$(awk -F'\t' '$3 == "ok" { s += $4 } END { print s }' "$J")
is "delivered bytes (the journal's)" "$(metric quire_delivered_bytes_total)" "$want_out"
plain=$(awk -F'\t' '$3 == "ok" { print $2 }' "$J" | while read -r b; do stat -c %s "$T/plain/$b.tar.gz"; done | awk '{ s += $1 } END { print s }')
is "delivered bytes (the plaintexts')" "$want_out" "$plain"

# Gauges at the end: nothing in any stage, the limits, the start time within the run.
for st in queued waiting downloading finishing uploading retrying; do
	is "books in stage $st at the end" "$(metric quire_books stage=$st)" 0
done
is "download slots" "$(metric quire_download_slots)" 5
is "upload slots" "$(metric quire_upload_slots)" 10
is "draining (no signal)" "$(metric quire_draining)" 0
start=$(metric quire_start_time_seconds)
if awk -v s="$start" -v a="$t0" -v b="$t1" 'BEGIN { exit !(s >= a && s <= b + 1) }'; then
	pass "metrics: start time $start within the run ($t0..$t1)"
else
	fail "metrics: start time" "$start not in $t0..$t1"
fi
# Busy and S2K seconds: positive (measured, so not compared with a figure), and busy
# time no more than the slots could give over the run.
dl=$(metric quire_download_busy_seconds_total)
s2k=$(metric quire_s2k_seconds_total)
if awk -v d="$dl" -v s="$s2k" -v u="$(metric quire_upload_busy_seconds_total)" -v w=$((t1 - t0 + 1)) \
	'BEGIN { exit !(d > 0 && d <= 5 * w && s > 0 && u > 0 && u <= 10 * w) }'; then
	pass "metrics: download busy ${dl} s, upload busy, S2K ${s2k} s: measured, within the run's bounds"
else
	fail "metrics: busy and S2K seconds" "download $dl, S2K $s2k, run $((t1 - t0)) s"
fi
grep -q "^sample quire_build_info version=" "$T/parsed" && pass "metrics: build info" ||
	fail "metrics: build info" "$(grep build_info "$T/parsed")"
mode=$(stat -c %a "$M")
is "file mode (the collector runs as another user)" "$mode" 644

# The journal's 7th column: every book that left the queue has its seconds, to the
# millisecond; the duplicate (never queued) has "-". quire report lists the slowest.
bad=$(awk -F'\t' '($3 == "duplicate" && $7 != "-") || ($3 != "duplicate" && $7 !~ /^[0-9]+\.[0-9][0-9][0-9]$/) || NF != 7' "$J")
[ -z "$bad" ] && pass "journal: 7 columns; seconds to the ms for each book, '-' for the duplicate" ||
	fail "journal: 7th column" "$bad"
"$QUIRE" report --format json "$J" >"$T/report.json" 2>"$T/report.err"
# The ten longest durations, and each listed book with the seconds its line says (ties
# in any order).
want=$(awk -F'\t' '$7 != "-" { print $7 + 0 }' "$J" | sort -gr | head -10 | paste -sd,)
got=$(jq -r '[.slowest[].seconds | tostring] | join(",")' "$T/report.json")
unmatched=$(jq -r '.slowest[] | "\(.barcode) \(.seconds)"' "$T/report.json" | while read -r b s; do
	awk -F'\t' -v b="$b" -v s="$s" '$2 == b && $7 + 0 == s + 0 { f = 1 } END { if (!f) print b }' "$J"
done)
if [ -n "$want" ] && [ "$got" = "$want" ] && [ -z "$unmatched" ]; then
	pass "report: the 10 slowest books of the run's own journal (the longest $(jq -r '.slowest[0] | "\(.barcode), \(.seconds)"' "$T/report.json") s)"
else
	fail "report: slowest from a real journal" "got $got, wanted $want; unmatched: $unmatched; $(head -2 "$T/report.err")"
fi

# SIGINT: the run drains, and its last file says so.
BOOKS_S2K=65536 make_books "$T/src/drn" 6 16K DRN
echo 'DRN* delay always secs=1' >"$T/rules"
"$QUIRE" run --dest "$T/drain" --passphrase-file "$PASSFILE" --journal "$T/drain.journal" \
	--source "$FAULT_URL/drn/{barcode}.tar.gz.gpg" --workers 1 --queue-size 1 --threads 1 \
	--metrics-file "$T/m/drain.prom" "$T/src/drn/barcodes.txt" 2>"$T/drain.err" &
QPID=$!
wait_for_line "$FAULT_LOG" '^GET /drn/DRN0001' 20
kill -INT "$QPID"
wait "$QPID"
rc=$?
"$PY" - "$T/m/drain.prom" >"$T/parsed" 2>"$T/parse.err" <<'EOF'
import sys
from prometheus_client.parser import text_string_to_metric_families
for f in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in f.samples:
        labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items())) or "-"
        print("sample", s.name, labels, int(s.value) if s.value == int(s.value) else s.value)
EOF
total=$(awk '$1 == "sample" && $2 == "quire_books_total" { s += $4 } END { print s }' "$T/parsed")
if [ "$rc" -eq 130 ] && [ "$(metric quire_draining)" = 1 ] && [ "$total" -lt 6 ] &&
	[ "$total" -eq "$(grep -c . "$T/drain.journal")" ]; then
	pass "metrics: SIGINT: the last file says draining 1, with the $total books the journal has"
else
	fail "metrics: draining" "rc=$rc draining=$(metric quire_draining) total=$total; $(tail -2 "$T/drain.err")"
fi

# A metrics path that cannot be written: exit 2 before any book, one line naming it.
requests=$(wc -l <"$FAULT_LOG")
expect_exit 2 "metrics: an unwritable --metrics-file is a configuration error" \
	"$QUIRE" run --dest "$T/none" --passphrase-file "$PASSFILE" --journal "$T/none.journal" \
	--source "$FAULT_URL/{barcode}.tar.gz.gpg" --metrics-file "$T/no/such/dir/q.prom" \
	"$T/src/barcodes.txt" 2>"$T/none.err"
if [ "$(wc -l <"$T/none.err")" -eq 1 ] && grep -q -- "--metrics-file $T/no/such/dir/q.prom: No such file or directory" "$T/none.err" &&
	[ "$(wc -l <"$FAULT_LOG")" -eq "$requests" ]; then
	pass "metrics: the unwritable path named in one line"
else
	fail "metrics: unwritable path message" "$(cat "$T/none.err")"
fi
expect_exit 2 "metrics: --metrics-interval 0 is a usage error" \
	"$QUIRE" run --dest "$T/none" --source "$FAULT_URL/{barcode}" --metrics-interval 0 - 2>/dev/null </dev/null
