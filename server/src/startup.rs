//! Building and running the application. `Application::build` does every
//! fallible start-up step (data dir, migrations, keys, TLS, binding the port)
//! before anything is served, and exposes the bound address so tests can use
//! port 0 and never wait for a server to come up.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use axum_server::Handle;
use sqlx::SqlitePool;
use tower_sessions::session_store::ExpiredDeletion;
use tower_sessions_sqlx_store::SqliteStore;

use crate::auth::password::Passwords;
use crate::auth::throttle::LoginThrottle;
use crate::config::Config;
use crate::crypto::Keys;
use crate::setup::SetupGate;
use crate::tokens::TokenSigner;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: SqlitePool,
    pub apps: Arc<crate::apps::Apps>,
    pub secrets: Arc<crate::secrets::Secrets>,
    pub proxy: Arc<crate::proxy::Proxy>,
    pub certificates: Arc<crate::certificates::Certificates>,
    pub notifier: Arc<crate::notify::Notifier>,
    pub firewall: Arc<crate::firewall::Firewall>,
    pub backups: Arc<crate::backups::Backups>,
    pub config: Arc<Config>,
    pub keys: Arc<Keys>,
    pub passwords: Arc<Passwords>,
    pub throttle: Arc<LoginThrottle>,
    pub setup: Arc<SetupGate>,
    pub tokens: Arc<TokenSigner>,
}

pub struct Application {
    addr: SocketAddr,
    tls: Option<RustlsConfig>,
    listener: std::net::TcpListener,
    router: axum::Router,
    handle: Handle,
    connections: Arc<crate::http::connections::Connections>,
    pub state: AppState,
}

