#!/bin/sh
# The sync benchmark: engine vs mbsync vs the raw-fetch floor, on a private
# Dovecot. Installs Dovecot and isync when missing (Debian 12, as root) and
# builds the engine in release mode. Arguments go to bench.py, e.g.
#   bench/run.sh --sizes 10000 --runs 3
# The default (10,000 and 50,000 messages, 500 folders, 3 runs each) needs
# about 8 GB of disk under bench/work/ and 10-20 minutes.
set -eu
cd "$(dirname "$0")/.."
sh tests/install-deps.sh
cargo build --release --quiet
exec /usr/bin/python3 bench/bench.py "$@"
