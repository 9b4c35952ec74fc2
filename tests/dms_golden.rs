//! Replays `fixtures/dms/` (the consume example of Huawei's reference page) against a real server with the test's
//! own SDK-HMAC-SHA256 signer.

mod common;

use std::collections::HashMap;

use common::dms::DmsClient;
use common::golden::{extract, matches, substitute};
use common::*;
use serde_json::Value;

const PROJECT: &str = "0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn seed_consume_example_replays() {
    let s = TestServer::start().await;
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dms/consume.json");
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let mut vars: HashMap<String, String> = HashMap::from([("project".to_string(), PROJECT.to_string())]);
    for (n, step) in fx["steps"].as_array().unwrap().iter().enumerate() {
        let path = substitute(&step["path"], &vars);
        let body = step.get("body").map(|b| substitute(b, &vars));
        let query: Vec<(String, String)> = step
            .get("query")
            .and_then(Value::as_array)
            .map(|q| {
                q.iter().map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_str().unwrap().to_string())).collect()
            })
            .unwrap_or_default();
        let fut = {
            let c = DmsClient::new(&s.base, "test-ak", "test-sk", PROJECT, &s.clock);
            let method = step["method"].as_str().unwrap().to_string();
            let path = path.as_str().unwrap().to_string();
            async move {
                let q: Vec<(&str, &str)> = query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                c.call(&method, &path, &q, body.as_ref()).await
            }
        };
        // An empty consume waits its time_wait on the manual clock.
        let resp = drive(&s.clock, fut).await;
        let at = format!("step {n}: {} {}", step["method"], step["path"]);
        assert_eq!(resp.status as u64, step["expect"]["status"].as_u64().unwrap(), "{at}: {}", resp.body);
        matches(&step["expect"]["body"], &resp.body, &vars, &at);
        if let Some(caps) = step["capture"].as_object() {
            for (var, p) in caps {
                vars.insert(var.clone(), extract(&resp.body, p.as_str().unwrap()));
            }
        }
    }
}
