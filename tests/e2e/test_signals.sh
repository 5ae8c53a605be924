# Ctrl-C: the first signal stops intake and lets queued and in-flight books finish; the
# second aborts at once, leaving nothing partial. nginx's limit_rate keeps books in flight.

make_books "$T/src" 10 2M
start_nginx "$T/src" 512k # each book takes about 4 s to download

# start_quire NAME [options]: quire in the background with its stderr in $T/NAME.err
start_quire() {
	local name=$1
	shift
	"$QUIRE" run --dest "$T/$name" --passphrase-file "$PASSFILE" --journal "$T/$name.journal" \
		--source "$NGINX_HTTP/{barcode}.tar.gz.gpg" --workers 2 --downloads 2 \
		--queue-size 2 --threads 1 --status-every 1 "$@" "$T/src/barcodes.txt" \
		2>"$T/$name.err" &
	QPID=$!
}


for io in uring epoll; do
	# One SIGINT: drain.
	start_quire "drain-$io" --io "$io"
	# Two books downloading: their staging files exist.
	await "$io: drain: two books downloading" \
		wait_for_file "$T/drain-$io/.quire-staging/TEST0001.tar.gz.quire-part" 20 &&
		await "$io: drain: two books downloading" \
			wait_for_file "$T/drain-$io/.quire-staging/TEST0002.tar.gz.quire-part" 20
	kill -INT "$QPID"
	wait_exit "$QPID" 120
	rc=$?
	n=$(whole_or_absent "$T/drain-$io")
	msg=$(grep 'finishing' "$T/drain-$io.err")
	want=$(echo "$msg" | sed -nE 's/.*finishing ([0-9]+) books in flight and ([0-9]+) queued.*/\1 \2/p')
	in_flight=${want% *} queued=${want#* }
	if [ "$rc" -eq 130 ] && [ -n "$want" ] && [ "$n" -eq $((in_flight + queued)) ] &&
		[ "$n" -ge 2 ] && [ "$n" -lt 10 ] && grep -q 'Ctrl-C again' "$T/drain-$io.err" &&
		[ -z "$(ls -A "$T/drain-$io/.quire-staging")" ]; then
		pass "$io: one SIGINT: exit 130, the $in_flight in flight and $queued queued finish whole, intake stops"
	else
		fail "$io: drain" "rc=$rc delivered=$n msg='$msg'"
	fi
	if [ "$(grep -c $'\tok\t' "$T/drain-$io.journal")" -eq "$n" ]; then
		pass "$io: drain: the journal names every delivered book"
	else
		fail "$io: drain journal" "$(cat "$T/drain-$io.journal")"
	fi

	# Two SIGINTs: abort at once (the books in flight need seconds more; they must not be
	# finished), nothing partial anywhere. The time to exit is printed, not asserted.
	start_quire "abort-$io" --io "$io"
	await "$io: abort: two books downloading" \
		wait_for_file "$T/abort-$io/.quire-staging/TEST0002.tar.gz.quire-part" 20
	kill -INT "$QPID"
	await "$io: abort: the first SIGINT is taken" wait_for_line "$T/abort-$io.err" "Ctrl-C again" 10
	kill -INT "$QPID"
	t0=$(date +%s%N)
	wait_exit "$QPID" 60
	rc=$?
	ms=$((($(date +%s%N) - t0) / 1000000))
	n=$(whole_or_absent "$T/abort-$io")
	if [ "$rc" -eq 130 ] && [ "$n" = 0 ] && [ -z "$(ls -A "$T/abort-$io/.quire-staging")" ] &&
		[ "$(grep -c $'\tok\t' "$T/abort-$io.journal")" -eq 0 ]; then
		pass "$io: two SIGINTs: exit 130 (after $ms ms), in-flight books dropped, staging empty"
	else
		fail "$io: abort" "rc=$rc ms=$ms delivered=$n staging=$(ls -A "$T/abort-$io/.quire-staging")"
	fi
done

# SIGTERM drains like the first Ctrl-C.
start_quire term
await "SIGTERM: a book downloading" wait_for_file "$T/term/.quire-staging/TEST0001.tar.gz.quire-part" 20
kill -TERM "$QPID"
wait_exit "$QPID" 120
rc=$?
n=$(whole_or_absent "$T/term")
if [ "$rc" -eq 130 ] && [ "$n" -ge 1 ] && grep -q 'SIGTERM: finishing' "$T/term.err"; then
	pass "SIGTERM drains: exit 130, $n whole books"
else
	fail "SIGTERM" "rc=$rc n=$n $(cat "$T/term.err")"
fi
