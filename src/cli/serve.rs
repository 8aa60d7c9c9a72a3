//! `botyard serve` (the server: store, engine, HTTP, background work, graceful shutdown) and
//! `botyard bench` (a load benchmark against a self-started or running server).

use super::Cli;
use crate::engine::{Engine, EngineConfig};
use crate::http::auth::Authenticator;
use crate::http::ratelimit::RateSpec;
use crate::http::server::ConnLimits;
use crate::http::webhook::{StudioWebhookSink, WebhookDispatcher};
use crate::http::{AnonLimits, AppState, HttpConfig};
use crate::outbound::{Cidr, Outbound, OutboundPolicy};
use crate::store::setup::SetupOutcome;
use crate::store::uploads::UploadQuota;
use crate::store::{Durability, setup};
use clap::Args;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

mod bench;
mod limits;
mod logs;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "BOTYARD_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// `normal` (survives a crash or SIGKILL) or `full` (also survives power loss; slower).
    #[arg(long, env = "BOTYARD_DURABILITY", default_value = "normal")]
    pub durability: Durability,
    /// Studio API requests per second per API key (0 = unlimited).
    #[arg(long, env = "BOTYARD_RATE_LIMIT", default_value_t = 50)]
    pub rate_limit: u32,
    /// Accepted clock distance of signed Studio API requests, in seconds.
    #[arg(long, env = "BOTYARD_SIGNATURE_WINDOW", default_value_t = 300)]
    pub signature_window: i64,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "BOTYARD_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// Addresses or networks that bots' `HTTP()` calls and webhooks may reach although they
    /// are loopback/private/link-local (comma-separated, e.g. `127.0.0.1,10.0.0.0/8`).
    #[arg(long, env = "BOTYARD_OUTBOUND_ALLOW", value_delimiter = ',')]
    pub outbound_allow: Vec<String>,
    /// Worker threads of the async runtime (default: one per core).
    #[arg(long, env = "BOTYARD_WORKERS")]
    pub workers: Option<usize>,
    #[command(flatten)]
    pub turns: limits::TurnArgs,
    // ---- client addresses and password hashing (login throttling, issue 14 item 7) ----
    /// A reverse proxy (address or network, repeatable) whose `X-Forwarded-For` and
    /// `X-Forwarded-Proto` give the client's address and scheme. From any other peer those
    /// headers are ignored: the TCP peer is the client. Default: none.
    #[arg(
        long = "trusted-proxy",
        env = "BOTYARD_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,
    /// Password hashes and checks (argon2id, ~19 MiB each) run at once, at most
    /// (default: half the cores, at least 1).
    #[arg(long, env = "BOTYARD_ARGON2_THREADS")]
    pub argon2_threads: Option<usize>,
    /// Password checks that may wait for a free thread; beyond it a login is answered 503
    /// with `Retry-After` at once.
    #[arg(long, env = "BOTYARD_ARGON2_QUEUE", default_value_t = 8)]
    pub argon2_queue: usize,

    // ---- Hostile clients: connection caps and deadlines, uploads, anonymous chat. ----
    /// Connections served at once; new ones beyond it are closed at accept.
    #[arg(long, env = "BOTYARD_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Connections served at once from one client IP (an IPv6 client: its /64), the TCP peer;
    /// new ones beyond it are closed at accept. Behind a reverse proxy, raise it.
    #[arg(long, env = "BOTYARD_MAX_CONNECTIONS_PER_IP", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_ip: u32,
    /// Seconds from accept to a complete request head (a connection that sends nothing, or
    /// only an HTTP/2 preface, is closed); on a kept-alive connection, from the first byte
    /// of the next request.
    #[arg(long, env = "BOTYARD_HEAD_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub head_timeout: u64,
    /// Seconds a kept-alive connection (HTTP/1.1 or HTTP/2) may wait with no request in
    /// flight before it is closed.
    #[arg(long, env = "BOTYARD_IDLE_TIMEOUT", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
    /// Seconds a request body may send nothing before the request is cut with 408.
    #[arg(long, env = "BOTYARD_BODY_IDLE_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_idle_timeout: u64,
    /// Bytes of uploaded files one OCS chat session may store (413 beyond).
    #[arg(long, env = "BOTYARD_UPLOAD_QUOTA_SESSION", default_value_t = 100 * 1024 * 1024)]
    pub upload_quota_session: u64,
    /// Bytes of uploaded files one organization may store (413 beyond).
    #[arg(long, env = "BOTYARD_UPLOAD_QUOTA_ORG", default_value_t = 1024 * 1024 * 1024)]
    pub upload_quota_org: u64,
    /// Anonymous OCS chat requests (no valid API key: widget start, message, polls, upload)
    /// per client IP, as `N/SECONDS` (`0/1` = unlimited); 429 with Retry-After beyond.
    #[arg(long, env = "BOTYARD_ANON_CHAT_RATE", default_value = "1200/60")]
    pub anon_chat_rate: RateSpec,
    /// Anonymous OCS chat uploads per client IP, as `N/SECONDS` (`0/1` = unlimited); 429 with
    /// Retry-After beyond.
    #[arg(long, env = "BOTYARD_ANON_UPLOAD_RATE", default_value = "30/600")]
    pub anon_upload_rate: RateSpec,
}

