#!/usr/bin/env bash
# Runs every test of citygauge: unit tests, property tests, integration tests
# against real PostgreSQL + PostGIS and Mosquitto (the harness starts its own
# on free ports in throwaway directories), end-to-end tests through the real
# binary, the control room in headless Chromium, and doc tests. Installs
# PostgreSQL, PostGIS and Mosquitto from Debian's packages first if they are
# missing (as root, or with sudo), and stops and disables Debian's own
# PostgreSQL and Mosquitto services (5432, 1883: where the defaults point);
# Node.js, npm and Chromium are installed likewise.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo run --locked --quiet -- setup
# The simulator skips its broker test when mosquitto is missing; here it must not.
export CITYGAUGE_REQUIRE_MOSQUITTO=1
# The control room's browser test skips when Chromium is missing; here it
# installs Debian's chromium instead (and the test builds the page with npm,
# installing nodejs and npm when missing: citygauge_stack::ensure_web_built).
export CITYGAUGE_REQUIRE_BROWSER=1
# Every CAP document the tests produce is validated against the OASIS CAP 1.2
# schema with xmllint; the test installs libxml2-utils when missing and, with
# this set, fails rather than skips if it cannot.
export CITYGAUGE_REQUIRE_XMLLINT=1
# FROST's Python SensorThings client (frost-sta-client from PyPI, in a venv
# cached under target/python-venvs) walks the STA API; the test installs
# python3-venv when missing and, with this set, fails rather than skips.
export CITYGAUGE_REQUIRE_PYTHON_CLIENT=1
cargo test --workspace --locked "$@"
