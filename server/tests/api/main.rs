//! Integration tests: berth started on port 0 with a fresh data dir per test,
//! driven over HTTP.

mod account;
mod acme_rig;
mod apps;
mod audit;
mod auth;
mod backups;
mod backups_offhost;
mod certificates;
mod cli;
mod conventions;
mod crash;
mod docker;
mod firewall;
mod helpers;
mod nginx;
mod offhost_rig;
mod pg_image;
mod pg_rig;
mod ports;
mod proxy;
mod secrets;
mod setup;
mod tls;
mod tokens;
