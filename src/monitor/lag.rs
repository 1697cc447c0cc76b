//! Where a replica's lag comes from: the SQL each source runs, and turning
//! what it returns into a `Duration` at millisecond resolution.
//!
//! | source | runs on | measures |
//! |---|---|---|
//! | `azure_read_scale_out` | the replica | [`AZURE_READ_SCALE_OUT_SQL`] |
//! | `always_on` | the replica | [`ALWAYS_ON_SQL`] |
//! | `azure_geo` | the primary | [`AZURE_GEO_SQL`] |
//! | `heartbeat` | writes on the primary, reads on the replica | [`heartbeat_lag`] |
//! | `query` | the replica | the operator's query, in ms |

use std::time::Duration;

use crate::tds::token::SqlValue;

/// How a replica's lag is measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LagSource {
    /// Azure SQL Database / Managed Instance read scale-out (Premium,
    /// Business Critical): [`AZURE_READ_SCALE_OUT_SQL`] on the replica.
    AzureReadScaleOut,
    /// SQL Server Always On availability group, readable secondary:
    /// [`ALWAYS_ON_SQL`] on the replica.
    AlwaysOn,
    /// Azure SQL active geo-replication: [`AZURE_GEO_SQL`] on the primary.
    AzureGeo,
    /// Sluice writes its own clock (Unix milliseconds) into `table` on the
    /// primary every interval; the lag is how old the value the replica
    /// shows is, on that same clock: an upper bound of the true lag.
    Heartbeat { table: String },
    /// The operator's query, run on the replica: the first column of the
    /// first row is the lag in milliseconds (any integer, decimal or float;
    /// NULL or no row means unknown).
    Query(String),
    /// Health checks only; the lag stays unknown.
    None,
}

impl LagSource {
    /// The configuration name of the source.
    pub fn as_str(&self) -> &'static str {
        match self {
            LagSource::AzureReadScaleOut => "azure_read_scale_out",
            LagSource::AlwaysOn => "always_on",
            LagSource::AzureGeo => "azure_geo",
            LagSource::Heartbeat { .. } => "heartbeat",
            LagSource::Query(_) => "query",
            LagSource::None => "none",
        }
    }
}

/// Lag of an Azure SQL read scale-out replica, run on that replica in the
/// replica's database. Needs `VIEW DATABASE STATE` on the database.
///
/// `sys.dm_database_replica_states` has one local row for the database. On a
/// secondary, `last_commit_time` is the primary's time of the last commit
/// redone here, so while redo still has log to apply (`redo_queue_size > 0`)
/// the data readers see is as old as that commit: the lag is the time since
/// it. With an empty redo queue the replica has applied all it received and
/// the lag is 0 (commits never reported otherwise would inflate an idle
/// primary's lag forever). `secondary_lag_seconds` is not used: whole seconds
/// only, and filled in on the primary. DMV times are the server's local
/// time (UTC on Azure SQL Database), hence `SYSDATETIME()`, not the UTC one.
/// `DATEDIFF_BIG` does not overflow after 24 days as `DATEDIFF(ms)` does.
pub const AZURE_READ_SCALE_OUT_SQL: &str = "SELECT TOP (1) CASE \
WHEN is_primary_replica = 1 OR redo_queue_size = 0 THEN CAST(0 AS BIGINT) \
ELSE DATEDIFF_BIG(millisecond, last_commit_time, SYSDATETIME()) END AS lag_ms \
FROM sys.dm_database_replica_states WHERE database_id = DB_ID() AND is_local = 1";

/// Lag of an Always On readable secondary (SQL Server 2016 or later, for
/// `DATEDIFF_BIG`), run on the secondary in an availability database. Same
/// reasoning as [`AZURE_READ_SCALE_OUT_SQL`] on the SQL Server name of the
/// view. Needs `VIEW SERVER STATE` (SQL Server 2022: `VIEW SERVER
/// PERFORMANCE STATE`). Assumes the replicas' clocks agree and share a time
/// zone; otherwise use `heartbeat`.
pub const ALWAYS_ON_SQL: &str = "SELECT TOP (1) CASE \
WHEN is_primary_replica = 1 OR redo_queue_size = 0 THEN CAST(0 AS BIGINT) \
ELSE DATEDIFF_BIG(millisecond, last_commit_time, SYSDATETIME()) END AS lag_ms \
FROM sys.dm_hadr_database_replica_states WHERE database_id = DB_ID() AND is_local = 1";

