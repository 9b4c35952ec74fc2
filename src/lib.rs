//! qgate: a self-hosted message-queue server that speaks several vendors' queue APIs at once.
//!
//! One durable queue core ([`core`]) on an embedded store ([`store`], sled), and one HTTP
//! listener ([`server`]) where each vendor dialect ([`dialects`]) lives under its own paths. A
//! request is decoded by its dialect (authentication included), turned into a neutral core call
//! (`publish`, `receive`, `ack`, …), and the result or [`core::CoreError`] is encoded back in the
//! dialect's own format. The core never sees the wire; the dialects never touch the store.
//! Credentials map to tenants in [`auth`]; configuration is [`config`]; push subscriptions are
//! delivered by [`push`]; [`http`] holds the plumbing every dialect shares; [`json`] the JSON
//! renderings of core records that several of them (and push) share; [`state`] is what
//! every handler reaches (the server builds it, the dialects only use it); [`bench`] is the
//! load generator behind `qgate bench`.

#![forbid(unsafe_code)]

pub mod auth;
pub mod bench;
pub mod config;
pub mod core;
pub mod dialects;
pub mod http;
pub mod json;
pub mod push;
pub mod server;
pub mod state;
pub mod store;
