-- Sluice classification corpus: SQL that Entity Framework Core (SQL Server
-- provider, EF Core 6-9) generates, as captured from its logs.
--
-- Format (parsed by tests/classification.rs):
--   * Lines before the first "-- expect:" line are a header, like this one.
--   * An entry starts with a line "-- expect: replica" or "-- expect: primary".
--   * Optional "-- why: ..." lines may follow it immediately (reasoning).
--   * All following lines up to the next "-- expect:" line (or end of file)
--     are the SQL text of ONE batch, sent as-is (comments inside included);
--     leading and trailing blank lines are trimmed.
--   * replica: Classification::replica_eligible() must be true (a positive
--     read that nothing pins to the primary).
--     primary: it must be false (writes, write locks, session state that
--     lives on the primary, transaction control, anything unknown).
--   * Procedures declared read-only for the whole corpus are listed in
--     tests/corpus/read_only_procedures.txt.

-- expect: replica
SELECT [b].[BlogId], [b].[Rating], [b].[Url]
FROM [Blogs] AS [b]
WHERE [b].[BlogId] = @__id_0

-- expect: replica
SELECT TOP(1) [b].[BlogId], [b].[Rating], [b].[Url]
FROM [Blogs] AS [b]
WHERE [b].[Url] = @__url_0

-- expect: replica
-- why: SingleOrDefault() asks for two rows to detect duplicates.
SELECT TOP(2) [u].[Id], [u].[Email], [u].[UserName]
FROM [AspNetUsers] AS [u]
WHERE [u].[NormalizedEmail] = @__normalizedEmail_0

-- expect: replica
SELECT [p].[PostId], [p].[BlogId], [p].[Content], [p].[Title]
FROM [Posts] AS [p]
ORDER BY [p].[PostId]
OFFSET @__p_0 ROWS FETCH NEXT @__p_1 ROWS ONLY

-- expect: replica
SELECT [b].[BlogId], [b].[Rating], [b].[Url], [p].[PostId], [p].[BlogId], [p].[Content], [p].[Title]
FROM [Blogs] AS [b]
LEFT JOIN [Posts] AS [p] ON [b].[BlogId] = [p].[BlogId]
ORDER BY [b].[BlogId]

-- expect: replica
SELECT CASE
    WHEN EXISTS (
        SELECT 1
        FROM [Blogs] AS [b]
        WHERE [b].[Url] LIKE N'%dotnet%') THEN CAST(1 AS bit)
    ELSE CAST(0 AS bit)
END

-- expect: replica
SELECT COUNT(*)
FROM [Blogs] AS [b]
WHERE [b].[Rating] > 3

-- expect: replica
SELECT COUNT_BIG(*)
FROM [Orders] AS [o]
WHERE [o].[CreatedAt] >= @__since_0

-- expect: replica
-- why: EF Core 8 translates Contains() on a parameter collection with OPENJSON ... WITH.
SELECT [b].[BlogId], [b].[Name]
FROM [Blogs] AS [b]
WHERE [b].[Name] IN (
    SELECT [n].[value]
    FROM OPENJSON(@__names_0) WITH ([value] nvarchar(max) '$') AS [n]
)

-- expect: replica
SELECT [b].[BlogId], [b].[Name]
FROM [Blogs] AS [b]
WHERE EXISTS (
    SELECT 1
    FROM OPENJSON([b].[Tags]) AS [t]
    WHERE [t].[value] = @__tag_0)

-- expect: replica
-- why: AsSplitQuery(): the second query of the split.
SELECT [p].[PostId], [p].[BlogId], [p].[Content], [p].[Title], [b].[BlogId]
FROM [Blogs] AS [b]
INNER JOIN [Posts] AS [p] ON [b].[BlogId] = [p].[BlogId]
ORDER BY [b].[BlogId]

-- expect: replica
SELECT [p].[BlogId] AS [Key], COUNT(*) AS [Count], MAX([p].[Rating]) AS [MaxRating]
FROM [Posts] AS [p]
GROUP BY [p].[BlogId]
HAVING COUNT(*) > 5

-- expect: replica
SELECT [b].[Url], (
    SELECT COUNT(*)
    FROM [Posts] AS [p]
    WHERE [b].[BlogId] = [p].[BlogId]) AS [PostCount]
FROM [Blogs] AS [b]

-- expect: replica
SELECT [b].[BlogId], [b].[Url]
FROM [Blogs] AS [b]
WHERE CHARINDEX(N'ef', [b].[Url]) > 0 OR [b].[Url] LIKE N'%core%'

-- expect: replica
SELECT [a].[Id], [a].[Name], JSON_VALUE([a].[Contact], '$.Address.City') AS [City]
FROM [Authors] AS [a]
WHERE CAST(JSON_VALUE([a].[Contact], '$.Address.Postcode') AS nvarchar(max)) = N'W1 1AA'

