//! Message properties: `<UserProperties>`, `<SystemProperties>` and `<MessageGroupId>`.
//!
//! They are kept in the message's attributes, the map every dialect with message attributes
//! reads, in the JSON-text form the JSON dialects use, so a property set through MNS is an
//! attribute in infrai, DMS and CTYun and the other way round:
//!
//! | MNS Type | attribute value (JSON) |
//! |---|---|
//! | STRING | a string |
//! | NUMBER | a number (a NUMBER that is not a JSON number, `nan`, stays a string) |
//! | BOOLEAN | `true` / `false` |
//! | BINARY | `{"$binary": "<base64>"}` |
//!
//! Read back through MNS, a string is STRING, a number NUMBER, a boolean BOOLEAN, the binary
//! object BINARY, and anything else (objects, arrays, null set through a JSON dialect) STRING
//! holding its JSON text. System properties are attributes named `mns.system.{name}`. The
//! message group id is not an attribute but the message's ordering key (see
//! [`crate::core::model::NewMessage::order_key`]).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::error::MnsError;
use super::xml::{Element, Writer};

/// Attribute prefix of system properties.
pub const SYSTEM_PREFIX: &str = "mns.system.";
/// Most properties of each kind on one message, and their sizes.
const MAX_PROPERTIES: usize = 64;
const MAX_NAME: usize = 256;
/// Longest message group id.
pub const MAX_GROUP_ID: usize = 128;

/// One `<PropertyValue>` as a (name, attribute JSON text) pair.
fn property(e: &Element) -> Result<(String, String), MnsError> {
    let text = |n: &str| e.child(n).map(|c| c.text.clone()).unwrap_or_default();
    let name = text("Name").trim().to_string();
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(MnsError::invalid(format!("A property name must be 1 to {MAX_NAME} printable characters.")));
    }
    let value = text("Value");
    let kind = text("Type");
    let json = match kind.trim().to_ascii_uppercase().as_str() {
        "STRING" | "" => json!(value),
        "NUMBER" => match serde_json::from_str::<Value>(value.trim()) {
            Ok(v @ Value::Number(_)) => v,
            _ if value.trim().parse::<f64>().is_ok() => json!(value.trim()),
            _ => return Err(MnsError::invalid(format!("The NUMBER property {name} is not a number."))),
        },
        "BOOLEAN" => match value.trim().to_ascii_lowercase().as_str() {
            "true" => json!(true),
            "false" => json!(false),
            _ => return Err(MnsError::invalid(format!("The BOOLEAN property {name} is neither true nor false."))),
        },
        "BINARY" => {
            STANDARD
                .decode(value.trim())
                .map_err(|_| MnsError::invalid(format!("The BINARY property {name} is not base64.")))?;
            json!({"$binary": value.trim()})
        }
        other => return Err(MnsError::invalid(format!("Unknown property type {other}."))),
    };
    Ok((name, json.to_string()))
}

/// Reads the properties and group id of a `<Message>` into attributes.
pub fn read(msg: &Element) -> Result<BTreeMap<String, String>, MnsError> {
    let mut out = BTreeMap::new();
    if let Some(up) = msg.child("UserProperties") {
        let items: Vec<&Element> = up.children_named("PropertyValue").collect();
        if items.len() > MAX_PROPERTIES {
            return Err(MnsError::invalid(format!("A message has at most {MAX_PROPERTIES} user properties.")));
        }
        for p in items {
            let (k, v) = property(p)?;
            if k.starts_with("mns.") {
                return Err(MnsError::invalid("User property names starting with mns. are reserved."));
            }
            out.insert(k, v);
        }
    }
    if let Some(sp) = msg.child("SystemProperties") {
        let items: Vec<&Element> = sp.children_named("SystemPropertyValue").collect();
        if items.len() > MAX_PROPERTIES {
            return Err(MnsError::invalid(format!("A message has at most {MAX_PROPERTIES} system properties.")));
        }
        for p in items {
            let (k, v) = property(p)?;
            out.insert(format!("{SYSTEM_PREFIX}{k}"), v);
        }
    }
    Ok(out)
}

/// An attribute's JSON text as an MNS (Value, Type).
fn typed(text: &str) -> (String, &'static str) {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::String(s)) => (s, "STRING"),
        Ok(Value::Number(n)) => (n.to_string(), "NUMBER"),
        Ok(Value::Bool(b)) => (b.to_string(), "BOOLEAN"),
        Ok(Value::Object(o)) if o.len() == 1 && o.get("$binary").is_some_and(Value::is_string) => {
            (o["$binary"].as_str().unwrap_or_default().to_string(), "BINARY")
        }
        Ok(other) => (other.to_string(), "STRING"),
        // Not JSON text (an API whose attributes are plain strings): the text itself.
        Err(_) => (text.to_string(), "STRING"),
    }
}

/// The `<MessageGroupId>` of a message: its ordering key.
pub fn group_id(msg: &Element) -> Result<Option<String>, MnsError> {
    match msg.child("MessageGroupId").map(|g| g.text.trim()).filter(|g| !g.is_empty()) {
        None => Ok(None),
        Some(g) if g.len() > MAX_GROUP_ID || g.chars().any(char::is_control) => {
            Err(MnsError::invalid(format!("MessageGroupId must be 1 to {MAX_GROUP_ID} printable characters.")))
        }
        Some(g) => Ok(Some(g.to_string())),
    }
}

