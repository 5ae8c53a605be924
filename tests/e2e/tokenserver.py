#!/usr/bin/env python3
"""A small OAuth2 token endpoint for quire's tests (Python standard library).

  tokenserver.py --ready-file F --log L --client-id ID --client-secret S
                 --refresh-token R [--expires-in N] [--publish FILE]

POST /token with grant_type=refresh_token and the right client and refresh token answers
{"access_token": "tok-N", "expires_in": N, "token_type": "Bearer"} with N counting up; a
wrong one answers 400 {"error": "invalid_grant"}. Each issued token replaces the content
of --publish FILE (the fault server's --token-file), so the source accepts exactly the
newest token. One log line per request: "POST /token 200 tok-N" or "POST /token 400 why".
"""
import argparse
import http.server
import json
import os
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret", required=True)
    ap.add_argument("--refresh-token", required=True)
    ap.add_argument("--expires-in", type=int, default=3600)
    ap.add_argument("--publish")
    args = ap.parse_args()
    issued = [0]

    def log(line):
        with open(args.log, "a") as f:
            f.write(line + "\n")

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def answer(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            form = urllib.parse.parse_qs(self.rfile.read(n).decode())
            get = lambda k: form.get(k, [""])[0]
            why = None
            if self.path != "/token":
                why = "path " + self.path
            elif get("grant_type") != "refresh_token":
                why = "grant_type " + get("grant_type")
            elif get("client_id") != args.client_id or get("client_secret") != args.client_secret:
                why = "client"
            elif get("refresh_token") != args.refresh_token:
                why = "refresh_token"
            if why:
                log("POST /token 400 " + why)
                self.answer(400, {"error": "invalid_grant"})
                return
            issued[0] += 1
            token = "tok-%d" % issued[0]
            if args.publish:
                tmp = args.publish + ".tmp"
                with open(tmp, "w") as f:
                    f.write(token + "\n")
                os.replace(tmp, args.publish)
            log("POST /token 200 " + token)
            self.answer(200, {"access_token": token, "expires_in": args.expires_in,
                              "token_type": "Bearer"})

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    tmp = args.ready_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d %d\n" % (srv.server_address[1], os.getpid()))
    os.replace(tmp, args.ready_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
