# quire run into S3: nginx → quire → sigv4check (recomputes every signature with the AWS
# SDK's signer) → fault proxy (emulates the multipart APIs s3rver lacks; injects faults by
# rules) → s3rver. Objects are read back straight from s3rver with the AWS SDK
# (s3client.mjs) and compared byte for byte with gpg's own decryption of the source.

make_books "$T/src" 6 64K-2M S3A
make_books "$T/big" 1 13M S3BIG # multipart with --part-size 5MiB: parts of 5, 5 and 3 MiB
cp "$T/big"/S3BIG0001.tar.gz.gpg "$T/src/"
cat "$T/src/barcodes.txt" "$T/big/barcodes.txt" >"$T/all.txt"
NBOOKS=$(wc -l <"$T/all.txt")
start_nginx "$T/src" || exit 1
start_s3rver quire-test || exit 1
: >"$T/rules"
start_s3_faultproxy --s3rver-dir "$S3RVER_DIR" --rules "$T/rules" || exit 1
# The checker also answers CompleteMultipartUpload under lie/ the way S3 fails one after
# its 200 (sigv4check.mjs), and logs each request's start to $SIGV4_STARTS.
SIGV4_STARTS=$T/sigv4-starts
SIGV4CHECK_LIE_COMPLETE=/quire-test/lie/ SIGV4CHECK_START_LOG=$SIGV4_STARTS start_sigv4check || exit 1
BUCKET=$S3_BUCKET

# wait_count FILE REGEX N SECONDS: until N lines of FILE match.
wait_count() {
	local end
	end=$(_deadline "$4")
	while [ "$(_now_ms)" -lt "$end" ]; do
		[ "$(grep -cE -- "$2" "$1" 2>/dev/null)" -ge "$3" ] && return 0
		_wait_change "$1"
	done
	echo "wait_count: fewer than $3 lines matching /$2/ in $1 after $4 s" >&2
	return 1
}
# wait_exit PID SECONDS: its exit status, or 124 (and it is killed) when it runs longer.
wait_exit() {
	local end
	end=$(_deadline "$2")
	while kill -0 "$1" 2>/dev/null && [ "$(_now_ms)" -lt "$end" ]; do sleep 0.05; done
	if kill -0 "$1" 2>/dev/null; then
		kill -KILL "$1"
		wait "$1"
		return 124
	fi
	wait "$1"
}

# run_s3 NAME [quire run options...]: quire over nginx into S3_ENDPOINT, stderr to
# $T/NAME.err, journal $T/NAME.journal.
run_s3() {
	local name=$1
	shift
	"$QUIRE" run --source "$NGINX_HTTP/{barcode}.tar.gz.gpg" --passphrase-file "$PASSFILE" \
		--journal "$T/$name.journal" --staging "$T/staging-$name" --s3-endpoint "$S3_ENDPOINT" \
		"$@" 2>"$T/$name.err"
}

# gpg's decryption of a source book, the reference every object is compared with.
gpg_plain() {
	[ -s "$T/gpg/$1" ] && return 0
	mkdir -p "$T/gpg"
	gpg --homedir "$T/gnupg" --batch --quiet --pinentry-mode loopback \
		--passphrase-file "$PASSFILE" -o "$T/gpg/$1" -d "$T/src/$1.tar.gz.gpg" 2>/dev/null
}

# objects_ok NAME PREFIX LIST: every book of LIST is at PREFIX/BARCODE.tar.gz, equal to gpg's
# decryption of its source.
objects_ok() {
	local name=$1 prefix=$2 list=$3 b bad=0
	mkdir -p "$T/got"
	while read -r b; do
		gpg_plain "$b" || { bad=1; echo "    gpg cannot decrypt $b"; continue; }
		rm -f "$T/got/$b"
		s3_get "$BUCKET" "$prefix/$b.tar.gz" "$T/got/$b" 2>"$T/got/err" ||
			{ bad=1; echo "    $prefix/$b.tar.gz: $(cat "$T/got/err")"; continue; }
		cmp -s "$T/gpg/$b" "$T/got/$b" || { bad=1; echo "    $prefix/$b.tar.gz differs"; }
	done <"$list"
	if [ $bad -eq 0 ]; then pass "$name"; else fail "$name" "see above"; fi
}

