//! [`PluginHost`]: load plugins (manifest and API checks, compile once, `InstancePre`) and run
//! calls, each in a fresh store with a memory limit, an epoch deadline, output caps and a
//! per-organization concurrency cap. Every failure is a [`PluginError`] plus a log line; no
//! plugin behaviour can take the host down.

use crate::bindings::v0_1::{app, connector, types};
use crate::error::{GuestError, PluginError, log};
use crate::kv::{KvScope, KvStore};
use crate::manifest::{Manifest, PluginKind, api_of_import};
use crate::outbound::{HostPattern, IpNet, OutboundHooks, OutboundPolicy};
use crate::state::{Settings, State};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};

/// Limits and services of the host. [`PluginHostConfig::new`] gives the documented defaults.
#[derive(Clone)]
pub struct PluginHostConfig {
    /// Where compiled components are cached (`<data>/plugins/cache`); `None` = no disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Linear memory per call (default 64 MiB).
    pub memory_limit: usize,
    /// Deadline of an `App()` call (default 10 s).
    pub app_timeout: Duration,
    /// Deadline of a webhook ingest (default 2 s).
    pub webhook_timeout: Duration,
    /// Deadline of a delivery (default 10 s).
    pub deliver_timeout: Duration,
    /// Largest JSON result / webhook answer a plugin may return (default 1 MiB).
    pub max_output_bytes: usize,
    /// Largest outbound HTTP response body a plugin may read (default 4 MiB).
    pub max_http_response_bytes: usize,
    /// Concurrent calls per organization (default 8).
    pub org_concurrency: usize,
    /// How long a call waits for one of its organization's slots before failing as busy
    /// (default 1 s).
    pub slot_wait: Duration,
    /// Instance slots of the pooling allocator (default 256).
    pub max_instances: u32,
    /// Addresses plugins may reach although private/loopback (default none; tests: 127.0.0.1).
    pub allow_private: Vec<IpNet>,
    pub kv: Arc<dyn KvStore>,
}

impl PluginHostConfig {
    pub fn new(kv: Arc<dyn KvStore>) -> Self {
        PluginHostConfig {
            cache_dir: None,
            memory_limit: 64 * 1024 * 1024,
            app_timeout: Duration::from_secs(10),
            webhook_timeout: Duration::from_secs(2),
            deliver_timeout: Duration::from_secs(10),
            max_output_bytes: 1024 * 1024,
            max_http_response_bytes: 4 * 1024 * 1024,
            org_concurrency: 8,
            slot_wait: Duration::from_secs(1),
            max_instances: 256,
            allow_private: Vec::new(),
            kv,
        }
    }
}

/// One organization's installation of a plugin: what it may reach and read.
#[derive(Debug, Clone, Default)]
pub struct Installation {
    pub org: String,
    /// Added to the manifest's `allowed_hosts`.
    pub allowed_hosts: Vec<String>,
    pub config: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, String>,
}

