#!/usr/bin/env python3
"""A GRIN emulator for quire's tests (Python standard library), written from shared/grin.md.

  grin_emulator.py --ready-file F --log L --library LIB [--port P]
                   [--state FILE] [--archives DIR] [--synthetic N]
                   [--tokens FILE] [--max-page N] [--queue-capacity N]
                   [--process-delay S] [--unavailable LIST:PAGE] [--login-page]

The library:
  --state FILE    one book a line: BARCODE<TAB>STATE[<TAB>FILENAME[<TAB>REASON]], STATE one
                  of converted, in_process, failed, new (never requested); FILENAME defaults
                  to BARCODE.tar.gz.gpg (a prefixed library gives NLI_BARCODE.tar.gz.gpg);
                  REASON is the failure text of a failed book.
  --archives DIR  the archives, DIR/FILENAME (gpg-made, see lib.sh make_books); served only
                  once the book is converted, with ETag and Content-Length, HEAD and GET.
  --synthetic N   instead of --state: N generated books SYN0000000.., never stored; of each
                  20 consecutive books 12 are converted, 1 in process, 1 failed, 6 new.

Endpoints under /LIB/ (see grin.md): _all_books, _converted, _failed (HTML pages: a table
whose heading row is <tr class="heading"> with <span class="hd3"> names and an empty
checkbox column, one <tr> per book in <tbody>, links in cells, a "Next" link by ctoken
(_all_books, relative), by first=N (_converted, absolute); page size result_count, at most
--max-page), _converted?format=text, _in_process?format=text (text, one entry a line),
_process?barcodes=B1,B2 (TSV "Barcode<TAB>Status"; 429 when the queue of --queue-capacity
books would overflow), and the archives.

Credentials: with --tokens FILE (re-read on every request; tokenserver.py --publish writes
it) a request without "Authorization: Bearer T" for a T listed there gets a 302 to
https://accounts.google.com/ServiceLogin; --expire-after N: so does every request after a
token's Nth (an expired token). --login-page: every list answers 200 with an HTML
login page instead. --unavailable LIST:PAGE: page PAGE (from 1) of LIST (all_books,
converted, failed) says "Your request is unavailable".

Faults: --fail LIST:PAGE:N answers that page 503 the first N times; --break-page LIST:PAGE
sends the first GET of that page half-way and closes the connection; --redirect-to URL
answers every list with a 302 to URL + the request's path (another origin).

Control (no credentials needed): POST /_emu/convert?barcodes=B1,B2 or ?all=1 converts books
in process; GET /_emu/state answers the library as TSV BARCODE<TAB>STATE<TAB>FILENAME.

Log: one line a request, "METHOD PATH STATUS inflight=N auth=ok|bad|missing|expired|none", N the
requests in flight when it arrived (itself included).
"""
import argparse
import base64
import html
import http.server
import os
import sys
import threading
import time
import urllib.parse

SUFFIX = ".tar.gz.gpg"
SYN_PATTERN = ["converted"] * 12 + ["in_process", "failed"] + ["new"] * 6


