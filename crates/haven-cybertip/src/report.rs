//! What Haven reports to the CyberTipline: a subset of the API's `report` and `fileDetails`
//! documents, their validation, and their XML. No I/O.
//!
//! The server builds a [`Report`] (plain data, public fields) and calls [`Report::validate`]; only
//! the resulting [`ValidReport`] writes XML. Files go the same way: [`FileInfo`] (what Haven knows
//! about a file before upload) → [`ValidFileInfo`] → with the `reportId`/`fileId` the API assigned,
//! [`ValidFileDetails`] → XML for `POST /fileinfo`.
//!
//! Element names and order follow the API documentation's field lists and the unofficial
//! Cybertipline-Tools builders; see the crate docs for what that does and does not establish.

use crate::ids::{FileId, ReportId};
use crate::timestamp::Timestamp;
use crate::xml::{bool_str, XmlOut};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Namespace and schema location written on both root elements, as the API's examples do.
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
const SCHEMA_LOCATION: &str = "https://report.cybertip.org/ispws/xsd";

/// Longest free-text field (chat content, additional info), in bytes. Haven's bound, not NCMEC's.
pub const MAX_TEXT_BYTES: usize = 1 << 20;
/// Longest short field (names, identifiers, URLs, hashes), in bytes. Haven's bound.
pub const MAX_SHORT_BYTES: usize = 4096;
/// Most entries in any repeated field. Haven's bound.
pub const MAX_ENTRIES: usize = 1000;

// ---------------------------------------------------------------------------------------------
// Enumerations
// ---------------------------------------------------------------------------------------------

/// `incidentType`: the eight values the API documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentType {
    /// "Child Pornography (possession, manufacture, and distribution)"
    ChildPornography,
    /// "Child Sex Trafficking"
    ChildSexTrafficking,
    /// "Child Sex Tourism"
    ChildSexTourism,
    /// "Child Sexual Molestation"
    ChildSexualMolestation,
    /// "Misleading Domain Name"
    MisleadingDomainName,
    /// "Misleading Words or Digital Images on the Internet"
    MisleadingWordsOrDigitalImages,
    /// "Online Enticement of Children for Sexual Act"
    OnlineEnticement,
    /// "Unsolicited Obscene Material Sent to a Child"
    UnsolicitedObsceneMaterialToChild,
}

impl IncidentType {
    /// Every incident type, in the documentation's order.
    pub const ALL: [IncidentType; 8] = [
        Self::ChildPornography,
        Self::ChildSexTrafficking,
        Self::ChildSexTourism,
        Self::ChildSexualMolestation,
        Self::MisleadingDomainName,
        Self::MisleadingWordsOrDigitalImages,
        Self::OnlineEnticement,
        Self::UnsolicitedObsceneMaterialToChild,
    ];

    /// The exact string the API expects in `incidentType`.
    pub fn api_str(self) -> &'static str {
        match self {
            Self::ChildPornography => {
                "Child Pornography (possession, manufacture, and distribution)"
            }
            Self::ChildSexTrafficking => "Child Sex Trafficking",
            Self::ChildSexTourism => "Child Sex Tourism",
            Self::ChildSexualMolestation => "Child Sexual Molestation",
            Self::MisleadingDomainName => "Misleading Domain Name",
            Self::MisleadingWordsOrDigitalImages => {
                "Misleading Words or Digital Images on the Internet"
            }
            Self::OnlineEnticement => "Online Enticement of Children for Sexual Act",
            Self::UnsolicitedObsceneMaterialToChild => {
                "Unsolicited Obscene Material Sent to a Child"
            }
        }
    }

    /// Haven's short kebab-case name (for configuration, CLIs and the moderator UI).
    pub fn short_name(self) -> &'static str {
        match self {
            Self::ChildPornography => "child-pornography",
            Self::ChildSexTrafficking => "child-sex-trafficking",
            Self::ChildSexTourism => "child-sex-tourism",
            Self::ChildSexualMolestation => "child-sexual-molestation",
            Self::MisleadingDomainName => "misleading-domain-name",
            Self::MisleadingWordsOrDigitalImages => "misleading-words-or-digital-images",
            Self::OnlineEnticement => "online-enticement",
            Self::UnsolicitedObsceneMaterialToChild => "unsolicited-obscene-material-to-child",
        }
    }
}

impl fmt::Display for IncidentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_str())
    }
}

/// A string that is neither a short name nor a documented `incidentType`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown incident type (expected a short name such as `child-pornography` or the API's exact string)")]
pub struct UnknownIncidentType;

impl FromStr for IncidentType {
    type Err = UnknownIncidentType;
    /// Accepts the short name (`online-enticement`) or the API's exact string; nothing else
    /// (no case folding of the API string: the API compares it exactly).
    fn from_str(s: &str) -> Result<Self, UnknownIncidentType> {
        Self::ALL
            .into_iter()
            .find(|t| t.short_name() == s || t.api_str() == s)
            .ok_or(UnknownIncidentType)
    }
}

