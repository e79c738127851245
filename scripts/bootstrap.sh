#!/usr/bin/env bash
# Installs everything the bot and its tests need on a Debian/Ubuntu machine, and nothing that is already there:
#  - required Debian packages: bubblewrap (sandbox isolation), Python with the libraries the runner and the
#    tests use, python3-seccomp (sandbox hardening);
#  - optional Debian packages: every library of sandbox-image/requirements.txt that Debian packages, so the
#    local sandbox is close to the Cloud Run image, and passt (`pasta`, user-mode networking for the sandbox).
#    One that this distribution does not package is named in a warning and skipped;
#  - npm packages (npm ci), when package-lock.json changed since the last run;
#  - the runner's bytecode (sandbox-image/__pycache__, ignored by git; compileall skips what is current).
# Fast when everything is installed: one dpkg-query, no apt, no npm. Packages found missing from the
# distribution are remembered (per state of the apt lists), so they cost no apt query on later runs.
#
# Not packaged by Debian bookworm, so only in the Cloud Run image: pandas-datareader, mplfinance, yfinance,
# ffmpeg-python, easyocr, pyarrow. Left out on purpose: fonts-noto-cjk (CJK glyphs in charts; the image has
# them): locally matplotlib builds its font cache once per thread workspace, and these fonts make that slow.
# The controller tells the model only what the local Python can import.
set -euo pipefail
cd "$(dirname "$0")/.."

required=(bubblewrap python3 python3-dill python3-numpy python3-pandas python3-matplotlib python3-openpyxl
  python3-nbformat python3-seccomp)

# Debian names of the libraries in sandbox-image/requirements.txt and of the programs they drive.
# "a|b": the first of a and b that this distribution packages (names differ between releases).
optional=(
  python3-seaborn python3-sklearn python3-requests python3-scrapy python3-bs4 python3-opencv
  'python3-pymupdf|python3-fitz' python3-pyocr tesseract-ocr tesseract-ocr-eng tesseract-ocr-jpn
  python3-pydub ffmpeg python3-pdfkit wkhtmltopdf 'python3-weasyprint|weasyprint' python3-xlrd
  python3-pyarrow passt
)
# The jail's network (issue 14): ip sets its routes; slirp4netns stands in where pasta (passt) is missing.
required+=(iproute2); optional+=(slirp4netns)

unpackaged_stamp="${XDG_CACHE_HOME:-$HOME/.cache}/slack-code-interpreter/bootstrap-unpackaged"

warn() { echo "bootstrap: warning: $*" >&2; }

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
apt_get() { DEBIAN_FRONTEND=noninteractive $sudo apt-get "$@"; }

# Prints the entries ("a|b" counts as one) of which no package is installed, with one dpkg-query call.
not_installed() {
  local names have entry alternative alternatives found
  read -r -a names <<<"$(printf '%s ' "$@" | tr '|' ' ')"
  have=" $(dpkg-query -W -f='${Package} ${Status}\n' "${names[@]}" 2>/dev/null | awk '$NF == "installed" { printf "%s ", $1 }' || true) "
  for entry in "$@"; do
    found=false
    IFS='|' read -r -a alternatives <<<"$entry"
    for alternative in "${alternatives[@]}"; do [[ "$have" == *" $alternative "* ]] && found=true; done
    $found || echo "$entry"
  done
}

# Prints, for each entry, the first alternative apt can install, or "-" when there is none (one apt-cache call).
installable() {
  local names candidates entry alternative alternatives chosen
  read -r -a names <<<"$(printf '%s ' "$@" | tr '|' ' ')"
  candidates=" $(apt-cache policy "${names[@]}" 2>/dev/null |
    awk '/^[^ ]/ { package = $1; sub(/:$/, "", package) } /Candidate:/ && $2 != "(none)" { printf "%s ", package }') "
  for entry in "$@"; do
    chosen="-"
    IFS='|' read -r -a alternatives <<<"$entry"
    for alternative in "${alternatives[@]}"; do
      if [[ "$candidates" == *" $alternative "* ]]; then chosen="$alternative"; break; fi
    done
    echo "$chosen"
  done
}