class Library:
    """Books in state order; with --synthetic, computed from the index instead."""

    def __init__(self, args):
        self.lock = threading.Lock()
        self.synthetic = args.synthetic
        self.books = []  # dicts: barcode, state, filename, reason
        self.by_barcode = {}
        self.by_filename = {}
        if args.state:
            with open(args.state) as f:
                for line in f:
                    line = line.rstrip("\n")
                    if not line or line.startswith("#"):
                        continue
                    parts = line.split("\t")
                    b = {"barcode": parts[0], "state": parts[1],
                         "filename": parts[2] if len(parts) > 2 and parts[2] else parts[0] + SUFFIX,
                         "reason": parts[3] if len(parts) > 3 else "Conversion failed"}
                    self.books.append(b)
                    self.by_barcode[b["barcode"]] = b
                    self.by_filename[b["filename"]] = b

    def syn_book(self, i):
        st = SYN_PATTERN[i % len(SYN_PATTERN)]
        bc = "SYN%07d" % i
        return {"barcode": bc, "state": st, "filename": bc + SUFFIX,
                "reason": "Page images missing" if st == "failed" else ""}

    def members(self, states, offset, count):
        """Books whose state is in states, from the offset-th of them, at most count."""
        if self.synthetic:
            idx = [k for k, s in enumerate(SYN_PATTERN) if s in states]
            total = (self.synthetic // len(SYN_PATTERN)) * len(idx) + sum(
                1 for k in idx if k < self.synthetic % len(SYN_PATTERN))
            end = total if count < 0 else min(total, offset + count)
            out = [self.syn_book((j // len(idx)) * len(SYN_PATTERN) + idx[j % len(idx)])
                   for j in range(offset, end)]
            return out, end < total
        with self.lock:
            sel = [b for b in self.books if b["state"] in states]
        end = len(sel) if count < 0 else min(len(sel), offset + count)
        return sel[offset:end], end < len(sel)

    def get(self, barcode):
        if self.synthetic:
            if barcode.startswith("SYN") and barcode[3:].isdigit() and int(barcode[3:]) < self.synthetic:
                return self.syn_book(int(barcode[3:]))
            return None
        return self.by_barcode.get(barcode)

    def in_process_count(self):
        if self.synthetic:
            return self.members({"in_process"}, 0, -1)[0].__len__()
        with self.lock:
            return sum(1 for b in self.books if b["state"] == "in_process")


def date_of(i, kind):
    return "2026/%02d/%02d %02d:%02d" % (1 + i % 12, 1 + i % 28, i % 24, (i * 7 + kind) % 60)


def title_of(b):
    return "Études & <notes> of %s — vol. %d" % (b["barcode"], len(b["barcode"]) % 7)


ALL_COLS = ["Barcode", "Title", "Scanned Date", "Converted Date", "Downloaded Date",
            "Processed Date", "Analyzed Date", "OCR'd Date", "Google Books Link", "State"]
STATE_NAMES = {"converted": "CONVERTED", "in_process": "CHECKED_IN", "failed": "NOT_AVAILABLE_FOR_DOWNLOAD",
               "new": "NEW"}


def cells_all(b, i):
    st = b["state"]
    conv = date_of(i, 1) if st == "converted" else ""
    link = '<a href="https://books.google.com/books?vid=%s">%s</a>' % (
        urllib.parse.quote(b["barcode"]), "Google Books")
    return [html.escape(b["barcode"]), html.escape(title_of(b)), date_of(i, 0), conv, "",
            date_of(i, 2), date_of(i, 3), date_of(i, 4), link, STATE_NAMES[st]]


CONV_COLS = ["Filename", "Title", "Converted Date"]


def cells_converted(b, i):
    return ['<a href="%s">%s</a>' % (urllib.parse.quote(b["filename"]), html.escape(b["filename"])),
            html.escape(title_of(b)), date_of(i, 1)]


FAILED_COLS = ["Barcode", "Title", "Convert Failed Date", "Convert Failed Info",
               "Detailed Convert Failed Info"]


def cells_failed(b, i):
    return [html.escape(b["barcode"]), html.escape(title_of(b)), date_of(i, 5),
            html.escape(b["reason"]), html.escape("Detailed: " + b["reason"] + " (code 17)")]


LISTS = {
    "_all_books": ({"converted", "in_process", "failed", "new"}, ALL_COLS, cells_all, "ctoken"),
    "_converted": ({"converted"}, CONV_COLS, cells_converted, "first"),
    "_failed": ({"failed"}, FAILED_COLS, cells_failed, "first"),
}

LOGIN_PAGE = b"""<!DOCTYPE html><html><head><title>Sign in - Google Accounts</title></head>
<body><form action="https://accounts.google.com/ServiceLogin" method="post">
<input type="email" name="Email"><input type="password" name="Passwd">
<input type="submit" value="Sign in"></form></body></html>
"""

UNAVAILABLE_PAGE = b"""<html><head><title>GRIN</title></head><body>
<p class="error">Your request is unavailable at this time. Please try again later.</p>
</body></html>
"""


def html_page(lib, name, books, offset, has_next, next_href):
    cols = LISTS[name][1]
    cells = LISTS[name][2]
    out = ["<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>GRIN %s %s</title></head>"
           "<body><div class=\"nav\"><a href=\"/%s/\">Home</a></div>\n"
           "<table><tr><td>layout</td></tr></table>\n"
           "<table class=\"results\" id=\"books\">\n<thead><tr class=\"heading\"><th></th>"
           % (lib, name, lib)]
    out.append("".join('<th><span class="hd3">%s</span> <a href="?sort=%d">&#9650;</a></th>'
                       % (html.escape(c), k) for k, c in enumerate(cols)))
    out.append("</tr></thead>\n<tbody>\n")
    for k, b in enumerate(books):
        out.append('<tr class="%s"><td><input type="checkbox" name="barcodes" value="%s"></td>'
                   % ("even" if k % 2 else "odd", html.escape(b["barcode"])))
        out.append("".join("<td>%s</td>" % c for c in cells(b, offset + k)))
        out.append("</tr>\n")
    out.append("</tbody></table>\n")
    if offset:
        out.append('<a href="%s">&lt; Prev</a> ' % html.escape(next_href(max(0, offset - len(books)))))
    if has_next:
        out.append('<a href="%s">Next &gt;</a>' % html.escape(next_href(offset + len(books))))
    out.append("\n</body></html>\n")
    return "".join(out).encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--library", required=True)
    ap.add_argument("--state")
    ap.add_argument("--archives")
    ap.add_argument("--synthetic", type=int, default=0)
    ap.add_argument("--tokens")
    ap.add_argument("--max-page", type=int, default=0)
    ap.add_argument("--queue-capacity", type=int, default=50000)
    ap.add_argument("--process-delay", type=float, default=0.0)
    ap.add_argument("--unavailable", default="")
    ap.add_argument("--login-page", action="store_true")
    ap.add_argument("--expire-after", type=int, default=0)
    ap.add_argument("--fail", default="")
    ap.add_argument("--break-page", default="")
    ap.add_argument("--redirect-to", default="")
    args = ap.parse_args()
    lib = Library(args)
    inflight = [0]
    uses = {}
    count_lock = threading.Lock()
    log_lock = threading.Lock()
    logf = open(args.log, "a", buffering=1)
    unavailable = {}
    if args.unavailable:
        lst, page = args.unavailable.split(":")
        unavailable["_" + lst] = int(page)
    faults = {}  # (list, page) -> [kind, times left]
    if args.fail:
        lst, page, times = args.fail.split(":")
        faults[("_" + lst, int(page))] = ["503", int(times)]
    if args.break_page:
        lst, page = args.break_page.split(":")
        faults[("_" + lst, int(page))] = ["break", 1]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def answer(self, status, body=b"", ctype="text/html; charset=utf-8", headers=()):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.status = status

        def auth(self):
            if not args.tokens:
                return "none"
            h = self.headers.get("Authorization", "")
            if not h:
                return "missing"
            try:
                with open(args.tokens) as f:
                    good = {t.strip() for t in f if t.strip()}
            except OSError:
                good = set()
            tok = h[7:] if h.startswith("Bearer ") else None
            if tok not in good:
                return "bad"
            with count_lock:
                uses[tok] = uses.get(tok, 0) + 1
                if args.expire_after and uses[tok] > args.expire_after:
                    return "expired"
            return "ok"

        def handle_one(self):
            with count_lock:
                inflight[0] += 1
                self.inflight = inflight[0]
            self.status = 0
            self.auth_state = "-"
            try:
                self.route()
            finally:
                with count_lock:
                    inflight[0] -= 1
                with log_lock:
                    logf.write("%s %s %d inflight=%d auth=%s\n" % (
                        self.command, self.path, self.status, self.inflight, self.auth_state))

        do_GET = do_HEAD = do_POST = handle_one

        def route(self):
            url = urllib.parse.urlsplit(self.path)
            q = urllib.parse.parse_qs(url.query)
            parts = url.path.split("/")
            if url.path.startswith("/_emu/"):
                return self.control(url.path, q)
            if len(parts) != 3 or parts[1] != args.library:
                return self.answer(404, b"no such library\n", "text/plain")
            self.auth_state = self.auth()
            if self.auth_state in ("missing", "bad", "expired"):
                loc = "https://accounts.google.com/ServiceLogin?continue=" + urllib.parse.quote(
                    "https://books.google.com" + self.path, safe="")
                return self.answer(302, b"", headers=[("Location", loc)])
            name = parts[2]
            if args.redirect_to and (name in LISTS or name == "_in_process"):
                return self.answer(302, b"", headers=[("Location", args.redirect_to + self.path)])
            if name in LISTS or name == "_in_process":
                if args.login_page:
                    return self.answer(200, LOGIN_PAGE)
                return self.list_page(name, q)
            if name == "_process":
                return self.process(q)
            if name.endswith(SUFFIX):
                return self.archive(name)
            return self.answer(404, b"not found\n", "text/plain")

        def list_page(self, name, q):
            text = q.get("format", [""])[0] == "text"
            if name == "_in_process" or (text and name == "_converted"):
                states = {"in_process"} if name == "_in_process" else {"converted"}
                books, _ = lib.members(states, 0, -1)
                if name == "_in_process":
                    lines = ["%s\t%s" % (b["barcode"], date_of(k, 6)) for k, b in enumerate(books)]
                else:
                    lines = [b["filename"] for b in books]
                body = "".join(x + "\n" for x in lines).encode()
                return self.answer(200, body, "text/plain; charset=utf-8")
            states, _, _, paging = LISTS[name]
            count = int(q.get("result_count", ["100"])[0])
            if args.max_page and (count < 0 or count > args.max_page) and name != "_failed":
                count = args.max_page
            if paging == "ctoken":
                tok = q.get("ctoken", [""])[0]
                offset = int(base64.urlsafe_b64decode(tok.encode()).decode()[2:]) if tok else 0
            else:
                offset = int(q.get("first", ["0"])[0])
            page_no = offset // count + 1 if count > 0 else 1
            if unavailable.get(name) == page_no:
                return self.answer(200, UNAVAILABLE_PAGE)
            fault = faults.get((name, page_no))
            if fault and fault[1] > 0:
                fault[1] -= 1
                if fault[0] == "503":
                    return self.answer(503, b"try later\n", "text/plain")
            books, has_next = lib.members(states, offset, count)
            host = self.headers.get("Host", "127.0.0.1")

            def next_href(o):
                if paging == "ctoken":
                    tok = base64.urlsafe_b64encode(("o=%d" % o).encode()).decode()
                    return "%s?result_count=%d&ctoken=%s" % (name, count, tok)
                return "http://%s/%s/%s?result_count=%d&first=%d" % (host, args.library, name, count, o)

            page = html_page(args.library, name, books, offset, has_next, next_href)
            if fault and fault[0] == "break" and fault[1] == 0:
                fault[1] = -1  # once: half the page, then the connection closes
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page[:len(page) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.status = 200
                return
            self.answer(200, page)

        def process(self, q):
            barcodes = [b for b in ",".join(q.get("barcodes", [])).split(",") if b]
            if self.command == "POST":
                n = int(self.headers.get("Content-Length", "0"))
                barcodes += [b for b in self.rfile.read(n).decode().split("\n") if b]
            if args.process_delay:
                time.sleep(args.process_delay)  # a slow server, so that requests overlap
            with lib.lock:
                new = [b for b in barcodes if (lib.get(b) or {}).get("state") == "new"]
                queued = sum(1 for b in lib.books if b["state"] == "in_process")
                if queued + len(new) > args.queue_capacity:
                    return self.answer(429, b"queue full\n", "text/plain")
                lines = ["Barcode\tStatus"]
                for bc in barcodes:
                    b = lib.get(bc)
                    st = b["state"] if b else None
                    if st == "new":
                        b["state"] = "in_process"
                        lines.append(bc + "\tSuccess")
                    elif st == "converted":
                        lines.append(bc + "\tBook is already available for download")
                    elif st == "in_process":
                        lines.append(bc + "\tBook is already in process")
                    elif st == "failed":
                        lines.append(bc + "\tConversion previously failed: " + b["reason"])
                    else:
                        lines.append(bc + "\tBarcode not found")
            self.answer(200, "".join(x + "\n" for x in lines).encode(), "text/plain; charset=utf-8")

        def archive(self, filename):
            b = lib.by_filename.get(filename)
            path = os.path.join(args.archives or "", filename)
            if not b or b["state"] != "converted" or not args.archives or not os.path.isfile(path):
                return self.answer(404, b"not found\n", "text/plain")
            st = os.stat(path)
            etag = '"%x-%x"' % (st.st_size, st.st_mtime_ns)
            with open(path, "rb") as f:
                data = f.read() if self.command == "GET" else b""
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(st.st_size))
            self.send_header("ETag", etag)
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(data)
            self.status = 200

        def control(self, path, q):
            if path == "/_emu/convert":
                which = set(",".join(q.get("barcodes", [])).split(",")) - {""}
                n = 0
                with lib.lock:
                    for b in lib.books:
                        if b["state"] == "in_process" and ("all" in q or b["barcode"] in which):
                            b["state"] = "converted"
                            n += 1
                return self.answer(200, ("%d\n" % n).encode(), "text/plain")
            if path == "/_emu/state":
                with lib.lock:
                    body = "".join("%s\t%s\t%s\n" % (b["barcode"], b["state"], b["filename"])
                                   for b in lib.books)
                return self.answer(200, body.encode(), "text/plain")
            return self.answer(404, b"", "text/plain")

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 64

    srv = Server(("127.0.0.1", args.port), Handler)
    tmp = args.ready_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d %d\n" % (srv.server_address[1], os.getpid()))
    os.rename(tmp, args.ready_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
