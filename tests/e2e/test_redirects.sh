# Redirects (issue 14 item 1): never out of TLS, credentials only to the origin they were
# meant for, loops ended with a clear error. quire follows redirects itself, hop by hop.

make_books "$T/src" 4 64K
mkdir -p "$T/src/moved"
cp "$T/src/TEST0002.tar.gz.gpg" "$T/src/moved/copy-of-2.gpg" # a name no rule matches
echo "SECRET-TOKEN-$RANDOM" >"$T/token"
printf 'Authorization: Bearer %s\n' "$(cat "$T/token")" >"$T/headers"
chmod 600 "$T/headers"

# Server B: another origin (another port) that also wants the token.
start_faultserver "$T/src" --token "$(cat "$T/token")" --no-name-faults
B_URL=$FAULT_URL B_LOG=$FAULT_LOG
cat >"$T/rules" <<RULES
TEST0001 redirect always to=$B_URL/TEST0001.tar.gz.gpg
TEST0002 redirect always to=/moved/copy-of-2.gpg
TEST0003 redirect always to=/TEST0003.tar.gz.gpg
RULES
start_faultserver "$T/src" --token "$(cat "$T/token")" --rules "$T/rules" --no-name-faults
printf 'TEST0001\nTEST0002\nTEST0003\nTEST0004\n' >"$T/list"

"$QUIRE" run --dest "$T/out" --passphrase-file "$PASSFILE" --journal "$T/j" --retries 0 \
	--header-file "$T/headers" --source "$FAULT_URL/{barcode}.tar.gz.gpg" "$T/list" \
	2>"$T/err"
rc=$?
if [ "$rc" -eq 1 ] && grep -q '^GET /TEST0001.tar.gz.gpg 401 auth .* auth=missing' "$B_LOG" &&
	! grep -q "$(cat "$T/token")" "$T/err" "$T/j"; then
	pass "redirect to another origin: followed without the credentials (B saw none)"
else
	fail "redirect to another origin" "rc=$rc; B: $(cat "$B_LOG")"
fi
if cmp -s "$T/plain/TEST0002.tar.gz" "$T/out/TEST0002.tar.gz" &&
	grep -q '^GET /moved/copy-of-2.gpg 200 .* auth=ok' "$FAULT_LOG"; then
	pass "redirect within the origin: followed with the credentials, book delivered"
else
	fail "same-origin redirect" "$(grep TEST0002 "$FAULT_LOG")"
fi
if grep -qE $'\tTEST0003\tfailed\t.*more than 5 redirects' "$T/j" &&
	[ "$(grep -c '^GET /TEST0003.tar.gz.gpg 302 ' "$FAULT_LOG")" -eq 6 ]; then
	pass "a redirect loop ends after 5 hops with a clear error"
else
	fail "redirect loop" "$(grep TEST0003 "$T/j")"
fi
check "a book without redirects is delivered" cmp -s "$T/plain/TEST0004.tar.gz" "$T/out/TEST0004.tar.gz"

# https -> http is refused before anything is sent in cleartext (to B, plain http).
NGINX_LOCATIONS="location /down/ { return 302 $B_URL\$request_uri; }"
start_nginx "$T/src"
echo TEST0004 >"$T/one"
b_lines=$(wc -l <"$B_LOG")
"$QUIRE" run --dest "$T/tls" --passphrase-file "$PASSFILE" --journal "$T/tls.j" --retries 0 \
	--ca-file "$CA_FILE" --header-file "$T/headers" \
	--source "$NGINX_HTTPS/down/{barcode}.tar.gz.gpg" "$T/one" 2>"$T/tls.err"
rc=$?
if [ "$rc" -eq 1 ] && grep -q 'leaves TLS' "$T/tls.err" &&
	grep -q '^GET /down/TEST0004.tar.gz.gpg 302 .* https' "$NGINX_LOG" &&
	[ "$(wc -l <"$B_LOG")" -eq "$b_lines" ] && [ ! -e "$T/tls/TEST0004.tar.gz" ]; then
	pass "https -> http redirect refused: no request went out in cleartext"
else
	fail "https -> http" "rc=$rc; $(cat "$T/tls.err"); log: $(cat "$NGINX_LOG")"
fi
