#!/usr/bin/env bash
# Database benchmark: Backstop's PostgreSQL and MariaDB backups and restores against the
# database tools alone, side by side in one run on the local servers.
#
#   bench/db.sh                         # both engines
#   BENCH_DB=postgres bench/db.sh       # one engine (postgres or mariadb)
#   BENCH_PG_SCALE=10 BENCH_MARIADB_ROWS=200000 bench/db.sh   # a smaller run
#
# Environment:
#   BENCH_DB            postgres, mariadb or all (default all)
#   BENCH_PG_SCALE      pgbench scale factor (default 50: about 1.25 GiB with the notes table)
#   BENCH_PG_URL        PostgreSQL server URL without a database (default postgres://postgres@127.0.0.1:5432)
#   BENCH_MARIADB_ROWS  rows of the MariaDB data set's largest table (default 2000000)
#   BENCH_MARIADB_URL   MariaDB server URL without a database (default mysql://root@127.0.0.1:3306)
#   BACKSTOP            backstop binary (default: target/release/backstop of this repository)
#   BENCH_DIR           working directory (default: a fresh `mktemp -d` under /tmp)
#   BENCH_RUNS          runs of each measurement; the table shows the median (default 3)
#
# PostgreSQL data set: `pgbench -i --foreign-keys` at the scale given, plus a `notes` table
# (60,000 rows per scale unit: 3 M rows at scale 50) of text with a primary key and a
# two-column index: tables whose index and key builds are a large part of a load.
#
#   backup   Backstop (`pg_dump -Fc --compress=0` streamed through chunking, zstd and packing
#            into a local repository) against the pipeline `pg_dump -Fc -Z0 | zstd -3 -T1`.
#   restore  Backstop (the snapshot read from the repository, every chunk verified, into a new
#            database) against `pg_restore -j2` from a custom-format file written by
#            `pg_dump -Fc` to a file. Also measured, for the choice of load strategy: one
#            `pg_restore` job fed the stream (how Backstop loaded before), the stream spooled to
#            a file and then `pg_restore -j2`, and Backstop with `--jobs 1`.
#
# MariaDB data set: `accounts` (BENCH_MARIADB_ROWS rows, a primary key) and `notes` (half as
# many rows of text, a primary key and a two-column index), in InnoDB.
#
#   backup   Backstop against `mariadb-dump … | zstd -3 -T1` with the options Backstop uses.
#   restore  Backstop against `mariadb DB < dump.sql` (the same dump, uncompressed, in a file).
#
# For each engine, a drill of the same snapshot into a scratch database on the same server:
# its fetch + decode + load (from its report's RTO breakdown, checks excluded) against the
# bare `backstop restore` of that snapshot into a new database (target: at most 1.10×).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "error: $*" >&2; exit 1; }

