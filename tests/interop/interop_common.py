"""Shared command line and checks for the Python interop clients.

Every client runs the same three checks against a TDS server (Sluice in front
of an embedded engine), then prints a single line ``OK <driver>`` and exits 0.
On any failure it prints ``FAIL <driver>: ...`` to stderr and exits non-zero
(1: a result did not match, 2: driver/connection error, 64: bad arguments).
"""

import argparse
import re
import sys

GREETING = "héllo"  # (a) SELECT 1 AS one, N'héllo' AS greeting
P_INT, P_STR = 41, "wörld"  # (b) parameters; expected result: 42, 'wörld'

_TABLE_RE = re.compile(r"^[A-Za-z_#][\w#$]*(\.[A-Za-z_#][\w#$]*){0,2}$|^\[[^\]]+\](\.\[[^\]]+\]){0,2}$")


class Mismatch(Exception):
    pass


class _State:
    step = "connect"  # what the client was doing, for the FAIL line


state = _State()


def expect(what, got, want):
    if got != want:
        raise Mismatch(f"{what}: expected {want!r}, got {got!r}")


def parse_args(driver, tls_choices=("on", "off"), tls_help=""):
    p = argparse.ArgumentParser(description=f"Sluice interop check with {driver}")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1433)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--database", default="master")
    p.add_argument("--table", required=True, help="existing table (id INT, name NVARCHAR(50)); rows are deleted first")
    p.add_argument("--tls", choices=tls_choices, default="off", help=tls_help or None)
    p.add_argument("--timeout", type=int, default=15, help="login/connect timeout in seconds (default 15)")
    p.add_argument("--skip", action="append", choices=("a", "b", "c"), default=[],
                   help="skip a check (repeatable), e.g. for a known backend gap")
    args = p.parse_args()
    if not _TABLE_RE.match(args.table):
        p.exit(64, f"FAIL {driver}: --table {args.table!r} is not a plain table name\n")
    return args


def run(driver, body, skipped=()):
    """Run body(); translate the outcome into the OK/FAIL line and exit code."""
    try:
        body()
    except Mismatch as e:
        print(f"FAIL {driver}: mismatch during {state.step}: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # driver errors: connection refused, login failed, TLS...
        print(f"FAIL {driver}: error during {state.step}: {describe(e)}", file=sys.stderr)
        sys.exit(2)
    print(f"OK {driver}")
    if skipped:
        print(f"note: {driver}: skipped check(s) {', '.join(skipped)}", file=sys.stderr)


def describe(e):
    """'Type: message' for e and the exceptions it was raised from."""
    parts = []
    while e is not None and len(parts) < 5:
        parts.append(f"{type(e).__name__}: {e}".strip().rstrip(":"))
        e = e.__cause__ or e.__context__
    return " <- ".join(parts)


def rows(cur):
    return [tuple(r) for r in cur.fetchall()]


def dbapi_checks(conn, args, param_sql):
    """(a), (b), (c) for a DB-API 2 connection opened with autocommit off.

    The transaction is the driver's own (pytds: TDS Transaction Manager
    requests; ODBC: SQLEndTran), driven by conn.commit() / conn.rollback().
    """
    table = args.table
    cur = conn.cursor()
    if "a" not in args.skip:
        state.step = "(a) plain query"
        cur.execute("SELECT 1 AS one, N'héllo' AS greeting")
        expect("column names", [d[0] for d in cur.description], ["one", "greeting"])
        expect("rows", rows(cur), [(1, GREETING)])

    if "b" not in args.skip:
        state.step = "(b) parameterised query"
        cur.execute(param_sql, (P_INT, P_STR))
        expect("column names", [d[0] for d in cur.description], ["n", "s"])
        expect("rows", rows(cur), [(P_INT + 1, P_STR)])

    if "c" not in args.skip:
        transaction_checks(conn, cur, table)
    state.step = "close"
    conn.close()


def transaction_checks(conn, cur, table):
    state.step = "(c) committed transaction"
    cur.execute(f"DELETE FROM {table}")
    conn.commit()
    cur.execute(f"INSERT INTO {table} (id, name) VALUES (1, N'x')")
    cur.execute("SELECT @@TRANCOUNT")
    expect("@@TRANCOUNT after first INSERT", rows(cur), [(1,)])
    conn.commit()
    cur.execute(f"SELECT id, name FROM {table} ORDER BY id")
    expect("rows after COMMIT", rows(cur), [(1, "x")])

    state.step = "(c) rolled-back transaction"
    cur.execute(f"INSERT INTO {table} (id, name) VALUES (2, N'y')")
    cur.execute(f"SELECT id, name FROM {table} WHERE id = 2")
    expect("uncommitted row visible in its own transaction", rows(cur), [(2, "y")])
    conn.rollback()
    cur.execute(f"SELECT id, name FROM {table} ORDER BY id")
    expect("rows after ROLLBACK", rows(cur), [(1, "x")])
    conn.commit()
