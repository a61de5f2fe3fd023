#!/usr/bin/env bash
# Every ```cpp block of README.md and docs/*.md compiles alone, with exactly the includes it shows:
# its #include lines go first, the rest becomes the body of a function (a block with its own
# main() is taken as a whole program). So does every example in a public header's comments. What
# users copy cannot rot unnoticed.
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

# A public header's example: a run of comment lines indented by three spaces ("//   ...") that
# names eventbus::, compiled with that header and <iostream> included, and the #include lines it
# shows itself hoisted first.
while IFS= read -r header; do
  rel="${header#"$src"/include/}"
  awk -v out="$out" -v rel="$rel" -v name="${rel//[\/.]/_}" '
    function flush() {
      if (body ~ /eventbus::/) {
        file = sprintf("%s/%s_line%d.cpp", out, name, start)
        if (body ~ /int main\(/) printf "#include <%s>\n%s%s", rel, incl, body > file
        else printf "#include <%s>\n#include <iostream>\n%s\nint eventbus_snippet() {\n%s;\nreturn 0;\n}\n", rel, incl, body > file
        close(file)
      }
      body = ""; incl = ""
    }
    /^\/\/   #include/ { if (body == "" && incl == "") start = NR; incl = incl substr($0, 6) "\n"; next }
    /^\/\/   / { if (body == "" && incl == "") start = NR; body = body substr($0, 6) "\n"; next }
    { flush() }
    END { flush() }' "$header"
done < <(find "$src/include" -name '*.hpp' | sort)

# One compiler per core: each snippet is its own translation unit, and 46 of them take a minute
# one after another.
compile_one() {
  local snippet="$1" cxx="$2"
  shift 2
  # Snippets name results they do not use further (a subscription kept alive, say): allowed.
  "$cxx" -std=c++20 -fsyntax-only -Wall -Wextra -Werror -Wno-unused-variable -Wno-unused-parameter \
    -Wno-unused-but-set-variable "$@" "$snippet" 2>"$snippet.log" || touch "$snippet.failed"
}
export -f compile_one
find "$out" -name '*.cpp' -print0 | xargs -0 -r -P "$(nproc)" -I{} bash -c 'compile_one "$@"' _ {} "$cxx" "$@"

count=0 failed=0
for snippet in "$out"/*.cpp; do
  [ -e "$snippet" ] || continue
  count=$((count + 1))
  if [ -e "$snippet.failed" ]; then
    failed=$((failed + 1))
    echo "=== $(basename "$snippet") does not compile alone (README.md, docs/ or a header: the block at that line):"
    head -30 "$snippet.log"
  fi
done
echo "$count snippets, $failed failed"
[ "$count" -gt 0 ] && [ "$failed" -eq 0 ]
