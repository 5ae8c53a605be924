# shellcheck shell=bash
# quire extract over archives already stored in S3 (s3://BUCKET/PREFIX), against s3rver
# behind the SigV4-checking proxy: mkbook archives put under a prefix with the AWS SDK
# (beside a non-archive, a derived output, a nested archive and archives under other
# prefixes, all to be ignored), read into directories, and compared byte for byte with
# quire extract over the same archives in a directory. Then: a listing of more than one
# page (1,200 filler objects before the archives, s3rver honours max-keys and continuation
# tokens: the archives come on the second page), a rerun that skips, a listing page that
# fails once and is asked again, a GET reset mid-body that resumes, a 203 to a GET (named by
# its status, asked again), a book of the first page read while the second page is held
# (the listing is streamed), a listing refused after its first page, a stored name that is
# no barcode, and the configuration
# errors (a missing bucket, refused credentials, an endpoint that does not answer), each one
# line naming what is wrong, exit 2, nothing made, no secret in it; an empty prefix is said.
# Then --stall-timeout cutting a stalled GET, and HTTPS through nginx with the test CA:
# with --ca-file (source and S3 destination), without it, and with a CA file that is not
# there. Last, a lying S3 (s3liar.py): continuation tokens that go round, a page over 1 MiB,
# and ranged GETs that stop short of the end or run past it.
MKBOOK=$ROOT/tools/mkbook
mkdir -p "$T/src"
BOOKS=(S3B01 S3B02 S3B03 S3AWK S3TAMP)
for b in S3B01 S3B02 S3B03; do "$MKBOOK" --pages 20 --image-size 30000 "$T/src" "$b" >/dev/null; done
"$MKBOOK" --pages 16 --image-size 3000 --case bad-utf8 --case cjk --case missing-pages \
	--case subfolder --case repeat-fields "$T/src" S3AWK >/dev/null
"$MKBOOK" --pages 8 --image-size 3000 --case tamper "$T/src" S3TAMP >/dev/null
"$MKBOOK" --pages 4 --image-size 1000 "$T/elsewhere" NESTED >/dev/null
"$MKBOOK" --pages 4 --image-size 1000 "$T/elsewhere" OTHER >/dev/null

start_s3rver quire-test || exit 1 # with Node's legacy provider, for paged listings
BUCKET=$S3_BUCKET
put() { s3client put "$BUCKET" "$1" "$2" >/dev/null || fail "putting $1" "s3client failed"; }
for b in "${BOOKS[@]}"; do put "books/$b.tar.gz" "$T/src/$b.tar.gz"; done
echo "not an archive" >"$T/notes.txt"
put books/notes.txt "$T/notes.txt"
put books/S3B01_ocr.jsonl.gz "$T/notes.txt"
put books/sub/NESTED.tar.gz "$T/elsewhere/NESTED.tar.gz"
put other/OTHER.tar.gz "$T/elsewhere/OTHER.tar.gz"
put books2/OTHER.tar.gz "$T/elsewhere/OTHER.tar.gz"

# The reference: the same archives from a directory (S3TAMP's checksum.md5 does not
# match: exit 1).
mkdir -p "$T/ocr-dir" "$T/marc-dir"
expect_exit 1 "directory reference: exit 1 (one tampered book)" "$QUIRE" extract \
	--ocr-dest "$T/ocr-dir" --marc-dest "$T/marc-dir" --verify-contents \
	--journal "$T/dir.journal" "$T/src" 2>"$T/dir.err"

# Every request quire sends is checked by the AWS SDK's own signer on its way to s3rver.
start_sigv4check || exit 1
SIGNED=$S3_ENDPOINT
# extract_s3 NAME URL [options]: journal $T/NAME.journal, stderr $T/NAME.err, outputs in
# $T/ocr-NAME and $T/marc-NAME.
extract_s3() {
	local name=$1 url=$2
	shift 2
	"$QUIRE" extract --ocr-dest "$T/ocr-$name" --marc-dest "$T/marc-$name" --verify-contents \
		--s3-endpoint "$S3_ENDPOINT" --journal "$T/$name.journal" "$@" "$url" 2>"$T/$name.err"
}
mkdir -p "$T/ocr-s3" "$T/marc-s3"
expect_exit 1 "s3 prefix: exit 1 (one tampered book), as from the directory" \
	extract_s3 s3 "s3://$BUCKET/books"
journaled() { grep -P "\t$2\t" "$1" | cut -f2 | sort | tr '\n' ' '; }
check "s3 prefix: the five archives read ok, the others not" \
	test "$(journaled "$T/s3.journal" ok)" = "S3AWK S3B01 S3B02 S3B03 S3TAMP "
