# quire decrypt against messages the real gpg makes here and now, compared byte for byte
# with what `gpg --decrypt` writes; refusals must exit non-zero and leave no output file.
export GNUPGHOME=$T/gnupg
mkdir -m 700 "$GNUPGHOME"
printf 'correct horse\n' >"$T/pw"
printf 'wrong horse\n' >"$T/badpw"
chmod 600 "$T/pw" "$T/badpw"
GPG=(gpg --batch --quiet --pinentry-mode loopback --passphrase-file "$T/pw")
# 65536 is the lowest count gpg 2.2 honours; lower values fall back to its default.
LOW=(--s2k-count 65536)

seq 1 20000 >"$T/text"
head -c 200000 /dev/urandom >"$T/random"
: >"$T/empty"

# enc NAME INPUT [gpg options...]: makes $T/NAME.gpg from INPUT read as a file, or from a
# pipe (INPUT prefixed with "|"), which makes gpg write partial body lengths.
enc() {
	local name=$1 in=$2
	shift 2
	if [ "${in:0:1}" = "|" ]; then
		"${GPG[@]}" "$@" --symmetric -o "$T/$name.gpg" <"${in:1}"
	else
		"${GPG[@]}" "$@" --symmetric -o "$T/$name.gpg" "$in"
	fi
}

# same_as_gpg NAME [quire options...]: both decrypt $T/NAME.gpg; outputs must be equal.
same_as_gpg() {
	local name=$1
	shift
	if ! "${GPG[@]}" --yes --decrypt -o "$T/$name.gpg-out" "$T/$name.gpg" 2>/dev/null; then
		fail "$name" "gpg itself cannot decrypt it"
		return
	fi
	rm -f "$T/$name.out"
	if ! "$QUIRE" decrypt --passphrase-file "$T/pw" -o "$T/$name.out" "$@" "$T/$name.gpg"; then
		fail "$name" "quire refused it"
		return
	fi
	same_file "$name" "$T/$name.gpg-out" "$T/$name.out"
}

# Ciphers, each with data from a file (one literal length) and from a pipe (partial).
for c in aes128 aes192 aes256 3des cast5 blowfish camellia128 camellia192 camellia256; do
	enc "c-$c" "$T/text" "${LOW[@]}" --cipher-algo "$c" && same_as_gpg "c-$c"
	enc "c-$c-pipe" "|$T/random" "${LOW[@]}" --cipher-algo "$c" -z 0 && same_as_gpg "c-$c-pipe"
done
# S2K modes and hashes.
for h in md5 sha1 ripemd160 sha224 sha256 sha384 sha512; do
	for m in 0 1 3; do
		enc "s2k-$m-$h" "$T/text" "${LOW[@]}" --s2k-mode "$m" --s2k-digest-algo "$h" \
			2>/dev/null && same_as_gpg "s2k-$m-$h"
	done
done
# gpg's default S2K (65 MB of SHA-1), once.
enc default "$T/random" && same_as_gpg default
# Compression: none, ZIP, ZLIB, BZip2; from a file and from a pipe.
for z in none zip zlib bzip2; do
	enc "z-$z" "$T/text" "${LOW[@]}" --compress-algo "$z" && same_as_gpg "z-$z"
	enc "z-$z-pipe" "|$T/text" "${LOW[@]}" --compress-algo "$z" && same_as_gpg "z-$z-pipe"
done
enc empty "$T/empty" "${LOW[@]}" && same_as_gpg empty
enc empty-pipe "|$T/empty" "${LOW[@]}" && same_as_gpg empty-pipe
# A session key encrypted in the SKESK (gpg writes one when there is also a recipient).
gpg --batch --quiet --passphrase '' --quick-gen-key quire-test@example.org rsa1024 encr never \
	2>/dev/null
"${GPG[@]}" "${LOW[@]}" --trust-model always -r quire-test@example.org --encrypt --symmetric \
	-o "$T/esk.gpg" "$T/text" && same_as_gpg esk

# Chunking: 1, 7 and 64 KiB fed at a time give the same bytes.
for n in 1 7 65536; do
	same_as_gpg z-zlib-pipe --feed-size "$n"
	same_as_gpg c-cast5-pipe --feed-size "$n"
done

# Input from stdin, output to stdout, passphrase from the environment.
QUIRE_PASSPHRASE='correct horse' "$QUIRE" decrypt - <"$T/z-bzip2-pipe.gpg" >"$T/stdio.out"
same_file stdin-stdout "$T/z-bzip2-pipe.gpg-out" "$T/stdio.out"

