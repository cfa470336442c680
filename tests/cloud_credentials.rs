//! Finding credentials as OpenStack's tools do, without ever showing a secret.

use std::collections::HashMap;
use std::path::Path;

use executor_cloud::CloudSettings;
use executor_cloud::credentials::{AuthMethod, Credentials, IdOrName};

const SECRET: &str = "pa55-w0rd-never-shown";

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const CLOUDS: &str = "
clouds:
  prod:
    auth:
      auth_url: https://keystone.example:5000/v3
      username: ci
      project_name: builds
      user_domain_id: default
      project_domain_name: Default
    region_name: RegionTwo
    interface: internal
    verify: false
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://keystone.example:5000
      application_credential_id: abc123
    cacert: /etc/ssl/cloud.pem
";

#[test]
fn clouds_yaml_from_os_client_config_file_merged_with_secure_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let clouds = write(dir.path(), "clouds.yaml", CLOUDS);
    write(
        dir.path(),
        "secure.yaml",
        &format!(
            "clouds:\n  prod:\n    auth:\n      password: {SECRET}\n  appcred:\n    auth:\n      application_credential_secret: {SECRET}\n"
        ),
    );
    let clouds = clouds.to_str().unwrap();
    let e = env(&[
        ("OS_CLOUD", "prod"),
        ("OS_CLIENT_CONFIG_FILE", clouds),
        ("HOME", "/nonexistent"),
    ]);
    let c = Credentials::load(&CloudSettings::default(), &e).unwrap();
    assert_eq!(c.auth_url, "https://keystone.example:5000/v3");
    assert_eq!(c.region.as_deref(), Some("RegionTwo"));
    assert_eq!(c.interface, "internal");
    assert!(!c.verify, "verify: false is honoured");
    assert_eq!(c.project, Some(IdOrName::Name("builds".into())));
    match &c.method {
        AuthMethod::Password {
            user, user_domain, ..
        } => {
            assert_eq!(user, &IdOrName::Name("ci".into()));
            assert_eq!(user_domain, &Some(IdOrName::Id("default".into())));
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{c:?}").contains(SECRET), "Debug shows no secret");

    // The recipe's settings win over the environment.
    let settings = CloudSettings {
        cloud: Some("appcred".into()),
        region: Some("R3".into()),
        ..CloudSettings::default()
    };
    let c = Credentials::load(&settings, &e).unwrap();
    assert!(matches!(c.method, AuthMethod::ApplicationCredential { .. }));
    assert_eq!(
        c.project, None,
        "an application credential carries its own scope"
    );
    assert_eq!(c.region.as_deref(), Some("R3"));
    assert_eq!(c.cacert.as_deref(), Some(Path::new("/etc/ssl/cloud.pem")));
    assert!(c.verify);
    assert!(!format!("{c:?}").contains(SECRET));
}

#[test]
fn explicit_clouds_yaml_setting_beats_os_client_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "mine.yaml", CLOUDS);
    let e = env(&[
        ("OS_CLOUD", "prod"),
        ("OS_CLIENT_CONFIG_FILE", "/nonexistent/clouds.yaml"),
        ("OS_PASSWORD", "x"),
    ]);
    let settings = CloudSettings {
        clouds_yaml: Some(good),
        ..CloudSettings::default()
    };
    // No password anywhere for "prod" (no secure.yaml): a clear error naming what is missing.
    let err = Credentials::load(&settings, &e).unwrap_err();
    assert!(err.to_string().contains("auth.password"), "{err}");
}