macro_rules! element_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// Every value, in the documentation's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The string (or element name) the API uses.
            pub fn api_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.api_str())
            }
        }
    };
}

element_enum!(
    /// `reportAnnotations`: each is written as an empty element.
    ReportAnnotation {
        /// `<sextortion/>`
        Sextortion => "sextortion",
        /// `<csamSolicitation/>`
        CsamSolicitation => "csamSolicitation",
        /// `<minorToMinorInteraction/>`
        MinorToMinorInteraction => "minorToMinorInteraction",
        /// `<spam/>`
        Spam => "spam",
    }
);

element_enum!(
    /// `eventName` of an `ipCaptureEvent` or a `deviceId`.
    EventName {
        /// Login
        Login => "Login",
        /// Registration
        Registration => "Registration",
        /// Purchase
        Purchase => "Purchase",
        /// Upload
        Upload => "Upload",
        /// Other
        Other => "Other",
        /// Unknown
        Unknown => "Unknown",
    }
);

/// The brief's name for [`EventName`].
pub type IpEventName = EventName;

element_enum!(
    /// The `type` attribute of an `email`.
    EmailType {
        /// Home
        Home => "Home",
        /// Work
        Work => "Work",
        /// Business
        Business => "Business",
    }
);

element_enum!(
    /// The `type` attribute of a `phone`.
    PhoneType {
        /// Mobile
        Mobile => "Mobile",
        /// Home
        Home => "Home",
        /// Business
        Business => "Business",
        /// Work
        Work => "Work",
        /// Fax
        Fax => "Fax",
        /// Internet
        Internet => "Internet",
    }
);

element_enum!(
    /// `fileRelevance`. The API treats a file as `Reported` when absent.
    FileRelevance {
        /// The content that motivates the report.
        Reported => "Reported",
        /// Context around it (18 U.S.C. §2258A(b)(5)).
        SupplementalReported => "Supplemental Reported",
    }
);

element_enum!(
    /// `fileAnnotations`: each is written as an empty element.
    FileAnnotation {
        /// animeDrawingVirtualHentai
        AnimeDrawingVirtualHentai => "animeDrawingVirtualHentai",
        /// potentialMeme (only for `Reported` files)
        PotentialMeme => "potentialMeme",
        /// viral
        Viral => "viral",
        /// possibleSelfProduction
        PossibleSelfProduction => "possibleSelfProduction",
        /// physicalHarm
        PhysicalHarm => "physicalHarm",
        /// violenceGore
        ViolenceGore => "violenceGore",
        /// bestiality
        Bestiality => "bestiality",
        /// liveStreaming
        LiveStreaming => "liveStreaming",
        /// infant
        Infant => "infant",
        /// generativeAi
        GenerativeAi => "generativeAi",
    }
);

element_enum!(
    /// `industryClassification` (only for `Reported` files).
    IndustryClassification {
        /// Prepubescent minor, sex act.
        A1 => "A1",
        /// Prepubescent minor, lascivious exhibition.
        A2 => "A2",
        /// Pubescent minor, sex act.
        B1 => "B1",
        /// Pubescent minor, lascivious exhibition.
        B2 => "B2",
    }
);

element_enum!(
    /// The `type` attribute of a file's `details`.
    DetailType {
        /// EXIF metadata.
        Exif => "EXIF",
        /// A hash (Haven's PDQ hashes go here).
        Hash => "HASH",
    }
);

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

/// The `report` document for `POST /submit`: the parts Haven fills in.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// `incidentSummary` (required).
    pub incident_summary: IncidentSummary,
    /// `internetDetails`, one element per incident.
    pub internet_details: Vec<InternetDetails>,
    /// `reporter` (required).
    pub reporter: Reporter,
    /// `personOrUserReported`: shown to law enforcement as the suspect.
    pub person_or_user_reported: Option<PersonOrUserReported>,
    /// `victim`, one element per child victim.
    pub victims: Vec<Victim>,
    /// `additionalInfo`.
    pub additional_info: Option<String>,
}

/// `incidentSummary`.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentSummary {
    /// `incidentType` (required).
    pub incident_type: IncidentType,
    /// `incidentDateTime` (required).
    pub incident_date_time: Timestamp,
    /// `incidentDateTimeDescription`.
    pub incident_date_time_description: Option<String>,
    /// `escalateToHighPriority`: the reason for urgency (e.g. a child at immediate risk). Any value
    /// escalates the report, so absent means not escalated.
    pub escalate_to_high_priority: Option<String>,
    /// `reportAnnotations`: written once each, in the documentation's order.
    pub report_annotations: Vec<ReportAnnotation>,
}

/// One `internetDetails` element. Haven only has chat incidents.
#[derive(Debug, Clone, PartialEq)]
pub enum InternetDetails {
    /// `chatImIncident`.
    ChatIm(ChatImIncident),
}

