//! The orchestration (create, wait, address, cleanup, reaper) against an in-memory `Cloud`
//! that behaves like Nova where it matters: the name filter is a case-insensitive substring
//! regex, deletes take a while, ERROR servers carry a fault.
//!
//! Each test names the reference driver's bug (peers.md section 7) it makes impossible.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use executor_cloud::ownership::{META_CREATED, META_JOB, META_PROJECT, META_RUNNER};
use executor_cloud::*;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct World {
    servers: Vec<(Server, u32)>, // the count: polls left before a deleted server disappears
    deleting: Vec<String>,
    posts: Vec<Value>,
    /// Statuses the next polls of a new server go through.
    boot_script: Vec<&'static str>,
    keypairs: BTreeMap<String, String>,
    delete_lag: u32,
    requests: u64,
}

#[derive(Default)]
struct Fake(Mutex<World>);

fn srv(id: &str, name: &str, meta: &[(&str, &str)]) -> Server {
    Server {
        id: id.into(),
        name: name.into(),
        status: "ACTIVE".into(),
        fault: None,
        metadata: meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        addresses: vec![],
        volumes: vec![],
        key_name: None,
    }
}

fn owner(job: &str) -> Ownership {
    Ownership {
        runner: "r1".into(),
        project: "7".into(),
        job: job.into(),
    }
}

fn owned(id: &str, name: &str, o: &Ownership) -> Server {
    srv(
        id,
        name,
        &[
            (META_RUNNER, &o.runner),
            (META_PROJECT, &o.project),
            (META_JOB, &o.job),
            (META_CREATED, "2020-01-01T00:00:00Z"),
        ],
    )
}

fn missing(what: &str) -> CloudError {
    CloudError::new(CloudErrorKind::NotFound, "resolve", what, "no such thing")
}

