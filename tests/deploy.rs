//! The deployment files (Dockerfile, docker-compose*.yml, deploy/): what
//! can be checked without a container engine or a cluster.
//!
//! - every YAML file parses, and reads the same under YAML 1.1 (PyYAML, as
//!   Kubernetes' and older Compose parsers) and 1.2 (ruamel.yaml);
//! - the compose files match the Compose Specification's JSON schema
//!   (check-jsonschema's bundled copy) and the Kubernetes manifests the
//!   Kubernetes API schemas (kubernetes-validate's bundled copies), offline;
//! - every proxy.toml they carry passes `sluice check` with only the
//!   environment the deployment gives Sluice;
//! - ports, paths, probe URLs, the user and the drain timeouts agree across
//!   the Dockerfile, the compose files, the manifests and the admin config;
//! - the sqlcmd scripts under deploy/compose parse (sqlparser's
//!   MsSqlDialect; the T-SQL it lacks is matched against the forms those
//!   scripts use) and get every sqlcmd variable they use;
//! - the Grafana dashboard queries only metrics that src/metrics.rs records
//!   and docs/METRICS.md documents, with their labels;
//! - the Dockerfile's dependency-layer stand-ins satisfy Cargo.toml, and the
//!   shell scripts pass shellcheck.
//!
//! The validators come from `bash .ci/install-interop.sh` (the venv's
//! requirements and Debian's shellcheck); a missing one fails its test
//! instead of skipping it. No test here needs the network.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

#[path = "common/tools.rs"]
mod tools;
use tools::{on_path, venv_bin};

/// Kubernetes versions the manifests are validated against: an old one
/// still in support on the big clouds, and the newest kubernetes-validate
/// bundles.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// The path of the config inside the image, the compose files and the pods.
const CONFIG_PATH: &str = "/etc/sluice/proxy.toml";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// ---------------------------------------------------------------- YAML --

/// Every YAML file of the deployment, relative to the repository.
fn yaml_files() -> Vec<String> {
    let mut files = vec![
        "docker-compose.yml".to_string(),
        "docker-compose.demo.yml".to_string(),
    ];
    let mut stack = vec![root().join("deploy")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read deploy/") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yml" | "yaml")
            ) {
                let relative = path.strip_prefix(root()).expect("under the root");
                files.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    files
}

/// Loads each file with PyYAML (YAML 1.1) and ruamel.yaml (YAML 1.2), fails
/// if they disagree, and prints {path: [documents]} as JSON.
const LOAD_YAML: &str = r#"
import json, sys
import yaml
from ruamel.yaml import YAML
out, problems = {}, []
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        v11 = list(yaml.safe_load_all(text))
        v12 = list(YAML(typ="safe", pure=True).load_all(text))
    except Exception as e:
        problems.append(f"{path}: {e}")
        continue
    if v11 != v12:
        problems.append(f"{path}: YAML 1.1 reads {v11!r}\n  but YAML 1.2 reads {v12!r}\n  (quote the scalar that differs)")
    out[path] = v12
if problems:
    sys.exit("\n".join(problems))
json.dump(out, sys.stdout, default=str)
"#;

/// Every YAML file's documents, by path, loaded once per test binary.
fn yaml() -> &'static BTreeMap<String, Vec<Value>> {
    static YAML: OnceLock<BTreeMap<String, Vec<Value>>> = OnceLock::new();
    YAML.get_or_init(|| {
        let output = run(Command::new(venv_bin("python"))
            .current_dir(root())
            .arg("-c")
            .arg(LOAD_YAML)
            .args(yaml_files()));
        assert!(
            output.status.success(),
            "YAML files that do not parse, or parse differently in YAML 1.1 and 1.2:\n{}",
            describe(&output)
        );
        serde_json::from_slice(&output.stdout).expect("the loader prints JSON")
    })
}

/// The one document of a YAML file.
fn yaml_doc(relative: &str) -> &'static Value {
    let docs = yaml()
        .get(relative)
        .unwrap_or_else(|| panic!("{relative} is not among the YAML files"));
    assert_eq!(docs.len(), 1, "{relative}: one document expected");
    &docs[0]
}

#[test]
fn every_yaml_file_parses_the_same_in_yaml_1_1_and_1_2() {
    let files = yaml();
    for expected in [
        "docker-compose.yml",
        "docker-compose.demo.yml",
        "deploy/kubernetes/deployment.yaml",
        "deploy/prometheus/prometheus.yml",
        "deploy/grafana/provisioning/datasources/prometheus.yml",
        "deploy/grafana/provisioning/dashboards/sluice.yml",
    ] {
        assert!(files.contains_key(expected), "{expected} not found");
    }
    for (path, docs) in files {
        assert!(
            !docs.is_empty() && docs.iter().all(Value::is_object),
            "{path}: every document should be a mapping"
        );
    }
}

// -------------------------------------------------------------- schemas --

#[test]
fn compose_files_match_the_compose_specification() {
    let output = run(Command::new(venv_bin("check-jsonschema"))
        .current_dir(root())
        .args(["--builtin-schema", "vendor.compose-spec"])
        .args(["docker-compose.yml", "docker-compose.demo.yml"]));
    assert!(
        output.status.success(),
        "the compose files do not match the Compose Specification:\n{}",
        describe(&output)
    );
}

/// The files kustomization.yaml lists; it must list every manifest.
fn kubernetes_resources() -> Vec<String> {
    let kustomization = yaml_doc("deploy/kubernetes/kustomization.yaml");
    let listed: Vec<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| format!("deploy/kubernetes/{}", r.as_str().expect("a path")))
        .collect();
    let present: BTreeSet<String> = yaml()
        .keys()
        .filter(|p| p.starts_with("deploy/kubernetes/") && !p.ends_with("kustomization.yaml"))
        .cloned()
        .collect();
    assert_eq!(
        listed.iter().cloned().collect::<BTreeSet<_>>(),
        present,
        "kustomization.yaml's resources and the manifests in deploy/kubernetes/ differ"
    );
    listed
}

#[test]
fn kubernetes_manifests_match_the_kubernetes_schemas() {
    let resources = kubernetes_resources();
    for version in KUBERNETES_VERSIONS {
        let output = run(Command::new(venv_bin("kubernetes-validate"))
            .current_dir(root())
            .args(["--strict", "--kubernetes-version", version])
            .args(&resources));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && !stdout.contains("WARN") && !stdout.contains("ERROR"),
            "Kubernetes {version}:\n{}",
            describe(&output)
        );
        for resource in &resources {
            assert!(
                stdout.contains(&format!("{resource} passed")),
                "Kubernetes {version}: {resource} not validated:\n{stdout}"
            );
        }
    }
}

