# shellcheck shell=bash
# quire run reading inside the books as they stream: gpg-made archives (tools/mkbook) from
# nginx into a directory, BARCODE_ocr.jsonl.gz into a directory and BARCODE_marc.json into
# s3rver (read back with the AWS SDK), compared with the Python pipeline's way
# (contents_ref.py: tarfile, json, ElementTree) byte for byte and key for key. Then: a
# tampered member is delivered with the mismatch journaled, and refused with
# --require-checksums; a plain (not tar.gz) corpus gets its outcome and is still
# delivered; a book whose MDC fails publishes nothing; a compressed OpenPGP message whose
# plaintext outgrows the reader's buffers still reads right; a kill -9 mid-run leaves no
# derived output half-written and a rerun makes the missing ones.
REF=$ROOT/tests/e2e/contents_ref.py
MKBOOK=$ROOT/tools/mkbook
mkdir -p "$T/src"
(umask 077 && head -c 24 /dev/urandom | base64 >"$PASSFILE")

book() { "$MKBOOK" --gpg "$PASSFILE" "$@" >/dev/null; }
for i in 1 2 3; do book --pages 30 --image-size 20000 "$T/src" "RC0$i"; done
book --pages 24 --image-size 4000 --case bad-utf8 --case cjk --case rtl --case control \
	--case crlf --case missing-pages --case subfolder --case repeat-fields "$T/src" RCAWK
