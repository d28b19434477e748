#!/usr/bin/env bash
# Installs the Fortran reference engine bellhop.exe into .venv/bin (a symlink, never a copy: the binary
# finds its bundled libgfortran through RPATH $ORIGIN/../../aubellhop.libs).
# x86_64 Linux: binary from the aubellhop manylinux wheel (tagged cp312, but Python-independent; the
# package itself is never imported). Elsewhere: built from the aubellhop sdist's Fortran with gfortran.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.2.1
opt=.venv/opt/aubellhop-$VERSION
link=.venv/bin/bellhop.exe

# A bare run (no input file) stops with "Check the print file": that proves the binary loads and runs.
# It runs in a scratch folder because bellhop.exe writes a .prt file into the current directory.
probe() {
  local dir out
  dir=$(mktemp -d)
  out=$(cd "$dir" && GFORTRAN_ERROR_BACKTRACE=0 "$OLDPWD/$link" </dev/null 2>&1 || true)
  rm -rf "$dir"
  case "$out" in *"Check the print file"*) return 0 ;; *) echo "$out" | head -n 5 >&2; return 1 ;; esac
}

if [ -x "$link" ] && probe 2>/dev/null; then
  echo "setup: bellhop.exe present ($(readlink -f "$link"))"
  exit 0
fi

if [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ]; then
  echo "setup: fetching bellhop.exe from the aubellhop $VERSION wheel"
  rm -rf "$opt"
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --ignore-requires-python --target "$opt" "aubellhop==$VERSION"
  bin=$(readlink -f "$opt/aubellhop/bin/bellhop.exe")
else
  echo "setup: building bellhop.exe from the aubellhop $VERSION sdist (gfortran, sequential make)"
  command -v gfortran >/dev/null || { apt-get update -qq && apt-get install -y -qq gfortran; }
  rm -rf "$opt" && mkdir -p "$opt"
  .venv/bin/python -m pip download -q --no-deps --no-binary=:all: -d "$opt" "aubellhop==$VERSION"
  tar -xzf "$opt"/aubellhop-"$VERSION".tar.gz -C "$opt"
  make -C "$opt/aubellhop-$VERSION/fortran"
  bin=$(readlink -f "$(find "$opt" -name bellhop.exe -type f | head -n 1)")
fi
ln -sfn "$bin" "$link"
if ! probe; then
  echo "setup: bellhop.exe at $link does not run" >&2
  exit 1
fi
echo "setup: bellhop.exe -> $bin"
