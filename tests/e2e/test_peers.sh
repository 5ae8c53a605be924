# The test peers themselves: fixtures, nginx (HTTP, HTTPS), the fault server, s3rver, the
# S3 fault proxy and the SigV4 checker, each driven by curl or the independent S3 client,
# so that the quire suites can trust them. Sourced by tests/e2e/run.sh after lib.sh.
# shellcheck shell=bash disable=SC2016 # bash -c scripts take their arguments as $1..

# --- fixtures ------------------------------------------------------------------------
port=$(free_port)
check "free_port gives a port" test "$port" -gt 0
books=$T/books
make_books "$books" 4 3K-300K
check "make_books: 4 books and a list" test "$(wc -l <"$books/barcodes.txt")" -eq 4
check "make_books: passphrase file is 0600" test "$(stat -c %a "$PASSFILE")" = 600
gpg --batch -q --homedir "$T/gnupg" --pinentry-mode loopback --passphrase-file "$PASSFILE" \
	-d -o "$T/dec1" "$books/TEST0001.tar.gz.gpg"
same_file "make_books: gpg decrypts to the kept plaintext" "$T/dec1" "$T/plain/TEST0001.tar.gz"
check "make_books: plain.sha256 matches the plaintexts" \
	bash -c 'cd "$1" && sha256sum --quiet -c "$2"' _ "$T/plain" "$books/plain.sha256"
m1=$(stat -c %Y.%i "$books/TEST0001.tar.gz.gpg")
make_books "$books" 4 3K-300K
check "make_books: a second call reuses the corpus" test "$m1" = "$(stat -c %Y.%i "$books/TEST0001.tar.gz.gpg")"
BOOKS_COMPRESS=zlib BOOKS_FORMAT=targz make_books "$T/zbooks" 1 20K ZB
check "make_books: compressed tar.gz variant decrypts to a tar" bash -c \
	'gpg --batch -q --homedir "$1" --pinentry-mode loopback --passphrase-file "$2" -d "$3" | tar tz >/dev/null' \
	_ "$T/gnupg" "$PASSFILE" "$T/zbooks/ZB0001.tar.gz.gpg"

# --- nginx ---------------------------------------------------------------------------
if start_nginx "$books"; then
	pass "nginx starts"
	curl -fsS -o "$T/n1" "$NGINX_HTTP/TEST0001.tar.gz.gpg"
	same_file "nginx HTTP serves a book" "$T/n1" "$books/TEST0001.tar.gz.gpg"
	curl -fsS --cacert "$CA_FILE" -o "$T/n2" "$NGINX_HTTPS/TEST0002.tar.gz.gpg"
	same_file "nginx HTTPS serves a book, verified with the test CA" "$T/n2" "$books/TEST0002.tar.gz.gpg"
	curl -fsS --cacert "$CA_FILE" -o /dev/null "https://127.0.0.1:${NGINX_HTTPS##*:}/TEST0002.tar.gz.gpg"
	check "nginx HTTPS certificate holds IP 127.0.0.1 too" test $? -eq 0
	expect_exit 60 "nginx HTTPS is refused without the test CA" \
		curl -sS -o /dev/null "$NGINX_HTTPS/TEST0002.tar.gz.gpg"
	expect_exit 22 "nginx answers 404 for a missing book" curl -fsS -o /dev/null "$NGINX_HTTP/NOPE.tar.gz.gpg"
	check "nginx HEAD carries an ETag" bash -c 'curl -fsSI "$1" | grep -qi "^etag: \""' _ "$NGINX_HTTP/TEST0003.tar.gz.gpg"
	check "nginx log: one GET 200 of TEST0001 over http" \
		test "$(grep -c '^GET /TEST0001.tar.gz.gpg 200 [0-9]* http ' "$NGINX_LOG")" -eq 1
	check "nginx log: the HTTPS GET" grep -q '^GET /TEST0002.tar.gz.gpg 200 [0-9]* https ' "$NGINX_LOG"
	check "nginx log: the 404 and the HEAD" bash -c \
		'grep -q "^GET /NOPE.tar.gz.gpg 404 " "$1" && grep -q "^HEAD /TEST0003.tar.gz.gpg 200 " "$1"' _ "$NGINX_LOG"
	curl -fsS -o /dev/null -o /dev/null "$NGINX_HTTP/TEST0003.tar.gz.gpg" "$NGINX_HTTP/TEST0004.tar.gz.gpg"
	check "nginx keeps connections alive (2nd request on a connection)" \
		grep -q '^GET /TEST0004.tar.gz.gpg 200 .* r=2 ' "$NGINX_LOG"
	first_http=$NGINX_HTTP
	if start_nginx "$books" 2m; then
		curl -fsS -o "$T/n3" "$NGINX_HTTP/TEST0004.tar.gz.gpg"
		same_file "a second nginx with limit_rate 2m serves too" "$T/n3" "$books/TEST0004.tar.gz.gpg"
		check "the two nginx have their own ports" test "$first_http" != "$NGINX_HTTP"
	else
		fail "nginx with limit_rate starts"
	fi
