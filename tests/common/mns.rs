//! A small MNS client for tests, with its own signer (it must not share signing code with the
//! server: a shared bug would pass) and its own XML reader.
#![allow(dead_code)]

use base64::Engine;
use hmac::{KeyInit, Mac};
use qgate::core::{Clock, ManualClock};

pub struct MnsClient {
    pub c: reqwest::Client,
    pub base: String,
    pub ak: String,
    pub sk: String,
    pub clock: ManualClock,
}

#[derive(Debug)]
pub struct XmlResp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl XmlResp {
    pub fn root(&self) -> Node {
        parse(&self.body)
    }

    /// For an `<Error>` answer: checks its four children and the request-id header; returns the code.
    pub fn error_code(&self) -> String {
        let e = self.root();
        assert_eq!(e.name, "Error", "{}", self.body);
        let names: Vec<&str> = e.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Code", "Message", "RequestId", "HostId"], "{}", self.body);
        assert_eq!(e.text_of("RequestId"), self.headers["x-mns-request-id"].to_str().unwrap());
        assert!(e.text_of("HostId").starts_with("http://127.0.0.1:"));
        assert!(self.headers["content-type"].to_str().unwrap().starts_with("text/xml"));
        e.text_of("Code")
    }
}

/// The MNS signature, written from the SDKs' algorithm (`dialects/mns/README.md`) independently
/// of the server.
pub fn sign(
    sk: &str,
    method: &str,
    md5: &str,
    ctype: &str,
    date: &str,
    mns: &[(String, String)],
    resource: &str,
) -> String {
    let mut hs: Vec<(String, String)> = mns.iter().map(|(k, v)| (k.to_lowercase(), v.trim().to_string())).collect();
    hs.sort();
    let mut sts = format!("{method}\n{md5}\n{ctype}\n{date}\n");
    for (k, v) in hs {
        sts.push_str(&format!("{k}:{v}\n"));
    }
    sts.push_str(resource);
    let mut m = hmac::Hmac::<sha1::Sha1>::new_from_slice(sk.as_bytes()).unwrap();
    m.update(sts.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

pub fn http_date(ms: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

impl MnsClient {
    pub fn new(base: &str, ak: &str, sk: &str, clock: &ManualClock) -> Self {
        MnsClient { c: super::client(), base: base.into(), ak: ak.into(), sk: sk.into(), clock: clock.clone() }
    }

    /// Sends a signed request the way the Python SDK does (Date, x-mns-version, Content-MD5 as
    /// base64 of the hex digest). `extra` headers are sent (and the x-mns ones signed).
    pub async fn call(&self, method: &str, resource: &str, body: Option<&str>, extra: &[(&str, &str)]) -> XmlResp {
        let date = http_date(self.clock.now());
        let mut mns: Vec<(String, String)> = vec![("x-mns-version".into(), "2015-06-06".into())];
        for (k, v) in extra {
            if k.to_lowercase().starts_with("x-mns-") {
                mns.push((k.to_string(), v.to_string()));
            }
        }
        let (md5, ctype) = match body {
            Some(b) => {
                let hex = hex::encode(md5::Md5::digest(b.as_bytes()));
                (base64::engine::general_purpose::STANDARD.encode(hex), "text/xml;charset=UTF-8".to_string())
            }
            None => (String::new(), String::new()),
        };
        let sig = sign(&self.sk, method, &md5, &ctype, &date, &mns, resource);
        let mut req = self
            .c
            .request(method.parse().unwrap(), format!("{}{}", self.base, resource))
            .header("date", &date)
            .header("authorization", format!("MNS {}:{sig}", self.ak));
        for (k, v) in &mns {
            req = req.header(k.as_str(), v.as_str());
        }
        for (k, v) in extra {
            if !k.to_lowercase().starts_with("x-mns-") {
                req = req.header(*k, *v);
            }
        }
        if let Some(b) = body {
            req = req.header("content-md5", md5).header("content-type", ctype).body(b.to_string());
        }
        Self::finish(req).await
    }

    pub async fn finish(req: reqwest::RequestBuilder) -> XmlResp {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().await.unwrap();
        XmlResp { status, headers, body }
    }

    pub async fn get(&self, resource: &str) -> XmlResp {
        self.call("GET", resource, None, &[]).await
    }

    pub async fn send_msg(&self, queue: &str, body: &str) -> XmlResp {
        let doc = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Message xmlns=\"http://mns.aliyuncs.com/doc/v1/\"><MessageBody>{body}</MessageBody></Message>"
        );
        self.call("POST", &format!("/queues/{queue}/messages"), Some(&doc), &[]).await
    }

    pub async fn create(&self, queue: &str, attrs: &str) -> XmlResp {
        let doc = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Queue xmlns=\"http://mns.aliyuncs.com/doc/v1/\">{attrs}</Queue>"
        );
        self.call("PUT", &format!("/queues/{queue}"), Some(&doc), &[]).await
    }
}

use md5::Digest;

/// A parsed XML element (the test's own reader).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub text: String,
    pub children: Vec<Node>,
}

impl Node {
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn text_of(&self, name: &str) -> String {
        self.child(name).unwrap_or_else(|| panic!("no <{name}> in <{}>", self.name)).text.clone()
    }
}

pub fn parse(xml: &str) -> Node {
    use quick_xml::events::Event;
    let mut r = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<Node> = Vec::new();
    loop {
        match r.read_event().unwrap_or_else(|e| panic!("bad XML {e}: {xml}")) {
            Event::Start(s) => {
                stack.push(Node { name: s.local_name().as_ref().to_string(), text: String::new(), children: vec![] })
            }
            Event::Empty(s) => {
                let n = Node { name: s.local_name().as_ref().to_string(), text: String::new(), children: vec![] };
                match stack.last_mut() {
                    Some(p) => p.children.push(n),
                    None => return n,
                }
            }
            Event::End(_) => {
                let n = stack.pop().unwrap();
                match stack.last_mut() {
                    Some(p) => p.children.push(n),
                    None => return n,
                }
            }
            Event::Text(t) => {
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(g) => {
                if let Some(cur) = stack.last_mut() {
                    let s = match g.into_inner().as_ref() {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        other => panic!("entity {other}"),
                    };
                    cur.text.push_str(s);
                }
            }
            Event::Eof => panic!("no root element: {xml:?}"),
            _ => {}
        }
    }
}
