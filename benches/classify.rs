//! Classifier throughput: representative statements classified cold (no
//! cache: lexer scan + sqlparser + walk every time) and cached (hash lookup
//! and `Arc` clone), single-threaded.
//!
//! Run with `cargo bench --bench classify`. `ROUNDS=n` changes the number of
//! passes over the statement set (default 2,000); `VERBOSE=1` first prints
//! each statement's verdict and its cold classification time.

/// The allocator the `sluice` binary ships with (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::time::{Duration, Instant};

use sluice::classify::Classifier;

/// ORM-shaped reads and writes, T-SQL batches, and statements sqlparser
/// cannot parse (marked), so that both paths are measured.
const STATEMENTS: &[&str] = &[
    // EF Core
    "SELECT [t].[Id], [t].[Name], [t].[CustomerId], [t].[Total] FROM [Orders] AS [t] WHERE [t].[CustomerId] = @__id_0 ORDER BY [t].[Id] OFFSET @__p_0 ROWS FETCH NEXT @__p_1 ROWS ONLY", // unparsed
    "SELECT TOP(1) [b].[Id], [b].[Url] FROM [Blogs] AS [b] WHERE [b].[Url] LIKE N'%.net%'",
    "SELECT TOP 21 [c].[Id], [c].[Name] FROM [Customers] AS [c]",
    "SELECT [b].[Id], [b].[Url], [p].[Id], [p].[Title] FROM [Blogs] AS [b] LEFT JOIN [Posts] AS [p] ON [b].[Id] = [p].[BlogId] ORDER BY [b].[Id]",
    "SELECT COUNT(*) FROM [Orders] AS [o] WHERE EXISTS (SELECT 1 FROM [Lines] AS [l] WHERE [l].[OrderId] = [o].[Id] AND [l].[Qty] > 10)",
    "SET NOCOUNT ON; INSERT INTO [Blogs] ([Url]) OUTPUT INSERTED.[Id] VALUES (@p0);",
    "SET IMPLICIT_TRANSACTIONS OFF; SET NOCOUNT ON; UPDATE [Blogs] SET [Url] = @p0 OUTPUT 1 WHERE [Id] = @p1;",
    "SET NOCOUNT ON; DELETE FROM [Posts] OUTPUT 1 WHERE [Id] = @p0;",
    "exec sp_executesql N'SELECT [b].[Id], [b].[Url] FROM [Blogs] AS [b] WHERE [b].[Id] = @__id_0',N'@__id_0 int',@__id_0=1",
    "SELECT [o].[Id] FROM [Orders] AS [o] WHERE [o].[Id] IN (SELECT [i].[value] FROM OPENJSON(@__ids_0) WITH ([value] int '$') AS [i])",
    // Dapper
    "select Id, Name, Email from Users where Id = @Id",
    "insert into Users (Name, Email) values (@Name, @Email); select cast(scope_identity() as int)",
    "update Users set Name = @Name where Id = @Id",
    "select u.Id, u.Name, r.Name as Role from Users u inner join Roles r on r.Id = u.RoleId where u.Active = 1",
    // Django / SQLAlchemy / Hibernate
    "SELECT [app_book].[id], [app_book].[title] FROM [app_book] WHERE [app_book].[id] = %s ORDER BY [app_book].[id] ASC OFFSET 0 ROWS FETCH FIRST 21 ROWS ONLY", // unparsed
    "SELECT users.id AS users_id, users.name AS users_name FROM users WHERE users.name = ?",
    "INSERT INTO users (name) OUTPUT inserted.id VALUES (?)",
    "select o1_0.id,o1_0.customer_id,o1_0.total from orders o1_0 where o1_0.id=? order by 1 offset ? rows fetch first ? rows only",
    "select o1_0.id from orders o1_0 with (updlock, rowlock) where o1_0.id=?",
    // Analytics
    "WITH ranked AS (SELECT CustomerId, Total, ROW_NUMBER() OVER (PARTITION BY CustomerId ORDER BY Total DESC) AS rn FROM Orders) SELECT CustomerId, Total FROM ranked WHERE rn <= 3",
    "SELECT CustomerId, SUM(Total) OVER (PARTITION BY CustomerId ORDER BY OrderDate ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM Orders",
    "SELECT a, (SELECT b FROM u WHERE u.a = t.a FOR XML PATH('')) FROM t FOR XML PATH('row'), ROOT('rows')",
    "SELECT Id, Name FROM Products FOR JSON PATH, WITHOUT_ARRAY_WRAPPER",
    "SELECT STRING_AGG(Name, ',') WITHIN GROUP (ORDER BY Name) FROM Tags",
    "SELECT * FROM Sales PIVOT (SUM(Amount) FOR Quarter IN ([Q1], [Q2], [Q3], [Q4])) p",
    "SELECT * FROM Orders o WITH (NOLOCK) CROSS APPLY (SELECT TOP 1 * FROM Lines l WHERE l.OrderId = o.Id ORDER BY l.Id) x",
    // T-SQL batches
    "DECLARE @t TABLE (id int); INSERT INTO @t (id) SELECT id FROM Orders WHERE Total > 100; SELECT * FROM @t",
    "DECLARE @x int = 5 SET @x = @x + 1 SELECT @x AS x", // unparsed
    "IF EXISTS (SELECT 1 FROM Orders WHERE Id = @id) BEGIN SELECT * FROM Orders WHERE Id = @id END ELSE BEGIN SELECT NULL END",
    "BEGIN TRY SELECT 1/0 END TRY BEGIN CATCH SELECT ERROR_MESSAGE() END CATCH", // unparsed
    "SET NOCOUNT ON SELECT * FROM Orders", // unparsed
    "BEGIN TRAN; UPDATE Accounts SET Balance = Balance - @amt WHERE Id = @from; UPDATE Accounts SET Balance = Balance + @amt WHERE Id = @to; COMMIT",
    "BEGIN TRANSACTION",
    "COMMIT TRANSACTION",
    "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "SET ANSI_NULLS, QUOTED_IDENTIFIER ON",
    "SET DATEFORMAT dmy; SET LANGUAGE us_english",
    "USE [Shop]",
    "EXEC dbo.GetOrders @CustomerId = 42",
    "EXEC dbo.usp_ArchiveOrders @before = '2020-01-01'",
    "EXEC sp_getapplock @Resource = 'r', @LockMode = 'Exclusive', @LockOwner = 'Session'",
    "SELECT NEXT VALUE FOR dbo.OrderNumbers", // unparsed
    "SELECT a, b INTO #work FROM Orders WHERE Total > 100; SELECT * FROM #work",
    "CREATE TABLE #t (id int PRIMARY KEY, name nvarchar(100))",
    "MERGE INTO Stock AS t USING Incoming AS s ON t.Sku = s.Sku WHEN MATCHED THEN UPDATE SET t.Qty = t.Qty + s.Qty WHEN NOT MATCHED THEN INSERT (Sku, Qty) VALUES (s.Sku, s.Qty);",
    "WITH x AS (SELECT TOP 100 * FROM Queue ORDER BY Id) DELETE FROM x OUTPUT deleted.*",
    "TRUNCATE TABLE Staging",
    "DBCC CHECKDB WITH NO_INFOMSGS", // unparsed
    "BULK INSERT Staging FROM 'c:\\data.csv' WITH (FIELDTERMINATOR = ',')", // unparsed
    "DELETE TOP (1000) FROM AuditLog WHERE CreatedAt < @cutoff", // unparsed
    "SELECT SCOPE_IDENTITY(), @@ROWCOUNT",
    "SELECT * FROM #work WHERE id = @id",
];