/// Lag of Azure SQL geo-secondaries, run on the primary database (the view
/// fills `replication_lag_sec` there only). Needs `VIEW DATABASE STATE`.
/// Whole seconds, so coarse. With several geo-secondaries the worst link
/// counts; a link that is not in CATCH_UP (seeding, suspended) makes the lag
/// unknown.
pub const AZURE_GEO_SQL: &str = "SELECT CASE \
WHEN COUNT(*) = 0 THEN NULL \
WHEN SUM(CASE WHEN replication_state = 2 AND replication_lag_sec IS NOT NULL THEN 0 ELSE 1 END) > 0 THEN NULL \
ELSE MAX(CAST(replication_lag_sec AS BIGINT)) * 1000 END AS lag_ms \
FROM sys.dm_geo_replication_link_status WHERE role = 0";

/// Health check run on every backend.
pub const HEALTH_CHECK_SQL: &str = "SELECT 1";

/// The first column of a lag query's first row as a lag: integers, decimals
/// and floats in milliseconds (a negative value, from clocks that disagree,
/// reads as 0), or a string holding one. NULL is unknown (`None`).
pub fn lag_from_column(value: &SqlValue) -> Result<Option<Duration>, String> {
    let ms: f64 = match value {
        SqlValue::Null => return Ok(None),
        SqlValue::Int(v) => return Ok(Some(millis_from_i64(*v))),
        SqlValue::Float(v) => *v,
        SqlValue::Decimal { value, scale } => *value as f64 / 10f64.powi(i32::from(*scale)),
        SqlValue::Text(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("the lag query returned {s:?}, not a number of milliseconds"))?,
        other @ (SqlValue::Bit(_) | SqlValue::Unsupported(_)) => {
            return Err(format!(
                "the lag query returned {}, not a number",
                other.describe()
            ))
        }
    };
    if ms.is_nan() {
        return Err("the lag query returned NaN".to_string());
    }
    // Saturating float-to-int: negative reads 0, +inf the largest value.
    Ok(Some(Duration::from_millis(ms.round() as u64)))
}

fn millis_from_i64(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0).unsigned_abs())
}

/// A heartbeat table name checked for use in SQL text: `name` or
/// `schema.name`, each part a regular identifier or in brackets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeartbeatTable {
    /// Every part bracket-quoted: `[dbo].[sluice_heartbeat]`.
    quoted: String,
}

impl HeartbeatTable {
    /// Checks `name` with the configuration's own rules
    /// ([`crate::config::heartbeat_table_parts`]) and quotes each part.
    pub fn parse(name: &str) -> Result<HeartbeatTable, String> {
        let quoted = crate::config::heartbeat_table_parts(name)?
            .iter()
            .map(|part| format!("[{part}]"))
            .collect::<Vec<_>>()
            .join(".");
        Ok(HeartbeatTable { quoted })
    }

    /// Creates the table unless it exists: one row, `id = 1`, whose `ts_ms`
    /// is the time of the last write in milliseconds since 1970-01-01 UTC on
    /// Sluice's clock. An integer, not a `datetime2`: exact to the
    /// millisecond, free of time zones, the same on every engine.
    pub fn create_sql(&self) -> String {
        format!(
            "IF OBJECT_ID(N'{object}', N'U') IS NULL \
             CREATE TABLE {t} (id INT NOT NULL PRIMARY KEY, ts_ms BIGINT NOT NULL)",
            object = self.quoted.replace('\'', "''"),
            t = self.quoted
        )
    }

    /// Writes `epoch_ms` into the row, inserting it the first time.
    pub fn write_sql(&self, epoch_ms: i64) -> String {
        format!(
            "IF EXISTS (SELECT 1 FROM {t} WHERE id = 1) \
             UPDATE {t} SET ts_ms = {epoch_ms} WHERE id = 1 \
             ELSE INSERT INTO {t} (id, ts_ms) VALUES (1, {epoch_ms})",
            t = self.quoted
        )
    }