/// Where an `App()` call comes from (the organization is the installation's).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppContext {
    pub bot: String,
    pub participant: String,
    pub channel: String,
    pub flow: String,
    pub step: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChannelContext {
    pub bot: String,
    pub channel: String,
    /// The public URL of the channel's webhook.
    pub webhook_url: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Webhook {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    #[serde(with = "body_text")]
    pub body: Vec<u8>,
}

/// Webhook bodies in JSON files (`plugin test --webhook`) are text.
mod body_text {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(b))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Ok(String::deserialize(d)?.into_bytes())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    #[serde(with = "body_text")]
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundEvent {
    pub event_id: String,
    pub user_id: String,
    pub conversation: String,
    pub content_type: String,
    pub content: Json,
    pub metadata: Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestOutcome {
    /// Send this instead of `200 OK` (platform challenges, refusals).
    pub response: Option<HttpReply>,
    pub events: Vec<InboundEvent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BotMessage {
    pub content_type: String,
    pub content: Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryOutcome {
    pub platform_ids: Vec<String>,
}

enum Pre {
    App(app::CustomAppPre<State>),
    Channel(connector::ChannelConnectorPre<State>),
}

struct Loaded {
    manifest: Manifest,
    sha256: String,
    pre: Pre,
}

/// A plugin ready to run: compiled, linked, its manifest checked. Cheap to clone; share it
/// between all installations of the same plugin version.
#[derive(Clone)]
pub struct LoadedPlugin(Arc<Loaded>);

impl LoadedPlugin {
    pub fn manifest(&self) -> &Manifest {
        &self.0.manifest
    }
    /// Hex SHA-256 of the `.wasm`.
    pub fn sha256(&self) -> &str {
        &self.0.sha256
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LoadedPlugin({} {} {})",
            self.0.manifest.name, self.0.manifest.version, self.0.sha256
        )
    }
}

pub struct PluginHost {
    engine: Engine,
    linker: Linker<State>,
    config: PluginHostConfig,
    org_slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    compiled: Mutex<HashMap<String, Component>>,
}

impl PluginHost {
    pub fn new(config: PluginHostConfig) -> PluginHost {
        let engine = crate::runtime::engine(config.max_instances, config.memory_limit);
        crate::runtime::start_ticker(&engine);
        let linker = linker(&engine).expect("the plugin linker has no conflicting definitions");
        PluginHost {
            engine,
            linker,
            config,
            org_slots: Mutex::new(HashMap::new()),
            compiled: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &PluginHostConfig {
        &self.config
    }

    /// Check, compile (or take from the cache) and link a plugin.
    pub async fn load(&self, manifest: Manifest, wasm: &[u8]) -> Result<LoadedPlugin, PluginError> {
        manifest.validate().map_err(PluginError::Load)?;
        let sha = crate::sha256_hex(wasm);
        let cached = self
            .compiled
            .lock()
            .expect("compiled lock")
            .get(&sha)
            .cloned();
        let component = match cached {
            Some(c) => c,
            None => {
                let engine = self.engine.clone();
                let bytes = wasm.to_vec();
                let dir = self.config.cache_dir.clone();
                let c = tokio::task::spawn_blocking(move || {
                    crate::runtime::compile_cached(&engine, &bytes, dir.as_deref())
                })
                .await
                .map_err(|e| PluginError::Load(format!("compilation task failed: {e}")))?
                .map_err(PluginError::Load)?;
                self.compiled
                    .lock()
                    .expect("compiled lock")
                    .insert(sha.clone(), c.clone());
                c
            }
        };
        self.check_imports(&manifest, &component)?;
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            PluginError::Load(format!(
                "the component needs an import botyard does not provide: {e:#}"
            ))
        })?;
        let world_err = |e: wasmtime::Error| {
            PluginError::Load(format!(
                "the component is not a `{}` of {} (manifest kind `{}`): {e:#}",
                manifest.kind.world(),
                manifest.api,
                manifest.kind.as_str()
            ))
        };
        let pre = match manifest.kind {
            PluginKind::App => Pre::App(app::CustomAppPre::new(pre).map_err(world_err)?),
            PluginKind::Channel => {
                Pre::Channel(connector::ChannelConnectorPre::new(pre).map_err(world_err)?)
            }
        };
        Ok(LoadedPlugin(Arc::new(Loaded {
            manifest,
            sha256: sha,
            pre,
        })))
    }

    /// The API version the manifest states must be the one the component was built against,
    /// and the component may not ask for a filesystem or sockets.
    fn check_imports(&self, manifest: &Manifest, component: &Component) -> Result<(), PluginError> {
        for (name, _) in component.component_type().imports(&self.engine) {
            if let Some(api) = api_of_import(name) {
                crate::manifest::check_api(&api).map_err(PluginError::Load)?;
                if api != manifest.api {
                    return Err(PluginError::Load(format!(
                        "the manifest says `{}` but the component was built against `{api}`",
                        manifest.api
                    )));
                }
            } else if name.starts_with("wasi:filesystem") || name.starts_with("wasi:sockets") {
                return Err(PluginError::Load(format!(
                    "the component imports `{name}`: plugins get no filesystem and no sockets \
                     (use wasi:http for network access)"
                )));
            }
        }
        Ok(())
    }

    /// `App("name", args...)`: `Ok(data)` or the failure to report in-band (and `null`).
    pub async fn call_app(
        &self,
        plugin: &LoadedPlugin,
        install: &Installation,
        ctx: &AppContext,
        args: &Json,
    ) -> Result<Json, PluginError> {
        let Pre::App(pre) = &plugin.0.pre else {
            return Err(self.wrong_kind(plugin, PluginKind::App));
        };
        let timeout = self.config.app_timeout;
        let call_ctx = app::CallContext {
            org: install.org.clone(),
            bot: ctx.bot.clone(),
            participant: ctx.participant.clone(),
            channel: ctx.channel.clone(),
            flow: ctx.flow.clone(),
            step: ctx.step.clone(),
        };
        let args = args.to_string();
        let out = self
            .run(plugin, install, timeout, async |store| {
                let inst = pre.instantiate_async(&mut *store).await?;
                inst.call_call(&mut *store, &call_ctx, &args).await
            })
            .await?;
        if out.len() > self.config.max_output_bytes {
            return Err(self.bad_output(plugin, install, format!("result of {} bytes", out.len())));
        }
        serde_json::from_str(&out)
            .map_err(|e| self.bad_output(plugin, install, format!("result is not JSON: {e}")))
    }

    /// Verify and normalize one webhook request.
    pub async fn connector_ingest(
        &self,
        plugin: &LoadedPlugin,
        install: &Installation,
        ctx: &ChannelContext,
        webhook: &Webhook,
    ) -> Result<IngestOutcome, PluginError> {
        let Pre::Channel(pre) = &plugin.0.pre else {
            return Err(self.wrong_kind(plugin, PluginKind::Channel));
        };
        let cctx = channel_ctx(install, ctx);
        let request = connector::botyard::plugin::channel_types::Webhook {
            method: webhook.method.clone(),
            path: webhook.path.clone(),
            query: webhook.query.clone(),
            headers: webhook
                .headers
                .iter()
                .map(|(n, v)| types::Header {
                    name: n.clone(),
                    value: v.clone(),
                })
                .collect(),
            body: webhook.body.clone(),
        };
        let out = self
            .run(
                plugin,
                install,
                self.config.webhook_timeout,
                async |store| {
                    let inst = pre.instantiate_async(&mut *store).await?;
                    inst.call_ingest(&mut *store, &cctx, &request).await
                },
            )
            .await?;
        let mut size = out.response.as_ref().map(|r| r.body.len()).unwrap_or(0);
        let mut events = Vec::with_capacity(out.events.len());
        for e in out.events {
            size += e.content.len() + e.metadata.len();
            let parse = |what: &str, text: &str| {
                serde_json::from_str::<Json>(text).map_err(|err| {
                    self.bad_output(plugin, install, format!("event {what} is not JSON: {err}"))
                })
            };
            events.push(InboundEvent {
                content: parse("content", &e.content)?,
                metadata: parse("metadata", &e.metadata)?,
                event_id: e.event_id,
                user_id: e.user_id,
                conversation: e.conversation,
                content_type: e.content_type,
            });
        }
        if size > self.config.max_output_bytes || events.len() > 1000 {
            return Err(self.bad_output(
                plugin,
                install,
                format!("{} events, {size} bytes", events.len()),
            ));
        }
        let response = out.response.map(|r| HttpReply {
            status: r.status,
            headers: r.headers.into_iter().map(|h| (h.name, h.value)).collect(),
            body: r.body,
        });
        Ok(IngestOutcome { response, events })
    }

    /// Send one turn's bot messages to a conversation.
    pub async fn connector_deliver(
        &self,
        plugin: &LoadedPlugin,
        install: &Installation,
        ctx: &ChannelContext,
        conversation: &str,
        messages: &[BotMessage],
    ) -> Result<DeliveryOutcome, PluginError> {
        let Pre::Channel(pre) = &plugin.0.pre else {
            return Err(self.wrong_kind(plugin, PluginKind::Channel));
        };
        let cctx = channel_ctx(install, ctx);
        let msgs: Vec<_> = messages
            .iter()
            .map(|m| connector::botyard::plugin::channel_types::BotMessage {
                content_type: m.content_type.clone(),
                content: m.content.to_string(),
            })
            .collect();
        let out = self
            .run(
                plugin,
                install,
                self.config.deliver_timeout,
                async |store| {
                    let inst = pre.instantiate_async(&mut *store).await?;
                    inst.call_deliver(&mut *store, &cctx, conversation, &msgs)
                        .await
                },
            )
            .await?;
        Ok(DeliveryOutcome {
            platform_ids: out.platform_ids,
        })
    }

    /// One call in a fresh store: concurrency slot, limits, deadline, error classification.
    async fn run<R>(
        &self,
        plugin: &LoadedPlugin,
        install: &Installation,
        timeout: Duration,
        call: impl AsyncFnOnce(&mut Store<State>) -> wasmtime::Result<Result<R, types::PluginError>>,
    ) -> Result<R, PluginError> {
        let manifest = &plugin.0.manifest;
        let label = format!("{}/{}", install.org, manifest.name);
        let _slot = self.slot(&install.org, &label).await?;
        let mut store = self.store(plugin, install, timeout)?;
        let outcome =
            tokio::time::timeout(timeout + crate::runtime::TICK * 5, call(&mut store)).await;
        let data = store.data();
        let result = match outcome {
            Err(_elapsed) => Err(PluginError::Timeout(timeout)),
            Ok(Ok(Ok(r))) => Ok(r),
            Ok(Ok(Err(guest))) => Err(PluginError::Guest(guest_error(guest))),
            Ok(Err(_)) if data.limiter.hit => {
                Err(PluginError::MemoryLimit(data.limiter.memory_limit))
            }
            Ok(Err(_)) if data.timed_out => Err(PluginError::Timeout(timeout)),
            Ok(Err(e)) => {
                let text = format!("{e:#}");
                if text.contains("concurrent") || text.contains("pooling") {
                    Err(PluginError::Busy(format!(
                        "no free plugin instance slot: {text}"
                    )))
                } else {
                    Err(PluginError::Trap(
                        text.lines().next().unwrap_or("").to_string(),
                    ))
                }
            }
        };
        if let Err(e) = &result {
            let level = if matches!(e, PluginError::Guest(_)) {
                "info"
            } else {
                "warn"
            };
            log(level, &label, &format!("call failed: {e}"));
        }
        result
    }

    fn store(
        &self,
        plugin: &LoadedPlugin,
        install: &Installation,
        timeout: Duration,
    ) -> Result<Store<State>, PluginError> {
        let manifest = &plugin.0.manifest;
        let mut allowed = Vec::new();
        for h in manifest.allowed_hosts.iter().chain(&install.allowed_hosts) {
            allowed.push(HostPattern::parse(h).map_err(PluginError::Load)?);
        }
        let label = format!("{}/{}", install.org, manifest.name);
        let policy = OutboundPolicy {
            allowed,
            allow_private: self.config.allow_private.clone(),
            max_response_bytes: self.config.max_http_response_bytes,
            timeout,
            label,
        };
        let scope = KvScope {
            org: install.org.clone(),
            plugin: manifest.name.clone(),
        };
        let state = State::new(
            OutboundHooks {
                policy: Arc::new(policy),
            },
            self.config.memory_limit,
            self.config.kv.clone(),
            scope,
            Arc::new(settings(manifest, install)),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let deadline = Instant::now() + timeout;
        store.set_epoch_deadline(1);
        // Yield to tokio at every tick so a busy plugin never holds a worker thread, and stop
        // it once the wall-clock deadline has passed.
        store.epoch_deadline_callback(move |mut ctx| {
            if Instant::now() >= deadline {
                ctx.data_mut().timed_out = true;
                return Err(wasmtime::Error::msg("plugin deadline exceeded"));
            }
            Ok(UpdateDeadline::Yield(1))
        });
        Ok(store)
    }

    async fn slot(
        &self,
        org: &str,
        label: &str,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, PluginError> {
        let sem = {
            let mut slots = self.org_slots.lock().expect("org slots lock");
            slots
                .entry(org.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.config.org_concurrency)))
                .clone()
        };
        match tokio::time::timeout(self.config.slot_wait, sem.acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            _ => {
                let msg = format!(
                    "organization {org} already runs {} plugin calls",
                    self.config.org_concurrency
                );
                log("warn", label, &msg);
                Err(PluginError::Busy(msg))
            }
        }
    }

    fn wrong_kind(&self, plugin: &LoadedPlugin, wanted: PluginKind) -> PluginError {
        let m = &plugin.0.manifest;
        PluginError::WrongKind(format!(
            "plugin {} is a {} plugin, not a{} {} plugin",
            m.name,
            m.kind.as_str(),
            if wanted == PluginKind::App { "n" } else { "" },
            wanted.as_str()
        ))
    }

    fn bad_output(
        &self,
        plugin: &LoadedPlugin,
        install: &Installation,
        msg: String,
    ) -> PluginError {
        let e = PluginError::BadOutput(msg);
        log(
            "warn",
            &format!("{}/{}", install.org, plugin.0.manifest.name),
            &format!("{e}"),
        );
        e
    }

    /// Compiled components kept in memory (one per distinct `.wasm`).
    pub fn compiled_count(&self) -> usize {
        self.compiled.lock().expect("compiled lock").len()
    }
}

fn channel_ctx(
    install: &Installation,
    ctx: &ChannelContext,
) -> connector::botyard::plugin::channel_types::ChannelContext {
    connector::botyard::plugin::channel_types::ChannelContext {
        org: install.org.clone(),
        bot: ctx.bot.clone(),
        channel: ctx.channel.clone(),
        webhook_url: ctx.webhook_url.clone(),
    }
}

/// The values a plugin may read: declared names only, installation value else the default.
fn settings(manifest: &Manifest, install: &Installation) -> Settings {
    let mut s = Settings::default();
    for c in &manifest.config {
        if let Some(v) = install.config.get(&c.name).or(c.default.as_ref()) {
            s.config.insert(c.name.clone(), v.clone());
        }
    }
    for c in &manifest.secrets {
        if let Some(v) = install.secrets.get(&c.name) {
            s.secrets.insert(c.name.clone(), v.clone());
        }
    }
    s
}

fn guest_error(e: types::PluginError) -> GuestError {
    match e {
        types::PluginError::InvalidInput(m) => GuestError::InvalidInput(m),
        types::PluginError::Unauthorized(m) => GuestError::Unauthorized(m),
        types::PluginError::Config(m) => GuestError::Config(m),
        types::PluginError::Upstream(m) => GuestError::Upstream(m),
        types::PluginError::RateLimited(s) => GuestError::RateLimited(s),
        types::PluginError::Internal(m) => GuestError::Internal(m),
    }
}

fn linker(engine: &Engine) -> wasmtime::Result<Linker<State>> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::p2::bindings::cli;
    let mut linker = Linker::new(engine);
    // clocks, random, io, stdin/stdout/stderr: the interfaces of the wasi:http proxy world.
    wasmtime_wasi::p2::add_to_linker_proxy_interfaces_async(&mut linker)?;
    // Rust's std imports these; the context gives an empty environment and no arguments.
    cli::environment::add_to_linker::<State, WasiCli>(&mut linker, <State as WasiCliView>::cli)?;
    cli::exit::add_to_linker::<State, WasiCli>(&mut linker, <State as WasiCliView>::cli)?;
    // Rust's stdio asks whether it talks to a terminal (it never does here).
    cli::terminal_input::add_to_linker::<State, WasiCli>(&mut linker, <State as WasiCliView>::cli)?;
    cli::terminal_output::add_to_linker::<State, WasiCli>(
        &mut linker,
        <State as WasiCliView>::cli,
    )?;
    cli::terminal_stdin::add_to_linker::<State, WasiCli>(&mut linker, <State as WasiCliView>::cli)?;
    cli::terminal_stdout::add_to_linker::<State, WasiCli>(
        &mut linker,
        <State as WasiCliView>::cli,
    )?;
    cli::terminal_stderr::add_to_linker::<State, WasiCli>(
        &mut linker,
        <State as WasiCliView>::cli,
    )?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    app::CustomApp::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;
    Ok(linker)
}
