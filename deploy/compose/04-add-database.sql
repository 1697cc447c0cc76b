-- Runs on sql-primary, as sa, from init-ag.sh, once the secondary joined:
-- adds the database to the availability group; automatic seeding copies it.
IF NOT EXISTS (
    SELECT 1 FROM sys.availability_databases_cluster AS d
    JOIN sys.availability_groups AS g ON g.group_id = d.group_id
    WHERE g.name = N'$(AG_NAME)' AND d.database_name = N'$(DATABASE)'
)
    ALTER AVAILABILITY GROUP [$(AG_NAME)] ADD DATABASE [$(DATABASE)];
GO
