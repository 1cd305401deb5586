//! TLS with rustls when the server is given a certificate and key.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::process::Command;

use haven_server::ServerConfig;

#[tokio::test]
async fn serves_tls_with_a_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (ca, ca_key) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
    let (csr, ext) = (dir.path().join("leaf.csr"), dir.path().join("ext.cnf"));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    // A throw-away CA and a server certificate for 127.0.0.1 signed by it, made with openssl.
    let p = |s: &std::path::Path| s.to_str().unwrap().to_owned();
    for args in [
        vec![
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=haven-test-ca",
            "-keyout",
            &p(&ca_key),
            "-out",
            &p(&ca),
        ],
        vec![
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &p(&key),
            "-out",
            &p(&csr),
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &p(&csr),
            "-CA",
            &p(&ca),
            "-CAkey",
            &p(&ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p(&ext),
            "-out",
            &p(&cert),
        ],
    ] {
        let out = Command::new("openssl")
            .args(&args)
            .current_dir(dir.path())
            .output()
            .expect("openssl makes the test certificates");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let mut config = ServerConfig::embedded(dir.path().join("data"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.tls = Some((cert.clone(), key));
    let server = haven_server::start(config).await.unwrap();
    let url = server.url(true);
    assert!(url.starts_with("https://"));

    let root = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .unwrap();
    let v: serde_json::Value = client
        .get(format!("{url}/v1/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "ok");
    // A client that does not trust the certificate is refused.
    assert!(reqwest::Client::new()
        .get(format!("{url}/v1/health"))
        .send()
        .await
        .is_err());
    // Plain HTTP to the TLS port gets no API answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/v1/health", server.addr))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    server.shutdown().await;
}

#[tokio::test]
async fn unusable_tls_files_are_a_clear_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    let mut config = ServerConfig::embedded(dir.path().join("data"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.tls = Some((bogus.clone(), bogus));
    let err = haven_server::start(config)
        .await
        .err()
        .expect("start must fail");
    assert!(err.to_string().starts_with("TLS:"), "{err}");
}
