//! The report and file-details XML: every field at its element path, escaping, validation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use haven_cybertip::report::*;
use haven_cybertip::{FileId, ReportId};

/// Texts of every element at `path` ("a/b/c", from the root element).
fn at(xml: &str, path: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    let mut parts = path.split('/');
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), parts.next().unwrap());
    let mut nodes = vec![root];
    for p in parts {
        nodes = nodes
            .into_iter()
            .flat_map(|n| {
                n.children()
                    .filter(move |c| c.is_element() && c.tag_name().name() == p)
            })
            .collect();
    }
    nodes
        .into_iter()
        .map(|n| n.text().unwrap_or("").to_owned())
        .collect()
}

fn one(xml: &str, path: &str) -> String {
    let v = at(xml, path);
    assert_eq!(v.len(), 1, "{path}: {v:?}");
    v.into_iter().next().unwrap()
}

fn attr(xml: &str, path: &str, name: &str) -> Vec<Option<String>> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    let mut parts = path.split('/');
    parts.next();
    let mut nodes = vec![doc.root_element()];
    for p in parts {
        nodes = nodes
            .into_iter()
            .flat_map(|n| {
                n.children()
                    .filter(move |c| c.is_element() && c.tag_name().name() == p)
            })
            .collect();
    }
    nodes
        .into_iter()
        .map(|n| n.attribute(name).map(str::to_owned))
        .collect()
}

fn child_names(xml: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    doc.root_element()
        .children()
        .filter(|c| c.is_element())
        .map(|c| c.tag_name().name().to_owned())
        .collect()
}

