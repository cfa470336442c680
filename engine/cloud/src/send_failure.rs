//! Why a request that got no answer failed.
//!
//! osauth's session sends our API requests, and it turns reqwest's error into its own with only
//! reqwest's top line ("error sending request for url (…)") and no source. The part an operator
//! needs (connection refused, no such host, an unknown certificate issuer, a timeout) would be
//! gone, and so would the difference between a timeout and any other broken connection, which
//! the recipes' retry rules key on.
//!
//! Two observations made outside osauth keep it. The HTTP client carries a connector layer that
//! notes how a connection attempt ended, into a slot that the transport opens (task-locally)
//! around each send: connection set-up is where most causes arise, and the connect timeout shows
//! as an attempt given up before it ended. And a send that failed no sooner than the client's
//! request timeout was ended by that timeout, since nothing else waits that long. A connection
//! that breaks after it was made leaves only osauth's text.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tower_layer::Layer;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

tokio::task_local! {
    /// The connection notes of the request the current task is sending.
    static NOTES: Arc<Mutex<Notes>>;
}

/// How the last connection attempt made for one request ended.
#[derive(Debug, Default)]
struct Notes {
    last: Option<Ending>,
}

#[derive(Debug)]
enum Ending {
    Made,
    Failed {
        text: String,
        timed_out: bool,
        untrusted: bool,
    },
    /// Dropped before it ended: reqwest's connect timeout is a layer outside ours.
    GivenUp,
}

fn note(change: impl FnOnce(&mut Notes)) {
    // Outside a send of ours (Keystone, version discovery, a connection finished in the
    // background for the pool) there is no slot, and nothing to note.
    let _ = NOTES.try_with(|notes| {
        if let Ok(mut notes) = notes.lock() {
            change(&mut notes);
        }
    });
}

/// An error and its sources, one after the other.
pub(crate) fn describe_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    // An HTTP client's error may quote the request's URL, credentials and all.
    executor_foundation::url_userinfo::scrub_urls(&text).into_owned()
}

fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// The connector layer to give the HTTP client.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NoteConnectFailures;

impl<S> Layer<S> for NoteConnectFailures {
    type Service = NotingConnector<S>;

    fn layer(&self, inner: S) -> NotingConnector<S> {
        NotingConnector(inner)
    }
}

/// reqwest's connector, with its failures noted.
#[derive(Debug, Clone)]
pub(crate) struct NotingConnector<S>(S);

/// Notes an attempt dropped before it ended.
struct Unfinished(bool);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if self.0 {
            note(|n| n.last = Some(Ending::GivenUp));
        }
    }
}

impl<S, Target> Service<Target> for NotingConnector<S>
where
    S: Service<Target, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, target: Target) -> Self::Future {
        let connecting = self.0.call(target);
        Box::pin(async move {
            let mut unfinished = Unfinished(true);
            let outcome = connecting.await;
            unfinished.0 = false;
            let ending = match &outcome {
                Ok(_) => Ending::Made,
                Err(e) => Ending::Failed {
                    text: describe_chain(e.as_ref()),
                    timed_out: is_timeout(e.as_ref()),
                    untrusted: crate::tls_trust::is_untrusted_certificate(e.as_ref()),
                },
            };
            note(|n| n.last = Some(ending));
            outcome
        })
    }
}

/// What is known of a send once it is over.
#[derive(Debug)]
pub(crate) struct Observed {
    notes: Notes,
    took: Duration,
}

/// Runs `send` with a slot for its connection notes.
pub(crate) async fn observe<F: Future>(send: F) -> (F::Output, Observed) {
    let notes = Arc::new(Mutex::new(Notes::default()));
    let started = Instant::now();
    let outcome = NOTES.scope(notes.clone(), send).await;
    let took = started.elapsed();
    let notes = notes
        .lock()
        .map(|mut n| std::mem::take(&mut *n))
        .unwrap_or_default();
    (outcome, Observed { notes, took })
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NoAnswer {
    /// The request timeout ended it.
    TimedOut(Duration),
    /// No connection within the connect timeout.
    ConnectTimedOut(Duration),
    /// The connection could not be made: the cause, and whether it was a timeout of the
    /// system's own.
    ConnectFailed { cause: String, timed_out: bool },
    /// The TLS handshake failed on the cloud's certificate: configuration, not the network.
    Untrusted { cause: String },
    /// Something broke after the connection was made; osauth's text is all there is.
    Broken(String),
}

impl NoAnswer {
    /// Whether to treat it as a timeout rather than a broken connection.
    pub(crate) fn is_timeout(&self) -> bool {
        match self {
            NoAnswer::TimedOut(_) | NoAnswer::ConnectTimedOut(_) => true,
            NoAnswer::ConnectFailed { timed_out, .. } => *timed_out,
            NoAnswer::Broken(_) | NoAnswer::Untrusted { .. } => false,
        }
    }
}

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoAnswer::TimedOut(after) => write!(
                f,
                "timed out: no answer within {}",
                humantime::format_duration(*after)
            ),
            NoAnswer::ConnectTimedOut(after) => write!(
                f,
                "timed out: no connection within {}",
                humantime::format_duration(*after)
            ),
            NoAnswer::ConnectFailed { cause, .. } => write!(f, "connection failed: {cause}"),
            NoAnswer::Untrusted { cause } => {
                write!(f, "{}: {cause}", crate::tls_trust::TRUST_HINT)
            }
            NoAnswer::Broken(text) => write!(f, "request failed: {text}"),
        }
    }
}

