"""Docker for the tests: the daemon, the images of docker/ built on a local base image, and the compose stack.

No image registry is reachable from the test machines, so nothing is pulled:

- the base image is made from Debian's packages (``debootstrap --variant=minbase`` + python3 and its venv module,
  then ``docker import``) and kept between runs (:data:`BASE_IMAGE`); both Dockerfiles take it as ``BASE_IMAGE``;
- pip inside the builds reaches PyPI with the host's CA bundle, given as the build secret ``ca`` (never in a layer),
  and torch's CPU wheel comes from the wheelhouse ``docker/wheelhouse`` (``pip download`` on the host);
- images are built with ``docker build`` (BuildKit: build secrets), compose only runs them;
- compose.yaml is run with every service on the host network (loopback, free ports), written out by
  :func:`host_network_compose`, with the legacy ``docker-compose`` 1.29 where the compose v2 plugin is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # no stubs installed
from studio_server import REPO_ROOT, log_tail, stop_process

DOCKER_DIR = REPO_ROOT / "docker"
DOCKER = os.environ.get("DOCKER_BIN", "docker")
DEBIAN_DOCKER = "/usr/bin/docker"  # Debian's docker.io client (20.10: BuildKit built in, no buildx plugin needed)
BASE_IMAGE = "spike-al-base:bookworm"  # made once by debootstrap, reused by later runs
BASE_PACKAGES = ("python3", "python3-venv", "passwd")  # the Dockerfiles' needs: python3 -m venv, useradd
DEBIAN_MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
CA_BUNDLE = Path(os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt"))  # the host's, for pip in builds
BACKEND_IMAGE = "spike-al-backend:0.1.0"  # compose.yaml's backend image
LABEL_STUDIO_IMAGE = "spike-al-label-studio:1.23.2"  # built from docker/Dockerfile.label-studio
REDIS_IMAGE = "spike-al-redis:bookworm"  # Debian's redis-server, for the Redis profile (no redis image to pull)
POSTGRES_IMAGE = "spike-al-postgres:bookworm"  # Debian's PostgreSQL 15, for the PostgreSQL profile
POSTGRES_BIN = "/usr/lib/postgresql/15/bin"
# What the official postgres image does at its first start, for Debian's server: a cluster in PGDATA owned by
# POSTGRES_USER (password auth over TCP, trust on the container's own socket), POSTGRES_DB created; then the server.
POSTGRES_ENTRYPOINT = f"""#!/bin/sh
set -e
[ "$1" = postgres ] && shift
export PGDATA="${{PGDATA:-/var/lib/postgresql/data}}"
mkdir -p "$PGDATA" /run/postgresql && chown -R postgres:postgres "$PGDATA" /run/postgresql && chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  printf '%s\n' "$POSTGRES_PASSWORD" > /run/postgresql/pw && chown postgres /run/postgresql/pw
  runuser -u postgres -- {POSTGRES_BIN}/initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile=/run/postgresql/pw \
    --auth-local=trust --auth-host=scram-sha-256
  rm /run/postgresql/pw
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  runuser -u postgres -- {POSTGRES_BIN}/pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
  runuser -u postgres -- createdb -U "$POSTGRES_USER" "$POSTGRES_DB"
  runuser -u postgres -- {POSTGRES_BIN}/pg_ctl -D "$PGDATA" -m fast -w stop
fi
exec runuser -u postgres -- {POSTGRES_BIN}/postgres -D "$PGDATA" "$@"
"""
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # an imported image has no ENV


class DockerUnavailable(Exception):
    """No docker daemon can run on this machine (the reason says why)."""


def run(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
    """Run a command quietly; on failure raise with its output's end."""
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{output}")
    return result


def succeeds(command: Sequence[str]) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


def daemon_is_up() -> bool:
    return shutil.which(DOCKER) is not None and succeeds([DOCKER, "info"])


@contextmanager
def running_daemon(log: Path) -> Iterator[None]:
    """A docker daemon for the block: the running one, else ``dockerd`` started here as root (stopped after)."""
    if daemon_is_up():
        yield
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None or shutil.which(DOCKER) is None:
        raise DockerUnavailable("no docker daemon can run here: docker.io is not installed (scripts/install.sh)")
    if os.geteuid() != 0:
        raise DockerUnavailable(
            "no docker daemon can run here: none answers (not running, or its socket is not open to this user) "
            "and only root may start dockerd"
        )
    with open(log, "w") as out:
        process = subprocess.Popen([dockerd], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not daemon_is_up():
            if process.poll() is not None or time.monotonic() > deadline:
                raise DockerUnavailable(f"no docker daemon can run here: dockerd did not start:\n{log_tail(log)}")
            time.sleep(0.5)
        yield
    finally:
        stop_process(process)


def image_exists(tag: str) -> bool:
    return succeeds([DOCKER, "image", "inspect", tag])


def make_base_image(workdir: Path) -> bool:
    """:data:`BASE_IMAGE` from Debian bookworm's packages, unless it exists already; whether it was made now."""
    if image_exists(BASE_IMAGE):
        return False
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=workdir))
    try:
        run(["nice", "debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", "bookworm",
             str(rootfs), DEBIAN_MIRROR])  # fmt: skip
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / cache).glob("*.*"):
                path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run([DOCKER, "import", "--change", f"ENV PATH={DEFAULT_PATH}", "--change", "ENV LANG=C.UTF-8",
             "-", BASE_IMAGE], stdin=tar.stdout)  # fmt: skip
        tar.wait()
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return True


