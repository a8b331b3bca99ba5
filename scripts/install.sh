#!/usr/bin/env bash
# Install everything the project and its tests need; safe to run again (finished steps are skipped).
#   .venv      the project: requirements.txt + requirements-test.txt, then `pip install -e . --no-deps`
#   .venv-ls   the Label Studio server used by the tests and the demo (it pins many packages: own venv)
#   chromium   Debian's package, driven by Playwright in the browser tests (never `playwright install`)
#   redis-server  Debian's package, for the tests of the RQ retraining workers
#   docker     Debian's docker.io, debootstrap and docker-compose, for the test that builds and runs docker/ (only
#              where apt-get is available and this is root or has sudo; without them that test is skipped)
# Environment: PYTHON (default python3), LABEL_STUDIO_VERSION (default 1.23.2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
LABEL_STUDIO_VERSION="${LABEL_STUDIO_VERSION:-1.23.2}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

say() { echo "[install] $*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

make_venv() {  # make_venv DIR
    if [ -x "$1/bin/python" ]; then return 0; fi
    say "creating $1"
    if ! "$PYTHON" -m venv "$1" 2>/dev/null; then
        rm -rf "$1"
        apt_install python3-venv
        "$PYTHON" -m venv "$1"
    fi
}

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

quiet() {  # run a command, showing its output only when it fails
    local log
    log="$(mktemp)"
    if ! "$@" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        rm -f "$log"
        say "FAILED: $*"
        return 1
    fi
    rm -f "$log"
}

# 1. The project's virtualenv.
make_venv .venv
marker=.venv/.spike-al-installed
want="$(hash_of requirements.txt requirements-test.txt pyproject.toml)"
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ]; then
    say ".venv up to date"
else
    say "installing requirements into .venv (a few minutes the first time)"
    quiet .venv/bin/python -m pip install -r requirements.txt -r requirements-test.txt
    quiet .venv/bin/python -m pip install -e . --no-deps
    echo "$want" > "$marker"
    say ".venv ready"
fi

# 2. The Label Studio server's virtualenv.
make_venv .venv-ls
marker=.venv-ls/.spike-al-installed
want="label-studio==$LABEL_STUDIO_VERSION"
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] && [ -x .venv-ls/bin/label-studio ]; then
    say ".venv-ls up to date ($want)"
else
    say "installing $want into .venv-ls (about a minute)"
    quiet .venv-ls/bin/python -m pip install "$want"
    echo "$want" > "$marker"
    say ".venv-ls ready"
fi

# 3. Debian's Chromium for the browser tests.
if [ -x /usr/bin/chromium ]; then
    say "chromium present"
else
    apt_install chromium fonts-liberation fonts-dejavu-core
    say "chromium installed"
fi

# 4. Debian's Redis for the RQ worker tests (the suite starts its own server on a free port).
if command -v redis-server >/dev/null; then
    say "redis-server present"
else
    apt_install redis-server
    say "redis-server installed"
fi

# 5. Debian's Docker engine, debootstrap (the tests' local base image) and docker-compose, for the docker test.
if command -v dockerd >/dev/null && command -v debootstrap >/dev/null \
    && { command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1; }; then
    say "docker, debootstrap and compose present"
elif ! command -v apt-get >/dev/null || { [ -n "$SUDO" ] && ! sudo -n true 2>/dev/null; }; then
    say "docker not installed (needs apt-get and root or sudo): the docker test will be skipped"
else
    apt_install docker.io debootstrap docker-compose
    say "docker.io, debootstrap and docker-compose installed"
fi
