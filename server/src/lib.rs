//! berth: one binary that turns a Linux host with Docker into a self-hosted
//! platform, managed from a browser panel or the REST API it is built on.
//!
//! Data flows one way: `http` (routes) → capability services → `store` and
//! adapters. Each capability lives in its own folder.

#![recursion_limit = "512"]

pub mod apps;
pub mod audit;
pub mod auth;
pub mod backups;
pub mod certificates;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod fault;
pub mod firewall;
pub mod http;
pub mod notify;
pub mod outbound;
pub mod proxy;
pub mod secrets;
pub mod settings;
pub mod setup;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod tokens;
pub mod ui;