def fill_wheelhouse() -> None:
    """The CPU torch wheel of requirements.txt in docker/wheelhouse, from the index docker/Dockerfile names."""
    pin = next(line for line in (REPO_ROOT / "requirements.txt").read_text().splitlines() if line.startswith("torch=="))
    index = re.search(r"ARG TORCH_INDEX_URL=(\S+)", (DOCKER_DIR / "Dockerfile").read_text())
    assert index, "docker/Dockerfile names no TORCH_INDEX_URL default"
    run([sys.executable, "-m", "pip", "download", pin, "--no-deps", "--index-url", index.group(1),
         "-d", str(DOCKER_DIR / "wheelhouse")])  # fmt: skip


def buildkit_client() -> str:
    """A docker CLI that builds with BuildKit: ``docker`` with its buildx plugin, else Debian's docker.io client."""
    if succeeds([DOCKER, "buildx", "version"]) or not Path(DEBIAN_DOCKER).exists():
        return DOCKER
    return DEBIAN_DOCKER


def build_image(dockerfile: str, tag: str, *build_args: str, base_image: str = BASE_IMAGE) -> float:
    """``docker build`` of ``docker/<dockerfile>`` (context: the repository) on ``base_image`` with the build
    arguments ``NAME=VALUE``; returns its seconds."""
    command = [buildkit_client(), "build", "-f", f"docker/{dockerfile}", "-t", tag, "--network", "host"]
    for arg in (f"BASE_IMAGE={base_image}", *build_args):
        command += ["--build-arg", arg]
    if CA_BUNDLE.is_file():
        command += ["--secret", f"id=ca,src={CA_BUNDLE}"]
    started = time.perf_counter()
    run(["nice", *command, "."], cwd=REPO_ROOT, env=os.environ | {"DOCKER_BUILDKIT": "1"})
    return time.perf_counter() - started


def build_redis_image(base_image: str = BASE_IMAGE) -> float:
    """:data:`REDIS_IMAGE`: Debian's redis-server on ``base_image`` (data in /data, as the official image); seconds."""
    dockerfile = (f"FROM {base_image}\n"
                  "RUN apt-get update && apt-get install -y --no-install-recommends redis-server"
                  " && rm -rf /var/lib/apt/lists/*\n"
                  "WORKDIR /data\n")  # fmt: skip
    started = time.perf_counter()
    run(["nice", DOCKER, "build", "--network", "host", "-t", REDIS_IMAGE, "-"], input=dockerfile)
    return time.perf_counter() - started


def build_postgres_image(base_image: str = BASE_IMAGE) -> float:
    """:data:`POSTGRES_IMAGE`: Debian's PostgreSQL on ``base_image``, started as the official image is (its
    environment, data in /var/lib/postgresql/data, ``postgres`` arguments); seconds."""
    dockerfile = (f"FROM {base_image}\n"
                  "RUN apt-get update && apt-get install -y --no-install-recommends postgresql"
                  " && rm -rf /var/lib/apt/lists/*\n"
                  "COPY entrypoint.sh /usr/local/bin/\n"
                  'ENTRYPOINT ["/bin/sh", "/usr/local/bin/entrypoint.sh"]\n'
                  'CMD ["postgres"]\n')  # fmt: skip
    with tempfile.TemporaryDirectory() as context:
        (Path(context) / "Dockerfile").write_text(dockerfile)
        (Path(context) / "entrypoint.sh").write_text(POSTGRES_ENTRYPOINT)
        started = time.perf_counter()
        run(["nice", DOCKER, "build", "--network", "host", "-t", POSTGRES_IMAGE, context])
    return time.perf_counter() - started


def compose_tool() -> list[str]:
    """``docker compose`` (v2) where its plugin is installed, else Debian's legacy ``docker-compose`` (1.29)."""
    if succeeds([DOCKER, "compose", "version"]):
        return [DOCKER, "compose"]
    if shutil.which("docker-compose") is None:
        raise RuntimeError("neither `docker compose` nor docker-compose is installed (scripts/install.sh)")
    return ["docker-compose"]


