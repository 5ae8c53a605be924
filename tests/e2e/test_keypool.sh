# The key pool: books made with gpg's default S2K (tens of millions of bytes hashed per
# key), so every key is derived by the pool's threads while the workers go on serving
# their other transfers. Many books wait for keys at once; a wrong passphrase fails in the
# pool's derivation; two Ctrl-Cs while keys are queued drop them. Run under TSan too
# (make tsan): this is where the pool's threads meet the workers'.

BOOKS_S2K=default make_books "$T/src" 12 64K-1M
start_nginx "$T/src" || exit 1

# run_pool NAME [options...]: quire over the corpus from nginx into $T/NAME
run_pool() {
	local name=$1
	shift
	"$QUIRE" run --dest "$T/$name" --passphrase-file "$PASSFILE" --journal "$T/$name.journal" \
		--source "$NGINX_HTTP/{barcode}.tar.gz.gpg" "$@" "$T/src/barcodes.txt" 2>"$T/$name.err"
}

# all_ok NAME: every book byte-exact in $T/NAME, journaled ok once with its SHA-256.
all_ok() {
	local name=$1 b bad=0 sum
	while read -r b; do
		cmp -s "$T/plain/$b.tar.gz" "$T/$name/$b.tar.gz" || { bad=1; echo "    $b differs or is missing"; }
		sum=$(sha256sum <"$T/plain/$b.tar.gz" | cut -d' ' -f1)
		[ "$(grep -c $'\t'"$b"$'\tok\t[0-9]*\t'"$sum" "$T/$name.journal")" -eq 1 ] ||
			{ bad=1; echo "    $b: not one ok line with its SHA-256"; }
	done <"$T/src/barcodes.txt"
	[ -z "$(ls -A "$T/$name/.quire-staging")" ] || { bad=1; echo "    staging not empty"; }
	[ $bad -eq 0 ]
}

# The fixtures really carry gpg's default count (not the test's usual 65536): an iterated
# S2K specifier (type 3) whose coded count is above 65536's (0x60).
count=$(gpg --homedir "$T/gnupg" --list-packets --batch --pinentry-mode loopback \
	--passphrase-file "$PASSFILE" "$T/src/TEST0001.tar.gz.gpg" 2>&1 | sed -n 's/.*count \([0-9]*\).*/\1/p' | head -1)
check "fixtures: gpg's default S2K count ($count bytes hashed per key)" test "${count:-0}" -gt 65536

expect_exit 0 "two threads, 6 books in flight: exit 0" run_pool two --threads 2 --workers 6 --downloads 6
check "two threads: every book byte-exact, journaled with its SHA-256" all_ok two

# One thread, one pool thread, every book's key asked for at once.
expect_exit 0 "one thread, 12 books waiting for keys at once: exit 0" \
	run_pool one --threads 1 --workers 12 --downloads 12
check "one thread: every book byte-exact, journaled with its SHA-256" all_ok one

# The same from files (the source reads through the ring, not libcurl).
expect_exit 0 "file source, 12 keys at once: exit 0" \
	"$QUIRE" run --dest "$T/file" --passphrase-file "$PASSFILE" --journal "$T/file.journal" \
	--source "$T/src/{barcode}.tar.gz.gpg" --threads 1 --workers 12 "$T/src/barcodes.txt" \
	2>"$T/file.err"
check "file source: every book byte-exact, journaled with its SHA-256" all_ok file

# A wrong passphrase is found by the pool's derivation (the session key does not unwrap):
# the books fail, the run stops after 3 in a row, nothing is delivered.
echo "not-the-passphrase" >"$T/wrongpass"
chmod 600 "$T/wrongpass"
expect_exit 1 "wrong passphrase, derived in the pool: exit 1" \
	"$QUIRE" run --dest "$T/wrong" --passphrase-file "$T/wrongpass" --journal "$T/wrong.journal" \
	--source "$NGINX_HTTP/{barcode}.tar.gz.gpg" --threads 1 --workers 4 \
	--max-consecutive-failures 3 "$T/src/barcodes.txt" 2>"$T/wrong.err"
if grep -q 'wrong passphrase' "$T/wrong.err" && grep -q 'stopped early' "$T/wrong.err" &&
	[ -z "$(ls "$T/wrong"/*.tar.gz 2>/dev/null)" ] && [ -z "$(ls -A "$T/wrong/.quire-staging")" ]; then
	pass "wrong passphrase: named, the run stops, nothing delivered, staging empty"
else
	fail "wrong passphrase" "$(grep -v attempt "$T/wrong.err" | tail -3)"
fi

# Two Ctrl-Cs while keys are queued: one pool thread, 12 books whose first bytes have
# arrived and whose rest the fault server holds back for 10 s. The run must drop the
# queued derivations and end at once, nothing partial anywhere.
echo 'TEST* stall 1 at=4096 secs=10' >"$T/rules"
start_faultserver "$T/src" --rules "$T/rules" || exit 1
"$QUIRE" run --dest "$T/abort" --passphrase-file "$PASSFILE" --journal "$T/abort.journal" \
	--source "$FAULT_URL/{barcode}.tar.gz.gpg" --threads 1 --workers 12 --downloads 12 \
	"$T/src/barcodes.txt" 2>"$T/abort.err" &
QPID=$!
await "abort: the 12 books' first bytes sent" wait_count "$FAULT_LOG" '^GET .* stall ' 12 60
kill -INT "$QPID"
await "abort: quire says it drains" wait_for_line "$T/abort.err" "Ctrl-C again" 20
kill -INT "$QPID"
wait_exit "$QPID" 60
rc=$?
n=$(whole_or_absent "$T/abort")
if [ "$rc" -eq 130 ] && [ -n "$n" ] && [ -z "$(ls -A "$T/abort/.quire-staging")" ] &&
	grep -q 'aborting' "$T/abort.err"; then
	pass "two SIGINTs while keys are queued: exit 130, nothing partial ($n whole), staging empty"
else
	fail "abort with keys queued" "rc=$rc delivered=$n $(tail -3 "$T/abort.err")"
fi
