//! Classification tests: one small example per rule, ORM-shaped statements,
//! no-panic inputs, and the cache.

use super::*;
use crate::testing::XorShift;

mod tables;

fn classifier() -> Classifier {
    Classifier::new(0, &["dbo.GetOrders".to_string(), "ReportSales".to_string()])
}

fn classify(sql: &str) -> Arc<Classification> {
    classifier().classify(sql)
}

#[track_caller]
fn assert_class(sql: &str, class: Class, eligible: bool) -> Arc<Classification> {
    let c = classify(sql);
    assert_eq!(
        (c.class, c.replica_eligible()),
        (class, eligible),
        "{sql}\n  => {c:?}"
    );
    c
}

#[track_caller]
fn replica(sql: &str) -> Arc<Classification> {
    assert_class(sql, Class::Read, true)
}

#[track_caller]
fn pinned_read(sql: &str, flag: Flags) -> Arc<Classification> {
    let c = assert_class(sql, Class::Read, false);
    assert!(c.flags.contains(flag), "{sql}: {c:?}");
    c
}

#[track_caller]
fn write(sql: &str) -> Arc<Classification> {
    assert_class(sql, Class::Write, false)
}

fn set_option(option: &str, statement: &str) -> SessionEffect {
    SessionEffect::SetOption {
        option: option.into(),
        statement: statement.into(),
    }
}

// ---- Reads ----

#[test]
fn plain_selects_are_replica_reads() {
    for sql in [
        "SELECT 1",
        "select a, b from dbo.t where c = @p0",
        "SELECT * FROM t WHERE name LIKE N'%UPDATE%' -- DELETE FROM t",
        "/* INSERT INTO x */ SELECT [Update], [Delete] FROM [Insert]",
        "SELECT a FROM t GROUP BY a HAVING COUNT(*) > 1 ORDER BY a DESC",
        "SELECT 1 AS x UNION ALL SELECT 2 EXCEPT SELECT 3",
        "(SELECT 1) UNION (SELECT 2)",
        "SELECT * FROM t CROSS APPLY (SELECT TOP 1 * FROM u WHERE u.id = t.id) x",
        "SELECT * FROM t PIVOT (SUM(v) FOR k IN ([a], [b])) p",
        "SELECT * FROM OPENJSON(@j) WITH (id int '$.id')",
        "SELECT IIF(a > 1, 1, 0), TRY_CONVERT(int, b), CAST(c AS nvarchar(max)) FROM t",
        "SELECT a AT TIME ZONE 'UTC' FROM t",
        "SELECT * FROM t WITH (NOLOCK)",
        "SELECT * FROM t (NOLOCK) WHERE a = 1",
        "SELECT * FROM t WITH (READUNCOMMITTED, READPAST, NOWAIT, ROWLOCK, PAGLOCK)",
        "SELECT * FROM t OPTION (RECOMPILE, MAXDOP 1)",
        "SELECT * FROM t1 INNER LOOP JOIN t2 ON t1.a = t2.a",
        "SELECT t.update, x.[delete] FROM t JOIN x ON 1 = 1",
        "SELECT output, value, next FROM t",
        "SELECT * FROM sys.tables; SELECT * FROM INFORMATION_SCHEMA.COLUMNS",
        "SELECT 1;;",
        "",
        "  -- nothing but a comment\n",
        "\u{feff}SELECT\u{a0}1",
    ] {
        replica(sql);
    }
}

#[test]
fn ef_core_statements() {
    let c = replica(
        "SELECT [t].[Id], [t].[Name] FROM [Orders] AS [t] WHERE [t].[CustomerId] = @__id_0 \
         ORDER BY [t].[Id] OFFSET @__p_0 ROWS FETCH NEXT @__p_1 ROWS ONLY",
    );
    // sqlparser rejects a parameter in FETCH NEXT: the scan decides.
    assert!(c.flags.contains(Flags::LEXER_FALLBACK));
    assert!(c.reason.starts_with("parse failed; lexer:"), "{}", c.reason);
    replica("SELECT TOP(1) [b].[Id], [b].[Url] FROM [Blogs] AS [b] WHERE [b].[Url] LIKE N'%.net%'");
    replica("SELECT TOP 21 [c].[Id] FROM [Customers] AS [c]");
    replica(
        "SELECT [b].[Id], [p].[Title] FROM [Blogs] AS [b] LEFT JOIN [Posts] AS [p] \
         ON [b].[Id] = [p].[BlogId] ORDER BY [b].[Id]",
    );
    replica(
        "SELECT COUNT(*) FROM [Orders] AS [o] WHERE EXISTS (SELECT 1 FROM [Lines] AS [l] \
         WHERE [l].[OrderId] = [o].[Id])",
    );
    replica(
        "exec sp_executesql N'SELECT [b].[Id] FROM [Blogs] AS [b] WHERE [b].[Id] = @__id_0',\
         N'@__id_0 int',@__id_0=1",
    );
    let c = write("SET NOCOUNT ON; INSERT INTO [Blogs] ([Url]) OUTPUT INSERTED.[Id] VALUES (@p0);");
    assert_eq!(c.effects, [set_option("NOCOUNT", "SET NOCOUNT ON")]);
    assert_eq!(c.reason, "INSERT (Blogs)");
    write(
        "SET IMPLICIT_TRANSACTIONS OFF; SET NOCOUNT ON; UPDATE [Blogs] SET [Url] = @p0 \
         OUTPUT 1 WHERE [Id] = @p1;",
    );
    write(
        "SET NOCOUNT ON; DECLARE @inserted0 TABLE ([Id] int, [_Position] [int]); \
         MERGE [Blogs] USING (VALUES (@p0, 0), (@p1, 1)) AS i ([Url], _Position) ON 1=0 \
         WHEN NOT MATCHED THEN INSERT ([Url]) VALUES (i.[Url]) \
         OUTPUT INSERTED.[Id], i._Position INTO @inserted0; \
         SELECT [i].[Id] FROM @inserted0 i ORDER BY [i].[_Position];",
    );
}

#[test]
fn orm_statements_from_other_stacks() {
    // Dapper
    replica("select Id, Name from Users where Id = @Id");
    let c = write("insert into Users (Name) values (@Name); select cast(scope_identity() as int)");
    assert!(c.flags.contains(Flags::SESSION_FUNCTION));
    // Django (mssql-django)
    replica(
        "SELECT [app_book].[id], [app_book].[title] FROM [app_book] WHERE [app_book].[id] = %s \
         ORDER BY [app_book].[id] ASC OFFSET 0 ROWS FETCH FIRST 21 ROWS ONLY",
    );
    // SQLAlchemy (pyodbc)
    replica(
        "SELECT users.id AS users_id, users.name AS users_name FROM users WHERE users.name = ?",
    );
    write("INSERT INTO users (name) OUTPUT inserted.id VALUES (?)");
    // Hibernate 6
    replica(
        "select o1_0.id,o1_0.name from orders o1_0 where o1_0.id=? order by 1 \
         offset ? rows fetch first ? rows only",
    );
    replica("SELECT this_.Id as Id1_0_ FROM Orders this_ WHERE this_.Id = @p0");
    pinned_read(
        "select o1_0.id from orders o1_0 with (updlock, rowlock) where o1_0.id=?",
        Flags::LOCKING_HINT,
    );
}

#[test]
fn ctes_window_functions_for_xml_and_json() {
    replica(
        "WITH cte AS (SELECT a, ROW_NUMBER() OVER (PARTITION BY b ORDER BY c) rn FROM t) \
         SELECT * FROM cte WHERE rn = 1",
    );
    replica("WITH a AS (SELECT 1 x), b AS (SELECT x FROM a) SELECT * FROM b UNION SELECT 2");
    replica("SELECT SUM(v) OVER (ORDER BY d ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM t");
    replica("SELECT STRING_AGG(a, ',') WITHIN GROUP (ORDER BY a) FROM t");
    replica("SELECT a, (SELECT b FROM u WHERE u.a = t.a FOR XML PATH('')) FROM t FOR XML PATH('row'), ROOT('rows')");
    replica("SELECT a FROM t FOR JSON PATH, WITHOUT_ARRAY_WRAPPER");
    replica("SELECT a FROM t FOR JSON AUTO");
}