# -o over an existing file replaces it; the new file gets 0666 & ~umask.
echo old >"$T/exists.out"
(umask 027 && "$QUIRE" decrypt --passphrase-file "$T/pw" -o "$T/exists.out" "$T/z-zip.gpg")
same_file replace-existing "$T/z-zip.gpg-out" "$T/exists.out"
check mode-from-umask test "$(stat -c %a "$T/exists.out")" = 640

# refused NAME WANT_REASON FILE [quire options...]: exit 1, reason on stderr, no OUT left
# (not even a temporary file in its directory).
refused() {
	local name=$1 want=$2 file=$3
	shift 3
	mkdir -p "$T/out-$name"
	"$QUIRE" decrypt --passphrase-file "$T/pw" -o "$T/out-$name/plain" "$@" "$file" \
		2>"$T/$name.err"
	local rc=$?
	if [ $rc -ne 1 ]; then
		fail "$name" "exit $rc, wanted 1"
	elif [ -n "$(ls -A "$T/out-$name")" ]; then
		fail "$name" "left $(ls -A "$T/out-$name")"
	elif ! grep -q -- "$want" "$T/$name.err"; then
		fail "$name" "message: $(cat "$T/$name.err")"
	elif [ "$(wc -l <"$T/$name.err")" -ne 1 ]; then
		fail "$name" "not one line: $(cat "$T/$name.err")"
	else
		pass "$name"
	fi
}

flip() { # flip FILE OFFSET: a copy with one byte changed (XOR 0x5a: always a change)
	local b
	cp "$1" "$1.flip$2"
	b=$(od -An -tu1 -j "$2" -N1 "$1")
	printf "\\x$(printf %02x $((b ^ 0x5a)))" | dd of="$1.flip$2" bs=1 seek="$2" conv=notrunc \
		status=none
	echo "$1.flip$2"
}
size=$(stat -c %s "$T/c-aes256.gpg")
refused tamper-middle "MDC" "$(flip "$T/c-aes256.gpg" $((size / 2)))"
refused tamper-end "MDC" "$(flip "$T/c-aes256.gpg" $((size - 3)))"
zsize=$(stat -c %s "$T/z-zlib-pipe.gpg")
refused tamper-compressed "MDC" "$(flip "$T/z-zlib-pipe.gpg" $((zsize / 2)))"
head -c $((size - 1)) "$T/c-aes256.gpg" >"$T/trunc1.gpg"
refused truncated-1 "truncated" "$T/trunc1.gpg"
head -c $((zsize / 3)) "$T/z-zlib-pipe.gpg" >"$T/trunc3.gpg"
refused truncated-third "truncated" "$T/trunc3.gpg"
refused wrong-passphrase "wrong passphrase" "$T/c-aes256.gpg" --passphrase-file "$T/badpw"
"${GPG[@]}" "${LOW[@]}" --rfc2440 --symmetric -o "$T/nomdc.gpg" "$T/text" 2>/dev/null
refused no-mdc "integrity protection" "$T/nomdc.gpg"
"${GPG[@]}" --trust-model always -r quire-test@example.org --encrypt -o "$T/pubkey.gpg" "$T/text"
refused public-key-only "public key" "$T/pubkey.gpg"
refused garbage "not an OpenPGP message" "$T/text"
head -c 3000 /dev/urandom >"$T/noise"
refused noise "" "$T/noise"
refused empty-input "not an OpenPGP message" "$T/empty"
"${GPG[@]}" "${LOW[@]}" --armor --symmetric -o "$T/armored.asc" "$T/text"
refused armored "armored" "$T/armored.asc"
enc twofish "$T/text" "${LOW[@]}" --cipher-algo twofish
refused twofish "Twofish" "$T/twofish.gpg"
enc idea "$T/text" "${LOW[@]}" --cipher-algo idea
# OpenSSL builds without IDEA refuse it by name; builds with it must decrypt it.
if "$QUIRE" decrypt --passphrase-file "$T/pw" -o /dev/null "$T/idea.gpg" 2>/dev/null; then
	same_as_gpg idea
else
	refused idea "IDEA" "$T/idea.gpg"
fi

expect_exit 2 usage-extra-arg "$QUIRE" decrypt --passphrase-file "$T/pw" a b
expect_exit 2 usage-no-passphrase env -u QUIRE_PASSPHRASE "$QUIRE" decrypt "$T/z-zip.gpg"
expect_exit 1 missing-input "$QUIRE" decrypt --passphrase-file "$T/pw" "$T/nonexistent.gpg"