/// `chatImIncident`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatImIncident {
    /// `chatClient`: the program used (e.g. "Haven").
    pub chat_client: Option<String>,
    /// `chatRoomName`.
    pub chat_room_name: Option<String>,
    /// `content`: the reported messages (from the verified franked report).
    pub content: Option<String>,
    /// `additionalInfo`.
    pub additional_info: Option<String>,
}

/// `reporter`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reporter {
    /// `reportingPerson`: the API requires an e-mail address here.
    pub reporting_person: Person,
    /// `contactPerson`: who law enforcement should contact, if not the reporting person.
    pub contact_person: Option<Person>,
    /// `companyTemplate`: standing text (how to serve legal process, retention, emergency line).
    pub company_template: Option<String>,
    /// `termsOfService` relevant to the incident.
    pub terms_of_service: Option<String>,
    /// `legalURL`.
    pub legal_url: Option<String>,
}

/// A person (`reportingPerson`, `contactPerson`, `personOrUserReportedPerson`, `victimPerson`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Person {
    /// `firstName`.
    pub first_name: Option<String>,
    /// `lastName`.
    pub last_name: Option<String>,
    /// `phone`, repeated.
    pub phone: Vec<Phone>,
    /// `email`, repeated.
    pub email: Vec<Email>,
    /// `age` (approximate). Not written for a reporting or contact person.
    pub age: Option<u8>,
}

/// `email`: the address is the element's text, the rest attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    /// The address.
    pub address: String,
    /// `type` attribute.
    pub email_type: Option<EmailType>,
    /// `verified` attribute.
    pub verified: Option<bool>,
}

impl Email {
    /// An address with no attributes.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            email_type: None,
            verified: None,
        }
    }
}

/// `phone`: the number is the element's text, the rest attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Phone {
    /// The number.
    pub number: String,
    /// `type` attribute.
    pub phone_type: Option<PhoneType>,
    /// `countryCallingCode` attribute (e.g. "1").
    pub country_calling_code: Option<String>,
    /// `verified` attribute.
    pub verified: Option<bool>,
}

/// `personOrUserReported`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PersonOrUserReported {
    /// `personOrUserReportedPerson`.
    pub person: Option<Person>,
    /// `espIdentifier`: the account's ID in Haven.
    pub esp_identifier: Option<String>,
    /// `espService`: the Haven product used.
    pub esp_service: Option<String>,
    /// `screenName`.
    pub screen_name: Option<String>,
    /// `displayName`, repeated.
    pub display_name: Vec<String>,
    /// `profileUrl`, repeated (absolute http(s) URLs).
    pub profile_url: Vec<String>,
    /// `ipCaptureEvent`, repeated.
    pub ip_capture_event: Vec<IpCaptureEvent>,
    /// `deviceId`, repeated.
    pub device_id: Vec<DeviceIdEvent>,
    /// `groupIdentifier`: a group the account is in that relates to the exploitation.
    pub group_identifier: Option<String>,
    /// `additionalInfo`.
    pub additional_info: Option<String>,
}

/// `ipCaptureEvent`.
#[derive(Debug, Clone, PartialEq)]
pub struct IpCaptureEvent {
    /// `ipAddress`.
    pub ip_address: IpAddr,
    /// `eventName`.
    pub event_name: EventName,
    /// `dateTime`.
    pub date_time: Option<Timestamp>,
    /// `possibleProxy`.
    pub possible_proxy: Option<bool>,
    /// `port` (1–65535).
    pub port: Option<u16>,
}

/// `deviceId`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceIdEvent {
    /// `idType` (the API names IMEI, ICCID, SSID; free text).
    pub id_type: String,
    /// `idValue`.
    pub id_value: String,
    /// `eventName`.
    pub event_name: EventName,
    /// `dateTime`.
    pub date_time: Option<Timestamp>,
}

/// `victim`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Victim {
    /// `victimPerson`.
    pub person: Option<Person>,
    /// `espIdentifier`.
    pub esp_identifier: Option<String>,
    /// `espService`.
    pub esp_service: Option<String>,
    /// `screenName`.
    pub screen_name: Option<String>,
    /// `displayName`, repeated.
    pub display_name: Vec<String>,
    /// `profileUrl`, repeated.
    pub profile_url: Vec<String>,
    /// `ipCaptureEvent`, repeated.
    pub ip_capture_event: Vec<IpCaptureEvent>,
    /// `deviceId`, repeated.
    pub device_id: Vec<DeviceIdEvent>,
    /// `schoolName`.
    pub school_name: Option<String>,
    /// `additionalInfo`.
    pub additional_info: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// File details
// ---------------------------------------------------------------------------------------------