// ----------------------------------------------------------- proxy.toml --

/// A proxy.toml of the deployment, where it comes from, and the environment
/// variables the deployment gives Sluice.
struct Embedded {
    origin: &'static str,
    text: String,
    env: BTreeSet<String>,
}

/// The environment variable names a compose service sets.
fn compose_env(compose: &Value, service: &str) -> BTreeSet<String> {
    match &compose["services"][service]["environment"] {
        Value::Object(vars) => vars.keys().cloned().collect(),
        Value::Array(pairs) => pairs
            .iter()
            .map(|p| {
                let p = p.as_str().expect("NAME=value");
                p.split('=').next().unwrap_or(p).to_string()
            })
            .collect(),
        _ => BTreeSet::new(),
    }
}

fn deployment() -> &'static Value {
    yaml_doc("deploy/kubernetes/deployment.yaml")
}

fn sluice_container() -> &'static Value {
    let containers = deployment()["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    containers
        .iter()
        .find(|c| c["name"] == "sluice")
        .expect("a container named sluice")
}

fn configmap_proxy_toml() -> String {
    yaml_doc("deploy/kubernetes/configmap.yaml")["data"]["proxy.toml"]
        .as_str()
        .expect("the ConfigMap's data has proxy.toml")
        .to_string()
}

fn embedded_configs() -> Vec<Embedded> {
    let k8s_env = sluice_container()["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| e["name"].as_str().expect("name").to_string())
        .collect();
    vec![
        Embedded {
            origin: "deploy/compose/proxy.toml",
            text: read("deploy/compose/proxy.toml"),
            env: compose_env(yaml_doc("docker-compose.yml"), "sluice"),
        },
        Embedded {
            origin: "deploy/demo/proxy.toml",
            text: read("deploy/demo/proxy.toml"),
            env: compose_env(yaml_doc("docker-compose.demo.yml"), "sluice"),
        },
        Embedded {
            origin: "deploy/kubernetes/configmap.yaml",
            text: configmap_proxy_toml(),
            env: k8s_env,
        },
    ]
}

fn toml(text: &str, origin: &str) -> toml::Value {
    toml::from_str(text).unwrap_or_else(|e| panic!("{origin}: not TOML: {e}"))
}

#[test]
fn every_embedded_proxy_toml_passes_sluice_check() {
    let dir = scratch_dir("check");
    for (i, config) in embedded_configs().into_iter().enumerate() {
        let path = dir.join(format!("proxy-{i}.toml"));
        std::fs::write(&path, &config.text).expect("write the config");
        // Only what the deployment gives Sluice: a password_env it does not
        // set fails here as it would at start-up.
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command
            .env_clear()
            .args(["--config"])
            .arg(&path)
            .arg("check");
        for var in &config.env {
            command.env(var, "placeholder");
        }
        let output = run(&mut command);
        assert!(
            output.status.success(),
            "{}: sluice check failed with the environment {:?}:\n{}",
            config.origin,
            config.env,
            describe(&output)
        );
    }
}

/// The TOML examples of docs/AZURE.md use only keys Sluice has: each,
/// completed with a listener, a user and (if it has none) a primary, passes
/// `sluice check`.
#[test]
fn the_azure_guide_examples_pass_sluice_check() {
    let guide = read("docs/AZURE.md");
    let block = Regex::new(r"(?s)```toml\n(.*?)```").unwrap();
    let dir = scratch_dir("azure");
    // The listener's certificate paths of the TLS example, as empty files.
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).expect("create the tls directory");
    for file in ["tls.crt", "tls.key"] {
        std::fs::write(tls.join(file), "").expect("write a stand-in");
    }
    let hash = yaml_doc("deploy/kubernetes/configmap.yaml")["data"]["proxy.toml"]
        .as_str()
        .and_then(|t| toml(t, "the ConfigMap").get("users").cloned())
        .and_then(|u| u[0]["password_hash"].as_str().map(str::to_string))
        .expect("the ConfigMap's user hash");
    let mut checked = 0;
    for (i, caps) in block.captures_iter(&guide).enumerate() {
        let example = caps[1].replace("/etc/sluice/tls/", &format!("{}/", tls.display()));
        let mut text = format!(
            "[listen]\naddress = \"0.0.0.0:1433\"\n[[users]]\nname = \"app\"\npassword_hash = \"{hash}\"\n"
        );
        if !example.contains("[primary]") {
            text.push_str(
                "[primary]\naddress = \"your-server.database.windows.net:1433\"\nuser = \"sluice\"\npassword_env = \"SLUICE_BACKEND_PASSWORD\"\n",
            );
        }
        text.push_str(&example);
        let path = dir.join(format!("example-{i}.toml"));
        std::fs::write(&path, &text).expect("write the example");
        let output = run(Command::new(env!("CARGO_BIN_EXE_sluice"))
            .env("SLUICE_BACKEND_PASSWORD", "placeholder")
            .arg("--config")
            .arg(&path)
            .arg("check"));
        assert!(
            output.status.success(),
            "docs/AZURE.md, TOML example {}:\n{example}\n{}",
            i + 1,
            describe(&output)
        );
        checked += 1;
    }
    assert!(checked >= 3, "docs/AZURE.md's TOML examples: {checked}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn example_passwords_in_comments_are_the_real_ones() {
    use argon2::{PasswordHash, PasswordVerifier};
    let line = Regex::new(r#"password_hash\s*=\s*"([^"]+)"\s*#\s*password:\s*(\S+)"#).unwrap();
    let mut checked = 0;
    let mut texts: Vec<(&str, String)> = embedded_configs()
        .into_iter()
        .map(|c| (c.origin, c.text))
        .collect();
    texts.push(("proxy.toml", read("proxy.toml")));
    for (origin, text) in texts {
        for caps in line.captures_iter(&text) {
            let hash = PasswordHash::new(&caps[1]).expect("a PHC string");
            assert!(
                argon2::Argon2::default()
                    .verify_password(caps[2].as_bytes(), &hash)
                    .is_ok(),
                "{origin}: the hash is not the hash of {:?}, as its comment says",
                &caps[2]
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "the trial configs document their password");
}

/// A fresh scratch directory for this test process.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-deploy-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

// ----------------------------------------------------------- Dockerfile --

/// One instruction: its keyword and the rest, continuation lines joined.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

#[derive(Debug)]
struct Stage {
    name: String,
    from: String,
    instructions: Vec<Instruction>,
}

fn dockerfile() -> Vec<Stage> {
    let text = read("Dockerfile");
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else if !trimmed.starts_with('#') {
            current.push_str(line);
            logical.push(std::mem::take(&mut current));
        }
    }
    assert!(
        current.is_empty(),
        "Dockerfile ends inside a continued line"
    );
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (keyword, args) = line
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((&line, ""));
        let instruction = Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_string(),
        };
        if instruction.keyword == "FROM" {
            let words: Vec<&str> = instruction.args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                _ => panic!("every stage should be named: FROM {}", instruction.args),
            };
            stages.push(Stage {
                name,
                from: words[0].to_string(),
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push(instruction);
        } else {
            assert_eq!(
                instruction.keyword, "ARG",
                "only ARG may precede the first FROM"
            );
        }
    }
    stages
}

/// The instructions of a stage and of the stages it is built FROM.
fn effective(stages: &[Stage], name: &str) -> Vec<Instruction> {
    let stage = stages
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no stage {name}"));
    let mut instructions = match stages.iter().find(|s| s.name == stage.from) {
        Some(_) => effective(stages, &stage.from),
        None => Vec::new(),
    };
    instructions.extend(stage.instructions.iter().cloned());
    instructions
}

fn last<'a>(instructions: &'a [Instruction], keyword: &str) -> Option<&'a Instruction> {
    instructions.iter().rev().find(|i| i.keyword == keyword)
}

