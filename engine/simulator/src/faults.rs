//! Fault injection: failing creates, HTTP error bursts, 429s, slow answers, quotas, vanishing
//! servers, expired tokens and dropped SSH endpoints, switched on and off at run time.

use std::sync::Arc;
use std::time::Duration;

use super::shared::Shared;

/// The four services the simulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Keystone, under `/identity`.
    Identity,
    /// Nova, under `/compute`.
    Compute,
    /// Glance, under `/image`.
    Image,
    /// Neutron, under `/network`.
    Network,
    /// Cinder, under `/volume`.
    Volume,
}

impl Service {
    /// The service a request path belongs to, by its first segment.
    pub fn of_path(path: &str) -> Option<Service> {
        let first = path.trim_start_matches('/').split('/').next()?;
        match first {
            "identity" => Some(Service::Identity),
            "compute" => Some(Service::Compute),
            "image" => Some(Service::Image),
            "network" => Some(Service::Network),
            "volume" => Some(Service::Volume),
            _ => None,
        }
    }
}

/// Which requests a fault applies to. All set conditions must hold; `Scope::any()` matches
/// every request.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    service: Option<Service>,
    method: Option<String>,
    path_contains: Option<String>,
}

impl Scope {
    /// Every request, Keystone included.
    pub fn any() -> Scope {
        Scope::default()
    }
    /// Requests to one service.
    pub fn service(service: Service) -> Scope {
        Scope {
            service: Some(service),
            ..Scope::default()
        }
    }
    /// Only this HTTP method.
    pub fn method(mut self, method: &str) -> Scope {
        self.method = Some(method.to_ascii_uppercase());
        self
    }
    /// Only paths containing this fragment (e.g. `/servers`).
    pub fn path(mut self, fragment: &str) -> Scope {
        self.path_contains = Some(fragment.to_string());
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.service
            .is_none_or(|s| Service::of_path(path) == Some(s))
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|f| path.contains(f))
    }
}

#[derive(Debug, Clone)]
enum Action {
    Status(u16),
    RateLimit(Duration),
    Slow(Duration),
}

#[derive(Debug, Clone)]
struct Rule {
    scope: Scope,
    /// `None`: until cleared.
    remaining: Option<u32>,
    action: Action,
}

/// What the HTTP layer must do with one request.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    pub delay: Duration,
    /// Answer with this status instead of serving, with `Retry-After` seconds for 429.
    pub respond: Option<(u16, Option<u64>)>,
}

#[derive(Debug, Default)]
pub(crate) struct FaultState {
    rules: Vec<Rule>,
    create_error_share: f64,
    creates_seen: u64,
}

impl FaultState {
    pub fn on_request(&mut self, method: &str, path: &str) -> Verdict {
        let mut v = Verdict::default();
        for rule in &mut self.rules {
            if rule.remaining == Some(0) || !rule.scope.matches(method, path) {
                continue;
            }
            match rule.action {
                Action::Slow(d) => v.delay += d,
                Action::Status(_) | Action::RateLimit(_) if v.respond.is_some() => continue,
                Action::Status(s) => v.respond = Some((s, None)),
                Action::RateLimit(d) => v.respond = Some((429, Some(d.as_secs().max(1)))),
            }
            if let Some(n) = rule.remaining.as_mut() {
                *n -= 1;
            }
        }
        self.rules.retain(|r| r.remaining != Some(0));
        v
    }

    /// Whether the next create should end in ERROR. Spreads failures evenly (the k-th create
    /// fails when the running share crosses an integer), so a share of 0.5 fails exactly every
    /// second create and tests stay deterministic.
    pub fn next_create_fails(&mut self) -> bool {
        let share = self.create_error_share.clamp(0.0, 1.0);
        let k = self.creates_seen;
        self.creates_seen += 1;
        ((k + 1) as f64 * share).floor() > (k as f64 * share).floor()
    }
}

