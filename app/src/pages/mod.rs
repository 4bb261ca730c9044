//! One module per page; `frame` is the authenticated layout around them.

mod account;
mod audit;
mod dashboard;
mod frame;
mod login;
mod planned;
mod setup;
mod tokens;
mod widgets;

pub use account::Account;
pub use audit::AuditLog;
pub use dashboard::Dashboard;
pub use frame::{Auth, Frame};
pub use login::Login;
pub use planned::{NotFound, Planned, CAPABILITIES};
pub use setup::SetupWizard;
pub use tokens::Tokens;
