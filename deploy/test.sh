#!/usr/bin/env bash
# Runs every test of citygauge: unit tests, property tests, integration tests
# against real PostgreSQL + PostGIS and Mosquitto (the harness starts its own
# on free ports in throwaway directories), end-to-end tests through the real
# binary, and doc tests. Installs PostgreSQL, PostGIS and Mosquitto from
# Debian's packages first if they are missing (as root, or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo run --locked --quiet -- setup
# The simulator skips its broker test when mosquitto is missing; here it must not.
export CITYGAUGE_REQUIRE_MOSQUITTO=1
cargo test --workspace --locked "$@"
