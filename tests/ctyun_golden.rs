//! Replays `fixtures/ctyun/` (built from the vendor document's samples) against a real server
//! with the test's own CTYun signer.

mod common;

use std::collections::HashMap;

use common::ctyun::CtClient;
use common::golden::{extract, matches, substitute};
use common::*;
use serde_json::Value;

#[tokio::test]
async fn document_samples_replay() {
    let s = TestServer::start().await;
    let ct = CtClient::new(&s.base, "test-ak", "test-sk", &s.clock);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ctyun");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        let fx: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let mut vars: HashMap<String, String> = HashMap::new();
        for (n, step) in fx["steps"].as_array().unwrap().iter().enumerate() {
            let op = step["op"].as_str().unwrap();
            let params: Vec<(String, Value)> =
                step["params"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), substitute(v, &vars))).collect();
            let refs: Vec<(&str, Value)> = params.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            let resp = match step["method"].as_str().unwrap() {
                "GET" => ct.get(op, &refs).await,
                _ => ct.post(op, &refs).await,
            };
            let at = format!("{} step {n} ({op})", file.display());
            assert_eq!(resp.status as u64, step["expect"]["status"].as_u64().unwrap(), "{at}: {}", resp.body);
            matches(&step["expect"]["body"], &resp.body, &vars, &at);
            if let Some(caps) = step["capture"].as_object() {
                for (var, path) in caps {
                    vars.insert(var.clone(), extract(&resp.body, path.as_str().unwrap()));
                }
            }
        }
    }
}
