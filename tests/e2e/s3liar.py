#!/usr/bin/env python3
"""A lying S3 for quire's listing tests (Python standard library), path-style, signatures
not checked: the source's bucket check (a ListObjects of one key) is answered with an
empty ListBucketResult, ListObjectsV2 (list-type=2) as --mode says, anything else 404.

  cycle  every page truncated, one object a page (not an archive), its continuation
         token going round t1, t2, t1, t2, ...; after 20 pages a last, untruncated page
         (so that a client that does not see the round still ends)
  huge   a page of more than 1 MiB (a well-formed document, padded with a comment)
  short  one page listing S3B01.tar.gz, served from --object FILE (ETag "e1"): the first
         GET a 200 cut off at half the body (a clean close), the first ranged GET a 206
         that stops half-way to the end, Content-Range saying so (bytes A-B/TOTAL,
         B < TOTAL - 1), every later one the whole rest
  long   the same, but the first ranged GET's 206 carries 4096 bytes of junk after the
         object's end, its Content-Range naming the end (bytes A-END/TOTAL)

Options: --mode M, --object FILE, --ready-file F (written atomically with "PORT PID"
once listening), --log F (one line per request: METHOD TARGET [Range])."""

import argparse
import http.server
import os
import sys
import threading
import urllib.parse

HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult>'


def page(key, token, truncated, pad=0):
    body = HEAD + "<Name>b</Name><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys>"
    body += "<IsTruncated>%s</IsTruncated>" % ("true" if truncated else "false")
    if token:
        body += "<NextContinuationToken>%s</NextContinuationToken>" % token
    body += "<Contents><Key>%s</Key><Size>1</Size></Contents>" % key
    if pad:
        body += "<!-- " + "x" * pad + " -->"
    return (body + "</ListBucketResult>\n").encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    args = None
    lock = threading.Lock()
    pages = 0
    gets = 0
    ranged = 0

    def log_message(self, format, *args):
        pass

    def _answer(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _object(self, name):
        """The object, lying about ranges as --mode says."""
        with open(self.args.object, "rb") as f:
            data = f.read()
        total = len(data)
        rng = self.headers.get("Range")
        with self.lock:
            Handler.gets += 1
            first = Handler.gets == 1
            if rng:
                Handler.ranged += 1
            first_ranged = rng and Handler.ranged == 1
        self.send_response(206 if rng else 200)
        self.send_header("ETag", '"e1"')
        if not rng:
            self.send_header("Content-Length", str(total))
            self.end_headers()
            if first:  # half, then a clean close: the client resumes
                self.wfile.write(data[:total // 2])
                self.close_connection = True
                return
            self.wfile.write(data)
            return
        start = int(rng.split("=")[1].split("-")[0])
        end, junk = total - 1, b""
        if first_ranged and self.args.mode == "short":
            end = start + (total - start) // 2 - 1
        elif first_ranged:
            junk = b"\xa5" * 4096
        body = data[start:end + 1] + junk
        self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, total))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with open(self.args.log, "a") as f:
            f.write("GET %s %s\n" % (self.path, self.headers.get("Range", "-")))
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        parts = [p for p in u.path.split("/") if p]
        if len(parts) > 1 and self.args.object and parts[-1] == "S3B01.tar.gz":
            return self._object(parts[-1])
        if len(parts) != 1:
            return self._answer(404, b"<Error><Code>NoSuchKey</Code></Error>")
        prefix = q.get("prefix", [""])[0]
        if q.get("list-type", [""])[0] != "2":
            return self._answer(200, (HEAD + "<IsTruncated>false</IsTruncated>"
                                      "</ListBucketResult>").encode())
        with self.lock:
            Handler.pages += 1
            n = Handler.pages
        if self.args.mode in ("short", "long"):
            return self._answer(200, page(prefix + "S3B01.tar.gz", "", False))
        if self.args.mode == "huge":
            return self._answer(200, page(prefix + "big.txt", "", False, pad=3 << 19))
        token = q.get("continuation-token", [""])[0]
        nxt = "t2" if token == "t1" else "t1"
        return self._answer(200, page("%spage-%d.txt" % (prefix, n), nxt, n < 20))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["cycle", "huge", "short", "long"], required=True)
    ap.add_argument("--object")
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--log", required=True)
    Handler.args = ap.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tmp = Handler.args.ready_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d %d\n" % (srv.server_address[1], os.getpid()))
    os.rename(tmp, Handler.args.ready_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