/// Run-time control over injected faults; get one from [`super::SimCloud::faults`].
/// Cloning is cheap; all clones drive the same simulator.
#[derive(Clone)]
pub struct FaultControl {
    pub(crate) shared: Arc<Shared>,
}

impl FaultControl {
    fn add(&self, scope: Scope, remaining: Option<u32>, action: Action) {
        self.shared.faults().rules.push(Rule {
            scope,
            remaining,
            action,
        });
    }

    /// The share (0.0..=1.0) of server creates that end in ERROR with Nova's
    /// "No valid host was found" fault instead of ACTIVE.
    pub fn set_create_error_share(&self, share: f64) {
        let mut f = self.shared.faults();
        f.create_error_share = share;
        f.creates_seen = 0;
    }

    /// The next `count` requests in `scope` answer `status` (e.g. 500 or 503) without effect.
    pub fn http_errors(&self, status: u16, count: u32, scope: Scope) {
        self.add(scope, Some(count), Action::Status(status));
    }

    /// The next `count` requests in `scope` answer 429 with `Retry-After` (whole seconds, at least 1).
    pub fn rate_limit(&self, count: u32, retry_after: Duration, scope: Scope) {
        self.add(scope, Some(count), Action::RateLimit(retry_after));
    }

    /// Requests in `scope` are answered `delay` late: the next `count`, or all while set when
    /// `count` is `None`.
    pub fn slow(&self, delay: Duration, count: Option<u32>, scope: Scope) {
        self.add(scope, count, Action::Slow(delay));
    }

    /// Nova's instance quota. Creates beyond it answer 403 with Nova's quota message.
    pub fn set_instance_quota(&self, instances: usize) {
        self.shared.store().instance_quota = instances;
    }

    /// The server disappears as if an operator deleted it: its ports, floating-IP association
    /// and SSH endpoint go away and the API answers 404. Returns false for an unknown id.
    pub fn vanish_server(&self, server_id: &str) -> bool {
        self.shared.remove_server_now(server_id)
    }

    /// Every token issued so far stops working (401) before its `expires_at`; clients must
    /// authenticate again.
    pub fn expire_tokens(&self) {
        self.shared.store().tokens.clear();
    }

    /// Cuts the server's SSH connections and stops its endpoint (connection refused from now
    /// on), as when a guest dies mid-job. Returns false when it had no endpoint.
    pub fn drop_ssh(&self, server_id: &str) -> bool {
        self.shared.drop_ssh(server_id)
    }

    /// Removes every request rule and the create error share.
    pub fn clear(&self) {
        let mut f = self.shared.faults();
        *f = FaultState::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_share_is_spread_evenly() {
        let mut f = FaultState {
            create_error_share: 0.5,
            ..FaultState::default()
        };
        let fails: Vec<bool> = (0..6).map(|_| f.next_create_fails()).collect();
        assert_eq!(fails, [false, true, false, true, false, true]);
        f.create_error_share = 0.0;
        assert!(!(0..10).any(|_| f.next_create_fails()));
    }

    #[test]
    fn counted_rules_run_out_and_scopes_filter() {
        let mut f = FaultState::default();
        f.rules.push(Rule {
            scope: Scope::service(Service::Compute).method("post"),
            remaining: Some(2),
            action: Action::Status(503),
        });
        assert!(
            f.on_request("GET", "/compute/v2.1/servers")
                .respond
                .is_none()
        );
        assert!(
            f.on_request("POST", "/network/v2.0/ports")
                .respond
                .is_none()
        );
        assert_eq!(
            f.on_request("POST", "/compute/v2.1/servers").respond,
            Some((503, None))
        );
        assert!(
            f.on_request("POST", "/compute/v2.1/servers")
                .respond
                .is_some()
        );
        assert!(
            f.on_request("POST", "/compute/v2.1/servers")
                .respond
                .is_none()
        );
    }
}
