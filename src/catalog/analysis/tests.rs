use super::*;

fn proc(schema: &str, name: &str, body: &str) -> CatalogProcedure {
    CatalogProcedure {
        schema: schema.into(),
        name: name.into(),
        definition: Some(format!(
            "CREATE PROCEDURE [{schema}].[{name}] @id INT = 1 AS\n{body}"
        )),
    }
}

fn analyze(procs: &[CatalogProcedure]) -> DatabaseProcedures {
    DatabaseProcedures::analyze("shop", procs, &[])
}

fn verdict_of(procs: &DatabaseProcedures, called: &str) -> Verdict {
    procs.verdict("shop", called).cloned().expect("a verdict")
}

#[test]
fn reads_with_scoped_settings_are_read_only() {
    let procs = analyze(&[proc(
        "dbo",
        "GetOrderSummary",
        "BEGIN SET NOCOUNT ON; SELECT id, total FROM dbo.orders WHERE id = @id; END",
    )]);
    for called in [
        "GetOrderSummary",
        "dbo.GetOrderSummary",
        "[dbo].[getordersummary]",
        "shop.dbo.GetOrderSummary",
    ] {
        assert_eq!(verdict_of(&procs, called), Verdict::ReadOnly, "{called}");
    }
    assert_eq!(procs.verdict("shop", "other.dbo.GetOrderSummary"), None);
    assert_eq!(procs.verdict("shop", "srv.shop.dbo.GetOrderSummary"), None);
}

#[test]
fn what_makes_a_procedure_not_read_only() {
    let cases = [
        ("writes", "UPDATE dbo.orders SET total = 0 WHERE id = @id"),
        ("ddl", "CREATE TABLE dbo.x (id INT)"),
        (
            "dynamic",
            "DECLARE @s NVARCHAR(100) = N'SELECT 1'; EXEC (@s)",
        ),
        ("executesql", "EXEC sp_executesql N'SELECT 1'"),
        ("temp", "SELECT 1 AS a INTO #t; SELECT a FROM #t"),
        ("transaction", "BEGIN TRANSACTION; SELECT 1; COMMIT"),
        ("system", "EXEC sp_rename 'a', 'b'"),
        ("context", "SET CONTEXT_INFO 0x01; SELECT 1"),
    ];
    let procs: Vec<_> = cases
        .iter()
        .map(|(name, body)| proc("dbo", name, body))
        .collect();
    let analyzed = analyze(&procs);
    for (name, body) in cases {
        assert!(
            matches!(verdict_of(&analyzed, name), Verdict::NotReadOnly(_)),
            "{name}: {body}"
        );
    }
    let hidden = CatalogProcedure {
        definition: None,
        ..proc("dbo", "hidden", "")
    };
    let with_execute_as = CatalogProcedure {
        definition: Some("CREATE PROC dbo.imp WITH EXECUTE AS OWNER AS SELECT 1".into()),
        ..proc("dbo", "imp", "")
    };
    let analyzed = analyze(&[hidden, with_execute_as]);
    assert_eq!(
        verdict_of(&analyzed, "hidden"),
        Verdict::NotReadOnly(NotReadOnly::DefinitionHidden)
    );
    assert_eq!(
        verdict_of(&analyzed, "imp"),
        Verdict::NotReadOnly(NotReadOnly::ExecuteAs)
    );
}

#[test]
fn callees_decide_transitively_and_cycles_are_not_read_only() {
    let procs = analyze(&[
        proc("dbo", "outer_read", "EXEC dbo.inner_read @id; SELECT 2"),
        proc("dbo", "inner_read", "SELECT 1"),
        proc("dbo", "outer_write", "EXEC inner_write"),
        proc("dbo", "inner_write", "DELETE FROM dbo.t"),
        proc("dbo", "ping", "EXEC pong"),
        proc("dbo", "pong", "EXEC ping"),
        proc("dbo", "self_call", "IF @id > 0 EXEC self_call"),
        proc("dbo", "calls_missing", "EXEC dbo.nowhere"),
        proc("sales", "local", "SELECT 1"),
        proc("sales", "uses_local", "EXEC local"),
    ]);
    assert_eq!(verdict_of(&procs, "outer_read"), Verdict::ReadOnly);
    assert_eq!(
        verdict_of(&procs, "outer_write"),
        Verdict::NotReadOnly(NotReadOnly::Callee("dbo.inner_write".into()))
    );
    for name in ["ping", "pong", "self_call"] {
        assert!(
            matches!(
                verdict_of(&procs, name),
                Verdict::NotReadOnly(NotReadOnly::Cycle(_))
            ),
            "{name}: {:?}",
            verdict_of(&procs, name)
        );
    }
    assert!(matches!(
        verdict_of(&procs, "calls_missing"),
        Verdict::NotReadOnly(NotReadOnly::UnknownCallee(_))
    ));
    assert_eq!(verdict_of(&procs, "sales.uses_local"), Verdict::ReadOnly);
}

