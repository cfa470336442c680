//! Quota: which one is exhausted and how much of it is used, and waiting for it.
//!
//! On a shared project the quota runs out before gitlab-runner's `concurrent` does. A create
//! that Nova refuses for quota is then not a failure but a wait: [`create_server_waiting_for_quota`]
//! sends it again with backoff until the quota has room or the recipe's bound has passed, and
//! tells its caller each time what it is waiting for ("instances quota exhausted (10 of 10
//! used)"). The numbers come from Nova's refusal when it has them, else from Nova's absolute
//! limits (`GET /limits`), which any project member may read.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backend::Cloud;
use super::create::{CreateOptions, Created, build_request, send_create};
use super::error::{CloudError, CloudErrorKind};
use super::ownership::{META_CREATED, Ownership};
use super::server_spec::ServerSpec;

/// One quota that stopped a create, and its use when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaUse {
    /// Nova's name for it: `instances`, `cores`, `ram` (or whatever Nova said).
    pub resource: String,
    /// How much of it the project uses.
    pub used: Option<u64>,
    /// The project's limit.
    pub limit: Option<u64>,
}

impl fmt::Display for QuotaUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} quota exhausted", self.resource)?;
        if let (Some(used), Some(limit)) = (self.used, self.limit) {
            let unit = if self.resource == "ram" { " MB" } else { "" };
            write!(f, " ({used} of {limit}{unit} used)")?;
        }
        Ok(())
    }
}

/// Several exhausted quotas in one phrase; "a quota is exhausted" when nothing says which.
pub fn describe(quotas: &[QuotaUse]) -> String {
    if quotas.is_empty() {
        return "a quota is exhausted".into();
    }
    quotas
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The quotas Nova names in a refusal, with their use when the message says it:
/// `Quota exceeded for instances: Requested 1, but already used 10 of 10 instances`, or for
/// several at once `Quota exceeded for cores, instances: Requested 2, 1, but already used 20,
/// 10 of 20, 10 cores, instances` (nova.exception.TooManyInstances). Other wordings yield the
/// names without numbers, or nothing.
pub fn parse_nova_refusal(message: &str) -> Vec<QuotaUse> {
    let lower = message.to_ascii_lowercase();
    let Some(start) = lower.find("quota exceeded for ") else {
        return vec![];
    };
    let rest = &message[start + "quota exceeded for ".len()..];
    let (names, rest) = match rest.split_once(':') {
        Some((names, rest)) => (names, Some(rest)),
        None => (rest.trim_end_matches('.'), None),
    };
    let names: Vec<String> = names
        .split(',')
        .map(|n| n.trim().trim_matches(|c| "[]'\"".contains(c)).to_string())
        .filter(|n| !n.is_empty())
        .collect();
    let numbers = |text: &str| -> Vec<Option<u64>> {
        text.split(',').map(|n| n.trim().parse().ok()).collect()
    };
    let (mut used, mut limits) = (vec![], vec![]);
    if let Some(rest) = rest
        && let Some((_, tail)) = rest.split_once("already used ")
        && let Some((u, tail)) = tail.split_once(" of ")
    {
        used = numbers(u);
        // "20, 10 cores, instances": the limits end where the names begin again.
        for part in tail.split(',') {
            let mut words = part.split_whitespace();
            match words.next().and_then(|w| w.parse::<u64>().ok()) {
                Some(n) => limits.push(Some(n)),
                None => break,
            }
            if words.next().is_some() {
                break;
            }
        }
    }
    let complete = used.len() == names.len() && limits.len() == names.len();
    names
        .into_iter()
        .enumerate()
        .map(|(i, resource)| QuotaUse {
            resource,
            used: if complete { used[i] } else { None },
            limit: if complete { limits[i] } else { None },
        })
        .collect()
}

/// One of Nova's absolute limits: what the project uses and its limit (`None`: unlimited,
/// which Nova writes as -1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limit {
    /// In use.
    pub used: u64,
    /// The limit; `None` when there is none.
    pub max: Option<u64>,
}

impl Limit {
    /// What is left; `None` when unlimited.
    pub fn free(&self) -> Option<u64> {
        self.max.map(|m| m.saturating_sub(self.used))
    }
}

/// Nova's absolute limits for what a server costs (`GET /limits`: `maxTotalInstances`,
/// `totalInstancesUsed`, `maxTotalCores`, `totalCoresUsed`, `maxTotalRAMSize`, `totalRAMUsed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ComputeLimits {
    /// Servers.
    pub instances: Limit,
    /// vCPUs.
    pub cores: Limit,
    /// RAM in MB.
    pub ram_mb: Limit,
}

