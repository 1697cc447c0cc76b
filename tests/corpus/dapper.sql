-- Sluice classification corpus: SQL written for Dapper / Dapper.Contrib, and
-- the shapes of popular libraries on top of it (Hangfire's SQL Server storage).
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
SELECT * FROM Users WHERE Id = @Id

-- expect: replica
select Id, Name, Email from Users where Email = @email

-- expect: replica
SELECT COUNT(1) FROM Orders WHERE CustomerId = @CustomerId

-- expect: replica
SELECT o.*, c.*
FROM Orders o
INNER JOIN Customers c ON c.Id = o.CustomerId
WHERE o.Id = @id

-- expect: replica
-- why: QueryMultiple(): several reads in one batch.
SELECT * FROM Customers WHERE Id = @id;
SELECT * FROM Orders WHERE CustomerId = @id;
SELECT * FROM Returns WHERE CustomerId = @id

-- expect: replica
-- why: Dapper expands "IN @ids" into a parameter list.
SELECT Id, Sku, Price FROM Products WHERE Id IN (@ids1,@ids2,@ids3,@ids4)

-- expect: replica
SELECT TOP 1 * FROM Users WITH (NOLOCK) WHERE Email = @Email

-- expect: replica
SELECT * FROM Products ORDER BY Name OFFSET @Skip ROWS FETCH NEXT @Take ROWS ONLY

-- expect: replica
SELECT * FROM Users WHERE Name LIKE @Name + '%' AND IsDeleted = 0

-- expect: replica
-- why: @ids is a table-valued parameter: read-only by definition.
SELECT p.Id, p.Name, p.Price
FROM Products p
INNER JOIN @ids i ON i.Id = p.Id

-- expect: replica
-- why: Dapper.Contrib Get<T>().
select * from Users where Id = @id

-- expect: replica
-- why: Dapper.Contrib GetAll<T>().
select * from Users

-- expect: replica
SELECT u.Id, u.Name, r.Name AS RoleName
FROM dbo.Users u
LEFT JOIN dbo.UserRoles ur ON ur.UserId = u.Id
LEFT JOIN dbo.Roles r ON r.Id = ur.RoleId
WHERE u.TenantId = @TenantId
ORDER BY u.Name

-- expect: replica
SELECT CAST(CASE WHEN EXISTS (SELECT 1 FROM Users WHERE Email = @Email) THEN 1 ELSE 0 END AS bit)

-- expect: replica
SET NOCOUNT ON;
SELECT Id, Total FROM Orders WHERE CreatedAt BETWEEN @From AND @To

-- expect: replica
-- why: Hangfire monitoring read with NOLOCK.
select count(j.Id) from [HangFire].[Job] j with (nolock) where j.StateName = @state

-- expect: replica
select [Key], [Value] from [HangFire].[Hash] with (readcommittedlock, forceseek) where [Key] = @key

-- expect: replica
EXEC dbo.GetOrderSummary @CustomerId

-- expect: replica
EXEC reporting.usp_SalesByMonth @Year = @Year, @Region = @Region

-- expect: primary
INSERT INTO Users (Name, Email) VALUES (@Name, @Email); SELECT CAST(SCOPE_IDENTITY() as int)

-- expect: primary
insert into Products(Name, Price) output inserted.Id values (@Name, @Price)

-- expect: primary
UPDATE Users SET Name = @Name WHERE Id = @Id

-- expect: primary
DELETE FROM Users WHERE Id = @Id

-- expect: primary
-- why: Dapper.Contrib Insert<T>().
insert into Users ([Name], [Email]) values (@Name, @Email);select SCOPE_IDENTITY() id

-- expect: primary
update Users set [Name] = @Name, [Email] = @Email where [Id] = @Id

-- expect: primary
delete from Users where [Id] = @Id

-- expect: primary
IF EXISTS (SELECT 1 FROM Settings WHERE [Key] = @Key)
    UPDATE Settings SET Value = @Value WHERE [Key] = @Key
ELSE
    INSERT INTO Settings ([Key], Value) VALUES (@Key, @Value)

-- expect: primary
-- why: Queue pattern: READPAST with UPDLOCK and an UPDATE ... OUTPUT.
UPDATE TOP (1) Jobs WITH (ROWLOCK, READPAST, UPDLOCK)
SET Status = 1, StartedAt = SYSUTCDATETIME()
OUTPUT inserted.Id, inserted.Payload
WHERE Status = 0

-- expect: primary
-- why: Hangfire dequeue.
delete top (1) JQ
output DELETED.Id, DELETED.JobId, DELETED.Queue
from [HangFire].JobQueue JQ with (readpast, updlock, rowlock, forceseek)
where Queue in (@queues1, @queues2) and (FetchedAt is null or FetchedAt < DATEADD(second, @timeout, GETUTCDATE()))

-- expect: primary
-- why: Hangfire distributed lock acquisition.
EXEC sp_getapplock @Resource = @resource, @DbPrincipal = 'public', @LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = @timeout

-- expect: primary
insert into [HangFire].Job (InvocationData, Arguments, CreatedAt, ExpireAt)
output inserted.Id
values (@invocationData, @arguments, @createdAt, @expireAt)

-- expect: primary
-- why: Upsert with MERGE and HOLDLOCK.
MERGE dbo.Counters WITH (HOLDLOCK) AS t
USING (SELECT @Key AS [Key]) AS s ON t.[Key] = s.[Key]
WHEN MATCHED THEN UPDATE SET t.Value = t.Value + @Delta
WHEN NOT MATCHED THEN INSERT ([Key], Value) VALUES (s.[Key], @Delta);

-- expect: primary
-- why: A read with a pessimistic lock, as written by hand before an update.
SELECT Balance FROM Accounts WITH (UPDLOCK, HOLDLOCK) WHERE Id = @Id

-- expect: primary
-- why: Execute() of a procedure that is not declared read-only.
EXEC dbo.UpdateInventory @Sku = @Sku, @Quantity = @Quantity

-- expect: primary
-- why: Same name as a listed procedure but another schema.
EXEC sales.GetOrderSummary @CustomerId

-- expect: primary
-- why: A listed procedure's name is a prefix of this one; it is not listed.
EXEC dbo.GetOrderSummaryAndMarkSeen @CustomerId

-- expect: primary
INSERT INTO AuditLog (UserId, Action, At) VALUES (@UserId, 'SELECT', GETUTCDATE())

-- expect: primary
-- why: Bulk-ish multi-row insert Dapper issues for a list of parameters.
INSERT INTO OrderLines (OrderId, Sku, Qty) VALUES (@OrderId, @Sku, @Qty)
