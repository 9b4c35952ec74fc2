//! The layering rules, checked on the source text:
//!
//! * the core (`src/core`) and the engines (`src/engine`) never see the wire: no axum, http,
//!   hyper or quick-xml, no dialect, no server, no HTTP plumbing; the core does not know the
//!   engines either (they plug in through `core::Engine`);
//! * a dialect never imports another dialect, and push delivery imports none;
//! * no Rust source file (src, tests, benches) passes 600 lines.
//!
//! Each rule is also run against a small text that breaks it, so a rule that cannot fail is
//! itself a failure.

use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The code of a file without `//` comments (doc comments may name what the code must not use).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            // Keep `//` inside string literals such as "http://…" (a quote before it).
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The forbidden paths a file's code names.
fn forbidden_in(text: &str, forbidden: &[&str]) -> Vec<String> {
    let code = code(text);
    let mut found = Vec::new();
    for f in forbidden {
        for (i, _) in code.match_indices(f) {
            // A path segment starts here: not the tail of a longer identifier (`my_http::`).
            let before = code[..i].chars().next_back();
            if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
                found.push(f.to_string());
                break;
            }
        }
    }
    found
}

const WIRE: &[&str] = &["axum", "http::", "hyper", "quick_xml", "crate::dialects", "crate::server", "crate::http"];

fn dialects() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("src/dialects"))
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            e.file_type().unwrap().is_dir().then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    names
}

/// The paths by which a file of dialect `me` could reach another dialect.
fn other_dialects(me: &str, all: &[String]) -> Vec<String> {
    all.iter().filter(|d| *d != me).flat_map(|d| [format!("dialects::{d}"), format!("super::super::{d}")]).collect()
}

#[test]
fn core_and_engines_never_see_the_wire() {
    let mut bad = Vec::new();
    for dir in ["src/core", "src/engine"] {
        for f in rust_files(&root().join(dir)) {
            let mut forbidden: Vec<&str> = WIRE.to_vec();
            if dir == "src/core" {
                forbidden.push("crate::engine");
            }
            let found = forbidden_in(&std::fs::read_to_string(&f).unwrap(), &forbidden);
            if !found.is_empty() {
                bad.push(format!("{}: {found:?}", f.display()));
            }
        }
    }
    assert!(bad.is_empty(), "the core or an engine imports the wire:\n{}", bad.join("\n"));
    assert!(rust_files(&root().join("src/core")).len() > 5, "the rule looked at the core");
    assert!(rust_files(&root().join("src/engine")).len() > 5, "the rule looked at the engines");
}

#[test]
fn dialects_never_import_each_other_and_push_imports_none() {
    let all = dialects();
    assert!(all.len() >= 4, "found the dialects: {all:?}");
    let mut bad = Vec::new();
    for d in &all {
        let others = other_dialects(d, &all);
        let others: Vec<&str> = others.iter().map(String::as_str).collect();
        for f in rust_files(&root().join("src/dialects").join(d)) {
            let found = forbidden_in(&std::fs::read_to_string(&f).unwrap(), &others);
            if !found.is_empty() {
                bad.push(format!("{}: {found:?}", f.display()));
            }
        }
    }
    for f in rust_files(&root().join("src/push")) {
        let found = forbidden_in(&std::fs::read_to_string(&f).unwrap(), &["crate::dialects", "crate::server"]);
        if !found.is_empty() {
            bad.push(format!("{}: {found:?}", f.display()));
        }
    }
    assert!(bad.is_empty(), "a dialect imports another (or push imports one):\n{}", bad.join("\n"));
}

#[test]
fn no_source_file_passes_600_lines() {
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches"] {
        files.extend(rust_files(&root().join(dir)));
    }
    assert!(files.len() > 50, "the rule looked at the sources");
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these by job:\n{}", long.join("\n"));
}

#[test]
fn the_rules_catch_what_they_forbid() {
    assert_eq!(forbidden_in("use axum::Router;", WIRE), ["axum"]);
    assert_eq!(forbidden_in("fn f(h: &axum::http::HeaderMap) {}", WIRE), ["axum", "http::"]);
    assert_eq!(forbidden_in("use crate::dialects::mns::xml;", WIRE), ["crate::dialects"]);
    assert_eq!(forbidden_in("let x = quick_xml::Reader::from_str(s);", WIRE), ["quick_xml"]);
    // Comments, URLs in strings and longer identifiers are not imports.
    assert!(forbidden_in("//! never imports axum or http::Request", WIRE).is_empty());
    assert!(forbidden_in("let u = \"http://example.com\";", WIRE).is_empty());
    assert!(forbidden_in("use self::my_http::x;", WIRE).is_empty());
    let all = vec!["ctyun".to_string(), "dms".to_string(), "mns".to_string()];
    let others = other_dialects("dms", &all);
    let others: Vec<&str> = others.iter().map(String::as_str).collect();
    assert_eq!(forbidden_in("use crate::dialects::ctyun::messages::body_value;", &others), ["dialects::ctyun"]);
    assert_eq!(forbidden_in("use super::super::mns::xml;", &others), ["super::super::mns"]);
    assert!(forbidden_in("use crate::dialects::dms::error::DmsError;", &others).is_empty());
}
