//! The client against the local server that follows the API documentation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use haven_cybertip::client::{Endpoint, RetractOutcome, Stage};
use haven_cybertip::testing::server::{Fault, TestServer};
use haven_cybertip::{Client, ClientConfig, ClientError, Credentials, ResponseCode, ValidFileInfo};

const USER: &str = "usr123";
const PASS: &str = "pswd123";

async fn setup() -> (TestServer, Client) {
    let server = TestServer::start(USER, PASS).await.unwrap();
    let client = Client::new(ClientConfig::with_base_url(
        server.base_url(),
        Credentials::new(USER, PASS),
    ))
    .unwrap();
    (server, client)
}

fn files() -> Vec<(ValidFileInfo, Vec<u8>)> {
    vec![
        (
            common::file_info("evidence-1.jpg").validate().unwrap(),
            b"\xff\xd8\xff first file bytes".to_vec(),
        ),
        (
            common::file_info("evidence-2.png").validate().unwrap(),
            vec![0u8, 1, 2, 3, 254, 255],
        ),
    ]
}

fn api_code(e: &ClientError) -> ResponseCode {
    e.response_code()
        .unwrap_or_else(|| panic!("not an API error: {e}"))
}

#[tokio::test]
async fn full_flow_lands_exactly_what_was_sent() {
    let (server, client) = setup().await;
    assert!(client.status().await.unwrap().contains("Remote User"));
    let report = common::full_report().validate().unwrap();
    let sent = files();
    let done = client.submit_report(&report, sent.clone()).await.unwrap();

    assert_eq!(done.file_ids.len(), 2);
    assert_eq!(done.finished_file_ids, done.file_ids);
    let stored = server.report(&done.report_id).unwrap();
    assert!(stored.finished);
    assert_eq!(stored.xml, report.to_xml());
    assert_eq!(stored.files.len(), 2);
    for ((info, bytes), (file, id)) in sent
        .into_iter()
        .zip(stored.files.iter().zip(&done.file_ids))
    {
        assert_eq!(&file.file_id, id);
        assert_eq!(file.bytes, bytes);
        assert_eq!(file.file_name, info.info().file_name);
        let expected = info.with_ids(done.report_id.clone(), id.clone()).to_xml();
        assert_eq!(file.details_xml.as_deref(), Some(expected.as_str()));
    }
    assert_eq!(server.reports().len(), 1);
    assert!(server.retracted().is_empty());
    assert_eq!(
        server.calls(),
        [
            Endpoint::Status,
            Endpoint::Submit,
            Endpoint::Upload,
            Endpoint::Upload,
            Endpoint::FileInfo,
            Endpoint::FileInfo,
            Endpoint::Finish
        ]
    );
}

#[tokio::test]
async fn retract_removes_the_report() {
    let (server, client) = setup().await;
    let report = common::minimal_report().validate().unwrap();
    let id = client.submit(&report).await.unwrap();
    client.upload(&id, "a.bin", b"abc".to_vec()).await.unwrap();
    assert!(server.report(&id).is_some());
    client.retract(&id).await.unwrap();
    assert!(server.report(&id).is_none());
    assert_eq!(server.retracted(), std::slice::from_ref(&id));

    let again = client.retract(&id).await.unwrap_err();
    assert_eq!(api_code(&again), ResponseCode::ReportAlreadyRetracted);
    let upload = client
        .upload(&id, "b.bin", b"x".to_vec())
        .await
        .unwrap_err();
    assert_eq!(api_code(&upload), ResponseCode::ReportAlreadyRetracted);
}

#[tokio::test]
async fn a_rejected_fileinfo_makes_the_client_retract() {
    let (server, client) = setup().await;
    server.inject(
        Endpoint::FileInfo,
        Fault::Respond(ResponseCode::ValidationFailed),
    );
    let report = common::full_report().validate().unwrap();
    let err = client.submit_report(&report, files()).await.unwrap_err();
    assert_eq!(err.stage, Stage::FileInfo(0));
    assert_eq!(api_code(&err.source), ResponseCode::ValidationFailed);
    assert!(
        matches!(err.retract, RetractOutcome::Retracted),
        "{}",
        err.retract
    );
    let id = err.report_id.unwrap();
    assert!(server.reports().is_empty());
    assert_eq!(server.retracted(), [id]);
    assert_eq!(server.calls().last(), Some(&Endpoint::Retract));
}