no_uploads_left() {
	local left
	left=$(s3client list-multipart "$BUCKET" "$2/" 2>&1)
	if [ -z "$left" ]; then pass "$1"; else fail "$1" "$left"; fi
}

# ---- a run: small books by PUT, the big one by multipart --------------------------------
expect_exit 0 "s3: $NBOOKS books (one of 13 MB by multipart) delivered, exit 0" \
	run_s3 first --dest "s3://$BUCKET/books" --part-size 5MiB "$T/all.txt"
objects_ok "s3: every object read back equals gpg's decryption" books "$T/all.txt"

meta_bad=0
while read -r b; do
	s3_head_json "$BUCKET" "books/$b.tar.gz" >"$T/head.json" 2>&1 || { meta_bad=1; cat "$T/head.json"; continue; }
	etag=$(curl -sI "$NGINX_HTTP/$b.tar.gz.gpg" | sed -n 's/^[Ee][Tt]ag: *"\(.*\)".*/\1/p' | tr -d '\r')
	sha=$(sha256sum <"$T/gpg/$b" | cut -d' ' -f1)
	size=$(stat -c %s "$T/gpg/$b")
	python3 - "$T/head.json" "$b" "$etag" "$sha" "$size" <<'EOF' || meta_bad=1
import json, re, sys
h = json.load(open(sys.argv[1]))
m = h["Metadata"]
want = {"barcode": sys.argv[2], "encrypted_etag": sys.argv[3], "plaintext-sha256": sys.argv[4],
        "original_filename": sys.argv[2] + ".tar.gz.gpg"}
bad = [f"{k}={m.get(k)!r}, wanted {v!r}" for k, v in want.items() if m.get(k) != v]
if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", m.get("acquisition_date", "")):
    bad.append(f"acquisition_date={m.get('acquisition_date')!r}")
extra = set(m) - set(want) - {"acquisition_date"}
if extra:
    bad.append(f"unexpected metadata {sorted(extra)}")
if h["ContentLength"] != int(sys.argv[5]):
    bad.append(f"ContentLength {h['ContentLength']}, wanted {sys.argv[5]}")
if bad:
    print(f"    {sys.argv[2]}: " + "; ".join(bad))
    sys.exit(1)
EOF
done <"$T/all.txt"
if [ $meta_bad -eq 0 ]; then
	pass "s3: metadata exactly barcode, acquisition_date, encrypted_etag (nginx's ETag), original_filename, plaintext-sha256 on every object"
else
	fail "s3: metadata" "see above"
fi

parts=$(grep -c '^PUT /quire-test/books/S3BIG0001.tar.gz?partNumber=[0-9]*&uploadId=[^ ]* 200 ' "$S3PROXY_LOG")
creates=$(grep -c '^POST /quire-test/books/S3BIG0001.tar.gz?uploads= 200 ' "$S3PROXY_LOG")
completes=$(grep -c '^POST /quire-test/books/S3BIG0001.tar.gz?uploadId=[^ ]* 200 ' "$S3PROXY_LOG")
puts=$(grep -c '^PUT /quire-test/books/S3A[0-9]*.tar.gz 200 ' "$S3PROXY_LOG")
if [ "$parts" -eq 3 ] && [ "$creates" -eq 1 ] && [ "$completes" -eq 1 ] && [ "$puts" -eq 6 ]; then
	pass "s3: 6 single PUTs; the 13 MB book as Create + 3 parts + Complete"
else
	fail "s3: request shapes" "puts=$puts creates=$creates parts=$parts completes=$completes"
fi
no_uploads_left "s3: no unfinished multipart upload left" books

