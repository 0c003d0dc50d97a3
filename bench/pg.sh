#!/usr/bin/env bash
# Database benchmark: Backstop's PostgreSQL backup and restore against pg_dump and
# pg_restore alone, on a pgbench database (default scale 50, about 750 MiB), side by side in
# one run on the local server.
#
#   bench/pg.sh
#   BENCH_PG_SCALE=10 bench/pg.sh      # smaller run
#
# Environment:
#   BENCH_PG_SCALE  pgbench scale factor (default 50)
#   BENCH_PG_URL    server URL without a database (default postgres://postgres@127.0.0.1:5432)
#   BACKSTOP        backstop binary (default: target/release/backstop of this repository)
#   BENCH_DIR       working directory (default: a fresh `mktemp -d` under /tmp)
#   BENCH_RUNS      runs of each measurement; the table shows the median (default 3)
#
# Backstop's backup is `pg_dump -Fc --compress=0` streamed through chunking, zstd and
# packing into a local repository; the baseline is `pg_dump -Fc` (its default compression)
# into a file. Backstop's restore reads the snapshot from the repository (verifying every
# chunk), creates the database and streams the dump into `pg_restore`; the baseline is
# `pg_restore` of the baseline's file into a database created beforehand. Both restores use
# one pg_restore job: a custom-format stream is restored by one job.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "error: $*" >&2; exit 1; }

SCALE=${BENCH_PG_SCALE:-50}
RUNS=${BENCH_RUNS:-3}
SERVER=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
BACKSTOP=${BACKSTOP:-$REPO_ROOT/target/release/backstop}
[[ -x $BACKSTOP ]] || die "backstop binary not found at '$BACKSTOP'; run \`cargo build --release\` first (or set BACKSTOP)"
for tool in pgbench pg_dump pg_restore psql; do
    command -v "$tool" >/dev/null || die "$tool not found; install postgresql-client (and postgresql-contrib for pgbench)"
