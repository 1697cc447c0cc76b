//! The evidence both analyses (sqlparser walk and keyword scan) collect about
//! a batch, and how evidence becomes a [`Classification`].
//!
//! Evidence is kept per class, first reason wins, and the batch class is the
//! most restrictive class with evidence: Write, then Unknown, then
//! TransactionControl, then Read, then SessionState (a batch that only sets
//! options is SessionState; options plus reads is a Read carrying the
//! `SetOption` effects). Reasons are built lazily: only the first one of each
//! class is ever formatted.

use super::access::{push_unique, TableAccess};
use super::{beyond_nested_scope, Class, Classification, Flags, SessionEffect};

#[derive(Debug, Default, Clone)]
pub(super) struct Verdict {
    write: Option<String>,
    unknown: Option<String>,
    transaction: Option<String>,
    read: Option<String>,
    session: Option<String>,
    /// A call of a procedure the operator did not list as read-only: a
    /// write, unless the procedure catalog proves it read-only (see
    /// [`Classification::class_if_unlisted_read_only`]).
    unlisted: Option<String>,
    pub unlisted_procedures: Vec<String>,
    /// Why a read is not replica-eligible (first flagged fact).
    note: Option<String>,
    pub flags: Flags,
    pub procedures: Vec<String>,
    pub temp_tables: Vec<String>,
    pub effects: Vec<SessionEffect>,
    /// Tables read and written, normalised ([`super::access::table_name`]).
    pub read_tables: Vec<String>,
    pub written_tables: Vec<String>,
    /// The batch may touch tables not listed (any Unknown evidence too).
    pub hidden_tables: bool,
    /// The first volatile function or object, upper-cased.
    pub volatile: Option<String>,
}

fn first(slot: &mut Option<String>, reason: impl FnOnce() -> String) {
    if slot.is_none() {
        *slot = Some(reason());
    }
}

impl Verdict {
    pub fn write(&mut self, reason: impl FnOnce() -> String) {
        first(&mut self.write, reason);
    }

    /// Unknown evidence: what the batch touches is not known either.
    pub fn unknown(&mut self, reason: impl FnOnce() -> String) {
        first(&mut self.unknown, reason);
        self.hidden_tables = true;
    }

    pub fn transaction(&mut self, reason: impl FnOnce() -> String) {
        first(&mut self.transaction, reason);
    }

    pub fn read(&mut self, reason: impl FnOnce() -> String) {
        first(&mut self.read, reason);
    }

    /// A call of `name`, a procedure not in `routing.read_only_procedures`.
    pub fn unlisted_procedure(&mut self, name: &str, reason: impl FnOnce() -> String) {
        first(&mut self.unlisted, reason);
        if !self.unlisted_procedures.iter().any(|p| p == name) {
            self.unlisted_procedures.push(name.to_string());
        }
    }

    pub fn session(&mut self, reason: impl FnOnce() -> String) {
        first(&mut self.session, reason);
    }

    /// Sets `flag`; `note` explains it if the flag keeps a read off the
    /// replicas (it becomes the reason of such a read).
    pub fn flag(&mut self, flag: Flags, note: impl FnOnce() -> String) {
        self.flags |= flag;
        if flag.intersects(Flags::NOT_FOR_REPLICA) {
            first(&mut self.note, note);
        }
    }

