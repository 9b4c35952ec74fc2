//! A real qgate process for the tests that need one (durability, disk full, abuse): started
//! from the binary cargo built (or `QGATE_BIN`), on a free port, with its stderr collected.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub fn binary() -> String {
    std::env::var("QGATE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_qgate").to_string())
}

/// A running qgate.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Every line it wrote to stderr so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// How a start ended.
pub enum Started {
    Listening(Server),
    Exited { code: Option<i32>, log: Vec<String> },
}

/// Starts qgate with `config` (TOML) written next to the data dir `dir`.
pub fn try_start(dir: &Path, config: &str) -> Started {
    try_start_with(dir, config, None)
}

/// As [`try_start`], with the open-file limit set to `nofile` (soft and hard) when given.
pub fn try_start_with(dir: &Path, config: &str, nofile: Option<u64>) -> Started {
    try_start_env(dir, config, nofile, "warn")
}

/// As [`try_start_with`], with `RUST_LOG` set to `log`.
pub fn try_start_env(dir: &Path, config: &str, nofile: Option<u64>, log: &str) -> Started {
    let cfg = dir.join("qgate.toml");
    // Tests run side by side: the admin listener takes a free port unless the test sets one.
    let config = if config.contains("[admin]") {
        config.to_string()
    } else {
        format!("{config}\n[admin]\nlisten = \"127.0.0.1:0\"\n")
    };
    std::fs::write(&cfg, config).unwrap();
    let mut cmd = match nofile {
        Some(n) => {
            let mut c = Command::new("sh");
            c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), &binary()]);
            c
        }
        None => Command::new(binary()),
    };
    let mut child = cmd
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qgate");
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("qgate: listening on http://") {
                    let _ = tx.send(addr.trim().to_string());
                }
                log.lock().push(line);
            }
        });
    }
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => Started::Listening(Server { child, base: format!("http://{addr}"), addr, log }),
        Err(_) => {
            let status = child.wait().expect("qgate exited");
            std::thread::sleep(Duration::from_millis(100));
            Started::Exited { code: status.code(), log: log.lock().clone() }
        }
    }
}

/// Starts qgate and waits until it listens.
pub fn start(dir: &Path, config: &str) -> Server {
    start_with(dir, config, None)
}

/// As [`start`], with the open-file limit set to `nofile`.
pub fn start_with(dir: &Path, config: &str, nofile: Option<u64>) -> Server {
    match try_start_with(dir, config, nofile) {
        Started::Listening(s) => s,
        Started::Exited { code, log } => panic!("qgate exited ({code:?}) before listening:\n{}", log.join("\n")),
    }
}

impl Server {
    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill -TERM");
    }

    /// Waits up to `limit` for the process to exit; its exit code (`None`: still running,
    /// then killed).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    pub fn log_text(&self) -> String {
        self.log.lock().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