impl ServeArgs {
    /// The HTTP layer's settings from the flags.
    fn http_config(&self) -> anyhow::Result<HttpConfig> {
        if self.max_connections_per_ip > self.max_connections {
            anyhow::bail!(
                "--max-connections-per-ip ({}) must not be above --max-connections ({})",
                self.max_connections_per_ip,
                self.max_connections
            );
        }
        Ok(HttpConfig {
            body_limit: self.body_limit,
            rate_per_key: self.rate_limit,
            signature_window: self.signature_window,
            conn: ConnLimits {
                max_connections: self.max_connections as usize,
                max_per_ip: self.max_connections_per_ip as usize,
                head_timeout: Duration::from_secs(self.head_timeout),
                idle_timeout: Duration::from_secs(self.idle_timeout),
            },
            body_idle_timeout: Duration::from_secs(self.body_idle_timeout),
            upload_quota: UploadQuota {
                per_session: self.upload_quota_session,
                per_org: self.upload_quota_org,
            },
            anon_chat_rate: self.anon_chat_rate,
            anon_upload_rate: self.anon_upload_rate,
            trusted_proxies: trusted_proxies(self)?,
        })
    }
}

/// `--trusted-proxy` values, parsed.
fn trusted_proxies(args: &ServeArgs) -> anyhow::Result<Vec<Cidr>> {
    args.trusted_proxies
        .iter()
        .filter(|a| !a.trim().is_empty())
        .map(|a| {
            a.parse::<Cidr>()
                .map_err(|e| anyhow::anyhow!("--trusted-proxy: {e}"))
        })
        .collect()
}

pub use bench::BenchArgs;

/// Raise this process's open-file limit to its hard limit: `--max-connections` (10,000 by
/// default) connections need as many descriptors, and the usual soft limit is 1,024.
pub(crate) fn raise_open_file_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

pub fn serve(cli: &Cli, args: &ServeArgs) -> ExitCode {
    init_logging();
    raise_open_file_limit();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all().thread_name("botyard");
    if let Some(n) = args.workers {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            logs::flush();
            return ExitCode::FAILURE;
        }
    };
    let code = match rt.block_on(run_server(&cli.location(), args, cli.json)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    };
    logs::flush();
    code
}

