# The S3 sink on its own, without the engine: tests/unit/test_s3_sink.c plays the worker
# (a real loop and curl multi) and the engine's side of sink.h (real staging files, their
# digests, one slot per job) against s3rver behind the fault proxy (which emulates the
# multipart calls s3rver lacks and injects faults by rules) and the SigV4 checker (every
# signature recomputed by the AWS SDK's signer, every body's SHA-256 and checksum
# checked). Objects are read back with the AWS SDK's own client (s3client.mjs).

HARNESS=$(dirname "$QUIRE")/tests/test_s3_sink
if [ ! -x "$HARNESS" ]; then
	fail "s3 sink: harness $HARNESS is missing" "build it with make asan (or make unit)"
	return 0
fi
head -c 100K /dev/urandom >"$T/small"
head -c 7M /dev/urandom >"$T/mid"  # 2 parts at 5 MiB
head -c 13M /dev/urandom >"$T/big" # 3 parts: 5, 5 and 3 MiB
start_s3rver quire-test || exit 1
: >"$T/rules"
start_s3_faultproxy --s3rver-dir "$S3RVER_DIR" --rules "$T/rules" || exit 1
SIGV4CHECK_LIE_COMPLETE=/liar.tar.gz start_sigv4check || exit 1
BUCKET=$S3_BUCKET

# sink NAME ARGS...: the harness, stdout to $T/NAME.out, stderr to $T/NAME.err.
sink() {
	local name=$1
	shift
	"$HARNESS" --endpoint "$S3_ENDPOINT" "$@" >"$T/$name.out" 2>"$T/$name.err"
}
# has NAME REGEX: a line of NAME's output matches.
has() { grep -Eq -- "$2" "$T/$1.out"; }
show() { tr '\n' '|' <"$T/$1.out" | tail -c 600; tail -c 300 "$T/$1.err"; }
sha() { sha256sum <"$1" | cut -d' ' -f1; }
meta_args() { # BARCODE FILE: the five entries the engine passes
	echo "barcode=$1 acquisition_date=2026-11-29T03:10:02Z encrypted_etag=\"etag-$1\"" \
		"original_filename=$1.tar.gz.gpg plaintext-sha256=$(sha "$2")"
}
# interrupted NAME FILE REGEX SECONDS ARGS...: the harness in the background, SIGINT once
# a line of FILE matches REGEX; sets rc to its exit status.
interrupted() {
	local name=$1 file=$2 re=$3 secs=$4 pid
	shift 4
	"$HARNESS" --endpoint "$S3_ENDPOINT" "$@" >"$T/$name.out" 2>"$T/$name.err" &
	pid=$!
	wait_for_line "$file" "$re" "$secs" && kill -INT "$pid"
	wait "$pid"
	rc=$?
}
same_object() { # NAME KEY FILE
	rm -f "$T/got"
	if s3_get "$BUCKET" "$2" "$T/got" 2>"$T/got.err" && cmp -s "$3" "$T/got"; then
		pass "$1"
	else
		fail "$1" "$(cat "$T/got.err")"
	fi
}
no_uploads_left() { # NAME PREFIX
	local left
	left=$(s3client list-multipart "$BUCKET" "$2/" 2>&1)
	if [ -z "$left" ]; then pass "$1"; else fail "$1" "$left"; fi
}
no_object() { # NAME KEY
	if s3_head_json "$BUCKET" "$2" >/dev/null 2>&1; then fail "$1" "$2 exists"; else pass "$1"; fi
}

# ---- a PUT and a multipart upload, metadata exactly as passed ------------------------------
cat >"$T/a.jobs" <<EOF
deliver small.tar.gz $T/small $(meta_args small "$T/small")
deliver big.tar.gz $T/big $(meta_args big "$T/big")
lookup missing.tar.gz
EOF
expect_exit 0 "s3 sink: one PUT and one 3-part upload, exit 0" \
	sink a --dest "s3://$BUCKET/a" --part-size 5MiB "$T/a.jobs"
if has a '^deliver small.tar.gz rc=0 ' && has a '^deliver big.tar.gz rc=0 ' &&
	has a '^lookup missing.tar.gz rc=0 found=0 '; then
	pass "s3 sink: both delivered, the missing key looked up as absent"
else
	fail "s3 sink: deliveries" "$(show a)"
fi
if has a '^open rc=0 part_size=5242880 max_size=52428800000$'; then
	pass "s3 sink: max_size is 10,000 parts of --part-size"
else
	fail "s3 sink: max_size" "$(show a)"
