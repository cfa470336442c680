//! Every injected fault mode of the simulator, observed through raw HTTP.
//! (Dropping SSH endpoints is covered in sim_ssh.rs.)

use crate::sim_support;

use std::time::{Duration, Instant};

use executor_simulator::{NO_VALID_HOST, Scope, Service};
use serde_json::json;
use sim_support::{api_opts, start};

#[tokio::test]
async fn a_share_of_creates_ends_in_error_with_novas_fault() {
    let api = start(api_opts()).await;
    api.sim.faults().set_create_error_share(0.5);
    let a = api.create_ok("e-1", json!({})).await;
    let b = api.create_ok("e-2", json!({})).await;
    let c = api.create_ok("e-3", json!({})).await;
    let d = api.create_ok("e-4", json!({})).await;
    api.wait_status(&a, "ACTIVE").await;
    let sb = api.wait_status(&b, "ERROR").await;
    api.wait_status(&c, "ACTIVE").await;
    api.wait_status(&d, "ERROR").await;
    assert_eq!(sb["fault"]["code"], 500);
    assert_eq!(sb["fault"]["message"], NO_VALID_HOST);
    assert!(
        sb["fault"]["message"]
            .as_str()
            .unwrap()
            .starts_with("No valid host was found")
    );
    assert_eq!(sb["OS-EXT-STS:vm_state"], "error");
    let errs = api.get("/compute/v2.1/servers?status=ERROR").await;
    assert_eq!(errs.body["servers"].as_array().unwrap().len(), 2);
    // An ERROR server still counts (it must be deleted) and can be deleted.
    assert_eq!(api.sim.counts().servers, 4);
    assert_eq!(
        api.delete(&format!("/compute/v2.1/servers/{b}"))
            .await
            .status,
        204
    );
    api.wait_gone(&b).await;

    api.sim.faults().set_create_error_share(1.0);
    let e = api.create_ok("e-5", json!({})).await;
    api.wait_status(&e, "ERROR").await;
    api.sim.faults().clear();
    let f = api.create_ok("e-6", json!({})).await;
    api.wait_status(&f, "ACTIVE").await;
}

#[tokio::test]
async fn http_500_and_503_bursts_then_recovery() {
    let api = start(api_opts()).await;
    api.sim
        .faults()
        .http_errors(500, 2, Scope::service(Service::Compute));
    let r1 = api.get("/compute/v2.1/flavors").await;
    let r2 = api.get("/compute/v2.1/flavors").await;
    let r3 = api.get("/compute/v2.1/flavors").await;
    assert_eq!(
        (r1.status.as_u16(), r2.status.as_u16(), r3.status.as_u16()),
        (500, 500, 200)
    );
    assert_eq!(r1.body["computeFault"]["code"], 500);

    // Scoped to server creates: other calls pass, creates fail without creating anything.
    api.sim.faults().http_errors(
        503,
        1,
        Scope::service(Service::Compute)
            .method("POST")
            .path("/servers"),
    );
    assert_eq!(api.get("/compute/v2.1/servers").await.status, 200);
    let r = api.create_server("x", json!({})).await;
    assert_eq!(r.status, 503);
    assert_eq!(api.sim.counts().servers, 0);
    assert_eq!(api.create_server("x", json!({})).await.status, 202);

    // Neutron answers in its own format.
    api.sim
        .faults()
        .http_errors(503, 1, Scope::service(Service::Network));
    let r = api.get("/network/v2.0/networks").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["NeutronError"]["type"], "HTTPServiceUnavailable");
    let log = api.sim.request_log();
    assert_eq!(log.records.iter().filter(|r| r.status >= 500).count(), 4);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let api = start(api_opts()).await;
    api.sim
        .faults()
        .rate_limit(1, Duration::from_secs(3), Scope::any().path("/servers"));
    let r = api.get("/compute/v2.1/servers").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "3");
    assert_eq!(api.get("/compute/v2.1/servers").await.status, 200);
}

#[tokio::test]
async fn slow_responses_are_delayed() {
    let api = start(api_opts()).await;
    let delay = Duration::from_millis(300);
    api.sim
        .faults()
        .slow(delay, Some(1), Scope::service(Service::Image));
    let t = Instant::now();
    let r = api.get("/image/v2/images").await;
    assert_eq!(r.status, 200);
    // A lower bound only: the injected delay must have been served.
    assert!(t.elapsed() >= delay, "answered after {:?}", t.elapsed());
    // Unbounded slowness, until cleared.
    api.sim
        .faults()
        .slow(delay, None, Scope::service(Service::Network));
    for _ in 0..2 {
        let t = Instant::now();
        api.get("/network/v2.0/networks").await;
        assert!(t.elapsed() >= delay);
    }
    api.sim.faults().clear();
}

#[tokio::test]
async fn instance_quota_exhaustion_is_novas_403() {
    let api = start(api_opts()).await;
    api.sim.faults().set_instance_quota(2);
    api.create_ok("q-1", json!({})).await;
    api.create_ok("q-2", json!({})).await;
    let r = api.create_server("q-3", json!({})).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body["forbidden"]["message"],
        "Quota exceeded for instances: Requested 1, but already used 2 of 2 instances"
    );
    assert_eq!(api.sim.counts().servers, 2);
    assert_eq!(api.sim.counts().ports, 2);
}

#[tokio::test]
async fn a_server_can_vanish_mid_job() {
    let api = start(api_opts()).await;
    let id = api.create_ok("v-1", json!({})).await;
    api.wait_status(&id, "ACTIVE").await;
    assert!(api.sim.faults().vanish_server(&id));
    let r = api.server(&id).await;
    assert_eq!(r.status, 404);
    assert_eq!(api.sim.counts().servers, 0);
    assert_eq!(api.sim.counts().ports, 0);
    assert!(!api.sim.faults().vanish_server(&id));
    assert_eq!(
        api.delete(&format!("/compute/v2.1/servers/{id}"))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn expired_tokens_get_401_until_a_new_login() {
    let mut api = start(api_opts()).await;
    assert_eq!(api.get("/compute/v2.1/servers").await.status, 200);
    api.sim.expire_tokens();
    let r = api.get("/compute/v2.1/servers").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body["error"]["message"],
        "The request you have made requires authentication."
    );
    assert_eq!(api.get("/network/v2.0/networks").await.status, 401);
    api.token = api.login().await;
    assert_eq!(api.get("/compute/v2.1/servers").await.status, 200);
}

#[tokio::test]
async fn short_token_lifetime_expires_by_itself() {
    let mut api = start(executor_simulator::SimOptions {
        token_ttl: Duration::from_millis(200),
        ..api_opts()
    })
    .await;
    api.token = api.login().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(api.get("/compute/v2.1/servers").await.status, 401);
}
