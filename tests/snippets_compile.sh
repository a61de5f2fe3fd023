#!/usr/bin/env bash
# Every ```cpp block of README.md and docs/*.md compiles alone, with exactly the includes it shows:
# its #include lines go first, the rest becomes the body of a function (a block with its own
# main() is taken as a whole program). What users copy cannot rot
# unnoticed. (Header comments' examples are not checked yet: 13 of 16 name things they do not
# declare; issue 23 item 6.)
#   snippets_compile.sh SOURCE_DIR CXX [COMPILER FLAGS...]
set -euo pipefail
src="$1" cxx="$2"
shift 2
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

for md in "$src"/README.md "$src"/docs/*.md; do
  awk -v out="$out" -v base="$(basename "$md" .md)" '
    /^```cpp/ { n++; inblock = 1; incl = ""; body = ""; start = NR + 1; next }
    /^```/ && inblock {
      inblock = 0
      file = sprintf("%s/%s_line%d.cpp", out, base, start)
      if (body ~ /int main\(/) printf "%s%s", incl, body > file
      else printf "%s\nint eventbus_snippet() {\n%s;\nreturn 0;\n}\n", incl, body > file
      close(file)
      next
    }
    inblock && /^#include/ { incl = incl $0 "\n"; next }
    inblock { body = body $0 "\n" }' "$md"
done

count=0 failed=0
for snippet in "$out"/*.cpp; do
  [ -e "$snippet" ] || continue
  count=$((count + 1))
  # Snippets name results they do not use further (a subscription kept alive, say): allowed.
  if ! "$cxx" -std=c++20 -fsyntax-only -Wall -Wextra -Werror -Wno-unused-variable -Wno-unused-parameter \
       -Wno-unused-but-set-variable "$@" "$snippet" 2>"$snippet.log"; then
    failed=$((failed + 1))
    echo "=== $(basename "$snippet") does not compile alone (README.md/docs, block starting at that line):"
    head -30 "$snippet.log"
  fi
done
echo "$count snippets, $failed failed"
[ "$count" -gt 0 ] && [ "$failed" -eq 0 ]