-- expect: replica
-- why: TemporalAsOf(): FOR SYSTEM_TIME is a read of the history table.
SELECT [e].[EmployeeId], [e].[Name], [e].[PeriodEnd], [e].[PeriodStart]
FROM [Employees] FOR SYSTEM_TIME AS OF '2024-03-01T10:00:00.0000000' AS [e]
WHERE [e].[Name] = N'Pinky Pie'

-- expect: replica
SELECT [t].[BlogId], [t].[Url]
FROM (
    SELECT [b].[BlogId], [b].[Url], ROW_NUMBER() OVER(ORDER BY [b].[BlogId]) AS [row]
    FROM [Blogs] AS [b]
) AS [t]
WHERE @__p_0 < [t].[row] AND [t].[row] <= @__p_0 + @__p_1

-- expect: replica
-- why: FromSqlRaw() composed with LINQ.
SELECT [e].[BlogId], [e].[Url]
FROM (
    SELECT * FROM dbo.Blogs WHERE Rating > @p0
) AS [e]
WHERE [e].[Url] IS NOT NULL

-- expect: replica
SELECT OBJECT_ID(N'[__EFMigrationsHistory]');

-- expect: replica
SELECT [MigrationId], [ProductVersion]
FROM [__EFMigrationsHistory]
ORDER BY [MigrationId];

-- expect: replica
-- why: EnsureCreated()/HasTables() probe: IF/ELSE with only SELECTs.
IF EXISTS
    (SELECT *
     FROM [sys].[objects] o
     WHERE o.type = 'U'
     AND o.is_ms_shipped = 0
     AND NOT EXISTS (SELECT *
         FROM [sys].[extended_properties] AS ep
         WHERE ep.major_id = o.object_id
             AND ep.minor_id = 0
             AND ep.class = 1
             AND ep.name = N'microsoft_database_tools_support'
    )
)
SELECT 1 ELSE SELECT 0

-- expect: replica
SELECT [o].[Id], [o].[CustomerId], [o].[Total], [c].[Id], [c].[Name]
FROM [Orders] AS [o]
INNER JOIN [Customers] AS [c] ON [o].[CustomerId] = [c].[Id]
WHERE [o].[Status] IN (1, 2) AND [c].[Country] = @__country_0
ORDER BY [o].[CreatedAt] DESC

-- expect: replica
SELECT [s].[Id], [s].[Name], [s0].[Id], [s0].[Sku]
FROM [Stores] AS [s]
OUTER APPLY (
    SELECT TOP(3) [p].[Id], [p].[Sku]
    FROM [Products] AS [p]
    WHERE [s].[Id] = [p].[StoreId]
    ORDER BY [p].[Price] DESC
) AS [s0]
ORDER BY [s].[Id]

-- expect: replica
SELECT COALESCE(SUM([o].[Total]), 0.0)
FROM [Orders] AS [o]
WHERE [o].[CustomerId] = @__customerId_0

-- expect: replica
SELECT [b].[BlogId], [b].[Url]
FROM [Blogs] AS [b]
WHERE [b].[Url] IS NOT NULL AND LEN([b].[Url]) > 10 AND DATEPART(year, [b].[CreatedOn]) = 2024

-- expect: primary
-- why: SaveChanges() of one insert (EF Core 7+): OUTPUT returns the generated key.
SET IMPLICIT_TRANSACTIONS OFF;
SET NOCOUNT ON;
INSERT INTO [Blogs] ([Url])
OUTPUT INSERTED.[BlogId]
VALUES (@p0);

-- expect: primary
-- why: SaveChanges() when the table has triggers: INSERT plus scope_identity().
SET NOCOUNT ON;
INSERT INTO [Blogs] ([Url])
VALUES (@p0);
SELECT [BlogId]
FROM [Blogs]
WHERE @@ROWCOUNT = 1 AND [BlogId] = scope_identity();

-- expect: primary
-- why: MERGE-based batch insert.
SET IMPLICIT_TRANSACTIONS OFF;
SET NOCOUNT ON;
MERGE [Blogs] USING (
VALUES (@p0, 0),
(@p1, 1),
(@p2, 2),
(@p3, 3)) AS i ([Url], _Position) ON 1=0
WHEN NOT MATCHED THEN
INSERT ([Url])
VALUES (i.[Url])
OUTPUT INSERTED.[BlogId], i._Position;

-- expect: primary
-- why: Older EF Core batch insert: the table variable is read at the end, but the MERGE writes Blogs.
SET NOCOUNT ON;
DECLARE @inserted0 TABLE ([BlogId] int, [_Position] [int]);
MERGE [Blogs] USING (
VALUES (@p0, 0),
(@p1, 1)) AS i ([Url], _Position) ON 1=0
WHEN NOT MATCHED THEN
INSERT ([Url])
VALUES (i.[Url])
OUTPUT INSERTED.[BlogId], i._Position
INTO @inserted0;

SELECT [i].[BlogId] FROM @inserted0 i
ORDER BY [i].[_Position];

