//! Reading one database's procedures from the primary's catalog views,
//! within the 1 MiB bound on replies to Sluice's own batches: first the
//! list with each definition's size, then the definitions in batches that
//! fit.

use crate::backend::BackendConn;
use crate::tds::token::row::rows;
use crate::tds::token::{BatchReply, SqlValue};

use super::CatalogProcedure;

/// Procedures read per database; past it the rest are not read-only.
pub const MAX_PROCEDURES: usize = 5000;
/// Bytes of definitions (UTF-16) fetched per batch. A single definition
/// larger than this is not fetched: its procedure is not read-only.
const DEFINITION_BATCH_BYTES: i64 = 256 * 1024;

const LIST_SQL: &str = "SELECT TOP (5000) p.object_id, s.name, p.name, DATALENGTH(m.definition) \
     FROM sys.procedures AS p \
     JOIN sys.schemas AS s ON s.schema_id = p.schema_id \
     LEFT JOIN sys.sql_modules AS m ON m.object_id = p.object_id \
     ORDER BY p.object_id";

/// One procedure of the list: its id, names and definition size (`None`:
/// hidden).
struct Listed {
    id: i64,
    procedure: CatalogProcedure,
    size: Option<i64>,
}

/// The procedures of the database `conn` is in, with their definitions.
pub async fn read_procedures(conn: &mut BackendConn) -> Result<Vec<CatalogProcedure>, String> {
    let list = query(conn, LIST_SQL, MAX_PROCEDURES).await?;
    let mut listed: Vec<Listed> = list.into_iter().filter_map(listed).collect();
    let mut start = 0;
    while start < listed.len() {
        let (end, ids) = next_batch(&listed, start);
        if !ids.is_empty() {
            let sql = format!(
                "SELECT object_id, definition FROM sys.sql_modules WHERE object_id IN ({})",
                ids.join(", ")
            );
            for row in query(conn, &sql, ids.len()).await? {
                fill_definition(&mut listed[start..end], row);
            }
        }
        start = end;
    }
    Ok(listed.into_iter().map(|l| l.procedure).collect())
}

/// The procedures from `start` whose definitions fit one batch, and their
/// ids; hidden and oversized ones are stepped over.
fn next_batch(listed: &[Listed], start: usize) -> (usize, Vec<String>) {
    let mut bytes = 0;
    let mut ids = Vec::new();
    let mut end = start;
    while let Some(l) = listed.get(end) {
        match l.size {
            Some(size) if size <= DEFINITION_BATCH_BYTES => {
                if bytes + size > DEFINITION_BATCH_BYTES && !ids.is_empty() {
                    break;
                }
                bytes += size;
                ids.push(l.id.to_string());
            }
            _ => {}
        }
        end += 1;
    }
    (end, ids)
}

fn listed(row: Vec<SqlValue>) -> Option<Listed> {
    let mut values = row.into_iter();
    let (Some(SqlValue::Int(id)), Some(SqlValue::Text(schema)), Some(SqlValue::Text(name))) =
        (values.next(), values.next(), values.next())
    else {
        return None;
    };
    let size = match values.next() {
        Some(SqlValue::Int(size)) => Some(size),
        _ => None,
    };
    Some(Listed {
        id,
        procedure: CatalogProcedure {
            schema,
            name,
            definition: None,
        },
        size,
    })
}

fn fill_definition(batch: &mut [Listed], row: Vec<SqlValue>) {
    let mut values = row.into_iter();
    let (Some(SqlValue::Int(id)), Some(SqlValue::Text(definition))) =
        (values.next(), values.next())
    else {
        return;
    };
    if let Some(l) = batch.iter_mut().find(|l| l.id == id) {
        l.procedure.definition = Some(definition);
    }
}

/// Runs `sql` and returns up to `limit` rows; a server error is an `Err`
/// with its number and text.
async fn query(
    conn: &mut BackendConn,
    sql: &str,
    limit: usize,
) -> Result<Vec<Vec<SqlValue>>, String> {
    let reply = conn.run_batch(sql).await.map_err(|e| e.to_string())?;
    let decoded = BatchReply::decode(&reply).map_err(|e| e.to_string())?;
    if let Some(e) = decoded.errors.first() {
        return Err(format!("error {}: {}", e.number, e.message));
    }
    rows(&reply, limit).map_err(|e| e.to_string())
}