fi
same_object "s3 sink: the PUT object reads back byte-exact" a/small.tar.gz "$T/small"
same_object "s3 sink: the multipart object reads back byte-exact" a/big.tar.gz "$T/big"
meta_bad=
for b in small big; do
	s3_head_json "$BUCKET" "a/$b.tar.gz" >"$T/head.json" 2>&1 || { meta_bad="$meta_bad $(cat "$T/head.json")"; continue; }
	python3 - "$T/head.json" "$b" "$(sha "$T/$b")" <<'EOF' || meta_bad="$meta_bad $b"
import json, sys
h = json.load(open(sys.argv[1]))
b = sys.argv[2]
want = {"barcode": b, "acquisition_date": "2026-11-29T03:10:02Z", "encrypted_etag": f'"etag-{b}"',
        "original_filename": f"{b}.tar.gz.gpg", "plaintext-sha256": sys.argv[3]}
if h["Metadata"] != want or h["ContentType"] != "application/gzip":
    print(f"    {b}: {h['Metadata']} {h['ContentType']}")
    sys.exit(1)
EOF
done
if [ -z "$meta_bad" ]; then
	pass "s3 sink: each object carries exactly the five metadata entries passed, and its type"
else
	fail "s3 sink: metadata" "$meta_bad"
fi
puts=$(grep -cE '^OK PUT /quire-test/a/(small|big)\.tar\.gz.* payload=ok md5=absent checksum=ok$' "$SIGV4_LOG")
bad=$(grep -v '^OK ' "$SIGV4_LOG" | head -3)
if [ "$puts" -eq 4 ] && [ -z "$bad" ]; then
	pass "s3 sink: every signature verified; the PUT and 3 parts carry their body's SHA-256 and checksum"
else
	fail "s3 sink: signatures" "$puts hashed PUTs; $bad"
fi
shapes=$(grep -cE '^(PUT /quire-test/a/small.tar.gz|POST /quire-test/a/big.tar.gz\?uploads=|PUT /quire-test/a/big.tar.gz\?partNumber=[123]&uploadId=[^ ]*|POST /quire-test/a/big.tar.gz\?uploadId=[^ ]*) 200 ' "$S3PROXY_LOG")
if [ "$shapes" -eq 6 ]; then
	pass "s3 sink: PUT; Create, 3 parts, Complete"
else
	fail "s3 sink: request shapes" "$shapes of 6; $(grep /a/ "$S3PROXY_LOG")"
fi
no_uploads_left "s3 sink: no unfinished upload left" a

cat >"$T/e.jobs" <<EOF
deliver big.tar.gz $T/big $(meta_args big "$T/big")
EOF
expect_exit 0 "s3 sink on epoll: a 3-part upload, exit 0" \
	sink e --io epoll --dest "s3://$BUCKET/e" --part-size 5MiB "$T/e.jobs"
same_object "s3 sink on epoll: the object reads back byte-exact" e/big.tar.gz "$T/big"

# ---- lookups: the Python pipeline's metadata, quire's older one, none -----------------
# Issue 10: encrypted_etag (underscore) is what the Python pipeline wrote; the stored value
# is an ETag normalised by http_etag_normalize ("\"WA\"" is WA, never A).
s3client put "$BUCKET" b/py.tar.gz "$T/small" 'encrypted_etag="WA"' barcode=py
s3client put "$BUCKET" b/old.tar.gz "$T/small" 'encrypted-etag=W/"A"'
s3client put "$BUCKET" b/bare.tar.gz "$T/small"
printf 'lookup %s\n' py.tar.gz old.tar.gz bare.tar.gz none.tar.gz >"$T/b.jobs"
expect_exit 0 "s3 sink: four lookups, exit 0" sink b --dest "s3://$BUCKET/b" "$T/b.jobs"
if has b '^lookup py.tar.gz rc=0 found=1 etag=WA detail=-$' &&
	has b '^lookup old.tar.gz rc=0 found=1 etag=A detail=-$' &&
	has b '^lookup bare.tar.gz rc=0 found=1 etag= detail=-$' &&
	has b '^lookup none.tar.gz rc=0 found=0 etag= detail=-$'; then
	pass "s3 sink: lookup reads encrypted_etag and encrypted-etag, normalised; absent keys are absent"
else
	fail "s3 sink: lookups" "$(show b)"
fi

# ---- issue 9: a CompleteMultipartUpload answered 200, blanks, then an <Error> -----------
printf 'deliver liar.tar.gz %s barcode=liar\n' "$T/mid" >"$T/c.jobs"
expect_exit 1 "s3 sink: a Complete that fails after its 200 fails the delivery (exit 1)" \
	sink c --dest "s3://$BUCKET/c" --part-size 5MiB "$T/c.jobs"
