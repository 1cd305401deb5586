//! A thin layer over `quick-xml`'s writer: escaping, characters XML 1.0 forbids, and omitted
//! optional elements in one place.

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;
use std::borrow::Cow;

/// Whether `c` is a `Char` of XML 1.0 (§2.2): tab, LF, CR, U+0020–U+D7FF, U+E000–U+FFFD,
/// U+10000–U+10FFFF. Rust strings hold no surrogates, so only C0 controls and U+FFFE/U+FFFF fail.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Replaces every character XML 1.0 cannot carry with U+FFFD, so the document stays well-formed and
/// the reader can still see that something was there.
pub(crate) fn sanitize(s: &str) -> Cow<'_, str> {
    if s.chars().all(is_xml_char) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(
            s.chars()
                .map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' })
                .collect(),
        )
    }
}

/// Escaped text content: `quick-xml` escapes `< > & ' "`; a carriage return becomes `&#13;`, which
/// a parser must keep (a literal CR would be normalised to LF, changing reported chat content).
fn escape_text(s: &str) -> String {
    let clean = sanitize(s);
    let escaped = quick_xml::escape::escape(clean.as_ref());
    if escaped.contains('\r') {
        escaped.replace('\r', "&#13;")
    } else {
        escaped.into_owned()
    }
}

pub(crate) struct XmlOut {
    w: Writer<Vec<u8>>,
    failed: bool,
}

impl XmlOut {
    /// A document with the XML declaration written, indented by two spaces.
    pub(crate) fn new() -> Self {
        let mut out = Self {
            w: Writer::new_with_indent(Vec::new(), b' ', 2),
            failed: false,
        };
        out.event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        out
    }

    fn event(&mut self, ev: Event<'_>) {
        // Writing into a Vec<u8> cannot fail; a failure is remembered, never ignored silently.
        if self.w.write_event(ev).is_err() {
            self.failed = true;
        }
    }

    pub(crate) fn start(&mut self, name: &str) {
        self.event(Event::Start(BytesStart::new(name)));
    }

    pub(crate) fn start_attrs(&mut self, name: &str, attrs: &[(&str, Option<&str>)]) {
        let mut el = BytesStart::new(name);
        for (k, v) in attrs {
            if let Some(v) = v {
                // push_attribute escapes the value; sanitize keeps it XML 1.0.
                el.push_attribute((*k, sanitize(v).as_ref()));
            }
        }
        self.event(Event::Start(el));
    }

    pub(crate) fn end(&mut self, name: &str) {
        self.event(Event::End(BytesEnd::new(name)));
    }

    pub(crate) fn empty(&mut self, name: &str) {
        self.event(Event::Empty(BytesStart::new(name)));
    }

    /// `<name>text</name>`.
    pub(crate) fn text(&mut self, name: &str, text: &str) {
        self.text_attrs(name, &[], text);
    }

    /// `<name a="…">text</name>`, absent attributes left out.
    pub(crate) fn text_attrs(&mut self, name: &str, attrs: &[(&str, Option<&str>)], text: &str) {
        self.start_attrs(name, attrs);
        self.event(Event::Text(BytesText::from_escaped(escape_text(text))));
        self.end(name);
    }

    /// The element only when the value is present.
    pub(crate) fn opt(&mut self, name: &str, text: Option<&str>) {
        if let Some(t) = text {
            self.text(name, t);
        }
    }

    pub(crate) fn opt_bool(&mut self, name: &str, v: Option<bool>) {
        if let Some(b) = v {
            self.text(name, bool_str(b));
        }
    }

    pub(crate) fn finish(self) -> String {
        debug_assert!(!self.failed, "writing XML into memory failed");
        let mut bytes = self.w.into_inner();
        bytes.push(b'\n');
        // Every piece written came from a &str, so this is UTF-8; the lossy path is never taken.
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }
}

pub(crate) fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_characters_are_replaced() {
        assert_eq!(
            sanitize("a\u{0}b\u{1b}c\u{FFFE}"),
            "a\u{FFFD}b\u{FFFD}c\u{FFFD}"
        );
        assert!(matches!(
            sanitize("tab\tnl\ncr\r ok é 😀"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn text_escapes_markup_and_carriage_returns() {
        assert_eq!(
            escape_text("<a href=\"x\">&'\r\n"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;&#13;\n"
        );
    }
}
