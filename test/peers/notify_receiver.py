#!/usr/bin/python3
"""A webhook receiver and an SMTP sink for the notifier's tests and benchmark.
Standard library only (the SMTP side is a small socket server: Python's smtpd
module is gone in 3.12).

HTTP (--http-port): every POST is answered by the current mode:
  ok     200, and the request is appended to --log as one JSON line
         {"path", "id" (X-Vms-Notification-Id), "idempotency_key", "content_type", "body"}
  fail   500, nothing logged
  hang   no answer until the mode changes (or --hang-seconds pass), then 500
  hold   logged as in ok, then no answer until the mode changes (or --hang-seconds
         pass), then 200: a receiver that got the notification but whose answer
         is lost (the sender crashes meanwhile)
The mode is set with POST /control?mode=ok|fail|hang (or --mode at start);
GET /stats answers {"mode", "accepted", "failed", "hung", "held"} (held: hanging now).
--no-log skips the log file (the benchmark's receiver counts only).

SMTP (--smtp-port): accepts EHLO/HELO, MAIL FROM, RCPT TO, DATA, RSET, NOOP,
QUIT; every message is appended to --mail-log as one JSON line
{"from", "to": [...], "data"} (data with the dot-stuffing undone).
"""
import argparse
import json
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class State:
    def __init__(self, args):
        self.args = args
        self.mode = args.mode
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.stats = {"accepted": 0, "failed": 0, "hung": 0, "held": 0}
        self.log = None if args.no_log or not args.log else open(args.log, "a", buffering=1)
        self.mail_log = open(args.mail_log, "a", buffering=1) if args.mail_log else None


STATE = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, code, body=b""):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def record(self, url, body):
        """an accepted notification (under STATE.lock)"""
        STATE.stats["accepted"] += 1
        if STATE.log:
            STATE.log.write(json.dumps({
                "path": url.path,
                "id": self.headers.get("X-Vms-Notification-Id"),
                "idempotency_key": self.headers.get("Idempotency-Key"),
                "content_type": self.headers.get("Content-Type"),
                "body": body.decode("utf-8", "replace"),
            }, ensure_ascii=False) + "\n")

    def do_GET(self):
        if urlparse(self.path).path == "/stats":
            with STATE.lock:
                doc = dict(STATE.stats, mode=STATE.mode)
            self.answer(200, json.dumps(doc).encode())
        else:
            self.answer(404)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlparse(self.path)
        if url.path == "/control":
            mode = parse_qs(url.query).get("mode", ["ok"])[0]
            with STATE.changed:
                STATE.mode = mode
                STATE.changed.notify_all()
            self.answer(200, json.dumps({"mode": mode}).encode())
            return
        with STATE.changed:
            mode = STATE.mode
            if mode == "hold":
                self.record(url, body)
            if mode in ("hang", "hold"):
                STATE.stats["hung"] += 1
                STATE.stats["held"] += 1
                deadline = time.monotonic() + STATE.args.hang_seconds
                while STATE.mode == mode and time.monotonic() < deadline:
                    STATE.changed.wait(deadline - time.monotonic())
                STATE.stats["held"] -= 1
            if mode == "hold":
                mode = "ok"
            elif mode != "ok":
                STATE.stats["failed"] += 1
            else:
                self.record(url, body)
        try:
            if mode == "ok":
                self.answer(200, b'{"errcode":0}')
            else:
                self.answer(500, b'{"error":"injected"}')
        except OSError:
            pass                # the sender gave up on a held request


class SmtpHandler(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write((line + "\r\n").encode())

    def handle(self):
        self.reply("220 sink ESMTP")
        sender, rcpt = None, []
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = line[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 sink")
            elif line.upper().startswith("MAIL FROM:"):
                sender, rcpt = line[10:].strip(), []
                self.reply("250 ok")
            elif line.upper().startswith("RCPT TO:"):
                rcpt.append(line[8:].strip())
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 end with .")
                lines = []
                while True:
                    d = self.rfile.readline()
                    if not d or d in (b".\r\n", b".\n"):
                        break
                    if d.startswith(b".."):
                        d = d[1:]
                    lines.append(d)
                with STATE.lock:
                    if STATE.mail_log:
                        STATE.mail_log.write(json.dumps({
                            "from": sender, "to": rcpt,
                            "data": b"".join(lines).decode("utf-8", "replace"),
                        }, ensure_ascii=False) + "\n")
                self.reply("250 queued")
            elif verb == "RSET":
                sender, rcpt = None, []
                self.reply("250 ok")
            elif verb == "NOOP":
                self.reply("250 ok")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


class ThreadingTCP(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    global STATE
    p = argparse.ArgumentParser()
    p.add_argument("--http-port", type=int)
    p.add_argument("--smtp-port", type=int)
    p.add_argument("--log")
    p.add_argument("--mail-log")
    p.add_argument("--no-log", action="store_true")
    p.add_argument("--mode", default="ok", choices=["ok", "fail", "hang", "hold"])
    p.add_argument("--hang-seconds", type=float, default=300)
    args = p.parse_args()
    STATE = State(args)
    threads = []
    if args.smtp_port:
        smtp = ThreadingTCP(("127.0.0.1", args.smtp_port), SmtpHandler)
        threads.append(threading.Thread(target=smtp.serve_forever, daemon=True))
    if args.http_port:
        ThreadingHTTPServer.daemon_threads = True
        ThreadingHTTPServer.request_queue_size = 256
        http = ThreadingHTTPServer(("127.0.0.1", args.http_port), Handler)
        threads.append(threading.Thread(target=http.serve_forever, daemon=True))
    for t in threads:
        t.start()
    print("ready", flush=True)
    for t in threads:
        t.join()


if __name__ == "__main__":
    sys.exit(main())
