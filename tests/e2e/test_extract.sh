# shellcheck shell=bash
# quire extract on what is not a good archive (random bytes as the plain test corpora are,
# a tar without gzip, gzip without tar, empty, cut short, hostile headers), on a crash in
# the middle of a book, and on bad destinations: each gives a clear one-line outcome in the
# journal, never a crash or a half-written output, and a rerun completes the work. Bad
# --stall-timeout values are refused in one line, as quire run refuses them.
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
	test "$(grep -cE '^quire: [A-Z]+ \(line [0-9]+\): failed: contents=' "$T/err")" -eq \
	"$(grep -cP '\tfailed\t' "$T/journal")"
check "no crash report" test -z "$(grep -E 'Sanitizer|runtime error' "$T/err")"

# A crash in the middle of a book leaves no output, named or not; a rerun makes it. The
# kill comes while quire is stopped (SIGSTOP) with one archive open and an output of it
# staged, unnamed, in the destination: that book was in flight, by quire's own fds.
for i in 1 2 3 4 5; do "$MKBOOK" --pages 150 --image-size 150000 "$T/big" "BIG$i" >/dev/null; done
"$QUIRE" extract --threads 1 --ocr-dest "$T/ocr" --marc-dest "$T/marc" --journal "$T/journal2" \
	"$T/big" 2>"$T/crash.err" &
pid=$!
# in_flight: the book quire reads now while it stages an output of it in $T/ocr, if any
# (one look at all its fds: quire is stopped meanwhile).
in_flight() {
	local fds src
	fds=$(find "/proc/$pid/fd" -mindepth 1 -printf '%l\n' 2>/dev/null)
	src=$(grep -m1 "^$T/big/.*\.tar\.gz$" <<<"$fds") || return 1
	grep -q "^$T/ocr/.* (deleted)$" <<<"$fds" && basename "$src" .tar.gz
}
inflight=""
if await "killed mid-book: a first book done" wait_for_line "$T/journal2" $'\tok\t' 60; then
	# Stopped, looked at, let run a little: quire is caught in the middle of a book.
	end=$(_deadline 60)
	while [ "$(_now_ms)" -lt "$end" ] && kill -STOP "$pid" 2>/dev/null; do
		inflight=$(in_flight) && break
		kill -CONT "$pid"
		sleep 0.02 # /proc has nothing to wait on
	done
fi
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
if [ -n "$inflight" ]; then
	check "killed mid-book ($inflight open, an output staged): nothing of it in the destinations" \
		test -z "$(find "$T/ocr" "$T/marc" -name '*quire*' -o -name "${inflight}_*")"
else
	fail "killed mid-book" "no book seen in flight before the run ended"
fi
whole=0
for b in $(grep -P '\tok\t' "$T/journal2" | cut -f2); do
	gzip -t "$T/ocr/${b}_ocr.jsonl.gz" && [ "$(zcat "$T/ocr/${b}_ocr.jsonl.gz" | wc -l)" -eq 150 ] &&
		python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$T/marc/${b}_marc.json" &&
		whole=$((whole + 1))
done
check "killed mid-run: the $whole books journaled before have whole outputs" \
	test "$whole" -ge 1 -a "$whole" -eq "$(grep -cP '\tok\t' "$T/journal2")"
"$QUIRE" extract --ocr-dest "$T/ocr" --marc-dest "$T/marc" --journal "$T/journal2" "$T/big" \
	2>"$T/rerun.err"
n=0
for i in 1 2 3 4 5; do
	gzip -t "$T/ocr/BIG${i}_ocr.jsonl.gz" && [ "$(zcat "$T/ocr/BIG${i}_ocr.jsonl.gz" | wc -l)" -eq 150 ] &&
		n=$((n + 1))
done
check "rerun after the kill: every output whole, 150 pages each" test "$n" -eq 5
check "rerun after the kill: the books done before are skipped" \
	grep -q "ok: $((5 - whole)), skipped: $whole, failed: 0" "$T/rerun.err"

# A FIFO is no archive file: a clear failure, not a wait.
mkfifo "$T/fifo"
expect_exit 1 "a FIFO: exit 1" "$QUIRE" extract --verify-contents --journal "$T/journal3" "$T/fifo"
check "a FIFO: journaled as not a regular file" grep -qP '\tfifo\tfailed\t.*not a regular file' \
	"$T/journal3"

# Configuration errors: exit 2, one line.
expect_exit 2 "no action given" "$QUIRE" extract "$T/src/GOOD.tar.gz"
expect_exit 2 "destination not a directory" "$QUIRE" extract --ocr-dest "$T/src/GOOD.tar.gz" \
	"$T/src/GOOD.tar.gz"
expect_exit 2 "export without a journal" "$QUIRE" export "$T/nonexistent"

# --stall-timeout takes what quire run's takes (whole seconds, 1 to 86400); anything else is
# one line naming the option and the value, worded as run words it.
for bad in 0 86401 1.5 abc ""; do
	expect_exit 2 "--stall-timeout '$bad': exit 2" "$QUIRE" extract --verify-contents \
		--journal "$T/stall.journal" --stall-timeout "$bad" "$T/src/GOOD.tar.gz" 2>"$T/stall.err"
	"$QUIRE" run --stall-timeout "$bad" 2>"$T/stall-run.err"
	check "--stall-timeout '$bad': one line, as quire run's" \
		test "$(wc -l <"$T/stall.err")" -eq 1 -a "$(sed 's/quire extract/quire run/' "$T/stall.err")" = \
		"$(cat "$T/stall-run.err")"
	check "--stall-timeout '$bad': names the option and the value" \
		grep -qF -- "quire: --stall-timeout: expected a whole number from 1 to 86400, got '$bad'" "$T/stall.err"
done
check "--stall-timeout: nothing made by the refused ones" test ! -e "$T/stall.journal"
expect_exit 0 "--stall-timeout 86400: accepted" "$QUIRE" extract --verify-contents \
	--journal "$T/stall.journal" --stall-timeout 86400 "$T/src/GOOD.tar.gz" 2>"$T/stall.err"
