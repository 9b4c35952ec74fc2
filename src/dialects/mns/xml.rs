//! MNS XML in and out.
//!
//! Requests are small documents (`<Queue>`, `<Message>`, `<Messages>`, `<ReceiptHandles>`),
//! parsed into a tiny element tree with quick-xml: local names only (prefixes are ignored, as
//! the SDKs' decoders do), entities resolved, text kept exactly. Responses are written compact,
//! in the default namespace, with escaped text and no empty elements (the Python SDK's decoder
//! crashes on `<NextMarker/>`), which is what every SDK parses.

use quick_xml::Reader;
use quick_xml::events::Event;

/// The MNS document namespace.
pub const NS: &str = "http://mns.aliyuncs.com/doc/v1/";
const MAX_DEPTH: usize = 8;

/// One element of a request document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    /// The element's own text (entities resolved, whitespace kept).
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

fn entity(name: &str) -> Option<char> {
    match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => None,
    }
}

/// Parses a document and returns its root element. Any defect is an error message.
pub fn parse(bytes: &[u8]) -> Result<Element, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the body is not UTF-8".to_string())?;
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let ev = reader.read_event().map_err(|e| e.to_string())?;
        match ev {
            Event::Start(s) | Event::Empty(s) if root.is_some() => {
                return Err(format!("content after the root element: <{}>", s.local_name().as_ref()));
            }
            Event::Start(s) => {
                if stack.len() >= MAX_DEPTH {
                    return Err("the document is nested too deeply".into());
                }
                stack.push(Element { name: s.local_name().as_ref().to_string(), ..Element::default() });
            }
            Event::Empty(s) => {
                // An empty element is as deep as a started one: the limit counts both.
                if stack.len() >= MAX_DEPTH {
                    return Err("the document is nested too deeply".into());
                }
                let e = Element { name: s.local_name().as_ref().to_string(), ..Element::default() };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(e),
                    None => root = Some(e),
                }
            }
            Event::End(_) => {
                let done = stack.pop().ok_or("an end tag without a start")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => match stack.last_mut() {
                Some(cur) => cur.text.push_str(&t.xml10_content()),
                None if t.trim().is_empty() => {}
                None => return Err("text outside the root element".into()),
            },
            Event::CData(c) => match stack.last_mut() {
                Some(cur) => cur.text.push_str(&c.xml10_content()),
                None => return Err("CDATA outside the root element".into()),
            },
            Event::GeneralRef(r) => {
                let ch = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c,
                    None => {
                        let name = r.into_inner();
                        entity(&name).ok_or_else(|| format!("unknown entity &{name};"))?
                    }
                };
                match stack.last_mut() {
                    Some(cur) => cur.text.push(ch),
                    None => return Err("a reference outside the root element".into()),
                }
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::DocType(_) => return Err("DTDs are not accepted".into()),
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err("the document ends inside an element".into());
    }
    root.ok_or_else(|| "no root element".into())
}

/// A response document being written.
pub struct Writer {
    out: String,
    open: Vec<&'static str>,
}

impl Writer {
    /// Starts a document with `root` in the MNS namespace.
    pub fn new(root: &'static str) -> Self {
        let mut out = String::with_capacity(512);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
        out.push('<');
        out.push_str(root);
        out.push_str(" xmlns=\"");
        out.push_str(NS);
        out.push_str("\">");
        Writer { out, open: vec![root] }
    }

    /// Opens a nested element.
    pub fn open(&mut self, name: &'static str) -> &mut Self {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        self.open.push(name);
        self
    }

    /// Closes the innermost open element.
    pub fn close(&mut self) -> &mut Self {
        if let Some(name) = self.open.pop() {
            self.out.push_str("</");
            self.out.push_str(name);
            self.out.push('>');
        }
        self
    }

    /// A leaf with escaped text; skipped when the text is empty (no empty elements).
    pub fn leaf(&mut self, name: &str, text: impl AsRef<str>) -> &mut Self {
        let text = text.as_ref();
        if !text.is_empty() {
            self.leaf_kept(name, text);
        }
        self
    }

    /// A leaf written even when its text is empty (`<X></X>`), for the one element an SDK
    /// requires to be present whatever its value (GetAccountAttributes' LoggingBucket).
    pub fn leaf_kept(&mut self, name: &str, text: impl AsRef<str>) -> &mut Self {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        self.out.push_str(&quick_xml::escape::escape(text.as_ref()));
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// Closes everything and returns the document.
    pub fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.close();
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sdk_documents() {
        let doc = br#"<?xml version="1.0" encoding="utf-8"?><Message xmlns="http://mns.aliyuncs.com/doc/v1/"><MessageBody>a &amp; b &lt;c&gt; &#x4E2D;  </MessageBody><DelaySeconds>3</DelaySeconds></Message>"#;
        let e = parse(doc).unwrap();
        assert_eq!(e.name, "Message");
        assert_eq!(e.child("MessageBody").unwrap().text, "a & b <c> 中  ");
        assert_eq!(e.child("DelaySeconds").unwrap().text, "3");
        let list = parse(b"<ns:ReceiptHandles xmlns:ns=\"x\">\n <ns:ReceiptHandle>h1</ns:ReceiptHandle><ReceiptHandle>h2</ReceiptHandle></ns:ReceiptHandles>").unwrap();
        let hs: Vec<&str> = list.children_named("ReceiptHandle").map(|c| c.text.as_str()).collect();
        assert_eq!(hs, ["h1", "h2"]);
        assert_eq!(parse(b"<Queue/>").unwrap().name, "Queue");
    }

    #[test]
    fn rejects_broken_documents() {
        for bad in [
            &b""[..],
            b"<Message><MessageBody>a & b</MessageBody></Message>",
            b"<Message><MessageBody>x</Message>",
            b"<Message>",
            b"<a/><b/>",
            b"text",
            b"<a>&bogus;</a>",
            b"<!DOCTYPE x [<!ENTITY e 'x'>]><a>&e;</a>",
            b"\xff\xfe",
            b"<a><b><c><d><e><f><g><h><i>deep</i></h></g></f></e></d></c></b></a>",
            // The ninth level written as an empty element is as deep as a started one.
            b"<a><b><c><d><e><f><g><h><i/></h></g></f></e></d></c></b></a>",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn writes_compact_escaped_xml_without_empty_elements() {
        let mut w = Writer::new("Messages");
        w.open("Message").leaf("MessageId", "X").leaf("MessageBody", "<&>").leaf("Empty", "").close();
        assert_eq!(
            w.finish(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Messages xmlns=\"http://mns.aliyuncs.com/doc/v1/\"><Message><MessageId>X</MessageId><MessageBody>&lt;&amp;&gt;</MessageBody></Message></Messages>"
        );
    }
}
