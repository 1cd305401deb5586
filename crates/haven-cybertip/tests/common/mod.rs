//! The sample report and files the tests and the vector generator share.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use haven_cybertip::report::*;
use haven_cybertip::Timestamp;

pub fn ts(ms: u64) -> Timestamp {
    Timestamp::from_unix_millis(ms).unwrap()
}

/// A report with every field Haven fills in set.
pub fn full_report() -> Report {
    Report {
        incident_summary: IncidentSummary {
            incident_type: IncidentType::OnlineEnticement,
            incident_date_time: ts(1_705_329_000_123),
            incident_date_time_description: Some("Messages sent over two days".into()),
            escalate_to_high_priority: Some("Reported person asked to meet the child".into()),
            report_annotations: vec![
                ReportAnnotation::Sextortion,
                ReportAnnotation::MinorToMinorInteraction,
            ],
        },
        internet_details: vec![InternetDetails::ChatIm(ChatImIncident {
            chat_client: Some("Haven".into()),
            chat_room_name: Some("group 7f3a".into()),
            content: Some(
                "[2024-01-15T14:29:00Z] u1: hello\n[2024-01-15T14:30:00Z] u1: send a photo".into(),
            ),
            additional_info: Some("Content verified from a franked report".into()),
        })],
        reporter: Reporter {
            reporting_person: Person {
                first_name: Some("Trust".into()),
                last_name: Some("Safety".into()),
                phone: vec![Phone {
                    number: "5550100".into(),
                    phone_type: Some(PhoneType::Business),
                    country_calling_code: Some("1".into()),
                    verified: Some(true),
                }],
                email: vec![Email {
                    address: "safety@haven.example".into(),
                    email_type: Some(EmailType::Work),
                    verified: Some(true),
                }],
                age: None,
            },
            contact_person: Some(Person {
                first_name: Some("Legal".into()),
                email: vec![Email::new("legal@haven.example")],
                ..Person::default()
            }),
            company_template: Some("Haven retains account data for one year.".into()),
            terms_of_service: Some("Section 4: no sexual content involving minors.".into()),
            legal_url: Some("https://haven.example/legal".into()),
        },
        person_or_user_reported: Some(PersonOrUserReported {
            person: Some(Person {
                first_name: Some("Unknown".into()),
                age: Some(34),
                ..Person::default()
            }),
            esp_identifier: Some("acct-0001".into()),
            esp_service: Some("Haven Messenger".into()),
            screen_name: Some("u1".into()),
            display_name: vec!["User One".into(), "U.1".into()],
            profile_url: vec!["https://haven.example/u/u1".into()],
            ip_capture_event: vec![
                IpCaptureEvent {
                    ip_address: "192.0.2.10".parse().unwrap(),
                    event_name: EventName::Login,
                    date_time: Some(ts(1_705_300_000_000)),
                    possible_proxy: Some(false),
                    port: Some(443),
                },
                IpCaptureEvent {
                    ip_address: "2001:db8::1".parse().unwrap(),
                    event_name: EventName::Upload,
                    date_time: None,
                    possible_proxy: None,
                    port: None,
                },
            ],
            device_id: vec![DeviceIdEvent {
                id_type: "Haven device key".into(),
                id_value: "ed25519:abcd".into(),
                event_name: EventName::Registration,
                date_time: Some(ts(1_700_000_000_000)),
            }],
            group_identifier: Some("group 7f3a".into()),
            additional_info: Some("Account created 3 days before the incident".into()),
        }),
        victims: vec![Victim {
            person: Some(Person {
                age: Some(13),
                ..Person::default()
            }),
            esp_identifier: Some("acct-0002".into()),
            esp_service: Some("Haven Messenger".into()),
            screen_name: Some("v2".into()),
            display_name: vec!["V".into()],
            profile_url: vec![],
            ip_capture_event: vec![],
            device_id: vec![],
            school_name: None,
            additional_info: Some("Age band from the account's stated birth year".into()),
        }],
        additional_info: Some("Escalated by moderator m-17 after review".into()),
    }
}

/// The smallest report the API accepts.
pub fn minimal_report() -> Report {
    Report {
        incident_summary: IncidentSummary {
            incident_type: IncidentType::ChildPornography,
            incident_date_time: ts(0),
            incident_date_time_description: None,
            escalate_to_high_priority: None,
            report_annotations: vec![],
        },
        internet_details: vec![],
        reporter: Reporter {
            reporting_person: Person {
                email: vec![Email::new("safety@haven.example")],
                ..Person::default()
            },
            ..Reporter::default()
        },
        person_or_user_reported: None,
        victims: vec![],
        additional_info: None,
    }
}

pub fn file_info(name: &str) -> FileInfo {
    FileInfo {
        file_name: Some(name.into()),
        original_file_name: Some("IMG_0001.jpg".into()),
        location_of_file: None,
        file_viewed_by_esp: true,
        exif_viewed_by_esp: Some(false),
        publicly_available: Some(false),
        file_relevance: Some(FileRelevance::Reported),
        file_annotations: vec![FileAnnotation::PossibleSelfProduction],
        industry_classification: Some(IndustryClassification::B2),
        original_file_hash: vec![FileHash {
            hash_type: "MD5".into(),
            value: "900150983cd24fb0d6963f7d28e17f72".into(),
        }],
        details: vec![Detail {
            name: "PDQ".into(),
            value: "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22".into(),
            detail_type: DetailType::Hash,
        }],
        additional_info: Some("Attachment decrypted with the reported key; sha256 checked".into()),
    }
}
