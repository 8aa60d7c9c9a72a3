//! Builds the first-party plugins (the separate cargo workspace in `plugins/`, target
//! wasm32-wasip2) and copies their components into OUT_DIR for `include_bytes!`. The nested
//! cargo uses its own target dir (`plugins/target`), so it never waits on the outer build's
//! lock, and runs with the outer build's CARGO_* / RUSTFLAGS settings removed.

use std::path::{Path, PathBuf};
use std::process::Command;

const FIRST_PARTY: &[&str] = &[
    "telegram",
    "slack",
    "whatsapp",
    "twilio_sms",
    "messenger",
    "llm",
    "echo",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir
        .join("../..")
        .canonicalize()
        .expect("workspace root");
    let plugins = root.join("plugins");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("plugins");
    std::fs::create_dir_all(&out).expect("create OUT_DIR/plugins");

    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    for entry in ["Cargo.toml", "Cargo.lock", ".cargo"] {
        println!("cargo:rerun-if-changed={}", plugins.join(entry).display());
    }
    for dir in std::fs::read_dir(&plugins)
        .expect("read plugins/")
        .flatten()
    {
        let p = dir.path();
        if p.is_dir() && p.join("Cargo.toml").exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }

    check_target();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&plugins).args(["build", "--release"]);
    for (key, _) in std::env::vars() {
        let keep = key == "CARGO_HOME" || key == "CARGO_MAKEFLAGS";
        let outer = key.starts_with("CARGO_")
            || matches!(
                key.as_str(),
                "RUSTFLAGS"
                    | "RUSTC"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "RUSTDOC"
                    | "RUSTC_LINKER"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "PROFILE"
                    | "OPT_LEVEL"
                    | "DEBUG"
                    | "NUM_JOBS"
            );
        if outer && !keep {
            cmd.env_remove(&key);
        }
    }
    cmd.env("CARGO_TARGET_DIR", plugins.join("target"));
    let output = cmd.output().expect("run cargo for plugins/");
    if !output.status.success() {
        panic!(
            "building the first-party plugins failed (cd plugins && cargo build --release):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let built = plugins.join("target/wasm32-wasip2/release");
    for name in FIRST_PARTY {
        let from = built.join(format!("{name}.wasm"));
        copy(&from, &out.join(format!("{name}.wasm")));
    }
}

fn copy(from: &Path, to: &Path) {
    let bytes = std::fs::read(from).unwrap_or_else(|e| panic!("missing {}: {e}", from.display()));
    // Rewrite only on change so dependents are not rebuilt needlessly.
    if std::fs::read(to).ok().as_deref() != Some(&bytes[..]) {
        std::fs::write(to, bytes).unwrap_or_else(|e| panic!("write {}: {e}", to.display()));
    }
}

/// Fail early with the fix when the wasm32-wasip2 standard library is not installed.
fn check_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc).args(["--print", "sysroot"]).output();
    if let Ok(o) = sysroot {
        let root = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if o.status.success() && !root.join("lib/rustlib/wasm32-wasip2").exists() {
            panic!(
                "the wasm32-wasip2 target is not installed; the first-party plugins need it.\n\
                 Run: rustup target add wasm32-wasip2"
            );
        }
    }
}
