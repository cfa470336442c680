//! The OpenStack back end.
//!
//! `Cloud` (backend.rs) is the small set of operations the steps need; `OpenStack` implements
//! it over HTTP, with our own Keystone authentication (keystone.rs), endpoints, retries and
//! error mapping (transport.rs) around an osauth session that sends the requests
//! (os_session.rs, send_failure.rs), and the runner host's cache of name lookups
//! (lookup_cache.rs). The orchestration on top
//! (create without duplicates, wait for ACTIVE, address choice, floating IPs, key pairs, console
//! log, cleanup, reaper listing) is written against the trait.

pub mod address;
mod answer_body;
pub mod backend;
pub mod cleanup;
pub mod console;
pub mod create;
pub mod credentials;
pub mod error;
pub mod fault_class;
pub mod floating_ip;
pub mod hold;
pub mod keypair;
pub mod keystone;
pub mod lookup_cache;
pub mod openstack;
mod os_session;
pub mod ownership;
pub mod quota;
pub mod reaper;
pub mod request_meter;
mod send_failure;
pub mod server;
pub mod server_spec;
pub mod settings;
mod tls_trust;
pub mod transport;
pub mod wait_active;

pub use address::{AddressChoice, AddressPolicy, IpFamily, choose_address};
pub use backend::{Cloud, FloatingIp, Named, Network, Port};
pub use cleanup::{CleanupPolicy, CleanupReport, CleanupTarget, cleanup};
pub use console::{HostKeys, parse_host_keys, wait_for_console_line};
pub use create::{CreateOptions, Created, create_server, exact_name_filter, find_owned_by_name};
pub use error::{CloudError, CloudErrorKind};
pub use fault_class::fault_class;
pub use floating_ip::attach_floating_ip;
pub use keypair::{import_job_keypair, job_keypair_name};
pub use openstack::OpenStack;
pub use ownership::Ownership;
pub use quota::{ComputeLimits, QuotaWait, create_server_waiting_for_quota};
pub use server::{Address, AddressKind, Server};
pub use server_spec::{BootVolume, NetworkAttachment, ServerSpec};
pub use settings::CloudSettings;
pub use wait_active::{WaitPolicy, wait_active};
