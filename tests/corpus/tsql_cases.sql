-- Sluice classification corpus: T-SQL features one by one (the cases DESIGN.md
-- names, lexer traps, and syntax sqlparser's MsSqlDialect is known to miss).
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

-- expect: primary
-- why: SELECT INTO a permanent table creates and fills it.
SELECT Id, Total INTO dbo.OrdersArchive2023 FROM dbo.Orders WHERE YEAR(CreatedAt) = 2023

-- expect: primary
-- why: SELECT INTO a temp table creates session state on whichever server runs it: pin to the primary.
SELECT Id, Total INTO #big_orders FROM dbo.Orders WHERE Total > 1000

-- expect: primary
select * into backup_customers from customers

-- expect: primary
-- why: INTO appears after a long select list and a subquery.
SELECT c.Id, c.Name, (SELECT COUNT(*) FROM dbo.Orders o WHERE o.CustomerId = c.Id) AS OrderCount
INTO dbo.CustomerStats
FROM dbo.Customers c

-- expect: primary
DELETE FROM dbo.Sessions OUTPUT deleted.SessionId, deleted.UserId WHERE ExpiresAt < SYSUTCDATETIME()

-- expect: primary
-- why: OUTPUT INTO a table variable: the DELETE still writes dbo.Orders.
DECLARE @gone TABLE (Id int);
DELETE FROM dbo.Orders OUTPUT deleted.Id INTO @gone WHERE Status = 9;
SELECT COUNT(*) FROM @gone

-- expect: primary
-- why: Composable DML: the DELETE inside the derived table is a write.
INSERT INTO dbo.OrdersAudit (Id, Total)
SELECT d.Id, d.Total FROM (
    DELETE FROM dbo.Orders OUTPUT deleted.Id, deleted.Total WHERE Status = 9
) AS d

-- expect: primary
MERGE INTO dbo.Inventory AS tgt
USING dbo.StagingInventory AS src ON tgt.Sku = src.Sku
WHEN MATCHED AND src.Qty = 0 THEN DELETE
WHEN MATCHED THEN UPDATE SET tgt.Qty = src.Qty
WHEN NOT MATCHED BY TARGET THEN INSERT (Sku, Qty) VALUES (src.Sku, src.Qty)
WHEN NOT MATCHED BY SOURCE THEN DELETE
OUTPUT $action, inserted.Sku, deleted.Sku;

-- expect: primary
SELECT * FROM dbo.Accounts WITH (UPDLOCK) WHERE Id = 7

-- expect: primary
SELECT * FROM dbo.Accounts WITH (XLOCK, ROWLOCK) WHERE Id = 7

-- expect: primary
SELECT COUNT(*) FROM dbo.Accounts WITH (HOLDLOCK)

-- expect: primary
SELECT TOP 1 * FROM dbo.Batches WITH (TABLOCKX)

-- expect: primary
SELECT * FROM dbo.Accounts WITH (SERIALIZABLE) WHERE Region = 'EU'

-- expect: primary
SELECT * FROM dbo.Accounts WITH (REPEATABLEREAD) WHERE Id BETWEEN 1 AND 10

-- expect: primary
-- why: Hint casing varies; still an update lock.
SELECT * FROM dbo.Accounts WITH (UpdLock, RowLock) WHERE Id = 7

-- expect: primary
-- why: Table hints without WITH (old syntax) are still hints.
SELECT * FROM dbo.Accounts (UPDLOCK) WHERE Id = 7

-- expect: primary
-- why: The write lock is on the joined table, not the first one.
SELECT o.Id, i.Qty
FROM dbo.Orders o WITH (NOLOCK)
JOIN dbo.Inventory i WITH (UPDLOCK, ROWLOCK) ON i.Sku = o.Sku
WHERE o.Id = 42

-- expect: primary
SELECT * FROM dbo.Accounts WITH (TABLOCK, HOLDLOCK)

-- expect: primary
SELECT * FROM dbo.Accounts WITH (PAGLOCK, XLOCK)

-- expect: replica
SELECT * FROM dbo.Orders WITH (NOLOCK) WHERE CustomerId = 42

-- expect: replica
SELECT TOP (50) * FROM dbo.Queue WITH (READPAST) ORDER BY Id

-- expect: replica
SELECT * FROM dbo.Orders (NOLOCK) WHERE CustomerId = 42

-- expect: replica
SELECT o.Id FROM dbo.Orders AS o WITH (NOLOCK, INDEX(IX_Orders_CustomerId)) WHERE o.CustomerId = 42

-- expect: replica
SELECT * FROM dbo.Orders WITH (READUNCOMMITTED) WHERE Status = 1

-- expect: replica
SELECT * FROM dbo.Orders WITH (FORCESEEK) WHERE Id = 42

-- expect: primary
SELECT NEXT VALUE FOR dbo.OrderNumbers AS OrderNo

-- expect: primary
INSERT INTO dbo.Orders (OrderNo, CustomerId) VALUES (NEXT VALUE FOR dbo.OrderNumbers, 42)

-- expect: primary
-- why: SCOPE_IDENTITY() is bound to the session that inserted: only the primary connection knows it.
SELECT SCOPE_IDENTITY()

-- expect: primary
SELECT @@IDENTITY AS LastId

-- expect: primary
-- why: IDENT_CURRENT reads the current identity of a table, a value a lagging replica gets wrong right after an insert.
SELECT IDENT_CURRENT('dbo.Orders')

-- expect: primary
SELECT * FROM dbo.Orders WHERE Id = SCOPE_IDENTITY()

-- expect: replica
EXEC dbo.GetOrderSummary @CustomerId = 42

-- expect: replica
-- why: Bracket-quoted and differently cased name of a listed procedure.
EXECUTE [dbo].[getordersummary] 42

-- expect: replica
-- why: Capturing a read-only procedure's return code is still a read.
DECLARE @rc int;
EXEC @rc = dbo.GetOrderSummary @CustomerId = 42;
SELECT @rc AS rc

-- expect: replica
EXEC dbo.GetOrderSummary 42 WITH RECOMPILE

-- expect: replica
-- why: INSERT ... EXEC into a table variable, from a read-only procedure.
DECLARE @summary TABLE (CustomerId int, Orders int, Total money);
INSERT INTO @summary EXEC dbo.GetOrderSummary 42;
SELECT * FROM @summary

-- expect: primary
EXEC dbo.CloseAccount @AccountId = 7

-- expect: primary
-- why: An unlisted procedure may write; INSERT ... EXEC into a table variable does not make it a read.
DECLARE @r TABLE (Id int);
INSERT INTO @r EXEC dbo.ProcessPayments;
SELECT * FROM @r

-- expect: primary
-- why: The first statement of a batch may call a procedure without EXEC.
dbo.ArchiveOldOrders 90

-- expect: primary
-- why: System procedure, not declared read-only.
EXEC sp_rename 'dbo.Orders.Total', 'GrandTotal', 'COLUMN'

-- expect: primary
-- why: A read-only procedure followed by a write in the same batch.
EXEC dbo.GetOrderSummary 42;
UPDATE dbo.Customers SET LastViewedAt = GETUTCDATE() WHERE Id = 42

-- expect: primary
-- why: Procedure call through a variable name: unknown procedure.
DECLARE @proc sysname = N'dbo.GetOrderSummary';
EXEC @proc 42

-- expect: primary
CREATE TABLE dbo.Widgets (Id int IDENTITY PRIMARY KEY, Name nvarchar(100) NOT NULL)

-- expect: primary
ALTER TABLE dbo.Widgets ADD Color varchar(20) NULL

-- expect: primary
DROP TABLE IF EXISTS dbo.Widgets

-- expect: primary
CREATE UNIQUE NONCLUSTERED INDEX IX_Widgets_Name ON dbo.Widgets (Name) INCLUDE (Color) WITH (ONLINE = ON)

-- expect: primary
DROP INDEX IX_Widgets_Name ON dbo.Widgets

-- expect: primary
ALTER INDEX ALL ON dbo.Orders REBUILD WITH (FILLFACTOR = 90)

-- expect: primary
-- why: A view's body is a SELECT, but creating it is DDL.
CREATE VIEW dbo.ActiveCustomers AS SELECT Id, Name FROM dbo.Customers WHERE IsActive = 1

-- expect: primary
CREATE OR ALTER PROCEDURE dbo.GetWidgets
AS
BEGIN
    SET NOCOUNT ON;
    SELECT Id, Name FROM dbo.Widgets;
END

-- expect: primary
CREATE FUNCTION dbo.OrdersOf (@CustomerId int)
RETURNS TABLE
AS
RETURN (SELECT Id, Total FROM dbo.Orders WHERE CustomerId = @CustomerId)

-- expect: primary
DROP PROCEDURE dbo.GetWidgets

-- expect: primary
CREATE TYPE dbo.IdList AS TABLE (Id int PRIMARY KEY)

-- expect: primary
CREATE SCHEMA reporting AUTHORIZATION dbo

-- expect: primary
GRANT SELECT ON SCHEMA::reporting TO ReportReader

-- expect: primary
UPDATE STATISTICS dbo.Orders WITH FULLSCAN

-- expect: primary
CREATE TRIGGER dbo.trg_Orders_Audit ON dbo.Orders AFTER UPDATE AS
BEGIN
    INSERT INTO dbo.OrdersAudit (Id, Total) SELECT Id, Total FROM inserted;
END

-- expect: primary
DBCC CHECKDB (N'Sales') WITH NO_INFOMSGS

-- expect: primary
DBCC CHECKIDENT ('dbo.Orders', RESEED, 1000)

-- expect: primary
-- why: DESIGN.md sends every DBCC to the primary (some are reads, many are not; no list is kept).
DBCC SHOW_STATISTICS ('dbo.Orders', IX_Orders_CustomerId)

-- expect: primary
DBCC FREEPROCCACHE

-- expect: primary
BACKUP DATABASE [Sales] TO DISK = N'D:\Backups\Sales.bak' WITH COMPRESSION, INIT

-- expect: primary
BACKUP LOG [Sales] TO URL = N'https://backups.example/sales/log.trn'

-- expect: primary
BULK INSERT dbo.Orders FROM 'C:\data\orders.csv' WITH (FIELDTERMINATOR = ',', ROWTERMINATOR = '\n', FIRSTROW = 2)

-- expect: primary
-- why: The statement SqlBulkCopy / tiberius send before a bulk load.
insert bulk dbo.Orders ([Id] Int, [CustomerId] Int, [Note] NVarChar(200) COLLATE SQL_Latin1_General_CP1_CI_AS)

-- expect: primary
INSERT INTO dbo.Orders (Id, Total)
SELECT Id, Total FROM OPENROWSET(BULK 'C:\data\orders.dat', FORMATFILE = 'C:\data\orders.fmt') AS f

-- expect: primary
TRUNCATE TABLE dbo.EventLog

-- expect: primary
CHECKPOINT

-- expect: primary
WITH d AS (SELECT TOP (1000) * FROM dbo.EventLog ORDER BY LoggedAt) DELETE FROM d

-- expect: primary
;WITH dupes AS (
    SELECT Id, ROW_NUMBER() OVER (PARTITION BY Email ORDER BY Id) AS rn
    FROM dbo.Customers
)
DELETE FROM dupes WHERE rn > 1

-- expect: primary
WITH c AS (SELECT Id, Status FROM dbo.Orders WHERE Status = 1)
UPDATE c SET Status = 2

-- expect: primary
WITH src AS (SELECT Sku, SUM(Qty) AS Qty FROM dbo.Receipts GROUP BY Sku)
INSERT INTO dbo.StockLevels (Sku, Qty) SELECT Sku, Qty FROM src

-- expect: primary
WITH src AS (SELECT Sku, Qty FROM dbo.StagingInventory)
MERGE dbo.Inventory AS t USING src ON t.Sku = src.Sku
WHEN MATCHED THEN UPDATE SET t.Qty = src.Qty;

-- expect: primary
-- why: Several CTEs, only the outer statement writes.
WITH a AS (SELECT Id FROM dbo.Customers WHERE Country = 'SE'),
     b AS (SELECT o.Id FROM dbo.Orders o JOIN a ON a.Id = o.CustomerId)
UPDATE dbo.Orders SET VatRate = 25 WHERE Id IN (SELECT Id FROM b)

-- expect: primary
EXEC('DELETE FROM dbo.EventLog WHERE LoggedAt < ''2020-01-01''')

-- expect: primary
EXEC sp_executesql N'UPDATE dbo.Orders SET Status = @s WHERE Id = @id', N'@s int, @id int', @s = 2, @id = 42

-- expect: primary
-- why: The text of EXEC(@sql) is unknown.
DECLARE @sql nvarchar(max) = N'SELECT 1';
EXEC(@sql)

-- expect: primary
EXECUTE sp_executesql @stmt, N'@id int', @id = 42

-- expect: primary
-- why: Dynamic SQL built by concatenation.
EXEC ('TRUNCATE TABLE ' + @tableName)

-- expect: primary
-- why: Remote execution on a linked server: unknown effect.
EXEC ('SELECT 1') AT [ReportingServer]

-- expect: replica
-- why: The dynamic text is a literal SELECT: a classifier that looks inside sp_executesql can prove it is a read.
EXEC sp_executesql N'SELECT Id, Name FROM dbo.Customers WHERE Id = @id', N'@id int', @id = 42

-- expect: replica
-- why: Table variables live in the serving connection's tempdb, which a replica has: writes to @t only are still a read.
DECLARE @t TABLE (Id int PRIMARY KEY, Total money);
INSERT INTO @t (Id, Total) SELECT Id, Total FROM dbo.Orders WHERE CustomerId = 42;
SELECT t.Id, t.Total FROM @t AS t ORDER BY t.Total DESC

-- expect: replica
DECLARE @ids TABLE (Id int);
INSERT @ids VALUES (1), (2), (3);
UPDATE @ids SET Id = Id * 10 WHERE Id > 1;
DELETE FROM @ids WHERE Id = 1;
SELECT c.Name FROM dbo.Customers c JOIN @ids i ON i.Id = c.Id

-- expect: primary
-- why: The alias o names dbo.Orders, not the table variable joined to it.
DECLARE @ids TABLE (Id int);
INSERT INTO @ids VALUES (1), (2);
UPDATE o SET o.Status = 3 FROM dbo.Orders AS o JOIN @ids AS i ON i.Id = o.Id

-- expect: primary
CREATE TABLE #work (Id int PRIMARY KEY, Amount money)

-- expect: primary
-- why: Reads of a temp table follow the temp table, which lives on the primary connection.
SELECT Id, Amount FROM #work ORDER BY Amount DESC

-- expect: primary
-- why: A bracket-quoted temp table name is still a temp table.
SELECT * FROM [#work]

-- expect: primary
-- why: A global temp table lives in the primary's tempdb only; a replica has no such table.
SELECT * FROM ##ExchangeRates WHERE Currency = 'EUR'

-- expect: primary
-- why: Newline-separated statements (often parsed by the fallback lexer): the bracketed temp table still counts.
SELECT COUNT(*) FROM dbo.Orders
SELECT * FROM [#Staging] ORDER BY Id

-- expect: primary
-- why: A double-quoted temp table name is a temp table too.
SELECT COUNT(*) FROM dbo.Orders
SELECT * FROM "#Staging"

-- expect: primary
SELECT COUNT(*) FROM dbo.Orders
SELECT * FROM [##RateCache] WHERE Currency = 'EUR'

-- expect: primary
IF OBJECT_ID('tempdb..#work') IS NOT NULL DROP TABLE #work

-- expect: primary
BEGIN TRAN

-- expect: primary
BEGIN TRANSACTION;
UPDATE dbo.Accounts SET Balance = Balance - 100 WHERE Id = 1;
UPDATE dbo.Accounts SET Balance = Balance + 100 WHERE Id = 2;
COMMIT TRANSACTION;

-- expect: primary
-- why: A read inside an explicit transaction: transactions run on the primary.
BEGIN TRAN; SELECT * FROM dbo.Orders WHERE Id = 1; COMMIT

-- expect: primary
COMMIT

-- expect: primary
ROLLBACK TRANSACTION

-- expect: primary
SAVE TRANSACTION before_fees

-- expect: primary
BEGIN DISTRIBUTED TRANSACTION

-- expect: primary
SET TRANSACTION ISOLATION LEVEL SERIALIZABLE

-- expect: primary
-- why: A read under SERIALIZABLE takes range locks meant for the primary's data.
SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;
SELECT * FROM dbo.Accounts WHERE Id = 7

-- expect: primary
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; SELECT Balance FROM dbo.Accounts WHERE Id = 7

-- expect: replica
SET NOCOUNT ON; SELECT Id, Name FROM dbo.Customers WHERE Id = 42

-- expect: replica
-- why: Session options replayed by the session; the batch itself only reads.
SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
SET ARITHABORT ON;
SELECT Id FROM dbo.Orders WHERE Total / NULLIF(Qty, 0) > 10

-- expect: replica
SET DATEFORMAT dmy; SELECT * FROM dbo.Orders WHERE CreatedAt > '31/12/2023'

-- expect: replica
SET LOCK_TIMEOUT 5000; SELECT TOP 10 * FROM dbo.Orders

-- expect: primary
USE Warehouse

-- expect: replica
-- why: USE is session state the session records and replays on whichever connection serves it (DESIGN.md,
-- why: "Sessions"); the batch itself only reads. (USE alone, above, is session state only: not a read.)
USE [Warehouse]; SELECT * FROM dbo.Bins

-- expect: primary
DECLARE @id int;
DECLARE order_cursor CURSOR LOCAL FAST_FORWARD FOR
    SELECT Id FROM dbo.Orders WHERE Status = 1;
OPEN order_cursor;
FETCH NEXT FROM order_cursor INTO @id;

-- expect: primary
-- why: Fetches from a cursor that was opened on the primary connection.
FETCH NEXT FROM order_cursor

-- expect: primary
CLOSE order_cursor; DEALLOCATE order_cursor

-- expect: primary
DECLARE @c CURSOR;
SET @c = CURSOR FORWARD_ONLY STATIC FOR SELECT Id FROM dbo.Customers;
OPEN @c;

-- expect: primary
EXEC sp_getapplock @Resource = 'nightly-billing', @LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = 0

-- expect: primary
EXEC sp_releaseapplock @Resource = 'nightly-billing', @LockOwner = 'Session'

-- expect: primary
SET IDENTITY_INSERT dbo.Orders ON;
INSERT INTO dbo.Orders (Id, CustomerId, Total) VALUES (1000001, 42, 9.99);
SET IDENTITY_INSERT dbo.Orders OFF;

-- expect: primary
-- why: IDENTITY_INSERT ON alone leaves the session in a state only the primary connection has.
SET IDENTITY_INSERT dbo.Orders ON

-- expect: primary
SET CONTEXT_INFO 0x01020304

-- expect: primary
-- why: Row-level security by session context: the value lives on the connection that set it.
EXEC sp_set_session_context @key = N'TenantId', @value = 42;
SELECT * FROM dbo.Invoices

-- expect: replica
-- why: A judgement call. WAITFOR DELAY writes nothing, takes no lock and touches no session state, so a replica
-- why: serves it as well as the primary (and keeps a sleeping request off the primary's pool). WAITFOR around
-- why: RECEIVE is a different statement (next entry), and any write in the same batch makes it primary anyway.
WAITFOR DELAY '00:00:01'

-- expect: primary
-- why: RECEIVE dequeues (deletes) messages.
WAITFOR (RECEIVE TOP (1) conversation_handle, message_body FROM dbo.TargetQueue), TIMEOUT 5000

-- expect: primary
SEND ON CONVERSATION @handle MESSAGE TYPE [//Sluice/Request] (@body)

-- expect: primary
-- why: EXECUTE AS changes the security context of the session until REVERT.
EXECUTE AS USER = 'report_user'; SELECT * FROM dbo.Orders

-- expect: primary
KILL 57

-- expect: primary
ALTER DATABASE SCOPED CONFIGURATION CLEAR PROCEDURE_CACHE

-- expect: primary
-- why: Linked-server pass-through query: the remote text is opaque (it can call procedures) and the linked server may not exist on the replica.
SELECT * FROM OPENQUERY([LegacyErp], 'SELECT * FROM erp.customers')

-- expect: primary
-- why: Four-part name: a linked-server query, like OPENQUERY; linked servers are server objects that a replica
-- why: (or Azure SQL Database) need not have, and the classifier already treats OPENQUERY/OPENDATASOURCE as unknown.
SELECT c.Id, c.Name FROM [LegacyErp].[erp].[dbo].[Customers] AS c WHERE c.Id = 42

-- expect: primary
-- why: The OPENXML handle comes from sp_xml_preparedocument, run earlier on the primary connection: session state.
SELECT OrderId, Sku FROM OPENXML(@P1, '/orders/order/line', 2) WITH (OrderId int '../@id', Sku varchar(20) '@sku')

-- expect: primary
INSERT dbo.Orders (CustomerId, Total) VALUES (42, 10)

-- expect: primary
DELETE dbo.Orders WHERE Id = 42

-- expect: primary
UPDATE TOP (100) dbo.Orders SET Status = 9 WHERE Status = 8

-- expect: primary
-- why: A DELETE whose target is named [select] and whose column is [from].
DELETE FROM [select] WHERE [from] = 'x'

-- expect: primary
-- why: Upsert: UPDATE then INSERT when nothing matched.
UPDATE dbo.Counters SET Value = Value + 1 WHERE Name = 'hits';
IF @@ROWCOUNT = 0 INSERT INTO dbo.Counters (Name, Value) VALUES ('hits', 1);

-- expect: primary
-- why: Nested block comments are legal in T-SQL; the DELETE after the comment is code.
/* outer /* inner */ still comment */ DELETE FROM dbo.EventLog

-- expect: primary
-- why: T-SQL has no backslash escapes: the string ends at the first quote and the DELETE is code.
SELECT 'C:\temp\'; DELETE FROM dbo.Orders; --'

-- expect: primary
-- why: A line comment ends at the newline; the UPDATE on the next line runs.
SELECT 1 -- harmless
UPDATE dbo.Orders SET Status = 0

-- expect: primary
-- why: Statements without separators (legal T-SQL).
SELECT 1 SELECT 2 DELETE FROM dbo.Orders WHERE Id = 1

-- expect: primary
-- why: A GO separator is not T-SQL; whatever follows it is still in the batch the server receives.
SELECT 1
GO
DROP TABLE dbo.Orders

-- expect: primary
-- why: Doubled quotes end the string; the INSERT is code.
SELECT 'it''s'; INSERT INTO dbo.Notes (Text) VALUES ('x')

-- expect: primary
-- why: A Unicode identifier does not hide the UPDATE.
UPDATE [Kunden] SET [Größe] = 42 WHERE [Stadt] = N'München'

-- expect: primary
-- why: Unknown statement: fail safe.
FROBNICATE dbo.Orders

-- expect: replica
SELECT 'DELETE FROM x' AS s

-- expect: replica
SELECT 1 -- UPDATE t

-- expect: replica
/* INSERT */ SELECT 1

-- expect: replica
-- why: Nested block comment (legal in T-SQL) containing write keywords.
/* outer /* DELETE FROM t */ still a comment: DROP TABLE t */ SELECT 1 AS one

-- expect: replica
SELECT N'It''s an UPDATE; DROP TABLE x' AS s, 'INSERT' AS [delete]

-- expect: replica
SELECT * FROM dbo.AuditLog WHERE Action IN ('INSERT', 'UPDATE', 'DELETE', 'MERGE', 'TRUNCATE')

-- expect: replica
SELECT [update], [delete], [merge] FROM [insert] WHERE [drop] = 1

-- expect: replica
-- why: Double-quoted identifiers (QUOTED_IDENTIFIER ON) named like keywords.
SELECT "delete", "into" FROM "update" WHERE "exec" = 1

-- expect: replica
-- why: "]]" escapes a bracket inside a bracketed identifier; everything up to the final "]" is one name.
SELECT [x]]; DELETE FROM t; --] FROM dbo.Weird

-- expect: replica
SELECT [名前], [Größe] FROM [Kunden] WHERE [Stadt] = N'München'

-- expect: replica
-- why: Unquoted Unicode identifiers are legal.
SELECT Ñandú, Größe FROM Tiere WHERE Größe > 1

-- expect: replica
SELECT 'SCOPE_IDENTITY() and NEXT VALUE FOR s and WITH (UPDLOCK)' AS doc

-- expect: replica
SELECT Code FROM dbo.Tags WHERE Code LIKE '#%' OR Code = '##x'

-- expect: replica
SELECT @@VERSION AS version, SERVERPROPERTY('EngineEdition') AS edition

-- expect: replica
SELECT GETDATE() AS now, SYSUTCDATETIME() AS utc, NEWID() AS id

-- expect: replica
DECLARE @x int = 5; SELECT @x * 2 AS doubled

-- expect: replica
-- why: Assigning to variables is not a write.
DECLARE @cid int;
SELECT @cid = Id FROM dbo.Customers WHERE Email = 'a@example.com';
SET @cid = ISNULL(@cid, 0);
SELECT * FROM dbo.Orders WHERE CustomerId = @cid

-- expect: replica
-- why: BEGIN ... END is a block, not a transaction.
BEGIN
    SELECT 1 AS a;
    SELECT 2 AS b;
END

-- expect: replica
BEGIN TRY
    SELECT 1 / 0 AS boom;
END TRY
BEGIN CATCH
    SELECT ERROR_NUMBER() AS num, ERROR_MESSAGE() AS msg;
END CATCH

-- expect: replica
DECLARE @i int = 0;
WHILE @i < 3
BEGIN
    SET @i += 1;
END;
SELECT @i AS i

-- expect: replica
SELECT TOP (10) PERCENT WITH TIES Id, Total FROM dbo.Orders ORDER BY Total DESC

-- expect: replica
SELECT Id, IIF(Total > 100, 'big', 'small') AS size, TRY_CONVERT(int, Code) AS code_num, FORMAT(CreatedAt, 'yyyy-MM-dd') AS day
FROM dbo.Orders

-- expect: replica
SELECT p.Id, j.Name, j.Qty
FROM dbo.Payloads p
CROSS APPLY OPENJSON(p.Body) WITH (Name nvarchar(100) '$.name', Qty int '$.qty', Tags nvarchar(max) '$.tags' AS JSON) AS j

-- expect: replica
SELECT CustomerId, STRING_AGG(CAST(Sku AS nvarchar(max)), ', ') WITHIN GROUP (ORDER BY Sku) AS skus
FROM dbo.OrderLines
GROUP BY CustomerId

-- expect: replica
SELECT Id FROM dbo.Orders WHERE CustomerId = @c OPTION (RECOMPILE)

-- expect: replica
SELECT Id FROM dbo.Orders WHERE CustomerId = @c OPTION (OPTIMIZE FOR (@c UNKNOWN), MAXDOP 1, USE HINT ('DISABLE_PARAMETER_SNIFFING'))

-- expect: replica
SELECT TRY_CAST(Value AS date) AS d, PARSE(Price AS money USING 'de-DE') AS p, CHOOSE(Kind, 'a', 'b') AS k,
       CONCAT_WS('-', A, B) AS ab, TRANSLATE(Code, '[]', '()') AS c, EOMONTH(CreatedAt) AS m,
       CreatedAt AT TIME ZONE 'UTC' AT TIME ZONE 'W. Europe Standard Time' AS local
FROM dbo.Facts

-- expect: replica
SELECT value AS tag FROM STRING_SPLIT(@tags, ',') WHERE RTRIM(value) <> ''

-- expect: replica
-- why: JSON_MODIFY on a variable is a pure function.
DECLARE @j nvarchar(max) = N'{"a":1}';
SELECT JSON_MODIFY(@j, '$.a', 2) AS j, ISJSON(@j) AS ok, JSON_QUERY(@j, '$') AS q

-- expect: replica
SELECT * FROM dbo.Products TABLESAMPLE (10 PERCENT)

-- expect: replica
SELECT Id, Title FROM dbo.Documents WHERE CONTAINS(Body, '"DELETE" OR "UPDATE"')

-- expect: replica
SELECT * FROM sys.tables t JOIN sys.schemas s ON s.schema_id = t.schema_id WHERE s.name = 'dbo'

-- expect: replica
SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_TYPE = 'BASE TABLE'
