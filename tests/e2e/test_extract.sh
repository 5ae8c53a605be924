# shellcheck shell=bash
# quire extract on what is not a good archive (random bytes as the plain test corpora are,
# a tar without gzip, gzip without tar, empty, cut short, hostile headers), on a crash in
# the middle of a book, and on bad destinations: each gives a clear one-line outcome in the
# journal, never a crash or a half-written output, and a rerun completes the work.
MKBOOK=$ROOT/tools/mkbook
mkdir -p "$T/src" "$T/ocr" "$T/marc"

"$MKBOOK" --pages 6 --image-size 4000 "$T/src" GOOD >/dev/null
head -c 300000 /dev/urandom >"$T/src/RANDOM.tar.gz"
: >"$T/src/EMPTY.tar.gz"
gzip -dc "$T/src/GOOD.tar.gz" >"$T/src/PLAINTAR.tar.gz"
head -c 100000 /dev/urandom | gzip -1 >"$T/src/GZONLY.tar.gz"
size=$(stat -c %s "$T/src/GOOD.tar.gz")
head -c $((size / 2)) "$T/src/GOOD.tar.gz" >"$T/src/HALF.tar.gz"
head -c $((size - 9)) "$T/src/GOOD.tar.gz" >"$T/src/NOTRAILER.tar.gz"
# A tar header that claims 2^40 bytes for its member, then ends.
python3 - "$T/src/HUGE.tar.gz" <<'EOF'
import gzip, io, sys, tarfile
info = tarfile.TarInfo("00000001.txt")
info.size = 1 << 40
hdr = info.tobuf(format=tarfile.GNU_FORMAT)
with gzip.open(sys.argv[1], "wb") as f:
    f.write(hdr + b"x" * 4096)
EOF
# A tar header whose checksum is wrong, in the middle of an archive.
python3 - "$T/src/GOOD.tar.gz" "$T/src/BADHDR.tar.gz" <<'EOF'
import gzip, sys
raw = bytearray(gzip.open(sys.argv[1]).read())
raw[512 * 4 + 148:512 * 4 + 156] = b"0000000\0"
with gzip.open(sys.argv[2], "wb") as f:
    f.write(raw)
EOF

expect_exit 1 "extract over bad archives exits 1" "$QUIRE" extract --ocr-dest "$T/ocr" \
	--marc-dest "$T/marc" --journal "$T/journal" --threads 2 "$T/src" 2>"$T/err"
verdict() { grep -P "\t$1\t" "$T/journal" | tail -1 | cut -f3,6; }
for want in "GOOD ok	contents=ok checksum=ok" "RANDOM failed	contents=not-tar-gz" \
	"EMPTY failed	contents=not-tar-gz" "PLAINTAR failed	contents=not-tar-gz" \
	"GZONLY failed	contents=not-tar-gz" "HALF failed	contents=truncated" \
	"HUGE failed	contents=truncated" "BADHDR failed	contents=corrupt"; do
	bc=${want%% *}
	got=$(verdict "$bc")
	if [[ $got == "${want#* }"* ]]; then pass "$bc: ${want#* }"; else fail "$bc" "journal says '$got'"; fi
done
# The gzip trailer (CRC, length) lost: every member is whole, so that is still readable.
check "NOTRAILER: a clear outcome" grep -qE '^(ok	contents=ok|failed	contents=truncated)' \
	<(verdict NOTRAILER)
check "outputs (OCR and MARC) only for the good archives" \
	test "$(ls "$T/ocr" "$T/marc" | grep -c _)" -eq $((2 * $(grep -cP '\tok\t' "$T/journal")))
check "one stderr line per failed book, naming it" \
	test "$(grep -c 'tar.gz: contents=' "$T/err")" -eq "$(grep -cP '\tfailed\t' "$T/journal")"
check "no crash report" test -z "$(grep -E 'Sanitizer|runtime error' "$T/err")"

# A crash in the middle of a book leaves no output, named or not; a rerun makes it.
"$MKBOOK" --pages 400 --image-size 200000 "$T/big" BIG >/dev/null
mkfifo "$T/fifo"
"$QUIRE" extract --ocr-dest "$T/ocr" --marc-dest "$T/marc" --journal "$T/journal2" \
	"$T/fifo" 2>"$T/crash.err" &
pid=$!
exec 7>"$T/fifo"
head -c $(($(stat -c %s "$T/big/BIG.tar.gz") / 2)) "$T/big/BIG.tar.gz" >&7
kill -KILL "$pid"
wait "$pid" 2>/dev/null
exec 7>&-
check "killed mid-book: nothing of it in the destinations" \
	test -z "$(find "$T/ocr" "$T/marc" -name 'fifo*' -o -name '*quire*' -o -name 'BIG*')"
"$QUIRE" extract --ocr-dest "$T/ocr" --marc-dest "$T/marc" --journal "$T/journal2" \
	"$T/big/BIG.tar.gz" 2>/dev/null
check "rerun after the kill: the outputs are whole" gzip -t "$T/ocr/BIG_ocr.jsonl.gz"
check "rerun after the kill: 400 pages" test "$(zcat "$T/ocr/BIG_ocr.jsonl.gz" | wc -l)" -eq 400

# Configuration errors: exit 2, one line.
expect_exit 2 "no action given" "$QUIRE" extract "$T/src/GOOD.tar.gz"
expect_exit 2 "destination not a directory" "$QUIRE" extract --ocr-dest "$T/src/GOOD.tar.gz" \
	"$T/src/GOOD.tar.gz"
expect_exit 2 "export without a journal" "$QUIRE" export "$T/nonexistent"
