# quire run --grin against the GRIN emulator (issue 10): --queue converted delivers exactly
# the converted books (file names as GRIN gives them, prefixed ones too), byte-exact; a
# book GRIN lacks is journaled conversion-failed (with GRIN's reason), in-process or
# requested, the way the Python pipeline does; --queue unconverted requests exactly the
# books never requested; after GRIN converts them, a second run fetches only the new ones;
# never more archive requests at once than --downloads; a 429 stops requesting without
# failing a book; an expired token is refreshed; a login page is named for what it is.

start_grin() { # start_grin NAME [grin_emulator.py options]: GRIN_URL, GRIN_LOG, GRIN_PID
	local d=$T/grin-$1
	shift
	mkdir -p "$d"
	_start_bg grin_emulator "$d/ready" "$d/stderr" python3 "$ROOT/tests/e2e/grin_emulator.py" \
		--ready-file "$d/ready" --log "$d/requests.log" --library LIB "$@" || return 1
	read -r port GRIN_PID <"$d/ready"
	GRIN_URL=http://127.0.0.1:$port
	GRIN_LOG=$d/requests.log
}

# 14 books: R0001-R0006 converted (R0001, R0002 named NLI_R000N.tar.gz.gpg), R0007-R0008
# in process, R0009-R0010 failed, R0011-R0014 never requested. Every one has an archive,
# served once converted.
make_books "$T/arch" 14 64K-400K R
for b in R0001 R0002; do
	mv "$T/arch/$b.tar.gz.gpg" "$T/arch/NLI_$b.tar.gz.gpg"
	mv "$T/plain/$b.tar.gz" "$T/plain/NLI_$b.tar.gz"
done
{
	printf 'R0001\tconverted\tNLI_R0001.tar.gz.gpg\nR0002\tconverted\tNLI_R0002.tar.gz.gpg\n'
	for i in 3 4 5 6; do printf 'R000%d\tconverted\n' "$i"; done
	printf 'R0007\tin_process\nR0008\tin_process\n'
	printf 'R0009\tfailed\t\tMissing page 9 of 300\nR0010\tfailed\t\tBad image 10\n'
	for i in 11 12 13 14; do printf 'R00%d\tnew\n' "$i"; done
} >"$T/state"
start_grin main --state "$T/state" --archives "$T/arch" --max-page 4

grin_run() { # grin_run NAME [options...]: quire run --grin LIB, stderr to $T/NAME.err
	local name=$1
	shift
	"$QUIRE" run --grin LIB --grin-url "$GRIN_URL" --dest "$T/out" --passphrase-file "$PASSFILE" \
		--journal "$T/journal" "$@" 2>"$T/$name.err"
}
archive_gets() { grep -cE "^GET /LIB/[A-Z_0-9]+\.tar\.gz\.gpg 200 " "$GRIN_LOG"; }

# --- --dry-run: counts, and nothing changed ---------------------------------------------
expect_exit 0 "dry run: exit 0" grin_run dry --queue converted --dry-run
if grep -q 'dry run: 6 books listed: 6 would be fetched, 0 skipped' "$T/dry.err" &&
	[ "$(archive_gets)" -eq 0 ] && ! grep -q '^GET /LIB/_process' "$GRIN_LOG" && [ ! -e "$T/out" ] &&
	[ ! -e "$T/journal" ]; then
	pass "dry run: 6 books would be fetched; no archive fetched, nothing requested or created"
else
	fail "dry run" "$(cat "$T/dry.err"); $(ls "$T")"
fi
printf 'R0007\nR0009\nR0011\nR0011\n' >"$T/dry-list"
expect_exit 0 "dry run over a list: exit 0" grin_run dry2 --dry-run "$T/dry-list"
grep -q '4 books listed: 1 would be fetched, 0 skipped .*, 1 repeated' "$T/dry2.err" &&
	grep -q 'GRIN: 1 of them failed to convert, 1 in process' "$T/dry2.err" &&
	pass "dry run over a list: GRIN's failed and in-process books told apart, the repeat counted" ||
	fail "dry run list" "$(cat "$T/dry2.err")"

# --- --queue converted ------------------------------------------------------------------
expect_exit 0 "queue converted: exit 0" grin_run converted --queue converted --downloads 2
ok=1
for b in NLI_R0001 NLI_R0002 R0003 R0004 R0005 R0006; do
	cmp -s "$T/plain/$b.tar.gz" "$T/out/$b.tar.gz" || { ok=0; echo "    $b missing or different"; }