/// What Haven knows about one file before it is uploaded: `fileDetails` without its IDs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FileInfo {
    /// `fileName`: the stored name (also the multipart file name on upload).
    pub file_name: Option<String>,
    /// `originalFileName`: the name the user gave it.
    pub original_file_name: Option<String>,
    /// `locationOfFile`: a URL where the file was.
    pub location_of_file: Option<String>,
    /// `fileViewedByEsp`: whether a Haven moderator viewed the whole file. This matters in law
    /// (US v. Wilson, 9th Cir. 2021): say `true` only if a person did.
    pub file_viewed_by_esp: bool,
    /// `exifViewedByEsp`.
    pub exif_viewed_by_esp: Option<bool>,
    /// `publiclyAvailable`.
    pub publicly_available: Option<bool>,
    /// `fileRelevance`.
    pub file_relevance: Option<FileRelevance>,
    /// `fileAnnotations`: written once each, in the documentation's order.
    pub file_annotations: Vec<FileAnnotation>,
    /// `industryClassification`.
    pub industry_classification: Option<IndustryClassification>,
    /// `originalFileHash`, repeated.
    pub original_file_hash: Vec<FileHash>,
    /// `details`, repeated (PDQ hashes as [`DetailType::Hash`]).
    pub details: Vec<Detail>,
    /// `additionalInfo`.
    pub additional_info: Option<String>,
}

/// `fileDetails` for `POST /fileinfo`: [`FileInfo`] with the IDs the API assigned.
#[derive(Debug, Clone, PartialEq)]
pub struct FileDetails {
    /// `reportId`.
    pub report_id: ReportId,
    /// `fileId`.
    pub file_id: FileId,
    /// The rest.
    pub info: FileInfo,
}

/// `originalFileHash`: the value is the text, `hashType` an attribute (e.g. "MD5", "SHA1").
#[derive(Debug, Clone, PartialEq)]
pub struct FileHash {
    /// `hashType` attribute.
    pub hash_type: String,
    /// The hash value.
    pub value: String,
}

/// One name/value pair of a file's `details`, written as
/// `<details type="…"><nameValuePair><name/><value/></nameValuePair></details>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    /// `name` (e.g. "PDQ").
    pub name: String,
    /// `value`.
    pub value: String,
    /// `type` attribute of the enclosing `details`.
    pub detail_type: DetailType,
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// Why a report or file details would be refused. Each names the field by its API path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// `reporter.reportingPerson` has no e-mail address; the API requires one.
    #[error("reporter.reportingPerson needs an email address")]
    MissingReporterEmail,
    /// A required field is empty, or an optional one is present but blank.
    #[error("{field} is empty")]
    Empty {
        /// The field's path.
        field: &'static str,
    },
    /// A field is longer than Haven's bound.
    #[error("{field} is longer than {max} bytes")]
    TooLong {
        /// The field's path.
        field: &'static str,
        /// The bound.
        max: usize,
    },
    /// A repeated field has more entries than Haven's bound.
    #[error("{field} has more than {max} entries")]
    TooMany {
        /// The field's path.
        field: &'static str,
        /// The bound.
        max: usize,
    },
    /// Not an e-mail address (`local@domain`, no spaces).
    #[error("{field} is not an email address")]
    InvalidEmail {
        /// The field's path.
        field: &'static str,
    },
    /// Not an absolute http(s) URL.
    #[error("{field} is not an absolute http(s) URL")]
    InvalidUrl {
        /// The field's path.
        field: &'static str,
    },
    /// Port 0.
    #[error("{field} is 0")]
    InvalidPort {
        /// The field's path.
        field: &'static str,
    },
    /// A section that would be written with nothing in it.
    #[error("{section} has no fields set")]
    EmptySection {
        /// The section's path.
        section: &'static str,
    },
    /// `industryClassification` or the `potentialMeme` annotation on a file that is not `Reported`;
    /// the documentation allows them only on `Reported` files.
    #[error("industryClassification and potentialMeme are only allowed on Reported files")]
    OnlyForReportedFiles,
}

type Check = Result<(), ReportError>;

fn check_len(field: &'static str, s: &str, max: usize) -> Check {
    if s.trim().is_empty() {
        return Err(ReportError::Empty { field });
    }
    if s.len() > max {
        return Err(ReportError::TooLong { field, max });
    }
    Ok(())
}

fn short(field: &'static str, s: &str) -> Check {
    check_len(field, s, MAX_SHORT_BYTES)
}

fn opt_short(field: &'static str, s: &Option<String>) -> Check {
    s.as_deref().map_or(Ok(()), |s| short(field, s))
}

fn opt_long(field: &'static str, s: &Option<String>) -> Check {
    s.as_deref()
        .map_or(Ok(()), |s| check_len(field, s, MAX_TEXT_BYTES))
}

fn count<T>(field: &'static str, v: &[T]) -> Check {
    if v.len() > MAX_ENTRIES {
        return Err(ReportError::TooMany {
            field,
            max: MAX_ENTRIES,
        });
    }
    Ok(())
}

fn email(field: &'static str, e: &Email) -> Check {
    short(field, &e.address)?;
    let ok = match e.address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !e
                    .address
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ReportError::InvalidEmail { field })
    }
}

