-- Sluice classification corpus: SQL that SQLAlchemy 1.4/2.0 compiles for the
-- mssql dialect (pyodbc / pymssql), '?' placeholders rendered as @P1.., plus
-- the dialect's own queries on connect.
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
SELECT users.id, users.name, users.fullname 
FROM users 
WHERE users.name = @P1

-- expect: replica
SELECT anon_1.id, anon_1.name 
FROM (SELECT users.id AS id, users.name AS name 
FROM users 
WHERE users.id > @P1) AS anon_1

-- expect: replica
SELECT users.id, users.name 
FROM users ORDER BY users.id
 OFFSET @P1 ROWS
 FETCH FIRST @P2 ROWS ONLY

-- expect: replica
SELECT TOP 10 users.id, users.name 
FROM users ORDER BY users.name

-- expect: replica
-- why: Pre-2012 pagination through ROW_NUMBER().
SELECT anon_1.id, anon_1.name 
FROM (SELECT users.id AS id, users.name AS name, ROW_NUMBER() OVER (ORDER BY users.id) AS mssql_rn 
FROM users) AS anon_1 
WHERE mssql_rn > @P1 AND mssql_rn <= @P2 + @P1

-- expect: replica
SELECT count(*) AS count_1 
FROM (SELECT users.id AS users_id, users.name AS users_name 
FROM users 
WHERE users.name LIKE @P1) AS anon_1

-- expect: replica
SELECT users.id AS users_id, users.name AS users_name, addresses_1.id AS addresses_1_id, addresses_1.email_address AS addresses_1_email_address 
FROM users LEFT OUTER JOIN addresses AS addresses_1 ON users.id = addresses_1.user_id 
WHERE users.id = @P1 ORDER BY addresses_1.id

-- expect: replica
-- why: selectinload().
SELECT addresses.user_id AS addresses_user_id, addresses.id AS addresses_id, addresses.email_address AS addresses_email_address 
FROM addresses 
WHERE addresses.user_id IN (@P1, @P2, @P3)

-- expect: replica
SELECT CASE WHEN (EXISTS (SELECT * 
FROM users 
WHERE users.name = @P1)) THEN 1 ELSE 0 END AS anon_1

-- expect: replica
WITH anon_1 AS 
(SELECT orders.region AS region, sum(orders.amount) AS total_sales 
FROM orders GROUP BY orders.region)
 SELECT anon_1.region, anon_1.total_sales 
FROM anon_1 
WHERE anon_1.total_sales > (SELECT sum(anon_1.total_sales) / @P1 AS anon_2 
FROM anon_1)

-- expect: replica
-- why: Recursive CTE (mssql renders no RECURSIVE keyword).
WITH parts(part, sub_part, quantity) AS 
(SELECT parts_1.part AS part, parts_1.sub_part AS sub_part, parts_1.quantity AS quantity 
FROM parts AS parts_1 
WHERE parts_1.part = @P1 UNION ALL SELECT parts_2.part AS part, parts_2.sub_part AS sub_part, parts_2.quantity AS quantity 
FROM parts AS parts_2, parts AS parts_3 
WHERE parts_2.part = parts_3.sub_part)
 SELECT parts.sub_part, sum(parts.quantity) AS total_quantity 
FROM parts GROUP BY parts.sub_part

-- expect: replica
SELECT users.id 
FROM users 
WHERE users.name = @P1 UNION SELECT addresses.user_id 
FROM addresses 
WHERE addresses.email_address LIKE @P2

-- expect: replica
-- why: The dialect's server-version probe on connect.
SELECT CAST(SERVERPROPERTY('ProductVersion') AS VARCHAR)

-- expect: replica
SELECT schema_name()

-- expect: replica
SELECT default_schema_name FROM sys.database_principals WHERE principal_id=database_principal_id()

-- expect: replica
-- why: @@VERSION is a server constant, not session state: a read.
SELECT @@VERSION

-- expect: replica
-- why: Pool pre-ping.
SELECT 1

-- expect: replica
-- why: Inspector.has_table().
SELECT [INFORMATION_SCHEMA].[TABLES].[TABLE_NAME] 
FROM [INFORMATION_SCHEMA].[TABLES] 
WHERE ([INFORMATION_SCHEMA].[TABLES].[TABLE_TYPE] = CAST(@P1 AS NVARCHAR(max)) OR [INFORMATION_SCHEMA].[TABLES].[TABLE_TYPE] = CAST(@P2 AS NVARCHAR(max))) AND [INFORMATION_SCHEMA].[TABLES].[TABLE_NAME] = CAST(@P3 AS NVARCHAR(max)) AND [INFORMATION_SCHEMA].[TABLES].[TABLE_SCHEMA] = CAST(@P4 AS NVARCHAR(max))

