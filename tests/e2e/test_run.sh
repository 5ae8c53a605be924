# quire run end to end: nginx (HTTP and HTTPS) serving gpg-made books, delivered into a
# directory, on both event backends; status cadence, journal, rerun skips, failures named.

make_books "$T/src" 12 64K-3M
printf 'TEST9999\n' >>"$T/src/missing.txt" # not at the source
start_nginx "$T/src"

# run_quire NAME DEST [quire run options...]: runs quire over the corpus, stderr to $T/NAME.err
run_quire() {
	local name=$1 dest=$2
	shift 2
	"$QUIRE" run --dest "$dest" --passphrase-file "$PASSFILE" --journal "$T/$name.journal" \
		"$@" 2>"$T/$name.err"
}

# delivered_ok NAME DIR: every book of the corpus in DIR byte-identical to its plaintext,
# nothing else there but the (empty) staging directory.
delivered_ok() {
	local name=$1 dir=$2 b bad=0
	while read -r b; do
		cmp -s "$T/plain/$b.tar.gz" "$dir/$b.tar.gz" || { bad=1; echo "    $b differs or is missing"; }
	done <"$T/src/barcodes.txt"
	[ "$(find "$dir" -mindepth 1 -not -path "$dir/.quire-staging" | wc -l)" -eq 12 ] || bad=1
	[ -z "$(ls -A "$dir/.quire-staging")" ] || { bad=1; echo "    staging not empty"; }
	if [ $bad -eq 0 ]; then pass "$name"; else fail "$name" "see above"; fi
}

for io in uring epoll; do
	out=$T/out-$io
	expect_exit 0 "$io: http run exits 0" \
		run_quire "http-$io" "$out" --io "$io" --status-every 5 \
		--source "$NGINX_HTTP/{barcode}.tar.gz.gpg" "$T/src/barcodes.txt"
	delivered_ok "$io: every book byte-identical to its plaintext" "$out"
	status=$(grep -cE '^(5|10)/12 \(' "$T/http-$io.err")
	if [ "$status" -eq 2 ] && [ "$(grep -cE '^[0-9]+/12 \(' "$T/http-$io.err")" -eq 2 ] && grep -q '^summary: 12/12 (100' "$T/http-$io.err"; then
		pass "$io: a status line after books 5 and 10, and a summary"
	else
		fail "$io: status cadence" "$status status lines; $(cat "$T/http-$io.err")"
	fi
	if grep -q "on $([ $io = uring ] && echo io_uring || echo epoll)" "$T/http-$io.err"; then
		pass "$io: the workers ran on the $io backend"
	else
		fail "$io: backend" "$(head -2 "$T/http-$io.err")"
	fi
	lines=$(grep -c $'\tok\t' "$T/http-$io.journal")
	sums_ok=1
	while IFS=$'\t' read -r _ b outcome bytes sha _; do
		[ "$outcome" = ok ] || continue
		[ "$sha" = "$(sha256sum <"$T/plain/$b.tar.gz" | cut -d' ' -f1)" ] || sums_ok=0
		[ "$bytes" = "$(stat -c %s "$T/plain/$b.tar.gz")" ] || sums_ok=0
	done <"$T/http-$io.journal"
	if [ "$lines" -eq 12 ] && [ $sums_ok -eq 1 ]; then
		pass "$io: journal has 12 ok lines with the plaintext's size and SHA-256"
	else
		fail "$io: journal" "$lines ok lines, sums_ok=$sums_ok"
	fi

	gets_before=$(grep -c '^GET ' "$NGINX_LOG")
	expect_exit 0 "$io: rerun with the same journal exits 0" \
		run_quire "http-$io" "$out" --io "$io" \
		--source "$NGINX_HTTP/{barcode}.tar.gz.gpg" "$T/src/barcodes.txt"
	gets_after=$(grep -c '^GET ' "$NGINX_LOG")
	if [ "$gets_before" -eq "$gets_after" ] && grep -q 'skipped: 12' "$T/http-$io.err"; then
		pass "$io: rerun fetches nothing and counts 12 skipped"
	else
		fail "$io: rerun" "GETs $gets_before -> $gets_after; $(tail -1 "$T/http-$io.err")"
	fi
