//! Encryption on both sides: clients with TLS (full, login-only, refused),
//! and Sluice's backend TLS against a second Sluice whose listener has TLS on.
mod common;

use std::path::PathBuf;

use common::*;
use tiberius::EncryptionLevel;

fn certificate() -> (PathBuf, PathBuf) {
    self_signed_certificate()
}

fn with_listener_tls(
    text: &str,
    mode: &str,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> String {
    text.replace(
        "login_timeout_ms = 5000\n",
        &format!(
            "login_timeout_ms = 5000\n[listen.tls]\nmode = \"{mode}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
}

async fn sluice_with_tls(mode: &str) -> (Backend, std::net::SocketAddr) {
    let primary = Backend::start().await;
    let (cert, key) = certificate();
    let text = with_listener_tls(&config_text(primary.addr, &[]), mode, &cert, &key);
    let sluice = start_sluice(parse_config(&text)).await;
    (primary, sluice)
}

async fn query_with(
    sluice: std::net::SocketAddr,
    level: EncryptionLevel,
) -> tiberius::Result<Option<i32>> {
    let mut config = tiberius_config(sluice, USER, PASSWORD);
    config.encryption(level);
    let mut client = connect_with(config).await?;
    Ok(scalar_i32(&mut client, "SELECT 40 + 2").await)
}

#[tokio::test]
async fn full_tls_when_the_client_asks_for_it() {
    let (_primary, sluice) = sluice_with_tls("optional").await;
    assert_eq!(
        query_with(sluice, EncryptionLevel::Required).await.unwrap(),
        Some(42)
    );
    assert_eq!(
        query_with(sluice, EncryptionLevel::On).await.unwrap(),
        Some(42)
    );
}

#[tokio::test]
async fn login_only_encryption_when_both_sides_say_off() {
    let (_primary, sluice) = sluice_with_tls("optional").await;
    assert_eq!(
        query_with(sluice, EncryptionLevel::Off).await.unwrap(),
        Some(42)
    );
    assert_eq!(
        query_with(sluice, EncryptionLevel::NotSupported)
            .await
            .unwrap(),
        Some(42)
    );
}

#[tokio::test]
async fn required_mode_encrypts_everyone_and_refuses_plaintext() {
    let (_primary, sluice) = sluice_with_tls("required").await;
    assert_eq!(
        query_with(sluice, EncryptionLevel::Off).await.unwrap(),
        Some(42)
    );
    assert_eq!(
        query_with(sluice, EncryptionLevel::Required).await.unwrap(),
        Some(42)
    );
    assert!(query_with(sluice, EncryptionLevel::NotSupported)
        .await
        .is_err());
}

#[tokio::test]
async fn off_mode_refuses_a_client_that_requires_encryption() {
    let (_primary, sluice) = primary_and_sluice().await;
    assert!(query_with(sluice, EncryptionLevel::Required).await.is_err());
    assert_eq!(
        query_with(sluice, EncryptionLevel::NotSupported)
            .await
            .unwrap(),
        Some(42)
    );
}

/// Sluice A (backend tls = required or strict) → Sluice B (listener TLS) → iridium.
async fn chained(backend_tls: &str) {
    let primary = Backend::start().await;
    primary.exec("CREATE TABLE dbo.marker (v INT); INSERT INTO dbo.marker VALUES (7);");
    let (cert, key) = certificate();
    let inner_text = with_listener_tls(&config_text(primary.addr, &[]), "required", &cert, &key);
    let inner = start_sluice(parse_config(&inner_text)).await;
    let outer_text = config_text(inner, &[]).replace(
        "password = \"unused-by-iridium\"",
        &format!(
            "password = \"{PASSWORD}\"\ntls = \"{backend_tls}\"\nca_file = \"{}\"",
            cert.display()
        ),
    );
    let outer_text = outer_text.replace("user = \"sa\"", &format!("user = \"{USER}\""));
    let outer = start_sluice(parse_config(&outer_text)).await;
    let mut client = connect(outer).await;
    assert_eq!(
        scalar_i32(&mut client, "SELECT v FROM dbo.marker").await,
        Some(7)
    );
}

#[tokio::test]
async fn backend_tls_inside_prelogin_against_a_tls_listener() {
    chained("required").await;
}

#[tokio::test]
async fn backend_tds8_strict_against_a_tls_listener() {
    chained("strict").await;
}

#[tokio::test]
async fn backend_tls_rejects_an_untrusted_certificate() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_test_writer()
        .try_init();
    let primary = Backend::start().await;
    let (cert, key) = certificate();
    let (other_ca, _) = certificate();
    let inner_text = with_listener_tls(&config_text(primary.addr, &[]), "required", &cert, &key);
    let inner = start_sluice(parse_config(&inner_text)).await;
    let outer_text = config_text(inner, &[])
        .replace(
            "password = \"unused-by-iridium\"",
            &format!(
                "password = \"{PASSWORD}\"\ntls = \"required\"\nca_file = \"{}\"",
                other_ca.display()
            ),
        )
        .replace("user = \"sa\"", &format!("user = \"{USER}\""));
    let outer = start_sluice(parse_config(&outer_text)).await;
    let err = match connect_with(tiberius_config(outer, USER, PASSWORD)).await {
        Ok(_) => panic!("an untrusted backend certificate must fail the login"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("TLS with backend primary failed"), "{err}");
}

/// Issue 7: a CA bundle that the data path accepts must also serve the
/// health checks. Before the monitor used the data path's TLS client, its
/// own client refused a CA file holding more than one certificate, every
/// check failed, the primary went down and every write was refused.
#[tokio::test]
async fn health_checks_trust_the_same_ca_bundle_as_the_data_path() {
    let primary = Backend::start().await;
    primary.exec("CREATE TABLE dbo.marker (v INT); INSERT INTO dbo.marker VALUES (7);");
    let pki = ca_signed_certificate();
    let inner_text = with_listener_tls(
        &config_text(primary.addr, &[]),
        "required",
        &pki.cert,
        &pki.key,
    );
    let inner = start_sluice(parse_config(&inner_text)).await;
    for backend_tls in ["required", "strict"] {
        let outer_text = config_text(inner, &[])
            .replace(
                "password = \"unused-by-iridium\"",
                &format!(
                    "password = \"{PASSWORD}\"\ntls = \"{backend_tls}\"\nca_file = \"{}\"",
                    pki.ca_bundle.display()
                ),
            )
            .replace("user = \"sa\"", &format!("user = \"{USER}\""))
            + "[health]\ninterval_ms = 20\nfailures_before_down = 1\n";
        let proxy = sluice::server::Proxy::new(parse_config(&outer_text)).expect("proxy");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let outer = listener.local_addr().expect("address");
        let serving = tokio::spawn(proxy.clone().serve(listener));

        let health = proxy.cluster().primary().health().clone();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while health.checks_completed() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "{backend_tls}: no three checks in 10 s: {health:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(
            health.state(),
            sluice::monitor::BackendState::Up,
            "{backend_tls}: the primary's health checks fail with the CA bundle"
        );
        let mut client = connect(outer).await;
        client
            .execute("INSERT INTO dbo.marker VALUES (8)", &[])
            .await
            .unwrap_or_else(|e| panic!("{backend_tls}: the write was refused: {e}"));
        client
            .execute("DELETE FROM dbo.marker WHERE v = 8", &[])
            .await
            .expect("clean up");
        serving.abort();
    }
}
