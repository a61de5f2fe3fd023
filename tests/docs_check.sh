#!/usr/bin/env bash
# The documentation stands on its own: every relative link in README.md, docs/ and bench/README.md
# names a file of the repository, and nothing points outside it (no ../ that leaves the checkout).
set -euo pipefail
root="${1:-$(dirname "$0")/..}"
cd "$root"
status=0
for doc in README.md bench/README.md docs/*.md; do
  dir=$(dirname "$doc")
  # Markdown links outside code: ](target), maybe with an #anchor; external and pure-anchor links skipped.
  while IFS= read -r target; do
    case "$target" in http://*|https://*|mailto:*|'#'*) continue ;; esac
    path="${target%%#*}"
    resolved=$(realpath -m "$dir/$path")
    case "$resolved" in
      "$(pwd)"/*|"$(pwd)") ;;
      *) echo "$doc: link '$target' leaves the repository"; status=1; continue ;;
    esac
    [ -e "$resolved" ] || { echo "$doc: link '$target' names no file"; status=1; }
  done < <(awk '/^ *```/ { fenced = !fenced; next } !fenced' "$doc" | sed 's/`[^`]*`//g' |
           grep -o '](\([^)]*\))' | sed 's/^](\(.*\))$/\1/')
done
if grep -rn --exclude-dir=build --exclude-dir=.git -e '\.\./shared' -e 'DESIGN\.md' . ; then
  echo "the lines above point at a file outside the repository"
  status=1
fi
[ "$status" = 0 ] && echo "docs: every link resolves inside the repository"
exit "$status"