    /// Records a temp table (`#t` or `##t`), lower-cased, once.
    pub fn temp_table(&mut self, name: &str) {
        if !self
            .temp_tables
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name))
        {
            self.temp_tables.push(name.to_lowercase());
        }
    }

    pub fn read_table(&mut self, name: String) {
        push_unique(&mut self.read_tables, name);
    }

    pub fn written_table(&mut self, name: String) {
        push_unique(&mut self.written_tables, name);
    }

    /// Records the first volatile function or object (`name` upper-cased).
    pub fn volatile(&mut self, name: impl FnOnce() -> String) {
        first(&mut self.volatile, name);
    }

    /// Tables and volatility found by another analysis of the same batch
    /// or of dynamic SQL it runs: the union, and incomplete if either is.
    fn absorb_access(&mut self, other: &mut Verdict) {
        for t in other.read_tables.drain(..) {
            self.read_table(t);
        }
        for t in other.written_tables.drain(..) {
            self.written_table(t);
        }
        self.hidden_tables |= other.hidden_tables;
        if self.volatile.is_none() {
            self.volatile = other.volatile.take();
        }
    }

    pub fn procedure(&mut self, name: String) {
        if !self.procedures.contains(&name) {
            self.procedures.push(name);
        }
    }

    /// Write evidence was found: the class is Write whatever else is.
    pub fn has_write(&self) -> bool {
        self.write.is_some()
    }

    pub fn class(&self) -> Class {
        self.class_with(self.unlisted.is_some())
    }

    /// The class with unlisted procedure calls counted as writes or, when
    /// `unlisted_write` is false, as reads.
    fn class_with(&self, unlisted_write: bool) -> Class {
        if self.write.is_some() || unlisted_write {
            Class::Write
        } else if self.unknown.is_some() {
            Class::Unknown
        } else if self.transaction.is_some() {
            Class::TransactionControl
        } else if self.read.is_some() || self.session.is_none() {
            Class::Read
        } else {
            Class::SessionState
        }
    }

    /// True when nothing positive was seen: no statement at all.
    pub fn is_empty(&self) -> bool {
        self.write.is_none()
            && self.unlisted.is_none()
            && self.unknown.is_none()
            && self.transaction.is_none()
            && self.read.is_none()
            && self.session.is_none()
    }

    fn reason(&self) -> &str {
        let slot = match self.class() {
            Class::Write if self.write.is_none() => &self.unlisted,
            Class::Write => &self.write,
            Class::Unknown => &self.unknown,
            Class::TransactionControl => &self.transaction,
            Class::SessionState => &self.session,
            Class::Read if self.flags.intersects(Flags::NOT_FOR_REPLICA) && self.note.is_some() => {
                &self.note
            }
            Class::Read => &self.read,
        };
        slot.as_deref().unwrap_or("empty batch")
    }

    /// Adds the classes and facts `other` found that `self` has not.
    /// Session effects are not taken: they come from one analysis only.
    pub fn absorb(&mut self, mut other: Verdict) {
        self.absorb_access(&mut other);
        for (mine, theirs) in [
            (&mut self.write, other.write),
            (&mut self.unknown, other.unknown),
            (&mut self.transaction, other.transaction),
            (&mut self.read, other.read),
            (&mut self.session, other.session),
            (&mut self.note, other.note),
            (&mut self.unlisted, other.unlisted),
        ] {
            if mine.is_none() {
                *mine = theirs;
            }
        }
        self.flags |= other.flags;
        for t in &other.temp_tables {
            self.temp_table(t);
        }
        for p in other.procedures {
            self.procedure(p);
        }
        for p in other.unlisted_procedures {
            if !self.unlisted_procedures.contains(&p) {
                self.unlisted_procedures.push(p);
            }
        }
    }

    /// Folds in the verdict on a dynamic SQL string run by this batch
    /// (`EXEC('...')`, `sp_executesql N'...'`) after its first `at`
    /// effects. Options set inside dynamic SQL revert when it returns, so
    /// only the effects that outlast its scope count
    /// ([`beyond_nested_scope`]), none of its ends when it runs only on some
    /// paths (`conditional`), and a settings-only string is a read. Returns
    /// how many effects it added.
    pub fn absorb_dynamic(&mut self, mut inner: Verdict, at: usize, conditional: bool) -> usize {
        self.absorb_access(&mut inner);
        let class = inner.class();
        let reason = || format!("dynamic SQL: {}", inner.reason());
        match class {
            Class::Write => self.write(reason),
            Class::Unknown => self.unknown(reason),
            Class::TransactionControl => self.transaction(reason),
            Class::Read | Class::SessionState => self.read(reason),
        }
        if let Some(note) = &inner.note {
            first(&mut self.note, || format!("dynamic SQL: {note}"));
        }
        self.flags |= inner.flags;
        for t in &inner.temp_tables {
            self.temp_table(t);
        }
        for p in inner.procedures {
            self.procedure(p);
        }
        let lasting: Vec<SessionEffect> = beyond_nested_scope(&inner.effects)
            .into_iter()
            .filter(|e| !(conditional && matches!(e, SessionEffect::Unpin(_))))
            .collect();
        let added = lasting.len();
        let at = at.min(self.effects.len());
        self.effects.splice(at..at, lasting);
        added
    }

    pub fn into_classification(self, reason_prefix: &str) -> Classification {
        let class = self.class();
        let class_if_unlisted_read_only = self.class_with(false);
        let reason = format!("{reason_prefix}{}", self.reason());
        let tables = TableAccess {
            read: self.read_tables,
            written: self.written_tables,
            complete: !self.hidden_tables && class != Class::Unknown,
        };
        Classification {
            class,
            class_if_unlisted_read_only,
            unlisted_procedures: self.unlisted_procedures,
            reason,
            flags: self.flags,
            procedures: self.procedures,
            temp_tables: self.temp_tables,
            effects: self.effects,
            tables,
            volatile: self.volatile,
        }
    }
}