async fn run_server(
    at: &crate::store::Location,
    args: &ServeArgs,
    json: bool,
) -> anyhow::Result<()> {
    let data = at.data_dir.as_path();
    let config = args.http_config()?;
    let mut allow = Vec::new();
    for a in args.outbound_allow.iter().filter(|a| !a.trim().is_empty()) {
        allow.push(
            a.parse::<Cidr>()
                .map_err(|e| anyhow::anyhow!("--outbound-allow: {e}"))?,
        );
    }
    let passwords = crate::secrets::PasswordPool::new(
        args.argon2_threads
            .unwrap_or_else(crate::secrets::PasswordPool::default_threads),
        args.argon2_queue,
    )?;
    let addr: SocketAddr = tokio::net::lookup_host(&args.addr)
        .await
        .map_err(|e| anyhow::anyhow!("--addr {}: {e}", args.addr))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("--addr {}: no address", args.addr))?;

    let (at, durability) = (at.clone(), args.durability);
    let (store, outcome) =
        tokio::task::spawn_blocking(move || setup::ensure(&at, durability)).await??;

    let handle = tokio::runtime::Handle::current();
    let outbound = Arc::new(Outbound::new(
        OutboundPolicy {
            allow,
            ..OutboundPolicy::default()
        },
        Some(handle.clone()),
    ));
    let webhooks = WebhookDispatcher::new(Arc::clone(&outbound), handle);
    let plugin_allow = args
        .outbound_allow
        .iter()
        .filter(|a| !a.trim().is_empty())
        .map(|a| botyard_plugins::outbound::IpNet::parse(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--outbound-allow: {e}"))?;
    let plugins = crate::plugins::PluginRuntime::with_limits(
        store.clone(),
        data,
        plugin_allow,
        args.turns.channel_limits(),
    );
    let engine = Engine::new(
        store.clone(),
        EngineConfig {
            outbound: Some(Arc::clone(&outbound)),
            apps: Some(plugins.clone()),
            sink: Some(Arc::new(crate::plugins::channels::PluginSink {
                runtime: plugins.clone(),
                next: Some(Arc::new(StudioWebhookSink(Arc::clone(&webhooks)))),
            })),
            limits: args.turns.limits(),
        },
    );
    plugins.set_engine(engine.clone());
    let auth = Authenticator::new(store.clone(), args.rate_limit, args.signature_window);
    auth.spawn_epoch_watch();
    let ocs = crate::ocs::Ocs::new(engine.clone(), Some(plugins.clone()))
        .map_err(|e| anyhow::anyhow!("the OCS service could not start: {e}"))?;
    let state = Arc::new(AppState {
        anon: AnonLimits::new(&config),
        config,
        engine: engine.clone(),
        auth,
        outbound,
        webhooks: Arc::clone(&webhooks),
        plugins: Some(plugins.clone()),
        passwords,
        ocs: Arc::clone(&ocs),
    });

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    if outcome.created {
        print_first_run(&outcome, local, json);
    }
    // On a shared (PostgreSQL) store: count the live nodes for rate-limit shares.
    let heartbeat = crate::cluster::start(&store);
    let background = engine.start_background();
    let plugin_workers = plugins.start_workers();
    // OCS: re-queue chat tasks left by a previous process, start its sweeps.
    ocs.start_background();
    // The parseable line tests and scripts wait for.
    eprintln!("listening on http://{local}");
    crate::http::admin::announce_setup(store.clone(), local).await;
    tracing::info!(addr = %local, data = %data.display(), store = %store.path().display(), "botyard {} serving", env!("CARGO_PKG_VERSION"));

    crate::http::server::run(listener, state, shutdown_signal()).await;

    // In-flight requests are done; stop background work, deliver queued webhooks, then let
    // the last store handle go (the writer commits what is queued and closes the file).
    drop(background);
    drop(heartbeat);
    if store.dialect() == crate::store::db::Dialect::Postgres {
        // A parseable line for `botyard bench --database` (round trips per turn).
        eprintln!(
            "database round trips: {}",
            crate::store::db::pg_round_trips()
        );
    }
    drop(plugin_workers);
    webhooks.drain(Duration::from_secs(5)).await;
    // The server dropped its state; the OCS service's last handle goes here, and the
    // plugins let go of the engine (a cycle: the engine routes `App()` and sends through
    // them), so the last store handle can go.
    drop(ocs);
    plugins.detach_engine();
    drop(plugins);
    drop(engine);
    drop(store);
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}

/// The credentials of a fresh setup, shown once on stdout.
fn print_first_run(o: &SetupOutcome, addr: SocketAddr, json: bool) {
    if json {
        if let Ok(s) = serde_json::to_string(o) {
            println!("{s}");
        }
        return;
    }
    let key = o
        .studio
        .as_ref()
        .and_then(|s| s.api_key.clone())
        .unwrap_or_default();
    let secret = o
        .studio
        .as_ref()
        .and_then(|s| s.api_secret.clone())
        .unwrap_or_default();
    let channel = o
        .studio
        .as_ref()
        .map(|s| s.channel_id.clone())
        .unwrap_or_default();
    let ocs = o
        .ocs
        .as_ref()
        .and_then(|s| s.api_key.clone())
        .unwrap_or_default();
    let bot = o
        .bot
        .as_ref()
        .map(|b| format!("{} ({})", b.name, b.id))
        .unwrap_or_default();
    println!(
        r#"
botyard is set up in {data}. These secrets are shown only once: keep them.

  organization   {org} ({org_id})
  demo bot       {bot}
  Studio API     channel {channel}
    API key      {key}
    API secret   {secret}
  OCS API key    {ocs}

Chat with the demo bot (public mode, the key alone):

  curl -s http://{addr}/v1/api/chat -H 'Content-Type: application/json' \
    -H 'X-Api-Key: {key}' \
    -d '{{"client":{{"user_id":"me"}},"payload":{{"content_type":"text","content":{{"text":"hello"}}}}}}'

Signed mode (bot management calls need it):

  TS=$(date +%s); SIG=$(printf '%s' "{key}|$TS" | openssl dgst -sha256 -hmac '{secret}' | sed 's/^.* //')
  curl -s http://{addr}/v1/api/bot -H "X-Api-Key: {key}|$TS" -H "X-Api-Signature: sha256=$SIG"
"#,
        data = o.data_dir,
        org = o.organization.name,
        org_id = o.organization.id,
    );
}

/// Logs on stderr (batched, see `logs`). `BOTYARD_LOG` = `error|warn|info|debug|trace|off` (default `info`).
pub(crate) fn init_logging() {
    use tracing::level_filters::LevelFilter;
    let level = match std::env::var("BOTYARD_LOG")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "off" => LevelFilter::OFF,
        "error" => LevelFilter::ERROR,
        "warn" => LevelFilter::WARN,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        _ => LevelFilter::INFO,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_writer(logs::BufferedStderr)
        .with_max_level(level)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}

pub fn bench(cli: &Cli, args: &BenchArgs) -> ExitCode {
    bench::run(cli, args)
}