done
[ "$(find "$T/out" -maxdepth 1 -name '*.tar.gz' | wc -l)" -eq 6 ] || ok=0
if [ $ok -eq 1 ]; then
	pass "queue converted: exactly the 6 converted books, byte-exact (prefixed ones by GRIN's file name)"
else
	fail "queue converted" "$(ls "$T/out")"
fi
grep -q '^GET /LIB/NLI_R0001.tar.gz.gpg 200 ' "$GRIN_LOG" &&
	pass "queue converted: a prefixed book fetched by the file name GRIN gave" ||
	fail "prefixed fetch" "$(grep NLI "$GRIN_LOG")"
max=$(grep -E '^GET /LIB/[A-Z_0-9]+\.tar\.gz\.gpg ' "$GRIN_LOG" | sed -nE 's/.* inflight=([0-9]+).*/\1/p' |
	sort -n | tail -1)
# The list's pages are read one at a time beside the downloads: at most --downloads + 1.
if [ -n "$max" ] && [ "$max" -le 3 ]; then
	pass "queue converted: at most $max requests in flight at an archive request (--downloads 2, plus a list page)"
else
	fail "concurrency" "max in flight $max"
fi
if grep -qE '^summary: 6/6 ' "$T/converted.err"; then
	pass "queue converted: the total came from GRIN's list as its pages arrived (6/6)"
else
	fail "total" "$(tail -1 "$T/converted.err")"
fi

# --- a barcodes file: books GRIN lacks ------------------------------------------------------
printf 'R0007\nR0009\nR0011\n' >"$T/lacking"
expect_exit 1 "books GRIN lacks: exit 1 (one conversion failed)" grin_run lacking "$T/lacking"
j=$T/journal
if grep -qP '\tR0007\tin-process\t' "$j" && grep -qP '\tR0009\tconversion-failed\t.*Missing page 9 of 300' "$j" &&
	grep -qP '\tR0011\trequested\t' "$j"; then
	pass "404s: in-process, conversion-failed with GRIN's reason, requested"
else
	fail "404s" "$(grep -E 'R00(07|09|11)' "$j")"
fi
if [ "$(grep -c '^GET /LIB/_process' "$GRIN_LOG")" -eq 1 ] &&
	grep -q '^GET /LIB/_process?barcodes=R0011 200' "$GRIN_LOG"; then
	pass "404s: one conversion request, for the book never requested only"
else
	fail "404 requests" "$(grep _process "$GRIN_LOG")"
fi
grep -qE 'requested: 1.*in process: 1|in process: 1.*requested: 1' "$T/lacking.err" &&
	pass "404s: the summary counts requested and in-process books" ||
	fail "summary counts" "$(tail -1 "$T/lacking.err")"

# --- --queue unconverted -----------------------------------------------------------------
before=$(grep -c '^GET /LIB/_process' "$GRIN_LOG")
expect_exit 0 "queue unconverted: exit 0" grin_run unconverted --queue unconverted
asked=$(grep '^GET /LIB/_process' "$GRIN_LOG" | tail -n +$((before + 1)) | sed -nE 's/.*barcodes=([^ ]*) .*/\1/p' |
	tr ',' '\n' | sort | tr '\n' ' ')
if [ "$asked" = "R0012 R0013 R0014 " ] && [ "$(archive_gets)" -eq 6 ]; then
	pass "queue unconverted: exactly the never-requested books asked for, nothing downloaded"
else
	fail "unconverted" "asked: $asked"
fi
[ "$(grep -cP '\tR001[234]\trequested\t' "$j")" -eq 3 ] &&
	pass "queue unconverted: each requested book journaled" || fail "unconverted journal" "$(tail -3 "$j")"

# --- GRIN converts them: the next run fetches only the new ones -----------------------
curl -s -X POST "$GRIN_URL/_emu/convert?all=1" >/dev/null
gets=$(archive_gets)
expect_exit 0 "second converted run: exit 0" grin_run second --queue converted
new=$(($(archive_gets) - gets))
ok=1
for b in R0007 R0008 R0011 R0012 R0013 R0014; do
	cmp -s "$T/plain/$b.tar.gz" "$T/out/$b.tar.gz" || ok=0
done
if [ "$ok" -eq 1 ] && [ "$new" -eq 6 ]; then
	pass "after conversion: the 6 new books fetched (in process and requested ones), the 6 delivered before not"
else
	fail "second run" "$new new GETs; $(ls "$T/out")"
fi