done

expect_exit 0 "https with the test CA exits 0" \
	run_quire https "$T/out-https" --ca-file "$CA_FILE" \
	--source "$NGINX_HTTPS/{barcode}.tar.gz.gpg" "$T/src/barcodes.txt"
delivered_ok "https: every book byte-identical" "$T/out-https"

expect_exit 1 "https without the CA fails every book" \
	run_quire https-noca "$T/out-noca" --retries 0 \
	--source "$NGINX_HTTPS/{barcode}.tar.gz.gpg" "$T/src/barcodes.txt"
if grep -q 'certificate' "$T/https-noca.err" && [ -z "$(ls "$T/out-noca"/*.tar.gz 2>/dev/null)" ]; then
	pass "https without the CA: certificate refused, nothing delivered"
else
	fail "https without the CA" "$(head -3 "$T/https-noca.err")"
fi

expect_exit 0 "file source (plain path template) exits 0" \
	run_quire file "$T/out-file" --source "$T/src/{barcode}.tar.gz.gpg" "$T/src/barcodes.txt"
delivered_ok "file source: every book byte-identical" "$T/out-file"

# JSON status lines: one object per line, the last a summary.
expect_exit 0 "json status run exits 0" \
	run_quire json "$T/out-json" --status-format json --status-every 4 \
	--source "$NGINX_HTTP/{barcode}.tar.gz.gpg" "$T/src/barcodes.txt"
if python3 - "$T/json.err" <<'EOF'; then
import json, sys
objs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
assert [o["event"] for o in objs] == ["status"] * 3 + ["summary"], objs
s = objs[-1]
assert s["done"] == 12 and s["ok"] == 12 and s["failed"] == 0 and s["skipped"] == 0, s
for k in ("elapsed_s", "bytes_in", "bytes_out", "stages"):
    assert k in s, k
EOF
	pass "json: 3 status objects and a summary with done=ok=12"
else
	fail "json status lines" "$(cat "$T/json.err")"
fi

# Failures are named and the run goes on: a 404 and a hostile line.
{
	head -3 "$T/src/barcodes.txt"
	echo "TEST9999"
	echo "../etc/passwd"
	printf 'TEST0004\r\n'
	echo "   "
	echo "# a comment"
} >"$T/mixed.txt"
expect_exit 1 "a missing book and a hostile line: exit 1" \
	run_quire mixed "$T/out-mixed" --source "$NGINX_HTTP/{barcode}.tar.gz.gpg" "$T/mixed.txt"
if grep -q 'TEST9999.*not available from the source' "$T/mixed.err" &&
	grep -q 'mixed.txt:5: invalid barcode' "$T/mixed.err" &&
	grep -q $'TEST9999\tfailed' "$T/mixed.journal" &&
	[ "$(ls "$T/out-mixed"/*.tar.gz | wc -l)" -eq 4 ] && [ ! -e "$T/etc" ]; then
	pass "404 and hostile line named (with its line number); the 4 good books delivered"
else
	fail "failures named" "$(cat "$T/mixed.err")"
fi

expect_exit 2 "usage error: no --source" "$QUIRE" run --dest "$T/x" "$T/src/barcodes.txt"
expect_exit 2 "usage error: bad --workers" "$QUIRE" run --workers abc --source "x{barcode}" \
	--dest "$T/x" "$T/src/barcodes.txt"
