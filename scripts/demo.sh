#!/usr/bin/env bash
# The README's first command: install (idempotent), then the end-to-end demo on the embedded spiking XOR tasks:
# train a vanilla SFNN and a 1-branch DH-SFNN on the delayed XOR and a 2-branch DH-SFNN on the multi-timescale XOR
# with the Lightning CLI, print their test accuracies, write plots, export the DH model to NIR and run it on Lava.
# Extra arguments go to `norse-dh demo` (e.g. --out DIR, --quick).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_venv.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec .venv/bin/norse-dh demo "$@"