# -o syncs the data before the name appears and the directory after (strace's order).
# sync_order NAME LOG OUT: fdatasync of the output, then its linkat/rename to OUT, then an
# fsync (the directory), in that order.
sync_order() {
	local name=$1 log=$2 out=$3
	local order
	order=$(grep -nE 'fdatasync\(|linkat\(.*"'"$out"'(\.quire-[0-9-]+)?"|rename\(.*, "'"$out"'"\)|fsync\(' \
		"$log" | grep -v ' = -1 ' | sed -E 's/^([0-9]+):[0-9]+ +([a-z]+).*/\2/' | uniq | tr '\n' ' ')
	case $order in
	"fdatasync linkat fsync " | "fdatasync linkat rename fsync ") pass "$name" ;;
	*) fail "$name" "sync order: ${order:-none} ($(cat "$log"))" ;;
	esac
}
# traced: LeakSanitizer cannot run under ptrace.
traced() { # traced LOG CMD...
	local log=$1
	shift
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 strace -f -o "$log" \
		-e trace=fdatasync,fsync,linkat,rename,renameat,renameat2 "$@"
}
rm -f "$T/synced.out"
expect_exit 0 synced traced "$T/sync.strace" "$QUIRE" decrypt --passphrase-file "$T/pw" \
	-o "$T/synced.out" "$T/z-zip.gpg"
sync_order sync-before-link "$T/sync.strace" "$T/synced.out"
same_file synced-content "$T/z-zip.gpg-out" "$T/synced.out"
expect_exit 0 synced-replace traced "$T/sync2.strace" "$QUIRE" decrypt --passphrase-file \
	"$T/pw" -o "$T/synced.out" "$T/z-none.gpg"
sync_order sync-before-replace "$T/sync2.strace" "$T/synced.out"

# Crafted messages (RFC 9580 packet formats; AES-128 by `openssl enc`, S2K and MDC by
# hashlib), judged by gpg as well as quire.
head -c 300000 /dev/urandom >"$T/p1plain"
for z in "" zlib; do
	n=partial1${z:+-$z}
	check "craft-$n" python3 "$ROOT/tests/e2e/craftpgp.py" partial1 'correct horse' "$T/p1plain" "$T/$n.gpg" $z
	same_as_gpg "$n" && same_file "$n-plain" "$T/p1plain" "$T/$n.out"
	same_as_gpg "$n" --feed-size 1
done
check craft-skesk1 python3 "$ROOT/tests/e2e/craftpgp.py" skesks 1 'correct horse' "$T/text" "$T/skesk1.gpg"
same_as_gpg skesk1
# gpg stops at the first SKESK that does not unwrap; quire derives up to 4 keys.
check craft-skesk2 python3 "$ROOT/tests/e2e/craftpgp.py" skesks 2 'correct horse' "$T/text" "$T/skesk2.gpg"
"$QUIRE" decrypt --passphrase-file "$T/pw" -o "$T/skesk2.out" "$T/skesk2.gpg"
same_file skesk2-right-one-last "$T/text" "$T/skesk2.out"
check craft-skesk300 python3 "$ROOT/tests/e2e/craftpgp.py" skesks 300 'correct horse' "$T/text" "$T/skesk300.gpg"
"${GPG[@]}" --yes --decrypt -o "$T/skesk300.gpg-out" "$T/skesk300.gpg" 2>"$T/skesk300.gpg-err"
check skesk300-gpg-refuses grep -q "Bad session key" "$T/skesk300.gpg-err"
refused skesk300-bomb "S2K bomb" "$T/skesk300.gpg"

# A regular input is mapped: one cut short while quire reads it is refused with a clear
# line, not a crash (SIGBUS). quire writes into a FIFO that nobody drains yet, so it stops
# early on; the file is cut only once quire's first bytes have come out of the FIFO.
head -c 4000000 /dev/urandom >"$T/cutplain"
enc cut "$T/cutplain" --compress-algo none
mkfifo "$T/cut.fifo"
"$QUIRE" decrypt --threads 1 --passphrase-file "$T/pw" -o "$T/cut.fifo" "$T/cut.gpg" \
	2>"$T/cut.err" &
cutpid=$!
exec 3<"$T/cut.fifo"
if head -c 1 <&3 >/dev/null; then
	truncate -s 1000000 "$T/cut.gpg"
	cat <&3 >/dev/null
	exec 3<&-
	wait "$cutpid"
	rc=$?
	if [ "$rc" -eq 1 ] && grep -q "cut.gpg: could not be read while mapped (cut short, or an I/O error)" "$T/cut.err"; then
		pass input-cut-while-mapped
	else
		fail input-cut-while-mapped "exit $rc: $(cat "$T/cut.err")"
	fi
else
	exec 3<&-
	wait "$cutpid"
	fail input-cut-while-mapped "no output before the cut: $(cat "$T/cut.err")"
fi