#[test]
fn the_operators_write_list_wins() {
    let procs = [
        proc("dbo", "reads", "SELECT 1"),
        proc("dbo", "calls_reads", "EXEC reads"),
    ];
    let analyzed = DatabaseProcedures::analyze("shop", &procs, &["dbo.reads".to_string()]);
    assert_eq!(
        verdict_of(&analyzed, "reads"),
        Verdict::NotReadOnly(NotReadOnly::Listed)
    );
    assert!(matches!(
        verdict_of(&analyzed, "calls_reads"),
        Verdict::NotReadOnly(NotReadOnly::Callee(_))
    ));
}

/// What a generated procedure's body is made of.
#[derive(Clone, Copy)]
enum Part {
    Read,
    Setting,
    Write,
    Ddl,
    Dynamic,
    Call(usize),
}

impl Part {
    fn sql(self) -> String {
        match self {
            Part::Read => "SELECT name FROM dbo.items WHERE id = @id;".into(),
            Part::Setting => "SET NOCOUNT ON;".into(),
            Part::Write => "INSERT INTO dbo.items (name) VALUES (N'x');".into(),
            Part::Ddl => "ALTER TABLE dbo.items ADD extra INT;".into(),
            Part::Dynamic => "EXEC (N'SELECT 1' + @suffix);".into(),
            Part::Call(i) => format!("EXEC dbo.p{i} @id;"),
        }
    }
}

/// xorshift64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The truth about generated procedures: read-only when no part writes,
/// and every callee is read-only, with no cycle on the way.
fn truly_read_only(bodies: &[Vec<Part>], i: usize, path: &mut Vec<usize>) -> bool {
    if path.contains(&i) {
        return false;
    }
    path.push(i);
    let ok = bodies[i].iter().all(|part| match *part {
        Part::Read | Part::Setting => true,
        Part::Write | Part::Ddl | Part::Dynamic => false,
        Part::Call(j) => truly_read_only(bodies, j, path),
    });
    path.pop();
    ok
}

/// Property: no procedure whose body writes, changes schema, runs dynamic
/// SQL or calls a procedure that is not read-only (directly or through a
/// cycle) is ever read-only; and every one that does none of these is.
#[test]
fn generated_procedures_are_read_only_exactly_when_they_only_read() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for round in 0..300 {
        let count = 1 + rng.below(6) as usize;
        let bodies: Vec<Vec<Part>> = (0..count)
            .map(|_| {
                (0..1 + rng.below(4))
                    .map(|_| match rng.below(10) {
                        0..=3 => Part::Read,
                        4 => Part::Setting,
                        5 => Part::Write,
                        6 => Part::Ddl,
                        7 => Part::Dynamic,
                        _ => Part::Call(rng.below(count as u64) as usize),
                    })
                    .collect()
            })
            .collect();
        let procs: Vec<_> = bodies
            .iter()
            .enumerate()
            .map(|(i, parts)| {
                let body: Vec<String> = parts.iter().map(|p| p.sql()).collect();
                proc("dbo", &format!("p{i}"), &body.join("\n"))
            })
            .collect();
        let analyzed = analyze(&procs);
        for (i, p) in procs.iter().enumerate() {
            let expected = truly_read_only(&bodies, i, &mut Vec::new());
            let got = analyzed.is_read_only("shop", &format!("p{i}"));
            assert_eq!(
                got,
                expected,
                "round {round}, p{i}: {:?} -> {:?}",
                p.definition,
                analyzed.verdict("shop", &format!("p{i}"))
            );
        }
    }
}
