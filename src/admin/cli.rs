//! `qgate admin`: the admin API from a shell. Tables for people, `--json` for scripts; the exit
//! status is non-zero on any error (the server's, the network's, or a queue that is not there).
//!
//! A queue is named `NAME` (found in whichever tenant has it; ambiguous names need a tenant) or
//! `TENANT/NAME`, or `NAME --tenant TENANT` (for tenant names that contain a `/`).

use clap::{Args, Subcommand};
use serde_json::Value;

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The admin listener.
    #[arg(long, env = "QGATE_ADMIN_URL", default_value = "http://127.0.0.1:9180")]
    pub url: String,
    /// An admin token (`[admin] tokens`).
    #[arg(long, env = "QGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Tenants and how many queues each has.
    Tenants,
    /// Every queue with its depth by state and counters.
    Queues {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// One queue: attributes and consumer groups.
    Queue {
        queue: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Look at up to --limit messages without taking them.
    Peek {
        queue: String,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Remove every ready, delayed and in-flight message (dead letters stay).
    Purge {
        queue: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Return dead letters to the queue: the --id ones, or all.
    Redrive {
        queue: String,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long = "id")]
        ids: Vec<String>,
    },
}

struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Client {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}/api/v1{path}", self.url.trim_end_matches('/'));
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| format!("{url}: {e}"))?;
        let v: Value = serde_json::from_str(&text).map_err(|_| format!("{url}: {status}: {text}"))?;
        if !status.is_success() {
            let msg = v["error"]["message"].as_str().unwrap_or(&text);
            return Err(format!("{status}: {msg}"));
        }
        Ok(v)
    }

    /// (tenant, name) of a queue argument.
    async fn resolve(&self, queue: &str, tenant: Option<&str>) -> Result<(String, String), String> {
        if let Some(t) = tenant {
            return Ok((t.to_string(), queue.to_string()));
        }
        let all = self.call(reqwest::Method::GET, "/queues", None).await?;
        let list = all["queues"].as_array().cloned().unwrap_or_default();
        let full: Vec<(String, String)> = list
            .iter()
            .map(|q| (q["tenant"].as_str().unwrap_or("").to_string(), q["name"].as_str().unwrap_or("").to_string()))
            .collect();
        if let Some((t, n)) = queue.rsplit_once('/')
            && full.iter().any(|(ft, fname)| ft == t && fname == n)
        {
            return Ok((t.to_string(), n.to_string()));
        }
        let hits: Vec<&(String, String)> = full.iter().filter(|(_, n)| n == queue).collect();
        match hits.as_slice() {
            [] => Err(format!("no queue named {queue}")),
            [one] => Ok((*one).clone()),
            many => Err(format!(
                "{queue} is in several tenants ({}): name one with --tenant",
                many.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn path(t: &str, n: &str) -> String {
    format!("/queues/{}/{}", seg(t), seg(n))
}

/// Left-aligned columns.
fn table(head: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect::<Vec<_>>().join("  ")
    };
    let mut out = line(head.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(line(r).trim_end());
        out.push('\n');
    }
    out
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// How a command's answer is shown to people.
type Render = Box<dyn Fn(&Value) -> String>;

/// Runs a command; the text to print, or the error.
pub async fn run(args: AdminArgs) -> Result<String, String> {
    let token =
        args.token.clone().filter(|t| !t.is_empty()).ok_or("no admin token: set QGATE_ADMIN_TOKEN or --token")?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().no_proxy().build().map_err(|e| e.to_string())?;
    let c = Client { http, url: args.url.clone(), token };
    use reqwest::Method as M;
    let (v, human): (Value, Render) = match &args.command {
        AdminCommand::Tenants => (
            c.call(M::GET, "/tenants", None).await?,
            Box::new(|v| {
                let rows = v["tenants"].as_array().into_iter().flatten().map(|t| vec![s(&t["name"]), s(&t["queues"])]);
                table(&["TENANT", "QUEUES"], rows.collect())
            }),
        ),
        AdminCommand::Queues { tenant } => {
            let q = tenant.as_ref().map(|t| format!("?tenant={}", seg(t))).unwrap_or_default();
            (
                c.call(M::GET, &format!("/queues{q}"), None).await?,
                Box::new(|v| {
                    let rows = v["queues"].as_array().into_iter().flatten().map(|q| {
                        [
                            "tenant",
                            "name",
                            "ready",
                            "in_flight",
                            "delayed",
                            "dead",
                            "groups",
                            "published_total",
                            "acked_total",
                        ]
                        .iter()
                        .map(|k| s(&q[*k]))
                        .collect()
                    });
                    table(
                        &["TENANT", "QUEUE", "READY", "IN FLIGHT", "DELAYED", "DEAD", "GROUPS", "PUBLISHED", "ACKED"],
                        rows.collect(),
                    )
                }),
            )
        }
        AdminCommand::Queue { queue, tenant } => {
            let (t, n) = c.resolve(queue, tenant.as_deref()).await?;
            (
                c.call(M::GET, &path(&t, &n), None).await?,
                Box::new(|v| {
                    let q = &v["queue"];
                    let mut out = String::new();
                    for k in [
                        "tenant",
                        "name",
                        "id",
                        "kind",
                        "ready",
                        "in_flight",
                        "delayed",
                        "dead",
                        "published_total",
                        "delivered_total",
                        "acked_total",
                        "oldest_ready_age_secs",
                        "created_at",
                    ] {
                        out.push_str(&format!("{k:<22} {}\n", s(&q[k])));
                    }
                    if let Some(cfg) = q["config"].as_object() {
                        for (k, val) in cfg {
                            out.push_str(&format!("{k:<22} {}\n", s(val)));
                        }
                    }
                    let groups = v["groups"].as_array().cloned().unwrap_or_default();
                    if !groups.is_empty() {
                        out.push('\n');
                        let rows = groups.iter().map(|g| {
                            ["name", "id", "backlog", "in_flight", "dead"].iter().map(|k| s(&g[*k])).collect()
                        });
                        out.push_str(&table(&["GROUP", "ID", "BACKLOG", "IN FLIGHT", "DEAD"], rows.collect()));
                    }
                    out
                }),
            )
        }
        AdminCommand::Peek { queue, tenant, limit } => {
            let (t, n) = c.resolve(queue, tenant.as_deref()).await?;
            (
                c.call(M::GET, &format!("{}/messages?limit={limit}", path(&t, &n)), None).await?,
                Box::new(|v| {
                    let rows = v["messages"].as_array().into_iter().flatten().map(|m| {
                        let body: String = s(&m["preview"]).chars().take(60).collect::<String>().replace('\n', " ");
                        vec![s(&m["id"]), s(&m["priority"]), s(&m["deliveries"]), s(&m["enqueued_at"]), body]
                    });
                    table(&["ID", "PRIORITY", "DELIVERIES", "ENQUEUED", "BODY"], rows.collect())
                }),
            )
        }
        AdminCommand::Purge { queue, tenant } => {
            let (t, n) = c.resolve(queue, tenant.as_deref()).await?;
            (
                c.call(M::POST, &format!("{}/purge", path(&t, &n)), None).await?,
                Box::new(|v| format!("purged {} messages\n", s(&v["purged"]))),
            )
        }
        AdminCommand::Redrive { queue, tenant, ids } => {
            let (t, n) = c.resolve(queue, tenant.as_deref()).await?;
            let body = if ids.is_empty() { serde_json::json!({"all": true}) } else { serde_json::json!({"ids": ids}) };
            (
                c.call(M::POST, &format!("{}/deadletters/redrive", path(&t, &n)), Some(body)).await?,
                Box::new(|v| format!("redrove {} dead letters\n", s(&v["redriven"]))),
            )
        }
    };
    Ok(if args.json { format!("{v}\n") } else { human(&v) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], vec![vec!["xyz".into(), "1".into()], vec!["q".into(), "22".into()]]);
        assert_eq!(t, "A    BB\nxyz  1\nq    22\n");
    }
}
