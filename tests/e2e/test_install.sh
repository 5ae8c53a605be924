# make install / uninstall into a DESTDIR; the man page renders without a warning; the
# installed binary runs; and --help, the man page and the bash completion list the same
# options for every command (they come from one table: this fails when they drift).
# Installs the release build (build/quire) the way a user would; $QUIRE answers --help.

# The parent make's flags (a BUILD= or a jobserver) must not leak into ours.
mk() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$ROOT" "$@"; }

D=$T/dest
P=$D/usr/local
if ! mk install DESTDIR="$D" >"$T/install.log" 2>&1; then
	fail "make install" "$(tail -3 "$T/install.log")"
	return 0
fi
pass "make install DESTDIR"

(cd "$D" && find . -type f -o -type l | sort) >"$T/installed"
printf '%s\n' ./usr/local/bin/quire ./usr/local/share/bash-completion/completions/quire \
	./usr/local/share/man/man1/quire.1 >"$T/want"
if cmp -s "$T/installed" "$T/want"; then pass "install: bin, man1, bash completion"; else
	fail "install: bin, man1, bash completion" "installed: $(tr '\n' ' ' <"$T/installed")"
fi
[ -x "$P/bin/quire" ] && [ "$(stat -c %a "$P/share/man/man1/quire.1")" = 644 ] &&
	pass "install: modes" || fail "install: modes" "$(stat -c '%a %n' "$P"/bin/quire "$P"/share/man/man1/quire.1)"

# The installed binary runs on its own.
out=$("$P/bin/quire" --version 2>&1)
case $out in "quire "?*) pass "installed binary runs" ;; *) fail "installed binary runs" "$out" ;; esac
if "$P/bin/quire" help | grep -q 'quire report'; then pass "installed: quire help"; else
	fail "installed: quire help" "no 'quire report' in quire help"
fi

# man renders the page, and groff finds nothing to warn about.
MANWIDTH=100 man --warnings -l "$P/share/man/man1/quire.1" 2>"$T/man.err" | col -b >"$T/man.txt"
if [ -s "$T/man.err" ]; then fail "man -l renders without warnings" "$(head -3 "$T/man.err")"; else
	pass "man -l renders without warnings"
fi
missing=
for h in NAME SYNOPSIS DESCRIPTION COMMANDS 'EXIT STATUS' SIGNALS ENVIRONMENT JOURNAL EXAMPLES \
	'   quire run' '   quire decrypt' '   quire report' '   quire bench decrypt' \
	QUIRE_PASSPHRASE AWS_SECRET_ACCESS_KEY "awk -F'\\t'"; do
	grep -qF -- "$h" "$T/man.txt" || missing="$missing [$h]"
done
if [ -z "$missing" ]; then pass "man page: sections, commands, environment, journal"; else
	fail "man page: sections, commands, environment, journal" "missing$missing"
fi

# Every command's long options, three ways.
help_opts() { # the --NAME words of option lines (two spaces, a dash) in COMMAND --help
	# shellcheck disable=SC2086
	"$QUIRE" $1 --help | grep -E '^  -' | sed -E 's/^  //; s/   .*//; s/  [a-z].*//' |
		grep -oE -- '--[a-z0-9][a-z0-9-]*' | sort -u
}
man_opts() { # the option entries (\fB--NAME\fR) under .SS quire COMMAND in the page's roff
	awk -v want="quire $1" '
		/^\.S[SH] / { cur = substr($0, 5) }
		cur == want && /^\\fB(-., )?--/ { print }' "$P/share/man/man1/quire.1" |
		grep -oE -- '--[a-z0-9][a-z0-9-]*' | sort -u
}
completion_opts() { # what the installed completion offers after "quire COMMAND --"
	# shellcheck disable=SC2086
	bash -c 'source "$1"; shift; COMP_WORDS=(quire "$@" --); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		_quire; printf "%s\n" "${COMPREPLY[@]}"' _ "$P/share/bash-completion/completions/quire" $1 |
		sort -u
}
"$QUIRE" help --json | python3 -c 'import json, sys
for c in json.load(sys.stdin): print(c["name"])' >"$T/commands"
[ "$(wc -l <"$T/commands")" -ge 5 ] && pass "quire help --json lists the commands" ||
	fail "quire help --json lists the commands" "$(cat "$T/commands")"