total=$(grep -c . "$SIGV4_LOG")
ok=$(grep -c '^OK ' "$SIGV4_LOG")
hashed=$(grep -cE '^OK PUT .* payload=ok' "$SIGV4_LOG")
if [ "$total" -gt 0 ] && [ "$ok" -eq "$total" ] && [ "$hashed" -eq 9 ]; then
	pass "s3: all $total signatures verified by the SDK's signer; every PUT's payload hash is its body's"
else
	fail "s3: signatures" "$ok of $total OK, $hashed hashed PUTs; $(grep -v '^OK ' "$SIGV4_LOG" | head -3)"
fi

# ---- a rerun without the journal: the destination is the truth --------------------------
gets_before=$(grep -c '^GET ' "$NGINX_LOG")
rm -f "$T/first.journal"
expect_exit 0 "s3: rerun without a journal exits 0" \
	run_s3 first --dest "s3://$BUCKET/books" --part-size 5MiB "$T/all.txt"
gets_after=$(grep -c '^GET ' "$NGINX_LOG")
if [ "$gets_before" -eq "$gets_after" ] && grep -q "skipped: $NBOOKS" "$T/first.err"; then
	pass "s3: rerun skips every book by ETag, fetching nothing"
else
	fail "s3: rerun skips by ETag (needs sink lookup wired in book.c)" \
		"GETs $gets_before -> $gets_after; $(tail -1 "$T/first.err")"
fi

# ---- epoll backend, temporary credentials --------------------------------------------
expect_exit 0 "s3 on epoll with a session token: exit 0" \
	env AWS_SESSION_TOKEN=test-session-token "$QUIRE" run --io epoll \
	--source "$NGINX_HTTP/{barcode}.tar.gz.gpg" --passphrase-file "$PASSFILE" \
	--journal "$T/epoll.journal" --staging "$T/staging-epoll" --s3-endpoint "$S3_ENDPOINT" \
	--dest "s3://$BUCKET/epoll/" --part-size 5MiB "$T/all.txt" 2>"$T/epoll.err"
objects_ok "s3 on epoll: every object equals gpg's decryption" epoll "$T/all.txt"
tok=$(grep -c 'epoll/.*payload=ok' "$SIGV4_LOG")
bad=$(grep -v '^OK ' "$SIGV4_LOG" | head -3)
if [ "$tok" -gt 0 ] && [ -z "$bad" ]; then
	pass "s3 with AWS_SESSION_TOKEN: x-amz-security-token signed, every signature OK"
else
	fail "s3 with a session token" "$tok requests; $bad"
fi

