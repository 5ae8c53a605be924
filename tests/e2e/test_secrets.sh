# Secrets: the passphrase and source tokens never appear in argv, logs, status lines or the
# journal; staging files are 0600 (their directory 0700), delivered files follow the
# umask; a warning when the passphrase or header file can be read by others.

make_books "$T/src" 3 1M
start_nginx "$T/src" 512k || exit 1 # a book takes about two seconds: time to look at it
PASS=$(cat "$PASSFILE")
TOKEN=tok-$(head -c 18 /dev/urandom | base64 | tr -d '\n=+/')

# no_secret NAME FILE...: pass when neither the passphrase nor the token is in any FILE.
no_secret() {
	local name=$1 f hit=""
	shift
	for f in "$@"; do
		[ -e "$f" ] || continue
		if grep -aqF -e "$PASS" -e "$TOKEN" "$f"; then hit="$hit $f"; fi
	done
	if [ -z "$hit" ]; then pass "$name"; else fail "$name" "secret found in$hit"; fi
}

# ---- a run under umask 027, looked at while it runs -------------------------------------
(
	umask 027
	exec "$QUIRE" run --dest "$T/out" --passphrase-file "$PASSFILE" --journal "$T/run.journal" \
		--source "$NGINX_HTTP/{barcode}.tar.gz.gpg" --status-every 1 "$T/src/barcodes.txt" \
		2>"$T/run.err"
) &
QPID=$!
part=$T/out/.quire-staging/TEST0001.tar.gz.quire-part
if wait_for_file "$part" 20; then
	mode=$(stat -c %a "$part")
	dmode=$(stat -c %a "$T/out/.quire-staging")
	tr '\0' ' ' <"/proc/$QPID/cmdline" >"$T/cmdline"
	ps -eo args >"$T/ps"
else
	fail "umask 027 run: TEST0001 downloading" "no staging file within 20 s"
	mode=missing dmode=missing
fi
wait_exit "$QPID" 60
rc=$?
[ "$rc" -eq 0 ] && pass "umask 027 run: exit 0" || fail "umask 027 run" "rc=$rc $(cat "$T/run.err")"
if [ "$mode" = 600 ] && [ "$dmode" = 700 ]; then
	pass "staging file 0600 in a 0700 directory (while the book downloads)"
else
	fail "staging modes" "file $mode, directory $dmode"
fi
if grep -q "$T/src/barcodes.txt" "$T/cmdline" && ! grep -qF "$PASS" "$T/cmdline" && ! grep -qF "$PASS" "$T/ps"; then
	pass "the passphrase is not in quire's argv (/proc/PID/cmdline, ps)"
else
	fail "passphrase in argv" "$(cat "$T/cmdline")"
