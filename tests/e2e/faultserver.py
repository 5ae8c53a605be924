#!/usr/bin/env python3
"""A misbehaving HTTP server for quire's fault-injection tests (Python standard library).

Two modes:
  faultserver.py --root DIR [options]         serves DIR's files (GET, HEAD) like a GRIN
  faultserver.py --s3-proxy URL [options]     forwards every request to URL (s3rver)

Options:
  --port N             port on 127.0.0.1 (default 0: the kernel picks)
  --ready-file F       written (atomically) with "PORT PID" once listening
  --log F              one line per request (default stderr), written before the answer:
                         METHOD TARGET STATUS FAULT BYTES op=OP auth=AUTH
                       FAULT is "-" when none was injected, BYTES the body bytes the
                       answer carries (or was cut at), OP the S3 operation in proxy mode
                       (put part create complete abort delete get head list list-uploads)
                       or "get"/"head", AUTH is ok, missing, bad or "-" (no token needed).
  --rules F            fault rules (below); read again whenever the file changes (counts
                       of lines left unchanged carry over)
  --token T            require "Authorization: Bearer T" (repeatable), else 401 (checked
                       before the rules: a refused request uses up no rule's count)
  --token-file F       tokens, one a line, also accepted; read again on every request
  --stall-secs S       default stall/delay length (3)
  --no-name-faults     do not derive faults from barcode names
  --no-range           ignore Range (a server without ranges: every GET is a 200)
  --s3rver-dir D       proxy mode: emulate what s3rver 3.7.1 lacks, ListMultipartUploads
                       (GET /BUCKET?uploads) and AbortMultipartUpload
                       (DELETE /BUCKET/KEY?uploadId=ID), on its store D

Rules, one a line ("#" comments):   PATTERN FAULT [COUNT] [NAME=VALUE...]
  PATTERN  fnmatch pattern tried against the path (no query), the file name and the
           barcode (file name without .tar.gz.gpg / .tar.gz); the first matching rule
           whose filters accept the request and that still has a count left applies
  FAULT    a status code (500, 503, 429, 404, 401, 403, ...): answered with it (429 and
           503 carry Retry-After when retry_after=N is given; 429 always, default 1)
           slowdown  503 with S3's SlowDown error
           reset     headers and `at` bytes of the body, then a TCP reset (SO_LINGER 0)
           short     full Content-Length, `at` bytes, then a clean close
           stall     `at` bytes, then nothing for `secs`, then=continue (default) or close
           trickle   `at` bytes, then one byte every `secs` (0.5): never a stall, just slow
           delay     nothing for `secs` before answering normally
           reset-before  proxy: reset the connection without forwarding
           reset-after   proxy: forward, then reset instead of relaying the answer
           ok        answer normally (counts, so "ok 2" then "500" fails the third)
           redirect  a 302 (status=N for another) with Location: to=URL (absolute or not)
           shortrange  file mode: a ranged GET's 206 stops half-way to the end asked for,
                     its Content-Range saying so (bytes A-B/TOTAL, B short of the end)
           splice    file mode: a ranged GET's 206 carries the bytes of another file,
                     from=NAME (under the root), at the range asked for (going round
                     NAME when it is shorter), under this file's ETag: a server that
                     served a changed object to If-Range
  COUNT    the first COUNT matching requests for each path get the fault (default 1);
           "always" or "*": every one
  NAME=VALUE filters and parameters: method=GET,HEAD (default GET for body faults, any
           method for status faults), op=put,part,complete (proxy mode), at=BYTES (default
           half the body, at most 64 KiB), secs=S, then=continue|close, retry_after=N
Barcode names can carry a fault without a rules file: FAULT-<KIND>-<COUNT>-anything
(e.g. FAULT-503-2-0001, FAULT-RESET-1-0002, FAULT-404-ALL-0003), KIND and COUNT as above.

ETag: every file answer (GET, HEAD, 206) carries ETag "<md5 of the file>".
Range: "bytes=A-" and "bytes=A-B" are honoured (206), unless If-Range names another ETag
(then the whole file, 200) or --no-range is given (a server without ranges: always 200).
"""

import argparse
import email.utils
import fnmatch
import hashlib
import html
import http.client
import http.server
import os
import re
import shutil
import socket
import struct
import sys
import threading
import time
import urllib.parse

BODY_FAULTS = {"reset", "short", "stall", "trickle"}
HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "te", "upgrade",
       "proxy-connection", "trailer", "content-length"}
OURS = {"date", "server"}  # send_response writes these
S3_CODES = {400: "BadRequest", 401: "Unauthorized", 403: "AccessDenied", 404: "NoSuchKey",
            429: "TooManyRequests", 500: "InternalError", 501: "NotImplemented",
            503: "ServiceUnavailable"}


