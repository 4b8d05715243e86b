#!/usr/bin/python3
"""A GA/T 1400 view library for tests: HTTP Digest on Register, per-item
answers, and injected faults.  Standard library only.

Every accepted record is appended to --log as "<Kind> <ID>" (a record sent
twice appears twice: the tests check at-least-once delivery).

Faults:
  --fail-first-every N   the first delivery of every Nth record (by id) gets StatusCode 6
  --error-every N        every Nth resource request answers HTTP 500
  --slow-every N         every Nth resource request waits --slow-seconds first
  --drop-every N         every Nth resource request closes the connection unanswered
  --hold-after N         resource requests after the Nth are held unanswered until the
                         process ends ("held" in /stats): a receiver that hangs mid-push
Registrations live in memory, so after a restart pushes get 401 until the
client registers again.

Subscribing (an upper library in a cascade; only with --subscribe):
  --subscribe URL        the lower library (vms's viid-server) to subscribe to, with
                         --subscribe-user/--subscribe-password (digest, test/peers/viid_client.py),
                         --subscribe-id, --subscribe-detail (SubscribeDetail codes, "13"),
                         --subscribe-interval (ReportInterval, s); ReceiveAddr is this receiver
  --cancel-after N       after N notifications, DELETE /VIID/Subscribes?IDList=<id>
/stats then shows "subscribed", "notifications", "cancelled"; notifications are
logged as "SubscribeNotification <NotificationID>".
"""
import argparse
import hashlib
import json
import os
import secrets
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KINDS = {
    "APEs": ("APE", "APEListObject", "APEObject", ["ApeID"]),
    "Tollgates": ("Tollgate", "TollgateListObject", "TollgateObject", ["TollgateID"]),
    "Lanes": ("Lane", "LaneListObject", "LaneObject", ["LaneID"]),
    "MotorVehicles": ("MotorVehicle", "MotorVehicleListObject", "MotorVehicleObject", ["MotorVehicleID"]),
    "NonMotorVehicles": ("NonMotorVehicle", "NonMotorVehicleListObject", "NonMotorVehicleObject", ["NonMotorVehicleID"]),
    "Faces": ("Face", "FaceListObject", "FaceObject", ["FaceID"]),
    "Persons": ("Person", "PersonListObject", "PersonObject", ["PersonID"]),
    "Images": ("Image", "ImageListObject", "ImageObject", ["ImageInfo", "ImageID"]),
    "SubscribeNotifications": ("SubscribeNotification", "SubscribeNotificationListObject",
                               "SubscribeNotificationObject", ["NotificationID"]),
}
MAX_BODY = 32 * 1024 * 1024
CST = timezone(timedelta(hours=8))


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.registered = set()
        self.nonces = set()
        self.requests = 0
        self.seen = set()
        self.log = open(args.log, "a", buffering=1) if args.log else None
        self.cancelling = False
        self.stats = {"register": 0, "keepalive": 0, "records": 0, "unregister": 0, "held": 0,
                      "subscribed": 0, "notifications": 0, "cancelled": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "viid-receiver/1"

    def log_message(self, fmt, *a):
        if self.server.state.args.verbose:
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % a))

    def answer(self, code, obj, extra=None):
        body = json.dumps(obj, ensure_ascii=False).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/VIID+JSON;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def status(self, code, string, ident=""):
        return {"ResponseStatusObject": {"RequestURL": self.path, "StatusCode": str(code),
                                         "StatusString": string, "Id": ident,
                                         "LocalTime": datetime.now(CST).strftime("%Y%m%d%H%M%S")}}

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0 or n > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(n) if n else b""

    def device(self):
        return self.headers.get("User-Identify", "")

    def check_digest(self):
        st = self.server.state
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Digest "):
            return False
        parts = {}
        for item in auth[7:].split(","):
            if "=" in item:
                k, v = item.strip().split("=", 1)
                parts[k] = v.strip('"')
        if parts.get("nonce") not in st.nonces or parts.get("username") != st.args.user:
            return False
        ha1 = md5("%s:%s:%s" % (st.args.user, st.args.realm, st.args.password))
        ha2 = md5("%s:%s" % (self.command, parts.get("uri", "")))
        if parts.get("qop"):
            expect = md5(":".join([ha1, parts["nonce"], parts.get("nc", ""), parts.get("cnonce", ""), parts["qop"], ha2]))
        else:
            expect = md5("%s:%s:%s" % (ha1, parts["nonce"], ha2))
        return secrets.compare_digest(expect, parts.get("response", ""))

    def challenge(self):
        nonce = secrets.token_hex(16)
        self.server.state.nonces.add(nonce)
        self.answer(401, self.status(4, "Unauthorized"),
                    {"WWW-Authenticate": 'Digest realm="%s", nonce="%s", qop="auth", algorithm=MD5' % (self.server.state.args.realm, nonce)})

    def do_GET(self):
        if self.path == "/VIID/System/Time":
            self.answer(200, {"SystemTimeObject": {"VIIDServerID": "receiver", "TimeMode": "1",
                                                   "LocalTime": datetime.now(CST).strftime("%Y%m%d%H%M%S"),
                                                   "TimeZone": "Asia/Shanghai"}})
        elif self.path == "/stats":
            st = self.server.state
            with st.lock:
                self.answer(200, dict(st.stats, registered=sorted(st.registered)))
        else:
            self.answer(404, self.status(4, "InvalidOperation"))

    def do_POST(self):
        st = self.server.state
        try:
            raw = self.read_body()
        except ValueError:
            self.answer(413, self.status(6, "InvalidContent"))
            return
        if self.path == "/VIID/System/Register":
            if not self.check_digest():
                self.challenge()
                return
            with st.lock:
                st.registered.add(self.device())
                st.stats["register"] += 1
            self.answer(200, self.status(0, "OK", self.device()))
            return
        if self.path == "/VIID/System/UnRegister":
            with st.lock:
                st.registered.discard(self.device())
                st.stats["unregister"] += 1
            self.answer(200, self.status(0, "OK", self.device()))
            return
        if self.path == "/VIID/System/Keepalive":
            if self.device() not in st.registered:
                self.answer(401, self.status(4, "not registered"))
                return
            with st.lock:
                st.stats["keepalive"] += 1
            self.answer(200, self.status(0, "OK", self.device()))
            return
        res = self.path[len("/VIID/"):] if self.path.startswith("/VIID/") else ""
        if res not in KINDS:
            self.answer(404, self.status(4, "InvalidOperation"))
            return
        if self.device() not in st.registered:
            self.answer(401, self.status(4, "not registered"))
            return
        with st.lock:
            st.requests += 1
            n = st.requests
        a = st.args
        if a.hold_after and n > a.hold_after:
            with st.lock:
                st.stats["held"] += 1
            threading.Event().wait()
        if a.drop_every and n % a.drop_every == 0:
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if a.slow_every and n % a.slow_every == 0:
            time.sleep(a.slow_seconds)
        if a.error_every and n % a.error_every == 0:
            self.answer(500, self.status(1, "OtherError"))
            return
        kind, list_name, item_name, id_path = KINDS[res]
        try:
            doc = json.loads(raw.decode("utf-8"))
            items = doc[list_name][item_name]
            if not isinstance(items, list):
                items = [items]
        except Exception:
            self.answer(400, self.status(7, "InvalidJSONFormat"))
            return
        out = []
        for item in items:
            ident = item
            for k in id_path:
                ident = ident.get(k) if isinstance(ident, dict) else None
            ident = str(ident or "")
            with st.lock:
                first = ident not in st.seen
                st.seen.add(ident)
            fail = (a.fail_first_every and first and ident and int(hashlib.md5(ident.encode()).hexdigest(), 16) % a.fail_first_every == 0)
            if not ident:
                out.append({"RequestURL": self.path, "StatusCode": "6", "StatusString": "no id", "Id": ""})
            elif fail:
                out.append({"RequestURL": self.path, "StatusCode": "6", "StatusString": "InvalidContent", "Id": ident})
            else:
                if st.log:
                    st.log.write("%s %s\n" % (kind, ident))
                with st.lock:
                    st.stats["records"] += 1
                    if kind == "SubscribeNotification":
                        st.stats["notifications"] += 1
                        if a.cancel_after and st.stats["notifications"] >= a.cancel_after and not st.cancelling:
                            st.cancelling = True
                            threading.Thread(target=cancel, args=(st,), daemon=True).start()
                out.append({"RequestURL": self.path, "StatusCode": "0", "StatusString": "OK", "Id": ident,
                            "LocalTime": datetime.now(CST).strftime("%Y%m%d%H%M%S")})
        self.answer(200, {"ResponseStatusListObject": {"ResponseStatusObject": out}})


