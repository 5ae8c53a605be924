#!/usr/bin/env bash
# Installs what quire's build, tests, demo and benchmarks need, only when missing, so that
# `make demo` and `make test` are the only commands a fresh Debian 12 machine needs.
# Debian packages by apt-get (as root); npm packages (s3rver, the AWS signer) pinned in
# tools/package.json and installed into tools/node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(build-essential pkg-config liburing-dev libcurl4-openssl-dev libssl-dev zlib1g-dev
      libbz2-dev libcmocka-dev libjansson-dev libarchive-dev libxml2-dev gnupg clang libclang-rt-14-dev clang-format
      cppcheck nginx-light openssl python3 curl gnuplot-nox time strace
      scdoc man-db bsdextrautils python3-prometheus-client python3-boto3
      iproute2 tmux)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
	echo "deps: installing ${missing[*]}" >&2
	sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -f tools/package.json ] && [ ! -f tools/node_modules/.installed ] ||
	[ tools/package.json -nt tools/node_modules/.installed ]; then
	echo "deps: npm install (tools/package.json)" >&2
	(cd tools && npm install --no-audit --no-fund --loglevel=error >/dev/null && touch node_modules/.installed)
fi