#[test]
fn table_variables_locals_and_control_flow_are_reads() {
    replica("DECLARE @t TABLE (id int); INSERT INTO @t (id) SELECT id FROM x; SELECT * FROM @t");
    replica("DECLARE @t TABLE (id int) INSERT @t VALUES (1) UPDATE @t SET id = 2 DELETE FROM @t WHERE id = 3 SELECT * FROM @t");
    replica("DECLARE @t TABLE (id int); DELETE @t; DELETE TOP (1) FROM @t; UPDATE TOP (5) @t SET id = 1");
    replica("DECLARE @x int = 5; SET @x = 6; SET @x += 1; SELECT @x = a FROM t");
    replica("DECLARE @x int SET @x = (SELECT MAX(a) FROM t) SELECT @x");
    replica("PRINT 'hello'");
    replica("IF EXISTS (SELECT 1 FROM t) BEGIN SELECT 1 END ELSE BEGIN SELECT 2 END");
    replica(
        "IF @x = 1 SELECT 1 ELSE IF @x = 2 SELECT 2 ELSE SELECT CASE WHEN @x > 2 THEN 3 ELSE 4 END",
    );
    replica("DECLARE @i int = 0; WHILE @i < 10 BEGIN SET @i = @i + 1; IF @i = 5 BREAK; END");
    replica("BEGIN TRY SELECT 1 END TRY BEGIN CATCH SELECT ERROR_MESSAGE(); THROW; END CATCH");
    replica("RAISERROR('x', 16, 1)");
    replica("WAITFOR DELAY '00:00:01'");
    replica("retry: SELECT 1; GOTO retry");
    replica("SELECT 1 SELECT 2");
}

#[test]
fn table_variable_with_output_is_a_write() {
    write("DECLARE @t TABLE (id int); DELETE FROM @t OUTPUT deleted.id");
}

#[test]
fn table_variable_alias_targets_are_writes() {
    // The target is an alias; the scan does not resolve it: fail safe.
    write("DECLARE @t TABLE (id int); UPDATE x SET id = 1 FROM @t x");
}

// ---- Writes ----

#[test]
fn dml_is_a_write() {
    assert_eq!(
        write("INSERT INTO dbo.orders (a) VALUES (1)").reason,
        "INSERT (dbo.orders)"
    );
    write("INSERT t DEFAULT VALUES");
    write("INSERT INTO t SELECT * FROM u");
    write("UPDATE t SET a = 1 WHERE b = 2");
    write("UPDATE TOP (10) t SET a = 1");
    write("DELETE FROM t WHERE a = 1");
    write("DELETE t FROM t JOIN u ON t.a = u.a");
    write("DELETE TOP (10) FROM t");
    write("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a;");
    write("MERGE @t AS tgt USING s ON 1 = 0 WHEN NOT MATCHED THEN INSERT (a) VALUES (1);");
}

#[test]
fn writes_hidden_in_ctes_and_batches() {
    write("WITH x AS (SELECT * FROM t) DELETE FROM x");
    write("WITH x AS (SELECT TOP 10 * FROM t ORDER BY a) UPDATE x SET b = 1");
    write("SELECT 1; SELECT 2; UPDATE t SET a = 1; SELECT 3");
    write("SELECT * FROM t UPDATE t SET a = 1");
    write("IF @x = 1 BEGIN DELETE FROM t END");
    write("BEGIN TRY INSERT INTO t VALUES (1) END TRY BEGIN CATCH END CATCH");
    write("INSERT INTO t SELECT * FROM (DELETE FROM u OUTPUT deleted.* ) d");
    let c = write("WITH c AS (SELECT a FROM s) INSERT INTO t SELECT a FROM c");
    assert_eq!(c.reason, "INSERT (t)");
    replica("DECLARE @t TABLE (a int); WITH c AS (SELECT a FROM s) INSERT INTO @t SELECT a FROM c");
}

#[test]
fn select_into_creates_a_table() {
    let c = write("SELECT a INTO dbo.archive FROM t");
    assert_eq!(c.reason, "SELECT ... INTO dbo.archive");
    assert!(!c.flags.contains(Flags::CREATES_TEMP_TABLE));
    let c = write("SELECT a, b INTO #tmp FROM t WHERE c = 1");
    assert!(c
        .flags
        .contains(Flags::CREATES_TEMP_TABLE | Flags::USES_TEMP_TABLE));
    assert_eq!(c.temp_tables, ["#tmp"]);
    let c = write("SELECT * INTO ##shared FROM t");
    assert!(!c.flags.contains(Flags::CREATES_TEMP_TABLE));
    // INSERT INTO, MERGE INTO, FETCH INTO and OUTPUT INTO are not SELECT INTO.
    replica("DECLARE @t TABLE (a int); INSERT INTO @t SELECT a FROM t");
    pinned_read(
        "DECLARE c CURSOR FOR SELECT a FROM t; OPEN c; FETCH NEXT FROM c INTO @a; CLOSE c; DEALLOCATE c",
        Flags::CURSOR,
    );
}

#[test]
fn output_clause_is_a_write() {
    let c = write("UPDATE t SET a = 1 OUTPUT inserted.a WHERE b = 2");
    assert_eq!(c.class, Class::Write);
    write("DELETE FROM t OUTPUT deleted.* INTO @log");
}

#[test]
fn ddl_and_admin_are_writes() {
    for sql in [
        "TRUNCATE TABLE t",
        "CREATE TABLE t (id int)",
        "CREATE INDEX ix ON t (a)",
        "CREATE VIEW v AS SELECT 1 AS a",
        "CREATE PROCEDURE p AS BEGIN SET NOCOUNT ON; SELECT 1; END",
        "CREATE OR ALTER FUNCTION f() RETURNS int AS BEGIN RETURN 1 END",
        "ALTER TABLE t ADD c int",
        "ALTER DATABASE d SET READ_COMMITTED_SNAPSHOT ON",
        "DROP TABLE IF EXISTS t",
        "DROP INDEX ix ON t",
        "GRANT SELECT ON t TO u",
        "REVOKE SELECT ON t FROM u",
        "DENY INSERT, UPDATE ON t TO u",
        "DBCC CHECKDB",
        "DBCC FREEPROCCACHE",
        "BACKUP DATABASE x TO DISK = 'x'",
        "RESTORE DATABASE x FROM DISK = 'x'",
        "BULK INSERT t FROM 'f'",
        "INSERT BULK t (a int)",
        "WRITETEXT t.c @ptr 'x'",
        "UPDATETEXT t.c @ptr 0 NULL 'x'",
        "KILL 53",
        "SHUTDOWN WITH NOWAIT",
        "RECONFIGURE",
        "UPDATE STATISTICS t",
        "CHECKPOINT",
        "ENABLE TRIGGER tr ON t",
        "SEND ON CONVERSATION @h MESSAGE TYPE m (@body)",
        "RECEIVE TOP (1) * FROM q",
        "WAITFOR (RECEIVE TOP (1) * FROM q), TIMEOUT 1000",
        "BEGIN DIALOG CONVERSATION @h FROM SERVICE a TO SERVICE 'b'",
        "END CONVERSATION @h",
    ] {
        let c = classify(sql);
        assert_eq!(c.class, Class::Write, "{sql}: {c:?}");
    }
    let c = write("CREATE TABLE #t (id int)");
    assert!(c.flags.contains(Flags::CREATES_TEMP_TABLE));
    assert_eq!(c.temp_tables, ["#t"]);
    assert_eq!(write("UPDATE STATISTICS t").reason, "UPDATE STATISTICS");
}

#[test]
fn sequences_are_writes() {
    let c = write("SELECT NEXT VALUE FOR dbo.seq");
    assert!(c.flags.contains(Flags::SEQUENCE));
    assert_eq!(c.reason, "NEXT VALUE FOR dbo.seq");
    write("DECLARE @id int = NEXT VALUE FOR seq; SELECT @id");
}

// ---- Procedures and dynamic SQL ----

#[test]
fn exec_of_a_procedure_depends_on_the_read_only_list() {
    let c = write("EXEC dbo.usp_x @a = 1");
    assert_eq!(c.reason, "EXEC dbo.usp_x (not read-only)");
    assert_eq!(c.procedures, ["dbo.usp_x"]);
    assert!(c.flags.contains(Flags::PROCEDURE_CALL));
    let c = replica("EXEC dbo.GetOrders @id = 1");
    assert_eq!(c.reason, "EXEC dbo.GetOrders (read-only)");
    replica("EXECUTE [dbo].[GetOrders] 1, 'x'");
    replica("exec getorders");
    replica("EXEC sales.ReportSales @year = 2024");
    replica("EXEC @rc = ReportSales");
    replica("EXEC dbo.GetOrders @id = 1, @count = @n OUTPUT");
    write("EXEC sales.GetOrders");
    write("EXEC otherdb.dbo.GetOrders");
    write("EXEC @procname");
    write("INSERT INTO #t EXEC dbo.GetOrders");
    // The first statement of a batch may omit EXEC.
    let c = replica("dbo.GetOrders 1");
    assert_eq!(c.procedures, ["dbo.GetOrders"]);
    write("usp_cleanup 30");
    // Anywhere else an unknown leading word is not understood.
    assert_class("SELECT 1; dbo.GetOrders 1", Class::Unknown, false);
}

