//! The command line: `serve`, `config check`, `admin reset-password`,
//! `secrets rotate-key`, `secrets recover`.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::audit::{self, Event, Outcome};
use crate::config::{Config, ConfigArgs, Tls};
use crate::startup::{open_data_dir, Application};

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "A self-hosted platform panel for a Docker host"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the panel and API.
    Serve(ConfigArgs),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Administrator tools that work offline, against the data dir.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Key management for the sealed secrets, against the data dir (safe
    /// while berth runs: each step is one transaction).
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Re-encrypt every secret under a new data key, in one transaction;
    /// with `--master`, also replace the master key.
    RotateKey {
        #[command(flatten)]
        config: ConfigArgs,
        /// Also replace the master key (the old one no longer opens this data dir,
        /// nor copies of the database made from now on).
        #[arg(long)]
        master: bool,
        /// Also replace the root key and re-seal everything sealed under it
        /// (secrets, TOTP, ACME and certificate keys, DNS and notification
        /// secrets); API tokens must be issued again. berth must be stopped.
        #[arg(long)]
        root: bool,
        /// Where to write the new master key when it comes from BERTH_MASTER_KEY
        /// (a new file, mode 0600); a key file is replaced in place.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Restore access with the recovery key (read from standard input) after
    /// the master key is lost: a new master key is written.
    Recover {
        #[command(flatten)]
        config: ConfigArgs,
        /// Where to write the new master key when it comes from BERTH_MASTER_KEY.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective values.
    Check(ConfigArgs),
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Replace the admin password with a generated one-time password, printed
    /// once: it allows one thing only, choosing a new password. Ends every
    /// browser session.
    ResetPassword {
        #[command(flatten)]
        config: ConfigArgs,
        /// Also remove the TOTP second factor (for a lost device).
        #[arg(long)]
        disable_totp: bool,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(Config::load(&args)?).await,
        Command::Config {
            command: ConfigCommand::Check(args),
        } => config_check(&args),
        Command::Admin {
            command:
                AdminCommand::ResetPassword {
                    config,
                    disable_totp,
                },
        } => {
            let config = Config::load(&config)?;
            crate::telemetry::init(config.log_format);
            let password = reset_password(&config, disable_totp).await?;
            println!("New one-time password for the admin: {password}");
            println!("Log in with it; berth then asks for a new password before anything else.");
            Ok(())
        }
        Command::Secrets { command } => secrets(command).await,
    }
}

async fn secrets(command: SecretsCommand) -> anyhow::Result<()> {
    use crate::secrets::keyring;
    match command {
        SecretsCommand::RotateKey {
            config,
            master,
            root,
            out,
        } => {
            let config = Config::load(&config)?;
            crate::telemetry::init(config.log_format);
            let db = open_data_dir(&config).await?;
            // A running berth holds the root in memory and would go on
            // sealing with the old one.
            let _lock = if root {
                Some(crate::store::lock_data_dir(&config.data_dir)?)
            } else {
                None
            };
            let keys = keyring::open(&db, &config.master_key).await?;
            let swap = if master {
                Some(keyring::MasterSwap::prepare(
                    &config.master_key,
                    out.as_deref(),
                )?)
            } else {
                None
            };
            let done =
                crate::secrets::rotate_keys(&db, &keys, &config.master_key, swap, root).await?;
            audit::record(
                &db,
                Event::new("cli", None, "secrets.rotate_key", Outcome::Success).detail(
                    serde_json::json!({
                        "secrets": done.secrets, "master": master, "root": root,
                        "resealed": done.resealed,
                    }),
                ),
            )
            .await?;
            db.close().await;
            println!(
                "Re-encrypted {} secret(s) under a new data key.",
                done.secrets
            );
            if root {
                println!(
                    "New root key: {} other sealed value(s) re-sealed; API tokens must be issued again.",
                    done.resealed
                );
            }
            if let Some(path) = done.master {
                println!("The new master key is in {}.", path.display());
                if config.master_key == crate::config::MasterKeySource::Environment {
                    println!("Put its content in BERTH_MASTER_KEY before berth starts again.");
                }
            }
            Ok(())
        }
        SecretsCommand::Recover { config, out } => {
            let config = Config::load(&config)?;
            crate::telemetry::init(config.log_format);
            let mut identity = zeroize::Zeroizing::new(String::new());
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut identity)
                .context("Failed to read the recovery key from standard input")?;
            let db = open_data_dir(&config).await?;
            let path = keyring::recover(&db, &identity, &config.master_key, out.as_deref()).await?;
            audit::record(
                &db,
                Event::new("cli", None, "secrets.recover", Outcome::Success),
            )
            .await?;
            db.close().await;
            println!("Recovered: a new master key is in {}.", path.display());
            println!(
                "The recovery key still works; make a new one in the panel if it was exposed."
            );
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    crate::telemetry::init(config.log_format);
    let app = Application::build(config.clone()).await?;
    let _lock = crate::store::lock_data_dir(&config.data_dir)?;
    let handle = app.handle();
    let firewall = app.state.firewall.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        firewall.shutdown().await;
        tracing::info!("shutting down: finishing in-flight requests");
        handle.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    app.run_until_stopped().await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn config_check(args: &ConfigArgs) -> anyhow::Result<()> {
    let c = Config::load(args)?;
    let tls = match &c.tls {
        Tls::SelfSigned => "self-signed (generated in the data dir)".to_string(),
        Tls::Files { cert, key } => {
            for p in [cert, key] {
                std::fs::metadata(p).with_context(|| format!("Cannot read {}", p.display()))?;
            }
            format!("{} + {}", cert.display(), key.display())
        }
        Tls::Off => "off (plain HTTP)".to_string(),
    };
    if !c.site_dir.join("pkg").is_dir() {
        println!(
            "warning: no browser bundle in {}/pkg; the panel will not hydrate",
            c.site_dir.display()
        );
    }
    println!("data_dir       = {}", c.data_dir.display());
    println!("listen         = {}", c.listen);
    println!("tls            = {tls}");
    println!("site_dir       = {}", c.site_dir.display());
    println!(
        "trusted_proxies = [{}]",
        c.trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("session_idle   = {} min", c.session_idle.as_secs() / 60);
    println!(
        "session_absolute = {} h",
        c.session_absolute.as_secs() / 3600
    );
    println!("configuration OK");
    Ok(())
}

/// Sets a random password, bumps the session generation (ending every
/// session) and audits it. Returns the new password.
pub async fn reset_password(config: &Config, disable_totp: bool) -> anyhow::Result<String> {
    let db = open_data_dir(config).await?;
    let password = crate::crypto::random_hex(12);
    let hash = crate::auth::password::Passwords::default()
        .hash(password.clone())
        .await?;
    let now = crate::store::now();
    let updated = sqlx::query!(
        "UPDATE admin SET password_hash = ?, password_changed_at = ?, password_must_change = 1, \
         session_generation = session_generation + 1 WHERE id = 1",
        hash,
        now
    )
    .execute(&db)
    .await?
    .rows_affected();
    if updated == 0 {
        anyhow::bail!("no administrator exists yet: start berth and complete the setup wizard");
    }
    if disable_totp {
        crate::auth::account::disable(&db).await?;
    }
    audit::record(
        &db,
        Event::new("cli", None, "admin.reset_password", Outcome::Success)
            .detail(serde_json::json!({ "totp_disabled": disable_totp })),
    )
    .await?;
    db.close().await;
    Ok(password)
}
