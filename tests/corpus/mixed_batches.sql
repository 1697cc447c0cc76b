-- Sluice classification corpus: multi-statement batches, mostly reads with one
-- write (or one thing that needs the primary) somewhere inside, and the
-- all-read batches that must still go to a replica.
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
SELECT * FROM dbo.Customers WHERE Id = 1;
SELECT * FROM dbo.Orders WHERE CustomerId = 1;
SELECT COUNT(*) FROM dbo.Returns WHERE CustomerId = 1;
UPDATE dbo.Customers SET LastSeen = GETUTCDATE() WHERE Id = 1;
SELECT * FROM dbo.Addresses WHERE CustomerId = 1;

-- expect: primary
SELECT Id FROM dbo.Products WHERE Sku = 'A-1'
SELECT Price FROM dbo.Prices WHERE Sku = 'A-1'
INSERT INTO dbo.PriceViews (Sku, ViewedAt) VALUES ('A-1', GETUTCDATE())

-- expect: primary
SET NOCOUNT ON;
DECLARE @from date = '2024-01-01';
SELECT COUNT(*) FROM dbo.Orders WHERE CreatedAt >= @from;
SELECT SUM(Total) FROM dbo.Orders WHERE CreatedAt >= @from;
SELECT Id, Total INTO #recent FROM dbo.Orders WHERE CreatedAt >= @from;
SELECT TOP 10 * FROM #recent ORDER BY Total DESC;

-- expect: primary
SELECT * FROM dbo.Orders WHERE Id = 5;
EXEC dbo.GetOrderSummary 5;
EXEC dbo.SendOrderConfirmation 5;

-- expect: primary
SELECT name FROM sys.tables;
CREATE TABLE dbo.Scratch (Id int);
SELECT name FROM sys.tables;

-- expect: primary
SELECT 1;
WITH old AS (SELECT TOP (10) * FROM dbo.EventLog ORDER BY Id) DELETE FROM old;
SELECT 2;

-- expect: primary
DECLARE @n int;
SELECT @n = COUNT(*) FROM dbo.Queue;
IF @n > 1000
BEGIN
    SELECT 'too many' AS warning;
END
ELSE
BEGIN
    INSERT INTO dbo.Queue (Payload) VALUES ('ping');
END

-- expect: primary
-- why: The write sits in the CATCH block; it may run.
BEGIN TRY
    SELECT CAST('x' AS int);
END TRY
BEGIN CATCH
    INSERT INTO dbo.Errors (Number, Message) VALUES (ERROR_NUMBER(), ERROR_MESSAGE());
END CATCH

-- expect: primary
DECLARE @batch int = 1;
WHILE @batch > 0
BEGIN
    DELETE TOP (500) FROM dbo.EventLog WHERE LoggedAt < DATEADD(day, -90, GETUTCDATE());
    SET @batch = @@ROWCOUNT;
END

-- expect: primary
SELECT 'a;b' AS s; SELECT 'UPDATE x' AS t; MERGE dbo.Flags AS f USING (SELECT 1 AS Id) AS s ON f.Id = s.Id WHEN NOT MATCHED THEN INSERT (Id) VALUES (s.Id);

-- expect: primary
-- why: The write follows a line comment that ends the line before it.
SELECT * FROM dbo.Orders -- list orders
;DELETE FROM dbo.Orders WHERE Id = 0

-- expect: primary
SELECT * FROM dbo.A; /* nothing here: DELETE FROM dbo.A */ SELECT * FROM dbo.B; TRUNCATE TABLE dbo.C

-- expect: primary
SELECT Id FROM dbo.Orders WITH (NOLOCK);
SELECT Id FROM dbo.Invoices WITH (UPDLOCK, HOLDLOCK) WHERE OrderId = 1;

-- expect: primary
SELECT * FROM dbo.Orders;
SELECT SCOPE_IDENTITY();

-- expect: primary
SELECT * FROM dbo.Orders WHERE Id = 1;
EXEC sp_executesql N'DELETE FROM dbo.Orders WHERE Id = @id', N'@id int', 1;

-- expect: primary
SELECT 1;
BEGIN TRAN;
SELECT 2;

-- expect: primary
SELECT 1 AS a;
SELECT NEXT VALUE FOR dbo.TicketNumbers AS ticket;

-- expect: primary
SELECT * FROM dbo.Orders;
GRANT SELECT ON dbo.Orders TO public;

