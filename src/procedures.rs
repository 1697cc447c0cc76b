//! `sluice procedures`: the verdict on every stored procedure of a
//! database, as `routing.detect_read_only_procedures` reads them.

use std::path::Path;
use std::process::ExitCode;

use sluice::config::Config;

pub fn run(config_path: &Path, database: Option<&str>) -> ExitCode {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let database = database.unwrap_or(&config.primary.database).to_string();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let procedures = match runtime.block_on(sluice::catalog::read_once(&config, &database)) {
        Ok(procedures) => procedures,
        Err(e) => {
            eprintln!(
                "procedures: cannot read the catalog of {database} on the primary: {e}\n\
                 (Sluice's login needs VIEW DEFINITION on the procedures: see CONFIG.md)"
            );
            return ExitCode::FAILURE;
        }
    };
    let verdicts = procedures.verdicts();
    let width = verdicts
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(9)
        .max(9);
    println!("{:width$}  VERDICT", "PROCEDURE");
    for (name, verdict) in &verdicts {
        println!("{name:width$}  {verdict}");
    }
    println!(
        "\n{database}: {} procedure(s), {} read-only",
        verdicts.len(),
        procedures.read_only_count()
    );
    ExitCode::SUCCESS
}
