//! The `qgate` command: `qgate serve` runs the server.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use qgate::config::{Config, DEMO_ACCESS_KEY, DEMO_BEARER, DEMO_SECRET, LogFormat};
use qgate::core::SystemClock;
use tracing_subscriber::EnvFilter;

/// mimalloc: glibc's per-thread arenas keep freed memory from the store's write-behind buffers
/// and grow RSS far beyond what is live.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Every environment variable qgate reads, for `--help`.
const ENVIRONMENT: &str = "\
Environment:
  QGATE_CONFIG        the configuration file of `serve` (like --config)
  QGATE_LISTEN        the vendor API address (like --listen; overrides `listen`)
  QGATE_DATA_DIR      the data directory (like --data-dir; overrides `data_dir`)
  QGATE_STORE_URL     the PostgreSQL engine's database (overrides [store] url)
  QGATE_ALLOW_DEMO_CREDENTIALS=1  serve the public demo credentials on a non-loopback address
  QGATE_ADMIN_URL     the admin listener `qgate admin` talks to (like --url)
  QGATE_ADMIN_TOKEN   the admin token `qgate admin` sends (like --token)
  RUST_LOG            log filter (default: info), e.g. RUST_LOG=qgate=debug";

#[derive(Parser)]
#[command(
    name = "qgate",
    version,
    about = "A message-queue server that speaks several vendors' queue APIs",
    after_help = ENVIRONMENT
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    #[command(after_help = ENVIRONMENT)]
    Serve {
        /// TOML configuration file (without one, qgate runs on its embedded default).
        #[arg(long, env = "QGATE_CONFIG")]
        config: Option<PathBuf>,
        /// The vendor API address (overrides `listen`).
        #[arg(long, env = "QGATE_LISTEN")]
        listen: Option<String>,
        /// The data directory (overrides `data_dir`).
        #[arg(long, env = "QGATE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Serve the public demo credentials on an address other machines can reach.
        #[arg(long, env = "QGATE_ALLOW_DEMO_CREDENTIALS")]
        allow_demo_credentials: bool,
    },
    /// Check a configuration file and print what it sets up; exit status 1 if it is invalid.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
    /// Load-test a running qgate through its dialects (see BENCHMARKS.md).
    Bench(Box<qgate::bench::BenchArgs>),
    /// Operate a running qgate through its admin API (queues, peek, purge, redrive, tenants).
    Admin(qgate::admin::cli::AdminArgs),
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Logs to stderr, as text for people or JSON lines for log shippers.
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        LogFormat::Json => {
            qgate::http::ACCESS_LOG.store(true, std::sync::atomic::Ordering::Relaxed);
            tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .init()
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        init_logging(LogFormat::Text);
    }
    let result = match cli.command {
        Command::Serve { config, listen, data_dir, allow_demo_credentials } => {
            serve(config, listen, data_dir, allow_demo_credentials)
        }
        Command::CheckConfig { file } => check_config(&file),
        Command::Bench(args) => bench(*args),
        Command::Admin(args) => admin(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qgate: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn bench(args: qgate::bench::BenchArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let as_json = args.json;
    let report = rt.block_on(qgate::bench::run(args))?;
    print!("{}", qgate::bench::render(&report, as_json));
    if report.errors > 0 {
        return Err(format!("{} requests failed", report.errors));
    }
    Ok(())
}

fn admin(args: qgate::admin::cli::AdminArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let out = rt.block_on(qgate::admin::cli::run(args))?;
    print!("{out}");
    Ok(())
}

fn check_config(file: &std::path::Path) -> Result<(), String> {
    let config = Config::load(Some(file), |_| None)?;
    println!("{}: ok", file.display());
    println!("  listen      {}", config.listen);
    println!("  data_dir    {}", config.data_dir.display());
    let admin = if config.admin.listen.is_empty() { "disabled".to_string() } else { config.admin.listen.clone() };
    println!("  admin       {admin} ({} tokens)", config.admin.tokens.len());
    for t in &config.tenants {
        println!("  tenant      {} ({} bearer keys, {} access keys)", t.name, t.bearer_keys.len(), t.access_keys.len());
    }
    if let Err(e) = qgate::config::check_public_demo(&config) {
        println!("  warning     {e}");
    }
    Ok(())
}

fn serve(
    path: Option<PathBuf>,
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    allow_demo_credentials: bool,
) -> Result<(), String> {
    let mut config = Config::load(path.as_deref(), |k| std::env::var(k).ok())?;
    if let Some(l) = listen.filter(|l| !l.is_empty()) {
        config.listen = l;
    }
    if let Some(d) = data_dir {
        config.data_dir = d;
    }
    if !allow_demo_credentials {
        qgate::config::check_public_demo(&config)?;
    }
    init_logging(config.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        if config.embedded_default {
            eprintln!("qgate: no configuration given; running the embedded default (for local use only).");
            eprintln!("qgate: demo tenant credentials (public, do not expose this server):");
            eprintln!("qgate:   infrai bearer key : {DEMO_BEARER}");
            eprintln!("qgate:   access key id     : {DEMO_ACCESS_KEY}");
            eprintln!("qgate:   access key secret : {DEMO_SECRET}");
            eprintln!("qgate:   project id        : {}", qgate::config::derived_project_id(qgate::config::DEMO_TENANT));
            if let Some(t) = config.admin.tokens.first() {
                eprintln!("qgate:   admin token       : {t} (this run only)");
            }
        }
        let mut opened = qgate::server::open(config.clone(), Arc::new(SystemClock)).await?;
        if !config.admin.listen.is_empty() {
            let admin = tokio::net::TcpListener::bind(&config.admin.listen)
                .await
                .map_err(|e| format!("cannot listen on {} ([admin] listen): {e}", config.admin.listen))?;
            let admin_addr = admin.local_addr().map_err(|e| e.to_string())?;
            if config.admin.tokens.is_empty() {
                tracing::warn!("[admin] has no tokens: the admin API refuses every call");
            }
            opened.admin = Some(admin);
            eprintln!("qgate: admin on http://{admin_addr}");
        }
        tracing::info!(listen = %addr, data_dir = %config.data_dir.display(), "qgate serving");
        let md5 = config.ctyun.content_md5;
        if md5.unbound() {
            let mode = format!("{md5:?}").to_lowercase();
            let what = if md5 == qgate::config::Md5Mode::Warn {
                "no CTYun request is bound to its parameters"
            } else {
                "CTYun requests signed with contentMD5 = MD5(\"\") are not bound to their parameters"
            };
            tracing::warn!(content_md5 = %mode, "{what}");
            eprintln!(
                "qgate: WARNING: [ctyun] content_md5 = \"{mode}\": {what}; a captured request of that kind can \
                 be replayed with other parameters (another queueId) while its requestDate is fresh. \
                 Use \"bound\" or \"strict\" when no client needs this (dialects/ctyun/README.md)."
            );
        }
        eprintln!("qgate: listening on http://{addr}");
        qgate::server::run(opened, listener, shutdown_signal()).await
    })
}