#[test]
fn every_report_field_lands_in_its_element() {
    let xml = full_report().validate().unwrap().to_xml();
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<report "));
    assert_eq!(
        child_names(&xml),
        [
            "incidentSummary",
            "internetDetails",
            "reporter",
            "personOrUserReported",
            "victim",
            "additionalInfo"
        ]
    );
    let s = "report/incidentSummary";
    assert_eq!(
        one(&xml, &format!("{s}/incidentType")),
        "Online Enticement of Children for Sexual Act"
    );
    assert_eq!(
        one(&xml, &format!("{s}/incidentDateTime")),
        "2024-01-15T14:30:00.123Z"
    );
    assert_eq!(
        one(&xml, &format!("{s}/incidentDateTimeDescription")),
        "Messages sent over two days"
    );
    assert_eq!(
        one(&xml, &format!("{s}/escalateToHighPriority")),
        "Reported person asked to meet the child"
    );
    assert_eq!(
        at(&xml, &format!("{s}/reportAnnotations/sextortion")).len(),
        1
    );
    assert_eq!(
        at(
            &xml,
            &format!("{s}/reportAnnotations/minorToMinorInteraction")
        )
        .len(),
        1
    );
    assert!(at(&xml, &format!("{s}/reportAnnotations/spam")).is_empty());

    let c = "report/internetDetails/chatImIncident";
    assert_eq!(one(&xml, &format!("{c}/chatClient")), "Haven");
    assert_eq!(one(&xml, &format!("{c}/chatRoomName")), "group 7f3a");
    assert!(one(&xml, &format!("{c}/content")).contains("u1: send a photo"));
    assert_eq!(
        one(&xml, &format!("{c}/additionalInfo")),
        "Content verified from a franked report"
    );

    let r = "report/reporter";
    assert_eq!(
        one(&xml, &format!("{r}/reportingPerson/firstName")),
        "Trust"
    );
    assert_eq!(
        one(&xml, &format!("{r}/reportingPerson/lastName")),
        "Safety"
    );
    assert_eq!(
        one(&xml, &format!("{r}/reportingPerson/email")),
        "safety@haven.example"
    );
    assert_eq!(
        attr(&xml, &format!("{r}/reportingPerson/email"), "type"),
        [Some("Work".to_owned())]
    );
    assert_eq!(
        attr(&xml, &format!("{r}/reportingPerson/email"), "verified"),
        [Some("true".to_owned())]
    );
    assert_eq!(one(&xml, &format!("{r}/reportingPerson/phone")), "5550100");
    assert_eq!(
        attr(
            &xml,
            &format!("{r}/reportingPerson/phone"),
            "countryCallingCode"
        ),
        [Some("1".to_owned())]
    );
    assert_eq!(
        one(&xml, &format!("{r}/contactPerson/email")),
        "legal@haven.example"
    );
    assert_eq!(
        one(&xml, &format!("{r}/companyTemplate")),
        "Haven retains account data for one year."
    );
    assert_eq!(
        one(&xml, &format!("{r}/termsOfService")),
        "Section 4: no sexual content involving minors."
    );
    assert_eq!(
        one(&xml, &format!("{r}/legalURL")),
        "https://haven.example/legal"
    );

    let p = "report/personOrUserReported";
    assert_eq!(
        one(&xml, &format!("{p}/personOrUserReportedPerson/firstName")),
        "Unknown"
    );
    assert_eq!(
        one(&xml, &format!("{p}/personOrUserReportedPerson/age")),
        "34"
    );
    assert_eq!(one(&xml, &format!("{p}/espIdentifier")), "acct-0001");
    assert_eq!(one(&xml, &format!("{p}/espService")), "Haven Messenger");
    assert_eq!(one(&xml, &format!("{p}/screenName")), "u1");
    assert_eq!(at(&xml, &format!("{p}/displayName")), ["User One", "U.1"]);
    assert_eq!(
        at(&xml, &format!("{p}/profileUrl")),
        ["https://haven.example/u/u1"]
    );
    assert_eq!(
        at(&xml, &format!("{p}/ipCaptureEvent/ipAddress")),
        ["192.0.2.10", "2001:db8::1"]
    );
    assert_eq!(
        at(&xml, &format!("{p}/ipCaptureEvent/eventName")),
        ["Login", "Upload"]
    );
    assert_eq!(
        at(&xml, &format!("{p}/ipCaptureEvent/dateTime")),
        ["2024-01-15T06:26:40.000Z"]
    );
    assert_eq!(
        at(&xml, &format!("{p}/ipCaptureEvent/possibleProxy")),
        ["false"]
    );
    assert_eq!(at(&xml, &format!("{p}/ipCaptureEvent/port")), ["443"]);
    assert_eq!(
        one(&xml, &format!("{p}/deviceId/idType")),
        "Haven device key"
    );
    assert_eq!(one(&xml, &format!("{p}/deviceId/idValue")), "ed25519:abcd");
    assert_eq!(
        one(&xml, &format!("{p}/deviceId/eventName")),
        "Registration"
    );
    assert_eq!(
        one(&xml, &format!("{p}/deviceId/dateTime")),
        "2023-11-14T22:13:20.000Z"
    );
    assert_eq!(one(&xml, &format!("{p}/groupIdentifier")), "group 7f3a");
    assert_eq!(
        one(&xml, &format!("{p}/additionalInfo")),
        "Account created 3 days before the incident"
    );

    let v = "report/victim";
    assert_eq!(one(&xml, &format!("{v}/victimPerson/age")), "13");
    assert_eq!(one(&xml, &format!("{v}/espIdentifier")), "acct-0002");
    assert_eq!(one(&xml, &format!("{v}/screenName")), "v2");
    assert_eq!(one(&xml, &format!("{v}/displayName")), "V");
    assert_eq!(
        one(&xml, "report/additionalInfo"),
        "Escalated by moderator m-17 after review"
    );
}