def lower_library(st):
    """a digest client of the lower library (vms), from test/peers/viid_client.py"""
    import urllib.parse
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import viid_client
    u = urllib.parse.urlsplit(st.args.subscribe)
    ns = argparse.Namespace(host=u.hostname, port=u.port, user=st.args.subscribe_user,
                            password=st.args.subscribe_password, timeout=30)
    return viid_client.Client(ns)


def subscribe(st):
    a = st.args
    obj = {"SubscribeID": a.subscribe_id, "Title": "vms test subscription", "SubscribeDetail": a.subscribe_detail,
           "ResourceURI": "", "ApplicantName": "receiver", "ApplicantOrg": "test",
           "BeginTime": (datetime.now(CST) - timedelta(days=1)).strftime("%Y%m%d%H%M%S"),
           "EndTime": (datetime.now(CST) + timedelta(days=1)).strftime("%Y%m%d%H%M%S"),
           "ReceiveAddr": "http://%s:%d/VIID/SubscribeNotifications" % (a.host, a.port),
           "ReportInterval": a.subscribe_interval, "OperateType": 0}
    body = json.dumps({"SubscribeListObject": {"SubscribeObject": [obj]}})
    while True:
        try:
            s, b = lower_library(st).send("POST", "/VIID/Subscribes", body)
            code = b["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"] if s == 200 else None
            sys.stderr.write("subscribe: HTTP %s %s\n" % (s, json.dumps(b, ensure_ascii=False)))
            sys.stderr.flush()
            if code == "0":
                with st.lock:
                    st.stats["subscribed"] = 1
                return
        except (OSError, ValueError, KeyError) as e:
            sys.stderr.write("subscribe: %s\n" % e)
        time.sleep(0.5)     # retry pace while the lower library comes up