#[test]
fn standard_places_are_searched() {
    let home = tempfile::tempdir().unwrap();
    let conf = home.path().join(".config/openstack");
    std::fs::create_dir_all(&conf).unwrap();
    write(&conf, "clouds.yaml", CLOUDS);
    write(
        &conf,
        "secure.yaml",
        &format!("clouds:\n  prod:\n    auth:\n      password: {SECRET}\n"),
    );
    let e = env(&[
        ("OS_CLOUD", "prod"),
        ("HOME", home.path().to_str().unwrap()),
    ]);
    let c = Credentials::load(&CloudSettings::default(), &e).unwrap();
    assert_eq!(c.region.as_deref(), Some("RegionTwo"));
    let missing = Credentials::load(
        &CloudSettings {
            cloud: Some("nope".into()),
            ..CloudSettings::default()
        },
        &e,
    )
    .unwrap_err();
    assert!(
        missing.to_string().contains("prod"),
        "lists the clouds it has: {missing}"
    );
}

#[test]
fn plain_os_variables() {
    let e = env(&[
        ("OS_AUTH_URL", "http://127.0.0.1:5000/v3"),
        ("OS_USERNAME", "demo"),
        ("OS_PASSWORD", SECRET),
        ("OS_PROJECT_ID", "p-1"),
        ("OS_USER_DOMAIN_NAME", "Default"),
        ("OS_REGION_NAME", "RegionOne"),
        ("OS_INTERFACE", "publicURL"),
        ("OS_INSECURE", "true"),
        ("OS_CACERT", "/tmp/ca.pem"),
    ]);
    let c = Credentials::load(&CloudSettings::default(), &e).unwrap();
    assert_eq!(c.project, Some(IdOrName::Id("p-1".into())));
    assert_eq!(c.interface, "public");
    assert!(!c.verify);
    assert_eq!(c.cacert.as_deref(), Some(Path::new("/tmp/ca.pem")));
    assert!(!format!("{c:?}").contains(SECRET));

    let e = env(&[
        ("OS_AUTH_URL", "http://127.0.0.1:5000/v3"),
        ("OS_AUTH_TYPE", "v3applicationcredential"),
        ("OS_APPLICATION_CREDENTIAL_NAME", "ci"),
        ("OS_APPLICATION_CREDENTIAL_SECRET", SECRET),
    ]);
    let err = Credentials::load(&CloudSettings::default(), &e).unwrap_err();
    assert!(
        err.to_string().contains("username"),
        "a credential by name needs its user: {err}"
    );

    let err = Credentials::load(&CloudSettings::default(), &env(&[])).unwrap_err();
    assert!(err.to_string().contains("OS_CLOUD"), "{err}");
}

#[test]
fn unsupported_auth_types_and_interfaces_are_rejected_clearly() {
    let e = env(&[
        ("OS_AUTH_URL", "http://127.0.0.1:5000"),
        ("OS_AUTH_TYPE", "v3oidcpassword"),
    ]);
    let err = Credentials::load(&CloudSettings::default(), &e).unwrap_err();
    assert!(err.to_string().contains("v3oidcpassword"), "{err}");
    let e = env(&[
        ("OS_AUTH_URL", "http://127.0.0.1:5000"),
        ("OS_USERNAME", "u"),
        ("OS_PASSWORD", SECRET),
    ]);
    let settings = CloudSettings {
        interface: Some("private".into()),
        ..CloudSettings::default()
    };
    let err = Credentials::load(&settings, &e).unwrap_err();
    assert!(err.to_string().contains("private"), "{err}");
    assert!(!err.to_string().contains(SECRET));
}

