//! qgate: a self-hosted message-queue server that speaks several vendors' queue APIs at once.
//!
//! One queue core ([`core`]: the model and the broker the dialects call) over an engine
//! ([`engine`]: the embedded one keeps queues in memory, durable through sled and a write-ahead
//! log), and one HTTP listener ([`server`]) where each vendor dialect ([`dialects`]) lives under
//! its own paths. A request is decoded by its dialect (authentication included), turned into a
//! neutral broker call (`publish`, `receive`, `ack`, …), and the result or [`core::CoreError`] is
//! encoded back in the dialect's own format. The core and the engines never see the wire; the
//! dialects never touch an engine.
//! [`listener`] accepts connections and enforces the timeouts and the connection cap.
//! Credentials map to tenants in [`auth`]; configuration is [`config`]; push subscriptions are
//! delivered by [`push`]; [`http`] holds the plumbing every dialect shares; [`json`] the JSON
//! renderings of core records that several of them (and push) share; [`state`] is what
//! every handler reaches (the server builds it, the dialects only use it); [`bench`] is the
//! load generator behind `qgate bench`; [`admin`] the admin listener (the admin API, the web
//! console, `qgate admin`) and [`metrics`] its Prometheus endpoint.

#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod bench;
pub mod config;
pub mod core;
pub mod dialects;
pub mod engine;
pub mod http;
pub mod json;
pub mod listener;
pub mod metrics;
pub mod push;
pub mod server;
pub mod state;
