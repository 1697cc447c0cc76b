-- Sluice classification corpus: SQL that Django generates through mssql-django
-- (pyodbc), with its '%s' / '?' placeholders rendered as the @P1.. parameters
-- the ODBC driver sends.
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
SELECT TOP 21 [polls_question].[id], [polls_question].[question_text], [polls_question].[pub_date] FROM [polls_question] WHERE [polls_question].[id] = @P1

-- expect: replica
SELECT [polls_question].[id], [polls_question].[question_text], [polls_question].[pub_date] FROM [polls_question] WHERE [polls_question].[pub_date] <= @P1 ORDER BY [polls_question].[pub_date] DESC OFFSET 0 ROWS FETCH FIRST 5 ROWS ONLY

-- expect: replica
-- why: QuerySet.exists().
SELECT TOP 1 (1) AS [a] FROM [polls_question] WHERE [polls_question].[id] = @P1

-- expect: replica
-- why: QuerySet.count().
SELECT COUNT_BIG(*) AS [__count] FROM [polls_choice] WHERE [polls_choice].[question_id] = @P1

-- expect: replica
SELECT AVG([polls_choice].[votes]) AS [votes__avg], MAX([polls_choice].[votes]) AS [votes__max] FROM [polls_choice]

-- expect: replica
SELECT TOP 21 [django_session].[session_key], [django_session].[session_data], [django_session].[expire_date] FROM [django_session] WHERE ([django_session].[expire_date] > @P1 AND [django_session].[session_key] = @P2)

-- expect: replica
SELECT TOP 21 [auth_user].[id], [auth_user].[password], [auth_user].[last_login], [auth_user].[is_superuser], [auth_user].[username], [auth_user].[first_name], [auth_user].[last_name], [auth_user].[email], [auth_user].[is_staff], [auth_user].[is_active], [auth_user].[date_joined] FROM [auth_user] WHERE [auth_user].[username] = @P1