if has c '^deliver liar.tar.gz rc=-5 transient=1 detail=s3 CompleteMultipartUpload c/liar.tar.gz: HTTP 200 then Error InternalError$'; then
	pass "s3 sink: the <Error> after 8 KiB of blanks is read: transient failure named"
else
	fail "s3 sink: Complete 200 + Error" "$(show c)"
fi
no_object "s3 sink: no object after the failed Complete" c/liar.tar.gz
if grep -qE '^DELETE /quire-test/c/liar.tar.gz\?uploadId=[^ ]* 204 .*op=abort' "$S3PROXY_LOG"; then
	pass "s3 sink: the failed upload was aborted"
else
	fail "s3 sink: abort after the failed Complete" "$(grep /c/ "$S3PROXY_LOG")"
fi
no_uploads_left "s3 sink: nothing left of it" c

# ---- metadata HTTP cannot carry, or more than S3's 2 KB: refused, nothing sent --------
big_value=$(head -c 2100 /dev/zero | tr '\0' v)
printf 'deliver %s %s %s\n' huge.tar.gz "$T/small" "note=$big_value" \
	crlf.tar.gz "$T/small" $'barcode=x\r' utf.tar.gz "$T/small" $'original_filename=caf\xc3\xa9' >"$T/d.jobs"
expect_exit 1 "s3 sink: bad metadata fails those deliveries (exit 1)" \
	sink d --dest "s3://$BUCKET/d" "$T/d.jobs"
if has d '^deliver huge.tar.gz rc=-22 transient=0 detail=s3 d/huge.tar.gz: user metadata of 2104 bytes; S3 takes at most 2048 \(2 KB\)$' &&
	has d '^deliver crlf.tar.gz rc=-22 transient=0 detail=.*byte 0x0d' &&
	has d '^deliver utf.tar.gz rc=-22 transient=0 detail=.*byte 0xc3'; then
	pass "s3 sink: 2 KB limit, CR and non-ASCII refused with a clear reason"
else
	fail "s3 sink: metadata refusals" "$(show d)"
fi
if grep -q '/quire-test/d/' "$SIGV4_LOG"; then
	fail "s3 sink: refused deliveries send nothing" "$(grep /d/ "$SIGV4_LOG")"
else
	pass "s3 sink: refused deliveries send nothing"
fi

# ---- issue 14.10: dot segments and --part-size bounds, before any request ----------------
: >"$T/none.jobs"
before=$(grep -c . "$SIGV4_LOG")
expect_exit 2 "s3 sink: s3://BUCKET/a/../b refused (exit 2)" \
	sink dots --dest "s3://$BUCKET/a/../b" "$T/none.jobs"
expect_exit 2 "s3 sink: --part-size 6GiB refused (exit 2)" \
	sink p6 --dest "s3://$BUCKET/p" --part-size 6GiB "$T/none.jobs"
if has dots '^open rc=-22 msg=--dest s3://quire-test/a/../b: a "." or ".." segment' &&
	has p6 '^open rc=-22 msg=--part-size 6442450944 bytes: S3 takes parts of 5MiB to 5GiB$' &&
	[ "$before" -eq "$(grep -c . "$SIGV4_LOG")" ]; then
	pass "s3 sink: both named, no request sent"
else
	fail "s3 sink: dot segments, part size" "$(show dots) $(show p6)"
fi
expect_exit 0 "s3 sink: --part-size 5GiB opens" \
	sink p5 --dest "s3://$BUCKET/p" --part-size 5GiB "$T/none.jobs"
if has p5 '^open rc=0 part_size=5368709120 max_size=5497558138880$'; then
	pass "s3 sink: at 5 GiB parts max_size is S3's 5 TiB"
else
	fail "s3 sink: max_size at 5 GiB" "$(show p5)"
fi

# ---- issue 9: a stalled start ends at once on Ctrl-C ------------------------------------
printf '%s\n' 'quire-test delay 1 op=list secs=30' >"$T/rules"
interrupted h "$SIGV4_LOG" '^OK GET /quire-test\?max-keys=1&prefix=h%2F' 10 \
	--dest "s3://$BUCKET/h" "$T/none.jobs"
if [ "$rc" -eq 130 ] && has h '^open rc=-4 msg=--dest s3://quire-test/h: interrupted$' &&
	! grep -q 'prefix=h%2F' "$S3PROXY_LOG"; then
	pass "s3 sink: SIGINT during a stalled bucket check ends the start with -EINTR before any answer"
else
	fail "s3 sink: interrupted start" "rc=$rc $(show h)"
fi
: >"$T/rules"

