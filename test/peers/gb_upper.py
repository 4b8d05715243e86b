#!/usr/bin/python3
"""A minimal upper GB/T 28181 platform for the cascade benchmark (standard
library only): vms registers to it as a lower platform.

Over UDP on --port it answers REGISTER with 200 (Expires 3600) and MESSAGE
(keepalives, alarms, answers) with 200.  After the first REGISTER it
subscribes to the lower platform's catalog (SUBSCRIBE Event: Catalog from
this socket, the address the lower platform registers to; sent again every
2 s until answered 200).  Every NOTIFY is answered 200 and each of its
catalog items is appended to --log as one line, "<arrival epoch s> <DeviceID>
<Event>", the arrival time taken when the datagram is read.
"""
import argparse
import random
import re
import socket
import sys
import time
import xml.etree.ElementTree as ET


def headers_of(text):
    head = text.split("\r\n\r\n", 1)[0].split("\r\n")
    h = {}
    for line in head[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            h.setdefault(k.strip().lower(), v.strip())
    return head[0], h


def answer(sock, addr, h, code, reason, extra=""):
    to = h.get("to", "")
    if ";tag=" not in to:
        to += ";tag=up%06d" % random.randrange(10**6)
    msg = ("SIP/2.0 %d %s\r\nVia: %s\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\n%sContent-Length: 0\r\n\r\n"
           % (code, reason, h.get("via", ""), h.get("from", ""), to, h.get("call-id", ""), h.get("cseq", ""), extra))
    sock.sendto(msg.encode(), addr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--id", required=True, help="this platform's 20-digit id")
    ap.add_argument("--log", required=True)
    ap.add_argument("--duration", type=float, default=3600)
    a = ap.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", a.port))
    sock.settimeout(0.5)
    log = open(a.log, "a", buffering=1)
    lower = None            # (id, addr)
    subscribed = False
    sub_sent = 0.0
    call_id = "sub%08d" % random.randrange(10**8)
    end = time.time() + a.duration
    while time.time() < end:
        if lower and not subscribed and time.time() - sub_sent > 2:
            body = ('<?xml version="1.0" encoding="GB2312"?>\r\n<Query>\r\n<CmdType>Catalog</CmdType>\r\n'
                    '<SN>1</SN>\r\n<DeviceID>%s</DeviceID>\r\n</Query>\r\n' % lower[0])
            req = ("SUBSCRIBE sip:%s@%s:%d SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;rport;branch=z9hG4bK%08d\r\n"
                   "From: <sip:%s@%s>;tag=upsub\r\nTo: <sip:%s@%s>\r\nCall-ID: %s\r\nCSeq: 1 SUBSCRIBE\r\n"
                   "Event: Catalog\r\nExpires: 3600\r\nContact: <sip:%s@127.0.0.1:%d>\r\nMax-Forwards: 70\r\n"
                   "Content-Type: Application/MANSCDP+xml\r\nContent-Length: %d\r\n\r\n%s"
                   % (lower[0], lower[1][0], lower[1][1], a.port, random.randrange(10**8), a.id, a.id[:10],
                      lower[0], lower[0][:10], call_id, a.id, a.port, len(body), body))
            sock.sendto(req.encode(), lower[1])
            sub_sent = time.time()
        try:
            data, addr = sock.recvfrom(65536)
        except socket.timeout:
            continue
        at = time.time()
        text = data.decode("gb18030", errors="replace")
        first, h = headers_of(text)
        if first.startswith("SIP/2.0 "):
            if h.get("call-id") == call_id and first.split()[1] == "200":
                subscribed = True
            continue
        method = first.split(" ", 1)[0]
        if method == "REGISTER":
            m = re.search(r"sip:(\d{20})@", h.get("from", ""))
            if m and lower is None:
                lower = (m.group(1), addr)
            answer(sock, addr, h, 200, "OK", "Expires: 3600\r\n")
        elif method == "NOTIFY":
            answer(sock, addr, h, 200, "OK")
            body = text.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in text else ""
            body = re.sub(r"^<\?xml[^>]*\?>", "", body.strip())
            try:
                root = ET.fromstring(body)
            except ET.ParseError:
                continue
            for item in root.iter("Item"):
                log.write("%.6f %s %s\n" % (at, item.findtext("DeviceID", ""), item.findtext("Event", "")))
        else:
            answer(sock, addr, h, 200, "OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
