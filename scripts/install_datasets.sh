#!/usr/bin/env bash
# Install the real datasets that ship as Debian packages (see shared/DATA.md) and print where they live.
#
#   bash scripts/install_datasets.sh            # all of them
#   bash scripts/install_datasets.sh PACKAGE..  # only these (dataset-fashion-mnist, tuxpaint-stamps-default,
#                                               #             openclipart-png)
#
# Idempotent: packages already installed are skipped, and `apt-get update` runs only when something is
# missing. Needs root (or sudo) and access to a Debian/Ubuntu archive. sklearn digits need no package
# (they ship with scikit-learn: pip install scikit-learn).
set -euo pipefail

ALL=(dataset-fashion-mnist tuxpaint-stamps-default openclipart-png)
PACKAGES=("${@:-${ALL[@]}}")

declare -A WHERE=(
  [dataset-fashion-mnist]="/usr/share/datasets/fashion-mnist"
  [tuxpaint-stamps-default]="/usr/share/tuxpaint/stamps"
  [openclipart-png]="/usr/share/openclipart/png"
)
declare -A SPEC=(
  [dataset-fashion-mnist]="fashion-mnist"
  [tuxpaint-stamps-default]="tuxpaint"
  [openclipart-png]="openclipart"
)

for p in "${PACKAGES[@]}"; do
  if [[ -z "${WHERE[$p]:-}" ]]; then
    echo "unknown dataset package: $p (known: ${ALL[*]})" >&2
    exit 2
  fi
done

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else echo "run as root (or install sudo)" >&2; exit 1; fi
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

MISSING=()
for p in "${PACKAGES[@]}"; do
  if installed "$p"; then echo "already installed: $p"; else MISSING+=("$p"); fi
done

if ((${#MISSING[@]})); then
  echo "installing: ${MISSING[*]}"
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${MISSING[@]}"
fi

echo
echo "datasets:"
for p in "${PACKAGES[@]}"; do
  if [[ -d "${WHERE[$p]}" ]]; then state="ok"; else state="MISSING"; fi
  printf '  %-25s %-36s spec %-14s %s\n' "$p" "${WHERE[$p]}" "${SPEC[$p]}" "$state"
done
printf '  %-25s %-36s spec %-14s %s\n' "(scikit-learn)" "sklearn.datasets.load_digits" "digits" "pip install scikit-learn"
