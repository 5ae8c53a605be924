# shellcheck shell=bash
# Test peers on loopback, shared by the end-to-end tests (through lib.sh) and tools/demo.sh.
# Sourced; needs $T (a scratch directory of the caller's) and $ROOT (the project root).
# When the caller has no `on_exit CMD` (lib.sh gives one), a minimal one is defined here.
# Every start_* function must be called from the test's own shell (not inside $(...) or a
# pipe): it sets variables and registers the server's stop with on_exit.
#
#   free_port                      print a TCP port free on 127.0.0.1 just now
#   wait_port PORT [SECONDS]       wait until 127.0.0.1:PORT accepts (default 10 s)
#   wait_for_file PATH [SECONDS]   wait until PATH exists and is not empty (default 10 s)
#   wait_for_line FILE REGEX [SECONDS]
#                                  wait until a line of FILE matches the extended REGEX
#   wait_count FILE REGEX N [SECONDS]
#                                  wait until N lines of FILE match the extended REGEX
#   wait_exit PID [SECONDS]        wait until the child PID exits (default 60 s) and return
#                                  its exit status; past the deadline SIGKILL it, reap it,
#                                  say so and return 124
#   stop_pid PID [SECONDS]         SIGTERM PID, SIGKILL after SECONDS (default 5), reap it
#   make_ca                        $T/ca/{ca.pem,ca.key,server.pem,server.key}; CA_FILE
#   start_nginx DOCROOT [LIMIT_RATE]   (NGINX_LOCATIONS: more directives for its server)
#                                  NGINX_HTTP, NGINX_HTTPS, NGINX_LOG, NGINX_PID
#   start_s3rver [BUCKET...]       S3_ENDPOINT, S3RVER_ENDPOINT, S3RVER_DIR, S3RVER_LOG,
#                                  S3_BUCKET, AWS_* (default bucket quire-test)
#   start_faultserver DOCROOT [faultserver.py options]
#                                  FAULT_URL, FAULT_LOG, FAULT_PORT, FAULT_PID
#   start_s3_faultproxy [faultserver.py options]
#                                  S3 fault proxy in front of S3_ENDPOINT; S3_ENDPOINT now
#                                  points at it; S3PROXY_LOG, S3PROXY_PID
#   start_sigv4check               SigV4-checking proxy in front of S3_ENDPOINT; S3_ENDPOINT
#                                  now points at it; SIGV4_LOG, SIGV4_PID
#
# Waiting: inotifywait (inotify-tools) is used when installed, each wait capped at a
# second so that an event landing between a check and the watch costs at most that;
# otherwise these poll every 50 ms. Either way every wait has a deadline and returns 1
# when it passes.