done
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found; install it with \`apt-get install time\`"

BENCH_DIR=${BENCH_DIR:-$(mktemp -d /tmp/backstop-pgbench.XXXXXX)}
mkdir -p "$BENCH_DIR"
SOURCE_DB=backstop_bench_source_$$
BASE_DB=backstop_bench_baseline_$$
OURS_DB=backstop_bench_restored_$$

sql() { psql -X -q -At -d "$SERVER/postgres" -c "$1"; }
cleanup() {
    for db in "$SOURCE_DB" "$BASE_DB" "$OURS_DB"; do
        sql "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
    rm -rf "$BENCH_DIR"
}
trap cleanup EXIT

# measure NAME COMMAND...: appends wall seconds and peak RSS (KiB) to $BENCH_DIR/NAME.time
measure() {
    local name=$1; shift
    local start end
    start=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$BENCH_DIR/$name.rss" "$@" >"$BENCH_DIR/$name.log" 2>&1 \
        || { cat "$BENCH_DIR/$name.log" >&2; die "$name failed"; }
    end=$(date +%s.%N)
    echo "$(echo "$end - $start" | bc) $(cat "$BENCH_DIR/$name.rss")" >>"$BENCH_DIR/$name.time"
}

echo "creating a pgbench database at scale $SCALE" >&2
sql "CREATE DATABASE $SOURCE_DB"
pgbench -q -i -s "$SCALE" "$SERVER/$SOURCE_DB" >/dev/null 2>&1
sql "VACUUM ANALYZE" >/dev/null
DB_SIZE=$(psql -X -At -d "$SERVER/$SOURCE_DB" -c "SELECT pg_database_size(current_database())")

mkdir -p "$BENCH_DIR/install/policies"
cat >"$BENCH_DIR/install/backstop.toml" <<TOML
data_dir = "./data"
policies = "./policies"
[repositories.local]
url = "file://./repo"
TOML
cat >"$BENCH_DIR/install/policies/pgbench.toml" <<TOML
name = "pgbench"
repository = "local"
[source]
kind = "postgres"
url_env = "BENCH_SOURCE_URL"
TOML
export BENCH_SOURCE_URL=$SERVER/$SOURCE_DB
cd "$BENCH_DIR/install"

for run in $(seq 1 "$RUNS"); do
    echo "run $run of $RUNS: backup with pg_dump -Fc alone and with backstop" >&2
    rm -rf "$BENCH_DIR/install/repo" "$BENCH_DIR/baseline.pgdump"
    if (( run % 2 )); then
        measure pg_dump pg_dump -Fc -d "$SERVER/$SOURCE_DB" -f "$BENCH_DIR/baseline.pgdump"
        measure backstop_backup "$BACKSTOP" --json backup pgbench
    else
        measure backstop_backup "$BACKSTOP" --json backup pgbench
        measure pg_dump pg_dump -Fc -d "$SERVER/$SOURCE_DB" -f "$BENCH_DIR/baseline.pgdump"
    fi
    ID=$(grep -o '"snapshot_id": *"[0-9a-f]*"' "$BENCH_DIR/backstop_backup.log" | cut -d'"' -f4)

    echo "run $run of $RUNS: restore with pg_restore alone and with backstop" >&2
    sql "DROP DATABASE IF EXISTS $BASE_DB WITH (FORCE)"
    sql "DROP DATABASE IF EXISTS $OURS_DB WITH (FORCE)"
    sql "CREATE DATABASE $BASE_DB"
    # A checkpoint before each restore, and the order alternating between runs, so that
    # neither restore pays for the other's dirty buffers.
    restore_alone() {
        sql "CHECKPOINT"
        measure pg_restore pg_restore --no-owner --no-privileges --exit-on-error -d "$SERVER/$BASE_DB" "$BENCH_DIR/baseline.pgdump"
    }
    restore_backstop() {
        sql "CHECKPOINT"
        measure backstop_restore "$BACKSTOP" restore "$ID" --to "$SERVER/$OURS_DB"
    }
    if (( run % 2 )); then restore_alone; restore_backstop; else restore_backstop; restore_alone; fi
done

ROWS_BASE=$(psql -X -At -d "$SERVER/$BASE_DB" -c "SELECT count(*) FROM pgbench_accounts")
ROWS_OURS=$(psql -X -At -d "$SERVER/$OURS_DB" -c "SELECT count(*) FROM pgbench_accounts")
[[ $ROWS_BASE == "$ROWS_OURS" ]] || die "restored row counts differ: $ROWS_BASE vs $ROWS_OURS"

python3 - "$BENCH_DIR" "$SCALE" "$DB_SIZE" \
    "$(stat -c %s "$BENCH_DIR/baseline.pgdump")" "$(du -sb "$BENCH_DIR/install/repo" | cut -f1)" <<'PY'
import sys
d, scale, db_size, dump_size, repo_size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def t(name):
    runs = sorted((float(w), int(r) / 1024) for w, r in (l.split() for l in open(f"{d}/{name}.time")))
    return runs[len(runs) // 2]  # the median run, by wall time
MIB = 1024 * 1024
print(f"median of {len(open(f'{d}/pg_dump.time').readlines())} runs; pgbench scale {scale}: database {db_size / MIB:.0f} MiB; pg_dump -Fc file {dump_size / MIB:.0f} MiB; Backstop repository {repo_size / MIB:.0f} MiB")
print()
print("| operation | tool | wall s | peak RSS MiB | Backstop ÷ alone (target) |")
print("|---|---|---:|---:|---:|")
for op, alone, ours, target in [("backup", "pg_dump", "backstop_backup", 1.10), ("restore", "pg_restore", "backstop_restore", 1.15)]:
    (aw, ar), (ow, orss) = t(alone), t(ours)
    ok = "met" if ow / aw <= target else "not met"
    print(f"| {op} | {alone} alone | {aw:.1f} | {ar:.0f} | |")
    print(f"| {op} | backstop | {ow:.1f} | {orss:.0f} | {ow / aw:.2f}× (≤ {target:.2f}×: {ok}) |")
PY
