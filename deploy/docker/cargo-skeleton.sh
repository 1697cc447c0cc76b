#!/bin/sh
# Writes an empty stand-in (`fn main() {}`) for every target Cargo.toml in
# the current directory names — [lib], [[bin]], [[bench]], [[example]],
# [[test]] at their `path` or default place — plus src/main.rs and
# src/lib.rs, so that `cargo build` can compile the dependencies before the
# sources exist (the Dockerfile's cached dependency layer). Existing files
# are left alone. Prints each path it wrote. tests/deploy.rs runs it on the
# real Cargo.toml and checks that cargo then accepts the manifest.
set -eu

targets() {
  echo src/main.rs
  echo src/lib.rs
  awk -F'"' '
    function flush() {
      if (dir != "") print (path != "" ? path : dir "/" name ".rs")
      dir = ""; name = ""; path = ""
    }
    /^\[/ { flush() }
    /^\[lib\]/ { dir = "src"; name = "lib" }
    /^\[\[bin\]\]/ { dir = "src/bin" }
    /^\[\[bench\]\]/ { dir = "benches" }
    /^\[\[example\]\]/ { dir = "examples" }
    /^\[\[test\]\]/ { dir = "tests" }
    dir != "" && /^name *=/ { name = $2 }
    dir != "" && /^path *=/ { path = $2 }
    END { flush() }
  ' Cargo.toml
}

targets | sort -u | while read -r path; do
  if [ ! -e "$path" ]; then
    mkdir -p "$(dirname "$path")"
    echo 'fn main() {}' > "$path"
    echo "$path"
  fi
done