#[test]
fn dynamic_sql_is_classified_recursively() {
    let c = replica("EXEC('SELECT 1')");
    assert!(c.flags.contains(Flags::DYNAMIC_SQL));
    replica("EXEC ('SELECT * FROM ' + N't WHERE a = ''x''')");
    write("EXEC ('DELETE FROM ' + 't')");
    let c = write("EXEC (@sql)");
    assert!(c.flags.contains(Flags::DYNAMIC_SQL));
    replica("EXEC sp_executesql N'SELECT * FROM t WHERE id = @id', N'@id int', @id = 1");
    replica("EXEC sys.sp_executesql @stmt = N'SELECT 1'");
    write("EXEC sp_executesql N'UPDATE t SET a = @a', N'@a int', @a = 1");
    write("DECLARE @sql nvarchar(max) = N'SELECT 1'; EXEC sp_executesql @sql");
    pinned_read(
        "EXEC sp_executesql N'SELECT * FROM #t'",
        Flags::USES_TEMP_TABLE,
    );
    write("EXEC('EXEC(''EXEC(''''EXEC(''''''''SELECT 1'''''''')'''')'')')");
    write("EXEC ('SELECT 1') AT linked");
    // Options set inside dynamic SQL revert when it returns.
    let c = replica("EXEC sp_executesql N'SET NOCOUNT ON; SELECT 1'");
    assert!(c.effects.is_empty());
    let c = assert_class("EXEC('BEGIN TRAN')", Class::TransactionControl, false);
    assert_eq!(c.effects, [SessionEffect::BeginTransaction]);
}

// ---- Locking hints, session functions, temp tables ----

#[test]
fn locking_hints_keep_reads_on_the_primary() {
    for (sql, hint) in [
        (
            "SELECT * FROM t WITH (UPDLOCK, ROWLOCK) WHERE id = 1",
            "UPDLOCK",
        ),
        ("SELECT * FROM t WITH (XLOCK)", "XLOCK"),
        ("SELECT * FROM t WITH (HOLDLOCK)", "HOLDLOCK"),
        ("SELECT * FROM t HOLDLOCK", "HOLDLOCK"),
        ("SELECT * FROM t WITH (TABLOCKX)", "TABLOCKX"),
        ("SELECT * FROM t WITH (TABLOCK)", "TABLOCK"),
        ("SELECT * FROM t WITH (SERIALIZABLE)", "SERIALIZABLE"),
        ("SELECT * FROM t WITH (REPEATABLEREAD)", "REPEATABLEREAD"),
        ("SELECT * FROM t (UPDLOCK)", "UPDLOCK"),
        (
            "SELECT TOP (1) a FROM t WITH (READPAST, UPDLOCK, ROWLOCK)",
            "UPDLOCK",
        ),
        (
            "SELECT * FROM a WHERE id IN (SELECT id FROM b WITH (UPDLOCK))",
            "UPDLOCK",
        ),
    ] {
        let c = pinned_read(sql, Flags::LOCKING_HINT);
        assert!(
            c.reason.ends_with(&format!("locking hint {hint}")),
            "{sql}: {}",
            c.reason
        );
    }
    let c = pinned_read("SELECT * FROM t FOR UPDATE", Flags::LOCKING_HINT);
    assert_eq!(c.reason, "FOR UPDATE");
    pinned_read(
        "DECLARE c CURSOR FOR SELECT a FROM t FOR UPDATE OF a",
        Flags::LOCKING_HINT,
    );
    // Reads under a locking isolation level set in the same batch.
    let c = pinned_read(
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SELECT * FROM t",
        Flags::LOCKING_HINT,
    );
    assert_eq!(c.reason, "isolation level SERIALIZABLE");
    pinned_read(
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ SELECT 1",
        Flags::LOCKING_HINT,
    );
    replica("SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED; SELECT * FROM t");
    replica("SET TRANSACTION ISOLATION LEVEL SNAPSHOT; SELECT * FROM t");
}

#[test]
fn session_functions_are_flagged() {
    for sql in [
        "SELECT SCOPE_IDENTITY()",
        "SELECT CAST(SCOPE_IDENTITY() AS int)",
        "SELECT @@IDENTITY",
        "SELECT IDENT_CURRENT('dbo.t')",
        "SELECT @@SPID",
        "SELECT @@TRANCOUNT",
        "SELECT CONTEXT_INFO()",
        "SELECT SESSION_CONTEXT(N'tenant')",
        "SELECT XACT_STATE()",
        "SELECT * FROM sys.dm_exec_sessions WHERE session_id = @@spid",
    ] {
        pinned_read(sql, Flags::SESSION_FUNCTION);
    }
    replica("SELECT @@VERSION, scope_identity FROM t");
    // @@ROWCOUNT / @@ERROR first in a batch describe the previous batch.
    pinned_read("SELECT @@ROWCOUNT", Flags::SESSION_FUNCTION);
    pinned_read("IF @@ERROR <> 0 PRINT 'x'", Flags::SESSION_FUNCTION);
    replica("SELECT a FROM t; SELECT @@ROWCOUNT");
    pinned_read("WHILE @@FETCH_STATUS = 0 FETCH NEXT FROM c", Flags::CURSOR);
    let c = write("INSERT INTO t (a) VALUES (1); SELECT SCOPE_IDENTITY()");
    assert!(c.flags.contains(Flags::SESSION_FUNCTION));
}

#[test]
fn temp_tables_are_flagged_and_listed() {
    let c = pinned_read(
        "SELECT * FROM #Work w JOIN #work2 ON 1 = 1 WHERE w.a = 1",
        Flags::USES_TEMP_TABLE,
    );
    assert_eq!(c.temp_tables, ["#work", "#work2"]);
    assert_eq!(c.reason, "temp table #work");
    let c = pinned_read("SELECT * FROM ##global", Flags::USES_TEMP_TABLE);
    assert_eq!(c.temp_tables, ["##global"]);
    pinned_read("SELECT OBJECT_ID('tempdb..#t')", Flags::USES_TEMP_TABLE);
    let c = write("INSERT INTO #t VALUES (1)");
    assert!(c.flags.contains(Flags::USES_TEMP_TABLE));
    write("INSERT INTO ##g VALUES (1)");
    let c = write(
        "CREATE TABLE #t (a int); INSERT INTO #t SELECT a FROM x; SELECT * FROM #t; DROP TABLE #t",
    );
    assert_eq!(c.temp_tables, ["#t"]);
    assert!(c.flags.contains(Flags::CREATES_TEMP_TABLE));
    replica("SELECT a#b FROM t");
    // Quoted names of temp tables are temp tables.
    for sql in [
        "SELECT COUNT(*) FROM dbo.Orders\nSELECT * FROM [#Staging] ORDER BY Id",
        "SELECT * FROM \"#Staging\"",
        "SELECT * FROM [##RateCache] WHERE Currency = 'EUR'",
    ] {
        pinned_read(sql, Flags::USES_TEMP_TABLE);
    }
    let c = write("SELECT a INTO [#t] FROM x");
    assert!(c.flags.contains(Flags::CREATES_TEMP_TABLE));
    assert_eq!(c.temp_tables, ["#t"]);
    let c = write("CREATE TABLE [#t] (a int)");
    assert!(c.flags.contains(Flags::CREATES_TEMP_TABLE));
}

