//! The daemon's Prometheus metrics, and the small HTTP endpoint a Prometheus server scrapes.
//!
//! The text format is the `prometheus-client` crate's; only the HTTP framing around it is
//! ours, because a whole web framework for one GET would land in the production binary.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use executor_driver::interpreter::StepFailure;
use executor_foundation::ErrorClass;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VmLabels {
    pub state: String,
    pub key: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// `reason` is an error class (`boot_error`, `quota`, `timeout`, ...) for a failed `provision`,
/// else what failed (`health_check`, `delete`, ...); `step` is the `provision` step that failed;
/// `fault` is Nova's fault class for `boot_error`. Unused labels are empty, which Prometheus
/// treats as absent.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub reason: String,
    pub step: String,
    pub fault: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub service: String,
    /// The HTTP status, or `none` when no answer came.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: String,
    pub outcome: String,
}

fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 14))
}

pub struct Metrics {
    registry: Registry,
    pub vms: Family<VmLabels, Gauge>,
    pub claims: Family<ResultLabels, Counter>,
    pub failures: Family<FailureLabels, Counter>,
    pub time_to_ready: Histogram,
    pub stage_seconds: Family<StageLabels, Histogram, fn() -> Histogram>,
    pub api_requests: Family<ApiLabels, Counter>,
    /// The series of `vms` set last, so that a state no VM is in any more reads 0.
    shown: Mutex<Vec<VmLabels>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let vms = Family::<VmLabels, Gauge>::default();
        let claims = Family::<ResultLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let time_to_ready = seconds_histogram();
        let stage_seconds =
            Family::<StageLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                seconds_histogram,
            );
        let api_requests = Family::<ApiLabels, Counter>::default();
        registry.register(
            "executor_pool_vms",
            "VMs of the pool by state (booting, idle, checking) and pool key",
            vms.clone(),
        );
        registry.register(
            "executor_pool_claims",
            "Claims by result: hit (a warm VM, confirmed), miss (none ready), dead (a VM failed its re-check), abandoned (the job did not confirm), fallback (a job that booted its own VM told us so)",
            claims.clone(),
        );
        registry.register(
            "executor_pool_failures",
            "VMs that could not be made or kept, by reason",
            failures.clone(),
        );
        registry.register(
            "executor_pool_time_to_ready_seconds",
            "From the start of provision to a ready, SSH-verified VM",
            time_to_ready.clone(),
        );
        registry.register(
            "executor_stage_duration_seconds",
            "gitlab-runner stages as the stage processes reported them",
            stage_seconds.clone(),
        );
        registry.register(
            "executor_pool_api_requests",
            "OpenStack API requests this process sent (its own and its provision runs'), by service and HTTP status",
            api_requests.clone(),
        );
        Metrics {
            registry,
            vms,
            claims,
            failures,
            time_to_ready,
            stage_seconds,
            api_requests,
            shown: Mutex::new(vec![]),
        }
    }
}

impl Metrics {
    /// Sets the VM gauges to `counts`, zeroing the series no VM is in any more.
    pub fn set_vms(&self, counts: &[(VmLabels, i64)]) {
        let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        for old in shown.iter() {
            self.vms.get_or_create(old).set(0);
        }
        shown.clear();
        for (labels, n) in counts {
            self.vms.get_or_create(labels).set(*n);
            shown.push(labels.clone());
        }
    }

    /// A failure outside `provision`: `health_check`, `claim_metadata`, `delete`, ...
    pub fn failure(&self, reason: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                reason: reason.into(),
                ..FailureLabels::default()
            })
            .inc();
    }

    /// A `provision` run that did not make a ready VM.
    pub fn provision_failure(&self, failed: Option<&StepFailure>) {
        let labels = match failed {
            // The variables did not evaluate, or the run was cancelled.
            None => FailureLabels {
                reason: "provision".into(),
                ..FailureLabels::default()
            },
            Some(f) => FailureLabels {
                reason: f.class.name().into(),
                step: f.step.clone(),
                fault: if f.class == ErrorClass::BootError {
                    executor_cloud::fault_class(&f.message).into()
                } else {
                    String::new()
                },
            },
        };
        self.failures.get_or_create(&labels).inc();
    }

    pub fn api_request(&self, service: &str, status: Option<u16>) {
        self.api_requests
            .get_or_create(&ApiLabels {
                service: service.into(),
                status: status.map_or_else(|| "none".into(), |s| s.to_string()),
            })
            .inc();
    }

    pub fn claim(&self, result: &str) {
        self.claims
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `GET /metrics` (any path, in fact) on `listener` until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: std::sync::Arc<Metrics>,
    stop: CancellationToken,
) {
    loop {
        let (mut conn, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(_) => continue,
            },
            _ = stop.cancelled() => return,
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            // The request itself does not matter; read its head so the client sees a clean reply.
            let mut head = vec![0u8; 8192];
            let mut seen = 0;
            while seen < head.len() {
                match tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    conn.read(&mut head[seen..]),
                )
                .await
                {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => seen += n,
                }
                if head[..seen].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let body = metrics.text();
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}