fn exec_form(instruction: &Instruction) -> Vec<String> {
    serde_json::from_str(&instruction.args).unwrap_or_else(|_| {
        panic!(
            "{} {} is not in exec form (a JSON array), so signals would not reach Sluice",
            instruction.keyword, instruction.args
        )
    })
}

/// What the tests need to know of the image.
struct Image {
    exposed: BTreeSet<u16>,
    uid: u32,
    health_url: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

fn image() -> Image {
    let stages = dockerfile();
    assert!(stages.len() >= 3, "multi-stage: build stages and a runtime");
    let runtime = stages.last().expect("stages");
    assert_eq!(
        runtime.name, "runtime",
        "the last stage (what `docker build .` makes) should be the runtime"
    );
    assert!(
        !runtime.from.starts_with("rust"),
        "the runtime should not be the Rust toolchain image"
    );
    let instructions = effective(&stages, "runtime");
    let user = last(&instructions, "USER").expect("a USER").args.clone();
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| {
            panic!("USER {user}: numeric, so Kubernetes' runAsNonRoot can check it")
        });
    assert_ne!(uid, 0, "USER must not be root");
    let exposed = instructions
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| {
            i.args
                .split_whitespace()
                .map(|p| p.parse().expect("a port"))
        })
        .collect();
    let health = last(&instructions, "HEALTHCHECK").expect("a HEALTHCHECK");
    let health_url = Regex::new(r"https?://[^\s\x22]+")
        .unwrap()
        .find(&health.args)
        .expect("the HEALTHCHECK calls a URL")
        .as_str()
        .to_string();
    let cmd_at = health.args.find("CMD ").expect("HEALTHCHECK … CMD");
    exec_form(&Instruction {
        keyword: "HEALTHCHECK CMD".into(),
        args: health.args[cmd_at + 4..].trim().to_string(),
    });
    let entrypoint = exec_form(last(&instructions, "ENTRYPOINT").expect("an ENTRYPOINT"));
    let cmd = exec_form(last(&instructions, "CMD").expect("a CMD"));
    Image {
        exposed,
        uid,
        health_url,
        entrypoint,
        cmd,
    }
}

#[test]
fn the_dockerfile_builds_a_slim_non_root_image_that_signals_reach() {
    let stages = dockerfile();
    let image = image();
    assert!(
        image.entrypoint[0].ends_with("/sluice"),
        "ENTRYPOINT runs sluice itself (PID 1 gets SIGTERM): {:?}",
        image.entrypoint
    );
    assert_eq!(image.cmd, ["--config", CONFIG_PATH]);
    // The dependency layer: a release build before the sources are copied.
    let build = effective(&stages, "build");
    let first_build = build
        .iter()
        .position(|i| i.keyword == "RUN" && i.args.contains("cargo build --release"))
        .expect("a release build");
    let first_source = build
        .iter()
        .position(|i| i.keyword == "COPY" && i.args.starts_with("src "))
        .expect("COPY src");
    assert!(
        first_build < first_source,
        "dependencies are built in a layer before the sources are copied"
    );
    // The runtime copies the binary from a build stage, not the toolchain.
    let runtime = stages.last().expect("stages");
    assert!(
        runtime
            .instructions
            .iter()
            .any(|i| i.keyword == "COPY" && i.args.starts_with("--from=build ")),
        "the runtime takes the binary from the build stage"
    );
    assert!(
        stages.iter().any(|s| s.name == "demo"),
        "a demo target for docker-compose.demo.yml"
    );
}

/// Every COPY source from the build context is let in by .dockerignore
/// (which excludes everything, then lets paths back in).
#[test]
fn dockerignore_lets_in_what_the_dockerfile_copies() {
    let ignore = read(".dockerignore");
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(patterns.first(), Some(&"*"), "exclude everything first");
    let allowed: Vec<&str> = patterns[1..]
        .iter()
        .map(|p| p.strip_prefix('!').expect("then only exceptions"))
        .map(|p| p.trim_end_matches('/'))
        .collect();
    for stage in dockerfile() {
        for copy in stage.instructions.iter().filter(|i| i.keyword == "COPY") {
            if copy.args.starts_with("--from=") {
                continue;
            }
            let words: Vec<&str> = copy.args.split_whitespace().collect();
            for source in &words[..words.len() - 1] {
                let source = source.trim_end_matches('/');
                assert!(
                    allowed
                        .iter()
                        .any(|a| source == *a || source.starts_with(&format!("{a}/"))),
                    ".dockerignore keeps {source} (COPY in stage {}) out of the build context",
                    stage.name
                );
                assert!(root().join(source).exists(), "COPY {source}: no such path");
            }
        }
    }
}

