-- Runs on sql-primary, as sa, from init-ag.sh: prints the endpoint
-- certificate and its private key (encrypted with AG_CERT_PASSWORD) as hex,
-- one line each, for 03-secondary.sql. No shared volume is needed.
SET NOCOUNT ON;
DECLARE @certificate VARCHAR(MAX) =
    CONVERT(VARCHAR(MAX), CERTENCODED(CERT_ID(N'sluice_ag_certificate')), 1);
DECLARE @private_key VARCHAR(MAX) =
    CONVERT(VARCHAR(MAX), CERTPRIVATEKEY(CERT_ID(N'sluice_ag_certificate'), N'$(AG_CERT_PASSWORD)'), 1);
PRINT 'CERTIFICATE ' + @certificate;
PRINT 'PRIVATE_KEY ' + @private_key;
GO
