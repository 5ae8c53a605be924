#!/usr/bin/env bash
# `make demo`: quire run end to end on this machine. Makes (once; cached under
# build/demo-corpus) a corpus of books encrypted by gpg the way Google's are, serves it
# with nginx on loopback, runs `build/quire run` from it into demo/out with status lines,
# then checks a few delivered books against gpg's own decryption and all of them against
# the plaintext sums.
#
#   tools/demo.sh                 (after `make`; `make demo` does both)
# Environment: QUIRE (binary, default build/quire), DEMO_BOOKS (40), DEMO_SIZE (1M-4M,
# bytes of plaintext per book, see tools/mkcorpus), DEMO_S2K (65536; "default" for gpg's
# own, ~65 MB hashed per book as in real archives), DEMO_ARGS (more options for quire run).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
QUIRE=${QUIRE:-$ROOT/build/quire}
books=${DEMO_BOOKS:-40} size=${DEMO_SIZE:-1M-4M} s2k=${DEMO_S2K:-65536}
corpus=$ROOT/build/demo-corpus
out=$ROOT/demo/out
T=$(mktemp -d /tmp/quire-demo.XXXXXX)
# shellcheck source=tests/e2e/servers.sh
source "$ROOT/tests/e2e/servers.sh" # gives on_exit (run in reverse order at exit)
on_exit rm -rf "$T"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

[ -x "$QUIRE" ] || { echo "demo: $QUIRE is missing; run make first" >&2; exit 2; }
say "corpus: $books books of $size (gpg --symmetric, AES256, s2k-count $s2k) in build/demo-corpus"
# The passphrase lives beside the corpus, not in it: nginx serves the corpus directory.
mkdir -p "$ROOT/build"
"$ROOT/tools/mkcorpus" --passphrase-file "$ROOT/build/demo-passphrase" "$corpus" "$books" "$size" "$s2k"
du -sh "$corpus" | sed 's/^/   /'

say "source: nginx on loopback"
start_nginx "$corpus"
echo "   $NGINX_HTTP/{barcode}.tar.gz.gpg  (access log $NGINX_LOG)"

say "quire run"
rm -rf "$out" "$ROOT/demo/staging" "$ROOT/demo/quire.journal"
mkdir -p "$out" "$ROOT/demo/staging"
cmd=("$QUIRE" run --source "$NGINX_HTTP/{barcode}.tar.gz.gpg" --dest "$out"
	--passphrase-file "$ROOT/build/demo-passphrase" --staging "$ROOT/demo/staging"
	--journal "$ROOT/demo/quire.journal" --status-every 10)
# shellcheck disable=SC2206 # DEMO_ARGS is meant to be split into words
cmd+=(${DEMO_ARGS:-} "$corpus/barcodes.txt")
echo "   ${cmd[*]#"$ROOT/"}"
set +e
"${cmd[@]}"
rc=$?
set -e
echo "   exit status $rc"

say "check"
bad=0
for b in $(head -n 2 "$corpus/barcodes.txt") $(tail -n 1 "$corpus/barcodes.txt"); do
	if gpg --batch -q --homedir "$T" --pinentry-mode loopback \
		--passphrase-file "$ROOT/build/demo-passphrase" -d "$corpus/$b.tar.gz.gpg" 2>/dev/null |
		cmp -s - "$out/$b.tar.gz"; then
		echo "   $b.tar.gz: same bytes as gpg's decryption"
	else
		echo "   $b.tar.gz: DIFFERS from gpg's decryption (or is missing)"
		bad=1
	fi
done
gpgconf --homedir "$T" --kill all >/dev/null 2>&1 || true
if (cd "$out" && sha256sum --quiet -c "$corpus/plain.sha256"); then
	echo "   all $books delivered books match their plaintext SHA-256"
else
	echo "   some delivered books are missing or wrong (see above)"
	bad=1
fi
echo "   nginx served $(grep -c '^GET .* 200 ' "$NGINX_LOG") GETs"
[ "$rc" -eq 0 ] && [ "$bad" -eq 0 ]
