#!/usr/bin/env bash
# Benchmarks backup-cli and backup-worker against the raw tool pipelines and
# writes the figures into BENCHMARKS.md. See BENCHMARKS.md for what is measured.
#
#   bash bench/run.sh                 # the full run (about 1 GB of data each; ~12 minutes)
#   bash bench/run.sh --quick         # tiny data, one run each: checks the harness works
#   bash bench/run.sh --only pg,restore-pg --runs 3
#   bash bench/run.sh --help          # every option
#
# It installs what is missing and starts the services (.ci/setup), builds the
# release binaries (unless --bin-dir names others), creates its data once
# (databases prefixed bench_, files under /tmp/backup-bench) and reuses it on
# the next run; --fresh-data recreates it, --drop-data removes it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

args=("$@")
bin_dir=""
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --bin-dir) bin_dir="${args[i + 1]:-}" ;;
        --bin-dir=*) bin_dir="${args[i]#--bin-dir=}" ;;
        -h | --help) exec python3 bench/bench.py --help ;;
    esac
done

if [[ "${BENCH_SKIP_SETUP:-}" != 1 ]]; then
    bash .ci/setup >/dev/null
fi
for tool in pgbench pg_dump pg_restore psql mariadb mariadb-dump zstd tar sqlite3 redis-cli python3; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (bash .ci/setup installs it)" >&2; exit 1; }
done
command -v s3s-fs >/dev/null || [[ -x "$HOME/.cargo/bin/s3s-fs" ]] \
    || { echo "bench: s3s-fs is missing (bash .ci/setup installs it)" >&2; exit 1; }

if [[ -z "$bin_dir" ]]; then
    cargo build --release --locked --quiet -p backup-cli -p backup-worker
    args+=(--bin-dir target/release)
fi

quoted=""
[[ ${#@} -gt 0 ]] && quoted=" $*"
exec python3 bench/bench.py --reproduce "bash bench/run.sh$quoted" "${args[@]}"