/// Creates the data dir (0700) if needed and opens the store in it.
pub async fn open_data_dir(config: &Config) -> anyhow::Result<SqlitePool> {
    let dir = &config.data_dir;
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("Failed to create the data dir {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("Failed to restrict {}", dir.display()))?;
    }
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("Cannot read the data dir {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{:o}", mode & 0o777),
            "the data dir is readable by other users; `chmod 700` it"
        );
    }
    crate::store::open(&config.db_path()).await
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        // One process-wide TLS provider; ignore "already installed" in tests.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let db = open_data_dir(&config).await?;
        let keys = Arc::new(crate::secrets::keyring::open(&db, &config.master_key).await?);
        let secrets = Arc::new(crate::secrets::Secrets::new(
            db.clone(),
            keys.clone(),
            config.master_key.clone(),
        ));
        let setup = SetupGate::prepare(&db, &config.data_dir).await?;

        let sessions = SqliteStore::new(db.clone());
        sessions
            .migrate()
            .await
            .context("Failed to prepare the session table")?;
        tokio::spawn(delete_expired_sessions(sessions.clone()));

        let tls_files = crate::tls::ensure_certificate(&config)?;

        let engine = crate::apps::engine::Engine::connect(config.docker_host.as_deref())?;
        let apps = Arc::new(crate::apps::Apps::new(
            db.clone(),
            engine,
            config.bind_roots.clone(),
            secrets.clone(),
        ));
        // Follows Docker's events for the life of the process; resumes applies
        // a crash interrupted.
        tokio::spawn(apps.clone().watch());

        let proxy = Arc::new(crate::proxy::Proxy::new(
            db.clone(),
            apps.clone(),
            config.proxy.clone(),
            &config.data_dir,
            config.trusted_proxies.clone(),
        ));
        proxy.listen();
        if let Err(e) = proxy.rebuild().await {
            tracing::error!(error = %e, "the proxy configuration could not be applied");
        }
        // Re-resolves routes whenever containers change.
        tokio::spawn(proxy.clone().follow());

        // The admin listener serves the panel domain's certificate once berth
        // has one, and the configured (or self-signed) one otherwise.
        let tls = match tls_files {
            Some((cert, key)) => Some(RustlsConfig::from_config(crate::tls::panel_config(
                &cert,
                &key,
                config.tls == crate::config::Tls::SelfSigned,
                proxy.shared.certs.clone(),
            )?)),
            None => None,
        };

        let notifier = Arc::new(crate::notify::Notifier::new(db.clone(), keys.clone()));
        let certificates = Arc::new(crate::certificates::Certificates::new(
            db.clone(),
            keys.clone(),
            proxy.clone(),
            notifier.clone(),
            config.certificates.clone(),
            config.data_dir.clone(),
        ));
        certificates.apply_flags().await?;
        // Installs the stored certificates, then orders, renews and probes
        // for the life of the process.
        tokio::spawn(certificates.clone().run());

        // Bound before the firewall is set up: the lockout guard keeps the
        // port actually bound open.
        let listener = std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("Failed to listen on {}", config.listen))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(crate::http::connections::Connections::default());
        let firewall = Arc::new(crate::firewall::Firewall::new(
            db.clone(),
            apps.clone(),
            notifier.clone(),
            connections.clone(),
            crate::firewall::FirewallSettings {
                netns: config.firewall.netns.clone(),
                confirm_seconds: config.firewall.confirm_seconds,
                panel_port: addr.port(),
            },
        ));
        // Rolls back an apply nobody confirmed, loads the confirmed rules,
        // and keeps them loaded.
        tokio::spawn(firewall.clone().run());

        let backups = Arc::new(crate::backups::Backups::new(
            db.clone(),
            keys.clone(),
            notifier.clone(),
            apps.clone(),
            config.data_dir.clone(),
            config.file.clone(),
        ));
        // What a killed berth left running is failed before anything is
        // served; cleaning its leftovers, then scheduled runs and drills (a
        // start missed while down runs once now) go on in the background.
        let interrupted = backups.interrupted().await?;
        tokio::spawn(backups.clone().run(interrupted));

        let state = AppState {
            backups,
            firewall,
            apps,
            secrets,
            proxy,
            certificates,
            notifier,
            db,
            tokens: Arc::new(TokenSigner::new(&keys)),
            keys,
            passwords: Arc::new(Passwords::default()),
            throttle: Arc::new(LoginThrottle::default()),
            setup: Arc::new(setup),
            config: Arc::new(config.clone()),
        };
        let router = crate::http::router(state.clone(), sessions);

        Ok(Application {
            connections,
            addr,
            tls,
            listener,
            router,
            handle: Handle::new(),
            state,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL for clients on this host.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let host = if self.addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            self.addr.ip().to_string()
        };
        match self.addr {
            SocketAddr::V6(_) if !self.addr.ip().is_unspecified() => {
                format!("{scheme}://[{host}]:{}", self.addr.port())
            }
            _ => format!("{scheme}://{host}:{}", self.addr.port()),
        }
    }

    /// Calling `graceful_shutdown` on this handle stops the server after
    /// in-flight requests finish.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        tracing::info!(url = %self.url(), "berth is listening");
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        // Connections are numbered (under TLS, if any) so a firewall
        // confirmation can tell a new one from one opened before the apply.
        let numbered = crate::http::connections::Numbered {
            connections: self.connections.clone(),
        };
        match self.tls {
            Some(tls) => {
                axum_server::from_tcp_rustls(self.listener, tls)
                    .map(|rustls| rustls.acceptor(numbered))
                    .handle(self.handle)
                    .serve(service)
                    .await
            }
            None => {
                axum_server::from_tcp(self.listener)
                    .acceptor(numbered)
                    .handle(self.handle)
                    .serve(service)
                    .await
            }
        }
        .context("server error")
    }
}

async fn delete_expired_sessions(store: SqliteStore) {
    let mut interval = tokio::time::interval(Duration::from_secs(600));
    loop {
        interval.tick().await;
        if let Err(e) = store.delete_expired().await {
            tracing::warn!(error = %e, "failed to delete expired sessions");
        }
    }
}
