#!/usr/bin/env python3
"""Where do pytds's requests run? Prints one line per step: `<step> <where>`.

  pytds_routing.py --host H --port P --user U --password PW

The primary and the replica behind Sluice each hold one row in
dbo.whereami(v) naming themselves; tests/routing.rs checks the lines.
"""

import argparse

import pytds


def whereami(cur, sql):
    cur.execute(sql)
    return cur.fetchone()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    args = p.parse_args()
    connect = dict(dsn=args.host, port=args.port, user=args.user, password=args.password,
                   login_timeout=10, timeout=30, disable_connect_retry=True)

    auto = pytds.connect(autocommit=True, **connect)
    with auto.cursor() as cur:
        print("read", whereami(cur, "SELECT v FROM dbo.whereami")[0])
        cur.execute("INSERT INTO dbo.items (name) VALUES (N'from pytds')")
        cur.execute("SET DATEFIRST 3")
        d, v = whereami(cur, "SELECT @@DATEFIRST AS d, v FROM dbo.whereami")
        print("datefirst", d, v)
        print("locking", whereami(cur, "SELECT v FROM dbo.whereami WITH (UPDLOCK)")[0])
    auto.close()

    # autocommit=False: pytds begins a transaction with a Transaction Manager request.
    tx = pytds.connect(autocommit=False, **connect)
    with tx.cursor() as cur:
        print("transaction", whereami(cur, "SELECT v FROM dbo.whereami")[0])
    tx.commit()
    tx.close()


if __name__ == "__main__":
    main()
