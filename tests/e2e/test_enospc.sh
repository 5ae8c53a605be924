# A full disk: a 4 MiB tmpfs as --staging (then as --dest) with books larger than it. The
# books that do not fit fail cleanly (after their retries), the others are delivered
# byte-exact, nothing partial is left anywhere. Then --staging-max: downloads wait while
# the staged bytes are over the bound. Mounting needs privileges: without them the tmpfs
# cases are recorded as skipped, with why.

make_books "$T/src" 6 256K
make_books "$T/big" 2 6M BIG
cp "$T/big"/BIG000*.tar.gz.gpg "$T/src/"
{ head -3 "$T/src/barcodes.txt"; echo BIG0001; tail -3 "$T/src/barcodes.txt"; echo BIG0002; } >"$T/list.txt"
start_nginx "$T/src" || exit 1

# mount_small DIR: a 4 MiB tmpfs at DIR, unmounted when the test ends; 1 when not allowed.
mount_small() {
	mkdir -p "$1"
	mount -t tmpfs -o size=4m,mode=0700 quire-enospc "$1" 2>/dev/null || return 1
	on_exit "umount -l '$1'"
}

# small_ok DIR: the six small books byte-exact in DIR, no big one, nothing else but
# the entries named after DIR.
small_ok() {
	local dir=$1 b
	shift
	for b in $(cat "$T/src/barcodes.txt"); do
		cmp -s "$T/plain/$b.tar.gz" "$dir/$b.tar.gz" || { echo "    $b differs or is missing"; return 1; }
	done
	local others
	others=$(find "$dir" -mindepth 1 -maxdepth 1 "$@" -not -name 'TEST000[1-6].tar.gz')
	[ -z "$others" ] || { echo "    also in $dir: $others"; return 1; }
}

run_quire() {
	local name=$1
	shift
	"$QUIRE" run --passphrase-file "$PASSFILE" --journal "$T/$name.journal" \
		--source "$NGINX_HTTP/{barcode}.tar.gz.gpg" --retries 2 --workers 4 --downloads 4 \
		--threads 1 "$@" "$T/list.txt" 2>"$T/$name.err"
}

# enospc_outcome NAME WHERE: the two big books failed on a full disk, the summary says so.
enospc_outcome() {
	local name=$1 where=$2
	if grep -qE "^quire: BIG0001 \(line 4\): failed: .*No space left on device" "$T/$name.err" &&
		grep -qE "^quire: BIG0002 \(line 8\): failed: .*No space left on device" "$T/$name.err" &&
		grep -qE '^summary: 8/8 .*ok: 6, skipped: 0, failed: 2\]' "$T/$name.err" &&
		[ "$(grep -c $'\tok\t' "$T/$name.journal")" -eq 6 ]; then
		pass "ENOSPC in $where: the two books larger than the disk failed with 'No space left on device'"
	else
		fail "ENOSPC in $where: outcome" "$(grep -v 'attempt' "$T/$name.err" | tail -5)"
	fi
}

if mount_small "$T/small-staging" && mount_small "$T/small-dest"; then
	# ---- staging on a full disk, on both backends (where ENOSPC surfaces differs: an
	# io_uring completion, or a write made while every buffer is in flight) -------------
	for io in uring epoll; do
		expect_exit 1 "ENOSPC in staging ($io): exit 1 (two books failed)" \
			run_quire "stg-$io" --io "$io" --dest "$T/out-stg-$io" --staging "$T/small-staging"
		enospc_outcome "stg-$io" "staging ($io)"
		if small_ok "$T/out-stg-$io" -not -name .quire-incoming && [ -z "$(ls -A "$T/small-staging")" ] &&
			[ -z "$(ls -A "$T/out-stg-$io/.quire-incoming" 2>/dev/null)" ]; then
			pass "ENOSPC in staging ($io): the 6 other books byte-exact, nothing partial delivered, staging empty"
		else
			fail "ENOSPC in staging ($io): others" "$(ls -la "$T/out-stg-$io" "$T/small-staging")"
		fi
	done
	# ---- the destination on a full disk (staging elsewhere: copied, then renamed) -------
	expect_exit 1 "ENOSPC in --dest: exit 1 (two books failed)" \
		run_quire dst --dest "$T/small-dest" --staging "$T/staging-dst"
	enospc_outcome dst "--dest"
	# Copies across filesystems go through DEST/.quire-incoming: it must be empty.
	if small_ok "$T/small-dest" -not -name .quire-incoming && [ -z "$(ls -A "$T/staging-dst")" ] &&
		[ -z "$(ls -A "$T/small-dest/.quire-incoming" 2>/dev/null)" ]; then
		pass "ENOSPC in --dest: the 6 other books byte-exact, no partial or temporary file left, staging empty"
	else
		fail "ENOSPC in --dest: others" "$(ls -la "$T/small-dest" "$T/staging-dst")"
	fi
