//! What osauth's `Session` needs from us to send our API requests: an auth type and service
//! types, both thin adapters over what the transport already knows.
//!
//! The session is worth having for its request builder and `send_unchecked`, which hands back
//! every answer as it came (status, `Retry-After`, request id). Its own identity types and
//! version discovery are not: a stage process would log in again instead of adopting the token
//! an earlier stage saved, and would discover every service's versions anew, four GETs a job.
//! So the token header and the endpoints come from our `KeystoneAuth` and from the roots the
//! transport resolved (the compute API it discovered once), and every service tells osauth it
//! cannot be discovered, which makes the session take those roots as they are.
//!
//! osauth calls `refresh` when it builds a session and never again on its own (a 401 comes back
//! from `send_unchecked` like any answer). A forced renewal there would throw the adopted token
//! away and cost every stage process a login, so `refresh` asks Keystone only when there is no
//! usable token; the transport forces a new one itself after a 401.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use osauth::services::ServiceType;
use osauth::{AuthType, EndpointFilters, Error, ErrorKind};
use reqwest::{Client, RequestBuilder, Url};

use super::keystone::KeystoneAuth;
use super::transport::Service;

impl ServiceType for Service {
    fn catalog_type(&self) -> &'static str {
        match self {
            Service::Compute => "compute",
            Service::Network => "network",
            Service::Image => "image",
            Service::Volume => "block-storage",
        }
    }

    fn version_discovery_supported(&self) -> bool {
        false
    }
}

/// The API root of each service, as the transport resolved it before its first request there.
/// osauth asks once per service and session, and keeps the answer.
#[derive(Debug, Default)]
pub(crate) struct Roots(RwLock<HashMap<&'static str, Url>>);

impl Roots {
    pub(crate) fn set(&self, service: Service, root: &Url) {
        let key = service.catalog_type();
        let known = self
            .0
            .read()
            .ok()
            .is_some_and(|roots| roots.get(key) == Some(root));
        if !known && let Ok(mut roots) = self.0.write() {
            roots.insert(key, root.clone());
        }
    }

    fn get(&self, catalog_type: &str) -> Option<Url> {
        self.0.read().ok()?.get(catalog_type).cloned()
    }
}

/// Our Keystone token and resolved roots, as an osauth auth type. `Debug` shows no secret:
/// neither part's does.
#[derive(Debug, Clone)]
pub(crate) struct SessionAuth {
    keystone: Arc<KeystoneAuth>,
    roots: Arc<Roots>,
}

impl SessionAuth {
    pub(crate) fn new(keystone: Arc<KeystoneAuth>, roots: Arc<Roots>) -> SessionAuth {
        SessionAuth { keystone, roots }
    }
}

#[async_trait]
impl AuthType for SessionAuth {
    async fn authenticate(
        &self,
        client: &Client,
        request: RequestBuilder,
    ) -> Result<RequestBuilder, Error> {
        let token = self.keystone.token_header(client).await?;
        Ok(request.header("x-auth-token", token))
    }

    async fn get_endpoint(
        &self,
        _client: &Client,
        service_type: &str,
        _filters: &EndpointFilters,
    ) -> Result<Url, Error> {
        // Interface and region were applied when the root was picked from the catalog.
        self.roots.get(service_type).ok_or_else(|| {
            Error::new(
                ErrorKind::EndpointNotFound,
                format!("no {service_type} API was resolved before the request"),
            )
        })
    }

    async fn refresh(&self, client: &Client) -> Result<(), Error> {
        self.keystone.authenticate(client).await
    }
}
