#!/usr/bin/env python3
"""A webhook endpoint for the e2e tests (tests/e2e/events_webhooks.rs).

Checks every request's signature with the Standard Webhooks library from
PyPI (`standardwebhooks`, not our code), and writes one JSON line per request
to --out:

    {"n": 1, "webhook_id": "...", "verified": true, "error": null,
     "answered": 200, "event": {...the body as JSON...}}

`answered` is the status it replied with (null while it hangs). It answers
500 to the first --fail-first requests, 400 to a request whose signature does
not verify, 200 to the rest; with --hang it answers nothing, ever (the
connection stays open). With --tls-cert and --tls-key it speaks https.

It prints `listening on PORT` once it accepts connections (--port 0, the
default, lets the system pick one).
"""

import argparse
import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--secret-file", required=True, help="holds whsec_...")
    parser.add_argument("--out", required=True, help="JSON lines, one per request")
    parser.add_argument("--fail-first", type=int, default=0, metavar="N",
                        help="answer 500 to the first N requests")
    parser.add_argument("--hang", action="store_true", help="never answer")
    parser.add_argument("--tls-cert", help="https with this certificate (PEM)")
    parser.add_argument("--tls-key", help="and this key (PEM)")
    args = parser.parse_args()

    with open(args.secret_file, encoding="utf-8") as f:
        webhook = Webhook(f.read().strip())
    lock = threading.Lock()
    state = {"requests": 0}
    out = open(args.out, "a", encoding="utf-8")
    forever = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                event = webhook.verify(body, headers)
                verified, error = True, None
            except (WebhookVerificationError, ValueError) as e:
                event, verified, error = None, False, str(e)
            with lock:
                state["requests"] += 1
                n = state["requests"]
            if args.hang:
                status = None
            elif not verified:
                status = 400
            elif n <= args.fail_first:
                status = 500
            else:
                status = 200
            record = {
                "n": n,
                "webhook_id": headers.get("webhook-id"),
                "verified": verified,
                "error": error,
                "answered": status,
                "event": event,
            }
            with lock:
                out.write(json.dumps(record) + "\n")
                out.flush()
            if status is None:
                forever.wait()
                return
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
