# The live view in a real terminal: tmux runs quire (--progress's default there is live),
# capture-pane reads the screen at two moments, each waited for on the journal's line
# count: the view is one block redrawn in place, its figures grow, the failure's log line
# lands above it and the view names it, the failures are red unless NO_COLOR is set, and
# at the end the view gives way to the summary line. The same runs in a pipe print only
# plain lines, exactly today's status lines, and no control character.

if ! command -v tmux >/dev/null; then
	fail "progress: tmux" "missing (tools/deps.sh installs it)"
	return 0
fi

BOOKS_S2K=65536 make_books "$T/src" 40 16K
BOOKS_S2K=65536 make_books "$T/src/q" 12 16K Q
{ echo MISS0001; cat "$T/src/barcodes.txt"; } >"$T/list"   # a failure first
{ echo MISS0001; cat "$T/src/q/barcodes.txt"; } >"$T/qlist"
# Books that take a while, so the view is seen while they run.
printf '%s\n' 'TEST* delay always secs=0.3' 'Q* delay always secs=0.3' >"$T/rules"
start_faultserver "$T/src" --rules "$T/rules" || return 0

SOCK=$T/tmux.sock
tmux_() { TERM=xterm tmux -S "$SOCK" "$@"; }
on_exit "TERM=xterm tmux -S '$SOCK' kill-server 2>/dev/null"

# in_tmux NAME URL LIST ENV... [-- OPTIONS...]: quire in a 150x40 pane of session NAME;
# its exit status lands in $T/NAME.rc and the pane stays until the server goes.
in_tmux() {
	local name=$1 url=$2 list=$3 envs=() opts=()
	shift 3
	while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
	[ "${1:-}" = -- ] && shift
	opts=("$@")
	cat >"$T/$name.sh" <<EOF
env ${envs[*]} "$QUIRE" run --dest "$T/$name" --passphrase-file "$PASSFILE" \\
	--journal "$T/$name.journal" --source "$url/{barcode}.tar.gz.gpg" --downloads 2 \\
	--status-every 5 ${opts[*]} "$list"
echo \$? >"$T/$name.rc.tmp" && mv "$T/$name.rc.tmp" "$T/$name.rc"
exec cat
EOF
	tmux_ new-session -d -s "$name" -x 150 -y 40 "bash $T/$name.sh"
}

# wait_lines FILE N: up to 30 s for FILE to have N lines.
wait_lines() {
	local end
	end=$(_deadline 30)
	while [ "$(_now_ms)" -lt "$end" ]; do
		[ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ] && return 0
		_wait_change "$1"
	done
	echo "wait_lines: $1 has fewer than $2 lines after 30 s" >&2
	return 1
}

# done_in FILE: the books done the view shows ("Books:    N/..." or "N done").
done_in() { sed -nE 's/^Books: +([0-9,]+)[/ ].*/\1/p' "$1" | tr -d , | head -1; }

# shot NAME MIN OUT: the screen into OUT once the view shows at least MIN books done
# (redrawn twice a second; up to 20 s), and with its escapes into OUT.e.
shot() {
	local name=$1 min=$2 out=$3 end n
	end=$(_deadline 20)
	while [ "$(_now_ms)" -lt "$end" ]; do
		tmux_ capture-pane -p -J -t "$name" >"$out"
		n=$(done_in "$out")
		if [ -n "$n" ] && [ "$n" -ge "$min" ]; then
			tmux_ capture-pane -p -J -e -t "$name" >"$out.e"
			return 0
		fi
		sleep 0.1
	done
	echo "shot: the view of $name never showed $min books done: $(cat "$out")" >&2
	return 1
}

# The block, once: its three lines each exactly once, no plain status line beside it.
one_view() {
	[ "$(grep -c '^Books: ' "$1")" -eq 1 ] && [ "$(grep -c '^Slots: ' "$1")" -eq 1 ] &&
		[ "$(grep -c '^Outcomes: ' "$1")" -eq 1 ] && ! grep -qE '^[0-9,]+/[0-9,]+ \(' "$1"
}

in_tmux live "$FAULT_URL" "$T/list" NO_COLOR=
J=$T/live.journal
wait_lines "$J" 5 && shot live 5 "$T/shot1"
n1=$(done_in "$T/shot1")
wait_lines "$J" 25 && shot live 25 "$T/shot2"
n2=$(done_in "$T/shot2")
for s in shot1 shot2; do
	if one_view "$T/$s" &&
		grep -qE '^Books: +[0-9]+/41 \([0-9.]+%\) - [0-9.]+ books/s - [0-9.]+ MB/s - ETA [^-]+ - elapsed [0-9]+s$' "$T/$s" &&
		grep -qE '^Slots: +downloads [0-2]/2, uploads [0-9]+/10 - finishing [0-9]+, waiting [0-9]+, retrying [0-9]+, queued [0-9]+$' "$T/$s"; then
		pass "live ($s): one view of three lines, redrawn in place, no plain status line"
	else
		fail "live ($s): the view" "$(cat "$T/$s")"
	fi
done
if [ -n "$n1" ] && [ -n "$n2" ] && [ "$n2" -gt "$n1" ] && [ "$n2" -ge 25 ]; then
	pass "live: the figures grow ($n1 then $n2 books done)"
else
	fail "live: figures grow" "'$n1' then '$n2'"
fi
books_s=$(sed -nE 's/^Books: .* - ([0-9.]+) books\/s - .*/\1/p' "$T/shot2")
awk -v r="$books_s" 'BEGIN { exit !(r > 0) }' && ! grep -q 'ETA unknown' "$T/shot2" &&
	pass "live: books/s ($books_s) and an ETA once books finish" || fail "live: rate and ETA" "$(grep '^Books' "$T/shot2")"