/// The Dockerfile's stand-ins let cargo load the manifest (the dependency
/// layer would fail on a target it names that has no file).
#[test]
fn dockerfile_stand_ins_satisfy_the_manifest() {
    let dir = scratch_dir("skeleton");
    for file in ["Cargo.toml", "Cargo.lock"] {
        std::fs::copy(root().join(file), dir.join(file)).expect("copy the manifest");
    }
    let output = run(Command::new("sh")
        .current_dir(&dir)
        .arg(root().join("deploy/docker/cargo-skeleton.sh")));
    assert!(output.status.success(), "{}", describe(&output));
    let cargo = env!("CARGO");
    let version = run(Command::new(cargo).arg("-vV"));
    let host = String::from_utf8_lossy(&version.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("cargo -vV names the host");
    // Loads every target of the manifest, like the build; offline, as the
    // packages are there once this test binary was built.
    let output = run(Command::new(cargo).current_dir(&dir).args([
        "fetch",
        "--offline",
        "--locked",
        "--target",
        &host,
    ]));
    assert!(
        output.status.success(),
        "cargo refuses the stand-ins:\n{}",
        describe(&output)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shell_scripts_pass_shellcheck() {
    let output = run(Command::new(on_path("shellcheck"))
        .current_dir(root())
        .args([
            "deploy/compose/init-ag.sh",
            "deploy/docker/cargo-skeleton.sh",
            "deploy/docker/podman-smoke.sh",
        ]));
    assert!(output.status.success(), "{}", describe(&output));
}

// ----------------------------------------------------------- agreement --

/// `host:port` → port.
fn port_of(address: &str) -> u16 {
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{address}: no port"))
}

fn host_of(address: &str) -> &str {
    address.rsplit_once(':').map(|(h, _)| h).unwrap_or(address)
}

fn str_at<'a>(value: &'a toml::Value, path: &[&str], origin: &str) -> &'a str {
    let mut v = value;
    for key in path {
        v = v
            .get(key)
            .unwrap_or_else(|| panic!("{origin}: no {}", path.join(".")));
    }
    v.as_str()
        .unwrap_or_else(|| panic!("{origin}: {} is not a string", path.join(".")))
}

/// listen.shutdown_timeout_ms (30000 by default).
fn shutdown_timeout_ms(config: &toml::Value) -> u64 {
    config
        .get("listen")
        .and_then(|l| l.get("shutdown_timeout_ms"))
        .and_then(toml::Value::as_integer)
        .map(|ms| ms as u64)
        .unwrap_or(30_000)
}

/// After a drain's timeout Sluice exits within this (README, "Operate").
const EXIT_AFTER_DRAIN_MS: u64 = 2_000;

/// Compose durations such as `40s`, `1m30s`, `500ms`.
fn compose_duration_ms(text: &str) -> u64 {
    let unit = Regex::new(r"(\d+)(ms|s|m|h)").unwrap();
    let mut total = 0;
    let mut consumed = 0;
    for caps in unit.captures_iter(text) {
        let n: u64 = caps[1].parse().unwrap();
        total += n * match &caps[2] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            _ => 3_600_000,
        };
        consumed += caps[0].len();
    }
    assert_eq!(consumed, text.len(), "{text}: not a duration");
    total
}

/// The container ports a compose service publishes.
fn published_container_ports(service: &Value) -> BTreeSet<u16> {
    service["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let p = p.as_str().expect("ports as quoted strings");
            p.rsplit(':').next().unwrap().parse().expect("a port")
        })
        .collect()
}

/// Checks a compose file's sluice service against its proxy.toml and the image.
fn check_compose_sluice(compose_file: &str, config_file: &str, image: &Image) {
    let compose = yaml_doc(compose_file);
    let sluice = &compose["services"]["sluice"];
    let config = toml(&read(config_file), config_file);
    let listen = str_at(&config, &["listen", "address"], config_file);
    let admin = str_at(&config, &["admin", "address"], config_file);
    assert_eq!(
        host_of(admin),
        "0.0.0.0",
        "{config_file}: the admin API must listen beyond the container's loopback"
    );
    assert_eq!(host_of(listen), "0.0.0.0", "{config_file}: listen.address");
    let ports = published_container_ports(sluice);
    for (what, port) in [("listen", port_of(listen)), ("admin", port_of(admin))] {
        assert!(
            ports.contains(&port),
            "{compose_file}: {what} port {port} not published"
        );
        assert!(
            image.exposed.contains(&port),
            "Dockerfile: EXPOSE lacks the {what} port {port} of {config_file}"
        );
    }
    assert_eq!(
        image.health_url,
        format!("http://127.0.0.1:{}/healthz", port_of(admin)),
        "the HEALTHCHECK should ask the admin API of {config_file}"
    );
    let mount = format!("./{config_file}:{CONFIG_PATH}:ro");
    assert!(
        sluice["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| v == &Value::String(mount.clone())),
        "{compose_file}: sluice should mount {mount}"
    );
    assert_eq!(sluice["build"]["target"], "runtime", "{compose_file}");
    let grace = compose_duration_ms(
        sluice["stop_grace_period"]
            .as_str()
            .expect("stop_grace_period"),
    );
    assert!(
        grace > shutdown_timeout_ms(&config) + EXIT_AFTER_DRAIN_MS,
        "{compose_file}: stop_grace_period ({grace} ms) must exceed listen.shutdown_timeout_ms + 2 s"
    );
    // Prometheus scrapes this admin API.
    let prometheus = yaml_doc("deploy/prometheus/prometheus.yml");
    let job = &prometheus["scrape_configs"][0];
    assert_eq!(job["metrics_path"], "/metrics");
    assert_eq!(
        job["static_configs"][0]["targets"][0],
        format!("sluice:{}", port_of(admin)).as_str(),
        "deploy/prometheus/prometheus.yml should scrape {config_file}'s admin API"
    );
    assert!(
        compose["services"]["prometheus"]["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| v
                .as_str()
                .unwrap_or("")
                .starts_with("./deploy/prometheus/prometheus.yml:")),
        "{compose_file}: Prometheus gets deploy/prometheus/prometheus.yml"
    );
    // Every bind mount exists.
    for (name, service) in compose["services"].as_object().expect("services") {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let volume = volume.as_str().expect("short volume syntax");
            if let Some(source) = volume.strip_prefix("./") {
                let source = source.split(':').next().unwrap();
                assert!(
                    root().join(source).exists(),
                    "{compose_file}: {name} mounts ./{source}, which does not exist"
                );
            }
        }
    }
}

