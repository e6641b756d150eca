#!/usr/bin/env bash
# Refreshes relay-server/web/vendor/ from the exact versions pinned in package-lock.json.
#
# vendor/ is committed and built into relay-server with include_bytes!, so building the relay
# needs no npm; run this only to change a pinned version (edit package.json, `npm install
# --package-lock-only --ignore-scripts`, then ./vendor.sh) and commit the result.
#
# npm runs in a throw-away copy so web/ gets no node_modules/, and with --ignore-scripts
# because nothing here needs an install script.
set -euo pipefail

web="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$web/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cp "$web/package.json" "$web/package-lock.json" "$work/"
(cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
nm="$work/node_modules"

stage="$work/vendor"
mkdir "$stage"

version() { node -p "require('$nm/$1/package.json').version"; }

# take PACKAGE FILE-IN-PACKAGE NAME-IN-VENDOR
take() {
  local src="$nm/$1/$2"
  [[ -f "$src" ]] || { echo "vendor.sh: $1@$(version "$1") has no $2" >&2; exit 1; }
  # The source maps are not vendored: drop the comment that would make devtools ask for them.
  sed '/^\/\/# sourceMappingURL=/d' "$src" >"$stage/$3"
  printf '%s\t%s@%s\t%s\n' "$3" "$1" "$(version "$1")" "$2" >>"$stage/MANIFEST"
}

printf 'file\tpackage\tpath in package\n' >"$stage/MANIFEST"

# UMD builds: a plain <script src> defines window.Terminal, window.FitAddon.FitAddon and
# window.WebglAddon.WebglAddon; no bundler or import map needed.
take @xterm/xterm lib/xterm.js xterm.js
take @xterm/xterm css/xterm.css xterm.css
take @xterm/addon-fit lib/addon-fit.js addon-fit.js
take @xterm/addon-webgl lib/addon-webgl.js addon-webgl.js
# The self-contained browser bundle (defines window.AsciinemaPlayer; solid-js and the
# WebAssembly terminal emulator are inside it).
take asciinema-player dist/bundle/asciinema-player.min.js asciinema-player.min.js
take asciinema-player dist/bundle/asciinema-player.css asciinema-player.css

take @xterm/xterm LICENSE LICENSE.xterm
take @xterm/addon-fit LICENSE LICENSE.xterm-addon-fit
take @xterm/addon-webgl LICENSE LICENSE.xterm-addon-webgl
take asciinema-player LICENSE LICENSE.asciinema-player
# solid-js is compiled into asciinema-player.min.js, so its licence travels with it.
take solid-js LICENSE LICENSE.solid-js

(cd "$stage" && sha256sum -- *.js *.css LICENSE.* >SHA256SUMS)

rm -rf "$out"
mv "$stage" "$out"
echo "vendor.sh: refreshed $out:"
cut -f1,2 "$out/MANIFEST" | tail -n +2 | sed 's/^/  /'