fi
modes=$(stat -c %a "$T"/out/*.tar.gz | sort -u | tr '\n' ' ')
if [ "$modes" = "640 " ]; then
	pass "delivered files follow umask 027: 0640"
else
	fail "delivered modes under umask 027" "modes: $modes"
fi
if [ "$(grep -cE '^[0-9]/3 \(' "$T/run.err")" -ge 2 ]; then
	no_secret "the passphrase is in no log, status line or journal line" "$T/run.err" "$T/run.journal"
else
	fail "status lines to check" "$(cat "$T/run.err")"
fi

# umask 077: delivered files 0600.
(
	umask 077
	exec "$QUIRE" run --dest "$T/out077" --passphrase-file "$PASSFILE" --journal "$T/077.journal" \
		--source "$T/src/{barcode}.tar.gz.gpg" "$T/src/barcodes.txt" 2>"$T/077.err"
)
modes=$(stat -c %a "$T"/out077/*.tar.gz | sort -u | tr '\n' ' ')
[ "$modes" = "600 " ] && pass "delivered files follow umask 077: 0600" ||
	fail "delivered modes under umask 077" "modes: $modes"

# ---- a passphrase file others can read: warned about, the secret not echoed --------------
cp "$PASSFILE" "$T/pass-open"
chmod 644 "$T/pass-open"
expect_exit 0 "a group/other-readable passphrase file still works" \
	"$QUIRE" run --dest "$T/out-open" --passphrase-file "$T/pass-open" --journal "$T/open.journal" \
	--source "$T/src/{barcode}.tar.gz.gpg" "$T/src/barcodes.txt" 2>"$T/open.err"
if grep -qE "^quire: warning: passphrase file $T/pass-open can be read by others" "$T/open.err"; then
	pass "warning when the passphrase file is group/other-readable"
else
	fail "passphrase file warning" "$(cat "$T/open.err")"
fi
chmod 640 "$T/pass-open"
"$QUIRE" run --dest "$T/out-grp" --passphrase-file "$T/pass-open" --journal "$T/grp.journal" \
	--source "$T/src/{barcode}.tar.gz.gpg" "$T/src/barcodes.txt" 2>"$T/grp.err"
grep -q 'warning: passphrase file' "$T/grp.err" && pass "warning when only the group can read it (0640)" ||
	fail "passphrase file 0640 warning" "$(cat "$T/grp.err")"

# A wrong passphrase: the failure messages name neither it nor the right one.
echo "wrong-$PASS-wrong" >"$T/pass-wrong"
chmod 600 "$T/pass-wrong"
"$QUIRE" run --dest "$T/out-wrong" --passphrase-file "$T/pass-wrong" --journal "$T/wrong.journal" \
	--source "$T/src/{barcode}.tar.gz.gpg" --max-consecutive-failures 2 "$T/src/barcodes.txt" \
	2>"$T/wrong.err"
if grep -q 'wrong passphrase' "$T/wrong.err"; then
	no_secret "wrong passphrase: its failure messages and journal hold no passphrase" \
		"$T/wrong.err" "$T/wrong.journal"
else
	fail "wrong passphrase run" "$(cat "$T/wrong.err")"
fi

# QUIRE_PASSPHRASE (the other way in, never argv): not echoed either.
QUIRE_PASSPHRASE=$PASS "$QUIRE" run --dest "$T/out-env" --journal "$T/env.journal" \
	--source "$T/src/{barcode}.tar.gz.gpg" "$T/src/barcodes.txt" 2>"$T/env.err"
rc=$?
if [ $rc -eq 0 ] && cmp -s "$T/plain/TEST0002.tar.gz" "$T/out-env/TEST0002.tar.gz"; then
	no_secret "QUIRE_PASSPHRASE: works, not echoed" "$T/env.err" "$T/env.journal"
else
	fail "QUIRE_PASSPHRASE" "rc=$rc $(cat "$T/env.err")"
fi

# ---- --header-file: a bearer token the fault server checks --------------------------------
start_faultserver "$T/src" --token "$TOKEN" || exit 1
printf 'Authorization: Bearer %s\n' "$TOKEN" >"$T/headers"
chmod 600 "$T/headers"
expect_exit 0 "--header-file token: exit 0" \
	"$QUIRE" run --dest "$T/out-tok" --passphrase-file "$PASSFILE" --journal "$T/tok.journal" \
	--source "$FAULT_URL/{barcode}.tar.gz.gpg" --header-file "$T/headers" --status-every 1 \
	"$T/src/barcodes.txt" 2>"$T/tok.err"
if [ "$(grep -c '^GET .* 200 - .* auth=ok$' "$FAULT_LOG")" -eq 3 ] && ! grep -q 'warning' "$T/tok.err"; then
	pass "--header-file: every request carried the token (the server checked it); no warning at 0600"
else
	fail "--header-file requests" "$(cat "$FAULT_LOG" "$T/tok.err")"
fi
no_secret "--header-file: the token is in no log, status line or journal line" "$T/tok.err" "$T/tok.journal"

# A header file others can read: warned about. A wrong token (401 every time): the run
# stops after --max-consecutive-failures and says why, without printing either token.
printf 'Authorization: Bearer wrong-%s\n' "$TOKEN" >"$T/headers-bad"
chmod 644 "$T/headers-bad"
: >"$FAULT_LOG"
"$QUIRE" run --dest "$T/out-bad" --passphrase-file "$PASSFILE" --journal "$T/bad.journal" \
	--source "$FAULT_URL/{barcode}.tar.gz.gpg" --header-file "$T/headers-bad" --retries 1 \
	--max-consecutive-failures 2 --workers 1 "$T/src/barcodes.txt" 2>"$T/bad.err"
rc=$?
if grep -qE "^quire: warning: --header-file $T/headers-bad can be read by others" "$T/bad.err"; then
	pass "warning when the header file is group/other-readable"
else
	fail "header file warning" "$(cat "$T/bad.err")"
fi
if [ $rc -eq 1 ] && grep -q 'auth=bad' "$FAULT_LOG" && grep -q 'stopped early' "$T/bad.err"; then
	no_secret "a refused token (401): the run stops, and no token is printed" "$T/bad.err" "$T/bad.journal"
else
	fail "refused token" "rc=$rc $(grep -v attempt "$T/bad.err")"
fi
