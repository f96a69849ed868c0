#!/usr/bin/env bash
# make bench: Go benchmarks, each sub-benchmark printed as a ratio of the
# "baseline" sub-benchmark of the same benchmark (run in the same process),
# then the probe's resource use against a shell monitor.sh round, then the
# backup benchmark (probe backup against pg_dump on a >= 1 GB database) and
# the restore benchmark (probe restore against pg_restore on the same one).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(go test -run '^$' -bench . -benchmem -count=1 ./shared/... ./probe/... | tee /dev/stderr)
echo
printf '%-40s %14s %12s %10s\n' benchmark ns/op allocs/op "vs baseline"
echo "$out" | awk '
  /^Benchmark/ {
    name = $1; sub(/-[0-9]+$/, "", name)
    n = split(name, parts, "/"); parent = parts[1]
    ns[name] = $3; allocs[name] = $7; order[++k] = name
    if (parts[n] == "baseline") base[parent] = $3
  }
  END {
    for (i = 1; i <= k; i++) {
      name = order[i]; split(name, parts, "/"); b = base[parts[1]]
      ratio = (b > 0) ? sprintf("%.2fx", ns[name] / b) : "-"
      printf "%-40s %14s %12s %10s\n", name, ns[name], allocs[name], ratio
    }
  }'
echo
bash scripts/measure-probe.sh
echo
bash scripts/bench-backup.sh
echo
bash scripts/bench-restore.sh
