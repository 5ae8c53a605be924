# Hostile barcode lists: every bad line refused with its line number, the run going on
# and ending with exit 1; a trailing CR trimmed, blank lines skipped; nothing written
# outside --dest and --staging (and the journal); no barcode ever reaches a shell.

make_books "$T/src" 3 64K
# A 64-byte barcode is allowed: give it a book (the same bytes as TEST0001's).
LONG64=$(printf 'L%.0s' $(seq 1 64))
cp "$T/src/TEST0001.tar.gz.gpg" "$T/src/$LONG64.tar.gz.gpg"
start_nginx "$T/src" || exit 1

# Everything quire may write lives under $ROOTDIR: dest, staging, journal, and cwd (where
# a barcode that reached a shell, or a path built from one, would leave its mark).
ROOTDIR=$T/root
mkdir -p "$ROOTDIR/cwd" "$ROOTDIR/etc"
touch "$ROOTDIR/etc/passwd"

# One line per case; refused lines carry the reason quire must give. The file is written
# byte by byte (printf %b) so NULs, CRs and invalid UTF-8 are really in it.
LIST=$ROOTDIR/list.txt
: >"$LIST"
declare -A want # line number -> reason regex (refused lines)
line=0
add() { # add BYTES [REASON_RE]: appends one line; with a reason it must be refused
	line=$((line + 1))
	printf '%b\n' "$1" >>"$LIST"
	[ $# -lt 2 ] || want[$line]=$2
}
add 'TEST0001'
add '../etc/passwd' "contains '/'"
add '..' "starts with '.'|contains '..'"
add 'a..b' "contains '..'"
add '.hidden' "starts with '.'"
add 'a/b' "contains '/'"
add '/etc/passwd' "contains '/'"
add '$(touch pwned)' "contains '\\$'"
add '`touch pwned2`' "contains '\`'"
add 'x;touch pwned3' "contains ';'"
add 'x|touch pwned4' "contains '\\|'"
add 'a b' "contains ' '"
add 'TEST\x01' "control byte 0x01"
add 'TEST\x1b[31m' "control byte 0x1b"
add 'TE\x00ST' "control byte 0x00"
add 'TEST\tX' "control byte 0x09"
add 'TEST\x7f' "control byte 0x7f"
add 'caf\xc3\xa9' "non-ASCII"
add 'bad\xff\xfe' "invalid UTF-8"
add 'over\xc0\xafong' "invalid UTF-8"
add '%2e%2e%2fetc' "contains '%'"
add 'x{barcode}' "contains '\\{'"
add "${LONG64}L" "longer than 64"
add "$(head -c 5000 /dev/zero | tr '\0' A)" "longer than 64"
add ''
add '   '
add '# a comment'
add 'TEST0002\r'
add "$LONG64"
add 'TEST0003'
add '\\x\\y' "contains '\\\\'"
nlines=$line

run_hostile() {
	(cd "$ROOTDIR/cwd" && "$QUIRE" run --dest "$ROOTDIR/dest" --staging "$ROOTDIR/staging" \
		--journal "$ROOTDIR/journal" --passphrase-file "$PASSFILE" \
		--source "$NGINX_HTTP/{barcode}.tar.gz.gpg" "$@") 2>"$T/hostile.err"
}
before_files=$(find "$T" -path "$ROOTDIR" -prune -o -print | sort)
expect_exit 1 "hostile list: exit 1" run_hostile "$LIST"

bad=0
for n in "${!want[@]}"; do
	grep -aqE "^quire: $LIST:$n: invalid barcode: (${want[$n]})" "$T/hostile.err" ||
		{ bad=1; echo "    line $n (want: ${want[$n]}) not refused as such"; }
done
nrefused=$(grep -ac 'invalid barcode' "$T/hostile.err")
if [ $bad -eq 0 ] && [ "$nrefused" -eq ${#want[@]} ]; then
	pass "hostile list: each of the ${#want[@]} bad lines refused with its line number and why"
else
	fail "hostile list: refusals" "$nrefused refused; $(grep -a 'invalid' "$T/hostile.err" | cat -v)"
fi

# The good lines: TEST0001, TEST0002 (its CR trimmed), the 64-byte barcode, TEST0003.
ok=1
for b in TEST0001 TEST0002 TEST0003; do
	cmp -s "$T/plain/$b.tar.gz" "$ROOTDIR/dest/$b.tar.gz" || ok=0
done
cmp -s "$T/plain/TEST0001.tar.gz" "$ROOTDIR/dest/$LONG64.tar.gz" || ok=0
if [ $ok -eq 1 ] && grep -qE "^summary: $((4 + ${#want[@]}))/$((4 + ${#want[@]})) .*ok: 4, skipped: 0, failed: ${#want[@]}\]" "$T/hostile.err"; then
	pass "hostile list: the 4 good lines (one with a CR, one of 64 bytes) delivered; blank and comment lines skipped"
else
	fail "hostile list: good lines" "$(ls "$ROOTDIR/dest"); $(tail -1 "$T/hostile.err")"
fi

# Only good barcodes were requested.
if [ "$(grep -c '^GET ' "$NGINX_LOG")" -eq 4 ]; then
	pass "hostile list: only the 4 good barcodes reached the source"
else
	fail "hostile list: requests" "$(cat "$NGINX_LOG")"
fi

# Nothing written anywhere but dest, staging and the journal.
stray=$(find "$ROOTDIR" -mindepth 1 -not -path "$ROOTDIR/dest" -not -path "$ROOTDIR/dest/*" \
	-not -path "$ROOTDIR/staging" -not -path "$ROOTDIR/journal" -not -path "$LIST" \
	-not -path "$ROOTDIR/cwd" -not -path "$ROOTDIR/etc" -not -path "$ROOTDIR/etc/passwd")
destfiles=$(find "$ROOTDIR/dest" -mindepth 1 | wc -l)
after_files=$(find "$T" -path "$ROOTDIR" -prune -o -print | sort)
outside=$(comm -13 <(echo "$before_files") <(echo "$after_files") | grep -v "^$T/hostile.err$")
if [ -z "$stray" ] && [ "$destfiles" -eq 4 ] && [ -z "$(ls -A "$ROOTDIR/staging")" ] &&
	[ ! -s "$ROOTDIR/etc/passwd" ] && [ -z "$outside" ]; then
	pass "hostile list: nothing written outside --dest, --staging and the journal"
else
	fail "hostile list: writes outside" "stray: $stray; outside: $outside; dest: $destfiles"
fi
# The would-be shell commands ran nowhere.
pwned=$(find "$T" /tmp "$ROOT" -maxdepth 3 -name 'pwned*' 2>/dev/null)
if [ -z "$pwned" ]; then
	pass "hostile list: no barcode reached a shell (no pwned file anywhere)"
else
	fail "hostile list: shell" "$pwned"
fi

# A Windows list: every line ends in CRLF, a blank CRLF line among them. All delivered.
printf 'TEST0001\r\n\r\nTEST0002\r\nTEST0003\r\n' >"$T/crlf.txt"
expect_exit 0 "CRLF list: exit 0" \
	"$QUIRE" run --dest "$T/crlf" --journal "$T/crlf.journal" --passphrase-file "$PASSFILE" \
	--source "$NGINX_HTTP/{barcode}.tar.gz.gpg" "$T/crlf.txt" 2>"$T/crlf.err"
ok=1
for b in TEST0001 TEST0002 TEST0003; do cmp -s "$T/plain/$b.tar.gz" "$T/crlf/$b.tar.gz" || ok=0; done
if [ $ok -eq 1 ] && ! grep -q 'invalid' "$T/crlf.err" && [ -z "$(find "$T/crlf" -name "*$(printf '\r')*")" ]; then
	pass "CRLF list: CRs trimmed, the 3 books delivered under clean names"
else
	fail "CRLF list" "$(cat -A "$T/crlf.err")"
fi

# The list read from a pipe (stdin) gets the same treatment, line numbers included.
printf 'TEST0001\nbad/one\n' | "$QUIRE" run --dest "$T/pipe" --journal "$T/pipe.journal" \
	--passphrase-file "$PASSFILE" --source "$NGINX_HTTP/{barcode}.tar.gz.gpg" - 2>"$T/pipe.err"
rc=$?
if [ $rc -eq 1 ] && grep -q "^quire: -:2: invalid barcode: contains '/'" "$T/pipe.err" &&
	cmp -s "$T/plain/TEST0001.tar.gz" "$T/pipe/TEST0001.tar.gz"; then
	pass "stdin list: line 2 refused with its number, line 1 delivered, exit 1"
else
	fail "stdin list" "rc=$rc $(cat "$T/pipe.err")"
fi