#[tokio::test]
async fn a_failed_retract_is_reported_with_the_original_error() {
    let (server, client) = setup().await;
    server.inject(Endpoint::Finish, Fault::Respond(ResponseCode::ServerError));
    server.inject(Endpoint::Retract, Fault::Respond(ResponseCode::ServerError));
    let report = common::minimal_report().validate().unwrap();
    let err = client.submit_report(&report, vec![]).await.unwrap_err();
    assert_eq!(err.stage, Stage::Finish);
    assert_eq!(api_code(&err.source), ResponseCode::ServerError);
    match &err.retract {
        RetractOutcome::Failed(e) => assert_eq!(api_code(e), ResponseCode::ServerError),
        other => panic!("expected a failed retract, got {other}"),
    }
    // The report is left open on the server (the API deletes unfinished reports itself).
    let stored = server.report(err.report_id.as_ref().unwrap()).unwrap();
    assert!(!stored.finished);
}

#[tokio::test]
async fn a_wrong_upload_md5_is_an_error_and_the_report_is_retracted() {
    let (server, client) = setup().await;
    server.inject(Endpoint::Upload, Fault::WrongUploadHash);
    let report = common::minimal_report().validate().unwrap();
    let err = client.submit_report(&report, files()).await.unwrap_err();
    assert_eq!(err.stage, Stage::Upload(0));
    match &err.source {
        ClientError::HashMismatch { sent, returned } => {
            assert_eq!(
                sent,
                &haven_cybertip::client::md5_hex(b"\xff\xd8\xff first file bytes")
            );
            assert_ne!(sent, returned);
        }
        other => panic!("expected HashMismatch, got {other}"),
    }
    assert!(matches!(err.retract, RetractOutcome::Retracted));
    assert!(server.reports().is_empty());
}

#[tokio::test]
async fn a_failure_at_submit_retracts_nothing() {
    let (server, client) = setup().await;
    server.inject(Endpoint::Submit, Fault::Respond(ResponseCode::ServerError));
    let report = common::minimal_report().validate().unwrap();
    let err = client.submit_report(&report, files()).await.unwrap_err();
    assert_eq!(err.stage, Stage::Submit);
    assert!(err.report_id.is_none());
    assert!(matches!(err.retract, RetractOutcome::NotNeeded));
    assert_eq!(server.calls(), [Endpoint::Submit]);
}

#[tokio::test]
async fn wrong_credentials_are_authentication_required() {
    let server = TestServer::start(USER, PASS).await.unwrap();
    let client = Client::new(ClientConfig::with_base_url(
        server.base_url(),
        Credentials::new(USER, "wrong"),
    ))
    .unwrap();
    let report = common::minimal_report().validate().unwrap();
    let err = client.submit(&report).await.unwrap_err();
    match &err {
        ClientError::Api(e) => {
            assert_eq!(e.code, ResponseCode::AuthenticationRequired);
            assert_eq!(e.http_status, 401);
            assert_eq!(e.endpoint, Endpoint::Submit);
        }
        other => panic!("expected an API error, got {other}"),
    }
    assert_eq!(
        api_code(&client.status().await.unwrap_err()),
        ResponseCode::AuthenticationRequired
    );
    assert!(server.reports().is_empty());
    assert!(
        server.calls().is_empty(),
        "unauthenticated calls do nothing"
    );
}

