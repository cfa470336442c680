//! The real binary runs the OpenStack steps of tests/recipes/openstack-realcloud.yaml against
//! the loopback real cloud. Gated on EXECUTOR_REALCLOUD=1 (see tests/realcloud/run.sh).

use std::path::{Path, PathBuf};
use std::time::Duration;

use executor_cloud::*;

use crate::realcloud_gate::enabled;
use crate::stage_run::StageRun;

fn clouds_yaml() -> String {
    std::env::var("OS_CLIENT_CONFIG_FILE").unwrap_or_else(|_| "/tmp/realcloud/clouds.yaml".into())
}

fn recipe() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recipes/openstack-realcloud.yaml")
}

struct Job {
    dir: tempfile::TempDir,
    prefix: String,
    job_id: String,
}

impl Job {
    fn new() -> Job {
        let dir = tempfile::tempdir().unwrap();
        let u = uuid::Uuid::new_v4().simple().to_string();
        let job_id = format!(
            "{}",
            100000 + (u.as_bytes()[0] as u32) * 100 + std::process::id() % 100
        );
        std::fs::write(
            dir.path().join("response.json"),
            format!(
                r#"{{"id": {job_id}, "token": "glcbt-secret", "job_info": {{"project_id": 42}}}}"#
            ),
        )
        .unwrap();
        Job {
            dir,
            prefix: u[..6].to_string(),
            job_id,
        }
    }

    fn stage(&self, args: &[&str], extra: &[(&str, &str)]) -> StageRun {
        StageRun::new(self.dir.path(), args)
            .recipe(recipe())
            .env("OS_CLIENT_CONFIG_FILE", clouds_yaml())
            .env("OS_CLOUD", "realcloud-demo")
            .job_var("CI_JOB_ID", &self.job_id)
            .job_var("TEST_PREFIX", &self.prefix)
            .job_var("TEST_OWNER", format!("stages-{}", self.prefix))
            .job_vars(extra)
            .timeout(Duration::from_secs(400))
    }

    fn state(&self) -> serde_json::Value {
        match std::fs::read(self.dir.path().join("executor-state.json")) {
            Ok(b) => serde_json::from_slice(&b).unwrap(),
            Err(_) => serde_json::json!({}),
        }
    }

    fn owner(&self) -> Ownership {
        Ownership {
            runner: format!("stages-{}", self.prefix),
            project: "42".into(),
            job: self.job_id.clone(),
        }
    }
}

async fn demo() -> OpenStack {
    let settings = CloudSettings {
        cloud: Some("realcloud-demo".into()),
        clouds_yaml: Some(clouds_yaml().into()),
        ..CloudSettings::default()
    };
    OpenStack::connect(&settings).await.unwrap()
}

#[tokio::test]
async fn prepare_run_cleanup_through_the_binary() {
    if !enabled() {
        return;
    }
    let job = Job::new();
    let out = job.stage(&["prepare"], &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "prepare failed: {stderr}");
    assert!(!stderr.contains("glcbt-secret"));
    let state = job.state();
    let id = state["server_id"]
        .as_str()
        .expect("server_id saved")
        .to_string();
    assert!(
        state["server_address"]
            .as_str()
            .unwrap()
            .starts_with("127.42.0."),
        "{state}"
    );
    assert!(
        state["fip"].as_str().unwrap().starts_with("127.44.0."),
        "{state}"
    );
    // `address_kind: floating` picked the floating IP out of the server's addresses.
    assert_eq!(
        state["floating_seen"].as_str().unwrap(),
        format!("{} floating", state["fip"].as_str().unwrap()),
        "{state}"
    );
    let os = demo().await;
    let server = os.get_server(&id).await.unwrap().expect("server exists");
    assert!(
        job.owner().owns(&server.metadata),
        "ownership from JOB_RESPONSE_FILE: {:?}",
        server.metadata
    );

    let script = job.dir.path().join("script.sh");
    std::fs::write(&script, "true\n").unwrap();
    job.stage(&["run", script.to_str().unwrap(), "build_script"], &[])
        .assert()
        .success();

    let out = job.stage(&["cleanup"], &[]).output().unwrap();
    assert!(
        out.status.success(),
        "cleanup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(os.get_server(&id).await.unwrap().is_none(), "server gone");
    assert!(
        os.keypair_public_key(state["keypair_name"].as_str().unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert!(os.server_ports(&id).await.unwrap().is_empty());
    let fip_id = state["floating_ip_id"].as_str().unwrap();
    assert!(
        os.api()
            .send(transport::Call::new(
                "show",
                "fip",
                reqwest::Method::GET,
                transport::Service::Network,
                &["floatingips", fip_id]
            ))
            .await
            .is_err_and(|e| e.kind == CloudErrorKind::NotFound),
        "floating IP released"
    );
    // Cleanup again: nothing left, still fine.
    job.stage(&["cleanup"], &[]).assert().success();
}

#[tokio::test]
async fn an_error_boot_is_retried_then_reported_as_system_failure() {
    if !enabled() {
        return;
    }
    // The flavor the admin made in cloud_realcloud.rs; make sure it exists.
    let admin = OpenStack::connect(&CloudSettings {
        cloud: Some("realcloud".into()),
        clouds_yaml: Some(clouds_yaml().into()),
        ..CloudSettings::default()
    })
    .await
    .unwrap();
    if admin.resolve_flavor("executor-too-big").await.is_err() {
        let call = transport::Call::new("create flavor", "f", reqwest::Method::POST, transport::Service::Compute, &["flavors"])
            .json(serde_json::json!({"flavor": {"name": "executor-too-big", "ram": 64, "vcpus": 1, "disk": 700000}}));
        let _ = admin.api().send(call).await;
    }
    let job = Job::new();
    let out = job
        .stage(
            &["prepare"],
            &[("TEST_FLAVOR", "executor-too-big"), ("TEST_BOOTS", "2")],
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(12), "system failure: {stderr}");
    assert!(
        stderr.contains("No valid host"),
        "fault in the job log: {stderr}"
    );
    assert!(stderr.contains("booting again"), "{stderr}");
    job.stage(&["cleanup"], &[("TEST_FLAVOR", "executor-too-big")])
        .assert()
        .success();
    let os = demo().await;
    let left = find_owned_by_name(
        &os,
        &format!("ci-{}-{}", job.prefix, job.job_id),
        &job.owner(),
    )
    .await
    .unwrap();
    assert!(left.is_empty(), "no ERROR server left: {left:?}");
}

#[tokio::test]
async fn a_flavor_outside_the_allowlist_is_refused_before_any_create() {
    if !enabled() {
        return;
    }
    let job = Job::new();
    let out = job
        .stage(&["prepare"], &[("TEST_FLAVOR", "m1.small")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not allowed"));
    assert!(job.state().get("server_id").is_none());
    job.stage(&["cleanup"], &[]).assert().success();
}
