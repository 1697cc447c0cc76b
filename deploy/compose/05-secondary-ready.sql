-- Runs on sql-secondary, as sa, from init-ag.sh until it prints 1: the
-- seeded database is online and readable here (Sluice's database user
-- comes with it).
SET NOCOUNT ON;
SELECT CASE WHEN EXISTS (
    SELECT 1 FROM sys.dm_hadr_database_replica_states AS s
    JOIN sys.databases AS d ON d.database_id = s.database_id
    WHERE d.name = N'$(DATABASE)' AND s.is_local = 1 AND d.state_desc = N'ONLINE'
) THEN 1 ELSE 0 END AS ready;
GO