class Rule:
    def __init__(self, pattern, fault, count, params, key=None):
        self.key = key or (pattern, fault)
        self.pattern = pattern
        self.fault = fault.lower()
        self.count = count  # None: always
        self.params = params
        if "method" in params:
            self.methods = {m.upper() for m in params["method"].split(",")}
        elif self.fault in BODY_FAULTS or self.fault in ("shortrange", "splice"):
            self.methods = {"GET"}
        else:
            self.methods = {"*"}
        self.ops = set(params["op"].split(",")) if "op" in params else None

    def matches(self, names, method, op):
        if "*" not in self.methods and method not in self.methods:
            return False
        if self.ops is not None and op not in self.ops:
            return False
        return any(fnmatch.fnmatchcase(n, self.pattern) for n in names if n)

    def take(self, used, path):
        """Counts a matching request in used; True when it gets the fault."""
        n = used.get((self.key, path), 0) + 1
        used[(self.key, path)] = n
        return self.count is None or n <= self.count


def parse_count(s):
    if s.lower() in ("always", "*", "all"):
        return None
    return int(s)


def parse_rules(text):
    rules = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if len(words) < 2:
            raise ValueError(f"rules line {lineno}: need PATTERN FAULT")
        count, params = 1, {}
        for w in words[2:]:
            if "=" in w:
                k, v = w.split("=", 1)
                params[k] = v
            else:
                count = parse_count(w)
        # Counts survive a reload for every line that stays as it was.
        rules.append(Rule(words[0], words[1], count, params, key=(lineno, line)))
    return rules


NAME_FAULT = re.compile(r"^FAULT-([A-Za-z0-9]+)-(\d+|ALL|all|always)-")


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.rules = []
        self.rules_mtime = None
        self.name_rules = {}  # barcode -> Rule
        self.used = {}  # (rule key, path) -> matching requests seen
        self.etags = {}  # (path, size, mtime) -> etag
        self.log = open(args.log, "a", buffering=1) if args.log else sys.stderr
        self.reload_rules()

    def reload_rules(self):
        if not self.args.rules:
            return
        try:
            st = os.stat(self.args.rules)
        except FileNotFoundError:
            self.rules, self.rules_mtime = [], None
            return
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if key != self.rules_mtime:
            with open(self.args.rules) as f:
                self.rules = parse_rules(f.read())
            self.rules_mtime = key

    def pick(self, path, method, op):
        """The rule that applies to this request, or None."""
        name = os.path.basename(path)
        barcode = re.sub(r"\.tar\.gz(\.gpg)?$", "", name)
        names = (path, name, barcode)
        with self.lock:
            self.reload_rules()
            candidates = list(self.rules)
            m = NAME_FAULT.match(barcode)
            if m and not self.args.no_name_faults:
                r = self.name_rules.get(barcode)
                if r is None:
                    r = Rule(barcode, m.group(1), parse_count(m.group(2)), {}, key=("name", barcode))
                    self.name_rules[barcode] = r
                candidates.append(r)
            for r in candidates:
                if r.matches(names, method, op) and r.take(self.used, path):
                    return r
        return None

    def tokens(self):
        toks = set(self.args.token or [])
        if self.args.token_file:
            try:
                with open(self.args.token_file) as f:
                    toks |= {t.strip() for t in f if t.strip()}
            except FileNotFoundError:
                pass
        return toks

    def etag(self, path, st):
        key = (path, st.st_size, st.st_mtime_ns)
        with self.lock:
            e = self.etags.get(key)
        if e is None:
            h = hashlib.md5()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            e = '"%s"' % h.hexdigest()
            with self.lock:
                self.etags[key] = e
        return e

    def write_log(self, line):
        with self.lock:
            self.log.write(line + "\n")
            self.log.flush()