fn url(field: &'static str, s: &str) -> Check {
    short(field, s)?;
    match reqwest::Url::parse(s) {
        Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host().is_some() => Ok(()),
        _ => Err(ReportError::InvalidUrl { field }),
    }
}

fn person(prefix: Paths, p: &Person) -> Check {
    opt_short(prefix.first_name, &p.first_name)?;
    opt_short(prefix.last_name, &p.last_name)?;
    count(prefix.phone, &p.phone)?;
    for ph in &p.phone {
        short(prefix.phone, &ph.number)?;
        opt_short(prefix.phone, &ph.country_calling_code)?;
    }
    count(prefix.email, &p.email)?;
    for e in &p.email {
        email(prefix.email, e)?;
    }
    Ok(())
}

fn person_is_empty(p: &Person) -> bool {
    p.first_name.is_none()
        && p.last_name.is_none()
        && p.phone.is_empty()
        && p.email.is_empty()
        && p.age.is_none()
}

/// Field paths for one use of [`Person`], so errors name where the person sits.
#[derive(Clone, Copy)]
struct Paths {
    first_name: &'static str,
    last_name: &'static str,
    phone: &'static str,
    email: &'static str,
}

const REPORTING_PERSON: Paths = Paths {
    first_name: "reporter.reportingPerson.firstName",
    last_name: "reporter.reportingPerson.lastName",
    phone: "reporter.reportingPerson.phone",
    email: "reporter.reportingPerson.email",
};
const CONTACT_PERSON: Paths = Paths {
    first_name: "reporter.contactPerson.firstName",
    last_name: "reporter.contactPerson.lastName",
    phone: "reporter.contactPerson.phone",
    email: "reporter.contactPerson.email",
};
const REPORTED_PERSON: Paths = Paths {
    first_name: "personOrUserReported.personOrUserReportedPerson.firstName",
    last_name: "personOrUserReported.personOrUserReportedPerson.lastName",
    phone: "personOrUserReported.personOrUserReportedPerson.phone",
    email: "personOrUserReported.personOrUserReportedPerson.email",
};
const VICTIM_PERSON: Paths = Paths {
    first_name: "victim.victimPerson.firstName",
    last_name: "victim.victimPerson.lastName",
    phone: "victim.victimPerson.phone",
    email: "victim.victimPerson.email",
};

/// The identity and event fields `personOrUserReported` and `victim` share.
struct Account<'a> {
    esp_identifier: &'a Option<String>,
    esp_service: &'a Option<String>,
    screen_name: &'a Option<String>,
    display_name: &'a [String],
    profile_url: &'a [String],
    ip_capture_event: &'a [IpCaptureEvent],
    device_id: &'a [DeviceIdEvent],
}

fn account(a: &Account<'_>, paths: [&'static str; 8]) -> Check {
    let [esp_id, esp_service, screen, display, profile, ip, port, device] = paths;
    opt_short(esp_id, a.esp_identifier)?;
    opt_short(esp_service, a.esp_service)?;
    opt_short(screen, a.screen_name)?;
    count(display, a.display_name)?;
    for d in a.display_name {
        short(display, d)?;
    }
    count(profile, a.profile_url)?;
    for u in a.profile_url {
        url(profile, u)?;
    }
    count(ip, a.ip_capture_event)?;
    for e in a.ip_capture_event {
        if e.port == Some(0) {
            return Err(ReportError::InvalidPort { field: port });
        }
    }
    count(device, a.device_id)?;
    for d in a.device_id {
        short(device, &d.id_type)?;
        short(device, &d.id_value)?;
    }
    Ok(())
}

