#!/usr/bin/env bash
# Step time of this tree against another revision, interleaved in one run (A B A B
# ...), so a busy machine slows both alike: the ratio is what to read.
#
#   experiments/ab_step_time.sh REV [ROUNDS] [BENCHMARK FLAGS...]
#   experiments/ab_step_time.sh 62f9956 3 --config=symmim_jax/configs/demo.py --steps=10
#
# Prints one JSON line per run: {"tree": "new"|"old", "step_ms": ...}.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=$1 rounds=${2:-3}
shift $(( $# >= 2 ? 2 : 1 ))
old=$(mktemp -d)/old
git worktree add --detach "$old" "$rev" >/dev/null 2>&1
trap 'git worktree remove --force "$old"' EXIT
py=$(pwd)/.venv/bin/python
for _ in $(seq "$rounds"); do
  for tree in new old; do
    dir=$([ $tree = new ] && pwd || echo "$old")
    # Run from the tree itself: `python -m` puts it first on the path.
    ms=$(cd "$dir" && PYTHONPATH="$dir" "$py" -m symmim_jax.benchmark "$@" 2>/dev/null \
         | tail -1 | "$py" -c 'import json,sys; print(json.load(sys.stdin)["step_ms"])')
    echo "{\"tree\": \"$tree\", \"rev\": \"$([ $tree = new ] && git rev-parse --short HEAD || echo "$rev")\", \"step_ms\": $ms}"
  done
done
