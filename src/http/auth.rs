//! Studio API authentication (spec §1): resolve the `X-Api-Key` to its channel, charge the
//! rate limiter, verify the signature and its window. The result, [`StudioAuth`], carries the
//! tenant (organization), bot and channel every handler is scoped to: identity comes from the
//! key, never from the body. Only Studio API channels' keys resolve: a connector channel's key
//! is refused exactly like an unknown one (see `Store::channel_auth_by_key`). Per-address
//! limits use the request's client address (`RequestCtx::client_ip`).
//!
//! Key lookups are cached in memory (they are on every chat turn). The cache is dropped
//! whenever the store's auth epoch moves (a rotate/revoke/delete, possibly by another process
//! such as the CLI); the epoch is polled once a second, so a revoked key stops working within
//! about a second.

use super::error::ApiError;
use super::ratelimit::RateLimiter;
use super::signature::{self, AuthFailure, KeyHeader};
use crate::store::{ChannelAuth, Store};
use hyper::HeaderMap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Which headers an endpoint accepts (spec §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bare key, or the signed pair (verified when a signature is present).
    Public,
    /// Signed pair only.
    Signed,
}

/// An authenticated Studio API caller.
#[derive(Debug, Clone)]
pub struct StudioAuth {
    pub org_id: String,
    pub bot_id: String,
    pub channel_id: String,
    pub channel: Arc<ChannelAuth>,
}

#[derive(Debug)]
pub struct Authenticator {
    store: Store,
    cache: RwLock<HashMap<String, Arc<ChannelAuth>>>,
    epoch: AtomicI64,
    pub key_limiter: RateLimiter,
    /// For requests whose key is not attributable to a channel (spec §1.5: per source IP).
    pub ip_limiter: RateLimiter,
    pub window_secs: i64,
    rate_per_key: u32,
}

/// Cached entries at most; beyond it the cache is cleared (cheap, and keys are few).
const CACHE_CAP: usize = 100_000;

impl Authenticator {
    pub fn new(store: Store, rate_per_key: u32, window_secs: i64) -> Arc<Self> {
        Arc::new(Authenticator {
            epoch: AtomicI64::new(store.auth_epoch().unwrap_or(0)),
            store,
            cache: RwLock::new(HashMap::new()),
            key_limiter: RateLimiter::new(rate_per_key),
            ip_limiter: RateLimiter::new(rate_per_key),
            window_secs,
            rate_per_key,
        })
    }

    /// Polls the store's auth epoch every second and drops the cache when it moved. Ends
    /// when the last other handle on the authenticator is gone.
    pub fn spawn_epoch_watch(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else { return };
                let store = this.store.clone();
                let Ok(Ok(epoch)) = tokio::task::spawn_blocking(move || store.auth_epoch()).await
                else {
                    continue;
                };
                if this.epoch.swap(epoch, Ordering::AcqRel) != epoch {
                    this.invalidate();
                }
            }
        });
    }

    pub fn invalidate(&self) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    async fn lookup(&self, key: &str) -> Result<Option<Arc<ChannelAuth>>, ApiError> {
        if let Some(hit) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return Ok(Some(Arc::clone(hit)));
        }
        let epoch_before = self.epoch.load(Ordering::Acquire);
        let store = self.store.clone();
        let k = key.to_string();
        let found = tokio::task::spawn_blocking(move || store.channel_auth_by_key(&k))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        let Some(found) = found else { return Ok(None) };
        let found = Arc::new(found);
        // Only cache what was read under the current epoch, so a concurrent invalidation
        // cannot be undone by a lookup that started before it.
        if self.epoch.load(Ordering::Acquire) == epoch_before {
            let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= CACHE_CAP {
                cache.clear();
            }
            cache.insert(key.to_string(), Arc::clone(&found));
        }
        Ok(Some(found))
    }

    /// Authenticates a Studio API request.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        client_ip: IpAddr,
        mode: Mode,
        now_secs: i64,
    ) -> Result<StudioAuth, ApiError> {
        let fail = |f: AuthFailure| ApiError::unauthorized(f.message());
        let key_value = headers
            .get("x-api-key")
            .map(|v| v.to_str().unwrap_or("\u{0}"));
        let Some(key_value) = key_value else {
            self.charge_ip(client_ip)?;
            return Err(fail(AuthFailure::MissingKey));
        };
        let parsed = match signature::parse_key_header(key_value) {
            Ok(p) => p,
            Err(f) => {
                self.charge_ip(client_ip)?;
                return Err(fail(f));
            }
        };
        let Some(channel) = self.lookup(parsed.key()).await? else {
            self.charge_ip(client_ip)?;
            return Err(fail(AuthFailure::UnknownKey));
        };
        // Charged as soon as the key is known, before the signature is checked, so a flood
        // of badly signed calls is capped too.
        if let Err(wait) = self.key_limiter.check(parsed.key()) {
            return Err(self.throttled(wait));
        }
        let sig = headers.get("x-api-signature").and_then(|v| v.to_str().ok());
        match (parsed, sig) {
            (KeyHeader::Bare(_), None) if mode == Mode::Public => {}
            (KeyHeader::Bare(_), None) => return Err(fail(AuthFailure::MissingSignature)),
            (KeyHeader::Bare(_), Some(_)) => return Err(fail(AuthFailure::MalformedKey)),
            (KeyHeader::Stamped { .. }, None) => return Err(fail(AuthFailure::MissingSignature)),
            (KeyHeader::Stamped { ts, raw, .. }, Some(sig)) => {
                signature::verify(channel.secret.as_bytes(), raw, sig).map_err(fail)?;
                signature::check_window(ts, now_secs, self.window_secs).map_err(fail)?;
            }
        }
        Ok(StudioAuth {
            org_id: channel.channel.organization_id.clone(),
            bot_id: channel.channel.bot_id.clone(),
            channel_id: channel.channel.id.clone(),
            channel,
        })
    }

    /// Charges the client's address (an IPv6 client per /64, see `admin::throttle::ip_key`).
    fn charge_ip(&self, client_ip: IpAddr) -> Result<(), ApiError> {
        self.ip_limiter
            .check(&crate::admin::throttle::ip_key(client_ip))
            .map_err(|w| self.throttled(w))
    }

    fn throttled(&self, wait: Duration) -> ApiError {
        ApiError::too_many_requests(
            format!(
                "rate limit exceeded ({} req/s per API key)",
                self.rate_per_key
            ),
            wait.as_secs_f64().ceil() as u64,
        )
    }
}