check "s3 prefix: nothing else journaled (notes, derived output, nested, other prefixes)" \
	test "$(cut -f2 "$T/s3.journal" | sort -u | tr '\n' ' ')" = "S3AWK S3B01 S3B02 S3B03 S3TAMP "
check "s3 prefix: the tampered member named as from the directory" \
	test "$(grep -P '\tS3TAMP\t' "$T/s3.journal" | cut -f6)" = \
	"$(grep -P '\tS3TAMP\t' "$T/dir.journal" | cut -f6)"
for b in "${BOOKS[@]}"; do
	same_file "$b: OCR from S3 byte-identical to the directory's" \
		"$T/ocr-s3/${b}_ocr.jsonl.gz" "$T/ocr-dir/${b}_ocr.jsonl.gz"
	same_file "$b: MARC from S3 byte-identical to the directory's" \
		"$T/marc-s3/${b}_marc.json" "$T/marc-dir/${b}_marc.json"
done
check "s3 prefix: no other output" test "$(find "$T/ocr-s3" "$T/marc-s3" -type f | wc -l)" -eq 10
check "s3 prefix: no crash report" test -z "$(grep -E 'Sanitizer|runtime error' "$T/s3.err")"
bad=$(grep -v '^OK ' "$SIGV4_LOG" | head -3)
check "every request signed right (SigV4 checked by the AWS SDK's signer)${bad:+: $bad}" test -z "$bad"
check "listed with ListObjectsV2 under books/, delimiter /" \
	grep -qE '^OK GET /quire-test\?delimiter=%2F&encoding-type=url&list-type=2&max-keys=1000&prefix=books%2F ' \
	"$SIGV4_LOG"
check "each archive fetched once by GET" test "$(grep -cE '^OK GET /quire-test/books/S3[A-Z0-9]+\.tar\.gz ' \
	"$SIGV4_LOG")" -eq 5
check "nothing fetched outside the prefix's archives" \
	test -z "$(grep -E '^OK GET /quire-test/(other|books2|books/sub|books/notes|books/S3B01_ocr)' "$SIGV4_LOG")"

# A rerun skips what is done (S3TAMP too: its outputs were made, its mismatch journaled),
# as from a directory.
expect_exit 0 "rerun: exit 0" extract_s3 s3 "s3://$BUCKET/books"
check "rerun: the five books skipped" grep -q "ok: 0, skipped: 5, failed: 0" "$T/s3.err"
check "rerun: no archive fetched again" test "$(grep -cE '^OK GET /quire-test/books/S3[A-Z0-9]+\.tar\.gz ' \
	"$SIGV4_LOG")" -eq 5

