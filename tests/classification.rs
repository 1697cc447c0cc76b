//! Classification against a labelled corpus and two property tests.
//!
//! * `corpus_labels_hold`: every entry of `tests/corpus/*.sql` (format in the
//!   header of each file) is classified and `replica_eligible()` is checked
//!   against its label. All mismatches are reported at the end, the
//!   unforgivable kind (a `primary` entry eligible for a replica) apart from
//!   the costly kind (a `replica` entry sent to the primary). Both fail.
//! * `batches_with_a_write_never_go_to_a_replica`: random batches of reads
//!   around at least one statement that needs the primary.
//! * `batches_of_reads_go_to_a_replica`: random batches of reads only.
//!
//! The property tests use a small deterministic xorshift PRNG (no extra
//! crates). `SLUICE_PROPTEST_CASES` raises the number of cases (default
//! 2000), `SLUICE_PROPTEST_SEED` changes the seed.
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use sluice::classify::{Classification, Classifier};

// ---------------------------------------------------------------------------
// Corpus
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Replica,
    Primary,
}

#[derive(Debug, Clone)]
struct Entry {
    file: String,
    /// 1-based index of the entry within its file.
    index: usize,
    /// 1-based line of the `-- expect:` line.
    line: usize,
    label: Label,
    why: Vec<String>,
    sql: String,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("corpus")
}

/// Parses one corpus file: a header, then entries that each start with a
/// `-- expect: replica|primary` line, optionally followed by `-- why:` lines,
/// then the SQL up to the next `-- expect:` line or the end of the file.
fn parse_corpus(file: &str, text: &str) -> Result<Vec<Entry>, String> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut current: Option<(Entry, Vec<&str>, bool)> = None; // (entry, sql lines, still in why lines)

    fn finish(
        entries: &mut Vec<Entry>,
        current: Option<(Entry, Vec<&str>, bool)>,
    ) -> Result<(), String> {
        if let Some((mut entry, lines, _)) = current {
            let sql = lines.join("\n").trim().to_string();
            if sql.is_empty() {
                return Err(format!(
                    "{}:{}: entry #{} has no SQL",
                    entry.file, entry.line, entry.index
                ));
            }
            entry.sql = sql;
            entries.push(entry);
        }
        Ok(())
    }

    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let trimmed = line.trim();
        if let Some(rest) = strip_prefix_ci(trimmed, "-- expect:") {
            finish(&mut entries, current.take())?;
            let label = match rest.trim().to_ascii_lowercase().as_str() {
                "replica" => Label::Replica,
                "primary" => Label::Primary,
                other => {
                    return Err(format!(
                        "{file}:{}: unknown label {other:?} (expected replica or primary)",
                        n + 1
                    ))
                }
            };
            let entry = Entry {
                file: file.to_string(),
                index: entries.len() + 1,
                line: n + 1,
                label,
                why: Vec::new(),
                sql: String::new(),
            };
            current = Some((entry, Vec::new(), true));
            continue;
        }
        if let Some((entry, lines, in_why)) = current.as_mut() {
            if *in_why {
                if let Some(why) = strip_prefix_ci(trimmed, "-- why:") {
                    entry.why.push(why.trim().to_string());
                    continue;
                }
                *in_why = false;
            }
            lines.push(line);
        }
        // Lines before the first entry are the file's header.
    }
    finish(&mut entries, current)?;
    Ok(entries)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

fn read_only_procedures() -> Vec<String> {
    let path = corpus_dir().join("read_only_procedures.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn load_corpus() -> Vec<Entry> {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let entries = parse_corpus(&name, &text).unwrap_or_else(|e| panic!("{e}"));
        assert!(!entries.is_empty(), "{name} has no entries");
        all.extend(entries);
    }
    all
}

fn indent(sql: &str) -> String {
    sql.lines()
        .map(|l| format!("      | {l}\n"))
        .collect::<String>()
}

fn describe(c: &Classification) -> String {
    format!(
        "class={} flags={:#x} reason={:?} procedures={:?} temp_tables={:?} effects={:?}",
        c.class.as_str(),
        c.flags.0,
        c.reason,
        c.procedures,
        c.temp_tables,
        c.effects
    )
}

#[test]
fn corpus_format_parses() {
    let text = "-- header\n-- more header\n\n-- expect: replica\nSELECT 1 -- UPDATE t\n\n\
                -- expect: primary\n-- why: a write\n-- why: on two lines\nDELETE FROM t\n\
                WHERE a = 1\n-- expect: Replica\n-- not a why line\nSELECT 2\n";
    let entries = parse_corpus("x.sql", text).unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].label, Label::Replica);
    assert_eq!(entries[0].sql, "SELECT 1 -- UPDATE t");
    assert_eq!(entries[1].label, Label::Primary);
    assert_eq!(entries[1].why, vec!["a write", "on two lines"]);
    assert_eq!(entries[1].sql, "DELETE FROM t\nWHERE a = 1");
    assert_eq!(entries[1].line, 7);
    assert_eq!(entries[2].sql, "-- not a why line\nSELECT 2");
    assert!(parse_corpus("x.sql", "-- expect: maybe\nSELECT 1").is_err());
    assert!(parse_corpus(
        "x.sql",
        "-- expect: primary\n\n-- expect: replica\nSELECT 1"
    )
    .is_err());
}