else
	fail "nginx starts" "see the log above"
fi

# --- fault server --------------------------------------------------------------------
cp "$books/TEST0001.tar.gz.gpg" "$books/FAULT-503-2-0001.tar.gz.gpg"
cp "$books/TEST0002.tar.gz.gpg" "$books/FAULT-404-ALL-0002.tar.gz.gpg"
cat >"$T/rules" <<'EOF'
# pattern   fault   count  params
TEST0001    500     2
TEST0002    429     1      retry_after=1
TEST0003    reset   1      at=1000
TEST0004    short   1      at=5000
TEST0003    stall   1      at=2000 secs=1 then=continue
TEST0004    stall   1      at=2000 secs=1 then=close
EOF
if start_faultserver "$books" --rules "$T/rules" --token-file "$T/tokens"; then
	pass "faultserver starts"
	echo tok-A >"$T/tokens"
	A=(-H "Authorization: Bearer tok-A")
	code() { curl -s -o "$T/body" -w '%{http_code}' "$@"; }
	check "faultserver: 401 without a token" test "$(code "$FAULT_URL/TEST0001.tar.gz.gpg")" = 401
	check "faultserver: 401 with a wrong token" \
		test "$(code -H 'Authorization: Bearer nope' "$FAULT_URL/TEST0001.tar.gz.gpg")" = 401
	s1=$(code "${A[@]}" "$FAULT_URL/TEST0001.tar.gz.gpg")
	s2=$(code "${A[@]}" "$FAULT_URL/TEST0001.tar.gz.gpg")
	s3=$(code "${A[@]}" "$FAULT_URL/TEST0001.tar.gz.gpg")
	check "faultserver: 500, 500, then 200 (rule count 2)" test "$s1 $s2 $s3" = "500 500 200"
	same_file "faultserver: the body after the faults is the book" "$T/body" "$books/TEST0001.tar.gz.gpg"
	check "faultserver: 429 with Retry-After: 1" bash -c \
		'curl -si "${@:2}" "$1" | tr -d "\r" | grep -q "^Retry-After: 1$"' _ "$FAULT_URL/TEST0002.tar.gz.gpg" "${A[@]}"
	check "faultserver: then 200" test "$(code "${A[@]}" "$FAULT_URL/TEST0002.tar.gz.gpg")" = 200
	expect_exit 56 "faultserver: reset mid-body (curl: recv failure)" \
		curl -fsS -o /dev/null "${A[@]}" "$FAULT_URL/TEST0003.tar.gz.gpg"
	expect_exit 18 "faultserver: short body then close (curl: partial file)" \
		curl -fsS -o /dev/null "${A[@]}" "$FAULT_URL/TEST0004.tar.gz.gpg"
	curl -fsS -o "$T/stalled" "${A[@]}" "$FAULT_URL/TEST0003.tar.gz.gpg"
	same_file "faultserver: stall then continue delivers the whole body" "$T/stalled" "$books/TEST0003.tar.gz.gpg"
	expect_exit 18 "faultserver: stall then close" \
		curl -fsS -o /dev/null "${A[@]}" "$FAULT_URL/TEST0004.tar.gz.gpg"
	expect_exit 28 "faultserver: a stall trips a client's low-speed limit" \
		bash -c 'echo "TEST0001 stall 1 at=100 secs=4" >>"$1"; curl -fsS -o /dev/null -y 1 -Y 100000 "${@:3}" "$2"' \
		_ "$T/rules" "$FAULT_URL/TEST0001.tar.gz.gpg" "${A[@]}"
	s=$(code "${A[@]}" "$FAULT_URL/FAULT-503-2-0001.tar.gz.gpg")
	s="$s $(code "${A[@]}" "$FAULT_URL/FAULT-503-2-0001.tar.gz.gpg")"
	s="$s $(code "${A[@]}" "$FAULT_URL/FAULT-503-2-0001.tar.gz.gpg")"
	check "faultserver: fault from the barcode name (503 x2 then 200)" test "$s" = "503 503 200"
	s=$(code "${A[@]}" "$FAULT_URL/FAULT-404-ALL-0002.tar.gz.gpg")
	s="$s $(code "${A[@]}" "$FAULT_URL/FAULT-404-ALL-0002.tar.gz.gpg")"
	check "faultserver: 404 always" test "$s" = "404 404"
	check "faultserver: 404 for a missing file" test "$(code "${A[@]}" "$FAULT_URL/NOPE.tar.gz.gpg")" = 404
	md5=\"$(md5sum <"$books/TEST0002.tar.gz.gpg" | cut -d' ' -f1)\"
	check "faultserver: ETag on HEAD is the file's MD5" bash -c \
		'curl -fsSI "${@:3}" "$1" | tr -d "\r" | grep -qix "etag: $2"' _ "$FAULT_URL/TEST0002.tar.gz.gpg" "$md5" "${A[@]}"
	check "faultserver: ETag on GET too" bash -c \
		'curl -fsS -D - -o /dev/null "${@:3}" "$1" | tr -d "\r" | grep -qix "etag: $2"' _ "$FAULT_URL/TEST0002.tar.gz.gpg" "$md5" "${A[@]}"
	echo tok-B >"$T/tokens"
	check "faultserver: the token file is read again (old token refused)" \
		test "$(code "${A[@]}" "$FAULT_URL/TEST0002.tar.gz.gpg")" = 401
	check "faultserver: the new token is accepted" \
		test "$(code -H 'Authorization: Bearer tok-B' "$FAULT_URL/TEST0002.tar.gz.gpg")" = 200
	curl -fsS -o "$T/range" -H 'Authorization: Bearer tok-B' -r 100- "$FAULT_URL/TEST0002.tar.gz.gpg"
	check "faultserver: Range bytes=100-" cmp -s "$T/range" <(tail -c +101 "$books/TEST0002.tar.gz.gpg")
	check "faultserver log: method, path, status, fault" bash -c \
		'[ "$(grep -c "^GET /TEST0001.tar.gz.gpg 500 500 " "$1")" = 2 ] &&
		 grep -q "^GET /TEST0003.tar.gz.gpg 200 reset 1000 " "$1" &&
		 grep -q "^GET /TEST0001.tar.gz.gpg 401 auth .* auth=missing" "$1" &&
		 grep -q "^HEAD /TEST0002.tar.gz.gpg 200 - 0 " "$1"' _ "$FAULT_LOG"
