# shellcheck shell=bash
# The contents reader against an independent implementation: for each of mkbook's awkward
# cases, quire extract's BARCODE_ocr.jsonl.gz (decompressed) must equal, byte for byte,
# what the Python pipeline's way makes of the same archive (tarfile to disk, glob, text
# mode, json.dumps; tests/e2e/contents_ref.py), its BARCODE_marc.json must equal
# ElementTree's fields key for key, and its checksum.md5 verdict must be the one Python's
# hashlib gives.
REF=$ROOT/tests/e2e/contents_ref.py
MKBOOK=$ROOT/tools/mkbook
mkdir -p "$T/src" "$T/ocr" "$T/marc" "$T/ref"

# compare_book BARCODE: quire's outputs and journal verdict against the reference.
compare_book() {
	local bc=$1 archive=$T/src/$1.tar.gz
	python3 "$REF" ocr "$archive" "$T/ref/$bc.jsonl"
	python3 "$REF" marc "$archive" "$T/ref/$bc.json"
	local want_check got_check got_member want_member
	read -r want_check want_member < <(python3 "$REF" check "$archive")
	local line
	line=$(grep -P "\t$bc\t" "$T/journal" | tail -1)
	got_check=$(grep -o 'checksum=[^ ]*' <<<"$line" | cut -d= -f2)
	got_member=$(grep -o 'member=[^ ]*' <<<"$line" | cut -d= -f2)
	if [ "$got_check" = "$want_check" ] && [ "$got_member" = "${want_member:-}" ]; then
		pass "$bc checksum verdict $want_check"
	else
		fail "$bc checksum verdict" "quire '$got_check $got_member', python '$want_check ${want_member:-}'"
	fi
	if [ -s "$T/ref/$bc.jsonl" ]; then
		if [ ! -f "$T/ocr/${bc}_ocr.jsonl.gz" ]; then
			fail "$bc ocr" "no BARCODE_ocr.jsonl.gz: $line"
		elif ! gzip -t "$T/ocr/${bc}_ocr.jsonl.gz"; then
			fail "$bc ocr" "not a whole gzip file"
		elif [ "${SORTED_COMPARE:-}" = "$bc" ]; then
			check "$bc ocr (as a multiset: Python's order of duplicate pages is the file system's)" \
				cmp -s <(zcat "$T/ocr/${bc}_ocr.jsonl.gz" | sort) <(sort "$T/ref/$bc.jsonl")
		else
			check "$bc ocr byte for byte" cmp <(zcat "$T/ocr/${bc}_ocr.jsonl.gz") "$T/ref/$bc.jsonl"
		fi
	else
		check "$bc no ocr output (no pages)" test ! -e "$T/ocr/${bc}_ocr.jsonl.gz"
	fi
	check "$bc marc key for key" python3 - "$T/marc/${bc}_marc.json" "$T/ref/$bc.json" <<'EOF'
import json, os, sys
got_path, want_path = sys.argv[1:]
want = json.load(open(want_path, encoding="utf-8"))
if not want:
    sys.exit(f"quire wrote {got_path} where Python found no record" if os.path.exists(got_path) else 0)
got = json.load(open(got_path, encoding="utf-8"))
if list(got) != list(want):
    sys.exit(f"keys differ: {list(got)} vs {list(want)}")
bad = [k for k in want if got[k] != want[k]]
sys.exit("; ".join(f"{k}: quire {got[k]!r} python {want[k]!r}" for k in bad) if bad else 0)
EOF
}

cases=(plain missing-pages bad-utf8 cjk rtl combining control crlf empty-pages subfolder stray-txt
	no-008 short-008 repeat-fields empty-fields no-record no-mets tamper unlisted listed-missing
	count-mismatch no-checksum out-of-order duplicate-page big-page)