#[tokio::test]
async fn malformed_xml_is_4110_and_missing_fields_are_4100() {
    let (server, client) = setup().await;
    let err = client
        .submit_xml("<report><incidentSummary>")
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), ResponseCode::MalformedXml);

    let dtd = "<!DOCTYPE report><report/>";
    assert_eq!(
        api_code(&client.submit_xml(dtd).await.unwrap_err()),
        ResponseCode::MalformedXml
    );

    // A valid report with the reporter's email removed, as if written by hand.
    let good = common::minimal_report().validate().unwrap().to_xml();
    let no_email = good.replace("<email>safety@haven.example</email>", "");
    assert_ne!(no_email, good);
    let err = client.submit_xml(&no_email).await.unwrap_err();
    assert_eq!(api_code(&err), ResponseCode::ValidationFailed);
    match err {
        ClientError::Api(e) => assert!(e.description.contains("email"), "{}", e.description),
        other => panic!("{other}"),
    }

    let no_type = good.replace(
        "<incidentType>Child Pornography (possession, manufacture, and distribution)</incidentType>",
        "",
    );
    assert_ne!(no_type, good);
    assert_eq!(
        api_code(&client.submit_xml(&no_type).await.unwrap_err()),
        ResponseCode::ValidationFailed
    );

    let wrong_type = good.replace(
        "Child Pornography (possession, manufacture, and distribution)",
        "Spam",
    );
    assert_eq!(
        api_code(&client.submit_xml(&wrong_type).await.unwrap_err()),
        ResponseCode::ValidationFailed
    );

    let out_of_order = common::full_report().validate().unwrap().to_xml().replacen(
        "<incidentSummary>",
        "<additionalInfo>x</additionalInfo><incidentSummary>",
        1,
    );
    assert_eq!(
        api_code(&client.submit_xml(&out_of_order).await.unwrap_err()),
        ResponseCode::ValidationFailed
    );

    // The XML read back from disk submits as is.
    let id = client.submit_xml(&good).await.unwrap();
    assert_eq!(server.report(&id).unwrap().xml, good);
    assert_eq!(server.reports().len(), 1);
}

#[tokio::test]
async fn finishing_twice_is_5102() {
    let (server, client) = setup().await;
    let report = common::minimal_report().validate().unwrap();
    let done = client.submit_report(&report, vec![]).await.unwrap();
    assert!(done.file_ids.is_empty());
    let err = client.finish(&done.report_id).await.unwrap_err();
    match &err {
        ClientError::Api(e) => {
            assert_eq!(e.code, ResponseCode::ReportAlreadyFinished);
            assert_eq!(e.code.code(), 5102);
            assert_eq!(e.endpoint, Endpoint::Finish);
            assert!(!e.description.is_empty());
        }
        other => panic!("expected 5102, got {other}"),
    }
    // A finished report cannot be retracted or added to.
    assert_eq!(
        api_code(&client.retract(&done.report_id).await.unwrap_err()),
        ResponseCode::ReportAlreadyFinished
    );
    assert_eq!(
        api_code(
            &client
                .upload(&done.report_id, "late.bin", vec![1])
                .await
                .unwrap_err()
        ),
        ResponseCode::ReportAlreadyFinished
    );
    assert!(server.report(&done.report_id).unwrap().finished);
}

#[tokio::test]
async fn unknown_reports_and_files_are_refused() {
    let (_server, client) = setup().await;
    let nobody = haven_cybertip::ReportId::new("999").unwrap();
    assert_eq!(
        api_code(&client.upload(&nobody, "a", vec![1]).await.unwrap_err()),
        ResponseCode::ReportDoesNotExist
    );
    assert_eq!(
        api_code(&client.finish(&nobody).await.unwrap_err()),
        ResponseCode::ReportDoesNotExist
    );
    assert_eq!(
        api_code(&client.retract(&nobody).await.unwrap_err()),
        ResponseCode::ReportDoesNotExist
    );

    let id = client
        .submit(&common::minimal_report().validate().unwrap())
        .await
        .unwrap();
    let details = common::file_info("x").validate().unwrap().with_ids(
        id.clone(),
        haven_cybertip::FileId::new("notuploaded").unwrap(),
    );
    assert_eq!(
        api_code(&client.file_info(&details).await.unwrap_err()),
        ResponseCode::FileDoesNotExist
    );
}

#[tokio::test]
async fn oversized_answers_are_refused() {
    let server = TestServer::start(USER, PASS).await.unwrap();
    let mut config = ClientConfig::with_base_url(server.base_url(), Credentials::new(USER, PASS));
    config.max_response_bytes = 4096;
    let client = Client::new(config).unwrap();
    server.inject(Endpoint::Status, Fault::OversizedResponse(8192));
    assert!(matches!(
        client.status().await.unwrap_err(),
        ClientError::ResponseTooLarge { limit: 4096, .. }
    ));
    // Under the limit the same client works.
    assert!(client.status().await.is_ok());
}

#[tokio::test]
async fn a_closed_port_is_a_transport_error() {
    let server = TestServer::start(USER, PASS).await.unwrap();
    let url = server.base_url();
    drop(server);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let client = Client::new(ClientConfig::with_base_url(
        url,
        Credentials::new(USER, PASS),
    ))
    .unwrap();
    assert!(matches!(
        client.status().await.unwrap_err(),
        ClientError::Transport { .. }
    ));
}