#[test]
fn compose_files_agree_with_the_image_and_their_configs() {
    let image = image();
    check_compose_sluice("docker-compose.yml", "deploy/compose/proxy.toml", &image);
    check_compose_sluice("docker-compose.demo.yml", "deploy/demo/proxy.toml", &image);
}

/// `NAME=value` assignments at the top of init-ag.sh.
fn init_script_names() -> BTreeMap<String, String> {
    let assignment = Regex::new(r"(?m)^([A-Z_]+)=([^\s$]+)$").unwrap();
    assignment
        .captures_iter(&read("deploy/compose/init-ag.sh"))
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect()
}

#[test]
fn the_sql_server_compose_file_agrees_with_the_availability_group_scripts() {
    let compose = yaml_doc("docker-compose.yml");
    let services = &compose["services"];
    let config = toml(
        &read("deploy/compose/proxy.toml"),
        "deploy/compose/proxy.toml",
    );
    let names = init_script_names();
    let origin = "deploy/compose/proxy.toml";
    // Backends: the compose hostnames init-ag.sh builds the group on.
    let primary = str_at(&config, &["primary", "address"], origin);
    let replica = &config["replicas"].as_array().expect("replicas")[0];
    let replica_address = str_at(replica, &["address"], origin);
    for (address, host_var) in [
        (primary, "PRIMARY_HOST"),
        (replica_address, "SECONDARY_HOST"),
    ] {
        let host = &names[host_var];
        assert_eq!(
            host_of(address),
            host,
            "{origin}: {address} vs init-ag.sh {host_var}"
        );
        assert_eq!(
            port_of(address),
            1433,
            "{origin}: SQL Server listens on 1433"
        );
        let service = &services[host.as_str()];
        assert_eq!(
            service["hostname"],
            host.as_str(),
            "the replica name is the hostname"
        );
        assert_eq!(service["environment"]["MSSQL_ENABLE_HADR"], "1");
    }
    assert_eq!(str_at(replica, &["lag_source"], origin), "always_on");
    for backend in [&config["primary"], replica] {
        assert_eq!(str_at(backend, &["database"], origin), names["DATABASE"]);
        assert_eq!(str_at(backend, &["user"], origin), names["SLUICE_LOGIN"]);
        assert_eq!(
            str_at(backend, &["password_env"], origin),
            "SLUICE_BACKEND_PASSWORD"
        );
    }
    // ag-init runs init-ag.sh from the mounted deploy/compose.
    let init = &services["ag-init"];
    let entrypoint: Vec<&str> = init["entrypoint"]
        .as_array()
        .expect("entrypoint")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(entrypoint, ["/bin/bash", "/deploy/compose/init-ag.sh"]);
    assert!(init["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == "./deploy/compose:/deploy/compose:ro"));
    assert_eq!(
        services["sluice"]["depends_on"]["ag-init"]["condition"],
        "service_completed_successfully"
    );
    // The variables init-ag.sh reads from the environment are set for it,
    // and every variable the compose file takes from .env is in .env.example.
    let script = read("deploy/compose/init-ag.sh");
    let init_env = compose_env(compose, "ag-init");
    let set_here: BTreeSet<String> = Regex::new(r"(?m)^\s*([A-Z][A-Z_]+)=")
        .unwrap()
        .captures_iter(&script)
        .map(|c| c[1].to_string())
        .collect();
    for var in Regex::new(r"\$\{?([A-Z][A-Z_]+)")
        .unwrap()
        .captures_iter(&script)
    {
        let var = &var[1];
        assert!(
            set_here.contains(var) || init_env.contains(var),
            "init-ag.sh reads {var}, which neither it nor ag-init's environment sets"
        );
    }
    let example: BTreeSet<String> = read(".env.example")
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_string()))
        .filter(|k| !k.starts_with('#'))
        .collect();
    let compose_text = read("docker-compose.yml");
    for var in Regex::new(r"\$\{([A-Z_]+)")
        .unwrap()
        .captures_iter(&compose_text)
    {
        assert!(
            example.contains(&var[1]),
            "docker-compose.yml uses ${{{}}}, which .env.example does not set",
            &var[1]
        );
    }
    // Every endpoint URL in the scripts names the endpoint's port.
    let port = &names["ENDPOINT_PORT"];
    let endpoint_url = Regex::new(r"tcp://[^:']+:([^']+)'").unwrap();
    for sql in sql_scripts() {
        let text = read(&sql);
        for url in endpoint_url.captures_iter(&text) {
            assert_eq!(&url[1], "$(ENDPOINT_PORT)", "{sql}: {}", &url[0]);
        }
    }
    assert_eq!(port, "5022");
}

fn k8s(relative: &str) -> &'static Value {
    yaml_doc(&format!("deploy/kubernetes/{relative}"))
}

