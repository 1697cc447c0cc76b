#!/usr/bin/env python3
"""Interop check with Microsoft ODBC Driver 18, through PyPI mssql-python (which bundles it).

  mssql_python_client.py --host H --port P --user U --password PW --table T [--database master] [--tls off|on]

--tls on  -> Encrypt=yes;TrustServerCertificate=yes (PRELOGIN ENCRYPT_ON, whole session in TLS)
--tls off -> Encrypt=no (PRELOGIN ENCRYPT_OFF: ODBC 18 still encrypts the LOGIN7 packet,
             so the server must answer ENCRYPT_OFF and do a TLS handshake for the login).
Runtime needs libltdl7 (plus libkrb5-3, libgssapi-krb5-2, libstdc++6; see .ci/install-interop.sh).
"""

import os

# mssql-python 1.16 can load either ODBC Driver 18 or its new Rust driver; this test is about ODBC 18.
os.environ.setdefault("MSSQL_PYTHON_NATIVE_PROVIDER", "msodbcsql18")

import mssql_python  # noqa: E402

from interop_common import dbapi_checks, parse_args, run  # noqa: E402

DRIVER = "mssql-python"


def odbc_value(v):
    """Brace-quote a connection string value when it needs it (';', '{', '}', spaces...)."""
    if v and all(ch.isalnum() or ch in "._-@#$" for ch in v):
        return v
    return "{" + v.replace("}", "}}") + "}"


def main():
    args = parse_args(DRIVER)
    conn_str = ";".join([
        f"Server=tcp:{args.host},{args.port}",
        f"Database={odbc_value(args.database)}",
        f"UID={odbc_value(args.user)}",
        f"PWD={odbc_value(args.password)}",
        "Encrypt=yes;TrustServerCertificate=yes" if args.tls == "on" else "Encrypt=no",
        "ConnectRetryCount=0",
    ])

    def body():
        conn = mssql_python.connect(conn_str, autocommit=False, timeout=args.timeout)
        dbapi_checks(conn, args, "SELECT ? + 1 AS n, ? AS s")

    run(DRIVER, body, args.skip)


if __name__ == "__main__":
    main()