# The failure: its log line above the view, and the view's last failure.
logline=$(grep -n '^quire: MISS0001 (line 1): failed: not available from the source (HTTP 404)$' "$T/shot2" | cut -d: -f1)
viewline=$(grep -n '^Books: ' "$T/shot2" | cut -d: -f1)
if [ -n "$logline" ] && [ "$(echo "$logline" | wc -l)" -eq 1 ] && [ "$logline" -lt "$viewline" ] &&
	grep -qE '^Outcomes: ok [0-9]+, skipped 0, failed 1 - last failure: MISS0001: not available from the source \(HTTP 404\)$' "$T/shot2"; then
	pass "live: the failure's log line above the view, once; the view names the last failure"
else
	fail "live: failure shown" "$(cat "$T/shot2")"
fi
if grep -qF $'\e[31mfailed 1\e[' "$T/shot2.e" && grep -qF $'\e[31mMISS0001: not available' "$T/shot2.e"; then
	pass "live: failures in red"
else
	fail "live: color" "$(grep Outcomes "$T/shot2.e" | cat -v)"
fi
wait_for_file "$T/live.rc" 60
tmux_ capture-pane -p -J -t live >"$T/shot3"
if [ "$(cat "$T/live.rc")" = 1 ] && ! grep -q '^Books: \|^Slots: \|^Outcomes: ' "$T/shot3" &&
	grep -qE '^summary: 41/41 \(100\.0%\) - .*ok: 40, skipped: 0, failed: 1\]' "$T/shot3"; then
	pass "live: at the end the view gives way to the summary line; exit 1"
else
	fail "live: the end" "rc=$(cat "$T/live.rc" 2>/dev/null); $(cat "$T/shot3")"
fi
if [ "$(grep -c $'\tok\t' "$J")" -eq 40 ]; then
	pass "live: every book delivered"
else
	fail "live: books delivered" "$(grep -c $'\tok\t' "$J") ok lines"
fi

# NO_COLOR: the same view without a single escape of color.
in_tmux nocolor "$FAULT_URL/q" "$T/qlist" NO_COLOR=1
wait_lines "$T/nocolor.journal" 2 && shot nocolor 2 "$T/nc"
if one_view "$T/nc" && grep -q '^Outcomes: .*failed 1 - last failure: MISS0001' "$T/nc" &&
	! grep -q $'\e\\[[0-9;]*m' "$T/nc.e"; then
	pass "live: NO_COLOR=1: the view, no color"
else
	fail "live: NO_COLOR" "$(cat -v "$T/nc.e")"
fi

# --progress plain on a terminal: today's status lines, no view.
in_tmux plain "$FAULT_URL/q" "$T/qlist" -- --progress plain
wait_for_file "$T/plain.rc" 60
tmux_ capture-pane -p -J -t plain >"$T/plain.pane"
if [ "$(grep -cE '^(5|10)/13 \(' "$T/plain.pane")" -eq 2 ] && ! grep -q '^Books: ' "$T/plain.pane"; then
	pass "--progress plain on a terminal: the status lines, no view"
else
	fail "--progress plain on a terminal" "$(cat "$T/plain.pane")"
fi

# In a pipe: plain lines only, exactly as ever, whatever --progress says.
status_re='^(5|10)/13 \((38\.5|76\.9)%\) - [0-9.]+ books/s - [0-9.]+ MB/s - elapsed: [0-9]+s \(ETA: [^)]+\) \[downloads: [0-2]/2, uploads: [0-9]+/10, finishing: [0-9]+, waiting to download: [0-9]+, queued: [0-9]+, (retrying: [0-9]+, )?ok: [0-9]+, skipped: 0, failed: 1\]$'
for mode in default live none; do
	opt=()
	[ $mode = default ] || opt=(--progress $mode)
	"$QUIRE" run --dest "$T/pipe-$mode" --passphrase-file "$PASSFILE" --journal "$T/pipe-$mode.journal" \
		--source "$FAULT_URL/q/{barcode}.tar.gz.gpg" --downloads 2 --status-every 5 "${opt[@]}" \
		"$T/qlist" 2>&1 | cat >"$T/pipe-$mode.err"
	want=2
	[ $mode = none ] && want=0
	if LC_ALL=C grep -q '[[:cntrl:]]' "$T/pipe-$mode.err"; then
		fail "pipe ($mode): no control characters" "$(cat -v "$T/pipe-$mode.err" | grep -m1 '\^')"
	elif [ "$(grep -cE "$status_re" "$T/pipe-$mode.err")" -ne $want ] ||
		grep -q '^Books: ' "$T/pipe-$mode.err" ||
		! grep -qE '^summary: 13/13 \(100\.0%\) - .*ok: 12, skipped: 0, failed: 1\]$' "$T/pipe-$mode.err"; then
		fail "pipe ($mode): plain lines" "$(cat "$T/pipe-$mode.err")"
	else
		pass "pipe ($mode): $want status lines as ever, the summary, no control characters"
	fi
done
grep -q '^quire: --progress live: standard error is not a terminal; printing plain status lines instead$' "$T/pipe-live.err" &&
	pass "pipe: --progress live says it prints plain lines" || fail "pipe: --progress live notice" "$(head -3 "$T/pipe-live.err")"
expect_exit 2 "--progress fancy is a usage error" "$QUIRE" run --dest "$T/x" --source "/x/{barcode}" \
	--progress fancy - </dev/null 2>"$T/bad.err"
grep -q -- "--progress: expected one of plain live none, got 'fancy'" "$T/bad.err" &&
	pass "--progress: the bad value named" || fail "--progress: bad value" "$(cat "$T/bad.err")"
