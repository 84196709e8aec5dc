#!/usr/bin/env bash
# Fails, naming each file and line, when a C++ or CUDA source of the repository is not formatted
# as .clang-format says. One clang-format version (14, Debian 12's) decides: other versions format
# some constructs differently. `make format` rewrites the files in place.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
command -v clang-format-14 >/dev/null ||
  { echo "check_format: clang-format-14 not found (scripts/install-deps.sh installs it)" >&2; exit 1; }
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.h' '*.cc' '*.cu' '*.cuh')
else  # a source tree without git: every source outside build directories
  mapfile -t files < <(find . -path './build*' -prune -o -type f \
    \( -name '*.h' -o -name '*.cc' -o -name '*.cu' -o -name '*.cuh' \) -print | sort)
fi
[ ${#files[@]} -gt 0 ] || { echo "check_format: no sources found under $root" >&2; exit 1; }
if ! clang-format-14 --dry-run --Werror "${files[@]}"; then
  echo "check_format: the files above are not formatted; run 'make format'" >&2
  exit 1
fi
echo "check_format: ${#files[@]} files formatted as .clang-format says"