impl Report {
    /// Checks everything the API (or Haven's bounds) would refuse, and returns the only type that
    /// writes a `report` document.
    pub fn validate(self) -> Result<ValidReport, ReportError> {
        let s = &self.incident_summary;
        opt_long(
            "incidentSummary.incidentDateTimeDescription",
            &s.incident_date_time_description,
        )?;
        opt_long(
            "incidentSummary.escalateToHighPriority",
            &s.escalate_to_high_priority,
        )?;
        count("incidentSummary.reportAnnotations", &s.report_annotations)?;

        count("internetDetails", &self.internet_details)?;
        for d in &self.internet_details {
            match d {
                InternetDetails::ChatIm(c) => {
                    if c.chat_client.is_none()
                        && c.chat_room_name.is_none()
                        && c.content.is_none()
                        && c.additional_info.is_none()
                    {
                        return Err(ReportError::EmptySection {
                            section: "internetDetails.chatImIncident",
                        });
                    }
                    opt_short("internetDetails.chatImIncident.chatClient", &c.chat_client)?;
                    opt_short(
                        "internetDetails.chatImIncident.chatRoomName",
                        &c.chat_room_name,
                    )?;
                    opt_long("internetDetails.chatImIncident.content", &c.content)?;
                    opt_long(
                        "internetDetails.chatImIncident.additionalInfo",
                        &c.additional_info,
                    )?;
                }
            }
        }

        let r = &self.reporter;
        if r.reporting_person.email.is_empty() {
            return Err(ReportError::MissingReporterEmail);
        }
        person(REPORTING_PERSON, &r.reporting_person)?;
        if let Some(c) = &r.contact_person {
            if person_is_empty(c) {
                return Err(ReportError::EmptySection {
                    section: "reporter.contactPerson",
                });
            }
            person(CONTACT_PERSON, c)?;
        }
        opt_long("reporter.companyTemplate", &r.company_template)?;
        opt_long("reporter.termsOfService", &r.terms_of_service)?;
        if let Some(u) = &r.legal_url {
            url("reporter.legalURL", u)?;
        }

        if let Some(p) = &self.person_or_user_reported {
            let empty = p.person.as_ref().is_none_or(person_is_empty)
                && p.esp_identifier.is_none()
                && p.esp_service.is_none()
                && p.screen_name.is_none()
                && p.display_name.is_empty()
                && p.profile_url.is_empty()
                && p.ip_capture_event.is_empty()
                && p.device_id.is_empty()
                && p.group_identifier.is_none()
                && p.additional_info.is_none();
            if empty {
                return Err(ReportError::EmptySection {
                    section: "personOrUserReported",
                });
            }
            if let Some(pp) = &p.person {
                person(REPORTED_PERSON, pp)?;
            }
            account(
                &Account {
                    esp_identifier: &p.esp_identifier,
                    esp_service: &p.esp_service,
                    screen_name: &p.screen_name,
                    display_name: &p.display_name,
                    profile_url: &p.profile_url,
                    ip_capture_event: &p.ip_capture_event,
                    device_id: &p.device_id,
                },
                [
                    "personOrUserReported.espIdentifier",
                    "personOrUserReported.espService",
                    "personOrUserReported.screenName",
                    "personOrUserReported.displayName",
                    "personOrUserReported.profileUrl",
                    "personOrUserReported.ipCaptureEvent",
                    "personOrUserReported.ipCaptureEvent.port",
                    "personOrUserReported.deviceId",
                ],
            )?;
            opt_short("personOrUserReported.groupIdentifier", &p.group_identifier)?;
            opt_long("personOrUserReported.additionalInfo", &p.additional_info)?;
        }

        count("victim", &self.victims)?;
        for v in &self.victims {
            let identified = v.person.as_ref().is_some_and(|p| !person_is_empty(p))
                || v.esp_identifier.is_some()
                || v.screen_name.is_some()
                || !v.display_name.is_empty()
                || !v.profile_url.is_empty();
            if !identified {
                return Err(ReportError::EmptySection { section: "victim" });
            }
            if let Some(p) = &v.person {
                person(VICTIM_PERSON, p)?;
            }
            account(
                &Account {
                    esp_identifier: &v.esp_identifier,
                    esp_service: &v.esp_service,
                    screen_name: &v.screen_name,
                    display_name: &v.display_name,
                    profile_url: &v.profile_url,
                    ip_capture_event: &v.ip_capture_event,
                    device_id: &v.device_id,
                },
                [
                    "victim.espIdentifier",
                    "victim.espService",
                    "victim.screenName",
                    "victim.displayName",
                    "victim.profileUrl",
                    "victim.ipCaptureEvent",
                    "victim.ipCaptureEvent.port",
                    "victim.deviceId",
                ],
            )?;
            opt_short("victim.schoolName", &v.school_name)?;
            opt_long("victim.additionalInfo", &v.additional_info)?;
        }
        opt_long("additionalInfo", &self.additional_info)?;
        Ok(ValidReport(self))
    }
}

impl FileInfo {
    /// Checks what the API (or Haven's bounds) would refuse in a file's details.
    pub fn validate(self) -> Result<ValidFileInfo, ReportError> {
        opt_short("fileDetails.fileName", &self.file_name)?;
        opt_short("fileDetails.originalFileName", &self.original_file_name)?;
        if let Some(u) = &self.location_of_file {
            url("fileDetails.locationOfFile", u)?;
        }
        let reported =
            self.file_relevance.unwrap_or(FileRelevance::Reported) == FileRelevance::Reported;
        if !reported
            && (self.industry_classification.is_some()
                || self
                    .file_annotations
                    .contains(&FileAnnotation::PotentialMeme))
        {
            return Err(ReportError::OnlyForReportedFiles);
        }
        count("fileDetails.fileAnnotations", &self.file_annotations)?;
        count("fileDetails.originalFileHash", &self.original_file_hash)?;
        for h in &self.original_file_hash {
            short("fileDetails.originalFileHash.hashType", &h.hash_type)?;
            short("fileDetails.originalFileHash", &h.value)?;
        }
        count("fileDetails.details", &self.details)?;
        for d in &self.details {
            short("fileDetails.details.nameValuePair.name", &d.name)?;
            check_len(
                "fileDetails.details.nameValuePair.value",
                &d.value,
                MAX_TEXT_BYTES,
            )?;
        }
        opt_long("fileDetails.additionalInfo", &self.additional_info)?;
        Ok(ValidFileInfo(self))
    }
}