#[test]
fn kubernetes_manifests_agree_with_the_image_and_the_config() {
    let image = image();
    let config = toml(&configmap_proxy_toml(), "the ConfigMap's proxy.toml");
    let origin = "the ConfigMap's proxy.toml";
    let listen_port = port_of(str_at(&config, &["listen", "address"], origin));
    let admin = str_at(&config, &["admin", "address"], origin);
    assert_eq!(
        host_of(admin),
        "0.0.0.0",
        "{origin}: probes come from outside the pod"
    );
    let admin_port = port_of(admin);

    let pod = &deployment()["spec"]["template"];
    let container = sluice_container();
    let ports: BTreeMap<String, u16> = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("named ports").to_string(),
                p["containerPort"].as_u64().expect("containerPort") as u16,
            )
        })
        .collect();
    assert_eq!(
        ports["tds"], listen_port,
        "containerPort tds vs listen.address"
    );
    assert_eq!(
        ports["admin"], admin_port,
        "containerPort admin vs admin.address"
    );
    assert!(image.exposed.contains(&listen_port) && image.exposed.contains(&admin_port));
    assert_eq!(
        image.health_url,
        format!("http://127.0.0.1:{admin_port}/healthz")
    );

    // Probes on the admin API.
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["port"], "admin", "{probe} on the admin port");
    }
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(
        annotations["prometheus.io/port"],
        admin_port.to_string().as_str()
    );
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    // The config file: mounted where the image's CMD (and args) look.
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args, image.cmd, "args repeat the image's CMD");
    let mount = &container["volumeMounts"][0];
    assert_eq!(
        format!("{}/proxy.toml", mount["mountPath"].as_str().unwrap()),
        CONFIG_PATH
    );
    assert!(
        mount.get("subPath").is_none(),
        "a subPath mount never sees ConfigMap updates, so reloads would read the old file"
    );
    let volume = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    assert_eq!(
        volume["configMap"]["name"],
        k8s("configmap.yaml")["metadata"]["name"]
    );

    // The user: the image's, so runAsNonRoot holds.
    let security = &pod["spec"]["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"].as_u64(), Some(image.uid as u64));

    // Drain: preStop sleep + shutdown_timeout_ms + exit < grace period.
    let pre_stop: Vec<&str> = container["lifecycle"]["preStop"]["exec"]["command"]
        .as_array()
        .expect("a preStop exec")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(pre_stop[0], "sleep");
    let pre_stop_ms: u64 = pre_stop[1].parse::<u64>().expect("seconds") * 1_000;
    let grace_ms = pod["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds")
        * 1_000;
    assert!(
        grace_ms > pre_stop_ms + shutdown_timeout_ms(&config) + EXIT_AFTER_DRAIN_MS,
        "terminationGracePeriodSeconds must exceed preStop + listen.shutdown_timeout_ms + 2 s"
    );

    // Secrets: every variable the container takes from a Secret is in it.
    let secret = k8s("secret.yaml");
    for env in container["env"].as_array().unwrap() {
        if let Some(reference) = env["valueFrom"].get("secretKeyRef") {
            assert_eq!(reference["name"], secret["metadata"]["name"]);
            let key = reference["key"].as_str().unwrap();
            assert!(
                secret["stringData"].get(key).is_some(),
                "secret.yaml lacks {key}"
            );
        }
    }

    // Deployment shape, Service, PDB, HPA.
    let labels = &pod["metadata"]["labels"];
    let selector = &deployment()["spec"]["selector"]["matchLabels"];
    assert_eq!(deployment()["spec"]["replicas"], 2);
    assert!(pod["spec"]["affinity"]["podAntiAffinity"].is_object());
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert!(container["resources"]["requests"]["memory"].is_string());
    let service = k8s("service.yaml");
    assert_eq!(&service["spec"]["selector"], labels);
    assert_eq!(&service["spec"]["selector"], selector);
    let service_port = &service["spec"]["ports"][0];
    assert_eq!(service_port["port"], 1433);
    assert_eq!(service_port["targetPort"], "tds");
    let pdb = k8s("poddisruptionbudget.yaml");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let hpa = k8s("horizontalpodautoscaler.yaml");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"],
        deployment()["metadata"]["name"]
    );
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["maxReplicas"], 10);
    let cpu = &hpa["spec"]["metrics"][0]["resource"];
    assert_eq!(cpu["name"], "cpu");
    assert_eq!(cpu["target"]["averageUtilization"], 70);

    // The image kustomize sets: the one the Deployment names, at this version.
    let kustomization = k8s("kustomization.yaml");
    let images = &kustomization["images"][0];
    assert_eq!(images["name"], container["image"]);
    assert_eq!(
        images["newTag"],
        env!("CARGO_PKG_VERSION"),
        "kustomization.yaml's image tag should be this release"
    );
}

// ------------------------------------------------------------------ SQL --

/// The sqlcmd scripts under deploy/compose.
fn sql_scripts() -> Vec<String> {
    let mut scripts: Vec<String> = std::fs::read_dir(root().join("deploy/compose"))
        .expect("deploy/compose")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("sql"))
        .map(|p| {
            format!(
                "deploy/compose/{}",
                p.file_name().unwrap().to_string_lossy()
            )
        })
        .collect();
    scripts.sort();
    scripts
}

