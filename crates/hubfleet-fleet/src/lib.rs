//! hubfleet-fleet: many hubs from one git repository laid out as 2i2c's `infrastructure`
//! (`config/clusters/<cluster>/cluster.yaml` listing hubs and their values files), validated,
//! rendered, planned and deployed.
//!
//! - [`repo`]: the repository and its clusters; [`schema`]: the cluster schema (every hub,
//!   not only the first) and basehub's values schema, with file:line findings;
//! - [`hub`]: one hub's values, layered as helm layers them (chart defaults, the chart's
//!   `values.jsonnet`, then the listed files; maps merge, lists replace), checked with the
//!   strict loader of `hubfleet-config`;
//! - [`sops`] and [`secrets`]: sops files with the age backend;
//! - [`validate`](mod@validate): the whole fleet.

#![forbid(unsafe_code)]
// A `Finding` (file, line, key, message) is the error of the readers: built once per problem,
// off the hot path; boxing each would only add noise.
#![allow(clippy::result_large_err)]

mod error;
mod finding;
pub mod hub;
pub mod jsonnet;
pub mod repo;
pub mod schema;
pub mod secrets;
pub mod sops;
pub mod validate;

pub use error::FleetError;
pub use finding::{Finding, Kind};
pub use repo::{Cluster, HubEntry, Repo, Target};
pub use secrets::Keyring;
