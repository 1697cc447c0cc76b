#!/usr/bin/env python3
"""Diagnostic, not a test: a fake TDS server that prints what a client sends before login.

  python3 prelogin_probe.py [PORT]        (listens on 127.0.0.1, default 14330)

For each connection it prints the PRELOGIN options, answers with the ENCRYPTION value
SQL Server would (OFF->OFF, ON/REQ->ON, NOT_SUP->NOT_SUP), then prints either the TLS
ClientHello the client wraps in PRELOGIN packets (offered versions, SNI, ALPN) or the
TDS version of its LOGIN7, and hangs up. A connection that opens with a bare TLS
ClientHello is TDS 8 "strict". Point a client script at it with any --table.
"""

import socket
import struct
import sys

OPTIONS = {0: "VERSION", 1: "ENCRYPTION", 2: "INSTOPT", 3: "THREADID", 4: "MARS",
           5: "TRACEID", 6: "FEDAUTHREQUIRED", 7: "NONCEOPT"}
ENC = {0: "OFF", 1: "ON", 2: "NOT_SUP", 3: "REQ"}
TLS = {0x0301: "1.0", 0x0302: "1.1", 0x0303: "1.2", 0x0304: "1.3"}


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise EOFError(f"client closed after {len(b)} of {n} bytes")
        b += chunk
    return b


def read_message(s):
    """One whole TDS message -> (packet type, payload)."""
    data = b""
    while True:
        h = recv_exact(s, 8)
        data += recv_exact(s, struct.unpack(">H", h[2:4])[0] - 8)
        if h[1] & 1:  # EOM
            return h[0], data


def client_hello(b):
    if b[:1] != b"\x16":
        return {"not TLS": b[:8].hex()}
    out = {"record_version": TLS.get(struct.unpack(">H", b[1:3])[0])}
    p = 9 + 2 + 32                                   # record + handshake headers, version, random
    p += 1 + b[p]                                    # session id
    p += 2 + struct.unpack(">H", b[p:p + 2])[0]      # cipher suites
    p += 1 + b[p]                                    # compression
    end = p + 2 + struct.unpack(">H", b[p:p + 2])[0]
    p += 2
    while p < end:
        typ, ln = struct.unpack(">HH", b[p:p + 4])
        ext = b[p + 4:p + 4 + ln]
        p += 4 + ln
        if typ == 0x00:
            out["sni"] = ext[5:].decode(errors="replace")
        elif typ == 0x10:
            out["alpn"] = ext[3:].decode(errors="replace")
        elif typ == 0x2B:
            out["supported_versions"] = [TLS.get(v, hex(v)) for v in
                                         struct.unpack(f">{ext[0] // 2}H", ext[1:1 + ext[0]])]
    return out


def prelogin_reply(enc):
    opts = [(0, bytes([16, 0, 0x07, 0xD0, 0, 0])), (1, bytes([enc])), (2, b"\0"), (4, b"\0")]
    off, head, body = 5 * len(opts) + 1, b"", b""
    for typ, val in opts:
        head += struct.pack(">BHH", typ, off + len(body), len(val))
        body += val
    payload = head + b"\xff" + body
    return struct.pack(">BBHHBB", 4, 1, 8 + len(payload), 0, 1, 0) + payload


def handle(c):
    if c.recv(1, socket.MSG_PEEK) == b"\x16":
        print("  TDS 8 strict, TLS first:", client_hello(c.recv(65536)))
        return
    typ, p = read_message(c)
    print(f"  PRELOGIN packet type 0x{typ:02x}")
    i, enc = 0, 2
    while p[i] != 0xFF:
        t, off, ln = struct.unpack(">BHH", p[i:i + 5])
        i += 5
        v = p[off:off + ln]
        if t == 0:
            shown = "%d.%d.%d (sub %d)" % (v[0], v[1], struct.unpack(">H", v[2:4])[0], struct.unpack(">H", v[4:6])[0])
        elif t == 1:
            enc = v[0]
            shown = f"0x{v[0]:02x} {ENC.get(v[0] & 0x0F, '?')}"
        elif t == 2:
            shown = repr(v.rstrip(b"\0").decode(errors="replace"))
        else:
            shown = v.hex()
        print(f"  {OPTIONS.get(t, hex(t)):16} {shown}")
    reply = {0: 0, 1: 1, 2: 2, 3: 1}[enc & 0x0F]
    c.sendall(prelogin_reply(reply))
    print(f"  -> answered ENCRYPTION={ENC[reply]}")
    typ, p = read_message(c)
    if typ == 0x12:
        print("  TLS ClientHello in PRELOGIN:", client_hello(p))
    elif typ == 0x10:
        print(f"  LOGIN7 TDS version 0x{struct.unpack('<I', p[4:8])[0]:08x}")
    else:
        print(f"  next packet type 0x{typ:02x}")


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 14330
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(8)
    print(f"prelogin probe listening on 127.0.0.1:{port}", flush=True)
    n = 0
    while True:
        c, _ = srv.accept()
        n += 1
        print(f"connection {n}")
        c.settimeout(10)
        try:
            handle(c)
        except Exception as e:
            print("  error:", e)
        finally:
            c.close()
            sys.stdout.flush()


if __name__ == "__main__":
    main()