# ---- leftovers of a killed run are aborted at start; other keys are left alone ----------
sign=(--aws-sigv4 aws:amz:us-east-1:s3 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY"
	-H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
curl -s -o /dev/null -X POST "${sign[@]}" "$S3RVER_ENDPOINT/$BUCKET/books/S3A0001.tar.gz?uploads="
curl -s -o /dev/null -X POST "${sign[@]}" "$S3RVER_ENDPOINT/$BUCKET/books/S3A0002.tar.gz?uploads="
curl -s -o /dev/null -X POST "${sign[@]}" "$S3RVER_ENDPOINT/$BUCKET/books/notours.bin?uploads="
before=$(s3client list-multipart "$BUCKET" books/ | wc -l)
printf 'S3A0001\n' >"$T/one.txt"
expect_exit 0 "s3: a run over leftover uploads exits 0" \
	run_s3 leftover --dest "s3://$BUCKET/books" --part-size 5MiB "$T/one.txt"
left=$(s3client list-multipart "$BUCKET" books/)
if [ "$before" -eq 3 ] && [ "$(printf '%s\n' "$left" | grep -c .)" -eq 1 ] &&
	printf '%s' "$left" | grep -q '^books/notours.bin' && grep -q 'aborted 2 unfinished' "$T/leftover.err"; then
	pass "s3: start aborts the unfinished uploads of ours, leaves another key's"
else
	fail "s3: leftover uploads" "before=$before left=[$left]; $(grep -i upload "$T/leftover.err")"
fi

# ---- destination faults -----------------------------------------------------------------
# A 503 SlowDown on a part and a 500 on Complete: retried, the object whole, nothing left.
printf '%s\n' 'S3BIG0001 slowdown 1 op=part' 'S3BIG0001 500 1 op=complete' >"$T/rules"
printf 'S3BIG0001\n' >"$T/big.txt"
expect_exit 0 "s3: SlowDown on a part and 500 on Complete are retried, exit 0" \
	run_s3 faults --dest "s3://$BUCKET/faults" --part-size 5MiB "$T/big.txt"
objects_ok "s3: after the retries the object equals gpg's decryption" faults "$T/big.txt"
no_uploads_left "s3: the failed attempts' uploads were aborted" faults
if grep -q 'SlowDown' "$T/faults.err" && [ "$(grep -c 'op=abort' "$S3PROXY_LOG")" -ge 2 ]; then
	pass "s3: each failed multipart attempt sent AbortMultipartUpload"
else
	fail "s3: aborts after failures" "$(grep -c 'op=abort' "$S3PROXY_LOG") aborts; $(cat "$T/faults.err")"
fi

# Connection resets on PUTs, before and after the proxy forwarded the body: retried (by
# libcurl, rewinding the body, or by quire), the objects whole.
printf '%s\n' 'S3A0004 reset-before 1 op=put' 'S3A0005 reset-after 1 op=put' >"$T/rules"
printf 'S3A0004\nS3A0005\n' >"$T/resets.txt"
expect_exit 0 "s3: connection resets on PUT are retried, exit 0" \
	run_s3 resets --dest "s3://$BUCKET/resets" "$T/resets.txt"
objects_ok "s3: after resets the objects equal gpg's decryption" resets "$T/resets.txt"

# A 403 on a PUT is permanent: no retry, S3's code in the journal, exit 1.
printf '%s\n' 'S3A0002 403 always op=put' >"$T/rules"
printf 'S3A0002\nS3A0003\n' >"$T/two.txt"
expect_exit 1 "s3: a 403 on a PUT fails that book (exit 1)" \
	run_s3 denied --dest "s3://$BUCKET/denied" "$T/two.txt"
n403=$(grep -c '^PUT /quire-test/denied/S3A0002.tar.gz 403 ' "$S3PROXY_LOG")
if [ "$n403" -eq 1 ] && grep -q $'S3A0002\tfailed.*HTTP 403 AccessDenied' "$T/denied.journal" &&
	grep -q $'S3A0003\tok' "$T/denied.journal"; then
	pass "s3: 403 AccessDenied not retried, named in the journal; the other book delivered"
else
	fail "s3: 403 on PUT" "$n403 PUTs; $(cat "$T/denied.journal")"
fi
: >"$T/rules"

# ---- a second Ctrl-C mid-multipart: the upload is aborted, no object appears ------------
# --max-upload-rate keeps the 13 MB upload going for seconds.
"$QUIRE" run --source "$NGINX_HTTP/{barcode}.tar.gz.gpg" --passphrase-file "$PASSFILE" \
	--journal "$T/quit.journal" --staging "$T/staging-quit" --s3-endpoint "$S3_ENDPOINT" \
	--dest "s3://$BUCKET/quit" --part-size 5MiB --max-upload-rate 1MiB "$T/big.txt" 2>"$T/quit.err" &
QPID=$!
if wait_for_line "$SIGV4_STARTS" '^START PUT /quire-test/quit/S3BIG0001.tar.gz\?partNumber=1&' 30; then
	kill -INT "$QPID"
	wait_for_line "$T/quit.err" "Ctrl-C again" 10
	kill -INT "$QPID"
fi
wait "$QPID"
rc=$?
left=$(s3client list-multipart "$BUCKET" quit/ 2>&1)
if [ "$rc" -eq 130 ] && [ -z "$left" ] && ! s3_head_json "$BUCKET" quit/S3BIG0001.tar.gz >/dev/null 2>&1 &&
	[ "$(grep -c '^DELETE /quire-test/quit/S3BIG0001.tar.gz?uploadId=.* op=abort' "$S3PROXY_LOG")" -eq 1 ]; then
	pass "s3: two SIGINTs mid-multipart: exit 130, upload aborted, no object"
else
	fail "s3: abort mid-multipart" "rc=$rc left=[$left]; $(tail -3 "$T/quit.err")"
fi

# ---- issue 14.8: a second Ctrl-C with an endpoint that stops answering aborts -----------
# Eight books in multipart on one worker thread (uploads held back by --max-upload-rate);
# every AbortMultipartUpload stalls 15 s at the proxy. Sent one after another with a 5 s
# timeout each, they would keep quire 40 s and the first would be answered before it
# exits; sent together with a short deadline, quire exits before any is answered. The
# next run's start aborts what is left.
make_books "$T/q8" 8 6M S3Q
cp "$T/q8"/*.gpg "$T/src/"
printf '%s\n' '* delay always op=abort secs=15' >"$T/rules"
"$QUIRE" run --source "$NGINX_HTTP/{barcode}.tar.gz.gpg" --passphrase-file "$PASSFILE" \
	--journal "$T/q8.journal" --staging "$T/staging-q8" --s3-endpoint "$S3_ENDPOINT" \
	--threads 1 --workers 8 --uploads 8 --dest "s3://$BUCKET/q8" --part-size 5MiB \
	--max-upload-rate 256KiB "$T/q8/barcodes.txt" 2>"$T/q8.err" &
QPID=$!
if wait_count "$SIGV4_STARTS" '^START PUT /quire-test/q8/S3Q000[1-8].tar.gz\?partNumber=1&' 8 60; then
	kill -INT "$QPID"
	wait_for_line "$T/q8.err" "Ctrl-C again" 10
	kill -INT "$QPID"
fi
wait_exit "$QPID" 60
rc=$?
deletes=$(grep -cE '^OK DELETE /quire-test/q8/S3Q000[1-8].tar.gz\?uploadId=' "$SIGV4_LOG")
answered=$(grep -cE '^DELETE /quire-test/q8/.*op=abort' "$S3PROXY_LOG")
if [ "$rc" -eq 130 ] && [ "$deletes" -eq 8 ] && [ "$answered" -eq 0 ]; then
	pass "s3: second Ctrl-C: 8 aborts sent together, exit 130 before the stalled endpoint answered one"
else
	fail "s3: second Ctrl-C against a stalled endpoint" \
		"rc=$rc deletes=$deletes answered=$answered; $(tail -3 "$T/q8.err")"
fi
left=$(s3client list-multipart "$BUCKET" q8/ | grep -c .)
: >"$T/rules"
expect_exit 0 "s3: the next run over the 8 leftovers exits 0" \
	run_s3 q8b --dest "s3://$BUCKET/q8" --part-size 5MiB "$T/q8/barcodes.txt"
if [ "$left" -eq 8 ] && grep -q 'aborted 8 unfinished multipart uploads' "$T/q8b.err"; then
	pass "s3: its start aborted the 8 uploads the quit left"
else
	fail "s3: sweep after the quit" "left=$left; $(grep -i upload "$T/q8b.err")"
fi
no_uploads_left "s3: none left after the sweep" q8

# ---- issue 9: a CompleteMultipartUpload answered 200, blanks, then <Error> ---------------
expect_exit 1 "s3: a Complete that fails after its 200 fails the book (exit 1)" \
	run_s3 lie --dest "s3://$BUCKET/lie" --part-size 5MiB --retries 1 "$T/big.txt"
if grep -q $'S3BIG0001\tfailed.*CompleteMultipartUpload lie/S3BIG0001.tar.gz: HTTP 200 then Error InternalError' "$T/lie.journal" &&
	! s3_head_json "$BUCKET" lie/S3BIG0001.tar.gz >/dev/null 2>&1; then
	pass "s3: the <Error> after 8 KiB of blanks is not taken for success; no object"
else
	fail "s3: Complete 200 + Error" "$(cat "$T/lie.journal")"
fi
no_uploads_left "s3: the lied-to uploads were aborted" lie

# ---- issue 10: a bucket the Python pipeline filled is taken over without a GET -----------
# Its objects are written by boto3, as the Python pipeline writes them: user metadata
# encrypted_etag (underscore) with the source's ETag as the header gave it (quoted),
# barcode, acquisition_date and original_filename.
while read -r b; do
	etag=$(curl -sI "$NGINX_HTTP/$b.tar.gz.gpg" | sed -n 's/^[Ee][Tt]ag: *\(".*"\).*/\1/p' | tr -d '\r')
	/usr/bin/python3 "$ROOT/tests/e2e/python_pipeline_put.py" "$S3RVER_ENDPOINT" "$BUCKET" "py/$b.tar.gz" \
		"$T/gpg/$b" "$b" "$etag" "$b.tar.gz.gpg" ||
		fail "s3: boto3 put of $b" "python_pipeline_put.py failed"
done <"$T/all.txt"
gets_before=$(grep -c '^GET ' "$NGINX_LOG")
expect_exit 0 "s3: a run over the Python pipeline's bucket exits 0" \
	run_s3 py --dest "s3://$BUCKET/py" --part-size 5MiB "$T/all.txt"
if [ "$gets_before" -eq "$(grep -c '^GET ' "$NGINX_LOG")" ] && grep -q "skipped: $NBOOKS" "$T/py.err"; then
	pass "s3: every book skipped by its encrypted_etag, no archive fetched"
else
	fail "s3: takeover of a Python pipeline bucket" "$(tail -1 "$T/py.err")"
fi

# ---- issue 9: a stalled start ends at once on Ctrl-C --------------------------------------
printf '%s\n' 'quire-test delay 1 op=list secs=30' >"$T/rules"
"$QUIRE" run --source "$NGINX_HTTP/{barcode}.tar.gz.gpg" --passphrase-file "$PASSFILE" \
	--journal "$T/stall.journal" --staging "$T/staging-stall" --s3-endpoint "$S3_ENDPOINT" \
	--dest "s3://$BUCKET/stall" "$T/one.txt" 2>"$T/stall.err" &
QPID=$!
if wait_for_line "$SIGV4_LOG" '^OK GET /quire-test\?max-keys=1&prefix=stall%2F' 10; then
	kill -INT "$QPID"
fi
wait_exit "$QPID" 60
rc=$?
# Today's cmd_run makes every failed open exit 2; 130 once it tells -EINTR apart.
if { [ "$rc" -eq 2 ] || [ "$rc" -eq 130 ]; } && grep -q 'interrupted' "$T/stall.err" &&
	! grep -q 'prefix=stall%2F' "$S3PROXY_LOG"; then
	pass "s3: Ctrl-C during a stalled bucket check ends the start before any answer"
else
	fail "s3: interrupted start" "rc=$rc; $(cat "$T/stall.err")"
fi
: >"$T/rules"

# ---- issue 14.10: dot segments in the prefix, --part-size above S3's 5 GiB ----------------
expect_exit 2 "s3: s3://BUCKET/a/../b is exit 2" run_s3 dots --dest "s3://$BUCKET/a/../b" "$T/one.txt"
expect_exit 2 "s3: --part-size 6GiB is exit 2" \
	run_s3 p6 --dest "s3://$BUCKET/p6" --part-size 6GiB "$T/one.txt"
if grep -q '"\.\." segment' "$T/dots.err" && grep -q -- '--part-size.*5GiB' "$T/p6.err" &&
	! s3_head_json "$BUCKET" b/S3A0001.tar.gz >/dev/null 2>&1; then
	pass "s3: both named; no key outside the prefix typed"
else
	fail "s3: dot segments, part size" "$(cat "$T/dots.err" "$T/p6.err")"
fi

# ---- configuration errors: exit 2 before the first book -----------------------------------
gets_before=$(grep -c '^GET ' "$NGINX_LOG")
expect_exit 2 "s3: a missing bucket is exit 2" \
	run_s3 nobucket --dest "s3://no-such-bucket/x" "$T/all.txt"
if grep -q 'NoSuchBucket' "$T/nobucket.err" && [ "$gets_before" -eq "$(grep -c '^GET ' "$NGINX_LOG")" ]; then
	pass "s3: NoSuchBucket named, nothing fetched"
else
	fail "s3: NoSuchBucket" "$(cat "$T/nobucket.err")"
fi

expect_exit 2 "s3: missing credentials are exit 2" \
	env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY "$QUIRE" run \
	--source "$NGINX_HTTP/{barcode}.tar.gz.gpg" --passphrase-file "$PASSFILE" \
	--journal "$T/nocreds.journal" --staging "$T/staging-nocreds" --s3-endpoint "$S3_ENDPOINT" \
	--dest "s3://$BUCKET/x" "$T/all.txt" 2>"$T/nocreds.err"
if grep -q 'AWS_ACCESS_KEY_ID' "$T/nocreds.err" && grep -q 'AWS_SECRET_ACCESS_KEY' "$T/nocreds.err"; then
	pass "s3: the message names the credential variables"
else
	fail "s3: missing credentials message" "$(cat "$T/nocreds.err")"
fi

expect_exit 2 "s3: an unreachable endpoint is exit 2" \
	"$QUIRE" run --source "$NGINX_HTTP/{barcode}.tar.gz.gpg" --passphrase-file "$PASSFILE" \
	--journal "$T/unreach.journal" --staging "$T/staging-unreach" \
	--s3-endpoint "http://127.0.0.1:$(free_port)" --dest "s3://$BUCKET/x" "$T/all.txt" \
	2>"$T/unreach.err"
if grep -q 'cannot reach' "$T/unreach.err"; then
	pass "s3: unreachable endpoint named"
else
	fail "s3: unreachable endpoint message" "$(cat "$T/unreach.err")"
fi

if grep -q "$AWS_SECRET_ACCESS_KEY:" "$T"/*.err 2>/dev/null || grep -q 'test-session-token' "$T"/*.err; then
	fail "s3: secrets stay out of the logs" "found in $(grep -l 'test-session-token' "$T"/*.err)"
else
	pass "s3: secrets stay out of the logs"
fi

# ---- issue 14.9: a source that refuses HEAD (405) but serves GET --------------------------
# The destination holds the books (the first run's prefix "all"); skip-unchanged would HEAD
# the source; the book must not fail: it is fetched and delivered again, said once.
echo 'S3A* 405 always method=HEAD' >"$T/head.rules"
start_faultserver "$T/src" --rules "$T/head.rules" --no-name-faults
HEAD_SRC=$FAULT_URL
run_s3 head --source "$HEAD_SRC/{barcode}.tar.gz.gpg" --dest "s3://$BUCKET/headless" "$T/src/barcodes.txt"
rc1=$?
run_s3 head2 --source "$HEAD_SRC/{barcode}.tar.gz.gpg" --dest "s3://$BUCKET/headless" "$T/src/barcodes.txt"
rc2=$?
heads=$(grep -c '^HEAD /S3A[0-9]*.tar.gz.gpg 405 ' "$FAULT_LOG")
if [ "$rc1" -eq 0 ] && [ "$rc2" -eq 0 ] && [ "$heads" -ge 1 ] &&
	[ "$(grep -c 'answered HEAD with HTTP 405' "$T/head2.err")" -eq 1 ] &&
	[ "$(grep -cP '\tok\t' "$T/head2.journal")" -eq 6 ]; then
	pass "s3: a source refusing HEAD (405): the books fetched instead of failing, said once"
else
	fail "s3: HEAD refused" "rc=$rc1/$rc2 heads=$heads; $(grep -v '^quire: [0-9]' "$T/head2.err" | head -5)"
fi
