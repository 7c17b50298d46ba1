#!/usr/bin/env bash
# Regenerates examples/proto/orders.rs from examples/proto/orders.proto.
#
# The generated code is checked in so that building seawall (its examples and tests
# included) never needs protoc. This script builds a throwaway generator outside the
# repository: tonic-build 0.12.3 (prost-build 0.13), with the protoc binary that the
# protoc-bin-vendored crate ships. It needs cargo and the crate registry.
#
#     examples/proto/generate.sh
set -euo pipefail
proto_dir="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/src"
cat >"$work/Cargo.toml" <<'TOML'
[package]
name = "seawall-proto-gen"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
tonic-build = { version = "=0.12.3", default-features = false, features = ["prost"] }
prost-build = "=0.13.5"
protoc-bin-vendored = "=3.3.0"
TOML
cat >"$work/src/main.rs" <<'RUST'
use std::error::Error;
use std::path::PathBuf;

/// Usage: seawall-proto-gen <dir with orders.proto> <out dir>
fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args_os().skip(1);
    let proto_dir = PathBuf::from(args.next().ok_or("missing the proto directory")?);
    let out_dir = PathBuf::from(args.next().ok_or("missing the output directory")?);
    // prost-build runs the protoc named by $PROTOC.
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .emit_rerun_if_changed(false)
        .out_dir(&out_dir)
        .compile_protos(&[proto_dir.join("orders.proto")], &[proto_dir])?;
    Ok(())
}
RUST

mkdir -p "$work/out"
cargo run --quiet --manifest-path "$work/Cargo.toml" -- "$proto_dir" "$work/out"

{
    cat <<'HEADER'
// @generated from orders.proto by examples/proto/generate.sh (tonic-build 0.12.3,
// prost-build 0.13.5, protoc from protoc-bin-vendored 3.3.0), then formatted with
// `rustfmt --edition 2021`. Do not edit: change orders.proto and run the script.
HEADER
    cat "$work/out/orders.rs"
} >"$proto_dir/orders.rs"
rustfmt --edition 2021 "$proto_dir/orders.rs"
echo "wrote $proto_dir/orders.rs"