#[test]
fn linked_servers_and_session_handles_stay_on_the_primary() {
    for sql in [
        "SELECT c.Id FROM [LegacyErp].[erp].[dbo].[Customers] AS c WHERE c.Id = 42",
        "SELECT * FROM srv.db..t",
        "SELECT * FROM OPENQUERY(srv, 'SELECT 1')",
        "SELECT * FROM OPENDATASOURCE('SQLNCLI', 'Data Source=x').db.dbo.t",
    ] {
        assert_class(sql, Class::Unknown, false);
    }
    replica("SELECT t.a FROM db.dbo.t");
    // A four-part column reference (deprecated syntax) looks the same: fail safe.
    assert_class("SELECT db.dbo.t.a FROM db.dbo.t", Class::Unknown, false);
    pinned_read(
        "SELECT OrderId FROM OPENXML(@h, '/orders/order', 2) WITH (OrderId int '@id')",
        Flags::SESSION_FUNCTION,
    );
}

// ---- Transactions and session state ----

#[test]
fn transaction_control() {
    for (sql, effect) in [
        ("BEGIN TRAN", SessionEffect::BeginTransaction),
        ("BEGIN TRANSACTION", SessionEffect::BeginTransaction),
        (
            "begin transaction t1 with mark 'x'",
            SessionEffect::BeginTransaction,
        ),
        (
            "BEGIN DISTRIBUTED TRANSACTION",
            SessionEffect::BeginTransaction,
        ),
        ("COMMIT", SessionEffect::CommitTransaction),
        ("COMMIT TRAN", SessionEffect::CommitTransaction),
        ("COMMIT WORK", SessionEffect::CommitTransaction),
        ("COMMIT TRANSACTION t1", SessionEffect::CommitTransaction),
        ("ROLLBACK", SessionEffect::RollbackTransaction),
        ("ROLLBACK WORK", SessionEffect::RollbackTransaction),
        (
            "ROLLBACK TRANSACTION sp1",
            SessionEffect::RollbackTransaction,
        ),
        (
            "SET IMPLICIT_TRANSACTIONS ON",
            SessionEffect::ImplicitTransactions(true),
        ),
        (
            "SET IMPLICIT_TRANSACTIONS OFF",
            SessionEffect::ImplicitTransactions(false),
        ),
    ] {
        let c = assert_class(sql, Class::TransactionControl, false);
        assert_eq!(c.effects, [effect], "{sql}");
    }
    let c = assert_class("SAVE TRANSACTION sp1", Class::TransactionControl, false);
    assert!(c.effects.is_empty());
    // Transaction control plus reads.
    let c = assert_class(
        "BEGIN TRAN; SELECT * FROM t; COMMIT",
        Class::TransactionControl,
        false,
    );
    assert_eq!(
        c.effects,
        [
            SessionEffect::BeginTransaction,
            SessionEffect::CommitTransaction
        ]
    );
    // Plus a write: Write, effects still listed.
    let c = write("BEGIN TRAN; UPDATE t SET a = 1; COMMIT");
    assert_eq!(
        c.effects,
        [
            SessionEffect::BeginTransaction,
            SessionEffect::CommitTransaction
        ]
    );
    // Blocks are not transactions.
    let c = replica("BEGIN SELECT 1 END");
    assert!(c.effects.is_empty());
    let c = replica("BEGIN TRY SELECT 1 END TRY BEGIN CATCH SELECT 2 END CATCH");
    assert!(c.effects.is_empty());
}

#[test]
fn session_options_are_session_state_with_replayable_effects() {
    for (sql, option, statement) in [
        ("SET ANSI_NULLS ON", "ANSI_NULLS", "SET ANSI_NULLS ON"),
        (
            "set quoted_identifier off;",
            "QUOTED_IDENTIFIER",
            "set quoted_identifier off",
        ),
        ("SET ARITHABORT ON", "ARITHABORT", "SET ARITHABORT ON"),
        ("SET NOCOUNT ON", "NOCOUNT", "SET NOCOUNT ON"),
        ("SET DATEFORMAT dmy", "DATEFORMAT", "SET DATEFORMAT dmy"),
        ("SET DATEFIRST 1", "DATEFIRST", "SET DATEFIRST 1"),
        (
            "SET LANGUAGE us_english",
            "LANGUAGE",
            "SET LANGUAGE us_english",
        ),
        (
            "SET LANGUAGE N'British English'",
            "LANGUAGE",
            "SET LANGUAGE N'British English'",
        ),
        (
            "SET LOCK_TIMEOUT 5000",
            "LOCK_TIMEOUT",
            "SET LOCK_TIMEOUT 5000",
        ),
        (
            "SET TEXTSIZE 2147483647",
            "TEXTSIZE",
            "SET TEXTSIZE 2147483647",
        ),
        (
            "SET CONCAT_NULL_YIELDS_NULL ON",
            "CONCAT_NULL_YIELDS_NULL",
            "SET CONCAT_NULL_YIELDS_NULL ON",
        ),
        ("SET XACT_ABORT ON", "XACT_ABORT", "SET XACT_ABORT ON"),
        (
            "SET DEADLOCK_PRIORITY -5",
            "DEADLOCK_PRIORITY",
            "SET DEADLOCK_PRIORITY -5",
        ),
        (
            "SET DEADLOCK_PRIORITY LOW",
            "DEADLOCK_PRIORITY",
            "SET DEADLOCK_PRIORITY LOW",
        ),
        (
            "SET ANSI_WARNINGS ON",
            "ANSI_WARNINGS",
            "SET ANSI_WARNINGS ON",
        ),
        ("SET ANSI_PADDING ON", "ANSI_PADDING", "SET ANSI_PADDING ON"),
        (
            "SET NUMERIC_ROUNDABORT OFF",
            "NUMERIC_ROUNDABORT",
            "SET NUMERIC_ROUNDABORT OFF",
        ),
        ("SET ROWCOUNT 10", "ROWCOUNT", "SET ROWCOUNT 10"),
        (
            "SET STATISTICS IO ON",
            "STATISTICS IO",
            "SET STATISTICS IO ON",
        ),
    ] {
        let c = assert_class(sql, Class::SessionState, false);
        assert_eq!(c.effects, [set_option(option, statement)], "{sql}");
    }
    let c = assert_class(
        "SET ANSI_NULLS, QUOTED_IDENTIFIER ON",
        Class::SessionState,
        false,
    );
    assert_eq!(
        c.effects,
        [
            set_option("ANSI_NULLS", "SET ANSI_NULLS ON"),
            set_option("QUOTED_IDENTIFIER", "SET QUOTED_IDENTIFIER ON"),
        ]
    );
    assert_eq!(c.reason, "SET ANSI_NULLS, QUOTED_IDENTIFIER");
    let c = assert_class("SET STATISTICS IO, TIME ON", Class::SessionState, false);
    assert_eq!(c.effects.len(), 2);
    let c = assert_class("SET NOCOUNT ON", Class::SessionState, false);
    assert_eq!(c.reason, "SET NOCOUNT");
}

#[test]
fn isolation_level_and_use() {
    for level in [
        "READ UNCOMMITTED",
        "READ COMMITTED",
        "REPEATABLE READ",
        "SNAPSHOT",
        "SERIALIZABLE",
    ] {
        let c = assert_class(
            &format!("SET TRANSACTION ISOLATION LEVEL {}", level.to_lowercase()),
            Class::SessionState,
            false,
        );
        assert_eq!(c.effects, [SessionEffect::IsolationLevel(level.into())]);
    }
    let c = assert_class("USE [my db]", Class::SessionState, false);
    assert_eq!(c.effects, [SessionEffect::UseDatabase("my db".into())]);
    let c = assert_class("use Shop;", Class::SessionState, false);
    assert_eq!(c.effects, [SessionEffect::UseDatabase("Shop".into())]);
}

#[test]
fn reads_plus_options_are_reads_with_effects() {
    let c = replica("SET NOCOUNT ON; SELECT * FROM t");
    assert_eq!(c.effects, [set_option("NOCOUNT", "SET NOCOUNT ON")]);
    assert_eq!(c.reason, "SELECT");
    // No semicolons: sqlparser gives up, the scan still splits.
    let c = replica("SET NOCOUNT ON SET ARITHABORT ON SELECT 1");
    assert_eq!(
        c.effects,
        [
            set_option("NOCOUNT", "SET NOCOUNT ON"),
            set_option("ARITHABORT", "SET ARITHABORT ON"),
        ]
    );
    let c = replica("USE Shop; SET DATEFORMAT ymd; SELECT 1");
    assert_eq!(c.effects.len(), 2);
    // An UPDATE's SET is not an option.
    let c = write("UPDATE t SET a = 1 SET NOCOUNT ON");
    assert_eq!(c.effects, [set_option("NOCOUNT", "SET NOCOUNT ON")]);
    let c = write("MERGE t USING s ON 1 = 1 WHEN MATCHED THEN UPDATE SET a = 1;");
    assert!(c.effects.is_empty());
}

