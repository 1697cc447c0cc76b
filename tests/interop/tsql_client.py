#!/usr/bin/env python3
"""Interop check with FreeTDS `tsql` (Debian freetds-bin), driven over stdin.

  tsql_client.py --host H --port P --user U --password PW --table T [--database master] [--tls off|on|login]

Settings come from a freetds.conf written to a temp dir (FREETDSCONF): tds version 7.4,
client charset UTF-8 and `encryption` = off (PRELOGIN NOT_SUP), require (ON) or, for
--tls login, request (OFF: if the server answers OFF, only LOGIN7 is encrypted).
FreeTDS verifies no certificate unless `ca file` is set.
tsql has no client-side parameters, so (b) uses sp_executesql in a batch, and (c)
uses T-SQL BEGIN TRAN / COMMIT / ROLLBACK, each statement in its own batch.
tsql exits 0 even when a batch fails, so server messages ("Msg ...") count as failures.
"""

import os
import shutil
import subprocess
import tempfile

from interop_common import GREETING, P_INT, P_STR, Mismatch, expect, parse_args, run, state

DRIVER = "tsql"
ENCRYPTION = {"off": "off", "on": "require", "login": "request"}


def main():
    args = parse_args(DRIVER, ("on", "off", "login"), "login = FreeTDS 'encryption = request' (login-only TLS)")
    t = args.table
    steps = [  # (label, batches, expected stdout lines: headers and tab-separated rows)
        ("(a) plain query", ["SELECT 1 AS one, N'héllo' AS greeting"], ["one\tgreeting", f"1\t{GREETING}"]),
        ("(b) parameterised query (sp_executesql)",
         [f"EXEC sp_executesql N'SELECT @p + 1 AS n, @s AS s', N'@p int, @s nvarchar(20)', @p = {P_INT}, @s = N'{P_STR}'"],
         ["n\ts", f"{P_INT + 1}\t{P_STR}"]),
        ("(c) committed transaction",
         [f"DELETE FROM {t}", "BEGIN TRAN", f"INSERT INTO {t} (id, name) VALUES (1, N'x')",
          "SELECT @@TRANCOUNT AS trancount", "COMMIT TRAN", f"SELECT id, name FROM {t} ORDER BY id"],
         ["trancount", "1", "id\tname", "1\tx"]),
        ("(c) rolled-back transaction",
         ["BEGIN TRAN", f"INSERT INTO {t} (id, name) VALUES (2, N'y')", f"SELECT id, name FROM {t} WHERE id = 2",
          "ROLLBACK TRAN", f"SELECT id, name FROM {t} ORDER BY id", "SELECT @@TRANCOUNT AS trancount"],
         ["id\tname", "2\ty", "id\tname", "1\tx", "trancount", "0"]),
    ]
    skip = {"a": [0], "b": [1], "c": [2, 3]}
    steps = [s for i, s in enumerate(steps) if not any(i in skip[k] for k in args.skip)]

    def body():
        tsql = shutil.which("tsql")
        if not tsql:
            raise RuntimeError("tsql not found (apt-get install freetds-bin)")
        with tempfile.TemporaryDirectory(prefix="sluice-freetds-") as tmp:
            conf = os.path.join(tmp, "freetds.conf")
            with open(conf, "w") as f:
                f.write(f"[global]\n\ttds version = 7.4\n\tencryption = {ENCRYPTION[args.tls]}\n"
                        "\tclient charset = UTF-8\n")
            env = dict(os.environ, FREETDSCONF=conf, LC_ALL="C.UTF-8")
            # One tsql session (one connection) for everything: the transaction spans batches.
            script = "".join(f"{b}\ngo\n" for _, batches, _ in steps for b in batches) + "exit\n"
            cmd = [tsql, "-H", args.host, "-p", str(args.port), "-U", args.user, "-P", args.password,
                   "-D", args.database, "-o", "q"]
            state.step = "tsql session"
            p = subprocess.run(cmd, input=script, capture_output=True, text=True, env=env,
                               timeout=args.timeout + 60)
        messages = [ln for ln in p.stderr.splitlines() if ln.strip()]
        if p.returncode != 0 or any(ln.startswith("Msg ") for ln in messages):
            raise RuntimeError(f"tsql exit {p.returncode}: " + " | ".join(messages[-6:]))
        got = p.stdout.splitlines()
        for label, _, want in steps:
            state.step = label
            expect("output lines", got[:len(want)], want)
            got = got[len(want):]
        if got:
            raise Mismatch(f"unexpected extra output: {got!r}")

    run(DRIVER, body, args.skip)


if __name__ == "__main__":
    main()
