//! `sluice status`: asks a running Sluice's admin API for `/status` and
//! prints it as tables, like pgbouncer's `SHOW POOLS`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(admin: &str, token_env: Option<&str>) -> ExitCode {
    let token = match token_env.map(|var| (var, std::env::var(var))) {
        None => None,
        Some((_, Ok(token))) if !token.is_empty() => Some(token),
        Some((var, _)) => {
            eprintln!("status: environment variable {var} (--token-env) is not set");
            return ExitCode::FAILURE;
        }
    };
    let status = match get(admin, "/status", token.as_deref()) {
        Ok(body) => body,
        Err(e) => {
            eprintln!("status: {e}");
            return ExitCode::FAILURE;
        }
    };
    match serde_json::from_slice::<Value>(&status) {
        Ok(status) => {
            print!("{}", render(&status));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("status: the admin API at {admin} answered something that is not JSON: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One GET; the body of a 200, else an error that says what to do.
fn get(admin: &str, path: &str, token: Option<&str>) -> Result<Vec<u8>, String> {
    let unreachable = |e: &dyn std::fmt::Display| {
        format!(
            "cannot reach the admin API at {admin}: {e}; is Sluice running with an [admin] table \
             (see CONFIG.md), and is --admin its address?"
        )
    };
    let address: SocketAddr = admin
        .to_socket_addrs()
        .map_err(|e| unreachable(&e))?
        .next()
        .ok_or_else(|| unreachable(&"no address"))?;
    let mut tcp = TcpStream::connect_timeout(&address, TIMEOUT).map_err(|e| unreachable(&e))?;
    tcp.set_read_timeout(Some(TIMEOUT)).ok();
    tcp.set_write_timeout(Some(TIMEOUT)).ok();
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {admin}\r\n{authorization}Connection: close\r\n\r\n");
    tcp.write_all(request.as_bytes())
        .map_err(|e| unreachable(&e))?;
    let mut response = Vec::new();
    tcp.read_to_end(&mut response)
        .map_err(|e| unreachable(&e))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("the admin API at {admin} sent no HTTP response"))?;
    let head = String::from_utf8_lossy(&response[..split]);
    let body = response[split + 4..].to_vec();
    let code = head.split(' ').nth(1).unwrap_or_default();
    match code {
        "200" => Ok(body),
        "401" => Err(format!(
            "the admin API at {admin} wants a token: pass --token-env with the variable that holds it"
        )),
        _ => Err(format!(
            "the admin API at {admin} answered {}: {}",
            head.lines().next().unwrap_or_default(),
            String::from_utf8_lossy(&body).trim()
        )),
    }
}

/// The `/status` fields `sluice status` shows per backend: header and
/// JSON pointer.
const BACKEND_COLUMNS: [(&str, &str); 8] = [
    ("BACKEND", "/name"),
    ("ROLE", "/role"),
    ("STATE", "/state"),
    ("LAG_MS", "/lag_ms"),
    ("OPEN", "/pool/open"),
    ("IDLE", "/pool/idle"),
    ("IN_USE", "/pool/in_use"),
    ("WAITING", "/pool/waiting"),
];

/// The same for the clients.
const CLIENT_COLUMNS: [(&str, &str); 6] = [
    ("CLIENTS", "/logged_in"),
    ("ACTIVE", "/active"),
    ("IDLE", "/idle"),
    ("IN_TRANSACTION", "/in_transaction"),
    ("CONNECTIONS", "/connections"),
    ("MAX_CLIENTS", "/max_clients"),
];

/// A header row, then a row of `columns` per value.
fn rows<'a>(columns: &[(&str, &str)], values: impl Iterator<Item = &'a Value>) -> Vec<Vec<String>> {
    let header = columns.iter().map(|(name, _)| name.to_string()).collect();
    let cells = |v: &Value| {
        columns
            .iter()
            .map(|(_, pointer)| text(v.pointer(pointer).unwrap_or(&Value::Null)))
            .collect()
    };
    std::iter::once(header).chain(values.map(cells)).collect()
}

/// The status as text: backends, clients, then the process.
pub fn render(status: &Value) -> String {
    let backends = rows(
        &BACKEND_COLUMNS,
        status["backends"].as_array().into_iter().flatten(),
    );
    let clients = rows(&CLIENT_COLUMNS, std::iter::once(&status["clients"]));
    let config = &status["config"];
    let hash = text(&config["hash"]);
    format!(
        "{}\n{}\nsluice {}, up {} s{}\nconfig {} (blake2s {}, loaded at unix time {})\n",
        table(&backends),
        table(&clients),
        text(&status["version"]),
        text(&status["uptime_seconds"]),
        if status["draining"].as_bool() == Some(true) {
            ", DRAINING"
        } else {
            ""
        },
        text(&config["path"]),
        hash.get(..16).unwrap_or(&hash),
        text(&config["loaded_at_unix"]),
    )
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Left-aligned columns, two spaces apart.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_backends_and_clients_as_tables() {
        let status = serde_json::json!({
            "version": "0.1.0", "uptime_seconds": 7, "draining": false,
            "config": {"path": "proxy.toml", "hash": "00112233445566778899", "loaded_at_unix": 1},
            "clients": {"logged_in": 2, "active": 1, "idle": 1, "in_transaction": 0, "connections": 2, "max_clients": 10},
            "backends": [
                {"name": "primary", "role": "primary", "state": "up", "lag_ms": null,
                 "pool": {"open": 2, "idle": 1, "in_use": 1, "waiting": 0}},
                {"name": "replica-1", "role": "replica", "state": "lagging", "lag_ms": 1500,
                 "pool": {"open": 0, "idle": 0, "in_use": 0, "waiting": 0}},
            ],
        });
        let text = render(&status);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "BACKEND    ROLE     STATE    LAG_MS  OPEN  IDLE  IN_USE  WAITING"
        );
        assert_eq!(
            lines[1],
            "primary    primary  up       -       2     1     1       0"
        );
        assert_eq!(
            lines[2],
            "replica-1  replica  lagging  1500    0     0     0       0"
        );
        assert!(
            text.contains("config proxy.toml (blake2s 0011223344556677,"),
            "{text}"
        );
    }
}
