//! The tables a batch reads and writes and the volatile functions it uses
//! ([`TableAccess`], [`Classification::volatile`]), for the result cache.

use super::*;

/// (batch, read, written, complete)
type Case = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    bool,
);

#[track_caller]
fn check_cases(cases: &[Case]) {
    let mut failures = Vec::new();
    for &(sql, read, written, complete) in cases {
        let c = classify(sql);
        let expected = TableAccess {
            read: read.iter().map(|s| s.to_string()).collect(),
            written: written.iter().map(|s| s.to_string()).collect(),
            complete,
        };
        if c.tables != expected {
            failures.push(format!(
                "{sql}\n  expected {expected:?}\n  got      {:?}",
                c.tables
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn reads_from_joins_subqueries_ctes_apply_and_unions() {
    check_cases(&[
        ("SELECT a FROM dbo.Orders WHERE id = @id", &["orders"], &[], true),
        (
            "SELECT * FROM [Orders] AS [o] JOIN [dbo].[Lines] l ON l.OrderId = o.Id \
             LEFT OUTER JOIN Customers c ON c.Id = o.CustomerId",
            &["orders", "lines", "customers"],
            &[],
            true,
        ),
        ("SELECT * FROM a x, b AS y, c WHERE x.id = y.id", &["a", "b", "c"], &[], true),
        ("SELECT * FROM a JOIN b ON a.id = b.id, c", &["a", "b", "c"], &[], true),
        ("SELECT * FROM (a JOIN b ON a.id = b.id) JOIN c ON 1 = 1", &["a", "b", "c"], &[], true),
        (
            "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id) \
             AND x IN (SELECT y FROM v, w)",
            &["t", "u", "v", "w"],
            &[],
            true,
        ),
        ("SELECT (SELECT MAX(x) FROM u) AS m, a FROM t", &["u", "t"], &[], true),
        ("SELECT * FROM (SELECT a FROM t) d JOIN u ON u.a = d.a", &["t", "u"], &[], true),
        (
            "WITH recent AS (SELECT * FROM Orders WHERE d > @d), \
             best (c) AS (SELECT c FROM recent JOIN Customers cu ON 1 = 1) \
             SELECT * FROM best JOIN Lines ON 1 = 1",
            &["orders", "customers", "lines"],
            &[],
            true,
        ),
        (
            ";WITH tree AS (SELECT id FROM Nodes WHERE parent IS NULL UNION ALL \
             SELECT n.id FROM Nodes n JOIN tree ON n.parent = tree.id) SELECT * FROM tree",
            &["nodes"],
            &[],
            true,
        ),
        (
            "SELECT * FROM Orders o CROSS APPLY (SELECT TOP 1 * FROM Lines l WHERE l.OrderId = o.Id) x \
             OUTER APPLY (SELECT 1 AS y FROM Notes n) z",
            &["orders", "lines", "notes"],
            &[],
            true,
        ),
        (
            "SELECT a FROM t UNION ALL SELECT a FROM u EXCEPT SELECT a FROM v ORDER BY a",
            &["t", "u", "v"],
            &[],
            true,
        ),
        ("SELECT * FROM Sales PIVOT (SUM(Amount) FOR Quarter IN ([Q1], [Q2])) p", &["sales"], &[], true),
        ("SELECT a, b FROM t GROUP BY a, b ORDER BY a, b", &["t"], &[], true),
        ("SELECT * FROM t FOR XML PATH('r'), ROOT('rows')", &["t"], &[], true),
        ("SELECT * FROM t FOR SYSTEM_TIME AS OF @d, u", &["t", "u"], &[], true),
        ("SELECT * FROM Orders o WITH (NOLOCK) JOIN Lines (NOLOCK) ON 1 = 1", &["orders", "lines"], &[], true),
        ("SELECT * FROM t WITH (INDEX(ix1, ix2), FORCESEEK)", &["t"], &[], true),
        ("SELECT 1", &[], &[], true),
        ("", &[], &[], true),
    ]);
}

#[test]
fn writes_of_dml_through_aliases_and_ctes() {
    check_cases(&[
        (
            "INSERT INTO dbo.Archive (id) SELECT id FROM dbo.Orders WHERE d < @d",
            &["orders"],
            &["archive"],
            true,
        ),
        (
            "INSERT INTO Users (Name) VALUES (@n)",
            &[],
            &["users"],
            true,
        ),
        ("INSERT Users DEFAULT VALUES", &[], &["users"], true),
        (
            "INSERT INTO t WITH (TABLOCK) (a) SELECT a FROM u",
            &["u"],
            &["t"],
            true,
        ),
        (
            "UPDATE o SET o.Total = s.Total FROM dbo.Orders AS o JOIN Staging s ON s.Id = o.Id",
            &["orders", "staging"],
            &["orders"],
            true,
        ),
        ("UPDATE a SET x = 1 FROM t a", &["t"], &["t"], true),
        (
            "UPDATE t SET x = 1 FROM t JOIN u ON u.id = t.id",
            &["t", "u"],
            &["t"],
            true,
        ),
        (
            "UPDATE t SET x = u.y FROM u WHERE u.id = t.id",
            &["u"],
            &["t"],
            true,
        ),
        (
            "UPDATE Accounts SET Balance = Balance - @amt WHERE Id = @from",
            &[],
            &["accounts"],
            true,
        ),
        ("UPDATE TOP (10) q SET done = 1", &[], &["q"], true),
        (
            "UPDATE t SET a = (SELECT MAX(b) FROM u)",
            &["u"],
            &["t"],
            true,
        ),
        (
            "UPDATE d SET a = 1 FROM (SELECT a FROM t) d",
            &["t"],
            &["t"],
            true,
        ),
        ("UPDATE x SET a = 1 FROM @t x", &[], &[], true),
        (
            "DELETE l FROM Lines l JOIN Orders o ON o.Id = l.OrderId WHERE o.Closed = 1",
            &["lines", "orders"],
            &["lines"],
            true,
        ),
        ("DELETE FROM Posts WHERE Id = @p0", &[], &["posts"], true),
        ("DELETE Posts WHERE Id = @p0", &[], &["posts"], true),
        (
            "DELETE TOP (1000) FROM AuditLog WHERE CreatedAt < @cutoff",
            &[],
            &["auditlog"],
            true,
        ),
        (
            "DELETE FROM t WHERE a IN (SELECT a FROM u)",
            &["u"],
            &["t"],
            true,
        ),
        (
            "WITH x AS (SELECT TOP 100 * FROM Queue ORDER BY Id) DELETE FROM x OUTPUT deleted.*",
            &["queue"],
            &["queue"],
            true,
        ),
        (
            "WITH c AS (SELECT * FROM t) INSERT INTO u SELECT * FROM c",
            &["t"],
            &["u"],
            true,
        ),
        (
            "MERGE INTO Stock AS t USING Incoming AS s ON t.Sku = s.Sku \
             WHEN MATCHED THEN UPDATE SET t.Qty = s.Qty \
             WHEN NOT MATCHED THEN INSERT (Sku, Qty) VALUES (s.Sku, s.Qty);",
            &["incoming"],
            &["stock"],
            true,
        ),
        (
            "MERGE Stock USING (SELECT Sku FROM Incoming) s ON Stock.Sku = s.Sku \
             WHEN MATCHED THEN DELETE;",
            &["incoming"],
            &["stock"],
            true,
        ),
        (
            // A single-part target is resolved at the statement's end.
            "DELETE FROM Orders OUTPUT deleted.* INTO OrdersArchive (a, b) WHERE id = 1",
            &[],
            &["ordersarchive", "orders"],
            true,
        ),
        (
            "UPDATE t SET a = 1 OUTPUT inserted.id INTO @ids WHERE b = 2",
            &[],
            &["t"],
            true,
        ),
        (
            "BEGIN TRAN; UPDATE Accounts SET Balance = 0 WHERE Id = 1; \
             INSERT INTO Ledger SELECT * FROM Pending; COMMIT",
            &["pending"],
            &["accounts", "ledger"],
            true,
        ),
    ]);
}

#[test]
fn writes_of_select_into_truncate_bulk_and_ddl() {
    check_cases(&[
        ("SELECT a, b INTO dbo.Backup FROM Orders", &["orders"], &["backup"], true),
        ("SELECT a INTO #work FROM Orders; SELECT * FROM #work", &["orders"], &[], true),
        ("TRUNCATE TABLE dbo.Staging", &[], &["staging"], true),
        (
            "BULK INSERT dbo.Staging FROM 'c:\\data.csv' WITH (FIELDTERMINATOR = ',')",
            &[],
            &["staging"],
            true,
        ),
        ("INSERT BULK Staging (a int)", &[], &["staging"], true),
        ("CREATE TABLE dbo.Things (id int PRIMARY KEY)", &[], &["things"], true),
        ("CREATE TABLE #t (id int)", &[], &[], true),
        ("CREATE UNIQUE NONCLUSTERED INDEX ix ON dbo.Orders (CustomerId)", &[], &["orders"], true),
        ("CREATE STATISTICS s ON Orders (a)", &[], &["orders"], true),
        ("DROP TABLE IF EXISTS a, dbo.b", &[], &["a", "b"], true),
        ("DROP TABLE #t", &[], &[], true),
        ("DROP INDEX ix ON dbo.Orders", &[], &["orders"], true),
        ("DROP INDEX Orders.ix", &[], &["orders"], true),
        ("ALTER TABLE Orders ADD Note nvarchar(100)", &[], &["orders"], true),
        ("ALTER TABLE Orders DROP COLUMN Note", &[], &["orders"], true),
        ("ALTER INDEX ALL ON Orders REBUILD", &[], &["orders"], true),
        (
            "ALTER TABLE Orders SWITCH PARTITION 1 TO OrdersArchive PARTITION 1",
            &[],
            &["orders", "ordersarchive"],
            true,
        ),
        ("CREATE VIEW dbo.v AS SELECT * FROM t", &[], &["v"], true),
        ("CREATE OR ALTER PROCEDURE dbo.p AS EXEC dbo.q", &[], &["p"], true),
        (
            "CREATE TRIGGER trg ON dbo.Orders AFTER INSERT AS BEGIN INSERT INTO Audit SELECT * FROM inserted END",
            &[],
            &["orders"],
            true,
        ),
        ("DROP VIEW v1, v2", &[], &["v1", "v2"], true),
        ("CREATE TABLE a (id int) CREATE INDEX ix ON b (id)", &[], &["a", "b"], true),
        ("CREATE SCHEMA s", &[], &[], false),
        ("ALTER DATABASE Shop SET READ_COMMITTED_SNAPSHOT ON", &[], &[], false),
    ]);
}

#[test]
fn names_are_normalised_and_temp_objects_left_out() {
    check_cases(&[
        (
            "SELECT * FROM Shop.dbo.Orders JOIN Shop..Lines ON 1 = 1 JOIN [Shop].[sales].[Orders] ON 1 = 1",
            &["shop.orders", "shop.lines"],
            &[],
            true,
        ),
        (
            "SELECT * FROM [dbo].[Order Details] JOIN \"Sales\".\"Customers\" ON 1 = 1 JOIN [T] ON 1 = 1",
            &["order details", "customers", "t"],
            &[],
            true,
        ),
        ("SELECT * FROM dbo.T JOIN sales.t ON 1 = 1 JOIN T ON 1 = 1", &["t"], &[], true),
        (
            "DECLARE @t TABLE (id int); INSERT INTO @t (id) SELECT id FROM Orders; \
             SELECT * FROM @t t JOIN #work w ON 1 = 1 JOIN ##g g ON 1 = 1 JOIN tempdb..#x ON 1 = 1",
            &["orders"],
            &[],
            true,
        ),
        ("UPDATE #t SET a = 1; DELETE FROM @t", &[], &[], true),
        ("SELECT t.a, x.b FROM t JOIN u AS x ON x.id = t.id", &["t", "u"], &[], true),
    ]);
}

#[test]
fn what_may_touch_unlisted_tables_is_incomplete() {
    check_cases(&[
        ("SELECT dbo.fn(a) FROM t", &["t"], &[], false),
        (
            "SELECT * FROM t WHERE a = [dbo].[fn](1)",
            &["t"],
            &[],
            false,
        ),
        ("SELECT * FROM dbo.tvf(1) f", &[], &[], false),
        ("SELECT * FROM tvf(1)", &[], &[], false),
        (
            "SELECT * FROM t CROSS APPLY dbo.fn(t.id) x",
            &["t"],
            &[],
            false,
        ),
        (
            "SELECT * FROM OPENJSON(@j) WITH (id int '$.id')",
            &[],
            &[],
            true,
        ),
        ("SELECT value FROM STRING_SPLIT(@s, ',')", &[], &[], true),
        (
            "SELECT x.c.value('.', 'int') FROM t CROSS APPLY t.doc.nodes('/a') x(c)",
            &["t"],
            &[],
            true,
        ),
        ("SELECT * FROM OPENQUERY(srv, 'SELECT 1')", &[], &[], false),
        (
            "SELECT * FROM OPENROWSET(BULK 'x', SINGLE_CLOB) d",
            &[],
            &[],
            false,
        ),
        (
            "INSERT INTO OPENQUERY(srv, 'SELECT a FROM t') VALUES (1)",
            &[],
            &[],
            false,
        ),
        ("SELECT * FROM srv.db.dbo.t", &[], &[], false),
        ("UPDATE srv.db.dbo.t SET a = 1", &[], &[], false),
        ("SELECT * FROM sys.objects", &["objects"], &[], false),
        (
            "SELECT * FROM INFORMATION_SCHEMA.TABLES",
            &["tables"],
            &[],
            false,
        ),
        ("SELECT OBJECT_ID(N'dbo.t')", &[], &[], false),
        (
            "IF OBJECT_ID('tempdb..#t') IS NOT NULL DROP TABLE #t",
            &[],
            &[],
            true,
        ),
        ("EXEC dbo.GetOrders @CustomerId = 42", &[], &[], false),
        ("EXEC dbo.usp_Archive", &[], &[], false),
        ("usp_Archive 42", &[], &[], false),
        ("INSERT INTO t EXEC dbo.p", &[], &["t"], false),
        (
            "DECLARE @sql nvarchar(100) = N'SELECT 1'; EXEC (@sql)",
            &[],
            &[],
            false,
        ),
        ("EXEC sp_executesql @sql", &[], &[], false),
        ("EXEC @proc", &[], &[], false),
        ("EXEC ('SELECT 1') AT srv", &[], &[], false),
        ("USE Shop; SELECT * FROM t", &["t"], &[], false),
        ("USE Shop", &[], &[], true),
        ("SELECT * FROM t; USE Shop", &["t"], &[], true),
        ("DBCC CHECKDB WITH NO_INFOMSGS", &[], &[], false),
        ("GRANT SELECT ON t TO bob", &[], &[], false),
        (
            "DECLARE c CURSOR FOR SELECT * FROM t; OPEN c; FETCH NEXT FROM c",
            &["t"],
            &[],
            false,
        ),
        ("SELECT 1; FOO BAR", &[], &[], false),
        (
            "SELECT * FROM t WHERE a = 'unterminated",
            &["t"],
            &[],
            false,
        ),
        ("SELECT * FROM ::fn_trace_gettable('x', 1)", &[], &[], false),
    ]);
}

#[test]
fn literal_dynamic_sql_is_folded_in() {
    check_cases(&[
        ("EXEC('UPDATE Orders SET a = 1')", &[], &["orders"], true),
        (
            "exec sp_executesql N'SELECT [b].[Id] FROM [Blogs] AS [b] WHERE [b].[Id] = @id', N'@id int', @id = 1",
            &["blogs"],
            &[],
            true,
        ),
        (
            "SELECT * FROM a; EXEC('SELECT * FROM b JOIN dbo.fn() f ON 1 = 1')",
            &["a", "b"],
            &[],
            false,
        ),
        (
            "EXEC('EXEC(''INSERT INTO Deep SELECT * FROM Source'')')",
            &["source"],
            &["deep"],
            true,
        ),
        ("EXEC('EXEC dbo.p')", &[], &[], false),
    ]);
    let c = classify("EXEC('SELECT GETDATE()')");
    assert_eq!(c.volatile.as_deref(), Some("GETDATE"));
}

#[test]
fn unparsed_t_sql_still_yields_tables_from_the_scan() {
    let cases: &[Case] = &[
        (
            "SET NOCOUNT ON SELECT * FROM Orders",
            &["orders"],
            &[],
            true,
        ),
        (
            "SELECT [t].[Id] FROM [Orders] AS [t] WHERE [t].[CustomerId] = @__id_0 \
             ORDER BY [t].[Id] OFFSET @__p_0 ROWS FETCH NEXT @__p_1 ROWS ONLY",
            &["orders"],
            &[],
            true,
        ),
        (
            "BEGIN TRY UPDATE Orders SET a = 1 SELECT * FROM Lines END TRY \
             BEGIN CATCH SELECT ERROR_MESSAGE() END CATCH",
            &["lines"],
            &["orders"],
            true,
        ),
        (
            "DECLARE @x int = 5 SET @x = (SELECT COUNT(*) FROM Orders) SELECT @x",
            &["orders"],
            &[],
            true,
        ),
        (
            "IF EXISTS (SELECT 1 FROM Orders WHERE Id = @id) BEGIN UPDATE Orders SET a = 1 END \
             ELSE BEGIN INSERT INTO Orders (a) VALUES (1) END",
            &["orders"],
            &["orders"],
            true,
        ),
        (
            "SELECT a FROM t WHERE x = 1 DELETE FROM u WHERE y = 2",
            &["t"],
            &["u"],
            true,
        ),
    ];
    // sqlparser has no part in these: the reads do not parse, and a batch
    // with a write in it is never parsed.
    for &(sql, ..) in &cases[..4] {
        let c = classify(sql);
        let scan_alone = c.flags.contains(Flags::LEXER_FALLBACK) || c.class == Class::Write;
        assert!(scan_alone, "parses: {sql}");
    }
    check_cases(cases);
}

/// Every function in the list, called as the issue says it counts.
const VOLATILE_CALLS: &[&str] = &[
    "GETDATE",
    "GETUTCDATE",
    "SYSDATETIME",
    "SYSUTCDATETIME",
    "SYSDATETIMEOFFSET",
    "NEWID",
    "NEWSEQUENTIALID",
    "RAND",
    "CRYPT_GEN_RANDOM",
    "HOST_NAME",
    "HOST_ID",
    "APP_NAME",
    "SUSER_NAME",
    "SUSER_SNAME",
    "SUSER_SID",
    "SUSER_ID",
    "USER_NAME",
    "USER_ID",
    "ORIGINAL_LOGIN",
    "CONTEXT_INFO",
    "SESSION_CONTEXT",
    "CONNECTIONPROPERTY",
    "SESSIONPROPERTY",
    "CURRENT_REQUEST_ID",
    "CURRENT_TRANSACTION_ID",
    "MIN_ACTIVE_ROWVERSION",
    "IS_MEMBER",
    "IS_ROLEMEMBER",
    "IS_SRVROLEMEMBER",
    "HAS_PERMS_BY_NAME",
    "PERMISSIONS",
    "SCOPE_IDENTITY",
    "IDENT_CURRENT",
    "DB_NAME",
];

#[test]
fn every_volatile_function_is_reported() {
    let mut failures = Vec::new();
    let mut expect = |sql: String, name: &str| {
        let got = classify(&sql).volatile.clone();
        if got.as_deref() != Some(name) {
            failures.push(format!("{sql}: {got:?}"));
        }
    };
    for f in VOLATILE_CALLS {
        expect(format!("SELECT a, {f}() FROM t"), f);
        expect(
            format!("select a from t where b = {}(1)", f.to_lowercase()),
            f,
        );
    }
    for f in [
        "CURRENT_TIMESTAMP",
        "CURRENT_DATE",
        "CURRENT_USER",
        "SESSION_USER",
        "SYSTEM_USER",
        "USER",
    ] {
        expect(format!("SELECT a FROM t WHERE b = {f}"), f);
    }
    for v in [
        "@@ROWCOUNT",
        "@@SPID",
        "@@IDENTITY",
        "@@TRANCOUNT",
        "@@ERROR",
        "@@DBTS",
        "@@VERSION",
    ] {
        expect(format!("SELECT {v}"), v);
    }
    expect(
        "SELECT * FROM sys.dm_exec_sessions".into(),
        "SYS.DM_EXEC_SESSIONS",
    );
    expect(
        "SELECT * FROM [sys].[dm_exec_requests] r".into(),
        "SYS.DM_EXEC_REQUESTS",
    );
    expect(
        "SELECT * FROM sys.dm_exec_sql_text(@h)".into(),
        "SYS.DM_EXEC_SQL_TEXT",
    );
    expect(
        "SELECT sys.fn_varbintohexstr(a) FROM t".into(),
        "SYS.FN_VARBINTOHEXSTR",
    );
    expect(
        "SELECT * FROM master.sys.sysprocesses".into(),
        "MASTER.SYS.SYSPROCESSES",
    );
    expect(
        "SELECT * FROM t TABLESAMPLE (10 PERCENT)".into(),
        "TABLESAMPLE",
    );
    // The first one wins.
    expect("SELECT NEWID(), GETDATE(), @@SPID".into(), "NEWID");
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn names_that_only_look_like_volatile_functions_are_not() {
    for sql in [
        "SELECT created_getdate_col, user_name, host_name, [GETDATE], t.getdate, current_user_id FROM t",
        "SELECT t.newid, t.[rand] FROM t WHERE t.user_id = @user_id",
        "SELECT [USER], \"SYSTEM_USER\" FROM t",
        "SELECT 'GETDATE()' AS a FROM t -- NEWID()\n/* @@SPID */",
        "SELECT * FROM dbo.dm_exec_stuff JOIN sales.fn_totals ON 1 = 1",
        "CREATE USER bob WITHOUT LOGIN",
    ] {
        let c = classify(sql);
        assert_eq!(c.volatile, None, "{sql}");
    }
}

/// Random `SELECT ... FROM t1 JOIN t2 ...; UPDATE t3 ...` batches, with and
/// without `;`, aliases, brackets and schemas: the reported sets are the
/// generated ones.
#[test]
fn generated_batches_report_the_generated_tables() {
    const NAMES: &[&str] = &[
        "Orders",
        "Lines",
        "Customers",
        "Blogs",
        "Posts",
        "Stock",
        "Audit",
        "Users",
    ];
    let mut rng = XorShift::new(0x7AB1E5);
    let classifier = classifier();
    for _ in 0..400 {
        let pick = |rng: &mut XorShift| NAMES[rng.below(NAMES.len())];
        let spell = |rng: &mut XorShift, name: &str| match rng.below(4) {
            0 => name.to_string(),
            1 => format!("[{name}]"),
            2 => format!("dbo.{name}"),
            _ => format!("[sales].[{}]", name.to_uppercase()),
        };
        let (mut read, mut written) = (Vec::new(), Vec::new());
        let push = |list: &mut Vec<String>, name: &str| {
            let name = name.to_lowercase();
            if !list.contains(&name) {
                list.push(name);
            }
        };
        let mut sql = String::new();
        for s in 0..1 + rng.below(3) {
            let sep = if rng.below(2) == 0 { "; " } else { " " };
            if s > 0 {
                sql.push_str(sep);
            }
            let first = pick(&mut rng);
            push(&mut read, first);
            sql.push_str(&format!(
                "SELECT a0.x FROM {} AS a0",
                spell(&mut rng, first)
            ));
            for j in 1..1 + rng.below(3) {
                let t = pick(&mut rng);
                push(&mut read, t);
                let kind = ["JOIN", "LEFT JOIN", "INNER JOIN", "CROSS JOIN", ","][rng.below(5)];
                let on = if kind.starts_with("CROSS") || kind == "," {
                    String::new()
                } else {
                    format!(" ON a{j}.id = a0.id")
                };
                sql.push_str(&format!(" {kind} {} a{j}{on}", spell(&mut rng, t)));
            }
            if rng.below(2) == 0 {
                let t = pick(&mut rng);
                push(&mut read, t);
                sql.push_str(&format!(
                    " WHERE a0.id IN (SELECT id FROM {})",
                    spell(&mut rng, t)
                ));
            }
        }
        let target = pick(&mut rng);
        push(&mut written, target);
        if rng.below(2) == 0 {
            // Written through its alias, and read as a FROM item too.
            let source = pick(&mut rng);
            push(&mut read, target);
            push(&mut read, source);
            sql.push_str(&format!(
                "; UPDATE u SET u.x = s.x FROM {} u JOIN {} s ON s.id = u.id",
                spell(&mut rng, target),
                spell(&mut rng, source)
            ));
        } else {
            sql.push_str(&format!(" UPDATE {} SET x = 1", spell(&mut rng, target)));
        }
        let c = classifier.classify(&sql);
        let mut got_read = c.tables.read.clone();
        let mut got_written = c.tables.written.clone();
        got_read.sort();
        got_written.sort();
        read.sort();
        written.sort();
        assert_eq!(
            (got_read, got_written, c.tables.complete),
            (read, written, true),
            "{sql}"
        );
    }
}
