//! `kiln-server`: Kiln's console server (web UI, REST API, cluster state, tasks).

// Leptos view types of the whole app are deep.
#![recursion_limit = "256"]

mod access;
mod api;
mod audit;
mod auth;
mod cluster;
mod config;
mod db;
mod failpoint;
mod ha;
mod https;
mod labs;
mod pki;
mod state;
mod tasks;
mod ui;
mod vms;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::{header, HeaderValue};
use clap::Parser;
use kiln_node_client::ClusterIdentity;
use leptos::config::LeptosOptions;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{session_store::ExpiredDeletion, Expiry, SessionManagerLayer};
use tower_sessions_sqlx_store::SqliteStore;

use auth::ratelimit::{LoginLimiter, LoginLimits};
use auth::session::{SessionPolicy, COOKIE_NAME};
use cluster::{ChangeSignal, NodeClients, NodeRegistry};
use config::{Cli, Command, JoinTokenArgs, RunArgs};
use db::Db;
use pki::ServerPki;
use state::{AppState, Inner};
use tasks::TaskManager;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn,tower_sessions=warn".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Run(args) => run(args).await,
        Command::JoinToken(args) => join_token(args).await,
        Command::Routes => print_routes(),
    }
}

async fn open_db(data_dir: &Path) -> anyhow::Result<Db> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    Ok(Db::open(&data_dir.join("kiln.db")).await?)
}

/// Create `root@kiln` on first start, with `KILN_ADMIN_PASSWORD` or a generated password that
/// is printed once.
async fn ensure_admin(db: &Db) -> anyhow::Result<()> {
    if db.user(auth::privilege::ROOT).await?.is_some() {
        return Ok(());
    }
    let (password, generated) = match std::env::var("KILN_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, false),
        _ => (hex::encode(rand::random::<[u8; 12]>()), true),
    };
    let pw = password.clone();
    let hash = tokio::task::spawn_blocking(move || auth::password::hash_password(&pw)).await??;
    db.create_user(auth::privilege::ROOT, &hash).await?;
    if generated {
        // Printed once, on the terminal only (never into the log).
        println!("\nCreated the administrator {}; its password is: {password}\n(shown only now; set KILN_ADMIN_PASSWORD before the first start to choose it)\n", auth::privilege::ROOT);
    } else {
        tracing::info!(
            "created the administrator {} with the password from KILN_ADMIN_PASSWORD",
            auth::privilege::ROOT
        );
    }
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let db = open_db(&args.data_dir).await?;
    let aborted = db
        .abort_running_tasks("interrupted: kiln-server restarted", db::unix_now())
        .await?;
    if aborted > 0 {
        tracing::warn!("marked {aborted} interrupted task(s) as failed");
    }
    ensure_admin(&db).await?;
    let access = access::AccessStore::load(&db)
        .await
        .context("cannot load users, roles and permissions")?;
    let pki = ServerPki::load_or_create(&args.data_dir.join("pki"), &args.tls_sans)
        .context("cannot set up the cluster PKI")?;
    let identity = ClusterIdentity {
        ca_pem: pki.ca.cert_pem().to_owned(),
        cert_pem: pki.client.cert_pem.clone(),
        key_pem: pki.client.key_pem.clone(),
    };
    let tls = https::tls_config(&pki.https)?;

    let session_policy = SessionPolicy {
        idle: Duration::from_secs(args.session_idle_secs),
        absolute: Duration::from_secs(args.session_max_secs),
    };
    let store = SqliteStore::new(db.pool().clone());
    store
        .migrate()
        .await
        .context("cannot prepare the session table")?;
    tokio::spawn(
        store
            .clone()
            .continuously_delete_expired(Duration::from_secs(60)),
    );
    let sessions = SessionManagerLayer::new(store.clone())
        .with_name(COOKIE_NAME)
        .with_secure(true)
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(
            args.session_idle_secs as i64,
        )));

    let leptos = LeptosOptions::builder()
        .output_name(option_env!("LEPTOS_OUTPUT_NAME").unwrap_or("kiln"))
        .site_root(args.site_root.display().to_string())
        .site_pkg_dir("pkg")
        .site_addr(args.listen)
        .build();
    if !args.site_root.join("pkg").exists() {
        tracing::warn!(
            "web UI assets not found under {}/pkg; build them with `make build` (the API works without them)",
            args.site_root.display()
        );
    }

    let changes = Arc::new(ChangeSignal::default());
    let state = AppState(Arc::new(Inner {
        tasks: TaskManager::new(db.clone(), changes.clone()),
        db,
        access,
        ca: pki.ca,
        // A heartbeat request may take most of a period, never longer than the offline timeout.
        clients: NodeClients::new(
            identity,
            args.heartbeat()
                .max(Duration::from_millis(900))
                .min(args.node_timeout()),
        ),
        vm_locks: vms::VmLocks::default(),
        lab_locks: labs::LabLocks::default(),
        reconciler: vms::reconcile::Reconciler::default(),
        ha: ha::manager::HaManager::default(),
        placement: tokio::sync::Mutex::new(()),
        memory_overcommit: args.memory_overcommit,
        nodes: NodeRegistry::new(args.node_timeout(), args.lease_policy()?),
        changes,
        tfa_challenges: access::tfa::Challenges::default(),
        login_limiter: LoginLimiter::new(LoginLimits::default()),
        login_failure_delay: Duration::from_millis(args.login_failure_delay_ms),
        session_policy,
        sessions: store,
        cluster_name: args.cluster_name.clone(),
        leptos,
    }));

    let app = api::router()
        .merge(ui::router(&state))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::middleware::authenticate,
        ))
        .layer(sessions)
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(state.clone());

    tokio::spawn(cluster::heartbeat::run(state.clone(), args.heartbeat()));
    tokio::spawn(labs::schedule::run(state.clone(), args.lab_check()));

    let shutdown = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        "kiln-server listening on https://{addr} (cluster CA sha256 {})",
        hex::encode(state.ca.fingerprint())
    );
    https::serve(listener, tls, app, shutdown).await;
    tracing::info!("shutting down");
    state.db.pool().close().await;
    Ok(())
}

/// Watches SIGINT and SIGTERM from now on — before the server listens, so a signal sent as
/// soon as the port answers is not lost — and completes on either.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!("cannot watch SIGINT/SIGTERM ({e}); stop the server with SIGKILL");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// `kiln-server routes`: the route table with each route's required privileges, as JSON.
fn print_routes() -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&api::routes::table())?);
    Ok(())
}

async fn join_token(args: JoinTokenArgs) -> anyhow::Result<()> {
    let db = open_db(&args.data_dir).await?;
    let pki = ServerPki::load_or_create(&args.data_dir.join("pki"), &[])
        .context("cannot read the cluster PKI; has kiln-server run once in this data directory?")?;
    let (token, _) = api::join::create_join_token(
        &db,
        pki.ca.fingerprint(),
        auth::privilege::ROOT,
        args.ttl_secs,
    )
    .await?;
    println!("{token}");
    Ok(())
}
