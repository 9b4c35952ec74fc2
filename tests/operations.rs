//! Running qgate for real, as a process: `check-config`, `--listen` / `--data-dir`, the refusal
//! to serve the public demo credentials to the network, `--help` naming every environment
//! variable, JSON logs with an access line per request (and no secrets in them), and the admin
//! listener announced at start.

mod common;

use std::process::Command;
use std::time::Duration;

use common::process::{Started, binary, start, try_start_env};

fn qgate(args: &[&str]) -> (i32, String, String) {
    let out =
        Command::new(binary()).args(args).env_remove("QGATE_LISTEN").env_remove("QGATE_DATA_DIR").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn check_config_reports_and_fails_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "listen = \"0.0.0.0:8080\"\n[admin]\ntokens = [\"adm_0123456789abcdef\"]\n[[tenants]]\nname = \"a\"\nbearer_keys = [\"ifr_demo\"]\n",
    )
    .unwrap();
    let (code, out, _) = qgate(&["check-config", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(": ok") && out.contains("tenant      a (1 bearer keys, 0 access keys)"), "{out}");
    assert!(out.contains("(1 tokens)"), "{out}");
    assert!(out.contains("warning") && out.contains("demo credentials"), "{out}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[tenants]]\nname = \"a\"\nbearer_keys = [\"k\"]\nnope = 1\n").unwrap();
    let (code, _, err) = qgate(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("nope"), "{err}");
    let (code, _, err) = qgate(&["check-config", "/no/such/file.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn help_names_every_environment_variable() {
    let (code, out, _) = qgate(&["--help"]);
    assert_eq!(code, 0);
    let (_, serve, _) = qgate(&["serve", "--help"]);
    for var in [
        "QGATE_CONFIG",
        "QGATE_LISTEN",
        "QGATE_DATA_DIR",
        "QGATE_ADMIN_TOKEN",
        "QGATE_ADMIN_URL",
        "QGATE_ALLOW_DEMO_CREDENTIALS",
        "RUST_LOG",
    ] {
        assert!(out.contains(var), "qgate --help lacks {var}:\n{out}");
        assert!(serve.contains(var), "qgate serve --help lacks {var}:\n{serve}");
    }
}

#[test]
fn the_public_demo_credentials_stay_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, _, err) = qgate(&["serve", "--listen", "0.0.0.0:0", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("refusing to serve the public demo credentials"), "{err}");
    // Explicitly allowed, it starts (and --listen / --data-dir are used).
    let mut child = Command::new(binary())
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir", data.to_str().unwrap(), "--allow-demo-credentials"])
        .env("QGATE_ADMIN_URL", "unused")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let mut listening = None;
    for line in lines.by_ref().take(40) {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("qgate: listening on http://") {
            listening = Some(a.to_string());
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(listening.is_some_and(|a| a.starts_with("0.0.0.0:")));
    assert!(data.join("store").exists(), "--data-dir was used");
}

#[test]
fn json_logs_have_an_access_line_per_request_and_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nlog_format = \"json\"\n[[tenants]]\nname = \"logs\"\nbearer_keys = [\"ifr_secret_bearer_key\"]\n",
        dir.path().join("data").display()
    );
    let mut s = match try_start_env(dir.path(), &cfg, None, "info") {
        Started::Listening(s) => s,
        Started::Exited { log, .. } => panic!("did not start: {}", log.join("\n")),
    };
    let body = r#"{"name":"logged"}"#;
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", &format!("{}/v1/queue/create", s.base)])
        .args(["-H", "authorization: Bearer ifr_secret_bearer_key", "-H", "content-type: application/json", "-d", body])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "201");
    let mut access = None;
    for _ in 0..100 {
        access =
            s.log.lock().iter().find(|l| l.contains("\"qgate::access\"") && l.contains("/v1/queue/create")).cloned();
        if access.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let line = access.unwrap_or_else(|| panic!("no access line:\n{}", s.log_text()));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["dialect"], "infrai");
    assert_eq!(v["tenant"], "logs");
    assert_eq!(v["status"], 201);
    assert!(v["latency_ms"].is_number() && v["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{v}");
    s.terminate();
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0));
    let all = s.log_text();
    assert!(!all.contains("ifr_secret_bearer_key"), "a secret reached the log");
    for l in all.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|_| panic!("not JSON: {l}"));
    }
}