impl ComputeLimits {
    /// Reads Nova's answer to `GET /limits`; `None` when it has no absolute limits.
    pub fn from_json(body: &Value) -> Option<ComputeLimits> {
        let abs = body.pointer("/limits/absolute")?.as_object()?;
        let limit = |max: &str, used: &str| Limit {
            used: abs.get(used).and_then(Value::as_u64).unwrap_or(0),
            max: abs
                .get(max)
                .and_then(Value::as_i64)
                .and_then(|m| u64::try_from(m).ok()),
        };
        Some(ComputeLimits {
            instances: limit("maxTotalInstances", "totalInstancesUsed"),
            cores: limit("maxTotalCores", "totalCoresUsed"),
            ram_mb: limit("maxTotalRAMSize", "totalRAMUsed"),
        })
    }

    /// The limit Nova calls `resource` in its refusals.
    pub fn get(&self, resource: &str) -> Option<Limit> {
        match resource {
            "instances" => Some(self.instances),
            "cores" => Some(self.cores),
            "ram" => Some(self.ram_mb),
            _ => None,
        }
    }

    /// The quotas with nothing left.
    pub fn exhausted(&self) -> Vec<QuotaUse> {
        ["instances", "cores", "ram"]
            .into_iter()
            .filter_map(|name| {
                let l = self.get(name)?;
                (l.free() == Some(0)).then(|| QuotaUse {
                    resource: name.into(),
                    used: Some(l.used),
                    limit: l.max,
                })
            })
            .collect()
    }

    /// Whether one more server of the smallest kind fits: an instance, a core and a megabyte
    /// of RAM are left (a flavor's real size is not looked at).
    pub fn room_for_one(&self) -> bool {
        [self.instances, self.cores, self.ram_mb]
            .iter()
            .all(|l| l.free().is_none_or(|free| free >= 1))
    }
}

/// Whether the project's quota leaves room for one more server of the smallest kind, by
/// `GET /limits` (see [`ComputeLimits::room_for_one`]). When the limits cannot be read, yes:
/// the create itself will tell.
pub async fn has_room_for_one(cloud: &dyn Cloud) -> bool {
    match cloud.compute_limits().await {
        Ok(limits) => limits.room_for_one(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the absolute limits; assuming room");
            true
        }
    }
}

/// Which quota stopped `refusal`, with its use: Nova's message when it has the numbers, else
/// `GET /limits` (for the quotas the message names, or every exhausted one when it names none).
pub async fn explain_refusal(cloud: &dyn Cloud, refusal: &CloudError) -> Vec<QuotaUse> {
    let named = parse_nova_refusal(&refusal.message);
    if !named.is_empty() && named.iter().all(|q| q.used.is_some() && q.limit.is_some()) {
        return named;
    }
    let limits = match cloud.compute_limits().await {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(error = %e, "no absolute limits to explain a quota refusal");
            return named;
        }
    };
    if named.is_empty() {
        return limits.exhausted();
    }
    named
        .into_iter()
        .map(|q| match limits.get(&q.resource) {
            Some(l) => QuotaUse {
                used: Some(l.used),
                limit: l.max,
                ..q
            },
            None => q,
        })
        .collect()
}

/// How long to wait for quota, and how often to try again meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaWait {
    /// Give up once this long has passed since the first refusal; zero never waits.
    pub limit: Duration,
    /// The first pause; each later one doubles, up to `max_pause`. Each is shortened or
    /// lengthened by up to a fifth at random, so that jobs waiting together do not ask together.
    pub first_pause: Duration,
    /// The longest pause.
    pub max_pause: Duration,
}

impl QuotaWait {
    /// Waits up to `limit`, pausing 5 s, 10 s, 20 s, 40 s, then 60 s between tries.
    pub fn up_to(limit: Duration) -> QuotaWait {
        QuotaWait {
            limit,
            first_pause: Duration::from_secs(5),
            max_pause: Duration::from_secs(60),
        }
    }

    /// The pause after the `refusals`-th refusal (from 1), before jitter.
    pub fn pause(&self, refusals: u32) -> Duration {
        let doubled = self
            .first_pause
            .saturating_mul(1u32 << refusals.saturating_sub(1).min(16));
        doubled.min(self.max_pause.max(self.first_pause))
    }
}