book --pages 12 --image-size 3000 --case tamper "$T/src" RCTAMP
# The plain corpus the other suites use: random bytes, no tar.gz.
make_books "$T/plainsrc" 2 200K PLAIN >/dev/null
cp "$T/plainsrc"/*.gpg "$T/src/" && cp "$T/plain"/PLAIN*.tar.gz "$T/src/"
# RCBAD: RC01 with one ciphertext byte flipped near the end: its MDC cannot match.
python3 - "$T/src/RC01.tar.gz.gpg" "$T/src/RCBAD.tar.gz.gpg" <<'EOF'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[len(b) - 200] ^= 0x40
open(sys.argv[2], "wb").write(b)
EOF
# RCZIP: text pages stored uncompressed in the tar.gz (gzip level 0), in a zlib-compressed
# OpenPGP message: a chunk of ciphertext inflates to megabytes of plaintext.
"$MKBOOK" --pages 40 --image-size 100 --text-size 500000 --gzip-level 0 "$T/src" RCZIP >/dev/null
mkdir -p "$T/gnupg-zip" && chmod 700 "$T/gnupg-zip"
on_exit "gpgconf --homedir '$T/gnupg-zip' --kill all >/dev/null 2>&1"
gpg --batch --quiet --homedir "$T/gnupg-zip" --pinentry-mode loopback --passphrase-file "$PASSFILE" \
	--symmetric --cipher-algo AES256 --s2k-count 65536 --compress-algo zlib -z 9 \
	-o "$T/src/RCZIP.tar.gz.gpg" "$T/src/RCZIP.tar.gz"
GOOD=(RC01 RC02 RC03 RCAWK RCTAMP RCZIP)
printf '%s\n' "${GOOD[@]}" PLAIN0001 PLAIN0002 RCBAD >"$T/list"

start_nginx "$T/src" || exit 1
start_s3rver quire-test || exit 1
BUCKET=$S3_BUCKET

# run_contents NAME [options]: quire run from nginx; journal $T/NAME.journal, stderr
# $T/NAME.err; the caller gives the destinations.
# args NAME: ARGS for quire run from nginx into the S3 endpoint of now, with journal
# $T/NAME.journal and staging $T/staging-NAME.
args() {
	ARGS=(run --source "$NGINX_HTTP/{barcode}.tar.gz.gpg" --passphrase-file "$PASSFILE"
		--s3-endpoint "$S3_ENDPOINT" --journal "$T/$1.journal" --staging "$T/staging-$1")
}
run_contents() {
	local name=$1
	shift
	args "$name"
	"$QUIRE" "${ARGS[@]}" "$@" 2>"$T/$name.err"
}

# ref BARCODE: the Python pipeline's outputs of the plaintext, in $T/ref.
mkdir -p "$T/ref"
ref() {
	[ -e "$T/ref/$1.json" ] && return 0
	python3 "$REF" ocr "$T/src/$1.tar.gz" "$T/ref/$1.jsonl" &&
		python3 "$REF" marc "$T/src/$1.tar.gz" "$T/ref/$1.json"
}
# same_marc GOT WANT: the same keys in the same order, the same values.
same_marc() {
	python3 - "$1" "$2" <<'EOF'
import json, sys
got = json.load(open(sys.argv[1], encoding="utf-8"))
want = json.load(open(sys.argv[2], encoding="utf-8"))
if list(got) != list(want):
    sys.exit(f"keys differ: {list(got)} vs {list(want)}")
bad = [k for k in want if got[k] != want[k]]
sys.exit("; ".join(f"{k}: quire {got[k]!r} python {want[k]!r}" for k in bad) if bad else 0)
EOF
}
# outputs_right BARCODE OCRDIR MARCPREFIX: the OCR file in OCRDIR and the MARC object at
# s3://$BUCKET/MARCPREFIX/ equal the reference.
outputs_right() {
	local bc=$1
	ref "$bc" || return 1
	cmp -s <(zcat "$2/${bc}_ocr.jsonl.gz" 2>/dev/null) "$T/ref/$bc.jsonl" || {
		echo "    $bc: OCR differs from the reference" >&2
		return 1
	}
	s3_get "$BUCKET" "$3/${bc}_marc.json" "$T/got-$bc.json" 2>/dev/null || {
		echo "    $bc: no MARC object" >&2
		return 1
	}
	same_marc "$T/got-$bc.json" "$T/ref/$bc.json" >&2
}

# ---- one run: every kind of book -----------------------------------------------------------
expect_exit 1 "run with --ocr-dest DIR --marc-dest s3://: exit 1 (RCBAD's MDC)" \
	run_contents one --dest "$T/dest" --ocr-dest "$T/ocr" --marc-dest "s3://$BUCKET/marc" \
	--workers 4 "$T/list"
for bc in "${GOOD[@]}"; do
	check "$bc: OCR byte for byte, MARC key for key" outputs_right "$bc" "$T/ocr" marc
done
for bc in "${GOOD[@]}" PLAIN0001 PLAIN0002; do
	same_file "$bc: the raw archive delivered byte-exact" "$T/src/$bc.tar.gz" "$T/dest/$bc.tar.gz"
done
check "a good book's journal line: ok, contents=ok checksum=ok and its counts" \
	grep -qP '\tRC01\tok\t\d+\t[0-9a-f]{64}\tcontents=ok checksum=ok pages=30 images=30 texts=30 hocr=30 members=92\t' \
	"$T/one.journal"
read -r want_check want_member < <(python3 "$REF" check "$T/src/RCTAMP.tar.gz")
check "tampered member: delivered, the mismatch journaled ($want_check $want_member)" \
	grep -qP "\tRCTAMP\tok\t.*checksum=$want_check member=$want_member " "$T/one.journal"
check "plain corpus: delivered, journaled contents=not-tar-gz" \
	grep -qP '\tPLAIN0001\tok\t\d+\t[0-9a-f]{64}\tcontents=not-tar-gz ' "$T/one.journal"
check "plain corpus: no derived output" \
	test ! -e "$T/ocr/PLAIN0001_ocr.jsonl.gz" -a ! -e "$T/ocr/PLAIN0002_ocr.jsonl.gz"
check "MDC failure: journaled failed" grep -qP '\tRCBAD\tfailed\t0\t-\t' "$T/one.journal"
check "MDC failure: nothing published, derived outputs included" \
	test ! -e "$T/dest/RCBAD.tar.gz" -a ! -e "$T/ocr/RCBAD_ocr.jsonl.gz" -a \
	-z "$(s3client list "$BUCKET" marc/RCBAD)"
check "the OCR destination holds outputs only" \
	test -z "$(find "$T/ocr" -mindepth 1 ! -name '*_ocr.jsonl.gz')"
check "the MARC objects are the good books' only" test "$(s3client list "$BUCKET" marc/ | cut -f1 | sort | tr '\n' ' ')" \
	= "$(printf 'marc/%s_marc.json\n' "${GOOD[@]}" | sort | tr '\n' ' ')"
check "status counts: contents read 5, checksum problems 1, unreadable 2" \
	grep -q 'contents read: 5, checksum problems: 1, unreadable: 2\]' "$T/one.err"
meta=$(s3_head_json "$BUCKET" marc/RC02_marc.json)
check "MARC object's metadata: barcode, acquisition_date" python3 -c '
import json, re, sys
m = json.loads(sys.argv[1])["Metadata"]
assert m.get("barcode") == "RC02", m
assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", m.get("acquisition_date", "")), m' "$meta"
check "no crash report" test -z "$(grep -E 'Sanitizer|runtime error' "$T/one.err")"

# ---- the OCR into S3: its metadata, and by multipart ---------------------------------------
# s3rver lacks the multipart API: the fault proxy emulates it (tests/e2e/faultserver.py).
: >"$T/rules"
start_s3_faultproxy --s3rver-dir "$S3RVER_DIR" --rules "$T/rules" || exit 1
printf 'RC02\nRCAWK\nRCZIP\n' >"$T/list2"
expect_exit 0 "--ocr-dest s3:// and --marc-dest DIR: exit 0" run_contents s3ocr --dest "$T/dest2" \
	--ocr-dest "s3://$BUCKET/full" --marc-dest "$T/marc2" --part-size 5MiB "$T/list2"
for bc in RCAWK RCZIP; do
	s3_get "$BUCKET" "full/${bc}_ocr.jsonl.gz" "$T/$bc.jsonl.gz"
	check "$bc: OCR object byte for byte" cmp -s <(zcat "$T/$bc.jsonl.gz") "$T/ref/$bc.jsonl"
	check "$bc: MARC file key for key" same_marc "$T/marc2/${bc}_marc.json" "$T/ref/$bc.json"
done
zip_size=$(stat -c %s "$T/RCZIP.jsonl.gz")
check "RCZIP's OCR ($zip_size bytes) went by multipart, in parts of 5 MiB" \
	test "$zip_size" -gt $((5 << 20)) -a "$(grep -c 'uploadId=' "$S3PROXY_LOG")" -ge 3
meta=$(s3_head_json "$BUCKET" full/RCAWK_ocr.jsonl.gz)
check "OCR object's metadata: barcode, acquisition_date, page_count" python3 -c '
import json, sys
m = json.loads(sys.argv[1])["Metadata"]
lines = sum(1 for _ in open(sys.argv[2], encoding="utf-8"))
assert m.get("barcode") == "RCAWK" and m.get("page_count") == str(lines), (m, lines)
assert m.get("acquisition_date"), m' "$meta" "$T/ref/RCAWK.jsonl"

# ---- skip-unchanged (S3) waits for the derived outputs too ------------------------------------
gets() { grep -c "^GET /$1.tar.gz.gpg 200 " "$NGINX_LOG"; }
expect_exit 0 "raw books into S3, no derived outputs: exit 0" run_contents rawA \
	--dest "s3://$BUCKET/raw" "$T/list2"
before=$(gets RC02)
expect_exit 0 "again with --ocr-dest (a fresh journal): exit 0" run_contents rawB \
	--dest "s3://$BUCKET/raw" --ocr-dest "$T/ocrB" "$T/list2"
check "unchanged at the source, but without its OCR: fetched again, the OCR made" \
	test "$(gets RC02)" -eq $((before + 1)) -a -s "$T/ocrB/RC02_ocr.jsonl.gz"
expect_exit 0 "a third time: exit 0" run_contents rawC --dest "s3://$BUCKET/raw" \
	--ocr-dest "$T/ocrB" "$T/list2"
check "unchanged at the source, its OCR there: skipped, not fetched" \
	test "$(gets RC02)" -eq $((before + 1)) -a "$(grep -c $'\tskipped\t' "$T/rawC.journal")" -eq 3

# ---- --verify-contents alone, and a destination that is not there ---------------------------
expect_exit 0 "--verify-contents alone: exit 0" run_contents verify --dest "$T/dest5" \
	--verify-contents "$T/list2"
check "--verify-contents alone: the verdict journaled, no output named" \
	grep -qP '\tRC02\tok\t.*\tcontents=ok checksum=ok pages=30 images=30 texts=30 hocr=30 members=92\t' \
	"$T/verify.journal"
expect_exit 2 "--marc-dest into a bucket that is not there: exit 2" run_contents nobucket \
	--dest "$T/dest6" --marc-dest s3://no-such-bucket/m "$T/list2"
check "... the message names --marc-dest" grep -q '^quire: --marc-dest s3://no-such-bucket/m: ' \
	"$T/nobucket.err"

# ---- --require-checksums ---------------------------------------------------------------------
expect_exit 1 "--require-checksums: exit 1" run_contents req --dest "$T/dest3" \
	--ocr-dest "$T/ocr3" --require-checksums "$T/list"
check "--require-checksums: the tampered book failed, the mismatch named" \
	grep -qP "\tRCTAMP\tfailed\t.*checksum=$want_check member=$want_member .*refused=--require-checksums" \
	"$T/req.journal"
check "--require-checksums: nothing of it delivered" \
	test ! -e "$T/dest3/RCTAMP.tar.gz" -a ! -e "$T/ocr3/RCTAMP_ocr.jsonl.gz"
check "--require-checksums: the plain corpus (no checksum.md5 to check) refused too" \
	grep -qP '\tPLAIN0001\tfailed\t.*contents=not-tar-gz .*refused=--require-checksums' "$T/req.journal"
check "--require-checksums: a good book delivered" \
	cmp -s "$T/src/RC03.tar.gz" "$T/dest3/RC03.tar.gz"

# ---- kill -9 mid-run ---------------------------------------------------------------------------
# Books big enough that nginx's limit_rate keeps them in flight a few seconds each.
for i in 1 2 3 4 5 6; do book --pages 40 --image-size 60000 "$T/slow" "KL0$i"; done
cp "$T/slow"/KL*.tar.gz.gpg "$T/src/"
cp "$T/slow"/KL*.tar.gz "$T/src/" 2>/dev/null
printf 'KL0%s\n' 1 2 3 4 5 6 >"$T/list4"
stop_pid "$NGINX_PID"
start_nginx "$T/src" 1m || exit 1
KILL_RUN=(--dest "$T/dest4" --ocr-dest "$T/ocr4" --marc-dest "s3://$BUCKET/kill" --workers 3
	--downloads 2 "$T/list4")
args kill1
"$QUIRE" "${ARGS[@]}" "${KILL_RUN[@]}" 2>"$T/kill1.err" &
pid=$!
# downloading: a book whose staging file is still shorter than its plaintext (so none of
# its outputs can have been published), while quire is stopped.
downloading() {
	local f b
	for f in "$T/staging-kill1"/*.tar.gz.quire-part; do
		[ -e "$f" ] || continue
		b=$(basename "$f" .tar.gz.quire-part)
		[ "$(stat -c %s "$f")" -lt "$(stat -c %s "$T/src/$b.tar.gz")" ] && echo "$b" && return 0
	done
	return 1
}
inflight=""
if await "kill -9: a first book delivered" wait_for_line "$T/kill1.journal" $'\tok\t' 60; then
	# Stopped, looked at, let run a little: quire is caught in the middle of a download.
	end=$(_deadline 60)
	while [ "$(_now_ms)" -lt "$end" ] && kill -STOP "$pid" 2>/dev/null; do
		inflight=$(downloading) && break
		kill -CONT "$pid"
		sleep 0.05 # the staging files have nothing to wait on
	done
fi
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
if [ -n "$inflight" ]; then
	check "kill -9 while $inflight downloads: none of its derived outputs anywhere" \
		test ! -e "$T/ocr4/${inflight}_ocr.jsonl.gz" -a -z "$(s3client list "$BUCKET" "kill/$inflight")"
else
	fail "kill -9 mid-run" "no book seen downloading before the run ended"
fi
ref_all() { local b; for b in "$@"; do ref "$b" || return 1; done; }
ref_all KL01 KL02 KL03 KL04 KL05 KL06
bad=0 made=0
for f in "$T/ocr4"/*; do
	[ -e "$f" ] || continue
	case $f in *_ocr.jsonl.gz) ;; *) echo "    stray $f" >&2; bad=1; continue ;; esac
	b=$(basename "$f" _ocr.jsonl.gz)
	cmp -s <(zcat "$f") "$T/ref/$b.jsonl" || { echo "    $f is not whole" >&2; bad=1; }
	made=$((made + 1))
done
for k in $(s3client list "$BUCKET" kill/ | cut -f1); do
	b=$(basename "$k" _marc.json)
	s3_get "$BUCKET" "$k" "$T/k.json" && same_marc "$T/k.json" "$T/ref/$b.json" ||
		{ echo "    $k is not whole" >&2; bad=1; }
done
journaled=$(grep -cP '\tok\t' "$T/kill1.journal")
check "kill -9: the $made OCR outputs and the MARC objects there are whole, one for each of the $journaled books journaled at least" \
	test "$bad" -eq 0 -a "$made" -ge "$journaled"
expect_exit 0 "rerun after kill -9: exit 0" run_contents kill1 "${KILL_RUN[@]}"
for b in KL01 KL02 KL03 KL04 KL05 KL06; do
	check "rerun: $b's outputs made and right" outputs_right "$b" "$T/ocr4" kill
done
check "rerun: the books journaled before the kill not fetched again" \
	grep -q "skipped: $journaled, failed: 0" "$T/kill1.err"
check "rerun: no crash report" test -z "$(grep -E 'Sanitizer|runtime error' "$T/kill1.err")"