#[test]
fn absent_optional_fields_are_omitted() {
    let xml = minimal_report().validate().unwrap().to_xml();
    assert_eq!(child_names(&xml), ["incidentSummary", "reporter"]);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let summary: Vec<_> = doc
        .descendants()
        .find(|n| n.has_tag_name("incidentSummary"))
        .unwrap()
        .children()
        .filter(|c| c.is_element())
        .map(|c| c.tag_name().name().to_owned())
        .collect();
    assert_eq!(summary, ["incidentType", "incidentDateTime"]);
    assert_eq!(
        one(&xml, "report/incidentSummary/incidentDateTime"),
        "1970-01-01T00:00:00.000Z"
    );
    let reporter: Vec<_> = doc
        .descendants()
        .filter(|n| n.is_element())
        .map(|n| n.tag_name().name().to_owned())
        .collect();
    assert_eq!(
        reporter,
        [
            "report",
            "incidentSummary",
            "incidentType",
            "incidentDateTime",
            "reporter",
            "reportingPerson",
            "email"
        ]
    );
    assert!(!xml.contains("legalURL") && !xml.contains("reportAnnotations"));
}

#[test]
fn every_file_details_field_lands_in_its_element() {
    let d = file_info("evidence-1.jpg").validate().unwrap().with_ids(
        ReportId::new("4564654").unwrap(),
        FileId::new("b0754af766b426f2928a02c651ed4b99").unwrap(),
    );
    let xml = d.to_xml();
    assert_eq!(
        child_names(&xml),
        [
            "reportId",
            "fileId",
            "fileName",
            "originalFileName",
            "fileViewedByEsp",
            "exifViewedByEsp",
            "publiclyAvailable",
            "fileRelevance",
            "fileAnnotations",
            "industryClassification",
            "originalFileHash",
            "details",
            "additionalInfo"
        ]
    );
    let f = "fileDetails";
    assert_eq!(one(&xml, &format!("{f}/reportId")), "4564654");
    assert_eq!(
        one(&xml, &format!("{f}/fileId")),
        "b0754af766b426f2928a02c651ed4b99"
    );
    assert_eq!(one(&xml, &format!("{f}/fileName")), "evidence-1.jpg");
    assert_eq!(one(&xml, &format!("{f}/originalFileName")), "IMG_0001.jpg");
    assert_eq!(one(&xml, &format!("{f}/fileViewedByEsp")), "true");
    assert_eq!(one(&xml, &format!("{f}/exifViewedByEsp")), "false");
    assert_eq!(one(&xml, &format!("{f}/publiclyAvailable")), "false");
    assert_eq!(one(&xml, &format!("{f}/fileRelevance")), "Reported");
    assert_eq!(
        at(&xml, &format!("{f}/fileAnnotations/possibleSelfProduction")).len(),
        1
    );
    assert_eq!(one(&xml, &format!("{f}/industryClassification")), "B2");
    assert_eq!(
        one(&xml, &format!("{f}/originalFileHash")),
        "900150983cd24fb0d6963f7d28e17f72"
    );
    assert_eq!(
        attr(&xml, &format!("{f}/originalFileHash"), "hashType"),
        [Some("MD5".to_owned())]
    );
    assert_eq!(
        attr(&xml, &format!("{f}/details"), "type"),
        [Some("HASH".to_owned())]
    );
    assert_eq!(one(&xml, &format!("{f}/details/nameValuePair/name")), "PDQ");
    assert!(one(&xml, &format!("{f}/details/nameValuePair/value")).starts_with("f8f8f0ce"));
    assert_eq!(
        one(&xml, &format!("{f}/additionalInfo")),
        "Attachment decrypted with the reported key; sha256 checked"
    );

    let minimal = FileInfo::default()
        .validate()
        .unwrap()
        .with_ids(ReportId::new("1").unwrap(), FileId::new("f").unwrap())
        .to_xml();
    assert_eq!(
        child_names(&minimal),
        ["reportId", "fileId", "fileViewedByEsp"]
    );
    assert_eq!(one(&minimal, "fileDetails/fileViewedByEsp"), "false");
}

