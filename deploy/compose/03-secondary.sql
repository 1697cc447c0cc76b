-- Runs on sql-secondary, as sa, from init-ag.sh: the same certificate and
-- endpoint as the primary, Sluice's login with the primary's SID, then joins
-- the availability group. Guarded like 01-primary.sql.
USE master;
GO

IF NOT EXISTS (SELECT 1 FROM sys.symmetric_keys WHERE name = N'##MS_DatabaseMasterKey##')
    CREATE MASTER KEY ENCRYPTION BY PASSWORD = N'$(AG_MASTER_KEY_PASSWORD)';
IF NOT EXISTS (SELECT 1 FROM sys.certificates WHERE name = N'sluice_ag_certificate')
    CREATE CERTIFICATE sluice_ag_certificate
        FROM BINARY = $(CERTIFICATE_BINARY)
        WITH PRIVATE KEY (
            BINARY = $(PRIVATE_KEY_BINARY),
            DECRYPTION BY PASSWORD = N'$(AG_CERT_PASSWORD)'
        );
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

IF NOT EXISTS (SELECT 1 FROM sys.server_principals WHERE name = N'$(SLUICE_LOGIN)')
    CREATE LOGIN [$(SLUICE_LOGIN)]
        WITH PASSWORD = N'$(SLUICE_BACKEND_PASSWORD)', SID = $(SLUICE_LOGIN_SID), CHECK_EXPIRATION = OFF;
GRANT VIEW SERVER STATE TO [$(SLUICE_LOGIN)];
GO

IF NOT EXISTS (SELECT 1 FROM sys.availability_groups WHERE name = N'$(AG_NAME)')
    ALTER AVAILABILITY GROUP [$(AG_NAME)] JOIN WITH (CLUSTER_TYPE = NONE);
GO
-- Automatic seeding creates the database here.
ALTER AVAILABILITY GROUP [$(AG_NAME)] GRANT CREATE ANY DATABASE;
GO