/// A token from the simulated Keystone, as a site's token broker would hand one out.
async fn sim_token(sim: &executor_simulator::SimCloud) -> String {
    let body = serde_json::json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": executor_simulator::USER_NAME, "domain": {"name": "Default"},
        "password": executor_simulator::USER_PASSWORD}}}}});
    let r = reqwest::Client::new()
        .post(format!(
            "{}/auth/tokens",
            sim.auth_url().trim_end_matches('/')
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.headers()["x-subject-token"].to_str().unwrap().to_string()
}

fn token_env(sim: &executor_simulator::SimCloud, token: &str) -> HashMap<String, String> {
    [
        ("OS_AUTH_URL", sim.auth_url()),
        ("OS_TOKEN", token.to_string()),
        ("OS_PROJECT_NAME", executor_simulator::PROJECT_NAME.into()),
        ("OS_PROJECT_DOMAIN_NAME", "Default".into()),
        ("HOME", "/nonexistent".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// `OS_TOKEN` (auth type `v3token`): the given token is exchanged for one scoped to the
/// project; once it has expired, the error says what happened and what to do.
#[tokio::test]
async fn a_given_token_connects_and_its_expiry_is_explained() {
    let sim = executor_simulator::SimCloud::start(executor_simulator::SimOptions::default())
        .await
        .unwrap();
    let token = sim_token(&sim).await;
    let vars = token_env(&sim, &token);
    let lookup = move |k: &str| vars.get(k).cloned();
    let creds = Credentials::load(&CloudSettings::default(), &lookup).unwrap();
    assert!(matches!(creds.method, AuthMethod::Token { .. }));
    assert!(!format!("{creds:?}").contains(&token), "the token in Debug");
    let os = executor_cloud::OpenStack::connect_with_env(&CloudSettings::default(), &lookup)
        .await
        .expect("a connection from the given token");
    use executor_cloud::Cloud;
    os.compute_limits().await.expect("a scoped request works");

    sim.faults().expire_tokens();
    let err = executor_cloud::OpenStack::connect_with_env(&CloudSettings::default(), &lookup)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind, executor_cloud::CloudErrorKind::Auth, "{text}");
    assert!(text.contains("has expired or was revoked"), "{text}");
    assert!(text.contains("fresh token"), "{text}");
    assert!(!text.contains(&token), "the token in a message: {text}");
}

/// A clouds-public.yaml profile gives the base (here Keystone's URL and the region), the
/// clouds.yaml entry adds the user, and secure.yaml the password, as openstacksdk merges them.
#[tokio::test]
async fn a_profile_plus_secure_yaml_connects_to_the_simulator() {
    let sim = executor_simulator::SimCloud::start(executor_simulator::SimOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "clouds-public.yaml",
        &format!(
            "public-clouds:\n  simvendor:\n    auth:\n      auth_url: {}\n      user_domain_name: Default\n      project_domain_name: Default\n    interface: public\n",
            sim.auth_url()
        ),
    );
    let clouds = write(
        dir.path(),
        "clouds.yaml",
        &format!(
            "clouds:\n  site:\n    profile: simvendor\n    auth:\n      username: {}\n      project_name: {}\n",
            executor_simulator::USER_NAME,
            executor_simulator::PROJECT_NAME
        ),
    );
    write(
        dir.path(),
        "secure.yaml",
        &format!(
            "clouds:\n  site:\n    auth:\n      password: {}\n",
            executor_simulator::USER_PASSWORD
        ),
    );
    let e = env(&[
        ("OS_CLOUD", "site"),
        ("OS_CLIENT_CONFIG_FILE", clouds.to_str().unwrap()),
        ("HOME", "/nonexistent"),
    ]);
    let creds = Credentials::load(&CloudSettings::default(), &e).unwrap();
    assert_eq!(creds.auth_url, sim.auth_url());
    let os = executor_cloud::OpenStack::connect_with_env(&CloudSettings::default(), &e)
        .await
        .expect("profile + clouds.yaml + secure.yaml connect");
    use executor_cloud::Cloud;
    os.compute_limits().await.expect("a request works");

    // A profile that is not there is named, with the ones that are.
    let clouds = write(
        dir.path(),
        "clouds.yaml",
        "clouds:\n  site:\n    profile: nosuch\n    auth: {username: demo}\n",
    );
    let e = env(&[
        ("OS_CLOUD", "site"),
        ("OS_CLIENT_CONFIG_FILE", clouds.to_str().unwrap()),
        ("HOME", "/nonexistent"),
    ]);
    let err = Credentials::load(&CloudSettings::default(), &e).unwrap_err();
    assert!(
        err.to_string().contains("\"nosuch\" is not in") && err.to_string().contains("simvendor"),
        "{err}"
    );
}