-- expect: primary
SELECT TOP 1 Id FROM dbo.Jobs WHERE Status = 0 ORDER BY Id;
EXEC sp_getapplock @Resource = 'jobs', @LockMode = 'Exclusive', @LockOwner = 'Transaction';

-- expect: primary
-- why: The UPDATE is the last line, separated by a newline only.
SELECT * FROM dbo.Carts WHERE Id = 1
UPDATE dbo.Carts SET Touched = 1 WHERE Id = 1

-- expect: primary
SELECT [update] FROM dbo.T1;
UPDATE dbo.T1 SET [select] = 1;

-- expect: primary
DECLARE @t TABLE (Id int);
INSERT INTO @t SELECT Id FROM dbo.Orders;
INSERT INTO dbo.OrderSnapshots (Id) SELECT Id FROM @t;

-- expect: primary
SELECT * FROM dbo.Orders o WHERE EXISTS (SELECT 1 FROM dbo.Lines l WHERE l.OrderId = o.Id);
ALTER TABLE dbo.Orders ADD Flag bit NULL;

-- expect: primary
SET NOCOUNT ON;
SET XACT_ABORT ON;
BEGIN TRANSACTION;
SELECT Balance FROM dbo.Accounts WITH (UPDLOCK) WHERE Id = 1;
UPDATE dbo.Accounts SET Balance = Balance - 10 WHERE Id = 1;
COMMIT;

-- expect: replica
SELECT * FROM dbo.Customers WHERE Id = 1;
SELECT * FROM dbo.Orders WHERE CustomerId = 1;
SELECT COUNT(*) FROM dbo.Returns WHERE CustomerId = 1;
SELECT * FROM dbo.Addresses WHERE CustomerId = 1;

-- expect: replica
-- why: Statements separated by newlines only.
SELECT Id FROM dbo.Products WHERE Sku = 'A-1'
SELECT Price FROM dbo.Prices WHERE Sku = 'A-1'
SELECT Qty FROM dbo.Stock WHERE Sku = 'A-1'

-- expect: replica
SET NOCOUNT ON;
DECLARE @from date = '2024-01-01';
SELECT COUNT(*) FROM dbo.Orders WHERE CreatedAt >= @from;
SELECT SUM(Total) FROM dbo.Orders WHERE CreatedAt >= @from;

-- expect: replica
IF EXISTS (SELECT 1 FROM dbo.Users WHERE Email = @email)
BEGIN
    SELECT Id, Email FROM dbo.Users WHERE Email = @email;
END
ELSE
BEGIN
    SELECT CAST(NULL AS int) AS Id, @email AS Email;
END

-- expect: replica
DECLARE @n int;
SELECT @n = COUNT(*) FROM dbo.Queue;
IF @n > 1000 SELECT 'too many' AS warning ELSE SELECT 'ok' AS status;

-- expect: replica
SELECT 'a;b' AS s; SELECT 'UPDATE x' AS t; SELECT 'DELETE FROM y; --' AS u

-- expect: replica
SELECT * FROM dbo.A; /* DELETE FROM dbo.A; TRUNCATE TABLE dbo.C */ SELECT * FROM dbo.B -- DROP TABLE dbo.B

-- expect: replica
-- why: All-read batch mixing the corpus' read-only procedures, a table variable and session options.
SET NOCOUNT ON;
DECLARE @r TABLE (Month int, Total money);
INSERT INTO @r EXEC reporting.usp_SalesByMonth @Year = 2024;
EXEC dbo.GetOrderSummary 42;
SELECT * FROM @r ORDER BY Month;

-- expect: replica
SELECT Id FROM dbo.Orders WITH (NOLOCK);
SELECT Id FROM dbo.Invoices WITH (READPAST) WHERE OrderId = 1;

-- expect: replica
SELECT * FROM dbo.Orders FOR JSON PATH;
SELECT * FROM dbo.Customers FOR XML AUTO;

-- expect: replica
;WITH a AS (SELECT 1 AS x) SELECT x FROM a;
;WITH b AS (SELECT 2 AS y) SELECT y FROM b;

-- expect: replica
-- why: READ UNCOMMITTED takes no shared locks and pins nothing; the session records the level (an effect) and the read may run anywhere.
SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED;
SELECT COUNT(*) FROM dbo.PageViews;
