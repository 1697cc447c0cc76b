#!/usr/bin/env python3
"""A parameterised lookup through Microsoft ODBC Driver 18 (mssql-python): the row, or an error.

  mssql_python_lookup.py --host H --port P --user U --password PW --table T [--database master] [--tls off|on]

Check (d): fill --table with (2, N'weir'), read it back without a parameter, then
cursor.execute("SELECT name FROM T WHERE id = ?", 2). ODBC sends that as an RPC
sp_prepexec with NVARCHAR(MAX) (PLP) @params/@stmt. Passing means the row came back.
A driver error raised by execute() exits 2, as in every interop script; an answer with
no result set and no error (what iridium's reply looked like to the client, defect 13)
is a mismatch, exit 1.
"""

import os

# Same driver choice as mssql_python_client.py: ODBC Driver 18, not the Rust provider.
os.environ.setdefault("MSSQL_PYTHON_NATIVE_PROVIDER", "msodbcsql18")

import mssql_python  # noqa: E402

from interop_common import Mismatch, expect, parse_args, rows, run, state  # noqa: E402
from mssql_python_client import DRIVER, odbc_value  # noqa: E402

STEP = "(d) parameterised lookup"


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
        conn = mssql_python.connect(conn_str, autocommit=True, timeout=args.timeout)
        cur = conn.cursor()
        state.step = "(d) setup"
        cur.execute(f"DELETE FROM {args.table}")
        cur.execute(f"INSERT INTO {args.table} (id, name) VALUES (2, N'weir')")
        cur.execute(f"SELECT name FROM {args.table} WHERE id = 2")
        expect("rows without a parameter", rows(cur), [("weir",)])

        state.step = STEP
        cur.execute(f"SELECT name FROM {args.table} WHERE id = ?", 2)
        if cur.description is None:
            raise Mismatch("no result set and no error: the answer was silently empty")
        expect("rows", rows(cur), [("weir",)])
        state.step = "close"
        conn.close()

    run(DRIVER, body)


if __name__ == "__main__":
    main()