#[test]
fn hostile_text_is_escaped_and_the_document_still_parses() {
    let hostile =
        "</content><script>&amp; \"quoted\" 'single' ]]> <!-- x --> <?pi?> \r\n\ttab é 😀";
    let with_controls = "bell\u{7} nul\u{0} esc\u{1b} nonchar\u{FFFF} end";
    let mut r = full_report();
    r.internet_details = vec![InternetDetails::ChatIm(ChatImIncident {
        content: Some(hostile.into()),
        additional_info: Some(with_controls.into()),
        ..ChatImIncident::default()
    })];
    r.additional_info = Some("a < b && c > d".into());
    let mut info = file_info("<evil>&\".jpg");
    info.original_file_hash[0].hash_type = "MD\"5<&>".into();
    let xml = r.validate().unwrap().to_xml();
    let fxml = info
        .validate()
        .unwrap()
        .with_ids(ReportId::new("1").unwrap(), FileId::new("f").unwrap())
        .to_xml();

    // Markup in text stays text: exactly one content element, holding the text unchanged,
    // carriage return included.
    assert_eq!(
        one(&xml, "report/internetDetails/chatImIncident/content"),
        hostile
    );
    assert_eq!(
        one(&xml, "report/internetDetails/chatImIncident/additionalInfo"),
        "bell\u{FFFD} nul\u{FFFD} esc\u{FFFD} nonchar\u{FFFD} end"
    );
    assert_eq!(one(&xml, "report/additionalInfo"), "a < b && c > d");
    assert!(!xml.contains("<script>") && !xml.contains('\u{0}') && !xml.contains('\u{7}'));
    assert_eq!(one(&fxml, "fileDetails/fileName"), "<evil>&\".jpg");
    assert_eq!(
        attr(&fxml, "fileDetails/originalFileHash", "hashType"),
        [Some("MD\"5<&>".to_owned())]
    );
}

#[test]
fn validation_refuses_what_the_api_would() {
    let mut r = minimal_report();
    r.reporter.reporting_person.email.clear();
    assert_eq!(r.validate().unwrap_err(), ReportError::MissingReporterEmail);

    let mut r = minimal_report();
    r.reporter.reporting_person.email = vec![Email::new("  ")];
    assert_eq!(
        r.validate().unwrap_err(),
        ReportError::Empty {
            field: "reporter.reportingPerson.email"
        }
    );

    for bad in ["no-at-sign", "a@", "@b", "a b@c", "a@b@c"] {
        let mut r = minimal_report();
        r.reporter.reporting_person.email = vec![Email::new(bad)];
        assert_eq!(
            r.validate().unwrap_err(),
            ReportError::InvalidEmail {
                field: "reporter.reportingPerson.email"
            },
            "{bad}"
        );
    }

    let mut r = minimal_report();
    r.incident_summary.escalate_to_high_priority = Some(String::new());
    assert_eq!(
        r.validate().unwrap_err(),
        ReportError::Empty {
            field: "incidentSummary.escalateToHighPriority"
        }
    );

    let mut r = minimal_report();
    r.internet_details = vec![InternetDetails::ChatIm(ChatImIncident::default())];
    assert_eq!(
        r.validate().unwrap_err(),
        ReportError::EmptySection {
            section: "internetDetails.chatImIncident"
        }
    );

    let mut r = minimal_report();
    r.internet_details = vec![InternetDetails::ChatIm(ChatImIncident {
        content: Some("x".repeat(MAX_TEXT_BYTES + 1)),
        ..ChatImIncident::default()
    })];
    assert_eq!(
        r.validate().unwrap_err(),
        ReportError::TooLong {
            field: "internetDetails.chatImIncident.content",
            max: MAX_TEXT_BYTES
        }
    );

    let mut r = minimal_report();
    r.reporter.legal_url = Some("javascript:alert(1)".into());
    assert_eq!(
        r.validate().unwrap_err(),
        ReportError::InvalidUrl {
            field: "reporter.legalURL"
        }
    );

    let mut r = minimal_report();
    r.person_or_user_reported = Some(PersonOrUserReported::default());
    assert_eq!(
        r.validate().unwrap_err(),
        ReportError::EmptySection {
            section: "personOrUserReported"
        }
    );

    let mut r = full_report();
    r.person_or_user_reported.as_mut().unwrap().ip_capture_event[0].port = Some(0);
    assert_eq!(
        r.validate().unwrap_err(),
        ReportError::InvalidPort {
            field: "personOrUserReported.ipCaptureEvent.port"
        }
    );

    let mut r = full_report();
    r.person_or_user_reported.as_mut().unwrap().display_name = vec!["d".into(); MAX_ENTRIES + 1];
    assert_eq!(
        r.validate().unwrap_err(),
        ReportError::TooMany {
            field: "personOrUserReported.displayName",
            max: MAX_ENTRIES
        }
    );

    let mut r = minimal_report();
    r.victims = vec![Victim {
        school_name: Some("school".into()),
        ..Victim::default()
    }];
    assert_eq!(
        r.validate().unwrap_err(),
        ReportError::EmptySection { section: "victim" }
    );

    let mut f = file_info("x");
    f.file_relevance = Some(FileRelevance::SupplementalReported);
    assert_eq!(
        f.clone().validate().unwrap_err(),
        ReportError::OnlyForReportedFiles
    );
    f.industry_classification = None;
    assert!(f.clone().validate().is_ok());
    f.file_annotations.push(FileAnnotation::PotentialMeme);
    assert_eq!(f.validate().unwrap_err(), ReportError::OnlyForReportedFiles);

    let mut f = file_info("x");
    f.details[0].name = String::new();
    assert_eq!(
        f.validate().unwrap_err(),
        ReportError::Empty {
            field: "fileDetails.details.nameValuePair.name"
        }
    );

    let mut f = file_info("x");
    f.original_file_hash[0].hash_type = " ".into();
    assert_eq!(
        f.validate().unwrap_err(),
        ReportError::Empty {
            field: "fileDetails.originalFileHash.hashType"
        }
    );

    let d = FileDetails {
        report_id: ReportId::new("1").unwrap(),
        file_id: FileId::new("f").unwrap(),
        info: file_info("x"),
    };
    assert!(d.validate().is_ok());
}

