#!/bin/sh
# Runs every test of backproc on this machine: installs the Debian packages
# the tests need when missing (Dovecot, Postfix, aiosmtpd, isync), checks
# formatting and lints, then runs the unit and integration tests (which
# start their own Dovecot and Postfix on loopback and stop them again).
set -eu
cd "$(dirname "$0")/.."
sh tests/install-deps.sh
cargo fmt --check
cargo clippy --release --all-targets --quiet -- -D warnings
cargo test --release "$@"
