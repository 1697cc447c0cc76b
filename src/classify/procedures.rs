//! The operator's list of read-only stored procedures.

use std::collections::HashSet;

/// Procedures whose `EXEC` is a read.
///
/// Matching rule: names compare case-insensitively, without `[brackets]` or
/// `"quotes"`, part by part.
/// - A configured bare name (`GetOrders`) matches a call of that procedure
///   in any schema of the current database: `GetOrders`, `dbo.GetOrders`,
///   `[sales].[GetOrders]`.
/// - A configured `schema.name` (`dbo.GetOrders`) matches calls naming that
///   schema, and a bare call (`GetOrders`) only when the schema is `dbo`, the
///   schema SQL Server falls back to.
/// - A configured `database.schema.name` matches only that three-part call
///   (`db..name` counts as `db.dbo.name`).
/// - Calls through a linked server (four-part names) never match.
#[derive(Debug, Default, Clone)]
pub struct ReadOnlyProcedures {
    bare: HashSet<String>,
    qualified: HashSet<String>,
}

impl ReadOnlyProcedures {
    pub fn new(configured: &[String]) -> Self {
        let mut list = ReadOnlyProcedures::default();
        for name in configured {
            let parts = split_name(name);
            match parts.as_slice() {
                [] => {}
                [proc] => {
                    list.bare.insert(proc.clone());
                }
                [.., schema, proc] if parts.len() <= 3 => {
                    let schema = if schema.is_empty() { "dbo" } else { schema };
                    let mut key = parts[..parts.len() - 2].join(".");
                    if !key.is_empty() {
                        key.push('.');
                    }
                    key.push_str(schema);
                    key.push('.');
                    key.push_str(proc);
                    list.qualified.insert(key);
                }
                _ => {}
            }
        }
        list
    }

    pub fn is_empty(&self) -> bool {
        self.bare.is_empty() && self.qualified.is_empty()
    }

    /// `parts`: the called name's parts, unquoted, in any case.
    pub fn contains(&self, parts: &[&str]) -> bool {
        if self.is_empty() {
            return false;
        }
        let lower: Vec<String> = parts.iter().map(|p| p.trim().to_lowercase()).collect();
        match lower.as_slice() {
            [proc] => self.bare.contains(proc) || self.qualified.contains(&format!("dbo.{proc}")),
            [schema, proc] => {
                let schema = if schema.is_empty() { "dbo" } else { schema };
                self.bare.contains(proc) || self.qualified.contains(&format!("{schema}.{proc}"))
            }
            [db, schema, proc] => {
                let schema = if schema.is_empty() { "dbo" } else { schema };
                self.qualified.contains(&format!("{db}.{schema}.{proc}"))
            }
            _ => false,
        }
    }
}

/// Splits a configured name on dots outside brackets and quotes, unquoted and
/// lower-cased: `[dbo].[Get.Orders]` → `["dbo", "get.orders"]`.
pub fn split_name(name: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quote: Option<char> = None;
    let mut chars = name.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '[') => quote = Some(']'),
            (None, '"') => quote = Some('"'),
            (None, '.') => parts.push(String::new()),
            (Some(q), c) if c == q => {
                if chars.peek() == Some(&q) {
                    chars.next();
                    push(&mut parts, q);
                } else {
                    quote = None;
                }
            }
            (_, c) => push(&mut parts, c),
        }
    }
    for p in &mut parts {
        *p = p.trim().to_lowercase();
    }
    if parts.iter().all(String::is_empty) {
        parts.clear();
    }
    parts
}

fn push(parts: &mut [String], c: char) {
    if let Some(last) = parts.last_mut() {
        last.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(names: &[&str]) -> ReadOnlyProcedures {
        ReadOnlyProcedures::new(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn bare_configuration_matches_any_schema() {
        let l = list(&["GetOrders"]);
        assert!(l.contains(&["getorders"]));
        assert!(l.contains(&["dbo", "GetOrders"]));
        assert!(l.contains(&["sales", "GETORDERS"]));
        assert!(!l.contains(&["otherdb", "dbo", "GetOrders"]));
        assert!(!l.contains(&["GetOrdersX"]));
    }

    #[test]
    fn schema_configuration_matches_schema_and_dbo_fallback() {
        let l = list(&["[dbo].[GetOrders]", "sales.Report"]);
        assert!(l.contains(&["GetOrders"]));
        assert!(l.contains(&["DBO", "getorders"]));
        assert!(l.contains(&["sales", "report"]));
        assert!(
            !l.contains(&["Report"]),
            "bare call resolves to dbo, not sales"
        );
        assert!(!l.contains(&["sales", "GetOrders"]));
    }

    #[test]
    fn database_configuration_matches_three_parts_only() {
        let l = list(&["Shop.dbo.GetOrders"]);
        assert!(l.contains(&["shop", "dbo", "getorders"]));
        assert!(l.contains(&["shop", "", "getorders"]));
        assert!(!l.contains(&["dbo", "getorders"]));
        assert!(!l.contains(&["srv", "shop", "dbo", "getorders"]));
    }

    #[test]
    fn quoted_names_keep_their_dots() {
        assert_eq!(split_name("[dbo].[Get.Orders]"), ["dbo", "get.orders"]);
        assert_eq!(split_name("\"a\"\"b\".c"), ["a\"b", "c"]);
        assert!(split_name("  ").is_empty());
    }
}