#[test]
fn incident_types_parse_from_short_names_and_exact_strings() {
    let short = [
        "child-pornography",
        "child-sex-trafficking",
        "child-sex-tourism",
        "child-sexual-molestation",
        "misleading-domain-name",
        "misleading-words-or-digital-images",
        "online-enticement",
        "unsolicited-obscene-material-to-child",
    ];
    for (t, s) in IncidentType::ALL.iter().zip(short) {
        assert_eq!(s.parse::<IncidentType>().unwrap(), *t);
        assert_eq!(t.api_str().parse::<IncidentType>().unwrap(), *t);
        assert_eq!(t.short_name(), s);
    }
    assert_eq!(
        "Unsolicited Obscene Material Sent to a Child"
            .parse::<IncidentType>()
            .unwrap(),
        IncidentType::UnsolicitedObsceneMaterialToChild
    );
    assert_eq!(
        "Child Pornography (possession, manufacture, and distribution)"
            .parse::<IncidentType>()
            .unwrap(),
        IncidentType::ChildPornography
    );
    for bad in [
        "",
        "Child Pornography",
        "child pornography",
        "CHILD-PORNOGRAPHY",
        "child-sex-tourism ",
    ] {
        assert_eq!(
            bad.parse::<IncidentType>(),
            Err(UnknownIncidentType),
            "{bad:?}"
        );
    }
}

#[test]
fn annotations_are_written_once_in_documented_order() {
    let mut r = minimal_report();
    r.incident_summary.report_annotations = vec![
        ReportAnnotation::Spam,
        ReportAnnotation::Sextortion,
        ReportAnnotation::Spam,
    ];
    let xml = r.validate().unwrap().to_xml();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let names: Vec<_> = doc
        .descendants()
        .find(|n| n.has_tag_name("reportAnnotations"))
        .unwrap()
        .children()
        .filter(|c| c.is_element())
        .map(|c| c.tag_name().name().to_owned())
        .collect();
    assert_eq!(names, ["sextortion", "spam"]);
}