impl Observed {
    /// Why the send that failed with `error` (osauth's text of it) got no answer, given the
    /// client's timeouts.
    pub(crate) fn no_answer(
        self,
        error: String,
        request_timeout: Duration,
        connect_timeout: Duration,
    ) -> NoAnswer {
        if self.took >= request_timeout {
            return NoAnswer::TimedOut(request_timeout);
        }
        match self.notes.last {
            Some(Ending::Failed {
                text,
                untrusted: true,
                ..
            }) => NoAnswer::Untrusted { cause: text },
            Some(Ending::Failed {
                text, timed_out, ..
            }) => NoAnswer::ConnectFailed {
                cause: text,
                timed_out,
            },
            Some(Ending::GivenUp) => NoAnswer::ConnectTimedOut(connect_timeout),
            Some(Ending::Made) | None => NoAnswer::Broken(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Service;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    #[test]
    fn a_described_cause_names_no_credentials_of_a_url() {
        let cause = std::io::Error::other("error sending request for url (http://u:pw@a/v3)");
        assert_eq!(
            describe_chain(&cause),
            "error sending request for url (http://a/v3)"
        );
    }

    const REQUEST_TIMEOUT: Duration = Duration::from_millis(400);
    const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

    /// A session like the transport's (our layer, both timeouts) that sends to `url`.
    async fn session(url: &str) -> osauth::Session {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .connector_layer(NoteConnectFailures)
            .build()
            .unwrap();
        osauth::Session::new_with_client(client, osauth::NoAuth::new(url).unwrap())
            .await
            .unwrap()
    }

    async fn no_answer(url: &str) -> NoAnswer {
        let session = session(url).await;
        let request = session.get(Service::Compute, ["servers"]);
        let (outcome, observed) = observe(request.send_unchecked()).await;
        let error = outcome.expect_err("no answer");
        assert_eq!(error.kind(), osauth::ErrorKind::ProtocolError, "{error}");
        observed.no_answer(error.to_string(), REQUEST_TIMEOUT, CONNECT_TIMEOUT)
    }

    #[tokio::test]
    async fn a_refused_connection_is_named_although_osauth_drops_the_cause() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let why = no_answer(&format!("http://127.0.0.1:{port}/compute/v2.1")).await;
        let text = why.to_string();
        assert!(matches!(why, NoAnswer::ConnectFailed { .. }), "{why:?}");
        assert!(!why.is_timeout());
        assert!(text.to_lowercase().contains("connection refused"), "{text}");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_a_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(socket);
        });
        let why = no_answer(&format!("http://127.0.0.1:{port}/compute/v2.1")).await;
        assert_eq!(why, NoAnswer::TimedOut(REQUEST_TIMEOUT));
        assert!(why.is_timeout());
        assert_eq!(why.to_string(), "timed out: no answer within 400ms");
        held.abort();
    }

    #[tokio::test]
    async fn a_connection_dropped_after_the_request_is_broken_not_timed_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
        });
        let why = no_answer(&format!("http://127.0.0.1:{port}/compute/v2.1")).await;
        assert!(matches!(why, NoAnswer::Broken(_)), "{why:?}");
        assert!(!why.is_timeout());
        assert!(why.to_string().contains("/compute/v2.1/servers"), "{why}");
    }

    #[test]
    fn an_attempt_given_up_is_the_connect_timeout_unless_the_request_timeout_passed() {
        let observed = |last, took| Observed {
            notes: Notes { last },
            took,
        };
        let early = Duration::from_millis(300);
        assert_eq!(
            observed(Some(Ending::GivenUp), early).no_answer(
                String::new(),
                REQUEST_TIMEOUT,
                CONNECT_TIMEOUT
            ),
            NoAnswer::ConnectTimedOut(CONNECT_TIMEOUT)
        );
        assert_eq!(
            observed(Some(Ending::GivenUp), REQUEST_TIMEOUT).no_answer(
                String::new(),
                REQUEST_TIMEOUT,
                CONNECT_TIMEOUT
            ),
            NoAnswer::TimedOut(REQUEST_TIMEOUT)
        );
        assert_eq!(
            observed(Some(Ending::Made), early).no_answer(
                "osauth's text".into(),
                REQUEST_TIMEOUT,
                CONNECT_TIMEOUT
            ),
            NoAnswer::Broken("osauth's text".into())
        );
    }

    #[tokio::test]
    async fn outside_a_send_nothing_is_noted() {
        // Keystone's and discovery's connections go through the same layer.
        note(|n| n.last = Some(Ending::GivenUp));
        let (_, observed) = observe(async {}).await;
        assert!(observed.notes.last.is_none());
    }
}
