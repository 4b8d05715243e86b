#!/usr/bin/python3
"""A GA/T 1400 client for tests: a capture device or lower view library that
registers with vms's viid-server (HTTP Digest, RFC 2617 with qop=auth, one
nonce reused with a rising nc), keeps alive, and posts list objects with
inline base64 images.  Standard library only.  Every command prints one JSON
line per answer: {"status": HTTP status, "body": the answer}.

Commands:
  register | keepalive | unregister | time [--repeat N]
  post KIND --count N [--serial S] [--images K] [--image-bytes B] [--bad LIST]
      KIND: MotorVehicles, NonMotorVehicles, Persons, Faces, Images.
      --bad: comma-separated item indexes (0-based) made bad, as
      INDEX:WHAT with WHAT one of id, traversal, device, time, future,
      notimage, notbase64.  --extra JSON is merged into every item.
  ingest --count N --batch B [--serial S] [--images K] --acked FILE
      posts N MotorVehicles in batches of B; a batch that gets no answer
      (connection refused or lost, HTTP 5xx) is sent again until answered;
      the ids of every acknowledged record are appended to FILE.
  raw --method M --path P [--ctype T] [--body TEXT | --body-size N | --body-hex HEX]
      [--auth none|good|forged|replay]
  slowloris --connections N   opens N connections that send half a header,
      then reports how many the server closed ({"closed": n, "of": N}).
  trickle [--every S] [--pad N]  sends a header one byte every S seconds until
      the server closes the connection or the header is all sent
      ({"closed", "answered", "sent", "of", "seconds"}).
  bench [--clients 8] [--count N] [--batch B] [--images K] [--image-bytes B] [--dump FILE]
      --clients processes post N MotorVehicles together ({"acked", "seconds",
      "per_s"}); with --dump, writes the same documents one a line for COPY.
  flood --connections N       opens N connections at once, closes them, then
      makes one authenticated request ({"opened": n, "status": ...}).
  replay --attack plain|reset|fresh401 [--serial S]
      posts one MotorVehicle (answer "first"), then replays its Authorization
      header with another record's body ("replay", ids of both in "ids"):
      plain: as it is; reset: after a request with the same nonce, nc=00000000
      and a garbage response ("reset"); fresh401: after an unauthenticated
      request for the same URI ("fresh401", "same_nonce": the challenge gave
      the same nonce).  libmicrohttpd 0.9.75 alone accepts the last two.
  badauth --what nc0|nc7|nc9|nchex|nocnonce|longcnonce|dupnc|noqop
      a GET /VIID/System/Time whose otherwise good digest has that fault.
  concurrent [--clients 8] [--rounds 10]
      the clients share one nonce and send GET /VIID/System/Time together,
      round by round, each its own nonce counts out of order (8k+c+1, k =
      1,0,3,2,...), no retries ({"ok", "of", "statuses"}).
"""
import argparse
import base64
import hashlib
import http.client
import json
import os
import resource
import select
import secrets
import socket
import sys
import time
from datetime import datetime, timedelta, timezone

CST = timezone(timedelta(hours=8))
CTYPE = "application/VIID+JSON;charset=UTF-8"
KINDS = {
    "MotorVehicles": ("MotorVehicleListObject", "MotorVehicleObject", "MotorVehicleID", "02", "PassTime"),
    "NonMotorVehicles": ("NonMotorVehicleListObject", "NonMotorVehicleObject", "NonMotorVehicleID", "03", "AppearTime"),
    "Persons": ("PersonListObject", "PersonObject", "PersonID", "01", "LocationMarkTime"),
    "Faces": ("FaceListObject", "FaceObject", "FaceID", "04", "FaceAppearTime"),
    "Images": ("ImageListObject", "ImageObject", None, "02", "ShotTime"),
}


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