else
	fail "faultserver starts"
fi

# --- s3rver, the independent client, the SigV4 checker, the S3 fault proxy ----------
if start_s3rver; then
	pass "s3rver starts"
	check "s3client put with metadata" s3client put "$S3_BUCKET" a/one.bin "$T/plain/TEST0001.tar.gz" \
		barcode=TEST0001 plaintext-sha256=abc
	check "s3_get" s3_get "$S3_BUCKET" a/one.bin "$T/got1"
	same_file "s3rver round trip is byte-exact" "$T/got1" "$T/plain/TEST0001.tar.gz"
	s3_head_json "$S3_BUCKET" a/one.bin >"$T/head.json"
	check "s3_head_json shows the metadata" grep -q '"Metadata":{"barcode":"TEST0001","plaintext-sha256":"abc"}' "$T/head.json"
	s3client list "$S3_BUCKET" a/ >"$T/list"
	check "s3client list" grep -q "^a/one.bin	$(stat -c %s "$T/plain/TEST0001.tar.gz")	" "$T/list"
	expect_exit 4 "s3client: a missing key exits 4" s3client head "$S3_BUCKET" a/none.bin
	check "s3client delete" s3client delete "$S3_BUCKET" a/one.bin
	expect_exit 4 "s3client: deleted key is gone" s3client head "$S3_BUCKET" a/one.bin

	if start_sigv4check; then
		pass "sigv4check starts"
		sig=(--aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY")
		curl -fsS "${sig[@]}" -T "$T/plain/TEST0002.tar.gz" -H "Content-MD5: $(openssl md5 -binary <"$T/plain/TEST0002.tar.gz" | base64)" \
			-H "x-amz-content-sha256: $(sha256sum <"$T/plain/TEST0002.tar.gz" | cut -d' ' -f1)" \
			-H "x-amz-meta-barcode: TEST0002" "$S3_ENDPOINT/$S3_BUCKET/b/TEST0002.tar.gz"
		check "curl SigV4 PUT through the checker reached s3rver" s3_get "$S3_BUCKET" b/TEST0002.tar.gz "$T/got2"
		same_file "that object is byte-exact" "$T/got2" "$T/plain/TEST0002.tar.gz"
		check "sigv4check accepts curl's correct signature (payload, MD5 checked)" \
			grep -q "^OK PUT /$S3_BUCKET/b/TEST0002.tar.gz payload=ok md5=ok$" "$SIGV4_LOG"
		curl -sS -o /dev/null --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:wrong-secret" \
			"$S3_ENDPOINT/$S3_BUCKET/b/TEST0002.tar.gz?x-id=GetObject"
		check "sigv4check rejects a wrong secret" \
			grep -q "^BAD GET /$S3_BUCKET/b/TEST0002.tar.gz?x-id=GetObject .*signature" "$SIGV4_LOG"
		curl -sS -o /dev/null "${sig[@]}" -T "$T/plain/TEST0003.tar.gz" \
			-H "x-amz-content-sha256: $(printf x | sha256sum | cut -d' ' -f1)" "$S3_ENDPOINT/$S3_BUCKET/b/tampered"
		check "sigv4check rejects a payload hash that is not the body's" \
			grep -q "^BAD PUT /$S3_BUCKET/b/tampered payload=mismatch" "$SIGV4_LOG"
		curl -sS -o /dev/null "$S3_ENDPOINT/$S3_BUCKET/b/TEST0002.tar.gz"
		check "sigv4check flags an unsigned request" \
			grep -q "^BAD GET /$S3_BUCKET/b/TEST0002.tar.gz payload=absent md5=absent: no Authorization" "$SIGV4_LOG"
		before=$(grep -c '^OK ' "$SIGV4_LOG")
		# The AWS SDK signing through the checker: many headers, queries, a multipart-free PUT.
		S3RVER_ENDPOINT=$S3_ENDPOINT s3client put "$S3_BUCKET" "c/with space+plus.bin" "$T/plain/TEST0003.tar.gz" k=v
		S3RVER_ENDPOINT=$S3_ENDPOINT s3client list "$S3_BUCKET" c/ >/dev/null
		S3RVER_ENDPOINT=$S3_ENDPOINT s3client head "$S3_BUCKET" "c/with space+plus.bin" >/dev/null
		check "sigv4check accepts the AWS SDK's own signatures (PUT, LIST, HEAD)" \
			test "$(grep -c '^OK ' "$SIGV4_LOG")" -eq $((before + 3))
		curl -sS -o /dev/null "${sig[@]}" -X POST -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$S3_ENDPOINT/$S3_BUCKET/b/x?uploads"
		check "sigv4check: curl 7.88 signs a bare ?uploads wrongly, and says why" \
			grep -q "^BAD POST /$S3_BUCKET/b/x?uploads .*libcurl 7.88" "$SIGV4_LOG"
		check "no other BAD lines" test "$(grep -c '^BAD ' "$SIGV4_LOG")" -eq 4
	else
		fail "sigv4check starts"
	fi

	cat >"$T/s3rules" <<'EOF'
*/d/put503.bin    503          1   op=put
*/d/reset.bin     reset-before 1   op=put
*/d/after.bin     reset-after  1   op=put
*/d/mp.bin        500          1   op=complete
EOF
	if start_s3_faultproxy --rules "$T/s3rules" --s3rver-dir "$S3RVER_DIR"; then
		pass "S3 fault proxy starts"
		sig=(--aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY")
		# s3rver insists on x-amz-content-sha256, which curl 7.88 does not add by itself.
		sig+=(-H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
		put() { curl -s -o "$T/s3body" -w '%{http_code}' "${sig[@]}" -T "$T/plain/TEST0001.tar.gz" "$S3_ENDPOINT/$S3_BUCKET/d/$1"; }
		s=$(put put503.bin)
		check "S3 proxy: 503 with an S3 error body" grep -q '<Code>ServiceUnavailable</Code>' "$T/s3body"
		s="$s $(put put503.bin)"
		check "S3 proxy: PUT 503 then 200" test "$s" = "503 200"
		check "S3 proxy: the object is there after the retry" s3_get "$S3_BUCKET" d/put503.bin "$T/got3"
		expect_exit 56 "S3 proxy: reset before forwarding (curl: recv failure)" \
			curl -sS -o /dev/null "${sig[@]}" -T "$T/plain/TEST0001.tar.gz" "$S3_ENDPOINT/$S3_BUCKET/d/reset.bin"
		expect_exit 4 "S3 proxy: nothing stored after reset-before" s3client head "$S3_BUCKET" d/reset.bin
		expect_exit 56 "S3 proxy: reset after forwarding (curl: recv failure)" \
			curl -sS -o /dev/null "${sig[@]}" -T "$T/plain/TEST0001.tar.gz" "$S3_ENDPOINT/$S3_BUCKET/d/after.bin"
		s3client head "$S3_BUCKET" d/after.bin >/dev/null
		check "S3 proxy: ... yet the object was stored" test $? -eq 0
		up=$(curl -fsS "${sig[@]}" -X POST "$S3_ENDPOINT/$S3_BUCKET/d/mp.bin?uploads=" |
			sed -n 's/.*<UploadId>\([^<]*\)<.*/\1/p')
		check "S3 proxy: CreateMultipartUpload forwarded" test -n "$up"
		check "list-multipart sees it (from s3rver's store)" \
			test "$(s3client list-multipart "$S3_BUCKET" d/)" = "d/mp.bin	$up"
		check "S3 proxy: emulated ListMultipartUploads lists it" bash -c \
			'curl -fsS "${@:3}" "$1?uploads=" | grep -q "<UploadId>$2</UploadId>"' _ "$S3_ENDPOINT/$S3_BUCKET" "$up" "${sig[@]}"
		s=$(curl -s -o /dev/null -w '%{http_code}' "${sig[@]}" -X DELETE "$S3_ENDPOINT/$S3_BUCKET/d/mp.bin?uploadId=$up")
		check "S3 proxy: emulated AbortMultipartUpload answers 204" test "$s" = 204
		check "no unfinished upload remains" test -z "$(s3client list-multipart "$S3_BUCKET" d/)"
		# A whole multipart upload through the proxy, the first Complete failing with 500.
		up=$(curl -fsS "${sig[@]}" -X POST "$S3_ENDPOINT/$S3_BUCKET/d/mp.bin?uploads=" |
			sed -n 's/.*<UploadId>\([^<]*\)<.*/\1/p')
		etag=$(curl -fsS -D - -o /dev/null "${sig[@]}" -T "$T/plain/TEST0002.tar.gz" \
			"$S3_ENDPOINT/$S3_BUCKET/d/mp.bin?partNumber=1&uploadId=$up" | tr -d '\r' | sed -n 's/^[Ee][Tt]ag: //p')
		xml="<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>$etag</ETag></Part></CompleteMultipartUpload>"
		complete() { curl -s -o /dev/null -w '%{http_code}' "${sig[@]}" -X POST --data-binary "$xml" "$S3_ENDPOINT/$S3_BUCKET/d/mp.bin?uploadId=$up"; }
		s=$(complete)
		s="$s $(complete)"
		check "S3 proxy: CompleteMultipartUpload 500 then 200" test "$s" = "500 200"
		s3_get "$S3_BUCKET" d/mp.bin "$T/got4"
		same_file "the multipart object is byte-exact" "$T/got4" "$T/plain/TEST0002.tar.gz"
		check "S3 proxy log: the part and the completes" bash -c \
			'grep -q "^PUT /$2/d/mp.bin?partNumber=1&uploadId=.* 200 - 0 op=part" "$1" &&
			 [ "$(grep -c "^POST /$2/d/mp.bin?uploadId=.* op=complete" "$1")" = 2 ]' _ "$S3PROXY_LOG" "$S3_BUCKET"
		if [ -n "${SIGV4_LOG:-}" ]; then
			check "the fault proxy forwards signed requests intact (checker behind it: no new BAD)" \
				test "$(grep -c '^BAD ' "$SIGV4_LOG")" -eq 4
		fi
		check "S3 proxy log: op and fault per request" bash -c \
			'grep -q "^PUT /$2/d/put503.bin 503 503 .* op=put" "$1" && grep -q "^POST /$2/d/mp.bin?uploads= 200 - .* op=create" "$1" &&
			 grep -q "^DELETE /$2/d/mp.bin?uploadId=.* 204 - 0 op=abort" "$1"' _ "$S3PROXY_LOG" "$S3_BUCKET"
	else
		fail "S3 fault proxy starts"
	fi
else
	fail "s3rver starts"
fi