#[test]
fn session_pinning_facts() {
    let c = assert_class("SET IDENTITY_INSERT dbo.t ON", Class::SessionState, false);
    assert!(c.flags.contains(Flags::IDENTITY_INSERT));
    let c = assert_class("SET IDENTITY_INSERT dbo.t OFF", Class::SessionState, false);
    assert!(!c.flags.contains(Flags::IDENTITY_INSERT));
    let c = assert_class("SET CONTEXT_INFO 0x01", Class::SessionState, false);
    assert!(c.flags.contains(Flags::CONTEXT_INFO));
    let c = write("EXEC sp_set_session_context @key = N'tenant', @value = 42");
    assert!(c.flags.contains(Flags::CONTEXT_INFO));
    let c = write(
        "EXEC sp_getapplock @Resource = 'r', @LockMode = 'Exclusive', @LockOwner = 'Session'",
    );
    assert!(c.flags.contains(Flags::SESSION_LOCK));
    let c = write("EXEC sp_getapplock @Resource = 'r', @LockMode = 'Exclusive'");
    assert!(!c.flags.contains(Flags::SESSION_LOCK));
    for sql in [
        "DECLARE c CURSOR LOCAL FAST_FORWARD FOR SELECT a FROM t",
        "OPEN c",
        "FETCH NEXT FROM c INTO @a",
        "CLOSE c",
        "DEALLOCATE c",
        "DECLARE @c CURSOR; SET @c = CURSOR FOR SELECT 1",
    ] {
        pinned_read(sql, Flags::CURSOR);
    }
}

// ---- Pins: where they start and where they provably end ----

/// The pin effects of `sql`, in order: "+temp table #t", "-cursor c".
fn pins(sql: &str) -> Vec<String> {
    classify(sql)
        .effects
        .iter()
        .filter_map(|e| match e {
            SessionEffect::Pin(p) => Some(format!("+{p}")),
            SessionEffect::Unpin(p) => Some(format!("-{p}")),
            _ => None,
        })
        .collect()
}

#[track_caller]
fn assert_pins(sql: &str, expected: &[&str]) {
    assert_eq!(pins(sql), expected, "{sql}");
}

#[test]
fn temp_tables_pin_until_dropped() {
    assert_pins("CREATE TABLE #t (a INT)", &["+temp table #t"]);
    assert_pins("CREATE TABLE [#t] (a INT)", &["+temp table #t"]);
    assert_pins("SELECT a INTO #Work FROM x", &["+temp table #Work"]);
    assert_pins("CREATE TABLE ##g (a INT)", &[]);
    assert_pins("SELECT a INTO ##g FROM x", &[]);
    assert_pins("SELECT * FROM #t", &[]);
    assert_pins("DROP TABLE #t", &["-temp table #t"]);
    assert_pins("DROP TABLE IF EXISTS #t", &["-temp table #t"]);
    assert_pins(
        "DROP TABLE #a, [#b], tempdb..#c, dbo.x, ##g",
        &["-temp table #a", "-temp table #b", "-temp table #c"],
    );
    assert_pins(
        "CREATE TABLE #t (a INT); INSERT INTO #t VALUES (1); SELECT * FROM #t; DROP TABLE #t",
        &["+temp table #t", "-temp table #t"],
    );
    // A table created in a procedure's body is not created by the batch.
    assert_pins("CREATE PROCEDURE p AS CREATE TABLE #t (a INT)", &[]);
    assert_pins("ALTER TABLE #t DROP COLUMN a", &[]);
}

#[test]
fn ends_count_only_where_the_statement_surely_runs() {
    for sql in [
        "IF @x = 1 DROP TABLE #t",
        "IF @x = 1 SELECT 1 ELSE DROP TABLE #t",
        "WHILE @i < 3 BEGIN DROP TABLE #t; SET @i += 1 END",
        "BEGIN TRY DROP TABLE #t END TRY BEGIN CATCH SELECT 1 END CATCH",
        "RETURN; DROP TABLE #t",
        "IF OBJECT_ID('tempdb..#t') IS NOT NULL BEGIN DROP TABLE #t END",
        "IF OBJECT_ID('tempdb..#t') IS NOT NULL DROP TABLE #u",
        "IF @x = 1 EXEC('DROP TABLE #t')",
    ] {
        assert_pins(sql, &[]);
    }
    // Whichever way this IF goes, no #t is left.
    for sql in [
        "IF OBJECT_ID('tempdb..#t') IS NOT NULL DROP TABLE #t",
        "IF OBJECT_ID(N'tempdb..#t', N'U') IS NOT NULL DROP TABLE #t;",
        "IF OBJECT_ID('tempdb.dbo.#t') IS NOT NULL DROP TABLE #t",
    ] {
        assert_pins(sql, &["-temp table #t"]);
    }
    assert_pins(
        "IF OBJECT_ID('tempdb..#t') IS NOT NULL DROP TABLE #t; CREATE TABLE #t (a INT); IF @x = 1 DROP TABLE #t",
        &["-temp table #t", "+temp table #t"],
    );
    // Starts count wherever they are.
    assert_pins("IF @x = 1 CREATE TABLE #t (a INT)", &["+temp table #t"]);
}

#[test]
fn temp_procedures_pin_until_dropped() {
    assert_pins("CREATE PROCEDURE #p AS SELECT 1", &["+temp procedure #p"]);
    assert_pins(
        "CREATE OR ALTER PROC #p AS SELECT 1",
        &["+temp procedure #p"],
    );
    assert_pins("CREATE PROC ##p AS SELECT 1", &[]);
    assert_pins("CREATE PROC dbo.p AS SELECT 1", &[]);
    assert_pins("DROP PROCEDURE #p", &["-temp procedure #p"]);
    assert_pins(
        "DROP PROC IF EXISTS #p, #q",
        &["-temp procedure #p", "-temp procedure #q"],
    );
}

#[test]
fn global_cursors_pin_until_deallocated() {
    assert_pins("DECLARE c CURSOR FOR SELECT a FROM t", &["+cursor c"]);
    assert_pins(
        "DECLARE c CURSOR GLOBAL FAST_FORWARD FOR SELECT 1",
        &["+cursor c"],
    );
    assert_pins(
        "DECLARE c INSENSITIVE SCROLL CURSOR FOR SELECT 1",
        &["+cursor c"],
    );
    assert_pins(
        "DECLARE c CURSOR FOR SELECT a FROM t; OPEN c; FETCH NEXT FROM c INTO @a",
        &["+cursor c"],
    );
    assert_pins(
        "DECLARE c CURSOR FOR SELECT a FROM t; OPEN c; FETCH NEXT FROM c INTO @a; CLOSE c; DEALLOCATE c",
        &["+cursor c", "-cursor c"],
    );
    // Using a cursor this batch did not declare proves it exists.
    assert_pins("FETCH NEXT FROM c INTO @a", &["+cursor c"]);
    assert_pins("FETCH ABSOLUTE 3 FROM GLOBAL c", &["+cursor c"]);
    assert_pins("OPEN c", &["+cursor c"]);
    assert_pins("CLOSE c", &["+cursor c"]);
    assert_pins("DEALLOCATE c", &["-cursor c"]);
    assert_pins("DEALLOCATE GLOBAL c", &["-cursor c"]);
    // LOCAL cursors and cursor variables end with the batch.
    assert_pins(
        "DECLARE c CURSOR LOCAL FOR SELECT 1; OPEN c; FETCH NEXT FROM c; CLOSE c; DEALLOCATE c",
        &[],
    );
    assert_pins(
        "DECLARE @c CURSOR; SET @c = CURSOR FOR SELECT 1; OPEN @c; FETCH NEXT FROM @c; DEALLOCATE @c",
        &[],
    );
    let c = pinned_read("DECLARE c CURSOR LOCAL FOR SELECT 1", Flags::CURSOR);
    assert!(!c.starts_pin());
}

