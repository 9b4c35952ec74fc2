//! What the request targets share: a request read from fuzz bytes, in the shape of HTTP/1.1
//! text (`METHOD TARGET` line, `Name: value` lines, an empty line, the body), so that corpus
//! files are readable and seeds are written by hand.

#![allow(dead_code)]

use http::request::Parts;

/// The request the bytes describe, or `None` when they do not make one (the HTTP layer in
/// front of the dialects would have refused them already).
pub fn request(data: &[u8]) -> Option<(Parts, Vec<u8>)> {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(at) => (&data[..at], data[at + 2..].to_vec()),
        None => (data, Vec::new()),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split('\n');
    let (method, target) = lines.next()?.split_once(' ')?;
    let mut b = http::Request::builder().method(method).uri(target);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        b = b.header(name.trim(), value.trim_start());
    }
    let (parts, ()) = b.body(()).ok()?.into_parts();
    Some((parts, body))
}

/// The header's value as text.
pub fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}
