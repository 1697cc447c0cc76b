-- Runs on sql-primary, as sa, from init-ag.sh, which passes the sqlcmd variables.
-- Sets up the primary of a read-scale availability group (CLUSTER_TYPE =
-- NONE: no Pacemaker or WSFC) and the database Sluice serves. Every step is
-- guarded, so a second run changes nothing.
USE master;
GO

-- The certificate the two endpoints authenticate with; init-ag.sh copies it,
-- with its private key, to the secondary.
IF NOT EXISTS (SELECT 1 FROM sys.symmetric_keys WHERE name = N'##MS_DatabaseMasterKey##')
    CREATE MASTER KEY ENCRYPTION BY PASSWORD = N'$(AG_MASTER_KEY_PASSWORD)';
IF NOT EXISTS (SELECT 1 FROM sys.certificates WHERE name = N'sluice_ag_certificate')
    CREATE CERTIFICATE sluice_ag_certificate
        WITH SUBJECT = N'Sluice compose availability group endpoints', EXPIRY_DATE = '20991231';
GO

IF NOT EXISTS (SELECT 1 FROM sys.endpoints WHERE name = N'hadr_endpoint')
    CREATE ENDPOINT hadr_endpoint
        STATE = STARTED
        AS TCP (LISTENER_PORT = $(ENDPOINT_PORT))
        FOR DATABASE_MIRRORING (
            ROLE = ALL,
            AUTHENTICATION = CERTIFICATE sluice_ag_certificate,
            ENCRYPTION = REQUIRED ALGORITHM AES
        );
GO

-- Sluice's own login. Logins are not replicated: the secondary gets the
-- same one with the same SID, so the database user below maps to it there.
-- VIEW SERVER STATE: the always_on lag source reads sys.dm_hadr_* views.
IF NOT EXISTS (SELECT 1 FROM sys.server_principals WHERE name = N'$(SLUICE_LOGIN)')
    CREATE LOGIN [$(SLUICE_LOGIN)]
        WITH PASSWORD = N'$(SLUICE_BACKEND_PASSWORD)', SID = $(SLUICE_LOGIN_SID), CHECK_EXPIRATION = OFF;
GRANT VIEW SERVER STATE TO [$(SLUICE_LOGIN)];
GO

IF NOT EXISTS (SELECT 1 FROM sys.availability_groups WHERE name = N'$(AG_NAME)')
    CREATE AVAILABILITY GROUP [$(AG_NAME)]
        WITH (CLUSTER_TYPE = NONE)
        FOR REPLICA ON
            N'$(PRIMARY_HOST)' WITH (
                ENDPOINT_URL = N'tcp://$(PRIMARY_HOST):$(ENDPOINT_PORT)',
                AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT,
                FAILOVER_MODE = MANUAL,
                SEEDING_MODE = AUTOMATIC,
                SECONDARY_ROLE (ALLOW_CONNECTIONS = ALL)
            ),
            N'$(SECONDARY_HOST)' WITH (
                ENDPOINT_URL = N'tcp://$(SECONDARY_HOST):$(ENDPOINT_PORT)',
                AVAILABILITY_MODE = ASYNCHRONOUS_COMMIT,
                FAILOVER_MODE = MANUAL,
                SEEDING_MODE = AUTOMATIC,
                SECONDARY_ROLE (ALLOW_CONNECTIONS = ALL)
            );
GO

-- The database: full recovery and a first full backup, as automatic
-- seeding needs; a table to try reads and writes on.
IF DB_ID(N'$(DATABASE)') IS NULL
    CREATE DATABASE [$(DATABASE)];
GO
ALTER DATABASE [$(DATABASE)] SET RECOVERY FULL;
GO
USE [$(DATABASE)];
GO
IF OBJECT_ID(N'dbo.items') IS NULL
    CREATE TABLE dbo.items (
        id INT NOT NULL PRIMARY KEY,
        name NVARCHAR(50) NOT NULL,
        price DECIMAL(10, 2) NOT NULL
    );
IF NOT EXISTS (SELECT 1 FROM dbo.items)
    INSERT INTO dbo.items (id, name, price)
    VALUES (1, N'sluice gate', 120.50), (2, N'weir', 80.00), (3, N'lock', 310.25);
IF USER_ID(N'$(SLUICE_LOGIN)') IS NULL
    CREATE USER [$(SLUICE_LOGIN)] FOR LOGIN [$(SLUICE_LOGIN)];
ALTER ROLE db_datareader ADD MEMBER [$(SLUICE_LOGIN)];
ALTER ROLE db_datawriter ADD MEMBER [$(SLUICE_LOGIN)];
GRANT EXECUTE TO [$(SLUICE_LOGIN)];
GRANT VIEW DATABASE STATE TO [$(SLUICE_LOGIN)];
GO
USE master;
GO
BACKUP DATABASE [$(DATABASE)] TO DISK = N'/var/opt/mssql/data/$(DATABASE).bak' WITH INIT;
GO
