//! One module per page; `frame` is the authenticated layout around them.

mod account;
mod apps;
mod audit;
mod certificates;
mod containers;
mod dashboard;
mod domains;
mod firewall;
mod frame;
mod images;
mod login;
mod planned;
mod secrets;
mod setup;
mod stacks;
mod tokens;
mod volumes;
mod widgets;

pub use account::Account;
pub use apps::{AppPage, Apps};
pub use audit::AuditLog;
pub use certificates::{CertificatePage, CertificateSettings, Certificates, Notifications};
pub use containers::Containers;
pub use dashboard::Dashboard;
pub use domains::{DomainPage, Domains};
pub use firewall::{Firewall, FirewallWatch, PendingNotice};
pub use frame::{Auth, Frame};
pub use images::Images;
pub use login::Login;
pub use planned::{NotFound, Planned, CAPABILITIES};
pub use secrets::{AppSecrets, SecretGroupPage, SecretGroups, SecretKeys};
pub use setup::SetupWizard;
pub use stacks::Stacks;
pub use tokens::Tokens;
pub use volumes::{Networks, Volumes};
