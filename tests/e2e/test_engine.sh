# Issue 9's engine bugs, each pinned end to end (they fail on the engine before the
# issue's fixes):
#   (a) a barcode listed more than once: each book delivered once, byte-exact, one GET;
#       the journal says what became of every repeat (outcome "duplicate", the line of the
#       copy in flight in its detail)
#   (b) the list on a non-blocking stdin pipe whose writer is slow: every book fetched
#   (c) the list as a FIFO: a silent writer, then SIGTERM: exit 130 at once; writers that
#       send some lines and leave: those books delivered
#   (d) 40 books each answering 503 three times on one thread (tests/e2e/backoff.sh)
#   (e) an S3 multipart book of many parts on one thread with one book slot
# The source is the fault server (it logs each request before answering it, and delays
# books on request so that copies are surely in flight together).

# shellcheck source=tests/e2e/backoff.sh
source "$ROOT/tests/e2e/backoff.sh"

make_books "$T/src" 40 16K-256K
: >"$T/rules"
start_faultserver "$T/src" --rules "$T/rules" --no-name-faults || exit 1
NONBLOCK=$ROOT/build/helpers/nonblock

# run_engine NAME LIST [options...]: quire from the fault server into $T/NAME
run_engine() {
	local name=$1 list=$2
	shift 2
	"$QUIRE" run --dest "$T/$name" --passphrase-file "$PASSFILE" --journal "$T/$name.journal" \
		--source "$FAULT_URL/{barcode}.tar.gz.gpg" "$@" "$list" 2>"$T/$name.err"
}

# start_engine NAME LIST [options...]: the same in the background; QPID is quire's pid.
start_engine() {
	local name=$1 list=$2
	shift 2
	"$QUIRE" run --dest "$T/$name" --passphrase-file "$PASSFILE" --journal "$T/$name.journal" \
		--source "$FAULT_URL/{barcode}.tar.gz.gpg" "$@" "$list" 2>"$T/$name.err" 3>&- &
	QPID=$!
}

# gets B: the GETs of book B the fault server saw.
gets() { grep -c "^GET /$1\.tar\.gz\.gpg " "$FAULT_LOG"; }

