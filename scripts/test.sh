#!/usr/bin/env bash
# The test command (README "Testing"): checks formatting; makes sure MariaDB and Redis are up,
# starting them if needed; builds the whole workspace, plugin libraries included; runs every
# test.
#
# One cargo profile (release) is built for everything, in a target directory outside the clone
# ($CARGO_TARGET_DIR, default ~/.cache/caudal/target) so the bundled DuckDB compiles once per
# machine. Extra arguments go to `cargo nextest run` (e.g. `-p caudal-journal`).
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/caudal/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

mariadb_up() { mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

wait_for() { # name check-function
    for _ in $(seq 1 60); do "$2" && return 0; sleep 0.5; done
    return 1
}

ensure_services() {
    if ! mariadb_up; then
        say "MariaDB is not answering on 127.0.0.1:3306; starting it"
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd \
            || die "could not start MariaDB (/usr/sbin/mariadbd)"
        wait_for MariaDB mariadb_up || die "MariaDB did not come up on 127.0.0.1:3306 within 30 s"
    fi
    if ! redis_up; then
        say "Redis is not answering on 127.0.0.1:6379; starting it"
        mkdir -p /var/lib/redis /var/log/redis
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
            --dir /var/lib/redis --logfile /var/log/redis/ci.log \
            || die "could not start Redis (redis-server)"
        wait_for Redis redis_up || die "Redis did not come up on 127.0.0.1:6379 within 30 s"
    fi
    say "MariaDB and Redis are up"
}

if [ "$#" -eq 0 ]; then
    say "checking formatting (cargo fmt)"
    cargo fmt --all --check || die "code is not formatted as rustfmt would: run \`cargo fmt --all\`"
fi
ensure_services
say "building the workspace and plugins (release, target $CARGO_TARGET_DIR)"
cargo build --release --workspace --all-targets --locked
if [ "$#" -eq 0 ]; then
    say "running doc tests"
    cargo test --release --workspace --doc --locked
fi
say "running every test"
cargo nextest run --release --workspace --no-fail-fast --locked "$@"