while read -r cmd; do
	help_opts "$cmd" >"$T/h"
	man_opts "$cmd" >"$T/m"
	completion_opts "$cmd" >"$T/c"
	if [ "$(wc -l <"$T/h")" -lt 2 ]; then
		fail "$cmd: --help lists options" "$(wc -l <"$T/h") found"
		continue
	fi
	if cmp -s "$T/h" "$T/m"; then pass "$cmd: man page options = --help"; else
		fail "$cmd: man page options = --help" "$(diff "$T/h" "$T/m" | grep '^[<>]' | tr '\n' ' ')"
	fi
	if cmp -s "$T/h" "$T/c"; then pass "$cmd: completion options = --help"; else
		fail "$cmd: completion options = --help" "$(diff "$T/h" "$T/c" | grep '^[<>]' | tr '\n' ' ')"
	fi
done <"$T/commands"

# Every --option the page's prose names is an option of some command (gpg's excepted).
while read -r cmd; do help_opts "$cmd"; done <"$T/commands" | sort -u >"$T/all"
grep -oE -- '(^|[ (*])--[a-z][a-z0-9-]*' "$T/man.txt" | grep -oE -- '--[a-z0-9-]+' | sort -u |
	grep -vxF -e --symmetric -e --decrypt >"$T/named"
unknown=$(comm -23 "$T/named" "$T/all" | tr '\n' ' ')
if [ -z "$unknown" ]; then pass "man page names no option that does not exist"; else
	fail "man page names no option that does not exist" "$unknown"
fi

# Completion of values: a choice list, and files for an operand.
got=$(bash -c 'source "$1"; COMP_WORDS=(quire report --format ""); COMP_CWORD=3; _quire
	echo "${COMPREPLY[*]}"' _ "$P/share/bash-completion/completions/quire")
[ "$got" = "text json" ] && pass "completion: --format values" || fail "completion: --format values" "$got"
got=$(cd "$P/share/man/man1" && bash -c 'source "$1"; COMP_WORDS=(quire report qu); COMP_CWORD=2
	_quire; echo "${COMPREPLY[*]}"' _ "$P/share/bash-completion/completions/quire")
[ "$got" = "quire.1" ] && pass "completion: journal operand is a file" ||
	fail "completion: journal operand is a file" "$got"

# Uninstall removes exactly what install put: a file of someone else's beside it stays.
echo keep >"$P/bin/other-tool"
mk uninstall DESTDIR="$D" >"$T/uninstall.log" 2>&1
left=$(cd "$D" && find . -type f -o -type l | sort | tr '\n' ' ')
[ "$left" = "./usr/local/bin/other-tool " ] && pass "make uninstall removes exactly what install put" ||
	fail "make uninstall removes exactly what install put" "left: $left"

# PREFIX moves everything.
mk install DESTDIR="$D" PREFIX=/opt/quire >"$T/install2.log" 2>&1
[ -x "$D/opt/quire/bin/quire" ] && [ -f "$D/opt/quire/share/man/man1/quire.1" ] &&
	pass "make install PREFIX=/opt/quire" || fail "make install PREFIX=/opt/quire" "$(ls -R "$D/opt" 2>&1 | head -5)"
mk uninstall DESTDIR="$D" PREFIX=/opt/quire >/dev/null 2>&1
[ -z "$(find "$D/opt" -type f)" ] && pass "make uninstall PREFIX=/opt/quire" ||
	fail "make uninstall PREFIX=/opt/quire" "$(find "$D/opt" -type f)"