-- expect: primary
SET IMPLICIT_TRANSACTIONS OFF;
SET NOCOUNT ON;
UPDATE [Blogs] SET [Url] = @p0
OUTPUT 1
WHERE [BlogId] = @p1;

-- expect: primary
SET IMPLICIT_TRANSACTIONS OFF;
SET NOCOUNT ON;
DELETE FROM [Blogs]
OUTPUT 1
WHERE [BlogId] = @p0;

-- expect: primary
-- why: Optimistic concurrency with a rowversion token.
SET NOCOUNT ON;
UPDATE [Products] SET [Price] = @p0
OUTPUT INSERTED.[RowVersion]
WHERE [Id] = @p1 AND [RowVersion] = @p2;

-- expect: primary
-- why: ExecuteUpdate() (EF Core 7+).
UPDATE [b]
SET [b].[Rating] = [b].[Rating] + 1
FROM [Blogs] AS [b]
WHERE [b].[Url] LIKE N'%dotnet%'

-- expect: primary
-- why: ExecuteDelete() (EF Core 7+): DELETE with an alias and a second FROM.
DELETE FROM [b]
FROM [Blogs] AS [b]
WHERE [b].[Rating] < 3

-- expect: primary
DELETE TOP(@__p_0) FROM [l]
FROM [Logs] AS [l]
WHERE [l].[CreatedAt] < @__cutoff_1

-- expect: primary
-- why: HiLo key generation takes a value from a sequence (a write on the sequence).
SELECT NEXT VALUE FOR [EntityFrameworkHiLoSequence]

-- expect: primary
-- why: JSON column partial update (EF Core 8).
SET IMPLICIT_TRANSACTIONS OFF;
SET NOCOUNT ON;
UPDATE [Authors] SET [Contact] = JSON_MODIFY([Contact], 'strict $.Address.Postcode', JSON_VALUE(@p0, '$[0]'))
OUTPUT 1
WHERE [Id] = @p1;

-- expect: primary
-- why: Mixed SaveChanges() batch: insert, update and delete in one batch.
SET NOCOUNT ON;
INSERT INTO [Posts] ([BlogId], [Content], [Title])
OUTPUT INSERTED.[PostId]
VALUES (@p0, @p1, @p2);
UPDATE [Blogs] SET [Rating] = @p3
OUTPUT 1
WHERE [BlogId] = @p4;
DELETE FROM [Tags]
OUTPUT 1
WHERE [TagId] = @p5;

-- expect: primary
CREATE TABLE [__EFMigrationsHistory] (
    [MigrationId] nvarchar(150) NOT NULL,
    [ProductVersion] nvarchar(32) NOT NULL,
    CONSTRAINT [PK___EFMigrationsHistory] PRIMARY KEY ([MigrationId])
);

-- expect: primary
CREATE TABLE [Blogs] (
    [BlogId] int NOT NULL IDENTITY,
    [Url] nvarchar(max) NULL,
    [Rating] int NOT NULL,
    CONSTRAINT [PK_Blogs] PRIMARY KEY ([BlogId])
);

-- expect: primary
CREATE INDEX [IX_Posts_BlogId] ON [Posts] ([BlogId]);

-- expect: primary
INSERT INTO [__EFMigrationsHistory] ([MigrationId], [ProductVersion])
VALUES (N'20240301101500_InitialCreate', N'8.0.2');

-- expect: primary
-- why: EF Core 9 migration lock: a session-owned application lock.
DECLARE @result int;
EXEC @result = sp_getapplock @Resource = '__EFMigrationsLock', @LockOwner = 'Session', @LockMode = 'Exclusive';
SELECT @result

-- expect: primary
-- why: A migration's generated DROP of a default constraint uses dynamic SQL.
DECLARE @var0 sysname;
SELECT @var0 = [d].[name]
FROM [sys].[default_constraints] [d]
INNER JOIN [sys].[columns] [c] ON [d].[parent_column_id] = [c].[column_id] AND [d].[parent_object_id] = [c].[object_id]
WHERE ([d].[parent_object_id] = OBJECT_ID(N'[Blogs]') AND [c].[name] = N'Rating');
IF @var0 IS NOT NULL EXEC(N'ALTER TABLE [Blogs] DROP CONSTRAINT [' + @var0 + '];');
ALTER TABLE [Blogs] DROP COLUMN [Rating];

-- expect: primary
-- why: FromSqlRaw with a pessimistic lock hint inside the raw SQL.
SELECT [o].[Id], [o].[Status]
FROM (
    SELECT * FROM dbo.Orders WITH (UPDLOCK, ROWLOCK) WHERE Id = @p0
) AS [o]

-- expect: primary
-- why: ExecuteSqlRaw() calling a procedure that is not declared read-only.
EXEC dbo.RecalculateLoyaltyPoints @CustomerId = @p0

-- expect: replica
-- why: FromSql() calling a procedure the corpus declares read-only.
EXEC dbo.GetOrderSummary @CustomerId = @p0