-- expect: replica
SELECT [INFORMATION_SCHEMA].[COLUMNS].[COLUMN_NAME], [INFORMATION_SCHEMA].[COLUMNS].[DATA_TYPE], [INFORMATION_SCHEMA].[COLUMNS].[IS_NULLABLE], [INFORMATION_SCHEMA].[COLUMNS].[CHARACTER_MAXIMUM_LENGTH], [INFORMATION_SCHEMA].[COLUMNS].[COLUMN_DEFAULT], [INFORMATION_SCHEMA].[COLUMNS].[COLLATION_NAME] 
FROM [INFORMATION_SCHEMA].[COLUMNS] 
WHERE [INFORMATION_SCHEMA].[COLUMNS].[TABLE_NAME] = CAST(@P1 AS NVARCHAR(max)) AND [INFORMATION_SCHEMA].[COLUMNS].[TABLE_SCHEMA] = CAST(@P2 AS NVARCHAR(max)) ORDER BY [INFORMATION_SCHEMA].[COLUMNS].[ORDINAL_POSITION]

-- expect: replica
SELECT users.id, users.name 
FROM users 
WHERE users.id IN (SELECT addresses.user_id 
FROM addresses 
WHERE addresses.email_address LIKE @P1 + '%') AND users.created_at > DATEADD(day, @P2, GETDATE())

-- expect: replica
SELECT users.name, rank() OVER (PARTITION BY users.department ORDER BY users.salary DESC) AS anon_1 
FROM users

-- expect: primary
INSERT INTO users (name, fullname) OUTPUT inserted.id VALUES (@P1, @P2)

-- expect: primary
-- why: SQLAlchemy 2.0 insertmanyvalues with sentinel ordering.
INSERT INTO a (data, x, y) OUTPUT inserted.id, inserted.id AS id__1 SELECT p0, p1, p2 FROM (VALUES (@P1, @P2, @P3, 0), (@P4, @P5, @P6, 1), (@P7, @P8, @P9, 2)) AS imp_sen(p0, p1, p2, sen_counter) ORDER BY sen_counter

-- expect: primary
-- why: implicit_returning=False: scope_identity() in the same batch.
INSERT INTO users (name, fullname) VALUES (@P1, @P2); select scope_identity()

-- expect: primary
UPDATE users SET fullname=@P1 WHERE users.id = @P2

-- expect: primary
DELETE FROM users WHERE users.id = @P1

-- expect: primary
-- why: version_id_col optimistic concurrency.
UPDATE users SET name=@P1, version_id=@P2 WHERE users.id = @P3 AND users.version_id = @P4

-- expect: primary
-- why: DELETE with an extra FROM (multi-table criteria).
DELETE FROM users FROM users, addresses WHERE users.id = addresses.user_id AND addresses.email_address LIKE @P1

-- expect: primary
-- why: Inserting an explicit primary key: the dialect turns IDENTITY_INSERT on (pins the session).
SET IDENTITY_INSERT users ON

-- expect: primary
INSERT INTO t (id, data) VALUES (NEXT VALUE FOR my_seq, @P1)

-- expect: primary
SELECT NEXT VALUE FOR my_seq

-- expect: primary
-- why: with_hint(users, "WITH (UPDLOCK, ROWLOCK)").
SELECT users.id, users.name 
FROM users WITH (UPDLOCK, ROWLOCK) 
WHERE users.id = @P1

-- expect: primary
CREATE TABLE users (
	id INTEGER NOT NULL IDENTITY, 
	name VARCHAR(30) NOT NULL, 
	fullname VARCHAR(max) NULL, 
	PRIMARY KEY (id)
)

-- expect: primary
DROP TABLE addresses

-- expect: primary
-- why: Alembic migration version bump.
UPDATE alembic_version SET version_num='ae1027a6acf' WHERE alembic_version.version_num = '1975ea83b712'

-- expect: primary
-- why: Alembic batch op via dynamic SQL to drop a default constraint.
declare @const_name varchar(256)
select @const_name = QUOTENAME([name]) from sys.default_constraints
where parent_object_id = object_id('users')
and col_name(parent_object_id, parent_column_id) = 'fullname'
exec('alter table users drop constraint ' + @const_name)

-- expect: primary
-- why: SELECT INTO from a text() statement creates a permanent table.
SELECT users.id, users.name INTO users_backup_2024 FROM users WHERE users.active = 1

-- expect: primary
-- why: BEGIN (SQLAlchemy's explicit begin when autocommit isolation is used).
BEGIN TRANSACTION

-- expect: primary
COMMIT TRANSACTION