    /// Reads the row on a replica.
    pub fn read_sql(&self) -> String {
        format!("SELECT ts_ms FROM {} WHERE id = 1", self.quoted)
    }
}

/// The heartbeat value read on a replica: milliseconds since the Unix
/// epoch, from any integer column, a decimal's integer part, or a string
/// holding one.
pub fn epoch_ms_from_column(value: &SqlValue) -> Result<Option<i64>, String> {
    match value {
        SqlValue::Null => Ok(None),
        SqlValue::Int(v) => Ok(Some(*v)),
        SqlValue::Decimal { value, scale } => {
            let int_part = 10i128
                .checked_pow(u32::from(*scale))
                .map_or(0, |divisor| value / divisor);
            Ok(Some(i64::try_from(int_part).unwrap_or(i64::MAX)))
        }
        SqlValue::Text(s) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("the heartbeat value {s:?} is not milliseconds since 1970")),
        other @ (SqlValue::Bit(_) | SqlValue::Float(_) | SqlValue::Unsupported(_)) => Err(format!(
            "the heartbeat column holds {}, not milliseconds since 1970",
            other.describe()
        )),
    }
}

/// The heartbeat lag: how old the newest heartbeat the replica shows is.
/// It is an upper bound of the true lag, over it by at most one write
/// interval, so a read-your-writes check based on it errs on the safe side.
///
/// While the writer cannot write (`writer_failing_since`, the time of its
/// first failure since the last success), the primary commits nothing new
/// through Sluice, so the lag stops growing at that time instead of taking
/// the replicas out of reads during a primary outage.
pub fn heartbeat_lag(now_ms: i64, visible_ms: i64, writer_failing_since: Option<i64>) -> Duration {
    let until = writer_failing_since.map_or(now_ms, |t| t.min(now_ms));
    millis_from_i64(until.saturating_sub(visible_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    fn decimal(value: i128, scale: u8) -> SqlValue {
        SqlValue::Decimal { value, scale }
    }

    fn text(s: &str) -> SqlValue {
        SqlValue::Text(s.to_string())
    }

    #[test]
    fn lag_from_any_numeric_column() {
        assert_eq!(lag_from_column(&SqlValue::Int(7)), Ok(ms(7)));
        assert_eq!(lag_from_column(&SqlValue::Int(300)), Ok(ms(300)));
        assert_eq!(lag_from_column(&SqlValue::Int(1 << 40)), Ok(ms(1 << 40)));
        assert_eq!(lag_from_column(&SqlValue::Float(2.4)), Ok(ms(2)));
        assert_eq!(lag_from_column(&SqlValue::Float(2.5)), Ok(ms(3)));
        // 123.45
        assert_eq!(lag_from_column(&decimal(12_345, 2)), Ok(ms(123)));
        assert_eq!(lag_from_column(&text(" 42 ")), Ok(ms(42)));
    }

    #[test]
    fn negative_lag_reads_zero_and_null_unknown() {
        assert_eq!(lag_from_column(&SqlValue::Int(-20)), Ok(ms(0)));
        assert_eq!(lag_from_column(&SqlValue::Float(-0.5)), Ok(ms(0)));
        assert_eq!(lag_from_column(&decimal(-35, 1)), Ok(ms(0)));
        assert_eq!(lag_from_column(&SqlValue::Null), Ok(None));
        let inf = lag_from_column(&SqlValue::Float(f64::INFINITY));
        assert_eq!(inf, Ok(ms(u64::MAX)));
    }

    #[test]
    fn non_numbers_are_errors() {
        assert!(lag_from_column(&SqlValue::Float(f64::NAN)).is_err());
        let err = lag_from_column(&SqlValue::Bit(true)).unwrap_err();
        assert!(err.contains("a bit"), "{err}");
        let err = lag_from_column(&text("soon")).unwrap_err();
        assert!(err.contains("\"soon\""), "{err}");
        let date = SqlValue::Unsupported(crate::tds::token::type_info::DataType::DATETIME2N);
        let err = lag_from_column(&date).unwrap_err();
        assert!(err.contains("datetime2"), "{err}");
    }

    #[test]
    fn heartbeat_table_names() {
        let quoted = |name| HeartbeatTable::parse(name).map(|t| t.quoted);
        assert_eq!(
            quoted("sluice_heartbeat"),
            Ok("[sluice_heartbeat]".to_string())
        );
        assert_eq!(
            quoted("dbo.sluice_heartbeat"),
            Ok("[dbo].[sluice_heartbeat]".to_string())
        );
        assert_eq!(
            quoted("[my schema].[beat]"),
            Ok("[my schema].[beat]".to_string())
        );
        assert_eq!(quoted("[a]]b]"), Ok("[a]]b]".to_string()));
        for bad in [
            "",
            "a.b.c",
            "1abc",
            "dbo.",
            ".t",
            "t; DROP TABLE x",
            "t'--",
            "[unclosed",
            "[a]b",
            "[a\nb]",
        ] {
            assert!(HeartbeatTable::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn heartbeat_sql() {
        let t = HeartbeatTable::parse("dbo.beat").expect("valid");
        assert_eq!(
            t.create_sql(),
            "IF OBJECT_ID(N'[dbo].[beat]', N'U') IS NULL CREATE TABLE [dbo].[beat] \
             (id INT NOT NULL PRIMARY KEY, ts_ms BIGINT NOT NULL)"
        );
        assert_eq!(
            t.write_sql(1_709_251_198_123),
            "IF EXISTS (SELECT 1 FROM [dbo].[beat] WHERE id = 1) \
             UPDATE [dbo].[beat] SET ts_ms = 1709251198123 WHERE id = 1 \
             ELSE INSERT INTO [dbo].[beat] (id, ts_ms) VALUES (1, 1709251198123)"
        );
        assert_eq!(t.read_sql(), "SELECT ts_ms FROM [dbo].[beat] WHERE id = 1");
        let quoted = HeartbeatTable::parse("[it's]").expect("valid");
        assert!(quoted
            .create_sql()
            .starts_with("IF OBJECT_ID(N'[it''s]', N'U')"));
    }

    #[test]
    fn heartbeat_values_from_integer_columns() {
        let at = 1_709_251_198_123;
        assert_eq!(epoch_ms_from_column(&SqlValue::Int(at)), Ok(Some(at)));
        assert_eq!(epoch_ms_from_column(&SqlValue::Int(7)), Ok(Some(7)));
        assert_eq!(
            epoch_ms_from_column(&decimal(i128::from(at) * 10 + 7, 1)),
            Ok(Some(at))
        );
        assert_eq!(epoch_ms_from_column(&text("1709251198123")), Ok(Some(at)));
        assert_eq!(epoch_ms_from_column(&SqlValue::Null), Ok(None));
        assert!(epoch_ms_from_column(&SqlValue::Float(1.0)).is_err());
        assert!(epoch_ms_from_column(&text("2024-02-29")).is_err());
    }

    #[test]
    fn heartbeat_lag_is_the_age_of_the_visible_value() {
        assert_eq!(
            heartbeat_lag(10_500, 10_000, None),
            Duration::from_millis(500)
        );
        // Clocks never make it negative.
        assert_eq!(heartbeat_lag(10_000, 10_500, None), Duration::ZERO);
        // Writer failing since 11_000: the lag stops growing there.
        assert_eq!(
            heartbeat_lag(60_000, 10_000, Some(11_000)),
            Duration::from_millis(1000)
        );
        // A failure time after "now" (clock step) is capped at now.
        assert_eq!(
            heartbeat_lag(12_000, 10_000, Some(15_000)),
            Duration::from_millis(2000)
        );
    }

    #[test]
    fn dmv_queries_are_read_only_selects() {
        for sql in [AZURE_READ_SCALE_OUT_SQL, ALWAYS_ON_SQL, AZURE_GEO_SQL] {
            assert!(sql.starts_with("SELECT "), "{sql}");
            assert!(sql.contains("lag_ms"), "{sql}");
            assert!(!sql.contains("  "), "{sql}");
        }
        assert!(ALWAYS_ON_SQL.contains("sys.dm_hadr_database_replica_states"));
        assert!(AZURE_READ_SCALE_OUT_SQL.contains("sys.dm_database_replica_states"));
    }
}