# --- a 429 mid-run: no more requests, no book failed ---------------------------------------
stop_pid "$GRIN_PID"
{
	for i in 1 2 3 4 5 6; do printf 'Q000%d\tnew\n' "$i"; done
} >"$T/state429"
start_grin q429 --state "$T/state429" --archives "$T/arch" --queue-capacity 2
printf 'Q0001\nQ0002\nQ0003\nQ0004\nQ0005\nQ0006\n' >"$T/q429"
"$QUIRE" run --grin LIB --grin-url "$GRIN_URL" --dest "$T/out429" --passphrase-file "$PASSFILE" \
	--journal "$T/j429" --workers 1 "$T/q429" 2>"$T/q429.err"
rc=$?
req=$(grep -cP '\trequested\t' "$T/j429")
notreq=$(grep -cP '\tnot-requested\t' "$T/j429")
if [ "$rc" -eq 0 ] && [ $((req + notreq)) -eq 6 ] && [ "$notreq" -ge 1 ] &&
	! grep -qP '\tfailed\t' "$T/j429"; then
	pass "a full GRIN queue (429): $req requested, $notreq left for a later run, none failed"
else
	fail "429" "rc=$rc; $(cut -f2,3,6 "$T/j429")"
fi

# --- an expired token (302 to ServiceLogin) refreshed through the token server ----------
stop_pid "$GRIN_PID"
tokens=$T/tokens
start_tokensrv() { # as test_auth.sh does
	local d=$T/toksrv
	mkdir -p "$d"
	_start_bg tokenserver "$d/ready" "$d/stderr" python3 "$ROOT/tests/e2e/tokenserver.py" \
		--ready-file "$d/ready" --log "$d/requests.log" --client-id quire-test \
		--client-secret s3cret --refresh-token r3fresh --publish "$tokens" \
		--expires-in 3600 "$@" || return 1
	read -r tport TOK_PID <"$d/ready"
}
if start_tokensrv; then
	cat >"$T/oauth.json" <<EOF
{"client_id": "quire-test", "client_secret": "s3cret", "refresh_token": "r3fresh", "token_uri": "http://127.0.0.1:$tport/token"}
EOF
	chmod 600 "$T/oauth.json"
	printf 'R0003\tconverted\nR0004\tconverted\n' >"$T/state-auth"
	start_grin auth --state "$T/state-auth" --archives "$T/arch" --tokens "$tokens" --expire-after 2
	printf 'R0003\nR0004\n' >"$T/auth-list"
	"$QUIRE" run --grin LIB --grin-url "$GRIN_URL" --dest "$T/out-auth" --passphrase-file "$PASSFILE" \
		--journal "$T/j-auth" --oauth "$T/oauth.json" --downloads 1 "$T/auth-list" 2>"$T/auth.err"
	rc=$?
	if [ "$rc" -eq 0 ] && cmp -s "$T/plain/R0003.tar.gz" "$T/out-auth/R0003.tar.gz" &&
		cmp -s "$T/plain/R0004.tar.gz" "$T/out-auth/R0004.tar.gz" &&
		grep -q 'auth=expired' "$GRIN_LOG" && ! grep -q 's3cret\|r3fresh' "$T/auth.err"; then
		pass "an expired token (302 to ServiceLogin): refreshed once, the books delivered"
	else
		fail "expired token" "rc=$rc; $(cat "$T/auth.err"); $(tail -5 "$GRIN_LOG")"
	fi
	stop_pid "$GRIN_PID"
else
	fail "token server" "did not start"
fi

# --- a login page where an archive was expected --------------------------------------------
mkdir -p "$T/login"
printf '<html><body><form action="https://accounts.google.com/ServiceLogin">Sign in</form></body></html>\n' \
	>"$T/login/R0005.tar.gz.gpg"
printf 'R0005\tconverted\n' >"$T/state-login"
start_grin login --state "$T/state-login" --archives "$T/login"
echo R0005 >"$T/login-list"
"$QUIRE" run --grin LIB --grin-url "$GRIN_URL" --dest "$T/out-login" --passphrase-file "$PASSFILE" \
	--journal "$T/j-login" --retries 0 "$T/login-list" 2>"$T/login.err"
rc=$?
if [ "$rc" -eq 1 ] && grep -q 'HTML or XML page, not an archive' "$T/login.err" &&
	[ ! -e "$T/out-login/R0005.tar.gz" ]; then
	pass "a login page instead of an archive: named for what it is, nothing delivered"
else
	fail "login page" "rc=$rc; $(cat "$T/login.err")"
fi