#[test]
fn session_app_locks_pin_until_released() {
    for sql in [
        "EXEC sp_getapplock @Resource = 'r', @LockMode = 'Exclusive', @LockOwner = 'Session'",
        "EXEC sp_getapplock 'r', 'Exclusive', 'session'",
        "EXEC @rc = dbo.sp_getapplock @LockOwner = N'Session', @Resource = N'r', @LockMode = 'Shared'",
        "EXEC sp_getapplock 'r', 'Exclusive', @LockOwner = 'Session', @LockTimeout = 0",
    ] {
        assert_pins(sql, &["+session app lock 'r'"]);
        assert!(classify(sql).flags.contains(Flags::SESSION_LOCK), "{sql}");
    }
    // The transaction's lock (the default owner) ends with the transaction.
    assert_pins("EXEC sp_getapplock 'r', 'Exclusive'", &[]);
    assert_pins(
        "EXEC sp_getapplock 'Session', 'Exclusive', 'Transaction'",
        &[],
    );
    // An owner or a resource Sluice cannot read.
    assert_pins(
        "EXEC sp_getapplock @Resource = 'r', @LockMode = 'Exclusive', @LockOwner = @owner",
        &["+session app lock 'r'"],
    );
    assert_pins(
        "EXEC sp_getapplock @Resource = @r, @LockMode = 'Exclusive', @LockOwner = 'Session'",
        &["+session app lock"],
    );
    assert_pins(
        "EXEC sp_releaseapplock @Resource = 'r', @LockOwner = 'Session'",
        &["-session app lock 'r'"],
    );
    assert_pins(
        "EXEC sp_releaseapplock 'r', 'Session'",
        &["-session app lock 'r'"],
    );
    assert_pins("EXEC sp_releaseapplock 'r'", &[]);
    assert_pins(
        "EXEC sp_releaseapplock @Resource = 'r', @LockOwner = @o",
        &[],
    );
}

#[test]
fn impersonation_pins_until_reverted() {
    for sql in [
        "EXECUTE AS USER = 'bob'",
        "EXEC AS LOGIN = 'bob'",
        "EXECUTE AS USER = 'bob' WITH COOKIE INTO @cookie",
        "EXECUTE AS CALLER",
    ] {
        assert_pins(sql, &["+EXECUTE AS"]);
        let c = assert_class(sql, Class::Unknown, false);
        assert!(
            c.reason.ends_with("EXECUTE AS (impersonation)"),
            "{sql}: {}",
            c.reason
        );
    }
    assert_pins(
        "EXECUTE AS USER = 'bob' WITH NO REVERT",
        &["+EXECUTE AS WITH NO REVERT"],
    );
    assert_pins("REVERT", &["-EXECUTE AS"]);
    assert_pins("REVERT WITH COOKIE = @cookie", &["-EXECUTE AS"]);
    assert_pins(
        "EXECUTE AS USER = 'bob'; SELECT 1; REVERT",
        &["+EXECUTE AS", "-EXECUTE AS"],
    );
    // Reads in the impersonated batch run on the primary, where the pin is.
    assert_class(
        "EXECUTE AS USER = 'bob'; SELECT * FROM t",
        Class::Unknown,
        false,
    );
    assert_class("REVERT", Class::Unknown, false);
    assert_class("SETUSER 'bob'", Class::Unknown, false);
    assert_pins("SETUSER 'bob'", &["+EXECUTE AS SETUSER"]);
    assert_pins("SETUSER", &["-EXECUTE AS SETUSER"]);
    // `WITH EXECUTE AS` in a module's header is not a statement.
    assert_pins("CREATE PROCEDURE p WITH EXECUTE AS OWNER AS SELECT 1", &[]);
}

#[test]
fn session_context_roles_keys_and_handles() {
    assert_pins("SET CONTEXT_INFO 0x01", &["+CONTEXT_INFO"]);
    assert_pins(
        "EXEC sp_set_session_context @key = N'tenant', @value = 42",
        &["+session context"],
    );
    assert_pins("EXEC sp_setapprole 'app', 'secret'", &["+application role"]);
    assert_pins("EXEC sys.sp_unsetapprole @cookie", &["-application role"]);
    assert_pins(
        "OPEN SYMMETRIC KEY k DECRYPTION BY CERTIFICATE c; SELECT DECRYPTBYKEY(v) FROM t; CLOSE SYMMETRIC KEY k",
        &["+open key symmetric key k", "-open key symmetric key k"],
    );
    assert_pins(
        "OPEN MASTER KEY DECRYPTION BY PASSWORD = 'x'",
        &["+open key master key"],
    );
    assert_pins("CLOSE ALL SYMMETRIC KEYS", &[]);
    assert_pins(
        "EXEC sp_xml_preparedocument @h OUTPUT, @xml",
        &["+XML document handle"],
    );
    assert_pins("EXEC sp_xml_removedocument @h", &["-XML document handle"]);
    assert_pins(
        "EXEC sp_cursorprepexec @p OUTPUT, @c OUTPUT, NULL, N'SELECT 1'",
        &["+API server cursor prepared", "+API server cursor"],
    );
    assert_pins("EXEC sp_cursorclose @c", &["-API server cursor"]);
    assert_pins(
        "SET IDENTITY_INSERT [dbo].[t] ON",
        &["+IDENTITY_INSERT dbo.t"],
    );
    assert_pins("SET IDENTITY_INSERT dbo.t OFF", &["-IDENTITY_INSERT dbo.t"]);
}

#[test]
fn dynamic_sql_keeps_what_outlasts_its_scope_in_statement_order() {
    assert_pins(
        "EXEC('CREATE TABLE #t (a INT); INSERT INTO #t VALUES (1)')",
        &[],
    );
    assert_pins("EXEC sp_executesql N'SELECT 1 AS a INTO #t'", &[]);
    assert_pins("EXEC('DROP TABLE #t')", &["-temp table #t"]);
    assert_pins("EXEC('CREATE TABLE #t (a INT); DROP TABLE #t')", &[]);
    assert_pins("EXEC('SET SHOWPLAN_XML ON; SET IDENTITY_INSERT t ON')", &[]);
    assert_pins("EXEC('DECLARE c CURSOR FOR SELECT 1')", &["+cursor c"]);
    assert_pins("EXEC('DECLARE c CURSOR LOCAL FOR SELECT 1')", &[]);
    assert_pins(
        "EXEC('EXEC sp_getapplock ''r'', ''Exclusive'', ''Session''')",
        &["+session app lock 'r'"],
    );
    assert_pins("EXEC('EXECUTE AS USER = ''u''; SELECT 1; REVERT')", &[]);
    assert_pins("EXEC('EXECUTE AS USER = ''u''')", &["+EXECUTE AS"]);
    assert_pins("EXECUTE AS USER = 'u'; EXEC('REVERT')", &["+EXECUTE AS"]);
    // Where the string runs among the batch's statements.
    assert_pins(
        "EXEC('DEALLOCATE c'); DECLARE c CURSOR FOR SELECT 1",
        &["-cursor c", "+cursor c"],
    );
    assert_pins(
        "DECLARE c CURSOR FOR SELECT 1; EXEC('DEALLOCATE c')",
        &["+cursor c", "-cursor c"],
    );
    assert_pins(
        "EXEC('EXEC(''EXEC(''''EXEC(''''''''SELECT 1'''''''')'''')'')')",
        &["+statement Sluice cannot follow: dynamic SQL nested too deeply"],
    );
}

#[test]
fn batches_sluice_cannot_read_pin() {
    assert_pins(
        "SELECT 1 --x\rEXECUTE AS USER = 'u'",
        &["+statement Sluice cannot follow: a line comment with a bare carriage return"],
    );
    // The server rejects these whole: nothing runs, nothing pins.
    for sql in [
        "SELECT 'unterminated",
        "SELECT (1",
        "SELECT 1; FOO BAR",
        "GO",
    ] {
        assert_pins(sql, &[]);
    }
}

#[test]
fn tracked_settings_are_the_issues_list_and_more() {
    for option in [
        "ANSI_NULLS",
        "ANSI_PADDING",
        "ANSI_WARNINGS",
        "ARITHABORT",
        "CONCAT_NULL_YIELDS_NULL",
        "CURSOR_CLOSE_ON_COMMIT",
        "DATEFIRST",
        "DATEFORMAT",
        "LANGUAGE",
        "LOCK_TIMEOUT",
        "NUMERIC_ROUNDABORT",
        "QUOTED_IDENTIFIER",
        "TEXTSIZE",
        "NOCOUNT",
        "XACT_ABORT",
        "TRANSACTION ISOLATION LEVEL",
        "IMPLICIT_TRANSACTIONS",
        "ROWCOUNT",
        "DEADLOCK_PRIORITY",
        "ANSI_NULL_DFLT_ON",
        "ANSI_NULL_DFLT_OFF",
        "statistics io",
        "STATISTICS TIME",
    ] {
        assert!(is_tracked_setting(option), "{option}");
    }
    for option in [
        "SHOWPLAN_XML",
        "SHOWPLAN_ALL",
        "SHOWPLAN_TEXT",
        "STATISTICS XML",
        "STATISTICS PROFILE",
        "NOEXEC",
        "PARSEONLY",
        "FMTONLY",
        "FIPS_FLAGGER",
        "OFFSETS",
        "IDENTITY_INSERT",
        "CONTEXT_INFO",
    ] {
        assert!(!is_tracked_setting(option), "{option}");
    }
}

