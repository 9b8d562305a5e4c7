#!/usr/bin/env python3
"""The receiver of bench/sinks.sh: accepts POSTed log batches and OTLP exports (gzip or not),
answers 204, and counts the requests it received (printed at exit)."""
import gzip
import http.server
import signal
import sys

lines = 0  # requests received


class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global lines
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        lines += 1
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def stop(*_):
    print(lines, flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).serve_forever()
