#!/usr/bin/env bash
# The whole test suite, from a fresh clone: makes sure of the toolchain pieces it needs, then
# runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >&2
cargo test --workspace --locked