/// For each script init-ag.sh runs: the sqlcmd variables it passes.
fn init_script_runs() -> BTreeMap<String, BTreeSet<String>> {
    let text = read("deploy/compose/init-ag.sh").replace("\\\n", " ");
    let call = Regex::new(r#"run "\$[A-Z_]+" ([0-9a-z-]+\.sql)([^\n]*)"#).unwrap();
    let var = Regex::new(r#""([A-Z_]+)="#).unwrap();
    let mut runs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for caps in call.captures_iter(&text) {
        let vars = var
            .captures_iter(&caps[2])
            .map(|v| v[1].to_string())
            .collect();
        runs.insert(format!("deploy/compose/{}", &caps[1]), vars);
    }
    runs
}

/// A sample value for each sqlcmd variable, of the kind the script gets.
fn sample_value(name: &str) -> &'static str {
    match name {
        "CERTIFICATE_BINARY" | "PRIVATE_KEY_BINARY" | "SLUICE_LOGIN_SID" => "0x0102A0FF",
        "ENDPOINT_PORT" => "5022",
        _ if name.ends_with("PASSWORD") => "Sample-Password-1",
        _ => "sample_name",
    }
}

/// Splits a batch into statements at top-level `;` (outside strings,
/// brackets, parentheses and comments).
fn statements(batch: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = batch.chars().peekable();
    let mut depth = 0;
    while let Some(c) = chars.next() {
        match c {
            '\'' | '[' | '"' => {
                let close = if c == '[' { ']' } else { c };
                current.push(c);
                for d in chars.by_ref() {
                    current.push(d);
                    if d == close {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        current.push('\n');
                        break;
                    }
                }
            }
            '(' => {
                depth += 1;
                current.push(c);
            }
            ')' => {
                depth -= 1;
                current.push(c);
            }
            ';' if depth == 0 => out.push(std::mem::take(&mut current).trim().to_string()),
            _ => current.push(c),
        }
    }
    assert!(
        current.trim().is_empty(),
        "every statement should end with `;`: {}",
        current.trim()
    );
    out.into_iter().filter(|s| !s.is_empty()).collect()
}

/// The T-SQL those scripts use that sqlparser's MsSqlDialect does not
/// parse, each checked against its documented form instead (whitespace
/// collapsed). `N` is a Unicode string literal, `ID` an identifier.
fn tsql_forms() -> Vec<(&'static str, Regex)> {
    let s = r"N?'[^']*'";
    let id = r"(?:\[[^\]]+\]|[A-Za-z_][A-Za-z0-9_]*)";
    let hex = r"0x[0-9A-Fa-f]+";
    let replica = format!(
        r"{s} WITH \( ENDPOINT_URL = {s}, AVAILABILITY_MODE = (?:A?SYNCHRONOUS_COMMIT), FAILOVER_MODE = (?:MANUAL|AUTOMATIC|EXTERNAL), SEEDING_MODE = (?:AUTOMATIC|MANUAL), SECONDARY_ROLE \( ALLOW_CONNECTIONS = (?:ALL|READ_ONLY|NO) \) \)"
    );
    let forms = [
        (
            "CREATE MASTER KEY",
            format!(r"CREATE MASTER KEY ENCRYPTION BY PASSWORD = {s}"),
        ),
        (
            "CREATE CERTIFICATE … WITH SUBJECT",
            format!(r"CREATE CERTIFICATE {id} WITH SUBJECT = {s}(?:, EXPIRY_DATE = '\d{{8}}')?"),
        ),
        (
            "CREATE CERTIFICATE … FROM BINARY",
            format!(
                r"CREATE CERTIFICATE {id} FROM BINARY = {hex} WITH PRIVATE KEY \( BINARY = {hex}, DECRYPTION BY PASSWORD = {s} \)"
            ),
        ),
        (
            "CREATE ENDPOINT … FOR DATABASE_MIRRORING",
            format!(
                r"CREATE ENDPOINT {id} STATE = STARTED AS TCP \( LISTENER_PORT = \d+ \) FOR DATABASE_MIRRORING \( ROLE = ALL, AUTHENTICATION = CERTIFICATE {id}, ENCRYPTION = REQUIRED ALGORITHM AES \)"
            ),
        ),
        (
            "CREATE LOGIN",
            format!(
                r"CREATE LOGIN {id} WITH PASSWORD = {s}, SID = {hex}, CHECK_EXPIRATION = (?:ON|OFF)"
            ),
        ),
        (
            "CREATE USER … FOR LOGIN",
            format!(r"CREATE USER {id} FOR LOGIN {id}"),
        ),
        (
            "GRANT server or database permission",
            format!(r"GRANT (?:VIEW SERVER STATE|VIEW DATABASE STATE|EXECUTE) TO {id}"),
        ),
        (
            "ALTER ROLE … ADD MEMBER",
            format!(r"ALTER ROLE {id} ADD MEMBER {id}"),
        ),
        (
            "ALTER DATABASE … SET RECOVERY",
            format!(r"ALTER DATABASE {id} SET RECOVERY (?:FULL|SIMPLE|BULK_LOGGED)"),
        ),
        (
            "BACKUP DATABASE",
            format!(r"BACKUP DATABASE {id} TO DISK = {s} WITH INIT"),
        ),
        (
            "CREATE AVAILABILITY GROUP",
            format!(
                r"CREATE AVAILABILITY GROUP {id} WITH \( CLUSTER_TYPE = NONE \) FOR REPLICA ON {replica}(?:, {replica})*"
            ),
        ),
        (
            "ALTER AVAILABILITY GROUP",
            format!(
                r"ALTER AVAILABILITY GROUP {id} (?:JOIN WITH \( CLUSTER_TYPE = NONE \)|GRANT CREATE ANY DATABASE|ADD DATABASE {id})"
            ),
        ),
        ("PRINT", r"PRINT '[^']*' \+ @[a-z_]+".to_string()),
    ];
    forms
        .into_iter()
        .map(|(name, pattern)| (name, Regex::new(&format!("^(?i:{pattern})$")).unwrap()))
        .collect()
}

/// Spaces around punctuation, runs of whitespace collapsed.
fn normalize(statement: &str) -> String {
    let spaced = Regex::new(r"\s*([(),=])\s*")
        .unwrap()
        .replace_all(statement, " $1 ");
    let collapsed = Regex::new(r"\s+").unwrap().replace_all(&spaced, " ");
    collapsed.replace(" ,", ",").trim().to_string()
}

fn parses(sql: &str) -> bool {
    sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::MsSqlDialect {}, sql).is_ok()
}