impl FileDetails {
    /// Checks the details; the IDs were checked when they were made.
    pub fn validate(self) -> Result<ValidFileDetails, ReportError> {
        Ok(self.info.validate()?.with_ids(self.report_id, self.file_id))
    }
}

// ---------------------------------------------------------------------------------------------
// Validated values and their XML
// ---------------------------------------------------------------------------------------------

/// A [`Report`] that passed [`Report::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidReport(Report);

/// A [`FileInfo`] that passed [`FileInfo::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidFileInfo(FileInfo);

/// A [`FileDetails`] that passed [`FileDetails::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidFileDetails {
    report_id: ReportId,
    file_id: FileId,
    info: FileInfo,
}

impl ValidReport {
    /// The report.
    pub fn report(&self) -> &Report {
        &self.0
    }

    /// Back to plain data (to edit and validate again).
    pub fn into_inner(self) -> Report {
        self.0
    }

    /// The `report` document for `POST /submit`.
    pub fn to_xml(&self) -> String {
        let r = &self.0;
        let mut x = XmlOut::new();
        x.start_attrs(
            "report",
            &[
                ("xmlns:xsi", Some(XSI_NS)),
                ("xsi:noNamespaceSchemaLocation", Some(SCHEMA_LOCATION)),
            ],
        );

        let s = &r.incident_summary;
        x.start("incidentSummary");
        x.text("incidentType", s.incident_type.api_str());
        x.opt(
            "escalateToHighPriority",
            s.escalate_to_high_priority.as_deref(),
        );
        flags(
            &mut x,
            "reportAnnotations",
            ReportAnnotation::ALL,
            &s.report_annotations,
            |a| a.api_str(),
        );
        x.text("incidentDateTime", &s.incident_date_time.to_iso8601());
        x.opt(
            "incidentDateTimeDescription",
            s.incident_date_time_description.as_deref(),
        );
        x.end("incidentSummary");

        for d in &r.internet_details {
            x.start("internetDetails");
            match d {
                InternetDetails::ChatIm(c) => {
                    x.start("chatImIncident");
                    x.opt("chatClient", c.chat_client.as_deref());
                    x.opt("chatRoomName", c.chat_room_name.as_deref());
                    x.opt("content", c.content.as_deref());
                    x.opt("additionalInfo", c.additional_info.as_deref());
                    x.end("chatImIncident");
                }
            }
            x.end("internetDetails");
        }

        let rep = &r.reporter;
        x.start("reporter");
        write_person(&mut x, "reportingPerson", &rep.reporting_person, false);
        if let Some(c) = &rep.contact_person {
            write_person(&mut x, "contactPerson", c, false);
        }
        x.opt("companyTemplate", rep.company_template.as_deref());
        x.opt("termsOfService", rep.terms_of_service.as_deref());
        x.opt("legalURL", rep.legal_url.as_deref());
        x.end("reporter");

        if let Some(p) = &r.person_or_user_reported {
            x.start("personOrUserReported");
            if let Some(pp) = &p.person {
                write_person(&mut x, "personOrUserReportedPerson", pp, true);
            }
            x.opt("espIdentifier", p.esp_identifier.as_deref());
            x.opt("espService", p.esp_service.as_deref());
            x.opt("screenName", p.screen_name.as_deref());
            for d in &p.display_name {
                x.text("displayName", d);
            }
            for u in &p.profile_url {
                x.text("profileUrl", u);
            }
            for e in &p.ip_capture_event {
                write_ip_event(&mut x, e);
            }
            for d in &p.device_id {
                write_device(&mut x, d);
            }
            x.opt("groupIdentifier", p.group_identifier.as_deref());
            x.opt("additionalInfo", p.additional_info.as_deref());
            x.end("personOrUserReported");
        }

        for v in &r.victims {
            x.start("victim");
            if let Some(p) = &v.person {
                write_person(&mut x, "victimPerson", p, true);
            }
            x.opt("espIdentifier", v.esp_identifier.as_deref());
            x.opt("espService", v.esp_service.as_deref());
            x.opt("screenName", v.screen_name.as_deref());
            for d in &v.display_name {
                x.text("displayName", d);
            }
            for u in &v.profile_url {
                x.text("profileUrl", u);
            }
            for e in &v.ip_capture_event {
                write_ip_event(&mut x, e);
            }
            for d in &v.device_id {
                write_device(&mut x, d);
            }
            x.opt("schoolName", v.school_name.as_deref());
            x.opt("additionalInfo", v.additional_info.as_deref());
            x.end("victim");
        }

        x.opt("additionalInfo", r.additional_info.as_deref());
        x.end("report");
        x.finish()
    }
}

