#!/usr/bin/env bash
# Runs every test of the workspace, after installing what the tests need: a Python virtual
# environment (target/venv) with the pinned packages of tests/requirements.txt — DuckDB, which
# the differential SQL test runs the same queries on; the OpenTelemetry Python SDK with its
# OTLP gRPC and HTTP exporters, which the `scry serve` tests export through; moto's S3 server,
# which the object-storage tests start on loopback, and DuckDB's httpfs extension package;
# maturin, pyarrow,
# pytest and hypothesis for the Python module; Playwright, which drives Debian's Chromium
# (installed here with apt-get when missing; never a browser download) in the web UI's
# browser test. Formatting and lints are checked first
# (`cargo fmt --check`, `cargo clippy --workspace --all-targets -- -D warnings`), so a change
# that passes here passes CI. Then `cargo test --workspace` (extra arguments go to it), then
# the Python module is built into the same target directory (`maturin develop`, debug) and
# its tests run with pytest.
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
if ! command -v chromium >/dev/null 2>&1; then
    echo "installing Debian's chromium for the web UI's browser test" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium >/dev/null
fi
export SCRY_CHROMIUM="$(command -v chromium)"
export SCRY_PYTHON="$PWD/$venv/bin/python"
# The Python module's build (pyo3) asks this interpreter for its configuration.
export PYO3_PYTHON="$SCRY_PYTHON"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace "$@"
VIRTUAL_ENV="$PWD/$venv" "$venv/bin/maturin" develop --quiet \
    -m bindings/python/Cargo.toml --target-dir target
(cd bindings/python && "../../$venv/bin/python" -m pytest -q tests)
