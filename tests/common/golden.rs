//! Matching JSON answers against golden patterns (fixtures/*/README.md describe the syntax).
#![allow(dead_code)]

use std::collections::HashMap;

use serde_json::Value;

/// Replaces `{name}` in every string with captured values.
pub fn substitute(v: &Value, vars: &HashMap<String, String>) -> Value {
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

pub fn matches(want: &Value, got: &Value, vars: &HashMap<String, String>, at: &str) {
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

pub fn extract(v: &Value, path: &str) -> String {
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