if ! declare -F on_exit >/dev/null; then
	_on_exit=()
	on_exit() { _on_exit+=("$*"); }
	_servers_cleanup() {
		local i
		[ "$BASHPID" = "$$" ] || return 0 # not in a child forked for `CMD &` (lib.sh)
		for ((i = ${#_on_exit[@]} - 1; i >= 0; i--)); do eval "${_on_exit[$i]}" || true; done
	}
	trap _servers_cleanup EXIT
fi

NODE_MODULES=$ROOT/tools/node_modules
E2E_DIR=$ROOT/tests/e2e

free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# _wait_change PATH SECONDS_LEFT: sleeps until something changes near PATH, or a bit.
_wait_change() {
	local d=$1
	[ -d "$d" ] || d=$(dirname "$d")
	if command -v inotifywait >/dev/null && [ -d "$d" ]; then
		inotifywait -qq -t 1 -e create,moved_to,modify,close_write "$d" >/dev/null 2>&1 || true
	else
		sleep 0.05
	fi
}

_deadline() { echo $(($(date +%s%N) / 1000000 + ${1:-10} * 1000)); }
_now_ms() { echo $(($(date +%s%N) / 1000000)); }

wait_port() {
	local port=$1 end
	end=$(_deadline "${2:-10}")
	while [ "$(_now_ms)" -lt "$end" ]; do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	echo "wait_port: nothing listens on 127.0.0.1:$port after ${2:-10} s" >&2
	return 1
}

wait_for_file() {
	local path=$1 end
	end=$(_deadline "${2:-10}")
	while [ "$(_now_ms)" -lt "$end" ]; do
		[ -s "$path" ] && return 0
		_wait_change "$(dirname "$path")"
	done
	[ -s "$path" ] && return 0
	echo "wait_for_file: $path did not appear within ${2:-10} s" >&2
	return 1
}

wait_for_line() {
	local file=$1 re=$2 end
	end=$(_deadline "${3:-10}")
	while [ "$(_now_ms)" -lt "$end" ]; do
		[ -f "$file" ] && grep -Eq -- "$re" "$file" && return 0
		if [ -f "$file" ]; then _wait_change "$file"; else _wait_change "$(dirname "$file")"; fi
	done
	[ -f "$file" ] && grep -Eq -- "$re" "$file" && return 0
	echo "wait_for_line: no line matching /$re/ in $file within ${3:-10} s" >&2
	return 1
}

wait_count() {
	local file=$1 re=$2 want=$3 end
	end=$(_deadline "${4:-10}")
	while [ "$(_now_ms)" -lt "$end" ]; do
		[ "$(grep -cE -- "$re" "$file" 2>/dev/null)" -ge "$want" ] && return 0
		_wait_change "$file"
	done
	[ "$(grep -cE -- "$re" "$file" 2>/dev/null)" -ge "$want" ] && return 0
	echo "wait_count: fewer than $want lines matching /$re/ in $file within ${4:-10} s" >&2
	return 1
}

# A watchdog child sleeps out the deadline; `wait -n` returns for whichever ends first, so
# nothing polls. The watchdog is stopped with SIGKILL: until it has exec'd sleep it is a
# copy of this shell, whose traps a SIGTERM would run.
wait_exit() {
	local pid=$1 secs=${2:-60} wd who='' rc stat
	# wait -n would take a pid that is not our child for none at all, and sit out the
	# deadline: only a live child of this shell goes that way.
	if ! stat=$(cat "/proc/$pid/stat" 2>/dev/null); then
		wait "$pid" # gone already: its status, if it was ours
		return
	fi
	stat=${stat##*) }
	# shellcheck disable=SC2086 # the fields after the command name, split
	set -- $stat
	if [ "${2:-}" != "$BASHPID" ]; then
		echo "wait_exit: $pid is not a child of this shell" >&2
		return 127
	fi
	sleep "$secs" &
	wd=$!
	wait -n -p who "$pid" "$wd"
	rc=$?
	if [ "$who" = "$pid" ]; then
		kill -KILL "$wd" 2>/dev/null
		wait "$wd" 2>/dev/null
		return "$rc"
	fi
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	echo "wait_exit: $pid still running after $secs s: killed" >&2
	return 124
}

stop_pid() {
	local pid=$1 end
	kill -TERM "$pid" 2>/dev/null || return 0
	end=$(_deadline "${2:-5}")
	while kill -0 "$pid" 2>/dev/null && [ "$(_now_ms)" -lt "$end" ]; do sleep 0.05; done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

make_ca() {
	local d=$T/ca
	mkdir -p "$d"
	openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=quire test CA" -keyout "$d/ca.key" -out "$d/ca.pem" \
		-addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null || return 1
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-subj "/CN=localhost" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null || return 1
	printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
		"extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$d/ext.cnf"
	openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
		-CAcreateserial -days 2 -extfile "$d/ext.cnf" -out "$d/server.pem" 2>/dev/null || return 1
	chmod 600 "$d/ca.key" "$d/server.key"
	CA_FILE=$d/ca.pem
	export CA_FILE
}

# nginx in the foreground (daemon off) as a child of this shell, config and logs under
# $T/nginx. Access log format, one line a request, fields separated by single spaces:
#   METHOD URI STATUS BODY_BYTES SCHEME c=CONNECTION r=REQUESTS_ON_CONNECTION t=SECONDS
# e.g. "GET /TEST0001.tar.gz.gpg 200 1048664 http c=3 r=2 t=0.004", so a test counts the
# fetches of a book with: grep -c '^GET /TEST0001.tar.gz.gpg 200 ' "$NGINX_LOG".
start_nginx() {
	local docroot limit=${2:-0} d=$T/nginx http https try end
	docroot=$(cd "$1" && pwd) || return 1
	[ -n "${CA_FILE:-}" ] && [ -f "$T/ca/server.pem" ] || make_ca || return 1
	mkdir -p "$d/tmp"
	: >"$d/access.log"
	for try in 1 2 3; do
		http=$(free_port) https=$(free_port)
		cat >"$d/nginx.conf" <<EOF
daemon off;
user root;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log info;
events { worker_connections 1024; }
http {
    default_type application/octet-stream;
    log_format quire '\$request_method \$request_uri \$status \$body_bytes_sent \$scheme c=\$connection r=\$connection_requests t=\$request_time';
    access_log $d/access.log quire;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65s;
    keepalive_requests 10000;
    etag on;
    limit_rate $limit;
    server {
        listen 127.0.0.1:$http;
        listen 127.0.0.1:$https ssl;
        server_name localhost 127.0.0.1;
        ssl_certificate $T/ca/server.pem;
        ssl_certificate_key $T/ca/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $docroot;
        location / { }
        ${NGINX_LOCATIONS:-}
    }
}
EOF
		rm -f "$d/nginx.pid"
		/usr/sbin/nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" </dev/null \
			>>"$d/stdout.log" 2>&1 &
		NGINX_PID=$!
		# nginx writes its pid file after it has bound its listeners.
		end=$(_deadline 10)
		while kill -0 "$NGINX_PID" 2>/dev/null && [ ! -s "$d/nginx.pid" ] &&
			[ "$(_now_ms)" -lt "$end" ]; do
			_wait_change "$d/nginx.pid"
		done
		if [ -s "$d/nginx.pid" ] && wait_port "$http" 5 && wait_port "$https" 5; then
			on_exit stop_pid "$NGINX_PID"
			NGINX_HTTP=http://127.0.0.1:$http
			NGINX_HTTPS=https://localhost:$https
			NGINX_LOG=$d/access.log
			export NGINX_HTTP NGINX_HTTPS NGINX_LOG NGINX_PID
			return 0
		fi
		stop_pid "$NGINX_PID"
		echo "start_nginx: attempt $try failed:" >&2
		tail -n 3 "$d/error.log" >&2
	done
	return 1
}

# _start_bg NAME READY_FILE LOG CMD...: runs CMD in the background (output to LOG), waits
# until it writes READY_FILE, registers its stop; sets _PEER_PID.
_start_bg() {
	local name=$1 ready=$2 log=$3
	shift 3
	rm -f "$ready"
	"$@" </dev/null >>"$log" 2>&1 &
	_PEER_PID=$!
	local end
	end=$(_deadline 20)
	while [ ! -s "$ready" ] && kill -0 "$_PEER_PID" 2>/dev/null && [ "$(_now_ms)" -lt "$end" ]; do
		_wait_change "$ready"
	done
	if [ ! -s "$ready" ]; then
		echo "$name did not start; its log ($log):" >&2
		tail -n 20 "$log" >&2
		stop_pid "$_PEER_PID"
		return 1
	fi
	on_exit stop_pid "$_PEER_PID"
}

# s3rver 3.7.1, path-style only, data under $T/s3rver-N/data. Note what it lacks
# (its source says so): it does not check SigV4 signatures (use start_sigv4check), and it
# answers ListMultipartUploads with 501 NotImplemented and AbortMultipartUpload with 405
# (start_s3_faultproxy --s3rver-dir emulates both).
start_s3rver() {
	local buckets=("$@") d n=0 args=() b port
	[ ${#buckets[@]} -gt 0 ] || buckets=(quire-test)
	while [ -e "$T/s3rver-$n" ]; do n=$((n + 1)); done
	d=$T/s3rver-$n
	mkdir -p "$d/data"
	for b in "${buckets[@]}"; do args+=(--configure-bucket "$b"); done
	# Port 0: the kernel picks, s3rver prints it once listening (no race with free_port).
	# The legacy provider: s3rver 3.7 makes ListObjectsV2 continuation tokens with DES,
	# which Node 20's OpenSSL 3 refuses (a truncated listing then answers 500).
	NODE_OPTIONS=--openssl-legacy-provider node "$NODE_MODULES/s3rver/bin/s3rver.js" -d "$d/data" -a 127.0.0.1 -p 0 \
		--no-vhost-buckets "${args[@]}" </dev/null >"$d/log" 2>&1 &
	S3RVER_PID=$!
	on_exit stop_pid "$S3RVER_PID"
	wait_for_line "$d/log" 'S3rver listening on' 20 || { tail -n 20 "$d/log" >&2; return 1; }
	port=$(sed -n 's/.*S3rver listening on [^:]*:\([0-9]*\).*/\1/p' "$d/log")
	S3RVER_ENDPOINT=http://127.0.0.1:$port
	S3_ENDPOINT=$S3RVER_ENDPOINT
	S3RVER_DIR=$d/data
	S3RVER_LOG=$d/log
	S3_BUCKET=${buckets[0]}
	AWS_ACCESS_KEY_ID=S3RVER
	AWS_SECRET_ACCESS_KEY=S3RVER
	AWS_REGION=us-east-1
	export S3RVER_PID S3RVER_ENDPOINT S3_ENDPOINT S3RVER_DIR S3RVER_LOG S3_BUCKET \
		AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION
}

_next_dir() {
	local n=0
	while [ -e "$T/$1-$n" ]; do n=$((n + 1)); done
	mkdir -p "$T/$1-$n" && echo "$T/$1-$n"
}

start_faultserver() {
	local docroot=$1 d
	shift
	d=$(_next_dir faultserver) || return 1
	_start_bg faultserver "$d/ready" "$d/stderr" python3 "$E2E_DIR/faultserver.py" \
		--root "$docroot" --port 0 --ready-file "$d/ready" --log "$d/requests.log" "$@" ||
		return 1
	read -r FAULT_PORT FAULT_PID <"$d/ready"
	FAULT_URL=http://127.0.0.1:$FAULT_PORT
	FAULT_LOG=$d/requests.log
	export FAULT_PORT FAULT_PID FAULT_URL FAULT_LOG
}

start_s3_faultproxy() {
	local d port
	d=$(_next_dir s3proxy) || return 1
	_start_bg s3proxy "$d/ready" "$d/stderr" python3 "$E2E_DIR/faultserver.py" \
		--s3-proxy "$S3_ENDPOINT" --port 0 --ready-file "$d/ready" --log "$d/requests.log" \
		"$@" || return 1
	read -r port S3PROXY_PID <"$d/ready"
	S3_ENDPOINT=http://127.0.0.1:$port
	S3PROXY_LOG=$d/requests.log
	export S3_ENDPOINT S3PROXY_PID S3PROXY_LOG
}

# start_s3liar MODE [OPTIONS...]: tests/e2e/s3liar.py, a lying S3 (MODE as it says); sets
# LIAR_URL (an endpoint for --s3-endpoint) and LIAR_LOG (one line per request).
start_s3liar() {
	local d port
	d=$(_next_dir s3liar) || return 1
	_start_bg s3liar "$d/ready" "$d/stderr" python3 "$E2E_DIR/s3liar.py" --mode "$@" \
		--ready-file "$d/ready" --log "$d/requests.log" || return 1
	read -r port _ <"$d/ready"
	LIAR_URL=http://127.0.0.1:$port
	LIAR_LOG=$d/requests.log
	touch "$LIAR_LOG"
	export LIAR_URL LIAR_LOG
}

start_sigv4check() {
	local d port
	d=$(_next_dir sigv4check) || return 1
	_start_bg sigv4check "$d/ready" "$d/stderr" node "$E2E_DIR/sigv4check.mjs" \
		--upstream "$S3_ENDPOINT" --port 0 --ready-file "$d/ready" --log "$d/sigv4.log" ||
		return 1
	read -r port SIGV4_PID <"$d/ready"
	S3_ENDPOINT=http://127.0.0.1:$port
	SIGV4_LOG=$d/sigv4.log
	export S3_ENDPOINT SIGV4_PID SIGV4_LOG
}