/// Writes `<UserProperties>` and `<SystemProperties>` for the attributes a message carries
/// (nothing when it has none). Empty values are left out: the SDK drops such entries anyway.
pub fn write(w: &mut Writer, attrs: &BTreeMap<String, String>) {
    let user: Vec<(&String, &String)> = attrs.iter().filter(|(k, _)| !k.starts_with("mns.")).collect();
    let system: Vec<(&str, &String)> =
        attrs.iter().filter_map(|(k, v)| k.strip_prefix(SYSTEM_PREFIX).map(|n| (n, v))).collect();
    let mut entries = |outer: &'static str, inner: &'static str, items: Vec<(&str, &String)>| {
        let items: Vec<(&str, String, &'static str)> = items
            .into_iter()
            .map(|(k, v)| {
                let (value, kind) = typed(v);
                (k, value, kind)
            })
            .filter(|(_, v, _)| !v.is_empty())
            .collect();
        if items.is_empty() {
            return;
        }
        w.open(outer);
        for (k, v, t) in items {
            w.open(inner).leaf("Name", k).leaf("Value", v).leaf("Type", t).close();
        }
        w.close();
    };
    entries("UserProperties", "PropertyValue", user.into_iter().map(|(k, v)| (k.as_str(), v)).collect());
    // System properties are always STRING for the SDK.
    let system: Vec<(&str, String)> = system.into_iter().map(|(k, v)| (k, json!(typed(v).0).to_string())).collect();
    entries("SystemProperties", "SystemPropertyValue", system.iter().map(|(k, v)| (*k, v)).collect());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialects::mns::xml::parse;

    #[test]
    fn sdk_properties_round_trip() {
        let doc = b"<Message><MessageBody>cWJvZHk=</MessageBody><MessageGroupId>g1</MessageGroupId><UserProperties><PropertyValue><Name>n</Name><Value>3.5</Value><Type>NUMBER</Type></PropertyValue><PropertyValue><Name>s</Name><Value>a&lt;b</Value><Type>STRING</Type></PropertyValue><PropertyValue><Name>b</Name><Value>TRUE</Value><Type>BOOLEAN</Type></PropertyValue><PropertyValue><Name>bin</Name><Value>AAEC</Value><Type>BINARY</Type></PropertyValue></UserProperties><SystemProperties><SystemPropertyValue><Name>traceparent</Name><Value>00-abc-def-01</Value><Type>STRING</Type></SystemPropertyValue></SystemProperties></Message>";
        let attrs = read(&parse(doc).unwrap()).unwrap();
        assert_eq!(attrs["n"], "3.5");
        assert_eq!(attrs["s"], "\"a<b\"");
        assert_eq!(attrs["b"], "true");
        assert_eq!(attrs["bin"], "{\"$binary\":\"AAEC\"}");
        assert_eq!(attrs["mns.system.traceparent"], "\"00-abc-def-01\"");
        assert_eq!(group_id(&parse(doc).unwrap()).unwrap().as_deref(), Some("g1"));
        assert!(group_id(&parse(b"<Message><MessageGroupId> </MessageGroupId></Message>").unwrap()).unwrap().is_none());
        let long = format!("<Message><MessageGroupId>{}</MessageGroupId></Message>", "g".repeat(129));
        assert!(group_id(&parse(long.as_bytes()).unwrap()).is_err());
        let mut w = Writer::new("Message");
        write(&mut w, &attrs);
        let out = w.finish();
        assert!(out.contains("<UserProperties><PropertyValue><Name>b</Name><Value>true</Value><Type>BOOLEAN</Type></PropertyValue><PropertyValue><Name>bin</Name><Value>AAEC</Value><Type>BINARY</Type></PropertyValue><PropertyValue><Name>n</Name><Value>3.5</Value><Type>NUMBER</Type></PropertyValue><PropertyValue><Name>s</Name><Value>a&lt;b</Value><Type>STRING</Type></PropertyValue></UserProperties>"), "{out}");
        assert!(out.contains("<SystemProperties><SystemPropertyValue><Name>traceparent</Name><Value>00-abc-def-01</Value><Type>STRING</Type></SystemPropertyValue></SystemProperties>"), "{out}");
    }

    #[test]
    fn json_attributes_read_as_typed_properties() {
        let mut attrs = BTreeMap::new();
        attrs.insert("obj".to_string(), "{\"a\":1}".to_string());
        attrs.insert("plain".to_string(), "not json".to_string());
        attrs.insert("empty".to_string(), "\"\"".to_string());
        let mut w = Writer::new("Message");
        write(&mut w, &attrs);
        let out = w.finish();
        assert!(out.contains("<Name>obj</Name><Value>{&quot;a&quot;:1}</Value><Type>STRING</Type>"), "{out}");
        assert!(out.contains("<Name>plain</Name><Value>not json</Value><Type>STRING</Type>"), "{out}");
        assert!(!out.contains("<Name>empty</Name>"), "{out}");
    }

    #[test]
    fn bad_properties_are_refused() {
        for bad in [
            "<Message><UserProperties><PropertyValue><Name>n</Name><Value>x</Value><Type>NUMBER</Type></PropertyValue></UserProperties></Message>",
            "<Message><UserProperties><PropertyValue><Name>b</Name><Value>yes</Value><Type>BOOLEAN</Type></PropertyValue></UserProperties></Message>",
            "<Message><UserProperties><PropertyValue><Name>x</Name><Value>!!</Value><Type>BINARY</Type></PropertyValue></UserProperties></Message>",
            "<Message><UserProperties><PropertyValue><Name>x</Name><Value>1</Value><Type>DATE</Type></PropertyValue></UserProperties></Message>",
            "<Message><UserProperties><PropertyValue><Value>1</Value><Type>STRING</Type></PropertyValue></UserProperties></Message>",
            "<Message><UserProperties><PropertyValue><Name>mns.x</Name><Value>1</Value><Type>STRING</Type></PropertyValue></UserProperties></Message>",
        ] {
            assert_eq!(read(&parse(bad.as_bytes()).unwrap()).unwrap_err().code, "InvalidArgument", "{bad}");
        }
    }
}
