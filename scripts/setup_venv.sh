#!/usr/bin/env bash
# Creates or updates .venv at the repository root; idempotent (a stamp keyed by the install inputs skips the
# work when nothing changed). Every pip call gets requirements/constraints.txt so torch stays 2.13.0 (CPU).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
py="${PYTHON:-python3}"
inputs=(requirements/constraints.txt requirements/base.txt requirements/dev.txt requirements/norse.txt
        requirements/lava.txt pyproject.toml scripts/setup_venv.sh)
key="$(cat "${inputs[@]}" | sha256sum | cut -c1-16)"
stamp="$venv/.norse-dh-installed-$key"
if [ -f "$stamp" ]; then
  exit 0
fi
echo "norse-dh: installing into $venv (once; later runs skip this)" >&2
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
# This machine's pip config lists local index folders that may not exist; pip warns once per package. Drop those lines.
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
c=(-c requirements/constraints.txt)
quiet "${pip[@]}" install "${c[@]}" -r requirements/base.txt -r requirements/dev.txt
quiet "${pip[@]}" install "${c[@]}" --no-deps -r requirements/norse.txt
quiet "${pip[@]}" install "${c[@]}" --no-deps --ignore-requires-python -r requirements/lava.txt
quiet "${pip[@]}" install "${c[@]}" --no-deps --no-build-isolation -e .
# Guard the rules that break the stack silently: CPU torch 2.13.0, no torchvision.
"$venv/bin/python" - <<'PY'
import importlib.util, sys
import torch
assert torch.__version__.startswith("2.13.0"), f"torch {torch.__version__} installed, expected 2.13.0 (CPU)"
assert importlib.util.find_spec("torchvision") is None, "torchvision is installed; it breaks pytorch_lightning"
PY
rm -f "$venv"/.norse-dh-installed-*
touch "$stamp"