fn rounds() -> usize {
    std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000)
}

fn report(label: &str, n: usize, elapsed: Duration) {
    let per_sec = n as f64 / elapsed.as_secs_f64();
    let micros = elapsed.as_secs_f64() * 1e6 / n as f64;
    println!("{label:<8} {n:>9} statements in {elapsed:>10.3?}: {per_sec:>12.0} statements/s ({micros:.2} µs each)");
}

fn main() {
    let read_only = ["dbo.GetOrders".to_string()];
    let rounds = rounds();
    let n = rounds * STATEMENTS.len();
    println!("{} statements x {rounds} rounds", STATEMENTS.len());
    if std::env::var_os("VERBOSE").is_some() {
        let c = Classifier::new(0, &read_only);
        for sql in STATEMENTS {
            let v = c.classify(sql);
            let eligible = if v.replica_eligible() {
                "replica"
            } else {
                "primary"
            };
            let start = Instant::now();
            for _ in 0..rounds / 4 {
                black_box(c.classify(black_box(sql)));
            }
            let micros = start.elapsed().as_secs_f64() * 1e6 / (rounds / 4).max(1) as f64;
            println!(
                "{micros:>6.2} µs {:<18} {eligible} {:<45} {sql}",
                v.class.as_str(),
                v.reason
            );
        }
    }

    // Cold: a cache of capacity 0 classifies every call from scratch.
    let cold = Classifier::new(0, &read_only);
    let start = Instant::now();
    for _ in 0..rounds {
        for sql in STATEMENTS {
            black_box(cold.classify(black_box(sql)));
        }
    }
    report("cold", n, start.elapsed());

    // Cold, per statement kind: the unparsed ones take the lexer-only path.
    let (mut parsed, mut unparsed) = (Duration::ZERO, Duration::ZERO);
    let (mut n_parsed, mut n_unparsed) = (0, 0);
    for sql in STATEMENTS {
        let fallback = cold
            .classify(sql)
            .flags
            .contains(sluice::classify::Flags::LEXER_FALLBACK);
        let start = Instant::now();
        for _ in 0..rounds / 4 {
            black_box(cold.classify(black_box(sql)));
        }
        if fallback {
            unparsed += start.elapsed();
            n_unparsed += rounds / 4;
        } else {
            parsed += start.elapsed();
            n_parsed += rounds / 4;
        }
    }
    report("parsed", n_parsed, parsed);
    report("lexer", n_unparsed, unparsed);

    // Cached: every statement hits after the first round.
    let cached = Classifier::new(1024, &read_only);
    for sql in STATEMENTS {
        cached.classify(sql);
    }
    let start = Instant::now();
    for _ in 0..rounds * 10 {
        for sql in STATEMENTS {
            black_box(cached.classify(black_box(sql)));
        }
    }
    report("cached", n * 10, start.elapsed());
}