#[async_trait]
impl Cloud for Fake {
    async fn resolve_flavor(&self, n: &str) -> Result<Named, CloudError> {
        self.0.lock().unwrap().requests += 1;
        if n == "small" {
            Ok(Named {
                id: "f1".into(),
                name: n.into(),
            })
        } else {
            Err(missing(n))
        }
    }
    async fn resolve_image(&self, n: &str) -> Result<Named, CloudError> {
        self.0.lock().unwrap().requests += 1;
        if n == "img" {
            Ok(Named {
                id: "i1".into(),
                name: n.into(),
            })
        } else {
            Err(missing(n))
        }
    }
    async fn resolve_network(&self, n: &str) -> Result<Network, CloudError> {
        self.0.lock().unwrap().requests += 1;
        match n {
            "private" => Ok(Network {
                named: Named {
                    id: "n1".into(),
                    name: n.into(),
                },
                external: false,
            }),
            _ => Err(missing(n)),
        }
    }
    async fn resolve_security_group(&self, n: &str) -> Result<Named, CloudError> {
        self.0.lock().unwrap().requests += 1;
        if n == "default" {
            Ok(Named {
                id: "sg1".into(),
                name: n.into(),
            })
        } else {
            Err(missing(n))
        }
    }
    async fn resolve_server_group(&self, n: &str) -> Result<Named, CloudError> {
        Err(missing(n))
    }
    async fn keypair_exists(&self, name: &str) -> Result<bool, CloudError> {
        Ok(self.0.lock().unwrap().keypairs.contains_key(name))
    }
    fn compute_supports(&self, _: u16, _: u16) -> bool {
        true
    }
    async fn post_server(&self, name: &str, body: Value) -> Result<String, CloudError> {
        let mut w = self.0.lock().unwrap();
        w.requests += 1;
        let id = format!("s{}", w.posts.len() + 100);
        let meta: Vec<(String, String)> = body["server"]["metadata"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let mut s = srv(&id, name, &[]);
        s.metadata = meta.into_iter().collect();
        s.status = "BUILD".into();
        w.posts.push(body);
        w.servers.push((s, 0));
        Ok(id)
    }
    async fn get_server(&self, id: &str) -> Result<Option<Server>, CloudError> {
        let mut w = self.0.lock().unwrap();
        w.requests += 1;
        let next = if w.boot_script.is_empty() {
            None
        } else {
            Some(w.boot_script.remove(0))
        };
        let lag_done: Vec<String> = w
            .servers
            .iter()
            .filter(|(s, left)| w.deleting.contains(&s.id) && *left == 0)
            .map(|(s, _)| s.id.clone())
            .collect();
        w.servers.retain(|(s, _)| !lag_done.contains(&s.id));
        let deleting = w.deleting.clone();
        let Some((s, left)) = w.servers.iter_mut().find(|(s, _)| s.id == id) else {
            return Ok(None);
        };
        if deleting.contains(&s.id) {
            *left = left.saturating_sub(1);
            s.status = "ACTIVE".into(); // Nova shows the old status while deleting.
        } else if s.status == "BUILD" {
            match next {
                Some("ERROR") => {
                    s.status = "ERROR".into();
                    s.fault = Some(
                        "No valid host was found. There are not enough hosts available.".into(),
                    );
                }
                Some(st) => s.status = st.into(),
                None => s.status = "ACTIVE".into(),
            }
        }
        Ok(Some(s.clone()))
    }
    async fn list_servers(&self, filter: Option<&str>) -> Result<Vec<Server>, CloudError> {
        let mut w = self.0.lock().unwrap();
        w.requests += 1;
        // Like Nova on MySQL: a case-insensitive regex, matched anywhere in the name.
        let re = filter.map(|f| {
            regex::RegexBuilder::new(f)
                .case_insensitive(true)
                .build()
                .unwrap()
        });
        Ok(w.servers
            .iter()
            .map(|(s, _)| s.clone())
            .filter(|s| re.as_ref().is_none_or(|r| r.is_match(&s.name)))
            .collect())
    }
    async fn set_server_metadata(
        &self,
        id: &str,
        items: &BTreeMap<String, String>,
    ) -> Result<(), CloudError> {
        let mut w = self.0.lock().unwrap();
        w.requests += 1;
        match w.servers.iter_mut().find(|(s, _)| s.id == id) {
            Some((s, _)) => {
                s.metadata.extend(items.clone());
                Ok(())
            }
            None => Err(CloudError::new(
                CloudErrorKind::NotFound,
                "set server metadata",
                id,
                "no such server",
            )),
        }
    }

    async fn delete_server(&self, id: &str) -> Result<(), CloudError> {
        let mut w = self.0.lock().unwrap();
        w.requests += 1;
        let lag = w.delete_lag;
        if let Some((_, left)) = w.servers.iter_mut().find(|(s, _)| s.id == id) {
            *left = lag;
        }
        if !w.deleting.contains(&id.to_string()) {
            w.deleting.push(id.into());
        }
        Ok(())
    }
    async fn console_output(&self, _: &str, _: Option<u32>) -> Result<String, CloudError> {
        Ok(String::new())
    }
    async fn server_ports(&self, _: &str) -> Result<Vec<Port>, CloudError> {
        Ok(vec![])
    }
    async fn post_floating_ip(&self, _: &str, _: &str, _: &str) -> Result<FloatingIp, CloudError> {
        Err(missing("fip"))
    }
    async fn floating_ips_on_port(&self, _: &str) -> Result<Vec<FloatingIp>, CloudError> {
        Ok(vec![])
    }
    async fn list_floating_ips(&self) -> Result<Vec<FloatingIp>, CloudError> {
        Ok(vec![])
    }
    async fn delete_floating_ip(&self, _: &str) -> Result<(), CloudError> {
        Ok(())
    }
    async fn import_keypair(&self, name: &str, key: &str) -> Result<(), CloudError> {
        let mut w = self.0.lock().unwrap();
        if w.keypairs.contains_key(name) {
            return Err(CloudError::new(
                CloudErrorKind::Conflict,
                "import key pair",
                name,
                "exists",
            ));
        }
        w.keypairs.insert(name.into(), key.into());
        Ok(())
    }
    async fn keypair_public_key(&self, name: &str) -> Result<Option<String>, CloudError> {
        Ok(self.0.lock().unwrap().keypairs.get(name).cloned())
    }
    async fn list_keypair_names(&self) -> Result<Vec<String>, CloudError> {
        Ok(self.0.lock().unwrap().keypairs.keys().cloned().collect())
    }
    async fn keypair_created(&self, _: &str) -> Result<Option<std::time::SystemTime>, CloudError> {
        Ok(None)
    }
    async fn delete_keypair(&self, name: &str) -> Result<(), CloudError> {
        self.0.lock().unwrap().keypairs.remove(name);
        Ok(())
    }
    async fn delete_volume(&self, _: &str) -> Result<(), CloudError> {
        Ok(())
    }
    async fn set_volume_metadata(
        &self,
        _: &str,
        _: &BTreeMap<String, String>,
    ) -> Result<(), CloudError> {
        Ok(())
    }
    async fn volume_metadata(
        &self,
        _: &str,
    ) -> Result<Option<BTreeMap<String, String>>, CloudError> {
        Ok(None)
    }
    async fn compute_limits(&self) -> Result<ComputeLimits, CloudError> {
        Ok(ComputeLimits::default())
    }
    fn requests_sent(&self) -> u64 {
        self.0.lock().unwrap().requests
    }
}

fn ids(fake: &Fake) -> Vec<String> {
    fake.0
        .lock()
        .unwrap()
        .servers
        .iter()
        .map(|(s, _)| s.id.clone())
        .collect()
}

fn quick() -> CleanupPolicy {
    CleanupPolicy {
        timeout: Duration::from_secs(10),
        interval: Duration::from_millis(5),
        ..CleanupPolicy::default()
    }
}

fn target(o: &Ownership, id: Option<&str>, name: &str) -> CleanupTarget {
    CleanupTarget {
        owner: o.clone(),
        server_id: id.map(str::to_string),
        server_name: Some(name.into()),
        floating_ip_ids: vec![],
        keypair_name: None,
        volume_ids: vec![],
    }
}

/// Bug 1: unanchored regex names and no ownership.
#[tokio::test]
async fn cleanup_of_ci_1_touches_only_its_own_server() {
    let fake = Fake::default();
    let me = owner("1");
    {
        let mut w = fake.0.lock().unwrap();
        for s in [
            owned("a", "ci-1", &me),
            owned("b", "ci-10", &owner("10")),
            owned("c", "ci-1-x", &me),
            owned("d", "CI-1", &me),
            owned("e", "xci-1", &me),
            srv("f", "ci-1", &[]),
            owned("g", "ci-1", &owner("2")),
            owned(
                "h",
                "ci-1",
                &Ownership {
                    runner: "other-runner".into(),
                    ..me.clone()
                },
            ),
        ] {
            w.servers.push((s, 0));
        }
    }
    let report = cleanup(&fake, &target(&me, None, "ci-1"), &quick())
        .await
        .unwrap();
    assert_eq!(report.servers_deleted, vec!["a"]);
    assert_eq!(ids(&fake), vec!["b", "c", "d", "e", "f", "g", "h"]);
    // A regex-looking name is taken literally.
    let report = cleanup(&fake, &target(&me, None, "ci-.*"), &quick())
        .await
        .unwrap();
    assert!(report.servers_deleted.is_empty());
    assert_eq!(exact_name_filter("ci-1.x"), "^ci\\-1\\.x$");
}

/// Bug 1 (identity): the job's identity comes from the trusted JOB_RESPONSE_FILE.
#[test]
fn ownership_comes_from_the_job_response_file_not_the_job_variables() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("response.json");
    std::fs::write(
        &file,
        r#"{"id": 555, "token": "t", "job_info": {"project_id": 9}}"#,
    )
    .unwrap();
    let settings = CloudSettings {
        owner: Some("runner-a".into()),
        ..CloudSettings::default()
    };
    let path = file.to_str().unwrap().to_string();
    // The job's variables (CUSTOM_ENV_CI_JOB_ID=1) are not even offered: only the file counts.
    let o = executor_driver::steps::cloud_glue::job_ownership(&settings, &move |k| match k {
        "JOB_RESPONSE_FILE" => Some(path.clone()),
        "CUSTOM_ENV_CI_JOB_ID" | "CUSTOM_ENV_CI_PROJECT_ID" => Some("1".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(
        o,
        Ownership {
            runner: "runner-a".into(),
            project: "9".into(),
            job: "555".into()
        }
    );
}

/// Issue 14, item 3: without gitlab-runner's payload there is no identity to trust, so
/// ownership (and with it cleanup) fails closed instead of believing `CI_JOB_ID`.
#[test]
fn without_a_job_response_file_ownership_fails_closed() {
    let settings = CloudSettings::default();
    let variables = |k: &str| match k {
        "CUSTOM_ENV_CI_JOB_ID" | "CUSTOM_ENV_CI_PROJECT_ID" => Some("1".to_string()),
        _ => None,
    };
    let err = executor_driver::steps::cloud_glue::job_ownership(&settings, &variables).unwrap_err();
    assert!(
        err.message.contains("JOB_RESPONSE_FILE is not set"),
        "{}",
        err.message
    );
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("response.json").display().to_string();
    let err = executor_driver::steps::cloud_glue::job_ownership(&settings, &move |k| {
        (k == "JOB_RESPONSE_FILE")
            .then(|| gone.clone())
            .or_else(|| variables(k))
    })
    .unwrap_err();
    assert!(err.message.contains("does not exist"), "{}", err.message);
}

/// Bug 9 and 14: cleanup waits until the server is really gone, bounded.
#[tokio::test]
async fn cleanup_waits_until_the_server_is_gone() {
    let fake = Fake::default();
    let me = owner("1");
    {
        let mut w = fake.0.lock().unwrap();
        w.servers.push((owned("a", "ci-1", &me), 0));
        w.delete_lag = 5;
    }
    let report = cleanup(&fake, &target(&me, Some("a"), "ci-1"), &quick())
        .await
        .unwrap();
    assert_eq!(report.servers_deleted, vec!["a"]);
    assert!(
        ids(&fake).is_empty(),
        "returned only once the server was gone"
    );

    // A server that never goes away: a bounded wait and a timeout error.
    fake.0
        .lock()
        .unwrap()
        .servers
        .push((owned("z", "ci-2", &owner("2")), u32::MAX));
    fake.0.lock().unwrap().delete_lag = u32::MAX;
    let policy = CleanupPolicy {
        timeout: Duration::from_millis(50),
        interval: Duration::from_millis(5),
        ..CleanupPolicy::default()
    };
    let err = cleanup(&fake, &target(&owner("2"), Some("z"), "ci-2"), &policy)
        .await
        .unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Timeout);
}

/// Bug 14: cleanup is idempotent and succeeds when nothing was ever made; a state id that
/// points to a foreign server is refused.
#[tokio::test]
async fn cleanup_of_nothing_succeeds_and_foreign_ids_are_refused() {
    let fake = Fake::default();
    let me = owner("1");
    let report = cleanup(&fake, &target(&me, Some("nope"), "ci-1"), &quick())
        .await
        .unwrap();
    assert_eq!(report, CleanupReport::default());
    fake.0
        .lock()
        .unwrap()
        .servers
        .push((srv("x", "ci-1", &[]), 0));
    let report = cleanup(&fake, &target(&me, Some("x"), "ci-1"), &quick())
        .await
        .unwrap();
    assert_eq!(report.servers_refused, vec!["x"]);
    assert_eq!(ids(&fake), vec!["x"]);
}

/// Issue 15: a key pair has no metadata, so cleanup deletes one only when it is provably this
/// job's: its exact per-job name, or the key of a server that carries this job's metadata. A
/// name the job state (or a recipe) gives that is neither is left alone, as a foreign server is.
#[tokio::test]
async fn cleanup_deletes_only_key_pairs_it_can_prove_are_this_jobs() {
    let fake = Fake::default();
    let me = owner("1");
    let theirs = job_keypair_name(&owner("2"));
    for name in [&theirs, &job_keypair_name(&me), &"pool-vm-key".to_string()] {
        import_job_keypair(&fake, name, "ssh-ed25519 AAAA k", true)
            .await
            .unwrap();
    }
    // Another job's key pair, named by a state whose server is not ours: refused.
    fake.0
        .lock()
        .unwrap()
        .servers
        .push((owned("x", "ci-1", &owner("2")), 0));
    let mut t = target(&me, Some("x"), "ci-1");
    t.keypair_name = Some(theirs.clone());
    let report = cleanup(&fake, &t, &quick()).await.unwrap();
    assert_eq!(report.keypair_refused.as_deref(), Some(theirs.as_str()));
    assert!(!report.keypair_deleted);
    assert!(
        fake.keypair_exists(&theirs).await.unwrap(),
        "another job's key pair went"
    );
    // The exact per-job name proves itself, with no server left.
    t.keypair_name = Some(job_keypair_name(&me));
    let report = cleanup(&fake, &t, &quick()).await.unwrap();
    assert!(report.keypair_deleted && report.keypair_refused.is_none());
    assert!(!fake.keypair_exists(&job_keypair_name(&me)).await.unwrap());
    // Any other name is proven by this job's server carrying it (a claimed pool VM's key).
    let mut mine = owned("y", "ci-1", &me);
    mine.key_name = Some("pool-vm-key".into());
    fake.0.lock().unwrap().servers.push((mine, 0));
    let mut t = target(&me, Some("y"), "ci-1");
    t.keypair_name = Some("pool-vm-key".into());
    let report = cleanup(&fake, &t, &quick()).await.unwrap();
    assert_eq!(report.servers_deleted, vec!["y"]);
    assert!(report.keypair_deleted, "{report:?}");
    assert!(!fake.keypair_exists("pool-vm-key").await.unwrap());
}

/// A prepare that died during create: the id never reached the state, the name did.
#[tokio::test]
async fn cleanup_after_a_prepare_that_died_during_create() {
    let fake = Fake::default();
    let me = owner("1");
    let spec = ServerSpec {
        name: "ci-1".into(),
        flavor: "small".into(),
        image: "img".into(),
        ..ServerSpec::default()
    };
    create_server(&fake, &spec, &me, &CreateOptions::default())
        .await
        .unwrap();
    let report = cleanup(&fake, &target(&me, None, "ci-1"), &quick())
        .await
        .unwrap();
    assert_eq!(report.servers_deleted.len(), 1);
    assert!(ids(&fake).is_empty());
}

/// Every server carries ownership metadata; it cannot be overridden by the recipe.
#[tokio::test]
async fn created_servers_carry_ownership_metadata() {
    let fake = Fake::default();
    let me = owner("1");
    let mut spec = ServerSpec {
        name: "ci-1".into(),
        flavor: "small".into(),
        image: "img".into(),
        ..ServerSpec::default()
    };
    spec.metadata.insert("purpose".into(), "ci".into());
    let created = create_server(&fake, &spec, &me, &CreateOptions::default())
        .await
        .unwrap();
    let s = fake.get_server(&created.server_id).await.unwrap().unwrap();
    assert!(me.owns(&s.metadata));
    assert!(executor_cloud::ownership::created_at(&s.metadata).is_some());
    spec.metadata.insert(META_JOB.into(), "999".into());
    let err = create_server(&fake, &spec, &me, &CreateOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Invalid);
}

/// Bug 13: bad names fail clearly, before anything is created.
#[tokio::test]
async fn bad_arguments_fail_before_any_create() {
    let fake = Fake::default();
    let me = owner("1");
    let base = ServerSpec {
        name: "ci-1".into(),
        flavor: "small".into(),
        image: "img".into(),
        ..ServerSpec::default()
    };
    let cases: Vec<(ServerSpec, CloudErrorKind, &str)> = vec![
        (
            ServerSpec {
                flavor: "huge".into(),
                ..base.clone()
            },
            CloudErrorKind::NotFound,
            "huge",
        ),
        (
            ServerSpec {
                image: "nope".into(),
                ..base.clone()
            },
            CloudErrorKind::NotFound,
            "nope",
        ),
        (
            ServerSpec {
                networks: vec![NetworkAttachment {
                    network: Some("mgmt".into()),
                    port: None,
                    fixed_ip: None,
                }],
                ..base.clone()
            },
            CloudErrorKind::NotFound,
            "mgmt",
        ),
        (
            ServerSpec {
                security_groups: vec!["".into()],
                ..base.clone()
            },
            CloudErrorKind::Invalid,
            "security group",
        ),
        (
            ServerSpec {
                key_name: Some("nokey".into()),
                ..base.clone()
            },
            CloudErrorKind::NotFound,
            "nokey",
        ),
        (
            ServerSpec {
                name: " ".into(),
                ..base.clone()
            },
            CloudErrorKind::Invalid,
            "name",
        ),
        (
            ServerSpec {
                networks: vec![NetworkAttachment {
                    network: None,
                    port: None,
                    fixed_ip: Some("10.0.0.5".into()),
                }],
                ..base.clone()
            },
            CloudErrorKind::Invalid,
            "networks[0]",
        ),
    ];
    for (spec, kind, mention) in cases {
        let err = create_server(&fake, &spec, &me, &CreateOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind, kind, "{err}");
        assert!(err.to_string().contains(mention), "{err} lacks {mention}");
    }
    assert!(
        fake.0.lock().unwrap().posts.is_empty(),
        "nothing was created"
    );
}

/// Bug 19: the wait is configurable and ERROR shows Nova's fault.
#[tokio::test]
async fn error_boot_surfaces_the_fault_and_waits_are_bounded() {
    let fake = Fake::default();
    let me = owner("1");
    let spec = ServerSpec {
        name: "ci-1".into(),
        flavor: "small".into(),
        image: "img".into(),
        ..ServerSpec::default()
    };
    fake.0.lock().unwrap().boot_script = vec!["BUILD", "ERROR"];
    let created = create_server(&fake, &spec, &me, &CreateOptions::default())
        .await
        .unwrap();
    let policy = WaitPolicy {
        timeout: Duration::from_secs(30),
        expected: Duration::ZERO,
        min_interval: Duration::from_millis(5),
        max_interval: Duration::from_millis(5),
    };
    let mut seen = vec![];
    let err = wait_active(
        &fake,
        &created.server_id,
        &policy,
        &CancellationToken::new(),
        &mut |s: &str| seen.push(s.to_string()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::BootError);
    assert!(err.to_string().contains("No valid host was found"), "{err}");
    assert_eq!(seen, vec!["BUILD", "ERROR"]);

    fake.0.lock().unwrap().boot_script = vec!["BUILD"; 1000];
    let spec2 = ServerSpec {
        name: "ci-2".into(),
        ..spec
    };
    let created = create_server(&fake, &spec2, &me, &CreateOptions::default())
        .await
        .unwrap();
    let short = WaitPolicy {
        timeout: Duration::from_millis(60),
        ..policy
    };
    let err = wait_active(
        &fake,
        &created.server_id,
        &short,
        &CancellationToken::new(),
        &mut |_: &str| {},
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Timeout);

    let cancel = CancellationToken::new();
    cancel.cancel();
    let long = WaitPolicy {
        timeout: Duration::from_secs(600),
        ..policy
    };
    let err = wait_active(&fake, &created.server_id, &long, &cancel, &mut |_: &str| {})
        .await
        .unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Canceled);
}

fn with_addresses(list: &[(&str, &str, AddressKind)]) -> Server {
    let mut s = srv("a", "ci-1", &[]);
    s.addresses = list
        .iter()
        .map(|(n, ip, k)| Address {
            network: n.to_string(),
            ip: ip.parse::<IpAddr>().unwrap(),
            kind: *k,
        })
        .collect();
    s
}

/// Bug 7: the address follows a stated rule, never "the first one".
#[test]
fn address_choice_follows_the_policy() {
    use AddressKind::*;
    let s = with_addresses(&[
        ("mgmt", "fd00::5", Fixed),
        ("mgmt", "10.9.0.5", Fixed),
        ("private", "10.0.0.5", Fixed),
        ("private", "172.24.4.9", Floating),
    ]);
    let err = choose_address(&s, &AddressPolicy::default()).unwrap_err();
    assert!(
        err.to_string().contains("mgmt, private"),
        "ambiguous across networks: {err}"
    );
    let pick = |p: AddressPolicy| choose_address(&s, &p).unwrap().ip.to_string();
    let net = |n: &str| Some(n.to_string());
    assert_eq!(
        pick(AddressPolicy {
            network: net("private"),
            ..Default::default()
        }),
        "10.0.0.5"
    );
    assert_eq!(
        pick(AddressPolicy {
            network: net("private"),
            kind: AddressChoice::Any,
            ..Default::default()
        }),
        "172.24.4.9"
    );
    assert_eq!(
        pick(AddressPolicy {
            network: net("private"),
            kind: AddressChoice::Floating,
            ..Default::default()
        }),
        "172.24.4.9"
    );
    assert_eq!(
        pick(AddressPolicy {
            network: net("mgmt"),
            family: IpFamily::Ipv6,
            ..Default::default()
        }),
        "fd00::5"
    );
    assert_eq!(
        pick(AddressPolicy {
            network: net("mgmt"),
            family: IpFamily::Any,
            ..Default::default()
        }),
        "10.9.0.5",
        "IPv4 first"
    );
    let err = choose_address(
        &s,
        &AddressPolicy {
            network: net("public"),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::NotFound);
}

/// Bug 14: leaked servers can be found by the reaper, by runner and age.
#[tokio::test]
async fn the_reaper_lists_only_this_runners_old_servers() {
    let fake = Fake::default();
    {
        let mut w = fake.0.lock().unwrap();
        w.servers.push((owned("old", "ci-1", &owner("1")), 0));
        let mut fresh = owned("new", "ci-2", &owner("2"));
        fresh.metadata.insert(
            META_CREATED.into(),
            humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        );
        w.servers.push((fresh, 0));
        w.servers.push((
            owned(
                "theirs",
                "ci-3",
                &Ownership {
                    runner: "r2".into(),
                    ..owner("3")
                },
            ),
            0,
        ));
        w.servers
            .push((srv("manual", "ci-4", &[(META_RUNNER, "r1")]), 0));
    }
    let mine = executor_cloud::reaper::list_runner_servers(&fake, "r1")
        .await
        .unwrap();
    let names: Vec<&str> = mine.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(names, vec!["old", "new"]);
    let stale = executor_cloud::reaper::stale(&mine, Duration::from_secs(3600), SystemTime::now());
    assert!(stale.iter().all(|s| s.id == "old") && !stale.is_empty());
}

/// Re-importing the same key (a repeated prepare) is fine; a different key is a conflict,
/// unless it is the per-job key pair left by an earlier attempt of this job.
#[tokio::test]
async fn keypair_import_is_idempotent_for_the_same_key() {
    let fake = Fake::default();
    let name = job_keypair_name(&owner("1"));
    assert_eq!(name, "executor-r1-7-1");
    import_job_keypair(&fake, &name, "ssh-ed25519 AAAA one", true)
        .await
        .unwrap();
    import_job_keypair(&fake, &name, "ssh-ed25519 AAAA two", true)
        .await
        .unwrap();
    let err = import_job_keypair(&fake, &name, "ssh-ed25519 BBBB one", false)
        .await
        .unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Conflict);
    import_job_keypair(&fake, &name, "ssh-ed25519 BBBB one", true)
        .await
        .unwrap();
    assert_eq!(
        fake.keypair_public_key(&name).await.unwrap().as_deref(),
        Some("ssh-ed25519 BBBB one")
    );
}
