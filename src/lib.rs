//! Sluice: a read/write-splitting TDS proxy for SQL Server and Azure SQL.
pub mod tds;