class Client:
    def __init__(self, args):
        self.a = args
        self.conn = None
        self.nonce = None
        self.realm = None
        self.opaque = None
        self.nc = 0
        self.last_auth = None
        # the bench's clients count on disjoint nonce counts (count * stride
        # + offset): sharing a nonce (below), they never use the same one
        self.nc_stride = 1
        self.nc_offset = 0
        self.attempts = 5

    def connect(self):
        if self.conn is None and getattr(self.a, "tls", False):
            import ssl
            ctx = ssl.create_default_context(cafile=self.a.tls_ca)
            ctx.check_hostname = False   # the test certificate names 127.0.0.1 as its CN only
            self.conn = http.client.HTTPSConnection(self.a.host, self.a.port, timeout=self.a.timeout, context=ctx)
        elif self.conn is None:
            self.conn = http.client.HTTPConnection(self.a.host, self.a.port, timeout=self.a.timeout)
        return self.conn

    def close(self):
        if self.conn:
            self.conn.close()
        self.conn = None

    def authorization(self, method, path, password=None):
        self.nc += 1
        nc = "%08x" % (self.nc * self.nc_stride + self.nc_offset)
        cnonce = secrets.token_hex(8)
        ha1 = md5("%s:%s:%s" % (self.a.user, self.realm, password or self.a.password))
        ha2 = md5("%s:%s" % (method, path))
        resp = md5(":".join([ha1, self.nonce, nc, cnonce, "auth", ha2]))
        h = ('Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", '
             'algorithm=MD5, qop=auth, nc=%s, cnonce="%s"' % (self.a.user, self.realm, self.nonce, path, resp, nc, cnonce))
        if self.opaque:
            h += ', opaque="%s"' % self.opaque
        return h

    def take_challenge(self, header):
        parts = {}
        for item in header[len("Digest "):].split(","):
            if "=" in item:
                k, v = item.strip().split("=", 1)
                parts[k.strip()] = v.strip().strip('"')
        # libmicrohttpd 0.9.75 hands one nonce to every client challenged in
        # the same second: keep counting on a nonce seen before, and start a
        # new one at a small random count, so clients sharing it rarely use
        # the same count (the server accepts counts out of order within 64)
        if parts.get("nonce") != self.nonce:
            self.nc = secrets.randbelow(32) if self.nc_stride == 1 else 0
        elif self.nc_stride > 1:
            self.nc += 32 // self.nc_stride   # refused on a nonce shared with clients further on: catch up
        self.nonce, self.realm, self.opaque = parts.get("nonce"), parts.get("realm"), parts.get("opaque")

    def fetch_challenge(self, method, path, ctype):
        c = self.connect()
        try:
            c.request(method, path, body=b"", headers={"User-Identify": self.a.user, "Content-Type": ctype or CTYPE})
            r = c.getresponse()
            r.read()
        except (ConnectionError, http.client.HTTPException, OSError):
            self.close()
            return
        if r.getheader("Connection", "").lower() == "close":
            self.close()
        if r.status == 401 and r.getheader("WWW-Authenticate"):
            self.take_challenge(r.getheader("WWW-Authenticate"))

    def send(self, method, path, body=None, ctype=CTYPE, auth="good", extra=None, parse=True):
        """one request, answering a digest challenge once; returns (status, parsed body), or the raw body with parse false"""
        # a 401 after an authenticated attempt is answered with the new
        # challenge too, a few times with a little jitter: the nonce may be
        # stale, or shared (libmicrohttpd 0.9.75 gives clients challenged in
        # the same millisecond the same nonce, so their nonce counts collide
        # and the later one is refused as a replay)
        data = body.encode() if isinstance(body, str) else body
        big = auth == "good" and data is not None and len(data) > 65536
        last = self.attempts - 1
        for attempt in range(self.attempts):
            if big and not self.nonce:
                # the server refuses an unauthenticated request before its body
                # and closes: take a challenge first with the same method and
                # path (libmicrohttpd 0.9.75 binds a nonce to both) and no body
                self.fetch_challenge(method, path, ctype)
            headers = {"User-Identify": self.a.user}
            if ctype:
                headers["Content-Type"] = ctype
            if extra:
                headers.update(extra)
            if auth != "none" and self.nonce:
                if auth == "replay" and self.last_auth:
                    headers["Authorization"] = self.last_auth
                else:
                    headers["Authorization"] = self.authorization(method, path, "wrong-password" if auth == "forged" else None)
                    self.last_auth = headers["Authorization"]
            c = self.connect()
            try:
                c.request(method, path, body=data, headers=headers)
                r = c.getresponse()
                raw = r.read()
            except (BrokenPipeError, ConnectionResetError):
                # refused (401) before the body was read, and closed
                self.close()
                if big and attempt < last:
                    self.nonce = None
                    time.sleep(secrets.randbelow(50) / 1000.0)
                    continue
                raise
            except (ConnectionError, http.client.HTTPException, socket.timeout, OSError):
                self.close()
                raise
            if r.getheader("Connection", "").lower() == "close":
                self.close()
            try:
                parsed = (json.loads(raw) if raw else None) if parse else raw
            except ValueError:
                parsed = raw.decode(errors="replace")
            challenge = r.getheader("WWW-Authenticate")
            if r.status == 401 and challenge and (attempt == 0 and auth in ("good", "forged") or
                                                  attempt < last and auth == "good"):
                self.take_challenge(challenge)
                if attempt > 0:
                    time.sleep(secrets.randbelow(50) / 1000.0)
                continue
            return r.status, parsed
        return r.status, parsed