def host_network_compose(compose: dict, ports: Mapping[str, int], images: Mapping[str, str] = {}) -> dict:
    """compose.yaml with every service on the host network, listening on 127.0.0.1 at the free ``ports`` of
    ``label-studio``, ``backend`` and, for the Redis or the PostgreSQL profile (their services included only then),
    ``redis`` or ``postgres``, which run ``images[name]``.

    Also what the legacy docker-compose 1.29 does not read: no top-level ``name`` (the caller passes ``-p``) and no
    ``depends_on: required``, so a dependency on a service of an inactive profile is dropped. Health checks poll
    every 2 s, so the start time measured is the stack's, not the polling's."""
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    active = {"redis", "postgres"} & set(ports)
    result = {key: value for key, value in compose.items() if key != "name"}
    services = result["services"] = {}
    for name, service in compose["services"].items():
        if set(service.get("profiles", [])) <= active:
            services[name] = {key: value for key, value in service.items() if key != "ports"}
    for service in services.values():
        service["network_mode"] = "host"
        depends_on = {name: dep for name, dep in service.get("depends_on", {}).items() if name in services}
        service["depends_on"] = {name: {"condition": dep["condition"]} for name, dep in depends_on.items()}
        if "LABEL_STUDIO_URL" in service.get("environment", {}):
            service["environment"] = service["environment"] | {"LABEL_STUDIO_URL": url["label-studio"]}
            if "redis" in active:
                service["environment"]["REDIS_URL"] = f"redis://127.0.0.1:{ports['redis']}/0"
    studio = services["label-studio"]
    studio["command"] = [*studio["command"], "--port", str(ports["label-studio"]), "--internal-host", "127.0.0.1"]
    studio["environment"] = studio["environment"] | {"LABEL_STUDIO_HOST": url["label-studio"]}
    probe = f"import urllib.request; urllib.request.urlopen('{url['label-studio']}/health', timeout=5)"
    studio["healthcheck"] = fast_healthcheck(["CMD", "python3", "-c", probe])
    backend = services["backend"]
    backend["command"] = ["gunicorn", "--bind", f"127.0.0.1:{ports['backend']}", "--workers", "1", "--threads", "4",
                          "ls_backend.wsgi:app"]  # fmt: skip
    backend["healthcheck"] = fast_healthcheck(["CMD", "python", "docker/healthcheck.py", f"{url['backend']}/health"])
    if "redis" in active:
        redis = services["redis"]
        redis["image"] = images["redis"]
        redis["command"] = [*redis["command"], "--port", str(ports["redis"]), "--bind", "127.0.0.1", "--dir", "/data"]
        redis["healthcheck"] = fast_healthcheck(["CMD", "redis-cli", "-p", str(ports["redis"]), "ping"])
    if "postgres" in active:
        postgres, port = services["postgres"], str(ports["postgres"])
        postgres["image"] = images["postgres"]
        postgres["command"] = ["postgres", "-p", port, "-c", "listen_addresses=127.0.0.1"]
        user, db = postgres["environment"]["POSTGRES_USER"], postgres["environment"]["POSTGRES_DB"]
        ready = f"{POSTGRES_BIN}/pg_isready -h 127.0.0.1 -p {port} -U {user} -d {db}"
        postgres["healthcheck"] = fast_healthcheck(["CMD-SHELL", ready])
        studio["environment"] |= {"POSTGRE_HOST": "127.0.0.1", "POSTGRE_PORT": port}
    return result


def fast_healthcheck(test: list[str]) -> dict:
    return {"test": test, "interval": "2s", "timeout": "5s", "retries": 150}


def write_compose(path: Path, compose: dict) -> Path:
    path.write_text(yaml.safe_dump(compose, sort_keys=False))
    return path


def project_leftovers(project: str) -> list[str]:
    """The containers, volumes and networks docker still has for the compose project ``project``."""
    label = f"label=com.docker.compose.project={project}"
    found = []
    for kind in ("container", "volume", "network"):
        listing = run([DOCKER, kind, "ls", *(["-a"] if kind == "container" else []), "-q", "--filter", label])
        found += [f"{kind} {name}" for name in listing.stdout.split()]
    return found


def container_health(project: str, service: str) -> str:
    """Docker's health status (starting, healthy, unhealthy) of the service's container."""
    label = f"label=com.docker.compose.service={service}"
    ids = run([DOCKER, "ps", "-q", "--filter", f"label=com.docker.compose.project={project}", "--filter", label])
    if not ids.stdout.split():
        return "absent"
    return run([DOCKER, "inspect", "--format", "{{.State.Health.Status}}", *ids.stdout.split()]).stdout.strip()
