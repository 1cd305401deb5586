//! The API's answers: `reportResponse` (submit, upload, fileinfo, retract, status, errors) and
//! `reportDoneResponse` (finish). Parsed without DTDs and with a node limit; the size limit is the
//! client's, applied while reading.

use crate::xml::XmlOut;

/// Which root element the answer had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Root {
    ReportResponse,
    ReportDoneResponse,
}

impl Root {
    fn name(self) -> &'static str {
        match self {
            Root::ReportResponse => "reportResponse",
            Root::ReportDoneResponse => "reportDoneResponse",
        }
    }
}

/// One answer, its fields as text (checked by the caller).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ApiResponse {
    pub(crate) code: i64,
    pub(crate) description: Option<String>,
    pub(crate) report_id: Option<String>,
    pub(crate) file_id: Option<String>,
    pub(crate) hash: Option<String>,
    /// `files/fileId` of a `reportDoneResponse`.
    pub(crate) file_ids: Vec<String>,
}

/// Why an answer could not be read; a fixed string, so nothing from the peer is echoed.
pub(crate) type ParseError = &'static str;

/// A response has a handful of elements; this leaves room for a finish with many files.
const NODES_LIMIT: u32 = 100_000;

pub(crate) fn parse(bytes: &[u8]) -> Result<(Root, ApiResponse), ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|_| "response is not UTF-8")?;
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: NODES_LIMIT,
    };
    let doc = roxmltree::Document::parse_with_options(text, opts).map_err(|e| match e {
        roxmltree::Error::DtdDetected => "response has a DOCTYPE",
        _ => "response is not well-formed XML",
    })?;
    let root_el = doc.root_element();
    let root = match root_el.tag_name().name() {
        "reportResponse" => Root::ReportResponse,
        "reportDoneResponse" => Root::ReportDoneResponse,
        _ => return Err("response root is neither reportResponse nor reportDoneResponse"),
    };
    let child = |name: &str| {
        root_el
            .children()
            .find(|n| n.is_element() && n.tag_name().name() == name)
            .map(|n| n.text().unwrap_or("").trim().to_owned())
    };
    let code = child("responseCode").ok_or("response has no responseCode")?;
    let code: i64 = code.parse().map_err(|_| "responseCode is not an integer")?;
    let file_ids = root_el
        .children()
        .filter(|n| n.is_element() && n.tag_name().name() == "files")
        .flat_map(|files| {
            files
                .children()
                .filter(|n| n.is_element() && n.tag_name().name() == "fileId")
        })
        .map(|n| n.text().unwrap_or("").trim().to_owned())
        .collect();
    Ok((
        root,
        ApiResponse {
            code,
            description: child("responseDescription"),
            report_id: child("reportId"),
            file_id: child("fileId"),
            hash: child("hash"),
            file_ids,
        },
    ))
}

/// Writes an answer as the documentation shows it (used by the test server).
#[cfg_attr(not(feature = "test-server"), allow(dead_code))]
pub(crate) fn write(root: Root, r: &ApiResponse) -> String {
    let mut x = XmlOut::new();
    x.start(root.name());
    x.text("responseCode", &r.code.to_string());
    x.opt("responseDescription", r.description.as_deref());
    x.opt("reportId", r.report_id.as_deref());
    x.opt("fileId", r.file_id.as_deref());
    x.opt("hash", r.hash.as_deref());
    if root == Root::ReportDoneResponse {
        x.start("files");
        for f in &r.file_ids {
            x.text("fileId", f);
        }
        x.end("files");
    }
    x.end(root.name());
    x.finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn documented_shapes_parse() {
        let submit = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<reportResponse><responseCode>0</responseCode><responseDescription>Success</responseDescription><reportId>4564654</reportId></reportResponse>"#;
        let (root, r) = parse(submit).unwrap();
        assert_eq!(root, Root::ReportResponse);
        assert_eq!(r.code, 0);
        assert_eq!(r.report_id.as_deref(), Some("4564654"));

        let upload = b"<reportResponse><responseCode> 0 </responseCode><responseDescription>Success</responseDescription>\
<reportId>4564654</reportId><fileId>b0754af766b426f2928a02c651ed4b99</fileId><hash>fafa5efeaf3cbe3b23b2748d13e629a1</hash></reportResponse>";
        let (_, r) = parse(upload).unwrap();
        assert_eq!(
            r.file_id.as_deref(),
            Some("b0754af766b426f2928a02c651ed4b99")
        );
        assert_eq!(r.hash.as_deref(), Some("fafa5efeaf3cbe3b23b2748d13e629a1"));

        let finish =
            b"<reportDoneResponse><responseCode>0</responseCode><reportId>4564654</reportId>\
<files><fileId>a1</fileId><fileId>b2</fileId></files></reportDoneResponse>";
        let (root, r) = parse(finish).unwrap();
        assert_eq!(root, Root::ReportDoneResponse);
        assert_eq!(r.file_ids, vec!["a1".to_owned(), "b2".to_owned()]);
    }

    #[test]
    fn hostile_or_broken_answers_are_refused() {
        let dtd = br#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "boom">]><reportResponse><responseCode>0</responseCode><responseDescription>&x;</responseDescription></reportResponse>"#;
        assert_eq!(parse(dtd), Err("response has a DOCTYPE"));
        let harmless_dtd = b"<!DOCTYPE reportResponse><reportResponse><responseCode>0</responseCode></reportResponse>";
        assert_eq!(parse(harmless_dtd), Err("response has a DOCTYPE"));
        assert!(parse(b"<reportResponse><responseCode>0</responseCode>").is_err());
        assert!(parse(b"<html><body>502</body></html>").is_err());
        assert!(parse(
            b"<reportResponse><responseDescription>x</responseDescription></reportResponse>"
        )
        .is_err());
        assert!(
            parse(b"<reportResponse><responseCode>zero</responseCode></reportResponse>").is_err()
        );
        assert!(parse(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn written_answers_parse_back() {
        let r = ApiResponse {
            code: 5102,
            description: Some("Report already finished <&>".into()),
            report_id: Some("7".into()),
            ..ApiResponse::default()
        };
        assert_eq!(
            parse(write(Root::ReportResponse, &r).as_bytes()).unwrap(),
            (Root::ReportResponse, r.clone())
        );
        let done = ApiResponse {
            code: 0,
            file_ids: vec!["f1".into()],
            ..ApiResponse::default()
        };
        assert_eq!(
            parse(write(Root::ReportDoneResponse, &done).as_bytes())
                .unwrap()
                .1,
            done
        );
    }
}
