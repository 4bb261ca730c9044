use berth::config::Tls;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn over_tls_berth_uses_a_self_signed_certificate_a_host_cookie_and_hsts() {
    let app = spawn_with(|c| c.tls = Tls::SelfSigned).await;
    assert!(app.url.starts_with("https://"), "{}", app.url);
    let cert = std::fs::read_to_string(app.data_dir.path().join("tls/self-signed.crt")).unwrap();
    let c = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).unwrap())
        .cookie_store(true)
        .build()
        .unwrap();
    // The certificate names localhost; connect by that name.
    let url = app.url.replace("127.0.0.1", "localhost");
    let r = c
        .post(format!("{url}/api/v1/setup"))
        .json(&json!({ "token": app.setup_token(), "username": USERNAME, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("__Host-berth_session="), "{cookie}");
    assert!(cookie.contains("Secure"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.contains("Domain"), "{cookie}");
    let hsts = r.headers()["strict-transport-security"].to_str().unwrap();
    assert!(hsts.starts_with("max-age="));
    assert_eq!(
        c.get(format!("{url}/api/v1/me"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // A restart reuses the certificate rather than minting a new one.
    let again = berth::tls::ensure_certificate(&app.state.config)
        .unwrap()
        .unwrap();
    assert_eq!(std::fs::read_to_string(again.0).unwrap(), cert);
}