def s3_op(method, path, query):
    parts = [p for p in path.split("/") if p]
    if method == "PUT":
        return "part" if "uploadId" in query and "partNumber" in query else "put"
    if method == "POST":
        if "uploads" in query:
            return "create"
        return "complete" if "uploadId" in query else "post"
    if method == "DELETE":
        return "abort" if "uploadId" in query else "delete"
    if method == "GET":
        if len(parts) <= 1:
            return "list-uploads" if "uploads" in query else "list"
        return "get"
    return method.lower()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultserver"
    state = None  # set in main

    def log_message(self, format, *args):  # the request log is ours
        pass

    # --- plumbing -------------------------------------------------------------------
    def _rst(self):
        """Resets the connection: SO_LINGER 0, then the last reference to the fd goes."""
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.rfile.close()
        except OSError:
            pass
        sock.close()

    def _fin(self):
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _auth(self):
        toks = self.state.tokens()
        if not toks:
            return "-"
        h = self.headers.get("Authorization", "")
        if not h:
            return "missing"
        if h.startswith("Bearer ") and h[7:].strip() in toks:
            return "ok"
        return "bad"

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _status(self, code, fault, target, op, auth, rule=None, s3=False, extra=None):
        if s3 or self.state.args.s3_proxy:
            name = "SlowDown" if fault == "slowdown" else S3_CODES.get(code, "Error")
            body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code>'
                    "<Message>injected by faultserver</Message><Resource>%s</Resource>"
                    "</Error>\n" % (name, html.escape(target))).encode()
            ctype = "application/xml"
        else:
            body = ("%d %s\n" % (code, fault)).encode()
            ctype = "text/plain"
        self.state.write_log(f"{self.command} {target} {code} {fault} {len(body)} op={op} auth={auth}")
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        params = rule.params if rule else {}
        if code == 429 or "retry_after" in params:
            self.send_header("Retry-After", params.get("retry_after", "1"))
        if code == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="faultserver"')
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send(self, code, headers, chunks, total, rule, target, op, auth):
        """Sends an answer whose body (total bytes, from the iterable chunks) may be cut."""
        fault = rule.fault if rule else "-"
        params = rule.params if rule else {}
        head = self.command == "HEAD"
        at = total
        if fault in BODY_FAULTS and not head:
            at = int(params.get("at", min(65536, total // 2)))
            at = max(0, min(at, max(total - 1, 0)))
        self.state.write_log(f"{self.command} {target} {code} {fault} {0 if head else at} op={op} auth={auth}")
        if fault == "delay":
            time.sleep(float(params.get("secs", self.state.args.stall_secs)))
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(total))
        self.end_headers()
        if head:
            return
        sent = 0
        cut = fault in BODY_FAULTS
        try:
            for chunk in chunks:
                if cut and sent + len(chunk) >= at:
                    self.wfile.write(chunk[: at - sent])
                    rest = chunk[at - sent:]
                    sent = at
                    if fault == "reset":
                        return self._rst()
                    if fault == "short":
                        return self._fin()
                    if fault == "trickle":
                        # A byte every `secs` seconds: never silent long enough to stall.
                        for i in range(len(rest)):
                            self.wfile.write(rest[i:i + 1])
                            self.wfile.flush()
                            time.sleep(float(params.get("secs", "0.5")))
                        sent += len(rest)
                        cut = False
                        continue
                    # stall
                    self.wfile.flush()
                    time.sleep(float(params.get("secs", self.state.args.stall_secs)))
                    if params.get("then", "continue") == "close":
                        return self._fin()
                    cut = False
                    self.wfile.write(rest)
                    sent += len(rest)
                    continue
                self.wfile.write(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # --- file mode ------------------------------------------------------------------
    def _file(self):
        u = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(u.path)
        target = self.path
        op = self.command.lower()
        auth = self._auth()
        # Refused requests do not use up the rules' counts.
        if auth in ("missing", "bad"):
            return self._status(401, "auth", target, op, auth)
        rule = self.state.pick(path, self.command, op)
        fault = rule.fault if rule else None
        if fault and fault.isdigit():
            return self._status(int(fault), fault, target, op, auth, rule)
        if fault == "slowdown":
            return self._status(503, fault, target, op, auth, rule)
        if fault == "redirect":
            return self._status(int(rule.params.get("status", "302")), fault, target, op, auth,
                                rule, extra={"Location": rule.params.get("to", "/")})
        if any(p in ("..", ".") for p in path.split("/")):
            return self._status(400, "-", target, op, auth)
        full = os.path.join(self.state.args.root, path.lstrip("/"))
        try:
            st = os.stat(full)
            if not os.path.isfile(full):
                raise FileNotFoundError
        except FileNotFoundError:
            return self._status(404, "-", target, op, auth)
        size = st.st_size
        headers = [("Content-Type", "application/octet-stream"),
                   ("ETag", self.state.etag(full, st)),
                   ("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True)),
                   ("Accept-Ranges", "bytes")]
        start, end, code = 0, size - 1, 200
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        # If-Range: the rest only of the same object; a changed one is sent whole.
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range != dict(headers)["ETag"]:
            m = None
        if self.state.args.no_range:
            m = None
            headers = [h for h in headers if h[0] != "Accept-Ranges"]
        if m and int(m.group(1)) < size:
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            code = 206
            if fault == "shortrange":  # a server capping its ranges, and saying so
                end = start + max((end - start + 1) // 2, 1) - 1
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))

        body = full
        if code == 206 and fault == "splice":  # another object's bytes at this range
            body = os.path.join(self.state.args.root, rule.params["from"])

        def chunks():
            with open(body, "rb") as f:
                f.seek(start)
                left = end - start + 1
                while left > 0:
                    b = f.read(min(65536, left))
                    if not b and body != full:  # the other object is shorter: go round
                        f.seek(0)
                        continue
                    if not b:
                        return
                    left -= len(b)
                    yield b

        self._send(code, headers, chunks(), end - start + 1, rule, target, op, auth)

    # --- S3 proxy mode --------------------------------------------------------------
    def _emulate(self, op, path, query):
        store = self.state.args.s3rver_dir
        parts = [p for p in path.split("/") if p]
        if not store or not parts:
            return False
        updir = os.path.join(store, parts[0], "._S3rver_uploads")
        if op == "list-uploads":
            prefix = query.get("prefix", [""])[0]
            items = []
            if os.path.isdir(updir):
                for uid in sorted(os.listdir(updir)):
                    try:
                        with open(os.path.join(updir, uid, "key")) as f:
                            key = f.read()
                    except FileNotFoundError:
                        continue
                    if key.startswith(prefix):
                        items.append("<Upload><Key>%s</Key><UploadId>%s</UploadId></Upload>"
                                     % (html.escape(key), uid))
            body = ('<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult>'
                    "<Bucket>%s</Bucket><Prefix>%s</Prefix><IsTruncated>false</IsTruncated>%s"
                    "</ListMultipartUploadsResult>\n"
                    % (html.escape(parts[0]), html.escape(prefix), "".join(items))).encode()
            self._send(200, [("Content-Type", "application/xml")], [body], len(body), None,
                       self.path, op, "-")
            return True
        if op == "abort":
            uid = query.get("uploadId", [""])[0]
            d = os.path.join(updir, uid)
            if uid and "/" not in uid and uid not in (".", "..") and os.path.isdir(d):
                shutil.rmtree(d, ignore_errors=True)
                self._send(204, [], [], 0, None, self.path, op, "-")
            else:
                self._status(404, "-", self.path, op, "-", s3=True)
            return True
        return False

    def _proxy(self):
        u = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(u.path)
        query = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        op = s3_op(self.command, path, query)
        body = self._read_body()
        rule = self.state.pick(path, self.command, op)
        fault = rule.fault if rule else None
        if fault and fault.isdigit():
            return self._status(int(fault), fault, self.path, op, "-", rule)
        if fault == "slowdown":
            return self._status(503, fault, self.path, op, "-", rule)
        if fault == "reset-before":
            self.state.write_log(f"{self.command} {self.path} 000 {fault} 0 op={op} auth=-")
            return self._rst()
        if fault == "delay":
            time.sleep(float(rule.params.get("secs", self.state.args.stall_secs)))
            rule = None
        if self._emulate(op, path, query):
            return
        up = urllib.parse.urlsplit(self.state.args.s3_proxy)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        headers["Content-Length"] = str(len(body))
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            rheaders = [(k, v) for k, v in r.getheaders() if k.lower() not in HOP | OURS]
            status = r.status
        except OSError as e:
            conn.close()
            self.state.write_log(f"{self.command} {self.path} 502 upstream:{e} 0 op={op} auth=-")
            return self._status(502, "upstream", self.path, op, "-", s3=True)
        conn.close()
        if fault == "reset-after":
            self.state.write_log(f"{self.command} {self.path} {status} {fault} 0 op={op} auth=-")
            return self._rst()
        if self.command == "HEAD":
            total = int(r.getheader("Content-Length") or 0)
            self._send(status, rheaders, [], total, rule, self.path, op, "-")
        else:
            self._send(status, rheaders, [data], len(data), rule, self.path, op, "-")

    def _dispatch(self):
        try:
            if self.state.args.s3_proxy:
                self._proxy()
            else:
                self._file()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _dispatch


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--root")
    mode.add_argument("--s3-proxy", metavar="URL")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ready-file")
    p.add_argument("--log")
    p.add_argument("--rules")
    p.add_argument("--token", action="append")
    p.add_argument("--token-file")
    p.add_argument("--stall-secs", type=float, default=3.0)
    p.add_argument("--no-name-faults", action="store_true")
    p.add_argument("--no-range", action="store_true")
    p.add_argument("--s3rver-dir")
    args = p.parse_args()
    if args.root:
        args.root = os.path.abspath(args.root)
    Handler.state = State(args)
    srv = Server(("127.0.0.1", args.port), Handler)
    port = srv.server_address[1]
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port} {os.getpid()}\n")
        os.rename(tmp, args.ready_file)
    else:
        print(f"faultserver listening on 127.0.0.1:{port}", flush=True)
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        srv.serve_forever(poll_interval=0.2)
    except (KeyboardInterrupt, SystemExit):
        pass


if __name__ == "__main__":
    main()
