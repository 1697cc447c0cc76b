#!/usr/bin/env python3
"""Interop check with pytds (PyPI python-tds, pure Python; TLS through pyOpenSSL).

  pytds_client.py --host H --port P --user U --password PW --table T [--database master] [--tls off|on|login]

PRELOGIN ENCRYPTION sent by pytds: --tls off -> NOT_SUP (0x02), on -> ON (0x01),
login -> OFF (0x00, pytds `enc_login_only`: TLS for LOGIN7 only, then cleartext).
pytds only speaks TLS 1.2 (pyOpenSSL TLSv1_2_METHOD) and checks the server
certificate against `cafile`; it has no "trust any certificate" switch, so the
context factory is replaced by one that skips verification.
"""

import OpenSSL.SSL
import pytds
import pytds.tls

from pytds.tds_base import PreLoginEnc

from interop_common import dbapi_checks, expect, parse_args, run

DRIVER = "pytds"


def trust_any_context(_cafile):
    # Same protocol choice as pytds.tls.create_context, without CA verification.
    ctx = OpenSSL.SSL.Context(OpenSSL.SSL.TLSv1_2_METHOD)
    ctx.set_verify(OpenSSL.SSL.VERIFY_NONE, lambda *_: True)
    return ctx


def tls_mode(conn):
    """What was really negotiated (pytds internals), so a silent downgrade is caught."""
    sock = conn._tds_socket
    if isinstance(sock.sock, pytds.tls.EncryptedSocket):
        return "on"
    return "login" if sock._login.server_enc_flag == PreLoginEnc.ENCRYPT_OFF else "off"


def main():
    args = parse_args(DRIVER, ("on", "off", "login"), "login = encrypt the login packet only (pytds enc_login_only)")
    tls = {}
    if args.tls != "off":
        pytds.tls.create_context = trust_any_context
        # cafile only switches TLS on; its value is handed to trust_any_context.
        tls = dict(cafile="<trust any>", validate_host=False, enc_login_only=args.tls == "login")

    def body():
        conn = pytds.connect(
            dsn=args.host, port=args.port, database=args.database,
            user=args.user, password=args.password, autocommit=False,
            login_timeout=args.timeout, timeout=60, disable_connect_retry=True, **tls,
        )
        expect("TLS mode negotiated", tls_mode(conn), args.tls)
        dbapi_checks(conn, args, "SELECT %s + 1 AS n, %s AS s")

    run(DRIVER, body, args.skip)


if __name__ == "__main__":
    main()
