//! Replays the golden exchanges of `fixtures/mns/` (taken from the vendor document's samples)
//! against a real server with the test's own signing client.

mod common;

use std::collections::HashMap;

use common::mns::{MnsClient, Node, parse};
use common::*;
use serde_json::Value;

/// Compares a response element with the expected one: names and order exact, text exact unless
/// expected `*` (any non-empty) or `{var}` (a captured value).
fn compare(want: &Node, got: &Node, vars: &HashMap<String, String>, path: &str) {
    assert_eq!(want.name, got.name, "element name at {path}");
    let here = format!("{path}/{}", want.name);
    let want_names: Vec<&str> = want.children.iter().map(|c| c.name.as_str()).collect();
    let got_names: Vec<&str> = got.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(want_names, got_names, "children of {here}");
    if want.children.is_empty() {
        let w = want.text.as_str();
        if w == "*" {
            assert!(!got.text.is_empty(), "{here} must not be empty");
        } else if let Some(var) = w.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
            assert_eq!(&got.text, &vars[var], "{here} must equal the captured {var}");
        } else {
            assert_eq!(got.text, w, "text of {here}");
        }
    }
    for (w, g) in want.children.iter().zip(&got.children) {
        compare(w, g, vars, &here);
    }
}

fn substitute(s: &str, queue: &str, vars: &HashMap<String, String>) -> String {
    let mut out = s.replace("$queue", queue);
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

fn find<'a>(n: &'a Node, name: &str) -> Option<&'a Node> {
    if n.name == name {
        return Some(n);
    }
    n.children.iter().find_map(|c| find(c, name))
}

#[tokio::test]
async fn seed_exchanges_replay() {
    let s = TestServer::start().await;
    let mns = MnsClient::new(&s.base, "test-ak", "test-sk", &s.clock);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/mns");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "fixtures present");
    for (i, file) in files.iter().enumerate() {
        let fx: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let queue = format!("golden-{i}");
        assert_eq!(mns.create(&queue, "").await.status, 201);
        let mut vars = HashMap::new();
        for (n, step) in fx["steps"].as_array().unwrap().iter().enumerate() {
            let req = &step["request"];
            let path = substitute(req["path"].as_str().unwrap(), &queue, &vars);
            let body = req["body"].as_str().map(|b| substitute(b, &queue, &vars));
            let resp = mns.call(req["method"].as_str().unwrap(), &path, body.as_deref(), &[]).await;
            let ctx = format!("{} step {n}: {} {path}", file.display(), req["method"]);
            assert_eq!(resp.status as u64, step["response"]["status"].as_u64().unwrap(), "{ctx}: {}", resp.body);
            assert_eq!(resp.headers["x-mns-version"], "2015-06-06", "{ctx}");
            assert_eq!(resp.headers["x-mns-request-id"].len(), 24, "{ctx}");
            match step["response"]["xml"].as_str() {
                None => assert!(resp.body.is_empty(), "{ctx}: the body must be empty, got {}", resp.body),
                Some(want) => {
                    let want = parse(want);
                    let got = resp.root();
                    compare(&want, &got, &vars, "");
                    assert!(
                        resp.body.contains("xmlns=\"http://mns.aliyuncs.com/doc/v1/\""),
                        "{ctx}: default namespace"
                    );
                    if let Some(caps) = step["capture"].as_object() {
                        for (elem, var) in caps {
                            let v =
                                find(&got, elem).unwrap_or_else(|| panic!("{ctx}: no {elem} to capture")).text.clone();
                            vars.insert(var.as_str().unwrap().to_string(), v);
                        }
                    }
                }
            }
        }
    }
}