#[test]
fn untracked_set_options_pin() {
    for (sql, pin) in [
        (
            "SET SHOWPLAN_XML ON",
            "+SET option Sluice does not track: SHOWPLAN_XML",
        ),
        (
            "SET STATISTICS XML ON",
            "+SET option Sluice does not track: STATISTICS XML",
        ),
        ("SET NOEXEC ON", "+SET option Sluice does not track: NOEXEC"),
        (
            "SET FMTONLY ON",
            "+SET option Sluice does not track: FMTONLY",
        ),
        (
            "SET ROWCOUNT @n",
            "+SET option Sluice does not track: ROWCOUNT",
        ),
        (
            "SET LANGUAGE @lang",
            "+SET option Sluice does not track: LANGUAGE",
        ),
        (
            "SET SHOWPLAN_XML OFF",
            "-SET option Sluice does not track: SHOWPLAN_XML",
        ),
    ] {
        assert_pins(sql, &[pin]);
        assert!(classify(sql)
            .effects
            .iter()
            .all(|e| !matches!(e, SessionEffect::SetOption { .. })));
    }
    // An unknown option's default is unknown: OFF pins too.
    assert_pins(
        "SET SOME_FUTURE_OPTION OFF",
        &["+SET option Sluice does not track: SOME_FUTURE_OPTION"],
    );
    let c = assert_class("SET NOCOUNT, SHOWPLAN_TEXT ON", Class::SessionState, false);
    assert_eq!(
        c.effects,
        [
            set_option("NOCOUNT", "SET NOCOUNT ON"),
            SessionEffect::Pin(Pin::named(PinReason::UntrackedSetting, "SHOWPLAN_TEXT")),
        ]
    );
    // A read in the same batch runs where the option is set.
    assert_class("SET SHOWPLAN_XML ON; SELECT 1", Class::Read, false);
    replica("SET NOCOUNT ON; SELECT 1");
}

/// Property: a SET of any option that is not tracked pins, whatever its
/// value; a tracked option set from a variable pins too.
#[test]
fn any_set_of_an_untracked_option_pins() {
    let mut rng = XorShift::new(0x5EED_0F5E7);
    let letters = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ_";
    let values = ["ON", "OFF", "1", "-5", "'x'", "N'y'", "LOW", "0x0A", "@v"];
    let special = [
        "TRANSACTION",
        "IDENTITY_INSERT",
        "CONTEXT_INFO",
        "STATISTICS",
    ];
    let mut checked = 0;
    while checked < 500 {
        let len = 1 + rng.below(20);
        let name: String = (0..len)
            .map(|_| letters[rng.below(letters.len())] as char)
            .collect();
        if name.starts_with('_')
            || is_tracked_setting(&name)
            || special.contains(&name.as_str())
            || effect::off_by_default(&name)
        {
            continue;
        }
        let value = values[rng.below(values.len())];
        let sql = format!("SET {name} {value}");
        let c = classify(&sql);
        let expected = SessionEffect::Pin(Pin::named(PinReason::UntrackedSetting, name.clone()));
        assert_eq!(c.effects, [expected], "{sql}: {c:?}");
        assert!(!c.replica_eligible());
        checked += 1;
    }
    for option in [
        "DATEFIRST",
        "LANGUAGE",
        "LOCK_TIMEOUT",
        "TEXTSIZE",
        "ROWCOUNT",
        "DATEFORMAT",
    ] {
        let sql = format!("SET {option} @value");
        assert_pins(
            &sql,
            &[&format!("+SET option Sluice does not track: {option}")],
        );
    }
}

// ---- Unknown and parse failures ----

#[test]
fn a_keyword_right_after_a_number_starts_a_statement() {
    // Found by the classify_read_property fuzz target: SQL Server ends a
    // number where its digits end, so these run a DELETE.
    for sql in [
        "SELECT 1DELETE FROM t",
        "SELECT 1.5DELETE FROM t",
        "SELECT 1e5DELETE FROM t",
        "SELECT 2EXEC dbo.DoWrite",
    ] {
        let c = classify(sql);
        assert!(!c.replica_eligible(), "{sql}: {c:?}");
        assert_ne!(c.class, Class::Read, "{sql}: {c:?}");
    }
    // A hex literal takes the hex digits: `0x1DE` then the name `LETE`.
    assert_eq!(classify("SELECT 0x1DELETE FROM t").class, Class::Read);
    assert_eq!(classify("SELECT 1.5e-3 AS x FROM t").class, Class::Read);
}

#[test]
fn not_understood_is_unknown() {
    for sql in [
        "GO",
        "SELECT 1; FOO BAR",
        "SELECT 'unterminated",
        "SELECT 1 /* unterminated",
        "EXECUTE AS USER = 'bob'",
        "REVERT",
        "SELECT * FROM OPENQUERY(srv, 'SELECT 1')",
        "SET",
        "SET NOCOUNT",
        ")",
        "42",
        // Found by the classify_read_property fuzz target: a write after an
        // unmatched `(` was dropped from the statement list.
        "SELECT (1; DELETE FROM t",
        "SELECT (1;EXEC sp_executesql N'DELETE FROM t'",
        "SELECT (1; EXEC dbo.DoWrite",
        // Also a fuzz finding: whether CR alone ends `--` is the server's
        // call, and either reading can hide a write.
        "SELECT 1 --x\rTRUNCATE TABLE t",
    ] {
        let c = classify(sql);
        assert_eq!(c.class, Class::Unknown, "{sql}: {c:?}");
        assert!(!c.replica_eligible());
    }
}

#[test]
fn reasons_are_short_and_specific() {
    assert_eq!(classify("SELECT 1").reason, "SELECT");
    assert_eq!(
        classify("DELETE FROM [dbo].[Orders]").reason,
        "DELETE (dbo.Orders)"
    );
    assert_eq!(classify("DELETE TOP (5) FROM t").reason, "DELETE (t)");
    assert_eq!(
        classify("MERGE INTO t USING s ON 1=1 WHEN MATCHED THEN DELETE;").reason,
        "MERGE (t)"
    );
    assert_eq!(classify("TRUNCATE TABLE t").reason, "TRUNCATE TABLE (t)");
    assert_eq!(
        classify("SELECT SCOPE_IDENTITY()").reason,
        "session function SCOPE_IDENTITY()"
    );
}

// ---- Robustness ----

#[test]
fn random_bytes_never_panic() {
    let c = Classifier::new(64, &["p".to_string()]);
    let mut rng = XorShift::new(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let sql = String::from_utf8_lossy(&bytes);
        let _ = c.classify(&sql);
    }
}

#[test]
fn random_token_soup_never_panics() {
    const WORDS: &[&str] = &[
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "MERGE",
        "INTO",
        "FROM",
        "WHERE",
        "SET",
        "EXEC",
        "BEGIN",
        "END",
        "CASE",
        "WHEN",
        "THEN",
        "ELSE",
        "IF",
        "WHILE",
        "TRAN",
        "COMMIT",
        "WITH",
        "AS",
        "TOP",
        "(",
        ")",
        "(",
        ")",
        ",",
        ";",
        ".",
        "..",
        "=",
        "+",
        "@x",
        "@@IDENTITY",
        "#t",
        "##g",
        "[a]]b]",
        "\"q\"",
        "'s''x'",
        "N'EXEC(''x'')'",
        "1",
        "0x1F",
        "--c\n",
        "/*c*/",
        "t",
        "dbo",
        "OUTPUT",
        "FOR",
        "UPDLOCK",
        "NEXT",
        "VALUE",
        "CURSOR",
        "OPEN",
        "FETCH",
        "ROWS",
        "sp_executesql",
        "DECLARE",
        "TABLE",
        "CREATE",
        "PROC",
        "USE",
        "ON",
        "OFF",
        "TRY",
        "CATCH",
        "UNION",
        "ALL",
        "'",
        "[",
        "/*",
        ":",
        "GO",
        "WAITFOR",
        "RECEIVE",
        "SAVE",
        "ROLLBACK",
    ];
    let c = Classifier::new(128, &["dbo.p".to_string()]);
    let mut rng = XorShift::new(42);
    for _ in 0..5000 {
        let n = rng.below(40);
        let sql: Vec<&str> = (0..n).map(|_| WORDS[rng.below(WORDS.len())]).collect();
        let sql = sql.join(" ");
        let r = c.classify(&sql);
        // Independent check: when no quote or comment is left open, a word
        // that always pins or writes keeps the batch off the replicas unless
        // it is a member name (after a dot).
        let open_run = sql.split(' ').any(|w| matches!(w, "'" | "[" | "/*"));
        if r.replica_eligible() && !open_run {
            let words: Vec<&str> = sql.split(' ').collect();
            for (k, w) in words.iter().enumerate() {
                let member = k > 0 && matches!(words[k - 1], "." | "..");
                assert!(
                    member
                        || !matches!(
                            *w,
                            "MERGE" | "CREATE" | "#t" | "##g" | "CURSOR" | "OPEN" | "COMMIT"
                        ),
                    "{sql}: {r:?}"
                );
            }
        }
    }
}

