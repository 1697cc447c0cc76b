//! `[[routing.rules]]`: operator rules, matched in order.

use std::sync::Arc;

use regex::Regex;

use super::{Request, SessionView};
use crate::config::{ConfigError, Routing, RuleTarget};

/// Compiles `[[routing.rules]]` in order. Load-time validation ran the
/// same checks, so a loaded configuration compiles; the error names the
/// key and the fix.
pub fn compile(routing: &Routing) -> Result<Vec<Rule>, ConfigError> {
    routing
        .rules
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            Ok(Rule {
                name: rule.display_name(index).into(),
                action: match rule.target {
                    RuleTarget::Primary => RuleAction::Primary,
                    RuleTarget::Replica => RuleAction::Replica,
                },
                sql: rule.checked_sql(index)?,
                procedure: rule.procedure.clone(),
                user: rule.user.clone(),
                application: rule.application.clone(),
                database: rule.database.clone(),
            })
        })
        .collect()
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    Primary,
    Replica,
}

/// A compiled rule: every condition given must match (case-insensitive
/// names; the SQL regex is searched anywhere in the text).
#[derive(Debug, Clone)]
pub struct Rule {
    /// Shared with every routing [`super::Reason`] that names the rule.
    pub name: Arc<str>,
    pub action: RuleAction,
    pub sql: Option<Regex>,
    pub procedure: Option<String>,
    pub user: Option<String>,
    pub application: Option<String>,
    pub database: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("routing.rules[{index}].match_sql: {source}")]
pub struct RuleError {
    pub index: usize,
    pub source: regex::Error,
}

impl Rule {
    pub fn matches(&self, request: Request<'_>, session: &SessionView<'_>) -> bool {
        let sql_ok = match (&self.sql, request) {
            (None, _) => true,
            (Some(re), Request::Sql(sql)) => re.is_match(sql),
            (Some(_), _) => false,
        };
        let procedure_ok = match (&self.procedure, request) {
            (None, _) => true,
            (Some(name), Request::Procedure(called)) => same_procedure(name, called),
            (Some(_), _) => false,
        };
        sql_ok
            && procedure_ok
            && equal_or_absent(&self.user, session.user)
            && equal_or_absent(&self.application, session.application)
            && equal_or_absent(&self.database, session.database)
    }
}

/// A rule's name condition: absent, or equal ignoring ASCII case.
pub fn equal_or_absent(wanted: &Option<String>, actual: &str) -> bool {
    wanted
        .as_deref()
        .is_none_or(|w| w.eq_ignore_ascii_case(actual))
}

/// `dbo.GetOrders`, `[dbo].[GetOrders]` and `GetOrders` name one procedure
/// when the unqualified parts agree and any schemas given agree.
pub fn same_procedure(configured: &str, called: &str) -> bool {
    let (cs, cn) = split_name(configured);
    let (ks, kn) = split_name(called);
    cn.eq_ignore_ascii_case(&kn)
        && match (cs, ks) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(&b),
            _ => true,
        }
}

fn split_name(name: &str) -> (Option<String>, String) {
    let parts: Vec<String> = name
        .split('.')
        .map(|p| {
            p.trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        })
        .collect();
    match parts.as_slice() {
        [.., schema, proc_name] => (Some(schema.clone()), proc_name.clone()),
        [proc_name] => (None, proc_name.clone()),
        [] => (None, String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_keeps_order_names_and_actions() {
        let config = crate::testing::config_with(
            r#"
[[routing.rules]]
name = "reports"
match_sql = "(?i)from reports"
target = "replica"
[[routing.rules]]
user = "batch"
target = "primary"
"#,
        );
        let rules = compile(&config.routing).expect("compiles");
        assert_eq!(rules.len(), 2);
        assert_eq!(
            (&*rules[0].name, rules[0].action),
            ("reports", RuleAction::Replica)
        );
        assert!(rules[0]
            .sql
            .as_ref()
            .is_some_and(|re| re.is_match("SELECT * FROM Reports")));
        assert_eq!(
            (&*rules[1].name, rules[1].action),
            ("#2", RuleAction::Primary)
        );
        assert_eq!(rules[1].user.as_deref(), Some("batch"));
    }
}