i=0
for c in "${cases[@]}"; do
	i=$((i + 1))
	bc=$(printf 'C%02d' "$i")
	opt=()
	[ "$c" = plain ] || opt=(--case "$c")
	"$MKBOOK" --pages 12 --image-size 3000 "${opt[@]}" "$T/src" "$bc" >/dev/null
	[ "$c" = duplicate-page ] && SORTED_COMPARE=$bc
done
# Everything at once, and a long book out of order.
"$MKBOOK" --pages 30 --image-size 2000 --case bad-utf8 --case cjk --case rtl --case combining \
	--case control --case crlf --case empty-pages --case missing-pages --case subfolder \
	--case repeat-fields "$T/src" ALL >/dev/null
"$MKBOOK" --pages 600 --image-size 500 --text-size 300 --case out-of-order --case bad-utf8 \
	"$T/src" LONG >/dev/null

expect_exit 1 "extract over a directory (exit 1: some books do not match checksum.md5)" \
	"$QUIRE" extract --ocr-dest "$T/ocr" --marc-dest "$T/marc" --journal "$T/journal" \
	--threads 2 "$T/src"
for f in "$T"/src/*.tar.gz; do compare_book "$(basename "$f" .tar.gz)"; done
check "one journal line per book" test "$(wc -l <"$T/journal")" -eq "$(ls "$T"/src/*.tar.gz | wc -l)"
check "nothing but outputs in the destinations" \
	test -z "$(find "$T/ocr" "$T/marc" -mindepth 1 ! -name '*_ocr.jsonl.gz' ! -name '*_marc.json')"

# Rerun: a deleted output comes back, the rest is skipped.
rm -f "$T/ocr/C03_ocr.jsonl.gz" "$T/marc/C05_marc.json"
"$QUIRE" extract --ocr-dest "$T/ocr" --marc-dest "$T/marc" --journal "$T/journal" "$T/src" \
	2>"$T/rerun.err"
check "rerun made the missing outputs" test -s "$T/ocr/C03_ocr.jsonl.gz" -a -s "$T/marc/C05_marc.json"
# Read again: the two with an output deleted, and the two whose archive has no MARC record
# to give (no-record, no-mets: nothing at the destination says they are done).
check "rerun skipped the finished books" \
	grep -q "ok: 4, skipped: $((${#cases[@]} + 2 - 4)), failed: 0" "$T/rerun.err"
compare_book C03

# --verify-contents alone: the verdict, no outputs.
mkdir -p "$T/v"
"$QUIRE" extract --verify-contents --journal "$T/v/journal" "$T/src/C18.tar.gz" "$T/src/C01.tar.gz"
check "verify alone: tamper found" grep -qP '\tC18\tok\t.*checksum=mismatch member=00000002.txt' "$T/v/journal"
check "verify alone: a good book is ok" grep -qP '\tC01\tok\t.*checksum=ok pages=12 images=12 texts=12 hocr=12' "$T/v/journal"

# export: one CSV row per book, parsed by Python's csv module.
"$QUIRE" export "$T/journal" --marc-dest "$T/marc" >"$T/books.csv"
check "export: RFC 4180 CSV, one row per book, MARC and verdict columns" python3 - "$T/books.csv" "$T/src" <<'EOF'
import csv, glob, json, os, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8")))
books = sorted(os.path.basename(p)[:-7] for p in glob.glob(sys.argv[2] + "/*.tar.gz"))
assert sorted(r["barcode"] for r in rows) == books, [r["barcode"] for r in rows]
by = {r["barcode"]: r for r in rows}
assert by["C18"]["checksum"] == "mismatch" and by["C18"]["checksum_member"] == "00000002.txt", by["C18"]
assert by["C01"]["pages"] == "12" and by["C01"]["outcome"] == "ok"
assert by["ALL"]["oclc"].count("(OCoLC)") == 3, by["ALL"]["oclc"]
m = json.load(open(sys.argv[2] + "/../marc/C14_marc.json"))
assert by["C14"]["subject"] == m["subject"] and "," in m["subject"]
assert open(sys.argv[1], "rb").read().count(b"\r\n") == len(rows) + 1
EOF