/// `d` made up to a fifth shorter or longer at random.
fn jitter(d: Duration) -> Duration {
    // The random bits of a v4 UUID are as good a source as any here.
    let r = (uuid::Uuid::new_v4().as_u128() % 10_001) as f64 / 10_000.0; // 0..=1
    d.mul_f64(0.8 + 0.4 * r)
}

/// A duration as a person writes it: `0s`, `45s`, `2m10s`, `15m`, `1h5m`.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// What a create waiting for quota is waiting for, as the job log shows it.
#[derive(Debug, Clone)]
pub struct QuotaWaiting {
    /// The exhausted quotas and their use.
    pub quotas: Vec<QuotaUse>,
    /// Time since the first refusal.
    pub waited: Duration,
    /// The bound.
    pub limit: Duration,
}

impl fmt::Display for QuotaWaiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; waiting for quota, {} so far (gives up after {})",
            describe(&self.quotas),
            short_duration(self.waited),
            short_duration(self.limit)
        )
    }
}

/// The error of a create that waited `waited` for quota and got none.
pub fn gave_up(refusal: CloudError, quotas: &[QuotaUse], waited: Duration) -> CloudError {
    CloudError {
        message: format!(
            "{}; gave up waiting for quota after {} (Nova said: {})",
            describe(quotas),
            short_duration(waited),
            refusal.message
        ),
        ..refusal
    }
}

/// Puts the current time into the request's creation-time metadata, so that a server made
/// after a long wait does not look older than it is to the reaper.
fn stamp_created(body: &mut Value, now: SystemTime) {
    if let Some(meta) = body
        .pointer_mut("/server/metadata")
        .and_then(Value::as_object_mut)
        && meta.contains_key(META_CREATED)
    {
        meta.insert(
            META_CREATED.into(),
            Value::String(humantime::format_rfc3339_seconds(now).to_string()),
        );
    }
}