# ---- issue 14.8: the second Ctrl-C against an endpoint that stops answering --------------
# Three uploads in flight (held back by --max-upload-rate); every AbortMultipartUpload
# stalls at the proxy for 60 s. The aborts must go out together, the hold end on their
# short timeout, and the next start's sweep abort what is left.
printf '%s\n' '* delay always op=abort secs=60' >"$T/rules"
for i in 1 2 3; do printf 'deliver q%s.tar.gz %s barcode=q%s\n' "$i" "$T/big" "$i"; done >"$T/i.jobs"
# SIGINT once 3 Creates and all 9 parts have started.
interrupted i "$T/i.out" '^added 12$' 30 --dest "s3://$BUCKET/i" --part-size 5MiB \
	--max-upload-rate 1MiB --abort-deadline-ms 20000 "$T/i.jobs"
deletes=$(grep -cE '^OK DELETE /quire-test/i/q[123].tar.gz\?uploadId=' "$SIGV4_LOG")
answered=$(grep -cE '/i/q[123].tar.gz.*op=abort' "$S3PROXY_LOG")
if [ "$rc" -eq 130 ] && has i '^abort: 3 transfers in flight after abort\(\)$' &&
	has i '^abort: holds released after [0-9]+ ms$' && [ "$deletes" -eq 3 ] && [ "$answered" -eq 0 ]; then
	pass "s3 sink: second Ctrl-C: 3 aborts sent at once, the worker let go before any was answered"
else
	fail "s3 sink: quit with a stalled endpoint" "rc=$rc deletes=$deletes answered=$answered $(show i)"
fi
grep 'holds released' "$T/i.out" | sed 's/^/    (/; s/$/)/'
left=$(s3client list-multipart "$BUCKET" i/ | grep -c .)
: >"$T/rules"
expect_exit 0 "s3 sink: the next start over the leftovers exits 0" \
	sink i2 --dest "s3://$BUCKET/i" "$T/none.jobs"
if [ "$left" -eq 3 ] && grep -q 'aborted 3 unfinished multipart uploads under s3://quire-test/i/' "$T/i2.err"; then
	pass "s3 sink: the next start's sweep aborts the 3 uploads left"
else
	fail "s3 sink: sweep after a quit" "left=$left $(cat "$T/i2.err")"
fi
no_uploads_left "s3 sink: none left after the sweep" i
for i in 1 2 3; do no_object "s3 sink: no object q$i after the quit" "i/q$i.tar.gz"; done

# The same quit against an endpoint that answers: the abort completes, nothing is left.
printf 'deliver j.tar.gz %s barcode=j\n' "$T/big" >"$T/j.jobs"
interrupted j "$T/j.out" '^added 4$' 30 --dest "s3://$BUCKET/j" --part-size 5MiB \
	--max-upload-rate 1MiB "$T/j.jobs"
if [ "$rc" -eq 130 ] && has j '^abort: 1 transfers in flight after abort\(\)$' &&
	has j '^abort: holds released' &&
	grep -qE '^DELETE /quire-test/j/j.tar.gz\?uploadId=[^ ]* 204 .*op=abort' "$S3PROXY_LOG"; then
	pass "s3 sink: second Ctrl-C mid-upload: AbortMultipartUpload answered, exit 130"
else
	fail "s3 sink: quit mid-upload" "rc=$rc $(show j)"
fi
no_uploads_left "s3 sink: no upload left after the quit" j
no_object "s3 sink: no object after the quit" j/j.tar.gz

# ---- failures: permanent 403 on a PUT; SlowDown on a part (transient, upload aborted) -------
printf '%s\n' 'deny.tar.gz 403 always op=put' 'slow.tar.gz slowdown 1 op=part' >"$T/rules"
printf 'deliver %s %s barcode=x\n' deny.tar.gz "$T/small" slow.tar.gz "$T/big" >"$T/k.jobs"
expect_exit 1 "s3 sink: a 403 and a SlowDown fail their deliveries (exit 1)" \
	sink k --dest "s3://$BUCKET/k" --part-size 5MiB "$T/k.jobs"
if has k '^deliver deny.tar.gz rc=-5 transient=0 detail=s3 PUT k/deny.tar.gz: HTTP 403 AccessDenied: injected by faultserver$' &&
	has k '^deliver slow.tar.gz rc=-5 transient=1 detail=s3 UploadPart [123] k/slow.tar.gz: HTTP 503 SlowDown' &&
	grep -qE '^DELETE /quire-test/k/slow.tar.gz\?uploadId=[^ ]* 204 .*op=abort' "$S3PROXY_LOG"; then
	pass "s3 sink: 403 permanent, SlowDown transient, the multipart upload aborted first"
else
	fail "s3 sink: failures" "$(show k)"
fi
no_uploads_left "s3 sink: nothing left after the failures" k
: >"$T/rules"