# More than one page: 1,200 small objects that sort before the archives, put in one
# process (the SDK), then the archives under the same prefix.
node --input-type=module - "$BUCKET" <<'EOF' || fail "putting the filler objects" "node failed"
import { createRequire } from 'node:module';
const require = createRequire(process.env.ROOT + '/tools/package.json');
const { S3Client, PutObjectCommand } = require('@aws-sdk/client-s3');
process.removeAllListeners('warning');
const c = new S3Client({ endpoint: process.env.S3RVER_ENDPOINT, forcePathStyle: true,
  region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
const puts = [];
for (let i = 0; i < 1200; i++) {
  const key = `paged/0filler-${String(i).padStart(5, '0')}.txt`;
  puts.push(c.send(new PutObjectCommand({ Bucket: process.argv[2], Key: key, Body: 'x' })));
  if (puts.length === 50) await Promise.all(puts.splice(0));
}
await Promise.all(puts);
EOF
for b in S3B01 S3B02; do put "paged/$b.tar.gz" "$T/src/$b.tar.gz"; done
mkdir -p "$T/ocr-paged" "$T/marc-paged"
expect_exit 0 "two pages: exit 0" extract_s3 paged "s3://$BUCKET/paged"
check "two pages: the second asked by continuation token" \
	grep -qE '^OK GET /quire-test\?continuation-token=[^&]+&delimiter=%2F&.*prefix=paged%2F ' "$SIGV4_LOG"
check "two pages: both archives (on the second page) read ok" \
	test "$(journaled "$T/paged.journal" ok)" = "S3B01 S3B02 "
same_file "two pages: S3B02's OCR as from the directory" "$T/ocr-paged/S3B02_ocr.jsonl.gz" \
	"$T/ocr-dir/S3B02_ocr.jsonl.gz"

# Faults, through a proxy between quire and the signature check: a listing page that fails
# once is asked again; a GET reset in the middle of a body resumes from where it broke.
: >"$T/rules"
start_s3_faultproxy --rules "$T/rules" || exit 1
printf '%s\n' '* ok 1 op=list' '* 503 1 op=list' 'S3B02 reset 1 op=get at=60000' >"$T/rules"
mkdir -p "$T/ocr-fault" "$T/marc-fault"
expect_exit 0 "faults: exit 0" extract_s3 fault "s3://$BUCKET/paged"
check "faults: the page that failed was asked again" grep -q "HTTP 503.*asking again" "$T/fault.err"
check "faults: both books ok" test "$(journaled "$T/fault.journal" ok)" = "S3B01 S3B02 "
check "faults: the reset GET resumed with a range" grep -qE '^GET /quire-test/paged/S3B02\.tar\.gz 206 ' \
	"$S3PROXY_LOG"
same_file "faults: S3B02's OCR as from the directory" "$T/ocr-fault/S3B02_ocr.jsonl.gz" \
	"$T/ocr-dir/S3B02_ocr.jsonl.gz"

# A success that is not the object (a 203 from something in the way): named by its status
# (not by whatever the stack held), and asked again.
printf '%s\n' 'S3B01 203 1 op=get' >"$T/rules"
mkdir -p "$T/ocr-odd2xx" "$T/marc-odd2xx"
expect_exit 0 "a 203 to a GET: exit 0 (asked again)" extract_s3 odd2xx "s3://$BUCKET/paged"
check "a 203 to a GET: named, with its status" grep -qF \
	"S3B01: attempt 1 failed (source: s3://$BUCKET/paged/S3B01.tar.gz: HTTP 203, not the object (200));" \
	"$T/odd2xx.err"
check "a 203 to a GET: both books ok" test "$(journaled "$T/odd2xx.journal" ok)" = "S3B01 S3B02 "
: >"$T/rules"

# Streamed: a book of the first page is read while the second page is still awaited (the
# proxy holds it), and SIGTERM then ends the run at once, the listing with it.
put paged/00EARLY.tar.gz "$T/src/S3B03.tar.gz"
printf '%s\n' '* ok 2 op=list' '* delay 1 op=list secs=60' >"$T/rules"
mkdir -p "$T/ocr-stream" "$T/marc-stream"
"$QUIRE" extract --ocr-dest "$T/ocr-stream" --marc-dest "$T/marc-stream" --s3-endpoint "$S3_ENDPOINT" \
	--journal "$T/stream.journal" "s3://$BUCKET/paged" 2>"$T/stream.err" &
pid=$!
if await "streamed: the first page's book read" wait_for_line "$T/stream.journal" $'\t00EARLY\tok\t' 30; then
	check "streamed: ... while the second page is held" kill -0 "$pid"
	check "streamed: ... and none of the second page's books listed yet" \
		test -z "$(grep -E 'S3B0[12]' "$T/stream.journal")"
fi
kill -TERM "$pid" 2>/dev/null
wait_exit "$pid" 10
rc=$?
check "streamed: SIGTERM during the held page: exit 130 (not the page's 60 s; exit $rc)" test "$rc" -eq 130
check "streamed: the listing stopped quietly" test -z "$(grep -i 'listing' "$T/stream.err")"
: >"$T/rules"

# A listing refused after its first page (a 403 is not worth asking again): the first
# page's books are read, the break named, exit 1.
# (Other rule lines than before: the proxy keeps a line's count across rewrites.)
printf '%s\n' '/quire-test* ok 2 op=list' '/quire-test* 403 always op=list' >"$T/rules"
mkdir -p "$T/ocr-broken" "$T/marc-broken"
expect_exit 1 "listing broken off: exit 1" extract_s3 broken "s3://$BUCKET/paged"
check "listing broken off: the first page's book read" test "$(journaled "$T/broken.journal" ok)" = "00EARLY "
check "listing broken off: said, once" test "$(grep -c \
	"listing s3://$BUCKET/paged: HTTP 403 AccessDenied.*; the archives after those listed are not read" \
	"$T/broken.err")" -eq 1
: >"$T/rules"

# A stored name that is no barcode: named with its prefix, counted failed.
put "odd/has space.tar.gz" "$T/src/S3B01.tar.gz"
mkdir -p "$T/ocr-odd" "$T/marc-odd"
expect_exit 1 "a name that is no barcode: exit 1" extract_s3 odd "s3://$BUCKET/odd"
check "a name that is no barcode: named with its prefix" \
	grep -q "^quire: s3://$BUCKET/odd/has space.tar.gz: no barcode in that name" "$T/odd.err"

# Configuration errors: one line naming the bucket/prefix (and the endpoint when it does
# not answer), exit 2, no output, no journal, no secret. The first request is the check.
# config_error NAME WANT_REGEX [extract_s3 ARGS...]
config_error() {
	local name=$1 want=$2
	shift 2
	expect_exit 2 "$name: exit 2" extract_s3 "$name" "$@"
	check "$name: one line" test "$(wc -l <"$T/$name.err")" -eq 1
	if grep -qE "$want" "$T/$name.err"; then pass "$name: says what: $(cat "$T/$name.err")"; else
		fail "$name: says what" "$(cat "$T/$name.err")"
	fi
	check "$name: nothing made" test ! -e "$T/ocr-$name" -a ! -e "$T/marc-$name" -a ! -e "$T/$name.journal"
	check "$name: no secret in it" test -z "$(grep -F "$AWS_SECRET_ACCESS_KEY" "$T/$name.err")"
}
S3_ENDPOINT=$SIGNED config_error nobucket 'source s3://no-such-bucket/books: HTTP 404 NoSuchBucket' \
	s3://no-such-bucket/books
printf '%s\n' '* 403 always op=list' >"$T/rules"
AWS_SECRET_ACCESS_KEY=wrongSECRETdoNotPrint config_error refused \
	"source s3://$BUCKET/books: HTTP 403 AccessDenied" "s3://$BUCKET/books"
port=$(free_port)
S3_ENDPOINT=http://127.0.0.1:$port config_error unreachable \
	"source s3://$BUCKET/books: cannot reach http://127.0.0.1:$port/" "s3://$BUCKET/books"
: >"$T/rules"

# A prefix with no archives: said, nothing read.
expect_exit 0 "empty prefix: exit 0" extract_s3 empty "s3://$BUCKET/nothing-here"
check "empty prefix: said so" grep -q "s3://$BUCKET/nothing-here: no archives (NAME.tar.gz) under that prefix" \
	"$T/empty.err"

# --stall-timeout, as quire run's: a GET that stops sending for 30 s is cut after 1 s and
# resumed with a range, so the book is read ok long before the server would go on. Under
# the default (60 s) the deadline below would pass first.
mkdir -p "$T/ocr-ref" "$T/marc-ref"
expect_exit 0 "reference for OTHER (a file): exit 0" "$QUIRE" extract --ocr-dest "$T/ocr-ref" \
	--marc-dest "$T/marc-ref" --journal "$T/ref.journal" "$T/elsewhere/OTHER.tar.gz" 2>"$T/ref.err"
printf '%s\n' 'OTHER stall 1 op=get secs=30' >"$T/rules"
mkdir -p "$T/ocr-stall" "$T/marc-stall"
extract_s3 stall "s3://$BUCKET/books2" --stall-timeout 1 &
pid=$!
wait_exit "$pid" 25
rc=$?
check "--stall-timeout 1: exit 0 well within the 30 s stall (exit $rc)" test "$rc" -eq 0
check "--stall-timeout 1: the stall cut after 1 s" \
	grep -qE 'OTHER: attempt 1 failed .*the last 1 seconds' "$T/stall.err"
check "--stall-timeout 1: resumed with a range" \
	grep -qE '^GET /quire-test/books2/OTHER\.tar\.gz 206 ' "$S3PROXY_LOG"
same_file "--stall-timeout 1: OTHER's OCR as from the file" "$T/ocr-stall/OTHER_ocr.jsonl.gz" \
	"$T/ocr-ref/OTHER_ocr.jsonl.gz"
: >"$T/rules"

# HTTPS: nginx with the test CA in front of s3rver. --ca-file makes the S3 source and an
# S3 destination trust it; without it the certificate is refused, and a CA file that
# cannot be read is named. Either failure: one line, exit 2, nothing made.
mkdir -p "$T/www"
# shellcheck disable=SC2034 # read by start_nginx
NGINX_LOCATIONS="location /$BUCKET { proxy_pass $S3RVER_ENDPOINT; }"
start_nginx "$T/www" || exit 1
mkdir -p "$T/ocr-tls" "$T/marc-tls"
S3_ENDPOINT=$NGINX_HTTPS expect_exit 0 "https with --ca-file: exit 0" \
	extract_s3 tls "s3://$BUCKET/books2" --ca-file "$CA_FILE"
check "https with --ca-file: OTHER read ok" test "$(journaled "$T/tls.journal" ok)" = "OTHER "
check "https with --ca-file: listed and fetched through TLS" \
	grep -qE '^GET /quire-test/books2/OTHER\.tar\.gz 200 [0-9]+ https ' "$NGINX_LOG"
same_file "https with --ca-file: OTHER's OCR as from the file" "$T/ocr-tls/OTHER_ocr.jsonl.gz" \
	"$T/ocr-ref/OTHER_ocr.jsonl.gz"
expect_exit 0 "https with --ca-file, S3 destination: exit 0" "$QUIRE" extract \
	--ocr-dest "s3://$BUCKET/tls-out" --s3-endpoint "$NGINX_HTTPS" --ca-file "$CA_FILE" \
	--staging "$T/tls-staging" --journal "$T/tls-out.journal" "$T/elsewhere/OTHER.tar.gz" \
	2>"$T/tls-out.err"
check "https with --ca-file, S3 destination: uploaded through TLS" \
	grep -qE '^PUT /quire-test/tls-out/OTHER_ocr\.jsonl\.gz 200 [0-9]+ https ' "$NGINX_LOG"
s3_get "$BUCKET" tls-out/OTHER_ocr.jsonl.gz "$T/tls-out.ocr.gz" >/dev/null 2>&1
same_file "https with --ca-file, S3 destination: the OCR stored whole" "$T/tls-out.ocr.gz" \
	"$T/ocr-ref/OTHER_ocr.jsonl.gz"
S3_ENDPOINT=$NGINX_HTTPS config_error tls-noca "source s3://$BUCKET/books2: .*certificate" \
	"s3://$BUCKET/books2"
S3_ENDPOINT=$NGINX_HTTPS config_error tls-badca "$T/no-such-ca\.pem" "s3://$BUCKET/books2" \
	--ca-file "$T/no-such-ca.pem"

# A lying listing (s3liar.py). Continuation tokens that go round (t1, t2, t1, ...), where
# each page differs from the one before: the round is seen within a few pages and named
# (without it, every page would be listed again and again, up to 100,000 of them).
start_s3liar cycle || exit 1
S3_ENDPOINT=$LIAR_URL expect_exit 1 "tokens going round: exit 1" extract_s3 cycle "s3://$BUCKET/liar"
check "tokens going round: said, naming the listing" grep -q \
	"^quire: listing s3://$BUCKET/liar: the continuation tokens go round" "$T/cycle.err"
pages=$(grep -c 'list-type=2' "$LIAR_LOG")
check "tokens going round: seen within 4 pages (asked $pages)" test "$pages" -le 4
# A page larger than 1 MiB: named as that, and not asked again (it would come the same).
start_s3liar huge || exit 1
S3_ENDPOINT=$LIAR_URL expect_exit 1 "a page over 1 MiB: exit 1" extract_s3 huge "s3://$BUCKET/liar"
check "a page over 1 MiB: said so" grep -q \
	"^quire: listing s3://$BUCKET/liar: an answer larger than 1 MiB; the archives after" \
	"$T/huge.err"
check "a page over 1 MiB: asked once" test "$(grep -c 'list-type=2' "$LIAR_LOG")" -eq 1
# GETs that lie about their range (s3liar.py, S3B01 from the source directory): the first
# a 200 cut off half-way (resumed), then a 206 that stops short of the end while its
# Content-Range says so (the rest asked again, not a truncated archive taken whole), or a
# 206 carrying junk past the object's end (the archive's reader stops at its end). Either
# way S3B01 comes out as from the directory.
for lie in short long; do
	start_s3liar "$lie" --object "$T/src/S3B01.tar.gz" || exit 1
	mkdir -p "$T/ocr-$lie" "$T/marc-$lie"
	S3_ENDPOINT=$LIAR_URL expect_exit 0 "a $lie 206: exit 0" extract_s3 "$lie" "s3://$BUCKET/liar"
	check "a $lie 206: S3B01 ok" test "$(journaled "$T/$lie.journal" ok)" = "S3B01 "
	same_file "a $lie 206: S3B01's OCR as from the directory" "$T/ocr-$lie/S3B01_ocr.jsonl.gz" \
		"$T/ocr-dir/S3B01_ocr.jsonl.gz"
done
check "a short 206: said where it ended" grep -q \
	"S3B01: attempt 2 failed (source: liar/S3B01.tar.gz: HTTP 206 ended at byte [0-9]* of [0-9]*)" "$T/short.err"