def now_cst(delta_s=0):
    return (datetime.now(CST) + timedelta(seconds=delta_s)).strftime("%Y%m%d%H%M%S")


SAME_IMAGE = False  # bench: one image (per size) for every record, made once


def image_bytes(n, kind="jpeg", _cache={}):
    if kind == "notimage":
        return b"this is not an image " * max(1, n // 21)
    if SAME_IMAGE and n in _cache:
        return _cache[n]
    head = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
    _cache[n] = head + os.urandom(max(0, n - len(head) - 2)) + b"\xff\xd9"
    return _cache[n]


def b64_of(data, _cache={}):
    if SAME_IMAGE:
        if id(data) not in _cache:
            _cache[id(data)] = (data, base64.b64encode(data).decode())
        return _cache[id(data)][1]
    return base64.b64encode(data).decode()


AT = None  # --at: the capture time of every record, so that a batch sent again is the same batch


def make_item(kind, device, serial, images, image_size, bad=None):
    lst, obj, idf, otype, tf = KINDS[kind]
    t = AT or now_cst(-60)
    shot = t
    source = "%s02%s%05d" % (device, t, serial % 100000)
    oid = source + otype + "%05d" % (serial % 100000)
    dev = device
    if bad == "id":
        oid = oid[:-1]
    elif bad == "traversal":
        oid = "../../../../etc/passwd"
    elif bad == "device":
        dev = "3402000000132000000X"
    elif bad == "time":
        t = "20261399250000"
    elif bad == "future":
        t = now_cst(86400 * 2)
    imgs = []
    for i in range(images):
        data = image_bytes(image_size, "notimage" if bad == "notimage" else "jpeg")
        b64 = b64_of(data)
        if bad == "notbase64":
            b64 = "!!!" + b64
        imgs.append({"ImageID": "%s02%s%05d" % (device, shot, (serial * 10 + i) % 100000),
                     "EventSort": 10, "DeviceID": device, "StoragePath": "", "Type": "01",
                     "FileFormat": "Jpeg", "ShotTime": t, "Width": 1920, "Height": 1080, "Data": b64})
    if kind == "Images":
        img = imgs[0] if imgs else {"Data": base64.b64encode(image_bytes(image_size)).decode()}
        info = {"ImageID": source if bad != "traversal" else oid, "DeviceID": dev, "ShotTime": t,
                "FileFormat": "Jpeg", "Type": "01", "EventSort": 10}
        if bad == "id":
            info["ImageID"] = source[:-1]
        return source, {"ImageInfo": info, "Data": img["Data"]}
    item = {idf: oid, "DeviceID": dev, tf: t, "InfoKind": 1, "SourceID": source}
    if kind == "MotorVehicles":
        item.update({"PlateNo": "京A%05d" % (serial % 100000), "PlateColor": "2", "VehicleColor": "A", "LeftTopX": 1,
                     "LeftTopY": 1, "RightBtmX": 100, "RightBtmY": 100, "TollgateID": device[:20]})
    if imgs:
        item["SubImageList"] = {"SubImageInfoObject": imgs}
    return oid, item


def list_body(kind, items):
    lst, obj = KINDS[kind][0], KINDS[kind][1]
    return json.dumps({lst: {obj: items}}, ensure_ascii=False)


def out(obj):
    print(json.dumps(obj, ensure_ascii=False), flush=True)


def cmd_system(cl, a):
    dev = a.user
    if a.cmd == "time":
        for i in range(a.repeat - 1):
            s, b = cl.send("GET", "/VIID/System/Time", ctype=None)
            out({"status": s, "body": b})
        s, b = cl.send("GET", "/VIID/System/Time", ctype=None)
    else:
        name = {"register": "Register", "keepalive": "Keepalive", "unregister": "UnRegister"}[a.cmd]
        s, b = cl.send("POST", "/VIID/System/" + name, json.dumps({name + "Object": {"DeviceID": dev}}))
    out({"status": s, "body": b})


def parse_bad(spec):
    bad = {}
    for part in (spec or "").split(","):
        if part:
            i, what = part.split(":")
            bad[int(i)] = what
    return bad


def cmd_post(cl, a):
    bad = parse_bad(a.bad)
    ids, items = [], []
    for i in range(a.count):
        oid, item = make_item(a.kind, a.device, a.serial + i, a.images, a.image_bytes, bad.get(i))
        if a.extra:
            item.update(json.loads(a.extra))
        ids.append(oid)
        items.append(item)
    s, b = cl.send("POST", "/VIID/" + a.kind, list_body(a.kind, items))
    out({"status": s, "body": b, "ids": ids})


def cmd_ingest(cl, a):
    acked = open(a.acked, "a", buffering=1)
    sent = 0
    retries = 0
    registered = False
    serial = a.serial
    while sent < a.count:
        n = min(a.batch, a.count - sent)
        batch = [make_item("MotorVehicles", a.device, serial + i, a.images, a.image_bytes) for i in range(n)]
        body = list_body("MotorVehicles", [it for _, it in batch])
        while True:
            try:
                if not registered:
                    s, b = cl.send("POST", "/VIID/System/Register", json.dumps({"RegisterObject": {"DeviceID": a.user}}))
                    if s != 200:
                        raise ConnectionError("register: HTTP %d" % s)
                    registered = True
                s, b = cl.send("POST", "/VIID/MotorVehicles", body)
                if s >= 500 or s == 503:
                    raise ConnectionError("HTTP %d" % s)
                break
            except (ConnectionError, http.client.HTTPException, socket.timeout, OSError):
                retries += 1
                cl.close()
                cl.nonce = None
                registered = False
                time.sleep(0.2)     # a retry pace, not a condition: the server is restarting
        if s != 200:
            out({"status": s, "body": b})
            sys.exit(1)
        for st in b["ResponseStatusListObject"]["ResponseStatusObject"]:
            if st["StatusCode"] == "0":
                acked.write(st["Id"] + "\n")
        sent += n
        serial += n
    out({"sent": sent, "retries": retries})


def headers_only(a, length):
    """a POST that announces a body of length bytes and sends none: the answer to the headers"""
    s = socket.create_connection((a.host, a.port), timeout=a.timeout)
    s.sendall(("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
               % (a.path, a.host, a.ctype, length)).encode())
    r = http.client.HTTPResponse(s)
    r.begin()
    raw = r.read()
    s.close()
    return r.status, json.loads(raw) if raw else None


def cmd_raw(cl, a):
    body = a.body
    if a.announce:
        s, b = headers_only(a, a.announce)
        out({"status": s, "body": b})
        return
    if a.body_size:
        body = "x" * a.body_size
    if a.body_hex:
        body = bytes.fromhex(a.body_hex)    # any bytes: invalid UTF-8, NUL
    if a.auth in ("good", "forged", "replay"):
        # take a challenge first (and, for replay, one good request to replay)
        cl.send("GET", "/VIID/System/Time", ctype=None)
    if a.auth == "replay":
        s, b = cl.send(a.method, a.path, body, ctype=a.ctype or None, auth="good")
        out({"status": s, "body": b, "first": True})
        s, b = cl.send(a.method, a.path, body, ctype=a.ctype or None, auth="replay")
    else:
        try:
            s, b = cl.send(a.method, a.path, body, ctype=a.ctype or None, auth=a.auth)
        except (ConnectionError, OSError):
            s, b = "closed", None    # the server answered early and closed while the body was still going out
    out({"status": s, "body": b})


def bench_device(c):
    return "340200000013200%05d" % (c + 1)


MV_ITEM = ('{"MotorVehicleID": "%(oid)s", "DeviceID": "%(dev)s", "PassTime": "%(t)s", "InfoKind": 1, '
           '"SourceID": "%(src)s", "PlateNo": "\u4eacA%(plate)05d", "PlateColor": "2", "VehicleColor": "A", '
           '"LeftTopX": 1, "LeftTopY": 1, "RightBtmX": 100, "RightBtmY": 100, "TollgateID": "%(toll)s"%(subs)s}')
MV_IMAGE = ('{"ImageID": "%(iid)s", "EventSort": 10, "DeviceID": "%(dev)s", "StoragePath": "", "Type": "01", '
            '"FileFormat": "Jpeg", "ShotTime": "%(t)s", "Width": 1920, "Height": 1080, "Data": "@@IMG@@"}')


def bench_item(device, serial, images, t):
    """the JSON text of make_item("MotorVehicles", device, serial, images, ...) with each Data as "@@IMG@@",
    written out by a format string: the bench's load generator must not take the 2 cores' CPU
    (bench_client checks it against make_item's own text)"""
    source = "%s02%s%05d" % (device, t, serial % 100000)
    subs = ""
    if images:
        subs = ', "SubImageList": {"SubImageInfoObject": [%s]}' % ", ".join(
            MV_IMAGE % {"iid": "%s02%s%05d" % (device, t, (serial * 10 + i) % 100000), "dev": device, "t": t}
            for i in range(images))
    return MV_ITEM % {"oid": source + "02%05d" % (serial % 100000), "dev": device, "t": t, "src": source,
                      "plate": serial % 100000, "toll": device[:20], "subs": subs}


def bench_client(a, c, barrier, result):
    cl = Client(a)
    cl.nc_stride, cl.nc_offset, cl.attempts = a.clients, c, 20
    s, b = cl.send("POST", "/VIID/System/Register", json.dumps({"RegisterObject": {"DeviceID": a.user}}))
    if s != 200:
        raise SystemExit("register: HTTP %d" % s)
    per = a.count // a.clients
    bodies = []
    dev = bench_device(c)
    img = b64_of(image_bytes(a.image_bytes)).encode() if a.images else b""
    head = ('{"%s": {"%s": [' % KINDS["MotorVehicles"][:2]).encode()
    # Every request's body is made before the clock starts, all but the
    # image data (100 images are 2.7 MB; all of a client's, 340 MB): its
    # pieces around each image's place, which each request joins with the
    # image's base64 (one copy).  The load generator must not be what limits
    # the rate: on 2 shared cores it takes the worker's CPU.
    for start in range(0, per, a.batch):
        n = min(a.batch, per - start)
        # the items as text from a format string, the (same) image's base64
        # joined in as bytes: not json.dumps of a hundred dicts nor a str
        # replace and encode of the whole body (a str holding 京 is two bytes
        # a character).  The body is the same bytes json.dumps gives
        # (checked on each request's first item).
        global AT
        t, at = AT or now_cst(-60), AT
        texts = [bench_item(dev, start + i + 1, a.images, t) for i in range(n)]
        AT = t
        ref = make_item("MotorVehicles", dev, start + 1, a.images, a.image_bytes)[1]
        AT = at
        for im in ref.get("SubImageList", {}).get("SubImageInfoObject", []):
            im["Data"] = "@@IMG@@"
        if json.dumps(ref, ensure_ascii=False) != texts[0]:
            raise SystemExit("bench_item differs from make_item:\n%s\n%s" % (texts[0], json.dumps(ref, ensure_ascii=False)))
        body = head + ", ".join(texts).encode() + b"]}}"
        bodies.append((n, body.split(b'"@@IMG@@"') if img else [body]))
    sep = b'"' + img + b'"'
    barrier.wait()
    acked = 0
    for n, parts in bodies:
        s, b = cl.send("POST", "/VIID/MotorVehicles", sep.join(parts), parse=False)
        if s != 200:
            raise SystemExit("post: HTTP %d %s" % (s, b))
        # the answer as jsonb prints it: one ResponseStatusObject per item, in
        # order, "StatusCode": "0" for each stored (a reason holding a quote
        # has it escaped)
        if b.count(b'"RequestURL"') != n:
            raise SystemExit("post: %d answers for %d records: %s" % (b.count(b'"RequestURL"'), n, b[:300]))
        acked += b.count(b'"StatusCode": "0"')
    result.put(acked)


def cmd_bench(cl, a):
    """--clients processes post --count MotorVehicles together; or --dump writes the same documents for COPY"""
    import multiprocessing as mp
    global SAME_IMAGE
    SAME_IMAGE = True
    per = a.count // a.clients
    if a.dump:
        with open(a.dump, "w") as f:
            for c in range(a.clients):
                for i in range(per):
                    item = make_item("MotorVehicles", bench_device(c), i + 1, a.images, a.image_bytes)[1]
                    f.write(json.dumps(item, ensure_ascii=False).replace("\\", "\\\\") + "\n")
        out({"dumped": per * a.clients})
        return
    barrier = mp.Barrier(a.clients + 1)
    result = mp.Queue()
    procs = [mp.Process(target=bench_client, args=(a, c, barrier, result)) for c in range(a.clients)]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.monotonic()
    acked = 0
    for _ in procs:
        while True:
            try:
                acked += result.get(timeout=1)
                break
            except Exception:
                if any(p.exitcode not in (None, 0) for p in procs):
                    raise SystemExit("a bench client failed")
    t1 = time.monotonic()
    for p in procs:
        p.join()
    # CPU seconds of this process and the clients it waited for (start-up included)
    cpu = os.times()
    out({"acked": acked, "seconds": t1 - t0, "per_s": acked / (t1 - t0),
         "cpu_s": cpu.user + cpu.system + cpu.children_user + cpu.children_system})


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, n + 64))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def cmd_slowloris(cl, a):
    socks = []
    for i in range(a.connections):
        s = socket.create_connection((a.host, a.port), timeout=a.timeout)
        s.sendall(b"POST /VIID/MotorVehicles HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    closed = 0
    deadline = time.monotonic() + a.timeout
    for s in socks:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            if s.recv(1) == b"":
                closed += 1
            else:
                closed += 1  # an answer (408) and then the close
        except (socket.timeout, ConnectionResetError):
            if isinstance(sys.exc_info()[1], ConnectionResetError):
                closed += 1
        s.close()
    out({"closed": closed, "of": a.connections})


def cmd_trickle(cl, a):
    """A header sent one byte every --every seconds (bounded: at most the
    header's length): each byte resets the server's idle timeout, so only a
    deadline on the whole request cuts it off."""
    head = ("POST /VIID/MotorVehicles HTTP/1.1\r\nHost: x\r\nContent-Type: application/VIID+JSON\r\n"
            "X-Pad: " + "p" * a.pad + "\r\n\r\n").encode()
    s = socket.create_connection((a.host, a.port), timeout=a.timeout)
    t0 = time.monotonic()
    sent, closed, answered = 0, False, False
    for i in range(len(head)):
        try:
            s.sendall(head[i:i + 1])
            sent += 1
            ready, _, _ = select.select([s], [], [], a.every)
            if ready:
                data = s.recv(4096)
                if data == b"":
                    closed = True
                    break
                answered = True
        except OSError:
            closed = True
            break
    s.close()
    out({"closed": closed, "answered": answered, "sent": sent, "of": len(head),
         "seconds": round(time.monotonic() - t0, 2)})


def cmd_flood(cl, a):
    raise_nofile(a.connections)
    socks = []
    for i in range(a.connections):
        try:
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((a.host, a.port))
            socks.append(s)
        except OSError:
            break
    # every connection established (or refused) before they all go
    established = 0
    for x in socks:
        x.setblocking(True)
        x.settimeout(a.timeout)
        try:
            x.getpeername()
            established += 1
        except OSError:
            pass
    for x in socks:
        x.close()
    s, b = cl.send("GET", "/VIID/System/Time", ctype=None)
    out({"opened": len(socks), "established": established, "status": s, "body": b})


def one_request(a, method, path, body=b"", headers=None):
    """one request on a new connection: (status, WWW-Authenticate, parsed body)"""
    c = http.client.HTTPConnection(a.host, a.port, timeout=a.timeout)
    h = {"Content-Type": CTYPE} if method in ("POST", "PUT") else {}
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    raw = r.read()
    c.close()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return r.status, r.getheader("WWW-Authenticate"), parsed


def nonce_of(challenge):
    cl = Client(argparse.Namespace())
    cl.nc_stride = 2    # take_challenge: no random start
    cl.take_challenge(challenge or "Digest ")
    return cl.nonce


def cmd_replay(cl, a):
    path = "/VIID/MotorVehicles"
    s, ch, _ = one_request(a, "POST", path)
    cl.take_challenge(ch)
    cl.nc = 0
    ida, item_a = make_item("MotorVehicles", a.device, a.serial, 1, 2048)
    idb, item_b = make_item("MotorVehicles", a.device, a.serial + 1, 1, 2048)
    auth = cl.authorization("POST", path)
    res = {"ids": [ida, idb]}
    res["first"] = one_request(a, "POST", path, list_body("MotorVehicles", [item_a]).encode(), {"Authorization": auth})[0]
    if a.attack == "reset":
        forged = auth.replace("nc=00000001", "nc=00000000")
        forged = forged[:forged.index('response="') + 10] + "0" * 32 + forged[forged.index('response="') + 42:]
        s, _, b = one_request(a, "POST", path, b"{}", {"Authorization": forged})
        res["reset"] = s
        res["reset_reason"] = (b or {}).get("ResponseStatusObject", {}).get("StatusString") if isinstance(b, dict) else b
    elif a.attack == "fresh401":
        s, ch, _ = one_request(a, "POST", path)
        res["fresh401"] = s
        res["same_nonce"] = nonce_of(ch) == cl.nonce
    s, _, b = one_request(a, "POST", path, list_body("MotorVehicles", [item_b]).encode(), {"Authorization": auth})
    res["replay"] = s
    res["replay_reason"] = (b or {}).get("ResponseStatusObject", {}).get("StatusString") if isinstance(b, dict) else b
    out(res)


def cmd_badauth(cl, a):
    path = "/VIID/System/Time"
    s, ch, _ = one_request(a, "GET", path)
    cl.take_challenge(ch)
    cl.nc = 0
    h = cl.authorization("GET", path)
    w = a.what
    if w == "nc0":
        cl.nc = -1
        h = cl.authorization("GET", path)     # nc 00000000 with its right response
    elif w == "nc7":
        h = h.replace("nc=00000001", "nc=0000001")
    elif w == "nc9":
        h = h.replace("nc=00000001", "nc=000000001")
    elif w == "nchex":
        h = h.replace("nc=00000001", "nc=0000000g")
    elif w == "nocnonce":
        h = h[:h.index(', cnonce="')] + h[h.index('"', h.index(', cnonce="') + 10) + 1:]
    elif w == "longcnonce":
        cn = h[h.index('cnonce="') + 8:h.index('"', h.index('cnonce="') + 8)]
        h = h.replace(cn, "a" * 100)
    elif w == "dupnc":
        h += ", nc=00000002"
    elif w == "noqop":
        h = h.replace("qop=auth, ", "")
    s, _, b = one_request(a, "GET", path, b"", {"Authorization": h})
    out({"status": s, "body": b})


def cmd_concurrent(cl, a):
    import threading
    path = "/VIID/System/Time"
    s, ch, _ = one_request(a, "GET", path)
    n = a.clients
    barrier = threading.Barrier(n)
    statuses = {}
    lock = threading.Lock()

    def run(c):
        me = Client(a)
        me.take_challenge(ch)      # all of them the same nonce
        me.nc_stride, me.nc_offset = n, c + 1
        for r in range(a.rounds):
            barrier.wait()
            k = r + 1 if r % 2 == 0 else r - 1          # k = 1, 0, 3, 2, ...: out of order
            me.nc = k - 1                               # authorization() counts it up first
            h = me.authorization("GET", path)           # nc = n * k + c + 1
            try:
                st = one_request(a, "GET", path, b"", {"Authorization": h})[0]
            except (ConnectionError, OSError, http.client.HTTPException):
                st = "error"
            with lock:
                statuses[str(st)] = statuses.get(str(st), 0) + 1

    threads = [threading.Thread(target=run, args=(c,)) for c in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out({"ok": statuses.get("200", 0), "of": n * a.rounds, "statuses": statuses})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True, help="the client's 20-digit id")
    p.add_argument("--password", required=True)
    p.add_argument("--device", default="34020000001320000001")
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--tls", action="store_true", help="HTTPS, verifying the server against --tls-ca")
    p.add_argument("--tls-ca", help="CA (or self-signed server) certificate file")
    p.add_argument("--at", help="capture time yyyyMMddHHmmss (China Standard Time) of every record; default a minute ago")
    sub = p.add_subparsers(dest="cmd", required=True)
    for c in ("register", "keepalive", "unregister"):
        sub.add_parser(c)
    sp = sub.add_parser("time")
    sp.add_argument("--repeat", type=int, default=1, help="ask this many times on one connection")
    sp = sub.add_parser("post")
    sp.add_argument("kind", choices=list(KINDS))
    sp.add_argument("--count", type=int, default=1)
    sp.add_argument("--serial", type=int, default=1)
    sp.add_argument("--images", type=int, default=1)
    sp.add_argument("--image-bytes", type=int, default=2048)
    sp.add_argument("--bad")
    sp.add_argument("--extra", help="JSON object merged into every item (vendor fields)")
    sp = sub.add_parser("ingest")
    sp.add_argument("--count", type=int, required=True)
    sp.add_argument("--batch", type=int, default=50)
    sp.add_argument("--serial", type=int, default=1)
    sp.add_argument("--images", type=int, default=1)
    sp.add_argument("--image-bytes", type=int, default=2048)
    sp.add_argument("--acked", required=True)
    sp = sub.add_parser("raw")
    sp.add_argument("--method", default="POST")
    sp.add_argument("--path", required=True)
    sp.add_argument("--ctype", default=CTYPE)
    sp.add_argument("--body", default="")
    sp.add_argument("--body-size", type=int, default=0)
    sp.add_argument("--body-hex", help="the body as hex digits (any bytes)")
    sp.add_argument("--announce", type=int, default=0, help="send only headers announcing this Content-Length")
    sp.add_argument("--auth", choices=["none", "good", "forged", "replay"], default="good")
    sp = sub.add_parser("slowloris")
    sp.add_argument("--connections", type=int, default=10)
    sp = sub.add_parser("trickle")
    sp.add_argument("--every", type=float, default=0.25, help="seconds between bytes")
    sp.add_argument("--pad", type=int, default=400, help="length of a padding header")
    sp = sub.add_parser("bench")
    sp.add_argument("--clients", type=int, default=8)
    sp.add_argument("--count", type=int, default=100000)
    sp.add_argument("--batch", type=int, default=100)
    sp.add_argument("--images", type=int, default=1)
    sp.add_argument("--image-bytes", type=int, default=20480)
    sp.add_argument("--dump", help="write the documents, one a line, for COPY, instead of posting")
    sp = sub.add_parser("flood")
    sp.add_argument("--connections", type=int, default=10000)
    sp = sub.add_parser("replay")
    sp.add_argument("--attack", choices=["plain", "reset", "fresh401"], required=True)
    sp.add_argument("--serial", type=int, default=1)
    sp = sub.add_parser("badauth")
    sp.add_argument("--what", choices=["nc0", "nc7", "nc9", "nchex", "nocnonce", "longcnonce", "dupnc", "noqop"], required=True)
    sp = sub.add_parser("concurrent")
    sp.add_argument("--clients", type=int, default=8)
    sp.add_argument("--rounds", type=int, default=10)
    a = p.parse_args()
    global AT
    AT = a.at
    cl = Client(a)
    {"register": cmd_system, "keepalive": cmd_system, "unregister": cmd_system, "time": cmd_system,
     "post": cmd_post, "ingest": cmd_ingest, "raw": cmd_raw, "slowloris": cmd_slowloris,
     "flood": cmd_flood, "bench": cmd_bench, "trickle": cmd_trickle,
     "replay": cmd_replay, "badauth": cmd_badauth, "concurrent": cmd_concurrent}[a.cmd](cl, a)


if __name__ == "__main__":
    main()