/// How a statement was checked: by sqlparser, or by its T-SQL form (with
/// an `IF` guard whose condition sqlparser parsed).
fn check_statement(statement: &str, forms: &[(&'static str, Regex)]) -> Result<String, String> {
    if parses(statement) {
        return Ok("sqlparser".into());
    }
    let mut body = statement.trim().to_string();
    let mut how = String::new();
    // IF [NOT] EXISTS (subquery) / IF expr IS NULL, then one statement.
    let guard = Regex::new(
        r"(?is)^IF\s+(NOT\s+EXISTS\s*\(|EXISTS\s*\(|[A-Z_]+\s*\(N'[^']*'\)\s+IS\s+NULL\s)",
    )
    .unwrap();
    if let Some(m) = guard.find(&body) {
        let (condition, rest) = if m.as_str().trim_end().ends_with('(') {
            let open = m.end() - 1;
            let close = matching_paren(&body, open)
                .ok_or_else(|| format!("unbalanced IF condition: {body}"))?;
            (body[2..=close].to_string(), body[close + 1..].to_string())
        } else {
            (body[2..m.end()].to_string(), body[m.end()..].to_string())
        };
        let probe = format!("SELECT CASE WHEN {} THEN 1 END", condition.trim());
        if !parses(&probe) {
            return Err(format!("IF condition does not parse: {}", condition.trim()));
        }
        how.push_str("IF guard by sqlparser, then ");
        body = rest.trim().to_string();
        if parses(&body) {
            return Ok(how + "sqlparser");
        }
    }
    let normalized = normalize(&body);
    match forms.iter().find(|(_, form)| form.is_match(&normalized)) {
        Some((name, _)) => Ok(how + name),
        None => Err(format!(
            "neither sqlparser nor a known T-SQL form accepts: {normalized}"
        )),
    }
}

fn matching_paren(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut in_string = false;
    for (i, c) in text.char_indices().skip_while(|(i, _)| *i < open) {
        match c {
            '\'' => in_string = !in_string,
            '(' if !in_string => depth += 1,
            ')' if !in_string => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[test]
fn sqlcmd_scripts_parse_and_get_their_variables() {
    let runs = init_script_runs();
    let scripts = sql_scripts();
    assert_eq!(
        runs.keys().cloned().collect::<Vec<_>>(),
        scripts,
        "init-ag.sh should run every script under deploy/compose, and only those"
    );
    let variable = Regex::new(r"\$\(([A-Za-z_]+)\)").unwrap();
    let go = Regex::new(r"(?im)^\s*GO\s*$").unwrap();
    let forms = tsql_forms();
    let mut by_route: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for script in &scripts {
        let text = read(script);
        let passed = &runs[script];
        let used: BTreeSet<String> = variable
            .captures_iter(&text)
            .map(|c| c[1].to_string())
            .collect();
        assert_eq!(
            &used, passed,
            "{script}: the sqlcmd variables it uses and those init-ag.sh passes differ"
        );
        // sqlcmd substitutes the variables before the server sees the text.
        let substituted = variable.replace_all(&text, |c: &regex::Captures| sample_value(&c[1]));
        let batches: Vec<&str> = go.split(&substituted).collect();
        assert!(
            batches.last().is_some_and(|b| b.trim().is_empty()),
            "{script}: end with GO"
        );
        for batch in batches.iter().filter(|b| !b.trim().is_empty()) {
            if parses(batch) {
                *by_route.entry("batch by sqlparser".into()).or_default() += 1;
                continue;
            }
            for statement in statements(batch) {
                match check_statement(&statement, &forms) {
                    Ok(route) => *by_route.entry(route).or_default() += 1,
                    Err(e) => failures.push(format!("{script}: {e}")),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("SQL statements by how they were checked: {by_route:#?}");
}

// -------------------------------------------------------------- Grafana --

/// Metric name → (type, labels), from docs/METRICS.md's tables.
fn documented_metrics() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let row = Regex::new(r"(?m)^\| `(sluice_[a-z_]+)` \| ([a-z]+) \| ([^|]*) \|").unwrap();
    let label = Regex::new(r"`([a-z_]+)`").unwrap();
    row.captures_iter(&read("docs/METRICS.md"))
        .map(|c| {
            let labels = label
                .captures_iter(&c[3])
                .map(|l| l[1].to_string())
                .collect();
            (c[1].to_string(), (c[2].to_string(), labels))
        })
        .collect()
}

/// The metric names src/metrics.rs defines.
fn recorded_metrics() -> BTreeSet<String> {
    let constant = Regex::new(r#"pub const [A-Z_]+: &str = "(sluice_[a-z_]+)";"#).unwrap();
    constant
        .captures_iter(&read("src/metrics.rs"))
        .map(|c| c[1].to_string())
        .collect()
}

/// Every string under the key `key`, anywhere in `value`.
fn strings_under(value: &Value, key: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if k == key => out.push(s.clone()),
                    _ => strings_under(v, key, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_under(v, key, out)),
        _ => {}
    }
}

#[test]
fn the_grafana_dashboard_queries_real_metrics() {
    let text = read("deploy/grafana/dashboards/sluice.json");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let documented = documented_metrics();
    let recorded = recorded_metrics();
    assert!(recorded.len() >= 20, "src/metrics.rs read: {recorded:?}");
    assert_eq!(
        recorded,
        documented.keys().cloned().collect(),
        "src/metrics.rs and docs/METRICS.md list different metrics"
    );

    // The data source the dashboard names is the one Grafana is given.
    let datasources = yaml_doc("deploy/grafana/provisioning/datasources/prometheus.yml");
    let uid = datasources["datasources"][0]["uid"].as_str().expect("uid");
    let mut uids = Vec::new();
    strings_under(&dashboard, "uid", &mut uids);
    assert!(
        uids.iter().filter(|u| *u != "sluice").all(|u| u == uid),
        "{uids:?}"
    );
    let provider = yaml_doc("deploy/grafana/provisioning/dashboards/sluice.yml");
    assert_eq!(
        provider["providers"][0]["options"]["path"],
        "/var/lib/grafana/dashboards"
    );

    let mut queries = Vec::new();
    strings_under(&dashboard, "expr", &mut queries);
    strings_under(&dashboard, "query", &mut queries);
    assert!(queries.len() >= 10, "{queries:?}");
    let metric = Regex::new(r"\bsluice_[a-z_]+").unwrap();
    let by = Regex::new(r"\bby \(([^)]*)\)").unwrap();
    let matcher = Regex::new(r"\{([^}]*)\}").unwrap();
    let matcher_label = Regex::new(r"([a-z_]+)\s*=~?").unwrap();
    let common = ["le", "instance", "job"];
    let mut used = BTreeSet::new();
    for query in &queries {
        let names: Vec<String> = metric
            .find_iter(query)
            .map(|m| m.as_str().to_string())
            .collect();
        assert!(!names.is_empty(), "{query}: queries no Sluice metric");
        let mut allowed: BTreeSet<String> = common.iter().map(|s| s.to_string()).collect();
        for name in names {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|b| documented.get(*b).is_some_and(|(t, _)| t == "histogram"))
                })
                .unwrap_or(&name)
                .to_string();
            let (kind, labels) = documented.get(&base).unwrap_or_else(|| {
                panic!("{query}: {name} is not a Sluice metric (docs/METRICS.md)")
            });
            assert!(recorded.contains(&base), "{base} is not in src/metrics.rs");
            if name != base {
                assert_eq!(kind, "histogram");
            }
            allowed.extend(labels.iter().cloned());
            used.insert(base);
        }
        let mut labels_used = Vec::new();
        for caps in by.captures_iter(query) {
            labels_used.extend(caps[1].split(',').map(|l| l.trim().to_string()));
        }
        for caps in matcher.captures_iter(query) {
            labels_used.extend(
                matcher_label
                    .captures_iter(&caps[1])
                    .map(|l| l[1].to_string()),
            );
        }
        for label in labels_used.iter().filter(|l| !l.is_empty()) {
            assert!(
                allowed.contains(label),
                "{query}: label {label} is not one of {allowed:?}"
            );
        }
    }
    // The panels the deployment promises: requests by target, lag, pools,
    // pins, errors.
    for needed in [
        "sluice_requests_total",
        "sluice_replica_lag_seconds",
        "sluice_pool_connections",
        "sluice_pins_total",
        "sluice_errors_total",
    ] {
        assert!(
            used.contains(needed),
            "the dashboard has no panel on {needed}"
        );
    }
}