# delivered_once NAME BARCODE...: in $T/NAME exactly these books, each byte-exact, each
# journaled ok once and requested once; staging empty.
delivered_once() {
	local dir=$T/$1 b bad=0 n
	shift
	for b in "$@"; do
		cmp -s "$T/plain/$b.tar.gz" "$dir/$b.tar.gz" || { bad=1; echo "    $b differs or is missing"; }
		n=$(grep -c $'\t'"$b"$'\tok\t' "$T/$(basename "$dir").journal")
		[ "$n" -eq 1 ] || { bad=1; echo "    $b: $n ok lines in the journal"; }
		n=$(gets "$b")
		[ "$n" -eq 1 ] || { bad=1; echo "    $b: $n GETs"; }
	done
	n=$(find "$dir" -mindepth 1 -maxdepth 1 -name '*.tar.gz' | wc -l)
	[ "$n" -eq $# ] || { bad=1; echo "    $n books in $dir, wanted $#"; }
	[ -z "$(ls -A "$dir/.quire-staging" 2>/dev/null)" ] || { bad=1; echo "    staging not empty"; }
	[ $bad -eq 0 ]
}

# repeats_journaled NAME BARCODE FIRST N [OUTCOMES]: the journal of NAME has N lines for
# BARCODE whose outcome is one of OUTCOMES (regex, default duplicate) and whose detail names
# "line FIRST", the line of the copy that was delivered.
repeats_journaled() {
	local n
	n=$(awk -F'\t' -v b="$2" -v first="$3" -v re="^(${5:-duplicate})$" \
		'$2 == b && $3 ~ re && $6 ~ ("(^|[^0-9])line " first "([^0-9]|$)") { n++ } END { print n + 0 }' \
		"$T/$1.journal")
	[ "$n" -eq "$4" ] || {
		echo "    $n repeat lines for $2 naming line $3, wanted $4; journal:"
		grep $'\t'"$2"$'\t' "$T/$1.journal" | sed 's/^/      /'
		return 1
	}
}

# ---- (a) duplicates -------------------------------------------------------------------
# X, X: the first copy is still waiting for its answer (2 s) when the second is taken.
echo 'TEST0001 delay 1 secs=2' >"$T/rules"
: >"$FAULT_LOG"
printf 'TEST0001\nTEST0001\n' >"$T/dup2.txt"
expect_exit 0 "duplicates: X, X: exit 0" run_engine dup2 "$T/dup2.txt"
check "duplicates: X, X: delivered once, byte-exact, one GET" delivered_once dup2 TEST0001
check "duplicates: X, X: the journal names the repeat a duplicate of line 1" \
	repeats_journaled dup2 TEST0001 1 1

# Far apart, both in flight: X at lines 1 and 20, other books between.
echo 'TEST0002 delay 1 secs=2' >"$T/rules"
: >"$FAULT_LOG"
{ echo TEST0002; for i in $(seq 3 20); do printf 'TEST%04d\n' "$i"; done; echo TEST0002; } >"$T/far.txt"
expect_exit 0 "duplicates: far apart, both in flight: exit 0" run_engine far "$T/far.txt"
# shellcheck disable=SC2046 # the barcodes, one word each
check "duplicates: far apart, both in flight: each book once, byte-exact, one GET each" \
	delivered_once far TEST0002 $(seq -f 'TEST%04g' 3 20)
check "duplicates: far apart, both in flight: the repeat at line 20 journaled a duplicate of line 1" \
	repeats_journaled far TEST0002 1 1

# Far apart, the first long delivered when the repeat is read (one book in flight, one
# queued): still one GET, and the journal says what became of line 12.
: >"$T/rules"
: >"$FAULT_LOG"
{ echo TEST0021; for i in $(seq 22 31); do printf 'TEST%04d\n' "$i"; done; echo TEST0021; } >"$T/late.txt"
expect_exit 0 "duplicates: far apart, the first delivered already: exit 0" \
	run_engine late "$T/late.txt" --workers 1 --queue-size 1
# shellcheck disable=SC2046
check "duplicates: far apart, the first delivered already: each book once, one GET each" \
	delivered_once late TEST0021 $(seq -f 'TEST%04g' 22 31)
check "duplicates: far apart, the first delivered already: line 12 journaled (duplicate or skipped, naming line 1)" \
	repeats_journaled late TEST0021 1 1 'duplicate|skipped'

# 20 copies with 20 book slots: all taken at once while the first waits for its answer.
echo 'TEST0040 delay 1 secs=2' >"$T/rules"
: >"$FAULT_LOG"
for i in $(seq 1 20); do echo TEST0040; done >"$T/dup20.txt"
expect_exit 0 "duplicates: 20 copies, --workers 20: exit 0" run_engine dup20 "$T/dup20.txt" --workers 20
check "duplicates: 20 copies: delivered once, byte-exact, one GET" delivered_once dup20 TEST0040
check "duplicates: 20 copies: the journal names 19 repeats duplicates of line 1" \
	repeats_journaled dup20 TEST0040 1 19

# ---- (b) stdin: a non-blocking pipe, a slow writer ---------------------------------------
# The writer sends a line only once the book before it has been requested, so quire finds
# the pipe empty between lines (EAGAIN on a non-blocking read: "not yet", not the end).
: >"$T/rules"
: >"$FAULT_LOG"
seq -f 'TEST%04g' 1 5 >"$T/slow.txt"
slow_writer() {
	local b
	while read -r b; do
		echo "$b" || return 1
		wait_for_line "$FAULT_LOG" "^GET /$b\\.tar\\.gz\\.gpg " 20 || return 1
	done <"$T/slow.txt"
	echo finished >"$T/slow.writer"
}
: >"$T/slow.writer"
slow_writer | "$NONBLOCK" "$QUIRE" run --dest "$T/slow" --passphrase-file "$PASSFILE" \
	--journal "$T/slow.journal" --source "$FAULT_URL/{barcode}.tar.gz.gpg" - 2>"$T/slow.err" &
QPID=$!
wait_exit "$QPID" 120
rc=$?
if [ "$rc" -eq 0 ] && [ "$(cat "$T/slow.writer")" = finished ] &&
	delivered_once slow TEST0001 TEST0002 TEST0003 TEST0004 TEST0005; then
	pass "stdin non-blocking, slow writer: exit 0, every book fetched once, byte-exact"
else
	fail "stdin non-blocking, slow writer" "rc=$rc, writer: $(cat "$T/slow.writer"); $(tail -2 "$T/slow.err")"
fi

# ---- (c) the list as a FIFO ----------------------------------------------------------------
# A writer that holds the FIFO open and says nothing; then SIGTERM. The test holds it
# read-write (fd 3), so that opening it never blocks either side.
mkfifo "$T/silent.fifo"
exec 3<>"$T/silent.fifo"
start_engine silent "$T/silent.fifo"
await "FIFO, silent writer: quire started" wait_for_line "$T/silent.err" 'worker threads on' 30
kill -TERM "$QPID"
wait_exit "$QPID" 20
rc=$?
exec 3>&-
if [ "$rc" -eq 130 ] && [ -z "$(ls "$T/silent"/*.tar.gz 2>/dev/null)" ]; then
	pass "FIFO, silent writer, SIGTERM: exit 130 within 20 s"
else
	fail "FIFO, silent writer, SIGTERM" "rc=$rc (124: still running 20 s after SIGTERM); $(tail -2 "$T/silent.err")"
fi

# A writer that sends three lines, waits until they are requested, sends two more, leaves.
: >"$FAULT_LOG"
mkfifo "$T/some.fifo"
(
	exec 4>"$T/some.fifo"
	printf 'TEST0006\nTEST0007\nTEST0008\n' >&4
	wait_count "$FAULT_LOG" '^GET /TEST000[678]\.' 3 30 || exit 1
	printf 'TEST0009\nTEST0010\n' >&4
) &
WPID=$!
start_engine some "$T/some.fifo"
wait_exit "$QPID" 60
rc=$?
wait_exit "$WPID" 10
wrc=$?
if [ "$rc" -eq 0 ] && [ "$wrc" -eq 0 ] && delivered_once some TEST0006 TEST0007 TEST0008 TEST0009 TEST0010; then
	pass "FIFO, a writer that sends lines in two bursts and leaves: exit 0, those 5 books delivered"
else
	fail "FIFO, two bursts" "rc=$rc writer=$wrc; $(tail -2 "$T/some.err")"
fi

# A writer that sends its lines and leaves at once, maybe before quire has read any.
: >"$FAULT_LOG"
mkfifo "$T/quick.fifo"
printf 'TEST0011\nTEST0012\n' >"$T/quick.fifo" &
WPID=$!
start_engine quick "$T/quick.fifo"
wait_exit "$QPID" 60
rc=$?
wait_exit "$WPID" 10
if [ "$rc" -eq 0 ] && delivered_once quick TEST0011 TEST0012; then
	pass "FIFO, a writer that sends two lines and leaves at once: exit 0, both delivered"
else
	fail "FIFO, quick writer" "rc=$rc (124: still running after 60 s); $(tail -2 "$T/quick.err")"
fi

# ---- (d) 40 books in backoff on one thread -----------------------------------------------
backoff_corpus
if backoff_run backoff; then
	pass "backoff: $BACKOFF_LINE"
else
	fail "backoff: 40 books x three 503s, --threads 1 --downloads 20 --workers 40" "$BACKOFF_LINE"
fi

# ---- (e) S3 multipart: many parts on one thread with one book slot -----------------------
if [ -d "$ROOT/tools/node_modules/s3rver" ]; then
	make_books "$T/big" 1 60M BIG
	cp "$T/big/BIG0001.tar.gz.gpg" "$T/src/"
	start_s3rver quire-test || exit 1
	start_s3_faultproxy --s3rver-dir "$S3RVER_DIR" || exit 1
	: >"$FAULT_LOG"
	expect_exit 0 "S3: a 60 MB book in 5 MiB parts, --threads 1 --workers 1: exit 0" \
		"$QUIRE" run --dest "s3://$S3_BUCKET/engine" --s3-endpoint "$S3_ENDPOINT" \
		--passphrase-file "$PASSFILE" --journal "$T/s3.journal" --staging "$T/s3staging" \
		--source "$FAULT_URL/{barcode}.tar.gz.gpg" --threads 1 --workers 1 --part-size 5MiB \
		"$T/big/barcodes.txt" 2>"$T/s3.err"
	parts=$(grep -c '^PUT /quire-test/engine/BIG0001.tar.gz?partNumber=.* 200 .*op=part' "$S3PROXY_LOG")
	if s3_get "$S3_BUCKET" engine/BIG0001.tar.gz "$T/s3got" 2>/dev/null &&
		cmp -s "$T/plain/BIG0001.tar.gz" "$T/s3got" && [ "$parts" -ge 12 ] &&
		[ -z "$(s3client list-multipart "$S3_BUCKET" engine/)" ]; then
		pass "S3: the 60 MB object is byte-exact ($parts parts), no upload left open"
	else
		fail "S3: multipart on one book slot" "$parts parts; $(grep -v attempt "$T/s3.err" | tail -3)"
	fi
else
	skip "S3 multipart on one book slot" "tools/node_modules/s3rver missing (make deps)"
fi