apt_lists_signature() {
  { stat -c '%n %Y' /var/lib/apt/lists/*Packages* 2>/dev/null || true; } | sha256sum | cut -c1-16
}

apt_lists_fresh() {
  [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -n 1)" ]
}

# Installs what the arguments name; adds the entries apt does not have to `unpackaged`; exits non-zero
# when a required package cannot be had.
unpackaged=()
install_missing() {
  local missing=("$@") choices=() to_install=() index entry
  if [ ! -d /var/lib/apt/lists ] || [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' | head -n 1)" ]; then
    echo "bootstrap: apt-get update"
    apt_get update -qq
  fi
  mapfile -t choices < <(installable "${missing[@]}")
  # A package without a candidate may only be missing from old lists: refresh once (at most daily).
  if [[ " ${choices[*]} " == *" - "* ]] && ! apt_lists_fresh; then
    echo "bootstrap: apt-get update"
    apt_get update -qq
    mapfile -t choices < <(installable "${missing[@]}")
  fi
  for index in "${!missing[@]}"; do
    entry="${missing[$index]}"
    if [ "${choices[$index]}" != "-" ]; then to_install+=("${choices[$index]}"); continue; fi
    if [[ " ${required[*]} " == *" $entry "* ]]; then echo "bootstrap: $entry is required but apt has no such package" >&2; exit 1; fi
    warn "${entry//|/ or } is not packaged here; skipped"
    unpackaged+=("$entry")
  done
  [ "${#to_install[@]}" -gt 0 ] || return 0
  echo "bootstrap: installing Debian packages: ${to_install[*]}"
  # Lists fresh enough to name a version can still point at a file the mirror has dropped: refresh, retry once.
  if ! apt_get install -y -qq --no-install-recommends "${to_install[@]}" >/dev/null; then
    apt_get update -qq
    apt_get install -y -qq --no-install-recommends "${to_install[@]}" >/dev/null
  fi
}

install_debian_packages() {
  local missing=() known_unpackaged=() entry
  mapfile -t missing < <(not_installed "${required[@]}" "${optional[@]}")
  [ "${#missing[@]}" -gt 0 ] || return 0
  if [ -f "$unpackaged_stamp" ] && [ "$(head -n 1 "$unpackaged_stamp")" = "$(apt_lists_signature)" ]; then
    mapfile -t known_unpackaged < <(tail -n +2 "$unpackaged_stamp")
  fi
  local still_missing=()
  for entry in "${missing[@]}"; do
    if [[ " ${known_unpackaged[*]} " == *" $entry "* ]]; then warn "${entry//|/ or } is not packaged here; skipped"; else still_missing+=("$entry"); fi
  done
  [ "${#still_missing[@]}" -gt 0 ] || return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: no apt-get here; please install with your package manager (${required[*]} are required): ${still_missing[*]}" >&2
    return 0
  fi
  unpackaged=("${known_unpackaged[@]}")
  install_missing "${still_missing[@]}"
  { mkdir -p "$(dirname "$unpackaged_stamp")" && printf '%s\n' "$(apt_lists_signature)" "${unpackaged[@]}" >"$unpackaged_stamp"; } 2>/dev/null || true
}

install_debian_packages

stamp=node_modules/.bootstrap-lock-hash
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

# The runner's folder is read-only inside the jail, so Python cannot cache its bytecode there at run
# time: compile it once here (as the sandbox image does), or every step compiles the runner's modules.
for python in /usr/bin/python3 "${SANDBOX_PYTHON:-}"; do
  if [ -n "$python" ] && command -v "$python" >/dev/null 2>&1; then
    "$python" -m compileall -q sandbox-image >/dev/null || true
  fi
done
