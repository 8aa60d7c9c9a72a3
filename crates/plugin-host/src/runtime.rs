//! The wasmtime engine of the plugin host: configuration (component model, async, epoch
//! interruption, pooling allocator with an on-demand fallback), the epoch ticker thread, and
//! the on-disk cache of compiled components (`<cache_dir>/<sha256>-<engine hash>.cwasm`).

use crate::error::log;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances: the granularity of deadlines and of yielding to tokio.
pub const TICK: Duration = Duration::from_millis(10);

/// Build the engine. The pooling allocator reserves address space for `instances` slots up
/// front; where the kernel refuses that (small address spaces), fall back to on-demand
/// allocation rather than failing to start.
pub fn engine(instances: u32, memory_limit: usize) -> Engine {
    let mut config = base_config();
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        // A Rust wasip2 component is a handful of core instances (the program plus the
        // adapter shims), each with at most one memory and a few tables.
        .total_core_instances(instances * 8)
        .total_memories(instances * 2)
        .total_tables(instances * 8)
        .total_stacks(instances)
        .max_memory_size(memory_limit)
        .linear_memory_keep_resident(256 * 1024);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&config) {
        Ok(e) => e,
        Err(err) => {
            log(
                "warn",
                "host",
                &format!("pooling allocator unavailable ({err}); using on-demand allocation"),
            );
            Engine::new(&base_config()).expect("wasmtime engine with the default allocator")
        }
    }
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config
}

/// Advances the engine's epoch every [`TICK`] until the engine is dropped.
pub fn start_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("plugin-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .expect("spawn the epoch ticker thread");
}

/// A stable name for what this engine can run, so artifacts of another wasmtime version or
/// configuration are never deserialized.
pub fn engine_hash(engine: &Engine) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

pub fn cache_path(dir: &Path, wasm_sha: &str, engine_hash: &str) -> PathBuf {
    dir.join(format!("{wasm_sha}-{engine_hash}.cwasm"))
}

/// Load from the cache, else compile and store. A cache entry that does not deserialize
/// (truncated, other build) is replaced.
pub fn compile_cached(
    engine: &Engine,
    wasm: &[u8],
    cache: Option<&Path>,
) -> Result<Component, String> {
    let sha = crate::sha256_hex(wasm);
    let path = cache.map(|dir| cache_path(dir, &sha, &engine_hash(engine)));
    if let Some(path) = &path
        && path.exists()
    {
        // SAFETY: the file is an artifact this host serialized into its own data
        // directory, keyed by the engine's compatibility hash.
        match unsafe { Component::deserialize_file(engine, path) } {
            Ok(c) => return Ok(c),
            Err(e) => log(
                "warn",
                "host",
                &format!("ignoring bad cache entry {}: {e}", path.display()),
            ),
        }
    }
    let component = Component::new(engine, wasm)
        .map_err(|e| format!("invalid WebAssembly component: {e:#}"))?;
    if let Some(path) = &path {
        match component.serialize() {
            Ok(bytes) => {
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                let written = std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
                    .and_then(|_| std::fs::write(&tmp, &bytes))
                    .and_then(|_| std::fs::rename(&tmp, path));
                if let Err(e) = written {
                    let _ = std::fs::remove_file(&tmp);
                    log(
                        "warn",
                        "host",
                        &format!("cannot write {}: {e}", path.display()),
                    );
                }
            }
            Err(e) => log("warn", "host", &format!("cannot serialize component: {e}")),
        }
    }
    Ok(component)
}