impl ValidFileInfo {
    /// The details.
    pub fn info(&self) -> &FileInfo {
        &self.0
    }

    /// Joins the IDs the API assigned on upload.
    pub fn with_ids(self, report_id: ReportId, file_id: FileId) -> ValidFileDetails {
        ValidFileDetails {
            report_id,
            file_id,
            info: self.0,
        }
    }
}

impl ValidFileDetails {
    /// `reportId`.
    pub fn report_id(&self) -> &ReportId {
        &self.report_id
    }

    /// `fileId`.
    pub fn file_id(&self) -> &FileId {
        &self.file_id
    }

    /// The rest.
    pub fn info(&self) -> &FileInfo {
        &self.info
    }

    /// The `fileDetails` document for `POST /fileinfo`.
    pub fn to_xml(&self) -> String {
        let f = &self.info;
        let mut x = XmlOut::new();
        x.start_attrs(
            "fileDetails",
            &[
                ("xmlns:xsi", Some(XSI_NS)),
                ("xsi:noNamespaceSchemaLocation", Some(SCHEMA_LOCATION)),
            ],
        );
        x.text("reportId", self.report_id.as_str());
        x.text("fileId", self.file_id.as_str());
        x.opt("fileName", f.file_name.as_deref());
        x.opt("originalFileName", f.original_file_name.as_deref());
        x.opt("locationOfFile", f.location_of_file.as_deref());
        x.text("fileViewedByEsp", bool_str(f.file_viewed_by_esp));
        x.opt_bool("exifViewedByEsp", f.exif_viewed_by_esp);
        x.opt_bool("publiclyAvailable", f.publicly_available);
        x.opt(
            "fileRelevance",
            f.file_relevance.map(FileRelevance::api_str),
        );
        flags(
            &mut x,
            "fileAnnotations",
            FileAnnotation::ALL,
            &f.file_annotations,
            |a| a.api_str(),
        );
        x.opt(
            "industryClassification",
            f.industry_classification
                .map(IndustryClassification::api_str),
        );
        for h in &f.original_file_hash {
            x.text_attrs(
                "originalFileHash",
                &[("hashType", Some(&h.hash_type))],
                &h.value,
            );
        }
        for d in &f.details {
            x.start_attrs("details", &[("type", Some(d.detail_type.api_str()))]);
            x.start("nameValuePair");
            x.text("name", &d.name);
            x.text("value", &d.value);
            x.end("nameValuePair");
            x.end("details");
        }
        x.opt("additionalInfo", f.additional_info.as_deref());
        x.end("fileDetails");
        x.finish()
    }
}

/// A list of empty flag elements, once each, in the documented order; nothing when none are set.
fn flags<T: PartialEq + Copy>(
    x: &mut XmlOut,
    wrapper: &str,
    all: &[T],
    set: &[T],
    name: impl Fn(T) -> &'static str,
) {
    if set.is_empty() {
        return;
    }
    x.start(wrapper);
    for a in all.iter().filter(|a| set.contains(a)) {
        x.empty(name(*a));
    }
    x.end(wrapper);
}

fn write_person(x: &mut XmlOut, element: &str, p: &Person, with_age: bool) {
    x.start(element);
    x.opt("firstName", p.first_name.as_deref());
    x.opt("lastName", p.last_name.as_deref());
    for ph in &p.phone {
        x.text_attrs(
            "phone",
            &[
                ("type", ph.phone_type.map(PhoneType::api_str)),
                ("verified", ph.verified.map(bool_str)),
                ("countryCallingCode", ph.country_calling_code.as_deref()),
            ],
            &ph.number,
        );
    }
    for e in &p.email {
        x.text_attrs(
            "email",
            &[
                ("type", e.email_type.map(EmailType::api_str)),
                ("verified", e.verified.map(bool_str)),
            ],
            &e.address,
        );
    }
    if with_age {
        if let Some(age) = p.age {
            x.text("age", &age.to_string());
        }
    }
    x.end(element);
}

fn write_ip_event(x: &mut XmlOut, e: &IpCaptureEvent) {
    x.start("ipCaptureEvent");
    x.text("ipAddress", &e.ip_address.to_string());
    x.text("eventName", e.event_name.api_str());
    x.opt("dateTime", e.date_time.map(|t| t.to_iso8601()).as_deref());
    x.opt_bool("possibleProxy", e.possible_proxy);
    x.opt("port", e.port.map(|p| p.to_string()).as_deref());
    x.end("ipCaptureEvent");
}

fn write_device(x: &mut XmlOut, d: &DeviceIdEvent) {
    x.start("deviceId");
    x.text("idType", &d.id_type);
    x.text("idValue", &d.id_value);
    x.text("eventName", d.event_name.api_str());
    x.opt("dateTime", d.date_time.map(|t| t.to_iso8601()).as_deref());
    x.end("deviceId");
}