else
	skip "ENOSPC" "cannot mount a tmpfs here (needs CAP_SYS_ADMIN)"
fi

# ---- --staging-max ------------------------------------------------------------------------
# BIG0001 and BIG0002 (6 MB each) stage 5 MB each, then their source stalls for 6 s;
# TEST0001 (answered after 2 s) is delivered meanwhile and frees a book slot for TEST0002.
# With --staging-max 8MiB the staged bytes (10 MB) are over the bound, so TEST0002's
# download must wait until a big book is done; each big book alone fits under the bound.
if "$QUIRE" run --help | grep -q -- '--staging-max'; then
	cat >"$T/rules" <<'EOF'
BIG0001 stall 1 at=5000000 secs=6
BIG0002 stall 1 at=5000000 secs=6
TEST0001 delay 1 secs=2
EOF
	start_faultserver "$T/src" --rules "$T/rules" || exit 1
	printf 'BIG0001\nBIG0002\nTEST0001\nTEST0002\n' >"$T/max.txt"
	"$QUIRE" run --passphrase-file "$PASSFILE" --journal "$T/max.journal" --dest "$T/out-max" \
		--source "$FAULT_URL/{barcode}.tar.gz.gpg" --workers 3 --downloads 3 --threads 1 \
		--stall-timeout 20 --staging-max 8MiB "$T/max.txt" 2>"$T/max.err" &
	QPID=$!
	if await "--staging-max: TEST0002 requested" \
		wait_for_line "$FAULT_LOG" '^GET /TEST0002\.tar\.gz\.gpg ' 30; then
		big_done=no
		[ -e "$T/out-max/BIG0001.tar.gz" ] || [ -e "$T/out-max/BIG0002.tar.gz" ] && big_done=yes
	fi
	wait_exit "$QPID" 60
	rc=$?
	if [ "$rc" -eq 0 ] && [ "${big_done:-}" = yes ]; then
		pass "--staging-max: a download waits while the staged bytes are over the bound"
	else
		fail "--staging-max" "rc=$rc; TEST0002 was requested while both big books (10 MB staged) were still in flight: big_done=${big_done:-}"
	fi
	ok=1
	for b in BIG0001 BIG0002 TEST0001 TEST0002; do cmp -s "$T/plain/$b.tar.gz" "$T/out-max/$b.tar.gz" || ok=0; done
	if [ $ok -eq 1 ]; then
		pass "--staging-max: the four books byte-exact"
	else
		fail "--staging-max: books" "$(ls -la "$T/out-max")"
	fi
	# A book that alone is larger than the bound could never be staged: it fails alone.
	printf 'BIG0001\nTEST0003\n' >"$T/one-big.txt"
	"$QUIRE" run --passphrase-file "$PASSFILE" --journal "$T/one-big.journal" --dest "$T/out-onebig" \
		--source "$NGINX_HTTP/{barcode}.tar.gz.gpg" --staging-max 4MiB "$T/one-big.txt" \
		2>"$T/one-big.err"
	rc=$?
	if [ "$rc" -eq 1 ] && grep -q $'\tBIG0001\tfailed\t.*larger than --staging-max' "$T/one-big.journal" &&
		cmp -s "$T/plain/TEST0003.tar.gz" "$T/out-onebig/TEST0003.tar.gz" &&
		[ -z "$(ls -A "$T/out-onebig/.quire-staging")" ]; then
		pass "--staging-max: a book larger than the bound fails alone, clearly, refused by its length; the other delivered"
	else
		fail "--staging-max: one big book" "rc=$rc; $(cat "$T/one-big.err")"
	fi
else
	skip "--staging-max" "not implemented (not in quire run --help)"
fi
