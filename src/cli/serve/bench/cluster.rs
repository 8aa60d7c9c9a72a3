//! `botyard bench --database URL --nodes N`: the hello turn on PostgreSQL, over N botyard
//! nodes this bench starts on one database (the load spread connection by connection,
//! round-robin, as a load balancer would).
//!
//! Reported: turns/s, p50/p99, errors, CPU per turn of the botyard nodes and of the machine's
//! PostgreSQL processes (every process named `postgres`: with a server on another machine this
//! reads 0), and database round trips per turn: each node prints its count of round trips
//! when it stops; divided by every turn the nodes served (warm-up and hello runs; setup runs in
//! its own process and is not counted). The database should be empty: the bench runs `setup`
//! on it.

use super::{
    BenchArgs, Fresh, ServerProc, chat_body, chat_spec, cpu_seconds, fresh_setup, key_header,
    load_figures, machine, round2,
};
use crate::http::loadgen::{self, LoadResult};
use hyper::Method;
use serde_json::{Value as Json, json};
use std::time::{Duration, Instant};

/// utime + stime of every process named `postgres` on this machine, in seconds.
fn postgres_cpu() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let mut total = 0.0;
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "postgres" {
            total += cpu_seconds(pid).unwrap_or(0.0);
        }
    }
    total
}

pub(super) fn run(url: &str, args: &BenchArgs) -> anyhow::Result<Json> {
    let exe = std::env::current_exe()?;
    let Fresh {
        dir, _cleanup, key, ..
    } = fresh_setup(&exe, "botyard-bench-pg", &["--database", url])?;
    anyhow::ensure!(
        !key.is_empty(),
        "setup printed no Studio API key (is the database empty?)"
    );

    // Each node its own data dir holding copies of the keys (its node id is its own).
    let extra = vec!["--database".to_string(), url.to_string()];
    let mut nodes = Vec::new();
    for i in 0..args.nodes {
        let own = dir.join(format!("node{i}"));
        std::fs::create_dir_all(&own)?;
        for key in ["secret.key", "ocs-token.key"] {
            if dir.join(key).exists() {
                std::fs::copy(dir.join(key), own.join(key))?;
            }
        }
        nodes.push(ServerProc::spawn_with(&exe, &own, args, &extra)?);
    }
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for (i, a) in addrs.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match rt.block_on(loadgen::request_once(
                *a,
                Method::POST,
                "/v1/api/chat",
                &key_header(&key),
                chat_body("cold", i, 0),
            )) {
                Ok((200, _)) => break,
                Ok((s, b)) => {
                    anyhow::bail!("node {i}: first chat {s}: {}", String::from_utf8_lossy(&b))
                }
                Err(e) if Instant::now() > deadline => anyhow::bail!("node {i}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
    let spec = |tag: &str, duration: Duration| {
        let mut s = chat_spec(addrs[0], &key, args.connections, duration, tag, 0);
        s.also = addrs[1..].to_vec();
        s
    };
    let mut served = addrs.len() as u64;
    let warm = loadgen::run(spec("warm", Duration::from_millis(500)));
    served += warm.ok;
    let pids: Vec<u32> = nodes.iter().map(|n| n.pid()).collect();
    let botyard_cpu = || pids.iter().filter_map(|p| cpu_seconds(*p)).sum::<f64>();
    let mut runs: Vec<Json> = (0..args.runs)
        .map(|i| {
            let (b0, p0) = (botyard_cpu(), postgres_cpu());
            let r: LoadResult = loadgen::run(spec(&format!("hello{i}"), args.duration));
            let (b1, p1) = (botyard_cpu(), postgres_cpu());
            served += r.ok;
            let per_turn = |c: f64| (r.ok > 0).then(|| round2(c * 1e6 / r.ok as f64));
            let mut out = load_figures(&r);
            out["botyard_cpu_us_per_turn"] = json!(per_turn(b1 - b0));
            out["postgres_cpu_us_per_turn"] = json!(per_turn(p1 - p0));
            out
        })
        .collect();
    let hello_runs: Vec<Json> = runs
        .iter()
        .map(|r| {
            json!({"turns_per_second": r["turns_per_second"], "p99_ms": r["p99_ms"],
                   "botyard_cpu_us_per_turn": r["botyard_cpu_us_per_turn"],
                   "postgres_cpu_us_per_turn": r["postgres_cpu_us_per_turn"]})
        })
        .collect();
    runs.sort_by(|a, b| {
        let tps = |r: &Json| r["turns_per_second"].as_f64().unwrap_or(0.0);
        tps(a).total_cmp(&tps(b))
    });
    let hello = runs.swap_remove(runs.len() / 2);
    let mut round_trips = 0;
    for n in &mut nodes {
        n.stop();
        round_trips += n.round_trips.load(std::sync::atomic::Ordering::Relaxed);
    }
    Ok(json!({
        "machine": machine(),
        "database": crate::store::redact_url(url),
        "nodes": args.nodes,
        "connections": args.connections,
        "hello": hello,
        "hello_runs": hello_runs,
        "turns_served": served,
        "db_round_trips": round_trips,
        "db_round_trips_per_turn": (served > 0).then(|| round2(round_trips as f64 / served as f64)),
    }))
}