# A --ca-file that cannot be read is refused before anything starts, in one line naming it
# (not book by book, with a retry each, once HTTPS connections begin).
for bad in "$T/no-such-ca.pem" "$T/src"; do
	expect_exit 2 "--ca-file $(basename "$bad"): exit 2" "$QUIRE" run --ca-file "$bad" \
		--source "$NGINX_HTTPS/{barcode}.tar.gz.gpg" --dest "$T/out-badca" \
		--journal "$T/badca.journal" "$T/src/barcodes.txt" 2>"$T/badca.err"
	if [ "$(wc -l <"$T/badca.err")" -eq 1 ] && grep -qF -- "--ca-file: $bad:" "$T/badca.err" &&
		[ ! -e "$T/out-badca" ] && [ ! -e "$T/badca.journal" ]; then
		pass "--ca-file $(basename "$bad"): one line naming it, nothing made"
	else
		fail "--ca-file $(basename "$bad") refused" "$(cat "$T/badca.err")"
	fi
done
QUIRE_PASSPHRASE=wrong expect_exit 1 "wrong passphrase: exit 1" \
	"$QUIRE" run --journal "$T/wrong.journal" --dest "$T/out-wrong" \
	--source "$NGINX_HTTP/{barcode}.tar.gz.gpg" --max-consecutive-failures 3 \
	"$T/src/barcodes.txt" 2>"$T/wrong.err"
if grep -q 'stopped early' "$T/wrong.err" && [ -z "$(ls "$T/out-wrong"/*.tar.gz 2>/dev/null)" ]; then
	pass "wrong passphrase: the run stops after 3 failures in a row, nothing delivered"
else
	fail "wrong passphrase stop" "$(tail -3 "$T/wrong.err")"
fi

# io_uring refused (a seccomp filter, as Docker's default profile does): auto falls back
# to epoll after one notice line; --io uring is a configuration error.
deny=$ROOT/build/helpers/deny_uring
expect_exit 0 "io_uring refused, --io auto: exit 0" \
	"$deny" "$QUIRE" run --dest "$T/out-deny" --passphrase-file "$PASSFILE" \
	--journal "$T/deny.journal" --source "$NGINX_HTTP/{barcode}.tar.gz.gpg" \
	"$T/src/barcodes.txt" 2>"$T/deny.err"
if [ "$(grep -c 'notice: io_uring_setup: not permitted' "$T/deny.err")" -eq 1 ] &&
	grep -q 'threads on epoll' "$T/deny.err"; then
	pass "io_uring refused: one notice line, the workers run on epoll"
else
	fail "io_uring refused: fallback" "$(head -3 "$T/deny.err")"
fi
delivered_ok "io_uring refused: every book byte-identical" "$T/out-deny"
expect_exit 2 "io_uring refused, --io uring: configuration error (exit 2)" \
	"$deny" "$QUIRE" run --io uring --dest "$T/out-deny2" --passphrase-file "$PASSFILE" \
	--journal "$T/deny2.journal" --source "$NGINX_HTTP/{barcode}.tar.gz.gpg" \
	"$T/src/barcodes.txt"

# Staging on another filesystem (tmpfs): delivery copies into DEST/.quire-incoming and
# renames, so books still appear only whole.
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] && [ "$(stat -c %d /dev/shm)" != "$(stat -c %d "$T")" ]; then
	shm=$(mktemp -d /dev/shm/quire-test.XXXXXX)
	on_exit "rm -rf '$shm'"
	expect_exit 0 "staging on another filesystem: exit 0" \
		run_quire xdev "$T/out-xdev" --staging "$shm" \
		--source "$NGINX_HTTP/{barcode}.tar.gz.gpg" "$T/src/barcodes.txt"
	ok=1
	while read -r b; do cmp -s "$T/plain/$b.tar.gz" "$T/out-xdev/$b.tar.gz" || ok=0; done <"$T/src/barcodes.txt"
	if [ $ok -eq 1 ] && [ -z "$(ls -A "$shm")" ] && [ -z "$(ls -A "$T/out-xdev/.quire-incoming")" ]; then
		pass "staging on another filesystem: copied whole, nothing left in staging or incoming"
	else
		fail "staging on another filesystem" "$(ls -la "$shm" "$T/out-xdev/.quire-incoming")"
	fi
else
	skip "staging on another filesystem" "/dev/shm is not a separate tmpfs here"
fi
