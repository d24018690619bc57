# Sourced by scripts/test: make sure a PostgreSQL server (and a Redis server) the tests may use
# is running, and export its URL as DENOISECAST_TEST_POSTGRES_URL.
#
# Order of preference: a URL already given in the environment; the local
# server on 127.0.0.1:5432 if it lets user postgres in without a password;
# otherwise a throwaway cluster of our own (trust auth, port 55432) under
# /tmp, created and started here, and reused by later runs.

ensure_postgres() {
    if [ -n "${DENOISECAST_TEST_POSTGRES_URL:-}" ]; then
        return 0
    fi
    if command -v psql >/dev/null 2>&1 &&
        psql "postgresql://postgres@127.0.0.1:5432/postgres" -tAc "select 1" >/dev/null 2>&1; then
        export DENOISECAST_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        return 0
    fi
    local bin dir port as
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$bin" ]; then
        echo "test: no PostgreSQL binaries; the PostgreSQL tests will be skipped" >&2
        return 0
    fi
    dir=/tmp/denoisecast-test-postgres
    port=55432
    as=()
    if [ "$(id -u)" = 0 ]; then
        as=(runuser -u postgres --)
    fi
    if ! "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then
        if [ ! -f "$dir/PG_VERSION" ]; then
            echo "test: creating a PostgreSQL cluster for the tests in $dir"
            rm -rf "$dir"
            mkdir -p "$dir"
            [ "$(id -u)" = 0 ] && chown postgres: "$dir"
            "${as[@]}" "$bin/initdb" -D "$dir" -U postgres --auth=trust >/dev/null
        fi
        echo "test: starting PostgreSQL on 127.0.0.1:$port"
        "${as[@]}" "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w \
            -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    fi
    export DENOISECAST_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
}

# Make sure a Redis server the tests may use is running, and export its URL
# as DENOISECAST_TEST_REDIS_URL: one already given, the local server on
# 127.0.0.1:6379, or a throwaway one of our own on port 56379 (no
# persistence), started here and reused by later runs.
ensure_redis() {
    if [ -n "${DENOISECAST_TEST_REDIS_URL:-}" ]; then
        return 0
    fi
    if command -v redis-cli >/dev/null 2>&1 && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        export DENOISECAST_TEST_REDIS_URL="redis://127.0.0.1:6379/0"
        return 0
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "test: no redis-server; the Redis tests will be skipped" >&2
        return 0
    fi
    local port=56379
    if ! redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1; then
        echo "test: starting Redis on 127.0.0.1:$port"
        redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
            --daemonize yes --logfile /tmp/denoisecast-test-redis.log >/dev/null
        for _ in $(seq 50); do
            redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && break
            sleep 0.1
        done
    fi
    export DENOISECAST_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
}