#[test]
fn corpus_labels_hold() {
    let procs = read_only_procedures();
    let classifier = Classifier::new(1024, &procs);
    let corpus = load_corpus();

    let mut per_file: Vec<(String, usize, usize)> = Vec::new(); // (file, replica, primary)
    let mut unforgivable = Vec::new(); // labelled primary, eligible
    let mut costly = Vec::new(); // labelled replica, not eligible
    let mut panics = Vec::new();
    let mut unstable = Vec::new(); // second classification (cache) disagrees

    for entry in &corpus {
        match per_file.last_mut() {
            Some((f, r, p)) if *f == entry.file => match entry.label {
                Label::Replica => *r += 1,
                Label::Primary => *p += 1,
            },
            _ => per_file.push((
                entry.file.clone(),
                (entry.label == Label::Replica) as usize,
                (entry.label == Label::Primary) as usize,
            )),
        }
        let first = match catch_unwind(AssertUnwindSafe(|| classifier.classify(&entry.sql))) {
            Ok(c) => c,
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panics.push((entry.clone(), msg));
                continue;
            }
        };
        let again = classifier.classify(&entry.sql);
        if *again != *first {
            unstable.push((entry.clone(), describe(&first), describe(&again)));
        }
        let eligible = first.replica_eligible();
        match (entry.label, eligible) {
            (Label::Primary, true) => unforgivable.push((entry.clone(), describe(&first))),
            (Label::Replica, false) => costly.push((entry.clone(), describe(&first))),
            _ => {}
        }
    }

    let mut report = String::new();
    let total = corpus.len();
    writeln!(report, "corpus: {total} entries").unwrap();
    for (file, r, p) in &per_file {
        writeln!(
            report,
            "  {file:<24} {:>4} ({r} replica, {p} primary)",
            r + p
        )
        .unwrap();
    }
    writeln!(report, "read-only procedures: {procs:?}").unwrap();

    let section = |report: &mut String, title: &str, items: &[(Entry, String)]| {
        writeln!(report, "\n{title}: {}", items.len()).unwrap();
        for (e, got) in items {
            writeln!(
                report,
                "  {} #{} (line {}), label={:?}\n    got: {got}",
                e.file, e.index, e.line, e.label
            )
            .unwrap();
            for why in &e.why {
                writeln!(report, "    why: {why}").unwrap();
            }
            report.push_str(&indent(&e.sql));
        }
    };
    section(
        &mut report,
        "UNFORGIVABLE: labelled primary but replica_eligible() == true",
        &unforgivable,
    );
    section(
        &mut report,
        "COSTLY: labelled replica but routed to the primary",
        &costly,
    );
    writeln!(report, "\nPANICKED: {}", panics.len()).unwrap();
    for (e, msg) in &panics {
        writeln!(report, "  {} #{} (line {}): {msg}", e.file, e.index, e.line).unwrap();
        report.push_str(&indent(&e.sql));
    }
    writeln!(
        report,
        "\nUNSTABLE (cached result differs): {}",
        unstable.len()
    )
    .unwrap();
    for (e, a, b) in &unstable {
        writeln!(
            report,
            "  {} #{} (line {})\n    first: {a}\n    again: {b}",
            e.file, e.index, e.line
        )
        .unwrap();
    }
    println!("{report}");

    assert!(
        total >= 300,
        "the corpus must hold at least 300 entries, it has {total}"
    );
    assert!(
        unforgivable.is_empty() && costly.is_empty() && panics.is_empty() && unstable.is_empty(),
        "{} unforgivable, {} costly, {} panicked, {} unstable (report above)",
        unforgivable.len(),
        costly.len(),
        panics.len(),
        unstable.len()
    );
}

// ---------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------

/// xorshift64* — deterministic, good enough to pick templates.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