-- expect: replica
-- why: Admin search; the ESCAPE '\' literal must not confuse a lexer (T-SQL has no backslash escapes).
SELECT [auth_user].[id], [auth_user].[username] FROM [auth_user] WHERE ([auth_user].[username] LIKE @P1 ESCAPE '\' OR [auth_user].[email] LIKE @P2 ESCAPE '\') ORDER BY [auth_user].[id] DESC OFFSET 0 ROWS FETCH FIRST 100 ROWS ONLY

-- expect: replica
SELECT [auth_permission].[id], [auth_permission].[name], [auth_permission].[content_type_id], [auth_permission].[codename] FROM [auth_permission] INNER JOIN [auth_user_user_permissions] ON ([auth_permission].[id] = [auth_user_user_permissions].[permission_id]) WHERE [auth_user_user_permissions].[user_id] = @P1

-- expect: replica
SELECT [django_content_type].[id], [django_content_type].[app_label], [django_content_type].[model] FROM [django_content_type] WHERE ([django_content_type].[app_label] = @P1 AND [django_content_type].[model] = @P2)

-- expect: replica
SELECT [django_migrations].[id], [django_migrations].[app], [django_migrations].[name], [django_migrations].[applied] FROM [django_migrations]

-- expect: replica
-- why: Introspection at startup.
SELECT TABLE_NAME, CASE WHEN TABLE_TYPE = 'BASE TABLE' THEN 't' ELSE 'v' END FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = SCHEMA_NAME()

-- expect: replica
SELECT [shop_product].[id], [shop_product].[name], (SELECT COUNT_BIG(U0.[id]) FROM [shop_review] U0 WHERE U0.[product_id] = ([shop_product].[id])) AS [review_count] FROM [shop_product] ORDER BY [review_count] DESC OFFSET 0 ROWS FETCH FIRST 10 ROWS ONLY

-- expect: replica
SELECT [shop_order].[id], [shop_order].[total], CASE WHEN EXISTS(SELECT TOP 1 (1) AS [a] FROM [shop_refund] U0 WHERE U0.[order_id] = ([shop_order].[id])) THEN 1 ELSE 0 END AS [has_refund] FROM [shop_order] WHERE [shop_order].[customer_id] = @P1

-- expect: replica
-- why: values_list(flat=True).distinct().
SELECT DISTINCT [shop_product].[category_id] FROM [shop_product] WHERE [shop_product].[is_active] = @P1

-- expect: replica
-- why: prefetch_related() second query.
SELECT [polls_choice].[id], [polls_choice].[question_id], [polls_choice].[choice_text], [polls_choice].[votes] FROM [polls_choice] WHERE [polls_choice].[question_id] IN (@P1, @P2, @P3)

-- expect: replica
SELECT CAST(FLOOR(DATEDIFF(second, '1970-01-01', [shop_order].[created]) / 86400) AS int) AS [day], SUM([shop_order].[total]) AS [total] FROM [shop_order] GROUP BY CAST(FLOOR(DATEDIFF(second, '1970-01-01', [shop_order].[created]) / 86400) AS int)

-- expect: replica
SELECT 1

-- expect: primary
-- why: create(): mssql-django returns the new id with OUTPUT INSERTED.
INSERT INTO [polls_question] ([question_text], [pub_date]) OUTPUT INSERTED.[id] VALUES (@P1, @P2)

-- expect: primary
-- why: Older mssql-django without OUTPUT support: SCOPE_IDENTITY() in the same batch.
SET NOCOUNT ON INSERT INTO [polls_question] ([question_text], [pub_date]) VALUES (@P1, @P2); SELECT CAST(SCOPE_IDENTITY() AS bigint)

-- expect: primary
-- why: last_insert_id() fallback; IDENT_CURRENT needs the table's state on the primary.
SELECT CAST(IDENT_CURRENT(@P1) AS bigint)

-- expect: primary
-- why: bulk_create().
INSERT INTO [polls_choice] ([question_id], [choice_text], [votes]) VALUES (@P1, @P2, @P3), (@P4, @P5, @P6), (@P7, @P8, @P9)

-- expect: primary
-- why: F() expression update.
UPDATE [polls_choice] SET [votes] = ([polls_choice].[votes] + @P1) WHERE [polls_choice].[id] = @P2

-- expect: primary
DELETE FROM [polls_choice] WHERE [polls_choice].[id] IN (@P1, @P2)

-- expect: primary
-- why: update() filtered by a subquery.
UPDATE [shop_order] SET [status] = @P1 WHERE [shop_order].[id] IN (SELECT U0.[id] FROM [shop_order] U0 INNER JOIN [shop_customer] U1 ON (U0.[customer_id] = U1.[id]) WHERE U1.[country] = @P2)

-- expect: primary
-- why: select_for_update().
SELECT [shop_stock].[id], [shop_stock].[quantity] FROM [shop_stock] WITH (ROWLOCK, UPDLOCK) WHERE [shop_stock].[product_id] = @P1

-- expect: primary
-- why: select_for_update(skip_locked=True): READPAST with UPDLOCK is still a write lock.
SELECT TOP 1 [jobs_task].[id], [jobs_task].[payload] FROM [jobs_task] WITH (ROWLOCK, UPDLOCK, READPAST) WHERE [jobs_task].[state] = @P1 ORDER BY [jobs_task].[id] ASC

-- expect: primary
-- why: select_for_update(nowait=True).
SELECT [shop_stock].[id] FROM [shop_stock] WITH (ROWLOCK, UPDLOCK, NOWAIT) WHERE [shop_stock].[id] = @P1

-- expect: primary
-- why: transaction.atomic() nested: savepoint.
SAVE TRANSACTION [s140255823154944_x1]

-- expect: primary
ROLLBACK TRANSACTION [s140255823154944_x1]

-- expect: primary
-- why: pyodbc with autocommit off: the ODBC driver turns implicit transactions on.
SET IMPLICIT_TRANSACTIONS ON

-- expect: primary
UPDATE [django_session] SET [session_data] = @P1, [expire_date] = @P2 WHERE [django_session].[session_key] = @P3

-- expect: primary
INSERT INTO [django_session] ([session_key], [session_data], [expire_date]) VALUES (@P1, @P2, @P3)

-- expect: primary
CREATE TABLE [polls_question] ([id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1), [question_text] nvarchar(200) NOT NULL, [pub_date] datetime2 NOT NULL)

-- expect: primary
ALTER TABLE [polls_choice] ADD CONSTRAINT [polls_choice_question_id_c5b4b260_fk_polls_question_id] FOREIGN KEY ([question_id]) REFERENCES [polls_question] ([id])

-- expect: primary
CREATE INDEX [polls_choice_question_id_c5b4b260] ON [polls_choice] ([question_id])

-- expect: primary
INSERT INTO [django_migrations] ([app], [name], [applied]) OUTPUT INSERTED.[id] VALUES (@P1, @P2, @P3)

-- expect: primary
-- why: mssql-django alters a column by dropping dependent constraints through dynamic SQL.
DECLARE @sql nvarchar(max)
WHILE 1=1
BEGIN
    SELECT TOP 1 @sql = N'ALTER TABLE [shop_product] DROP CONSTRAINT [' + dc.NAME + N']'
    FROM sys.default_constraints dc
    JOIN sys.columns c ON c.default_object_id = dc.object_id
    WHERE dc.parent_object_id = OBJECT_ID('shop_product') AND c.name = N'price'
    IF @@ROWCOUNT = 0 BREAK
    EXEC (@sql)
END

-- expect: primary
-- why: Test database flush.
TRUNCATE TABLE [django_admin_log]
