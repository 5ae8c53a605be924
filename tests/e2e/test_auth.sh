# Source credentials: --header-file read again when it changes (token rotation mid-run),
# --oauth access tokens refreshed on a 401 and before they expire, never printed.

make_books "$T/src" 5 64K
: >"$T/tokens"
# TEST0002 stalls 3 s after its first bytes: the window in which the tests rotate tokens.
printf 'TEST0002 stall 1 at=1024 secs=3 then=continue\n' >"$T/rules"
start_faultserver "$T/src" --token-file "$T/tokens" --rules "$T/rules" --no-name-faults

# run_auth NAME [options]: quire in the background, one book at a time
run_auth() {
	local name=$1
	shift
	"$QUIRE" run --dest "$T/$name" --passphrase-file "$PASSFILE" --journal "$T/$name.journal" \
		--source "$FAULT_URL/{barcode}.tar.gz.gpg" --workers 1 --downloads 1 --retries 2 \
		"$@" "$T/src/barcodes.txt" >"$T/$name.out" 2>"$T/$name.err" &
	QPID=$!
}

all_delivered() {
	local b
	while read -r b; do cmp -s "$T/plain/$b.tar.gz" "$1/$b.tar.gz" || return 1; done <"$T/src/barcodes.txt"
}

# --- header file rotated mid-run -------------------------------------------------------
secret1="hdr-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
secret2="hdr-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
echo "$secret1" >"$T/tokens"
(umask 077 && printf 'Authorization: Bearer %s\nX-Library: test\n' "$secret1" >"$T/headers")
run_auth hdr --header-file "$T/headers"
await "header file rotation: TEST0002 stalls" wait_for_line "$FAULT_LOG" "TEST0002.* stall " 20
# Rotate while TEST0002 stalls: quire must send the new token for every later request.
printf 'Authorization: Bearer %s\nX-Library: test\n' "$secret2" >"$T/headers.new"
mv "$T/headers.new" "$T/headers"
echo "$secret2" >"$T/tokens"
wait_exit "$QPID" 60
rc=$?
if [ $rc -eq 0 ] && all_delivered "$T/hdr" && ! grep -q 'auth=bad\|auth=missing' "$FAULT_LOG"; then
	pass "header file rotated mid-run: every request carried the current token, all delivered"
else
	fail "header file rotation" "rc=$rc $(grep 'auth=' "$FAULT_LOG" | tail -3)"
fi

# --- OAuth: the first token is revoked mid-run; a 401 makes quire refresh and retry ------
start_tokensrv() {
	local d=$T/tokensrv-$1
	mkdir -p "$d"
	TOKEN_LOG=$d/requests.log
	_start_bg tokenserver "$d/ready" "$d/stderr" python3 "$ROOT/tests/e2e/tokenserver.py" \
		--ready-file "$d/ready" --log "$TOKEN_LOG" --client-id quire-test \
		--client-secret "csecret-$1" --refresh-token "rtoken-$1" --publish "$T/tokens" "${@:2}" ||
		return 1
	read -r port _ <"$d/ready"
	(umask 077 && cat >"$T/oauth-$1.json" <<EOF
{"client_id": "quire-test", "client_secret": "csecret-$1", "refresh_token": "rtoken-$1",
 "token_uri": "http://127.0.0.1:$port/token"}
EOF
	)
}
start_tokensrv a
printf 'TEST0003 stall 1 at=1024 secs=3 then=continue\n' >"$T/rules" # a fresh stall
run_auth oauth --oauth "$T/oauth-a.json"
await "oauth refresh on 401: TEST0003 stalls" wait_for_line "$FAULT_LOG" "TEST0003.* stall " 20
echo "revoked" >"$T/tokens" # tok-1 no longer accepted
wait_exit "$QPID" 60
rc=$?
issued=$(grep -c ' 200 tok-' "$TOKEN_LOG")
if [ $rc -eq 0 ] && all_delivered "$T/oauth" && [ "$issued" -eq 2 ] &&
	grep -q ' 401 .*auth=bad' "$FAULT_LOG"; then
	pass "oauth: a 401 mid-run makes quire refresh once and retry; all delivered"
else
	fail "oauth refresh on 401" "rc=$rc issued=$issued $(tail -3 "$T/oauth.err")"
fi

# --- OAuth: a token about to expire is refreshed before any 401 -------------------------
start_tokensrv b --expires-in 301 # quire refreshes 5 minutes ahead: at once, then again
printf 'TEST0004 stall 1 at=1024 secs=3 then=continue\n' >"$T/rules"
before401=$(grep -c ' 401 ' "$FAULT_LOG")
run_auth early --oauth "$T/oauth-b.json"
wait_exit "$QPID" 60
rc=$?
issued=$(grep -c ' 200 tok-' "$TOKEN_LOG")
if [ $rc -eq 0 ] && all_delivered "$T/early" && [ "$issued" -ge 2 ] &&
	[ "$(grep -c ' 401 ' "$FAULT_LOG")" -eq "$before401" ]; then
	pass "oauth: tokens refreshed before expiry ($issued issued), no 401"
else
	fail "oauth refresh before expiry" "rc=$rc issued=$issued"
fi

# --- secrets never printed ---------------------------------------------------------------
leaked=0
for f in "$T"/*.err "$T"/*.out "$T"/*.journal; do
	if grep -q -e "$secret1" -e "$secret2" -e 'tok-[0-9]' -e 'csecret-' -e 'rtoken-' "$f"; then
		leaked=1
		echo "    secret in $f"
	fi
done
if [ $leaked -eq 0 ]; then pass "no token, client secret or refresh token in any output or journal"; else fail "secrets printed" "see above"; fi

# --- configuration errors ---------------------------------------------------------------
echo '{"client_id": "x"}' >"$T/bad-oauth.json"
expect_exit 2 "oauth file without client_secret: configuration error" \
	"$QUIRE" run --dest "$T/x" --passphrase-file "$PASSFILE" --journal "$T/x.journal" \
	--source "$FAULT_URL/{barcode}.tar.gz.gpg" --oauth "$T/bad-oauth.json" "$T/src/barcodes.txt"
expect_exit 2 "oauth token endpoint refusing the client: configuration error" \
	"$QUIRE" run --dest "$T/x" --passphrase-file "$PASSFILE" --journal "$T/x.journal" \
	--source "$FAULT_URL/{barcode}.tar.gz.gpg" --oauth <(sed 's/csecret-a/wrong/' "$T/oauth-a.json") \
	"$T/src/barcodes.txt"