fn cases() -> usize {
    std::env::var("SLUICE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn seed(salt: u64) -> u64 {
    let base = std::env::var("SLUICE_PROPTEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED_51C3_u64);
    base ^ salt
}

/// One generated statement. `needs_terminator`: the statement after it must be
/// separated by `;` (EXEC argument lists, MERGE); `starts_with_with`: the
/// statement before it must end with `;` (T-SQL requires it before WITH).
struct Stmt {
    sql: String,
    needs_terminator: bool,
    starts_with_with: bool,
}

impl Stmt {
    fn new(sql: String) -> Stmt {
        let starts_with_with = sql.trim_start().to_ascii_uppercase().starts_with("WITH");
        Stmt {
            sql,
            needs_terminator: false,
            starts_with_with,
        }
    }

    fn terminated(mut self) -> Stmt {
        self.needs_terminator = true;
        self
    }
}

/// Generates T-SQL pieces with random casing, whitespace, comments, quoting.
struct Gen<'a> {
    rng: &'a mut Rng,
    /// Counter for unique variable names within a batch.
    var: usize,
    adversarial: bool,
}

const PLAIN_TABLES: &[&str] = &[
    "Orders",
    "Customers",
    "order_items",
    "Products",
    "Invoices",
    "Kunden",
    "Größe",
    "events2024",
    "tbl_users",
    "AuditTrail",
    "Ñandú",
];
const PLAIN_COLUMNS: &[&str] = &[
    "Id",
    "Name",
    "Total",
    "CreatedAt",
    "status",
    "Qty",
    "Größe",
    "customer_id",
    "Note",
];
/// Names only usable quoted: keywords, spaces, `]]` escapes, Unicode.
const QUOTED_NAMES: &[&str] = &[
    "update",
    "delete",
    "insert",
    "merge",
    "drop",
    "select",
    "exec",
    "into",
    "truncate",
    "Order Details",
    "we]]ird",
    "名前",
];
/// Legal but odd names: comment, string and statement openers inside a
/// bracketed identifier, which a lexer that ignores brackets would misread
/// (and, after a `[/*]`, could miss a following write).
const ADVERSARIAL_NAMES: &[&str] = &["x;DELETE FROM y", "/*", "--x", "'", "a]];DROP TABLE t;--"];
const STRINGS: &[&str] = &[
    "'DELETE FROM x'",
    "N'UPDATE t SET a = 1'",
    "'it''s an INSERT'",
    "'; DROP TABLE y; --'",
    "'/* INSERT */'",
    "'/*'",
    "'-- MERGE'",
    "'C:\\temp\\'",
    "'EXEC sp_who'",
    "'SELECT 1 INTO #t'",
    "'WITH (UPDLOCK)'",
    "'BEGIN TRAN'",
    "N'Größe ü'",
    "''",
    "'['",
    "'\"'",
];
const COMMENTS: &[&str] = &[
    "/* DELETE FROM x */",
    "/* outer /* UPDATE t */ still comment */",
    "/* ' */",
    "/* [ */",
    "-- INSERT INTO t\n",
    "-- ' unbalanced quote\n",
    "--\n",
];
/// Procedures that are not declared read-only (some look like listed ones).
const WRITE_PROCS: &[&str] = &[
    "dbo.UpdateInventory",
    "usp_PurgeOld",
    "[sales].[GetOrderSummary]",
    "dbo.GetOrderSummaryV2",
    "ReportTopProductsAndLog",
    "sp_rename",
];
const READ_PROCS: &[&str] = &[
    "dbo.GetOrderSummary",
    "[dbo].[GetOrderSummary]",
    "DBO.GETORDERSUMMARY",
    "reporting.usp_SalesByMonth",
    "ReportTopProducts",
];

fn read_only_list() -> Vec<String> {
    [
        "dbo.GetOrderSummary",
        "reporting.usp_SalesByMonth",
        "ReportTopProducts",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl Gen<'_> {
    /// A keyword in random casing.
    fn k(&mut self, word: &str) -> String {
        match self.rng.below(4) {
            0 | 1 => word.to_ascii_uppercase(),
            2 => word.to_ascii_lowercase(),
            _ => word
                .chars()
                .map(|c| {
                    if self.rng.chance(50) {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect(),
        }
    }

    fn exec_keyword(&mut self) -> String {
        let word = if self.rng.chance(50) {
            "EXEC"
        } else {
            "EXECUTE"
        };
        self.k(word)
    }

    /// A name that has to be quoted; the write property also draws names
    /// built to fool a lexer that ignores brackets.
    fn odd_name(&mut self) -> &'static str {
        if self.adversarial && self.rng.chance(40) {
            self.rng.pick(ADVERSARIAL_NAMES)
        } else {
            self.rng.pick(QUOTED_NAMES)
        }
    }

    /// Whitespace between tokens: mostly a space, sometimes newlines, tabs or
    /// a comment containing write keywords.
    fn ws(&mut self) -> String {
        match self.rng.below(20) {
            0 => "\n".into(),
            1 => "\r\n    ".into(),
            2 => "\t".into(),
            3 => "   ".into(),
            4 => format!(" {} ", self.rng.pick(COMMENTS)),
            _ => " ".into(),
        }
    }

    fn quoted(&mut self, name: &str) -> String {
        if self.rng.chance(85) {
            format!("[{name}]")
        } else if !name.contains('"') && !name.contains(']') {
            format!("\"{name}\"")
        } else {
            format!("[{name}]")
        }
    }

    fn table(&mut self) -> String {
        let schema = match self.rng.below(6) {
            0 => "dbo.",
            1 => "[dbo].",
            2 => "sales.",
            _ => "",
        };
        let name = if self.rng.chance(25) {
            let n = self.odd_name();
            self.quoted(n)
        } else {
            let n = self.rng.pick(PLAIN_TABLES);
            let n = if self.rng.chance(30) {
                format!("{n}_{}", self.rng.below(100))
            } else {
                n.to_string()
            };
            if self.rng.chance(40) {
                format!("[{n}]")
            } else {
                n
            }
        };
        format!("{schema}{name}")
    }

    fn column(&mut self) -> String {
        if self.rng.chance(25) {
            let n = self.odd_name();
            self.quoted(n)
        } else {
            let n = self.rng.pick(PLAIN_COLUMNS);
            if self.rng.chance(40) {
                format!("[{n}]")
            } else {
                n.to_string()
            }
        }
    }

    fn columns(&mut self) -> String {
        if self.rng.chance(15) {
            return "*".into();
        }
        let n = 1 + self.rng.below(4);
        (0..n).map(|_| self.column()).collect::<Vec<_>>().join(", ")
    }

    fn string(&mut self) -> String {
        self.rng.pick(STRINGS).to_string()
    }

    fn value(&mut self) -> String {
        match self.rng.below(4) {
            0 => self.string(),
            1 => format!("@p{}", self.rng.below(10)),
            2 => format!("@P{}", self.rng.below(10)),
            _ => self.rng.below(100_000).to_string(),
        }
    }

    fn predicate(&mut self) -> String {
        let (c, v) = (self.column(), self.value());
        let w = self.ws();
        match self.rng.below(4) {
            0 => format!("{c}{w}={w}{v}"),
            1 => format!("{c} {} {}", self.k("LIKE"), self.string()),
            2 => format!("{c} {} {}", self.k("IS NOT NULL"), ""),
            _ => format!("{c} {} ({v}, {})", self.k("IN"), self.value()),
        }
    }

    fn var(&mut self) -> String {
        self.var += 1;
        format!("@v{}", self.var)
    }

    /// A statement that only reads and pins nothing, sometimes inside
    /// IF/ELSE, TRY/CATCH, WHILE or BEGIN/END.
    fn read(&mut self) -> Stmt {
        let s = if self.rng.chance(70) {
            self.read_simple()
        } else {
            self.read_more()
        };
        if self.rng.chance(15) {
            self.wrap(s, false)
        } else {
            s
        }
    }

    /// A statement that needs the primary, sometimes nested in control flow.
    fn write(&mut self) -> Stmt {
        let s = if self.rng.chance(80) {
            self.write_simple()
        } else {
            self.write_more()
        };
        if self.rng.chance(20) {
            self.wrap(s, true)
        } else {
            s
        }
    }

    /// Puts a statement inside a control-of-flow block. `allow_session`:
    /// the condition may use @@ROWCOUNT (a session function the classifier
    /// may conservatively flag; only used around writes).
    fn wrap(&mut self, inner: Stmt, allow_session: bool) -> Stmt {
        // `BEGIN ;WITH ...` would be dubious T-SQL (`BEGIN;` reads as a
        // transaction to some parsers): leave CTE statements unwrapped.
        if inner.starts_with_with {
            return inner;
        }
        let body = inner.sql;
        let cond = match self.rng.below(if allow_session { 4 } else { 3 }) {
            0 => format!(
                "{} (SELECT 1 {} {} {} {})",
                self.k("EXISTS"),
                self.k("FROM"),
                self.table(),
                self.k("WHERE"),
                self.predicate()
            ),
            1 => "1 = 1".to_string(),
            2 => format!("{} > {}", self.value(), self.rng.below(10)),
            _ => "@@ROWCOUNT = 0".to_string(),
        };
        let w = self.ws();
        let sql = match self.rng.below(6) {
            0 => format!(
                "{} {cond}{w}{} {body}; {}",
                self.k("IF"),
                self.k("BEGIN"),
                self.k("END")
            ),
            1 => format!(
                "{} {cond} {} {}{w}{} {} {body}; {}",
                self.k("IF"),
                self.k("SELECT"),
                self.string(),
                self.k("ELSE"),
                self.k("BEGIN"),
                self.k("END")
            ),
            2 => format!(
                "{}{w}{body};{w}{} {} ERROR_MESSAGE(); {}",
                self.k("BEGIN TRY"),
                self.k("END TRY BEGIN CATCH"),
                self.k("SELECT"),
                self.k("END CATCH")
            ),
            3 => format!(
                "{} {} 1/0; {}{w}{body};{w}{}",
                self.k("BEGIN TRY"),
                self.k("SELECT"),
                self.k("END TRY BEGIN CATCH"),
                self.k("END CATCH")
            ),
            4 => format!(
                "{} {cond} {}{w}{body}; {}; {}",
                self.k("WHILE"),
                self.k("BEGIN"),
                self.k("BREAK"),
                self.k("END")
            ),
            _ => format!("{}{w}{body};{w}{}", self.k("BEGIN"), self.k("END")),
        };
        Stmt::new(sql)
    }

    /// More reads: the T-SQL parsers find hard.
    fn read_more(&mut self) -> Stmt {
        let w = self.ws();
        match self.rng.below(9) {
            0 => {
                let v = self.var();
                Stmt::new(format!(
                    "{} {v} {};{w}{} {v} = {}({}) {} {};{w}{} {v}",
                    self.k("DECLARE"),
                    self.k("int"),
                    self.k("SELECT"),
                    self.k("COUNT"),
                    self.column(),
                    self.k("FROM"),
                    self.table(),
                    self.k("SELECT")
                ))
            }
            1 => Stmt::new(format!(
                "{} * {} ({} {}, {}, {} {} {}) {} s {} ({}({}) {} {} {} ([a], [b], [UPDATE])) {} p",
                self.k("SELECT"),
                self.k("FROM"),
                self.k("SELECT"),
                self.column(),
                self.column(),
                self.column(),
                self.k("FROM"),
                self.table(),
                self.k("AS"),
                self.k("PIVOT"),
                self.k("SUM"),
                self.column(),
                self.k("FOR"),
                self.column(),
                self.k("IN"),
                self.k("AS")
            )),
            2 => Stmt::new(format!(
                "{} j.x, j.y {} {}({}) {} (x int '$.x', y nvarchar(100) '$.delete') {} j",
                self.k("SELECT"),
                self.k("FROM"),
                self.k("OPENJSON"),
                self.value(),
                self.k("WITH"),
                self.k("AS")
            )),
            3 => Stmt::new(format!(
                "{} {}({}, ', ') {} ({} {}) {} {} {} {}",
                self.k("SELECT"),
                self.k("STRING_AGG"),
                self.column(),
                self.k("WITHIN GROUP"),
                self.k("ORDER BY"),
                self.column(),
                self.k("FROM"),
                self.table(),
                self.k("GROUP BY"),
                self.column()
            )),
            4 => Stmt::new(format!(
                "{} (10) {} {} {} {} {} {}",
                self.k("SELECT TOP"),
                self.k("PERCENT WITH TIES"),
                self.column(),
                self.k("FROM"),
                self.table(),
                self.k("ORDER BY"),
                self.column()
            )),
            5 => Stmt::new(format!(
                "{} {} {} {} {} {} {}",
                self.k("SELECT"),
                self.columns(),
                self.k("FROM"),
                self.table(),
                self.k("(NOLOCK)"),
                self.k("WHERE"),
                self.predicate()
            )),
            6 => Stmt::new(format!(
                "{} r (n) {} ({} 1 {} {} n + 1 {} r {} n < {}){w}{} n {} r {}",
                self.k("WITH"),
                self.k("AS"),
                self.k("SELECT"),
                self.k("UNION ALL"),
                self.k("SELECT"),
                self.k("FROM"),
                self.k("WHERE"),
                1 + self.rng.below(50),
                self.k("SELECT"),
                self.k("FROM"),
                self.k("OPTION (MAXRECURSION 100)")
            )),
            7 => Stmt::new(format!(
                "{} {} {} {} {} '2024-01-01' {} {}",
                self.k("SELECT"),
                self.columns(),
                self.k("FROM"),
                self.table(),
                self.k("FOR SYSTEM_TIME AS OF"),
                self.k("WHERE"),
                self.predicate()
            )),
            _ => {
                let inner = format!(
                    "{} {} {} {} {} {} = @id",
                    self.k("SELECT"),
                    self.columns(),
                    self.k("FROM"),
                    self.table(),
                    self.k("WHERE"),
                    self.column()
                );
                Stmt::new(format!(
                    "{} sp_executesql N'{}', N'@id int', @id = {}",
                    self.k("EXEC"),
                    inner.replace('\'', "''"),
                    self.rng.below(100)
                ))
                .terminated()
            }
        }
    }

    /// More statements that need the primary.
    fn write_more(&mut self) -> Stmt {
        let w = self.ws();
        match self.rng.below(7) {
            0 => {
                let v = self.var();
                Stmt::new(format!(
                    "{} {v} {} (id int);{w}{} o {} o.{} = {} {} {} {} o {} {v} {} i {} i.id = o.{}",
                    self.k("DECLARE"),
                    self.k("TABLE"),
                    self.k("UPDATE"),
                    self.k("SET"),
                    self.column(),
                    self.value(),
                    self.k("FROM"),
                    self.table(),
                    self.k("AS"),
                    self.k("JOIN"),
                    self.k("AS"),
                    self.k("ON"),
                    self.column()
                ))
            }
            1 => {
                let p = self.rng.pick(READ_PROCS);
                Stmt::new(format!(
                    "{} {} {} {p} {}",
                    self.k("INSERT INTO"),
                    self.table(),
                    self.k("EXEC"),
                    self.value()
                ))
                .terminated()
            }
            2 => Stmt::new(format!(
                "{} c {} ({} * {} {}){w}{} * {} {} {} c",
                self.k("WITH"),
                self.k("AS"),
                self.k("SELECT"),
                self.k("FROM"),
                self.table(),
                self.k("SELECT"),
                self.k("INTO"),
                self.table(),
                self.k("FROM")
            )),
            3 => Stmt::new(format!(
                "{} {} ({}) {} d.{} {} ({} {} {} deleted.{} {} {}) {} d",
                self.k("INSERT INTO"),
                self.table(),
                self.column(),
                self.k("SELECT"),
                self.column(),
                self.k("FROM"),
                self.k("DELETE FROM"),
                self.table(),
                self.k("OUTPUT"),
                self.column(),
                self.k("WHERE"),
                self.predicate(),
                self.k("AS")
            )),
            4 => Stmt::new(format!(
                "{} {} {} {} {} ({} {} {} {} {})",
                self.k("DELETE FROM"),
                self.table(),
                self.k("WHERE"),
                self.column(),
                self.k("IN"),
                self.k("SELECT"),
                self.column(),
                self.k("FROM"),
                self.table(),
                self.k("WHERE 1 = 1")
            )),
            5 => Stmt::new(format!(
                "{} {} {} {} = {} {} inserted.* {} {}",
                self.k("UPDATE"),
                self.table(),
                self.k("SET"),
                self.column(),
                self.value(),
                self.k("OUTPUT"),
                self.k("WHERE"),
                self.predicate()
            )),
            _ => Stmt::new(format!(
                "{}('{} {}') {} [ReportingServer]",
                self.k("EXEC"),
                self.k("SELECT * FROM"),
                self.table().replace('\'', "''"),
                self.k("AT")
            ))
            .terminated(),
        }
    }

    fn read_simple(&mut self) -> Stmt {
        let w = self.ws();
        match self.rng.below(20) {
            0 => Stmt::new(format!(
                "{} {}{w}{} {} {} {}",
                self.k("SELECT"),
                self.columns(),
                self.k("FROM"),
                self.table(),
                self.k("WHERE"),
                self.predicate()
            )),
            1 => Stmt::new(format!(
                "{} ({}) {} {} {} {}{w}{} {} {}",
                self.k("SELECT TOP"),
                1 + self.rng.below(100),
                self.columns(),
                self.k("FROM"),
                self.table(),
                self.k("WITH (NOLOCK)"),
                self.k("ORDER BY"),
                self.column(),
                self.k("DESC")
            )),
            2 => Stmt::new(format!(
                "{} {} {} a {} {} {} b {} a.{} = b.{}",
                self.k("SELECT COUNT(*)"),
                self.k("FROM"),
                self.table(),
                self.k("JOIN"),
                self.table(),
                self.k("AS"),
                self.k("ON"),
                self.column(),
                self.column()
            )),
            3 => Stmt::new(format!(
                "{} {}, {}() {} ({} {} {} {}) {} rn {} {}",
                self.k("SELECT"),
                self.column(),
                self.k("ROW_NUMBER"),
                self.k("OVER"),
                self.k("PARTITION BY"),
                self.column(),
                self.k("ORDER BY"),
                self.column(),
                self.k("AS"),
                self.k("FROM"),
                self.table()
            )),
            4 => Stmt::new(format!(
                "{} c {} ({} {} {} {}){w}{} * {} c",
                self.k("WITH"),
                self.k("AS"),
                self.k("SELECT"),
                self.column(),
                self.k("FROM"),
                self.table(),
                self.k("SELECT"),
                self.k("FROM")
            )),
            5 => Stmt::new(format!(
                "{} {} {} {} {} {} {} {} {} {} {} {} {}",
                self.k("SELECT"),
                self.columns(),
                self.k("FROM"),
                self.table(),
                self.k("ORDER BY"),
                self.column(),
                self.k("OFFSET"),
                self.rng.below(1000),
                self.k("ROWS FETCH NEXT"),
                1 + self.rng.below(50),
                self.k("ROWS"),
                self.k("ONLY"),
                ""
            )),
            6 => Stmt::new(format!(
                "{} {} {} {}{w}{}{w}{} {} {} {}",
                self.k("SELECT"),
                self.column(),
                self.k("FROM"),
                self.table(),
                self.k("UNION ALL"),
                self.k("SELECT"),
                self.column(),
                self.k("FROM"),
                self.table()
            )),
            7 => Stmt::new(format!(
                "{} {} {} {}",
                self.k("SELECT"),
                self.string(),
                self.k("AS"),
                self.column()
            )),
            8 => Stmt::new(format!(
                "{} {} {} (SELECT 1 {} {} {} {}) {} 1 {} 0 {}",
                self.k("SELECT CASE"),
                self.k("WHEN EXISTS"),
                "",
                self.k("FROM"),
                self.table(),
                self.k("WHERE"),
                self.predicate(),
                self.k("THEN"),
                self.k("ELSE"),
                self.k("END")
            )),
            9 => Stmt::new(format!(
                "{} {} {} {} {} {} {} ({} {} {} {} {} {} {} {})",
                self.k("SELECT"),
                self.column(),
                self.k("FROM"),
                self.table(),
                self.k("WHERE"),
                self.column(),
                self.k("IN"),
                self.k("SELECT"),
                self.column(),
                self.k("FROM"),
                self.table(),
                self.k("WHERE"),
                self.column(),
                self.k("LIKE"),
                self.string()
            )),
            10 => {
                let suffix = if self.rng.chance(50) {
                    "FOR JSON PATH"
                } else {
                    "FOR XML AUTO"
                };
                Stmt::new(format!(
                    "{} {} {} {} {}",
                    self.k("SELECT"),
                    self.columns(),
                    self.k("FROM"),
                    self.table(),
                    self.k(suffix)
                ))
            }
            11 => {
                let v = self.var();
                Stmt::new(format!(
                    "{} {v} {} = {};{w}{} {v} {} x",
                    self.k("DECLARE"),
                    self.k("int"),
                    self.rng.below(1000),
                    self.k("SELECT"),
                    self.k("AS")
                ))
            }
            12 => Stmt::new(format!(
                "{} {} {} {} {} {} {} > {}",
                self.k("SELECT"),
                self.column(),
                self.k("FROM"),
                self.table(),
                self.k("WITH (READPAST)"),
                self.k("WHERE"),
                self.column(),
                self.rng.below(1000)
            )),
            13 => Stmt::new(format!(
                "{} {}, {} {} {} a {} ({} 1 {} {} {}) x",
                self.k("SELECT"),
                self.column(),
                self.string(),
                self.k("FROM"),
                self.table(),
                self.k("CROSS APPLY"),
                self.k("SELECT TOP"),
                self.column(),
                self.k("FROM"),
                self.table()
            )),
            14 => Stmt::new(format!(
                "{} {}({} > 0, {}, {}) {} {}",
                self.k("SELECT"),
                self.k("IIF"),
                self.column(),
                self.string(),
                self.string(),
                self.k("FROM"),
                self.table()
            )),
            15 => Stmt::new(format!("{}{w}1", self.k("SELECT"))),
            16 => {
                let p = self.rng.pick(READ_PROCS);
                let exec = self.exec_keyword();
                Stmt::new(format!("{exec} {p} {}", self.value())).terminated()
            }
            17 => {
                let v = self.var();
                Stmt::new(format!(
                    "{} {v} {} (id int);{w}{} {v} (id) {} {} {} {};{w}{} {v} {} id = id + 1;{w}{} * {} {v}",
                    self.k("DECLARE"),
                    self.k("TABLE"),
                    self.k("INSERT INTO"),
                    self.k("SELECT"),
                    self.column(),
                    self.k("FROM"),
                    self.table(),
                    self.k("UPDATE"),
                    self.k("SET"),
                    self.k("SELECT"),
                    self.k("FROM")
                ))
            }
            18 => Stmt::new(format!(
                "{} {} {} {} {} {}",
                self.k("SET NOCOUNT ON;"),
                self.k("SELECT"),
                self.columns(),
                self.k("FROM"),
                self.table(),
                self.k("OPTION (RECOMPILE)")
            )),
            _ => Stmt::new(format!(
                "{} {} {} {} {} {} {} {} {}",
                self.k("IF EXISTS (SELECT 1 FROM"),
                self.table(),
                self.k(")"),
                self.k("SELECT"),
                self.string(),
                self.k("ELSE SELECT"),
                self.column(),
                self.k("FROM"),
                self.table()
            )),
        }
    }

    /// A statement that needs the primary: a write, or something that takes
    /// write locks, or creates/uses state that lives on the primary.
    fn write_simple(&mut self) -> Stmt {
        let w = self.ws();
        match self.rng.below(26) {
            0 => Stmt::new(format!(
                "{} {} ({}) {} ({})",
                self.k("INSERT INTO"),
                self.table(),
                self.column(),
                self.k("VALUES"),
                self.value()
            )),
            1 => Stmt::new(format!(
                "{} {} ({}) {} {} {} {}",
                self.k("INSERT"),
                self.table(),
                self.column(),
                self.k("SELECT"),
                self.column(),
                self.k("FROM"),
                self.table()
            )),
            2 => Stmt::new(format!(
                "{}{w}{} {} {} = {} {} {}",
                self.k("UPDATE"),
                self.table(),
                self.k("SET"),
                self.column(),
                self.value(),
                self.k("WHERE"),
                self.predicate()
            )),
            3 => Stmt::new(format!(
                "{} (10) {} {} {} = {}",
                self.k("UPDATE TOP"),
                self.table(),
                self.k("SET"),
                self.column(),
                self.value()
            )),
            4 => Stmt::new(format!(
                "{} {}{w}{} {}",
                self.k("DELETE FROM"),
                self.table(),
                self.k("WHERE"),
                self.predicate()
            )),
            5 => Stmt::new(format!("{} {}", self.k("DELETE"), self.table())),
            6 => Stmt::new(format!(
                "{} {} {} t {} {} {} s {} t.{} = s.{} {} {} t.{} = s.{};",
                self.k("MERGE"),
                self.table(),
                self.k("AS"),
                self.k("USING"),
                self.table(),
                self.k("AS"),
                self.k("ON"),
                self.column(),
                self.column(),
                self.k("WHEN MATCHED THEN"),
                self.k("UPDATE SET"),
                self.column(),
                self.column()
            ))
            .terminated(),
            7 => Stmt::new(format!(
                "{} {} {} {} {} {}",
                self.k("SELECT"),
                self.columns(),
                self.k("INTO"),
                self.table(),
                self.k("FROM"),
                self.table()
            )),
            8 => Stmt::new(format!(
                "{} {} {} #tmp{} {} {}",
                self.k("SELECT"),
                self.columns(),
                self.k("INTO"),
                self.rng.below(10),
                self.k("FROM"),
                self.table()
            )),
            9 => {
                let p = self.rng.pick(WRITE_PROCS);
                let exec = self.exec_keyword();
                Stmt::new(format!("{exec} {p} {}", self.value())).terminated()
            }
            10 => Stmt::new(format!(
                "{} {} (id int {})",
                self.k("CREATE TABLE"),
                self.table(),
                self.k("NOT NULL")
            )),
            11 => Stmt::new(format!(
                "{} {} {} {} int {}",
                self.k("ALTER TABLE"),
                self.table(),
                self.k("ADD"),
                self.column(),
                self.k("NULL")
            )),
            12 => Stmt::new(format!("{} {}", self.k("DROP TABLE"), self.table())),
            13 => Stmt::new(format!(
                "{} ix_{} {} {} ({})",
                self.k("CREATE INDEX"),
                self.rng.below(1000),
                self.k("ON"),
                self.table(),
                self.column()
            )),
            14 => Stmt::new(format!("{} {}", self.k("TRUNCATE TABLE"), self.table())),
            15 => Stmt::new(format!(
                "{} d {} ({} (5) * {} {} {} {}){w}{} {} d",
                self.k("WITH"),
                self.k("AS"),
                self.k("SELECT TOP"),
                self.k("FROM"),
                self.table(),
                self.k("ORDER BY"),
                self.column(),
                self.k("DELETE"),
                self.k("FROM")
            )),
            16 => Stmt::new(format!(
                "{} u {} ({} * {} {}){w}{} u {} {} = {}",
                self.k("WITH"),
                self.k("AS"),
                self.k("SELECT"),
                self.k("FROM"),
                self.table(),
                self.k("UPDATE"),
                self.k("SET"),
                self.column(),
                self.value()
            )),
            17 => Stmt::new(format!(
                "{}('{} {}')",
                self.k("EXEC"),
                self.k("DELETE FROM"),
                self.table().replace('\'', "''")
            ))
            .terminated(),
            18 => Stmt::new(format!(
                "{} sp_executesql N'{} {} {} x = 1'",
                self.k("EXEC"),
                self.k("UPDATE"),
                self.table().replace('\'', "''"),
                self.k("SET")
            ))
            .terminated(),
            19 => Stmt::new(format!("{} (@sql)", self.k("EXEC"))).terminated(),
            20 => {
                let hint = self.rng.pick(&[
                    "WITH (UPDLOCK)",
                    "WITH (UPDLOCK, ROWLOCK)",
                    "WITH (XLOCK)",
                    "WITH (HOLDLOCK)",
                    "WITH (TABLOCKX)",
                    "WITH (SERIALIZABLE)",
                    "WITH (REPEATABLEREAD)",
                    "WITH (NOLOCK, UPDLOCK)",
                    "WITH (READPAST, UPDLOCK)",
                    "(UPDLOCK)",
                ]);
                Stmt::new(format!(
                    "{} {} {} {} {} {} {}",
                    self.k("SELECT"),
                    self.columns(),
                    self.k("FROM"),
                    self.table(),
                    self.k(hint),
                    self.k("WHERE"),
                    self.predicate()
                ))
            }
            21 => Stmt::new(format!(
                "{} {}",
                self.k("SELECT NEXT VALUE FOR"),
                self.table()
            )),
            22 => {
                let get_id = self.rng.pick(&[
                    "SELECT SCOPE_IDENTITY()",
                    "SELECT @@IDENTITY",
                    "SELECT CAST(SCOPE_IDENTITY() AS int)",
                ]);
                Stmt::new(format!(
                    "{} {} ({}) {} ({});{w}{}",
                    self.k("INSERT INTO"),
                    self.table(),
                    self.column(),
                    self.k("VALUES"),
                    self.value(),
                    self.k(get_id)
                ))
            }
            23 => Stmt::new(format!(
                "{} {} {} {} {} {}",
                self.k("DELETE FROM"),
                self.table(),
                self.k("OUTPUT"),
                self.k("deleted.*"),
                self.k("WHERE"),
                self.predicate()
            )),
            24 => Stmt::new(format!(
                "{} {} {} {} {} {} ({}) {} ({}) {}",
                self.k("IF NOT EXISTS (SELECT 1 FROM"),
                self.table(),
                self.k(")"),
                self.k("BEGIN"),
                self.k("INSERT INTO"),
                self.table(),
                self.column(),
                self.k("VALUES"),
                self.value(),
                self.k("END")
            )),
            _ => {
                let stmt = self.rng.pick(&[
                    "BEGIN TRAN",
                    "BEGIN TRANSACTION",
                    "SET IDENTITY_INSERT dbo.Orders ON",
                    // The level only matters for what runs after it: keep a read behind it.
                    "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SELECT Id FROM dbo.Accounts",
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ SELECT Id FROM dbo.Accounts",
                    "BULK INSERT dbo.Orders FROM 'c:\\x.csv'",
                    "DBCC CHECKIDENT ('dbo.Orders', RESEED, 0)",
                    "CREATE TABLE #work (id int)",
                    "SELECT * FROM #work",
                    "SELECT * FROM [#work]",
                    "SELECT * FROM \"#work\"",
                    "SELECT * FROM [##work]",
                    "UPDATE STATISTICS dbo.Orders",
                    "EXEC sp_getapplock @Resource = 'r', @LockMode = 'Exclusive', @LockOwner = 'Session'",
                ]);
                Stmt::new(self.k(stmt)).terminated()
            }
        }
    }

    /// Joins statements into one batch, with `;`, newlines or just a space.
    fn batch(&mut self, stmts: &[Stmt]) -> String {
        let mut out = String::new();
        if self.rng.chance(10) {
            let comment = self.rng.pick(COMMENTS);
            out.push_str(comment);
            out.push('\n');
        }
        if self.rng.chance(10) {
            out.push_str(&self.k("SET NOCOUNT ON;"));
            out.push('\n');
        }
        for (i, s) in stmts.iter().enumerate() {
            if i > 0 {
                let prev = &stmts[i - 1];
                if prev.needs_terminator || s.starts_with_with {
                    out.push(';');
                    out.push_str(if self.rng.chance(50) { "\n" } else { " " });
                } else {
                    let sep = self
                        .rng
                        .pick(&[";", ";\n", "; ", "\n", "\r\n", " ;  ", "\n\n", " "]);
                    out.push_str(sep);
                }
            }
            out.push_str(&s.sql);
        }
        if self.rng.chance(30) {
            out.push(';');
        }
        if self.rng.chance(10) {
            out.push_str(" -- trailing UPDATE comment");
        }
        out
    }
}

#[test]
fn batches_with_a_write_never_go_to_a_replica() {
    let classifier = Classifier::new(1024, &read_only_list());
    let mut rng = Rng::new(seed(0xA11CE));
    let n = cases();
    let mut failures = Vec::new();
    for case in 0..n {
        let mut g = Gen {
            rng: &mut rng,
            var: 0,
            adversarial: true,
        };
        let reads = g.rng.below(6);
        let writes = 1 + usize::from(g.rng.chance(20));
        let mut stmts: Vec<Stmt> = (0..reads).map(|_| g.read()).collect();
        stmts.extend((0..writes).map(|_| g.write()));
        g.rng.shuffle(&mut stmts);
        let sql = g.batch(&stmts);
        let c = classifier.classify(&sql);
        if c.replica_eligible() {
            failures.push(format!(
                "case {case}: eligible for a replica: {}\n{}",
                describe(&c),
                indent(&sql)
            ));
        }
    }
    for f in &failures {
        println!("{f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {n} batches containing a write were eligible for a replica (printed above)",
        failures.len()
    );
}

#[test]
fn batches_of_reads_go_to_a_replica() {
    let classifier = Classifier::new(1024, &read_only_list());
    let mut rng = Rng::new(seed(0xBEEF));
    let n = cases();
    let mut failures = Vec::new();
    for case in 0..n {
        let mut g = Gen {
            rng: &mut rng,
            var: 0,
            adversarial: false,
        };
        let reads = 1 + g.rng.below(5);
        let stmts: Vec<Stmt> = (0..reads).map(|_| g.read()).collect();
        let sql = g.batch(&stmts);
        let c = classifier.classify(&sql);
        if !c.replica_eligible() {
            failures.push(format!(
                "case {case}: not eligible: {}\n{}",
                describe(&c),
                indent(&sql)
            ));
        }
    }
    for f in failures.iter().take(50) {
        println!("{f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {n} all-read batches were sent to the primary (first 50 printed above)",
        failures.len()
    );
}

/// `cargo test --test classification -- --ignored --nocapture show_generated`
/// prints a few generated batches of each kind, to eyeball the generator.
#[test]
#[ignore]
fn show_generated_batches() {
    let mut rng = Rng::new(seed(0x5A3F));
    for adversarial in [false, true] {
        for _ in 0..12 {
            let mut g = Gen {
                rng: &mut rng,
                var: 0,
                adversarial,
            };
            let mut stmts: Vec<Stmt> = (0..g.rng.below(3)).map(|_| g.read()).collect();
            if adversarial {
                stmts.push(g.write());
            }
            g.rng.shuffle(&mut stmts);
            println!("---- adversarial={adversarial}\n{}", g.batch(&stmts));
        }
    }
}
