#!/bin/sh
# The sync benchmark: engine vs mbsync vs the raw-fetch floor, on a private
# Dovecot; then the PostgreSQL store (bench/pg.py). Installs Dovecot and isync when missing (Debian 12, as root) and
# builds the engine in release mode. Arguments go to bench.py, e.g.
#   bench/run.sh --sizes 10000 --runs 3
# The default (10,000 and 50,000 messages, 500 folders, 3 runs each) needs
# about 8 GB of disk under bench/work/ and 10-20 minutes.
set -eu
cd "$(dirname "$0")/.."
sh tests/install-deps.sh
cargo build --release --quiet
/usr/bin/python3 bench/bench.py "$@"
# The PostgreSQL store (SPEC §13) against SQLite and mbsync, and one engine
# host against two on 1,000 accounts: bench/pg.py (BENCH_PG=0 skips it;
# BENCH_PG_ARGS, e.g. "--sizes 10000 --accounts 200", are its arguments).
if [ "${BENCH_PG:-1}" != 0 ]; then
    # shellcheck disable=SC2086 # word splitting of the arguments is intended
    /usr/bin/python3 bench/pg.py ${BENCH_PG_ARGS:-}
fi