WHICH=${BENCH_DB:-all}
[[ $WHICH =~ ^(all|postgres|mariadb)$ ]] || die "BENCH_DB must be all, postgres or mariadb (got '$WHICH')"
SCALE=${BENCH_PG_SCALE:-50}
MARIADB_ROWS=${BENCH_MARIADB_ROWS:-2000000}
RUNS=${BENCH_RUNS:-3}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer (got '$RUNS')"
PG_SERVER=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
MARIADB_SERVER=${BENCH_MARIADB_URL:-mysql://root@127.0.0.1:3306}
BACKSTOP=${BACKSTOP:-$REPO_ROOT/target/release/backstop}
[[ -x $BACKSTOP ]] || die "backstop binary not found at '$BACKSTOP'; run \`cargo build --release\` first (or set BACKSTOP)"
BACKSTOP=$(realpath "$BACKSTOP")
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found; install it with \`apt-get install time\`"
command -v zstd >/dev/null || die "zstd not found; install it with \`apt-get install zstd\`"
if [[ $WHICH != mariadb ]]; then
    for tool in pgbench pg_dump pg_restore psql; do
        command -v "$tool" >/dev/null || die "$tool not found; install postgresql-client (and postgresql-contrib for pgbench)"
    done
fi
if [[ $WHICH != postgres ]]; then
    for tool in mariadb mariadb-dump; do
        command -v "$tool" >/dev/null || die "$tool not found; install mariadb-client"
    done
fi

BENCH_DIR=${BENCH_DIR:-$(mktemp -d /tmp/backstop-dbbench.XXXXXX)}
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(realpath "$BENCH_DIR")
TAG=$$
PG_SOURCE=backstop_bench_source_$TAG
MY_SOURCE=backstop_bench_source_$TAG
PG_DBS=()
MY_DBS=()

# The MariaDB server's host and port, for the client tools.
MY_HOSTPORT=${MARIADB_SERVER#*://}
MY_HOSTPORT=${MY_HOSTPORT#*@}
MY_HOST=${MY_HOSTPORT%%:*}
MY_PORT=${MY_HOSTPORT##*:}
[[ $MY_PORT == "$MY_HOSTPORT" ]] && MY_PORT=3306

pg_sql() { psql -X -q -At -d "$PG_SERVER/${2:-postgres}" -c "$1"; }
my_sql() { mariadb -h "$MY_HOST" -P "$MY_PORT" -u root -N -B ${2:+"$2"} -e "$1"; }
cleanup() {
    for db in "${PG_DBS[@]}"; do
        pg_sql "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
    for db in "${MY_DBS[@]}"; do
        my_sql "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
    done
    [[ -n ${BENCH_KEEP:-} ]] || rm -rf "$BENCH_DIR"
}
trap cleanup EXIT

# measure NAME COMMAND...: appends wall seconds and peak RSS (KiB) to $BENCH_DIR/NAME.time.
# A pipeline is measured as `bash -c '…'`; its peak RSS is the largest of its processes.
measure() {
    local name=$1; shift
    local start end
    start=$(date +%s.%N)
    # Peak RSS (KiB), then user and system CPU seconds of the command and its children
    # (the dump tools under Backstop, the pipeline's stages under bash).
    /usr/bin/time -f '%M %U %S' -o "$BENCH_DIR/$name.rss" "$@" >"$BENCH_DIR/$name.log" 2>&1 \
        || { cat "$BENCH_DIR/$name.log" >&2; die "$name failed"; }
    end=$(date +%s.%N)
    echo "$(echo "$end - $start" | bc) $(cat "$BENCH_DIR/$name.rss")" >>"$BENCH_DIR/$name.time"
}

snapshot_id() { grep -o '"snapshot_id": *"[0-9a-f]*"' "$BENCH_DIR/$1.log" | cut -d'"' -f4; }

# A drill's own restore time, from its report in $BENCH_DIR/$1.log: fetch + decode + load
# (its checks excluded), appended to $BENCH_DIR/$1.load. The drill must have passed.
drill_load() {
    python3 - "$BENCH_DIR/$1.log" >>"$BENCH_DIR/$1.load" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
report, _ = json.JSONDecoder().raw_decode(text[text.index("{"):])
if report["status"] != "passed":
    sys.exit(f"the drill did not pass: {report.get('error')}")
b = report["rto_breakdown"]
print(b["fetch_seconds"] + b["decode_seconds"] + b["load_seconds"])
PY
}

mkdir -p "$BENCH_DIR/install/policies"
cat >"$BENCH_DIR/install/backstop.toml" <<TOML
data_dir = "./data"
policies = "./policies"
[repositories.local]
url = "file://./repo"
TOML
cat >"$BENCH_DIR/install/policies/pg.toml" <<TOML
name = "pg"
repository = "local"
[source]
kind = "postgres"
url_env = "BENCH_PG_SOURCE_URL"
[drill]
target = { kind = "postgres", url_env = "BENCH_PG_SCRATCH_URL" }
TOML
cat >"$BENCH_DIR/install/policies/mariadb.toml" <<TOML
name = "mariadb"
repository = "local"
[source]
kind = "mysql"
url_env = "BENCH_MY_SOURCE_URL"
[drill]
target = { kind = "mysql", url_env = "BENCH_MY_SCRATCH_URL" }
TOML
export BENCH_PG_SOURCE_URL=$PG_SERVER/$PG_SOURCE
export BENCH_MY_SOURCE_URL=$MARIADB_SERVER/$MY_SOURCE
# Drills restore into scratch databases the drill creates and drops on the same servers.
export BENCH_PG_SCRATCH_URL=$PG_SERVER/
export BENCH_MY_SCRATCH_URL=$MARIADB_SERVER/
cd "$BENCH_DIR/install"

# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------
bench_postgres() {
    local notes=$((SCALE * 60000)) run id
    PG_DBS+=("$PG_SOURCE")
    echo "PostgreSQL: creating a pgbench database at scale $SCALE with $notes notes" >&2
    pg_sql "CREATE DATABASE $PG_SOURCE"
    pgbench -q -i -s "$SCALE" --foreign-keys "$PG_SERVER/$PG_SOURCE" >/dev/null 2>&1
    pg_sql "CREATE TABLE notes (id bigint PRIMARY KEY, author int NOT NULL, body text NOT NULL, created timestamptz NOT NULL);
            INSERT INTO notes SELECT g, g % 5000, md5(g::text) || ' ' || md5((g * 7)::text), timestamptz '2026-01-01' + g * interval '1 second' FROM generate_series(1, $notes) g;
            CREATE INDEX notes_author_created ON notes (author, created);" "$PG_SOURCE" >/dev/null
    pg_sql "VACUUM ANALYZE" "$PG_SOURCE" >/dev/null
    pg_sql "SELECT pg_database_size(current_database())" "$PG_SOURCE" >"$BENCH_DIR/pg.size"
    echo "PostgreSQL: a custom-format file for pg_restore -j2" >&2
    pg_dump -Fc -d "$PG_SERVER/$PG_SOURCE" -f "$BENCH_DIR/seekable.pgdump"

    for run in $(seq 1 "$RUNS"); do
        echo "PostgreSQL run $run of $RUNS: backups" >&2
        rm -rf "$BENCH_DIR/install/repo" "$BENCH_DIR/pipeline.pgdump.zst"
        pipeline() {
            measure pg_pipeline bash -c "pg_dump -Fc -Z0 -d '$PG_SERVER/$PG_SOURCE' | zstd -q -3 -T1 -o '$BENCH_DIR/pipeline.pgdump.zst'"
        }
        ours() { measure pg_backup "$BACKSTOP" --json backup pg; }
        if (( run % 2 )); then pipeline; ours; else ours; pipeline; fi
        id=$(snapshot_id pg_backup)

        echo "PostgreSQL run $run of $RUNS: restores" >&2
        # The drill takes its turn in the rotation too: last every time, it would always pay
        # for the others' cache and disk.
        local restores=(pg_jobs2 pg_stream pg_spool pg_ours pg_ours_jobs1 pg_drill) i name db
        for i in "${!restores[@]}"; do
            # Rotated each run, so that no way is always first or last.
            name=${restores[$(( (i + run) % ${#restores[@]} ))]}
            db=backstop_bench_${name}_$TAG
            PG_DBS+=("$db")
            pg_sql "DROP DATABASE IF EXISTS $db WITH (FORCE)"
            # A checkpoint before each restore, so that none pays for another's dirty buffers.
            pg_sql "CHECKPOINT"
            local args=(--no-owner --no-privileges --exit-on-error)
            case $name in
                pg_jobs2) pg_sql "CREATE DATABASE $db TEMPLATE template0"
                    measure "$name" pg_restore "${args[@]}" -j2 -d "$PG_SERVER/$db" "$BENCH_DIR/seekable.pgdump" ;;
                pg_stream) pg_sql "CREATE DATABASE $db TEMPLATE template0"
                    measure "$name" bash -c "zstd -q -dc '$BENCH_DIR/pipeline.pgdump.zst' | pg_restore ${args[*]} -d '$PG_SERVER/$db'" ;;
                pg_spool) pg_sql "CREATE DATABASE $db TEMPLATE template0"
                    measure "$name" bash -c "zstd -q -dc '$BENCH_DIR/pipeline.pgdump.zst' >'$BENCH_DIR/spool.pgdump' && pg_restore ${args[*]} -j2 -d '$PG_SERVER/$db' '$BENCH_DIR/spool.pgdump'"
                    rm -f "$BENCH_DIR/spool.pgdump" ;;
                pg_ours) measure "$name" "$BACKSTOP" restore "$id" --to "$PG_SERVER/$db" ;;
                pg_ours_jobs1) measure "$name" "$BACKSTOP" restore "$id" --jobs 1 --to "$PG_SERVER/$db" ;;
                pg_drill) measure "$name" "$BACKSTOP" --json drill pg
                    drill_load pg_drill ;;
            esac
        done
    done
    local expected got name
    expected=$(pg_sql "SELECT (SELECT count(*) FROM pgbench_accounts) || '/' || (SELECT count(*) FROM notes) || '/' || (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public') || '/' || (SELECT count(*) FROM pg_constraint WHERE contype = 'f')" "$PG_SOURCE")
    for name in pg_jobs2 pg_stream pg_spool pg_ours pg_ours_jobs1; do
        got=$(pg_sql "SELECT (SELECT count(*) FROM pgbench_accounts) || '/' || (SELECT count(*) FROM notes) || '/' || (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public') || '/' || (SELECT count(*) FROM pg_constraint WHERE contype = 'f')" "backstop_bench_${name}_$TAG")
        [[ $got == "$expected" ]] || die "$name restored accounts/notes/indexes/foreign keys $got, the source has $expected"
    done
    du -sb "$BENCH_DIR/install/repo" | cut -f1 >"$BENCH_DIR/pg.repo"
    stat -c %s "$BENCH_DIR/pipeline.pgdump.zst" >"$BENCH_DIR/pg.pipeline"
    rm -rf "$BENCH_DIR/install/repo" "$BENCH_DIR/install/data"
}

# ---------------------------------------------------------------------------
# MariaDB
# ---------------------------------------------------------------------------
bench_mariadb() {
    local notes=$((MARIADB_ROWS / 2)) run id
    MY_DBS+=("$MY_SOURCE")
    echo "MariaDB: creating $MARIADB_ROWS accounts and $notes notes" >&2
    my_sql "CREATE DATABASE $MY_SOURCE"
    my_sql "CREATE TABLE accounts (id int PRIMARY KEY, branch int NOT NULL, balance bigint NOT NULL, filler char(84) NOT NULL) ENGINE=InnoDB;
            INSERT INTO accounts SELECT seq, seq % 100, 0, '' FROM seq_1_to_$MARIADB_ROWS;
            CREATE TABLE notes (id bigint PRIMARY KEY, author int NOT NULL, body text NOT NULL, created datetime NOT NULL, KEY author_created (author, created)) ENGINE=InnoDB;
            INSERT INTO notes SELECT seq, seq % 5000, concat(md5(seq), ' ', md5(seq * 7)), '2026-01-01' + INTERVAL seq SECOND FROM seq_1_to_$notes;" "$MY_SOURCE"
    # The sizes in information_schema lag behind the inserts until the statistics are read.
    my_sql "ANALYZE TABLE accounts, notes" "$MY_SOURCE" >/dev/null
    my_sql "SELECT sum(data_length + index_length) FROM information_schema.tables WHERE table_schema = '$MY_SOURCE'" >"$BENCH_DIR/my.size"
    local dump_opts="--single-transaction --routines --triggers --events --hex-blob --skip-dump-date --default-character-set=utf8mb4"
    echo "MariaDB: a dump file for mariadb < dump.sql" >&2
    # shellcheck disable=SC2086
    mariadb-dump -h "$MY_HOST" -P "$MY_PORT" -u root $dump_opts "$MY_SOURCE" >"$BENCH_DIR/dump.sql"

    for run in $(seq 1 "$RUNS"); do
        echo "MariaDB run $run of $RUNS: backups" >&2
        rm -rf "$BENCH_DIR/install/repo"
        pipeline() {
            measure my_pipeline bash -c "mariadb-dump -h '$MY_HOST' -P '$MY_PORT' -u root $dump_opts '$MY_SOURCE' | zstd -q -3 -T1 -f -o '$BENCH_DIR/dump.sql.zst'"
        }
        ours() { measure my_backup "$BACKSTOP" --json backup mariadb; }
        if (( run % 2 )); then pipeline; ours; else ours; pipeline; fi
        id=$(snapshot_id my_backup)

        echo "MariaDB run $run of $RUNS: restores" >&2
        local restores=(my_client my_ours my_drill) i name db
        for i in "${!restores[@]}"; do
            name=${restores[$(( (i + run) % ${#restores[@]} ))]}
            db=backstop_bench_${name}_$TAG
            MY_DBS+=("$db")
            my_sql "DROP DATABASE IF EXISTS $db"
            case $name in
                my_client) my_sql "CREATE DATABASE $db"
                    measure "$name" bash -c "mariadb -h '$MY_HOST' -P '$MY_PORT' -u root '$db' <'$BENCH_DIR/dump.sql'" ;;
                my_ours) measure "$name" "$BACKSTOP" restore "$id" --to "$MARIADB_SERVER/$db" ;;
                my_drill) measure "$name" "$BACKSTOP" --json drill mariadb
                    drill_load my_drill ;;
            esac
        done
    done
    local expected got name
    expected=$(my_sql "SELECT concat((SELECT count(*) FROM accounts), '/', (SELECT count(*) FROM notes))" "$MY_SOURCE")
    for name in my_client my_ours; do
        got=$(my_sql "SELECT concat((SELECT count(*) FROM accounts), '/', (SELECT count(*) FROM notes))" "backstop_bench_${name}_$TAG")
        [[ $got == "$expected" ]] || die "$name restored accounts/notes $got, the source has $expected"
    done
    du -sb "$BENCH_DIR/install/repo" | cut -f1 >"$BENCH_DIR/my.repo"
    stat -c %s "$BENCH_DIR/dump.sql.zst" >"$BENCH_DIR/my.pipeline"
}

[[ $WHICH == mariadb ]] || bench_postgres
[[ $WHICH == postgres ]] || bench_mariadb

python3 - "$BENCH_DIR" "$RUNS" "$SCALE" "$MARIADB_ROWS" "$("$BACKSTOP" --version)" <<'PY'
import os, sys
d, runs, scale, rows, version = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
MIB = 1024 * 1024
def have(name):
    return os.path.exists(f"{d}/{name}.time")
def t(name):
    measured = sorted((float(w), int(r) / 1024, float(u) + float(s))
                      for w, r, u, s in (l.split() for l in open(f"{d}/{name}.time")))
    return measured[len(measured) // 2]  # the median run, by wall time
def size(name):
    return int(open(f"{d}/{name}").read().strip() or 0)
print(f"{version}; {os.cpu_count()} CPUs; median of {runs} runs")
rows_out = []
def row(op, tool, name, base=None, target=None, relation="≤"):
    w, r, cpu = t(name)
    ratio = ""
    if base:
        bw, _, _ = t(base)
        ok = "met" if w / bw <= target else "not met"
        ratio = f"{w / bw:.2f}× ({relation} {target:.2f}×: {ok})"
    rows_out.append(f"| {op} | {tool} | {w:.1f} | {cpu:.1f} | {r:.0f} | {ratio} |")
if have("pg_backup"):
    print(f"PostgreSQL: pgbench scale {scale} with foreign keys, plus {int(scale) * 60000:,} notes; database {size('pg.size') / MIB:.0f} MiB; "
          f"pipeline .zst {size('pg.pipeline') / MIB:.0f} MiB, Backstop repository {size('pg.repo') / MIB:.0f} MiB")
if have("my_backup"):
    print(f"MariaDB: {int(rows):,} accounts and {int(rows) // 2:,} notes; InnoDB data and indexes {size('my.size') / MIB:.0f} MiB; "
          f"pipeline .zst {size('my.pipeline') / MIB:.0f} MiB, Backstop repository {size('my.repo') / MIB:.0f} MiB")
print()
print("| operation | tool | wall s | CPU s | peak RSS MiB | Backstop ÷ baseline (target) |")
print("|---|---|---:|---:|---:|---|")
if have("pg_backup"):
    row("PostgreSQL backup", "`pg_dump -Fc -Z0 \\| zstd -3 -T1` (baseline)", "pg_pipeline")
    row("PostgreSQL backup", "backstop", "pg_backup", "pg_pipeline", 1.10)
    row("PostgreSQL restore", "`pg_restore -j2` from a custom-format file (baseline)", "pg_jobs2")
    row("PostgreSQL restore", "`pg_restore` fed the stream, one job", "pg_stream")
    row("PostgreSQL restore", "stream spooled to a file, then `pg_restore -j2`", "pg_spool")
    row("PostgreSQL restore", "backstop `--jobs 1` (the stream, one job)", "pg_ours_jobs1")
    row("PostgreSQL restore", "backstop (tables shared out to two loaders, keys built as tables land)", "pg_ours", "pg_jobs2", 1.10)
if have("my_backup"):
    row("MariaDB backup", "`mariadb-dump \\| zstd -3 -T1` (baseline)", "my_pipeline")
    row("MariaDB backup", "backstop", "my_backup", "my_pipeline", 1.10)
    row("MariaDB restore", "`mariadb < dump.sql` (baseline)", "my_client")
    row("MariaDB restore", "backstop", "my_ours", "my_client", 1.00)
def drill_row(engine, name, restore):
    loads = sorted(float(l) for l in open(f"{d}/{name}.load"))
    load = loads[len(loads) // 2]
    rw, _, _ = t(restore)
    ok = "met" if load / rw <= 1.10 else "not met"
    rows_out.append(f"| {engine} drill | fetch + decode + load of the drill (its checks excluded) | {load:.1f} |  |  | "
                    f"{load / rw:.2f}× the bare restore (≤ 1.10×: {ok}) |")
if have("pg_drill"):
    drill_row("PostgreSQL", "pg_drill", "pg_ours")
if have("my_drill"):
    drill_row("MariaDB", "my_drill", "my_ours")
print("\n".join(rows_out))
PY