/// Creates the server like [`super::create::create_server`], but a create refused for quota
/// is sent again with backoff until it passes or `wait.limit` has passed. Names are resolved
/// once. `on_wait` hears of every refusal (which quota, its use, the time waited).
/// Cancelling stops the wait at once (class `canceled`).
pub async fn create_server_waiting_for_quota(
    cloud: &dyn Cloud,
    spec: &ServerSpec,
    owner: &Ownership,
    options: &CreateOptions,
    wait: &QuotaWait,
    cancel: &CancellationToken,
    on_wait: &mut (dyn FnMut(&QuotaWaiting) + Send),
) -> Result<Created, CloudError> {
    let mut request = build_request(cloud, spec, owner, SystemTime::now()).await?;
    let mut first_refusal: Option<Instant> = None;
    let mut refusals = 0u32;
    loop {
        if refusals > 0 {
            stamp_created(&mut request.0, SystemTime::now());
        }
        let refusal = match send_create(cloud, spec, owner, options, &request).await {
            Ok(created) => return Ok(created),
            Err(e) if e.kind == CloudErrorKind::Quota && !wait.limit.is_zero() => e,
            Err(e) => return Err(e),
        };
        refusals += 1;
        let since = *first_refusal.get_or_insert_with(Instant::now);
        let quotas = explain_refusal(cloud, &refusal).await;
        let waited = since.elapsed();
        if waited >= wait.limit {
            return Err(gave_up(refusal, &quotas, waited));
        }
        on_wait(&QuotaWaiting {
            quotas,
            waited,
            limit: wait.limit,
        });
        let pause = jitter(wait.pause(refusals)).min(wait.limit - waited);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = cancel.cancelled() => {
                return Err(CloudError::new(
                    CloudErrorKind::Canceled,
                    "wait for quota",
                    format!("server {:?}", spec.name),
                    "canceled",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(resource: &str, used: Option<u64>, limit: Option<u64>) -> QuotaUse {
        QuotaUse {
            resource: resource.into(),
            used,
            limit,
        }
    }

    #[test]
    fn novas_refusals_name_the_quota_and_its_use() {
        assert_eq!(
            parse_nova_refusal(
                "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"
            ),
            vec![q("instances", Some(10), Some(10))]
        );
        assert_eq!(
            parse_nova_refusal(
                "Quota exceeded for cores, instances: Requested 2, 1, but already used 20, 10 of 20, 10 cores, instances"
            ),
            vec![
                q("cores", Some(20), Some(20)),
                q("instances", Some(10), Some(10))
            ]
        );
        assert_eq!(
            parse_nova_refusal(
                "Quota exceeded for ram: Requested 2048, but already used 50176 of 51200 ram"
            ),
            vec![q("ram", Some(50176), Some(51200))]
        );
        // A range of instances requested still parses.
        assert_eq!(
            parse_nova_refusal(
                "Quota exceeded for instances: Requested 1-3, but already used 9 of 10 instances"
            ),
            vec![q("instances", Some(9), Some(10))]
        );
        // Names without numbers, and nothing at all.
        assert_eq!(
            parse_nova_refusal("Quota exceeded for instances."),
            vec![q("instances", None, None)]
        );
        assert_eq!(
            parse_nova_refusal("Quota exceeded for resources: ['floatingip']."),
            vec![q("resources", None, None)]
        );
        assert!(parse_nova_refusal("Maximum number of ports exceeded").is_empty());
    }

    #[test]
    fn the_log_line_names_the_quota_its_use_and_the_bound() {
        let waiting = QuotaWaiting {
            quotas: vec![q("instances", Some(10), Some(10))],
            waited: Duration::from_secs(130),
            limit: Duration::from_secs(900),
        };
        assert_eq!(
            waiting.to_string(),
            "instances quota exhausted (10 of 10 used); waiting for quota, 2m10s so far (gives up after 15m)"
        );
        assert_eq!(
            describe(&[q("ram", Some(51200), Some(51200)), q("cores", None, None)]),
            "ram quota exhausted (51200 of 51200 MB used), cores quota exhausted"
        );
        assert_eq!(describe(&[]), "a quota is exhausted");
        let refusal = CloudError::from_status(
            403,
            "create server",
            "server \"ci-1\"",
            None,
            "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances".into(),
        );
        let e = gave_up(
            refusal,
            &[q("instances", Some(10), Some(10))],
            Duration::from_secs(900),
        );
        assert_eq!(e.kind, CloudErrorKind::Quota);
        assert!(
            e.to_string().starts_with(
                "create server server \"ci-1\" failed (HTTP 403): instances quota exhausted (10 of 10 used); gave up waiting for quota after 15m"
            ),
            "{e}"
        );
    }

    #[test]
    fn durations_are_written_short() {
        for (secs, text) in [
            (0, "0s"),
            (45, "45s"),
            (130, "2m10s"),
            (900, "15m"),
            (3900, "1h5m"),
            (3601, "1h1s"),
        ] {
            assert_eq!(short_duration(Duration::from_secs(secs)), text);
        }
    }

    #[test]
    fn pauses_double_up_to_the_longest_and_jitter_stays_within_a_fifth() {
        let w = QuotaWait::up_to(Duration::from_secs(900));
        let pauses: Vec<u64> = (1..=7).map(|n| w.pause(n).as_secs()).collect();
        assert_eq!(pauses, vec![5, 10, 20, 40, 60, 60, 60]);
        assert_eq!(w.pause(1000), Duration::from_secs(60));
        for _ in 0..200 {
            let j = jitter(Duration::from_secs(10));
            assert!(
                j >= Duration::from_secs(8) && j <= Duration::from_secs(12),
                "{j:?}"
            );
        }
    }

    #[test]
    fn absolute_limits_say_what_is_full_and_whether_one_more_fits() {
        let body = json!({"limits": {"rate": [], "absolute": {
            "maxTotalInstances": 10, "totalInstancesUsed": 10,
            "maxTotalCores": -1, "totalCoresUsed": 10,
            "maxTotalRAMSize": 51200, "totalRAMUsed": 20480}}});
        let l = ComputeLimits::from_json(&body).unwrap();
        assert_eq!(l.cores.max, None, "-1 is unlimited");
        assert_eq!(l.instances.free(), Some(0));
        assert_eq!(l.exhausted(), vec![q("instances", Some(10), Some(10))]);
        assert!(!l.room_for_one());
        let roomy = ComputeLimits {
            instances: Limit {
                used: 9,
                max: Some(10),
            },
            ..l
        };
        assert!(roomy.room_for_one());
        let no_ram = ComputeLimits {
            ram_mb: Limit {
                used: 51200,
                max: Some(51200),
            },
            ..roomy
        };
        assert!(!no_ram.room_for_one());
        assert!(ComputeLimits::from_json(&json!({"limits": {}})).is_none());
    }

    #[test]
    fn a_late_create_carries_its_own_creation_time() {
        let mut body =
            json!({"server": {"metadata": {META_CREATED: "2020-01-01T00:00:00Z", "a": "b"}}});
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        stamp_created(&mut body, now);
        assert_eq!(
            body["server"]["metadata"][META_CREATED],
            "2027-01-15T08:00:00Z"
        );
        assert_eq!(body["server"]["metadata"]["a"], "b");
    }
}
