//! Replays `fixtures/ctyun/` (built from the vendor document's samples) against a real server
//! with the test's own CTYun signer.

mod common;

use std::collections::HashMap;

use common::ctyun::CtClient;
use common::*;
use serde_json::Value;

fn substitute(v: &Value, vars: &HashMap<String, String>) -> Value {
    match v {
        Value::String(s) => {
            let mut out = s.clone();
            for (k, val) in vars {
                out = out.replace(&format!("{{{k}}}"), val);
            }
            Value::String(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, vars)).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, x)| (k.clone(), substitute(x, vars))).collect()),
        other => other.clone(),
    }
}

fn matches(want: &Value, got: &Value, vars: &HashMap<String, String>, at: &str) {
    match want {
        Value::String(s) if s == "*" => assert!(!got.is_null(), "{at}: expected a value"),
        Value::String(s) if s.starts_with('{') && s.ends_with('}') && vars.contains_key(&s[1..s.len() - 1]) => {
            assert_eq!(got.as_str(), Some(vars[&s[1..s.len() - 1]].as_str()), "{at}")
        }
        Value::Object(m) if m.len() == 1 && m.contains_key("$json") => {
            let text = got.as_str().unwrap_or_else(|| panic!("{at}: expected a JSON string, got {got}"));
            let inner: Value = serde_json::from_str(text).unwrap_or_else(|_| panic!("{at}: not JSON: {text}"));
            matches(&m["$json"], &inner, vars, &format!("{at}.$json"));
        }
        Value::Object(m) => {
            let g = got.as_object().unwrap_or_else(|| panic!("{at}: expected an object, got {got}"));
            let mut wk: Vec<&String> = m.keys().collect();
            let mut gk: Vec<&String> = g.keys().collect();
            wk.sort();
            gk.sort();
            assert_eq!(wk, gk, "{at}: keys");
            for (k, w) in m {
                matches(w, &g[k], vars, &format!("{at}.{k}"));
            }
        }
        Value::Array(a) => {
            let g = got.as_array().unwrap_or_else(|| panic!("{at}: expected an array, got {got}"));
            assert_eq!(a.len(), g.len(), "{at}: length of {got}");
            for (i, (w, x)) in a.iter().zip(g).enumerate() {
                matches(w, x, vars, &format!("{at}.{i}"));
            }
        }
        other => assert_eq!(got, other, "{at}"),
    }
}

fn extract(v: &Value, path: &str) -> String {
    let mut cur = v.clone();
    for seg in path.split('.') {
        cur = if seg == "$json" {
            serde_json::from_str(cur.as_str().unwrap()).unwrap()
        } else if let Ok(i) = seg.parse::<usize>() {
            cur[i].clone()
        } else {
            cur[seg].clone()
        };
    }
    cur.as_str().map(str::to_string).unwrap_or_else(|| cur.to_string())
}

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