#[test]
fn deep_nesting_and_long_chains_never_overflow() {
    let c = Classifier::new(0, &[]);
    let cases = [
        format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000)),
        format!("SELECT {}", "(".repeat(10_000)),
        format!("SELECT 1{}", "+1".repeat(32_000)),
        format!("SELECT 1 {}", "UNION ALL SELECT 1 ".repeat(3_000)),
        format!("SELECT 1 WHERE {}1=1", "a=1 OR ".repeat(8_000)),
        format!(
            "SELECT {}1{}",
            "CASE WHEN 1=1 THEN ".repeat(3_000),
            " END".repeat(3_000)
        ),
        format!(
            "SELECT * FROM {}t{}",
            "(SELECT * FROM ".repeat(2_000),
            ") x".repeat(2_000)
        ),
        format!("SELECT {}1", "NOT ".repeat(20_000)),
        format!(
            "{}SELECT 1{}",
            "BEGIN ".repeat(10_000),
            " END".repeat(10_000)
        ),
        format!("EXEC('{}')", "EXEC(''".repeat(50)),
        "SELECT 1 ".repeat(20_000),
    ];
    for sql in &cases {
        let r = c.classify(sql);
        assert!(
            matches!(r.class, Class::Read | Class::Unknown | Class::Write),
            "{r:?}"
        );
    }
    // A union chain within the limit still parses.
    let r = c.classify(&format!("SELECT 1 {}", "UNION ALL SELECT 1 ".repeat(500)));
    assert!(!r.flags.contains(Flags::LEXER_FALLBACK));
}

#[test]
fn multibyte_text_is_handled() {
    replica("SELECT N'日本語', [列] FROM [表] WHERE [名前] = N'Grüße' -- коммент");
    write("UPDATE [表] SET [列] = N'é'");
}

// ---- Cache ----

#[test]
fn cache_hit_returns_the_same_arc() {
    let c = Classifier::new(16, &[]);
    let a = c.classify("SELECT 1");
    let b = c.classify("SELECT 1");
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(c.cached_statements(), 1);
    let other = c.classify("SELECT  1");
    assert!(!Arc::ptr_eq(&a, &other), "keyed by the exact text");
}

#[test]
fn cache_is_bounded() {
    let c = Classifier::new(10, &[]);
    for i in 0..500 {
        c.classify(&format!("SELECT {i}"));
    }
    assert_eq!(c.cached_statements(), 10);
    let uncached = Classifier::new(0, &[]);
    let a = uncached.classify("SELECT 1");
    let b = uncached.classify("SELECT 1");
    assert!(!Arc::ptr_eq(&a, &b));
    assert_eq!(uncached.cached_statements(), 0);
}

#[test]
fn long_statements_are_not_cached() {
    let c = Classifier::new(16, &[]);
    let long = format!(
        "SELECT 1 WHERE 'x' = '{}'",
        "x".repeat(MAX_CACHED_STATEMENT_LEN)
    );
    let a = c.classify(&long);
    assert_eq!(a.class, Class::Read);
    assert!(a.flags.contains(Flags::LEXER_FALLBACK));
    assert_eq!(c.cached_statements(), 0);
}

#[test]
fn flags_keep_their_bits() {
    let named = [
        (Flags::CREATES_TEMP_TABLE, 1 << 0),
        (Flags::USES_TEMP_TABLE, 1 << 1),
        (Flags::LOCKING_HINT, 1 << 2),
        (Flags::SESSION_FUNCTION, 1 << 3),
        (Flags::PROCEDURE_CALL, 1 << 4),
        (Flags::DYNAMIC_SQL, 1 << 5),
        (Flags::CURSOR, 1 << 6),
        (Flags::SESSION_LOCK, 1 << 7),
        (Flags::IDENTITY_INSERT, 1 << 8),
        (Flags::CONTEXT_INFO, 1 << 9),
        (Flags::SEQUENCE, 1 << 10),
        (Flags::LEXER_FALLBACK, 1 << 11),
    ];
    for (flag, bits) in named {
        assert_eq!(flag.bits(), bits);
    }
    assert_eq!(Flags::NONE.bits(), 0);
    // Everything but PROCEDURE_CALL, DYNAMIC_SQL and LEXER_FALLBACK.
    assert_eq!(Flags::NOT_FOR_REPLICA.bits(), 0x7CF);
    let f = Flags::NONE.with(Flags::CURSOR) | Flags::DYNAMIC_SQL;
    assert!(f.contains(Flags::CURSOR | Flags::DYNAMIC_SQL));
    assert!(f.intersects(Flags::NOT_FOR_REPLICA));
    assert!(!Flags::DYNAMIC_SQL.intersects(Flags::NOT_FOR_REPLICA));
}

/// Found by the `classify_read_property` fuzz target: `TOP` without
/// parentheses made the scan skip `DECLARE` and take `@id` for the
/// UPDATE's target, a table variable, so the batch was a read.
/// Batches the classifier must not call reads (fuzz findings among them).
fn assert_never_read(batches: &[&str]) {
    let classifier = Classifier::new(0, &[]);
    for sql in batches {
        let c = classifier.classify(sql);
        assert_ne!(c.class, Class::Read, "{sql}: {c:?}");
    }
}

#[test]
fn fetch_into_anything_but_variables_is_never_a_read() {
    let classifier = Classifier::new(0, &[]);
    assert_eq!(
        classifier
            .classify("FETCH NEXT FROM c INTO @id, @name")
            .class,
        Class::Read
    );
    assert_never_read(&[
        "FETCH NEXT FROM c INTO .id",
        "FETCH NEXT FROM c INTO dbo.t",
        // The fuzz input that showed it (`classify_read_property`).
        "FETCH NEXT FROM LOCTFASA L_FORWARD FOR\n    SELECT Id FROM dbo.Orders WHorder^bursor INTO.\0id;",
    ]);
}

#[test]
fn a_keyword_after_a_symbol_or_accent_outside_ascii_is_a_keyword() {
    let classifier = Classifier::new(0, &[]);
    for sql in [
        "SELECT caf\u{e9} FROM dbo.t",
        "SELECT \u{540d}\u{524d} FROM dbo.t",
    ] {
        assert_eq!(classifier.classify(sql).class, Class::Read, "{sql}");
    }
    assert_never_read(&[
        "SELECT 1 FROM t\u{5a4}DELETE FROM t",
        "SELECT 1 FROM t \u{2192}insert INTO t VALUES (1)",
        "SELECT 1 FROM t\u{301}UPDATE t SET a = 1",
        // The fuzz input that showed it (`classify_read_property`).
        "SELECT a FROM addresses WHERE addresses.userunts (UPDLOCK[delete], [merge] FROM\u{5a4}insert] WHERE  WHEhhh3)",
    ]);
}

#[test]
fn update_top_without_parentheses_is_never_a_read() {
    assert_never_read(&[
        "UPDATE TOP DECLARE @id int; SELECT 1",
        "UPDATE TOP 5 @t SET a = 1",
        "DELETE TOP DECLARE @t TABLE (a INT)",
        "UPDATE TOP DECLARE @id int;\nDECLARE c CURSOR LOCAL FAST_FORWARD FOR SELECT Id FROM dbo.Orders;\nOPEN c;",
    ]);
}
