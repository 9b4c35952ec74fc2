//! Counting and percentiles for the bench.

use serde::Serialize;

/// What one worker saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub requests: u64,
    pub messages: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Latency of every request, µs (or of every delivery for the long-poll workload).
    pub latencies: Vec<u32>,
}

impl Tally {
    pub fn record(&mut self, micros: u64) {
        self.requests += 1;
        self.latencies.push(micros.min(u32::MAX as u64) as u32);
    }

    pub fn error(&mut self, e: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.messages += other.messages;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies.extend(other.latencies);
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub dialect: String,
    pub workload: String,
    pub seconds: f64,
    pub requests: u64,
    pub messages: u64,
    pub requests_per_sec: f64,
    pub messages_per_sec: f64,
    /// messages/s (requests/s for healthz) over the healthz requests/s of the same run.
    pub ratio_to_healthz: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The q-quantile of sorted latencies, in ms.
pub fn quantile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

impl Row {
    pub fn new(dialect: &str, workload: &str, seconds: f64, mut t: Tally, healthz_rps: f64) -> Row {
        t.latencies.sort_unstable();
        // A row with no timed part (the server's resources) has no rates.
        let per_sec = |n: u64| if seconds > 0.0 { n as f64 / seconds } else { 0.0 };
        let (rps, mps) = (per_sec(t.requests), per_sec(t.messages));
        let basis = if workload == "healthz" { rps } else { mps };
        Row {
            dialect: dialect.into(),
            workload: workload.into(),
            seconds,
            requests: t.requests,
            messages: t.messages,
            requests_per_sec: rps,
            messages_per_sec: mps,
            ratio_to_healthz: if healthz_rps > 0.0 { basis / healthz_rps } else { 0.0 },
            p50_ms: quantile(&t.latencies, 0.50),
            p99_ms: quantile(&t.latencies, 0.99),
            p999_ms: quantile(&t.latencies, 0.999),
            errors: t.errors,
            first_error: t.first_error,
            note: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_rows() {
        let mut t = Tally::default();
        for us in 1..=1000 {
            t.record(us * 1000);
        }
        t.messages = 2000;
        let r = Row::new("mns", "publish", 2.0, t, 1000.0);
        assert_eq!(r.requests, 1000);
        assert_eq!(r.requests_per_sec, 500.0);
        assert_eq!(r.messages_per_sec, 1000.0);
        assert_eq!(r.ratio_to_healthz, 1.0);
        assert_eq!(r.p50_ms, 501.0);
        assert_eq!(r.p99_ms, 990.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
