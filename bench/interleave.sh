#!/bin/sh
# Interleaved comparison of a benchmark on an earlier revision and on the working tree, on this
# machine, in alternating rounds so that the machine's drift hits both sides alike:
#   bench/interleave.sh REV BENCH [ROUNDS] [BENCH ARGS...]
#   bench/interleave.sh dc62e71 engine 10 --runs 1
# REV is checked out into a temporary git worktree and run with this checkout's venv (and its
# built C module copied in); each round prints REV's figures, then the working tree's.
set -eu
rev=$1; bench=$2; rounds=${3:-5}
shift 2; [ $# -gt 0 ] && shift
here=$(cd "$(dirname "$0")/.." && pwd)
py="$here/.venv/bin/python"
base=$(mktemp -d)
trap 'git -C "$here" worktree remove --force "$base" >/dev/null 2>&1 || true' EXIT
git -C "$here" worktree add -q --detach "$base" "$rev"
cp "$here"/libshm/_fastpath*.so "$base/libshm/" 2>/dev/null || true
i=1
while [ "$i" -le "$rounds" ]; do
  echo "== round $i: $rev"
  (cd "$base" && PYTHONPATH="$base" "$py" -m services.cli bench "$bench" "$@")
  echo "== round $i: working tree"
  (cd "$here" && "$py" -m services.cli bench "$bench" "$@")
  i=$((i + 1))
done
