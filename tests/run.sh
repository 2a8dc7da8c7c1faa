#!/usr/bin/env bash
# Runs every test of the workspace, after installing what the tests need: a Python virtual
# environment (target/venv) with the pinned packages of tests/requirements.txt — DuckDB, which
# the differential SQL test runs the same queries on, and the OpenTelemetry Python SDK with its
# OTLP gRPC and HTTP exporters, which the `scry serve` tests export through. Formatting and lints are checked first
# (`cargo fmt --check`, `cargo clippy --workspace --all-targets -- -D warnings`), so a change
# that passes here passes CI. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/venv
if [ ! -x "$venv/bin/python" ] || ! cmp -s tests/requirements.txt "$venv/requirements.txt"; then
    echo "installing Python test dependencies into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
    cp tests/requirements.txt "$venv/requirements.txt"
fi
export SCRY_PYTHON="$PWD/$venv/bin/python"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace "$@"
