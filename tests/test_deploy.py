"""The deployment files (docker/) parsed: the compose file and the Dockerfiles against the backend's settings and the
commands the README runs. tests/test_docker_stack.py builds the images and runs the stack."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from helpers import serving

from ls_backend.app import create_app
from ls_backend.config import Settings

DOCKER = Path(__file__).resolve().parents[1] / "docker"
README = DOCKER.parent / "README.md"
SETTING_NAMES = [field.name.upper() for field in fields(Settings)]
VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])(.*))?\}")  # ${NAME}, ${NAME:-default}, ${NAME:?message}


def load_healthcheck() -> ModuleType:
    """docker/healthcheck.py as a module (it is a script in the image, not part of a package)."""
    spec = importlib.util.spec_from_file_location("healthcheck", DOCKER / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> dict[str, list[str]]:
    """Dockerfile instructions: name -> the arguments of each occurrence (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    instructions: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, args = line.strip().partition(" ")
            instructions.setdefault(name.upper(), []).append(args.strip())
    return instructions


def readme_command(prefix: str) -> list[str]:
    """The first README line that starts with ``prefix`` (inside a code block), split like a shell would."""
    for line in README.read_text().splitlines():
        if line.strip().startswith(prefix):
            return shlex.split(line.split("#")[0])
    raise AssertionError(f"the README runs no command starting with {prefix!r}")


def test_services_ports_and_profiles(compose):
    services = compose["services"]
    assert set(services) == {"label-studio", "backend", "redis", "worker", "postgres"}
    # the official image unless LABEL_STUDIO_IMAGE names another (docker/Dockerfile.label-studio builds one)
    assert re.fullmatch(
        r"\$\{LABEL_STUDIO_IMAGE:-heartexlabs/label-studio:1\.23\.\d+\}", services["label-studio"]["image"]
    )
    assert services["label-studio"]["ports"][0].endswith(":8080")
    assert services["backend"]["ports"][0].endswith(":9090")
    assert services["backend"]["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert "profiles" not in services["label-studio"] and "profiles" not in services["backend"]
    assert services["redis"]["profiles"] == services["worker"]["profiles"] == ["redis"]
    assert services["postgres"]["profiles"] == ["postgres"]
    assert services["worker"]["image"] == services["backend"]["image"]


def test_every_backend_setting_is_in_compose_with_its_default(compose):
    for service in ("backend", "worker"):
        env = compose["services"][service]["environment"]
        assert set(SETTING_NAMES) <= set(env), f"{service}: missing {set(SETTING_NAMES) - set(env)}"
    for name, value in compose["services"]["backend"]["environment"].items():
        match = VARIABLE.fullmatch(str(value))
        if match and match.group(2) == ":-":  # a default written in compose must be the backend's own
            assert Settings.from_env({name: match.group(3)}) == Settings(), f"{name}: compose default differs"


def test_every_environment_variable_is_explained_beside_it():
    unexplained = []
    for line in (DOCKER / "compose.yaml").read_text().splitlines():
        if re.match(r"\s+[A-Z][A-Z0-9_]+: ", line) and "#" not in line:
            unexplained.append(line.strip())
    assert unexplained == []


def test_label_studio_accepts_a_backend_on_the_private_network(compose):
    env = compose["services"]["label-studio"]["environment"]
    assert env["ML_BLOCK_LOCAL_IP"] == "false"
    assert env["SSRF_PROTECTION_ENABLED"] == "false"
    text = (DOCKER / "compose.yaml").read_text()
    assert "reserved network address" in text  # the reason, next to them
    assert env["LABEL_STUDIO_USER_TOKEN"] == compose["services"]["backend"]["environment"]["LABEL_STUDIO_API_KEY"]
    assert "--enable-legacy-api-token" in compose["services"]["label-studio"]["command"]
    assert compose["services"]["backend"]["environment"]["LABEL_STUDIO_URL"] == "http://label-studio:8080"


def test_volumes_hold_the_models_and_window_stores(compose, dockerfile):
    volumes = compose["services"]["backend"]["volumes"]
    assert compose["services"]["worker"]["volumes"] == volumes  # the worker trains on the same files
    targets = {v.rsplit(":", 1)[1] for v in volumes}
    env = compose["services"]["backend"]["environment"]
    assert {env["MODEL_DIR"], env["WINDOW_STORE_DIR"]} == targets
    assert json.loads(dockerfile["VOLUME"][0]) == sorted(targets)
    named = {v.rsplit(":", 1)[0] for service in compose["services"].values() for v in service.get("volumes", [])}
    assert {name for name in named if not name.startswith(("$", ".", "/"))} == set(compose["volumes"])


def test_healthchecks_and_startup_order(compose, dockerfile):
    services = compose["services"]
    for name in ("label-studio", "redis", "postgres"):
        assert services[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    assert "/health" in " ".join(services["label-studio"]["healthcheck"]["test"])
    assert "docker/healthcheck.py" in dockerfile["HEALTHCHECK"][0]
    assert services["worker"]["healthcheck"] == {"disable": True}  # the image's check asks a web server
    assert services["backend"]["depends_on"]["label-studio"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["label-studio"]["depends_on"]["postgres"]["required"] is False


def test_image_runs_the_readme_commands(compose, dockerfile):
    assert json.loads(dockerfile["CMD"][0]) == readme_command("gunicorn ")
    worker = compose["services"]["worker"]["command"]
    assert " ".join(worker) in README.read_text()
    assert compose["services"]["worker"]["environment"]["REDIS_URL"].startswith("${REDIS_URL:-redis://redis:6379")
    assert dockerfile["USER"] == ["spike"]  # not root


def test_image_installs_the_pinned_cpu_torch_and_requirements(dockerfile):
    run = " ".join(dockerfile["RUN"])
    assert "download.pytorch.org/whl/cpu" in " ".join(dockerfile["ARG"])
    assert "grep -E '^torch==' requirements.txt" in run  # the pin is read, not written again
    assert "pip_install.sh -r requirements.txt" in run
    copied = {args.split()[0] for args in dockerfile["COPY"]}
    assert {"requirements.txt", "converters", "ls_backend", "label_config"} <= copied


@pytest.fixture
def served_backend() -> Iterator[str]:
    """The backend's HTTP layer with basic auth, served on a free port (no model: /health does not need one)."""
    with serving(create_app(Settings(basic_auth_user="u", basic_auth_pass="p"), engine=None)) as url:
        yield f"{url}/health"


def test_healthcheck_sends_the_backend_credentials(served_backend):
    healthcheck = load_healthcheck()
    assert healthcheck.is_healthy(served_backend, {"BASIC_AUTH_USER": "u", "BASIC_AUTH_PASS": "p"})
    assert not healthcheck.is_healthy(served_backend, {})
    assert not healthcheck.is_healthy("http://127.0.0.1:9/health", {})


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.label-studio"])
def test_images_take_their_base_and_read_the_ca_bundle_as_a_secret(name):
    text = (DOCKER / name).read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim\nFROM \$\{BASE_IMAGE\}$", text, re.MULTILINE)
    assert "--mount=type=secret,id=ca" in text and "--mount=type=bind,source=docker," in text
    assert "ca-certificates" not in text and "/run/secrets" not in text.split("RUN", 1)[0]  # no bundle in a layer
    ignored = (DOCKER / f"{name}.dockerignore").read_text().splitlines()
    assert {"**", "!docker/pip_install.sh", "!docker/wheelhouse/"} <= set(ignored)


def test_pip_helper_trusts_the_secret_and_prefers_the_wheelhouse():
    text = (DOCKER / "pip_install.sh").read_text()
    assert "PIP_CERT=/run/secrets/ca" in text
    assert "--find-links /build/docker/wheelhouse" in text