def cancel(st):
    s, b = lower_library(st).send("DELETE", "/VIID/Subscribes?IDList=" + st.args.subscribe_id, None, ctype=None)
    sys.stderr.write("cancel: HTTP %s %s\n" % (s, json.dumps(b, ensure_ascii=False)))
    sys.stderr.flush()
    if s == 200 and b["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"] == "0":
        with st.lock:
            st.stats["cancelled"] = 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--user", default="admin")
    p.add_argument("--password", default="admin")
    p.add_argument("--realm", default="viid")
    p.add_argument("--log")
    p.add_argument("--fail-first-every", type=int, default=0)
    p.add_argument("--error-every", type=int, default=0)
    p.add_argument("--slow-every", type=int, default=0)
    p.add_argument("--slow-seconds", type=float, default=2.0)
    p.add_argument("--drop-every", type=int, default=0)
    p.add_argument("--hold-after", type=int, default=0)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--subscribe", help="base URL of a lower library to subscribe to")
    p.add_argument("--subscribe-user")
    p.add_argument("--subscribe-password")
    p.add_argument("--subscribe-id", default="sub-1")
    p.add_argument("--subscribe-detail", default="13")
    p.add_argument("--subscribe-interval", type=int, default=0)
    p.add_argument("--cancel-after", type=int, default=0)
    args = p.parse_args()
    srv = ThreadingHTTPServer((args.host, args.port), Handler)
    srv.daemon_threads = True
    srv.state = State(args)
    sys.stderr.write("viid receiver on %s:%d\n" % (args.host, args.port))
    sys.stderr.flush()
    if args.subscribe:
        threading.Thread(target=subscribe, args=(srv.state,), daemon=True).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