#[test]
fn the_admin_listener_is_announced_and_serves_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\nmetrics_public = true\n[[tenants]]\nname = \"m\"\nbearer_keys = [\"ifr_m\"]\n",
        dir.path().join("data").display()
    );
    let s = start(dir.path(), &cfg);
    let mut admin = None;
    for _ in 0..100 {
        admin = s.log.lock().iter().find_map(|l| l.strip_prefix("qgate: admin on ").map(str::to_string));
        if admin.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let admin = admin.expect("the admin address is printed");
    let out = Command::new("curl").args(["-s", &format!("{admin}/metrics")]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("qgate_process_resident_memory_bytes"), "{text}");
}

fn hup(s: &common::process::Server) {
    assert!(Command::new("kill").args(["-HUP", &s.child.id().to_string()]).status().unwrap().success());
}

/// Waits until the log has a line containing `text` (`n`-th occurrence).
fn wait_log(s: &common::process::Server, text: &str, n: usize) -> bool {
    for _ in 0..250 {
        if s.log.lock().iter().filter(|l| l.contains(text)).count() >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn status(url: &str, bearer: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", url])
        .args([
            "-H",
            &format!("authorization: Bearer {bearer}"),
            "-H",
            "content-type: application/json",
            "-d",
            "{\"name\":\"q\"}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn sighup_rotates_keys_and_a_bad_file_keeps_the_running_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |key: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[[tenants]]\nname = \"rot\"\nbearer_keys = [\"{key}\"]\n",
            dir.path().join("data").display()
        )
    };
    let s = common::process::try_start_env(dir.path(), &cfg("ifr_old_key"), None, "info");
    let Started::Listening(s) = s else { panic!("did not start") };
    let url = format!("{}/v1/queue/create", s.base);
    assert_eq!(status(&url, "ifr_old_key"), "201");
    // Rotate: the file now names only the new key.
    std::fs::write(
        dir.path().join("qgate.toml"),
        format!("{}\n[admin]\nlisten = \"127.0.0.1:0\"\n", cfg("ifr_new_key")),
    )
    .unwrap();
    hup(&s);
    assert!(wait_log(&s, "SIGHUP: reloaded 1 tenants", 1), "{}", s.log_text());
    assert_eq!(status(&url, "ifr_old_key"), "401");
    assert_eq!(status(&url, "ifr_new_key"), "409", "the new key acts in the same tenant (the queue exists)");
    // A broken file: the running keys stay, and the log says why.
    std::fs::write(dir.path().join("qgate.toml"), "[[tenants]]\nname = \"\"\n").unwrap();
    hup(&s);
    assert!(wait_log(&s, "reload failed", 1), "{}", s.log_text());
    assert_eq!(status(&url, "ifr_new_key"), "409");
}

#[test]
fn tls_on_both_listeners_with_the_certificate_reloaded_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let write_cert = |name: &str| {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        std::fs::write(dir.path().join("cert.pem"), c.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), c.signing_key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join(name), c.cert.pem()).unwrap();
    };
    write_cert("first.pem");
    let cfg = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{d}/data\"\n[tls]\ncert = \"{d}/cert.pem\"\nkey = \"{d}/key.pem\"\n[admin]\nlisten = \"127.0.0.1:0\"\nmetrics_public = true\n[admin.tls]\ncert = \"{d}/cert.pem\"\nkey = \"{d}/key.pem\"\n[[tenants]]\nname = \"tls\"\nbearer_keys = [\"ifr_tls_key\"]\n",
        d = dir.path().display()
    );
    let Started::Listening(s) = common::process::try_start_env(dir.path(), &cfg, None, "info") else {
        panic!("did not start")
    };
    let https = s.base.replacen("http://", "https://", 1);
    let get = |url: &str, ca: &str| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", ca, url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = dir.path().join("first.pem");
    let first = first.to_str().unwrap();
    assert_eq!(get(&format!("{https}/healthz"), first), "200");
    // Plain HTTP on a TLS listener gets nowhere.
    assert_ne!(get(&format!("{}/healthz", s.base), first), "200");
    assert!(wait_log(&s, "qgate: admin on", 1));
    let admin =
        s.log.lock().iter().find_map(|l| l.strip_prefix("qgate: admin on http://").map(str::to_string)).unwrap();
    assert_eq!(get(&format!("https://{admin}/metrics"), first), "200");
    // A renewed certificate is served after SIGHUP, without a restart.
    write_cert("second.pem");
    let second = dir.path().join("second.pem");
    let second = second.to_str().unwrap();
    assert_ne!(get(&format!("{https}/healthz"), second), "200", "still the first certificate");
    hup(&s);
    assert!(wait_log(&s, "SIGHUP: reloaded", 1), "{}", s.log_text());
    assert_eq!(get(&format!("{https}/healthz"), second), "200");
    assert_eq!(get(&format!("https://{admin}/metrics"), second), "200");
}
