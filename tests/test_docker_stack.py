"""docker/ built and run: both images on a local Debian base image, the compose stack on the host network, a synthetic
patient imported through it, labels submitted through the API, the ranking switch seen in Label Studio, then
``down -v`` leaving nothing of the project. Skipped only where no docker daemon can run (tests/allowed_skips.txt).

The first run makes the base image with debootstrap (reused after) and builds the images cold; build and start times
are printed (``-s``) and written to ``docker_timings.json`` in the test's folder (docs/deployment.md quotes them).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml  # type: ignore[import-untyped]  # no stubs installed
from docker_stack import (
    BACKEND_IMAGE,
    DOCKER_DIR,
    LABEL_STUDIO_IMAGE,
    POSTGRES_IMAGE,
    REDIS_IMAGE,
    DockerUnavailable,
    build_image,
    build_postgres_image,
    build_redis_image,
    compose_tool,
    container_health,
    fill_wheelhouse,
    host_network_compose,
    make_base_image,
    project_leftovers,
    run,
    running_daemon,
    write_compose,
)
from helpers import BACKEND_AUTH, BACKEND_CREDENTIALS, BackendServer, import_patient, port_is_open, wait_for
from studio_server import StudioServer, free_port, health_is_up, stop_process

from converters.labelconfig import window_result
from converters.synthetic import PATIENTS, write_bids

pytestmark = [pytest.mark.docker, pytest.mark.slow]


class Stack(NamedTuple):
    """The compose stack started by the ``stack`` fixture."""

    studio: StudioServer
    backend: BackendServer  # root/stores is the folder bind-mounted as the backend's WINDOW_STORE_DIR
    compose: list[str]  # the compose command with its project and file, to append a subcommand to
    project: str
    log: Path  # the services' logs, followed while the stack runs
    profile: str  # "default"; "redis": retrainings on the RQ worker of the Redis profile; "postgres": Label Studio's
    # database in PostgreSQL
    start_seconds: float  # from `up` until Label Studio and the backend are healthy
    ports: dict[str, int]  # each service's port on 127.0.0.1


@pytest.fixture(scope="module")
def docker_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    try:
        with running_daemon(tmp_path_factory.mktemp("dockerd") / "dockerd.log"):
            yield
    except DockerUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def timings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, float]]:
    """Seconds of each build and start, written out at the end."""
    measured: dict[str, float] = {}
    yield measured
    print(f"\ndocker timings (s): {measured}")
    (tmp_path_factory.mktemp("timings") / "docker_timings.json").write_text(json.dumps(measured, indent=1))


@pytest.fixture(scope="module")
def images(docker_daemon: None, timings: dict[str, float], tmp_path_factory: pytest.TempPathFactory) -> None:
    """The base image (made once), the wheelhouse's CPU torch, then both images built on them."""
    started = time.perf_counter()
    made = make_base_image(tmp_path_factory.mktemp("base"))
    if made:
        timings["base_image"] = time.perf_counter() - started
    fill_wheelhouse()
    timings["backend_build"] = build_image("Dockerfile", BACKEND_IMAGE, "TORCH_INDEX_URL=https://pypi.org/simple")
    timings["label_studio_build"] = build_image("Dockerfile.label-studio", LABEL_STUDIO_IMAGE)


@pytest.fixture(scope="module")
def redis_image(images: None, timings: dict[str, float]) -> str:
    """Debian's redis-server on the base image, for the Redis profile (its official image cannot be pulled)."""
    timings["redis_build"] = build_redis_image()
    return REDIS_IMAGE


@pytest.fixture(scope="module")
def postgres_image(images: None, timings: dict[str, float]) -> str:
    """Debian's PostgreSQL on the base image, for the PostgreSQL profile (its official image cannot be pulled)."""
    timings["postgres_build"] = build_postgres_image()
    return POSTGRES_IMAGE


@pytest.fixture(params=["default", "redis", "postgres"])
def stack(
    request: pytest.FixtureRequest,
    images: None,
    timings: dict[str, float],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Stack]:
    """compose.yaml up (``--profile redis`` or ``--profile postgres`` for those parameters, as an administrator
    would with DJANGO_DB=default in docker/.env for PostgreSQL) on the host network with the images built here;
    ``down -v`` after."""
    for name, value in BACKEND_AUTH.items():  # the importer connects the backend with the same settings
        monkeypatch.setenv(name, value)
    ports = {"label-studio": free_port(), "backend": free_port()}
    profile_options: list[str] = []
    service_images: dict[str, str] = {}
    settings: dict[str, str] = {}
    if request.param != "default":
        ports[request.param], profile_options = free_port(), ["--profile", request.param]
        service_images[request.param] = request.getfixturevalue(f"{request.param}_image")
    if request.param == "postgres":
        settings["DJANGO_DB"] = "default"
    stores = tmp_path / "stores"
    stores.mkdir()
    stores.chmod(0o755)  # read by the backend's non-root user
    studio = StudioServer(f"http://127.0.0.1:{ports['label-studio']}", secrets.token_hex(20), "admin@localhost",
                          secrets.token_urlsafe(12), tmp_path)  # fmt: skip
    compose_file = host_network_compose(yaml.safe_load((DOCKER_DIR / "compose.yaml").read_text()), ports,
                                        service_images)  # fmt: skip
    project = f"spike-al-test-{uuid.uuid4().hex[:8]}"
    empty_env_file = tmp_path / "empty.env"  # not the administrator's docker/.env
    empty_env_file.touch()
    compose = [*compose_tool(), "--project-directory", str(DOCKER_DIR), "-p", project, "--env-file",
               str(empty_env_file), "-f", str(write_compose(tmp_path / "compose.yaml", compose_file)),
               *profile_options]  # fmt: skip
    settings |= {"LABEL_STUDIO_API_KEY": studio.token, "LABEL_STUDIO_PASSWORD": studio.password,
                "LABEL_STUDIO_USERNAME": studio.username, "LABEL_STUDIO_IMAGE": LABEL_STUDIO_IMAGE,
                "WINDOW_STORE_HOST_DIR": str(stores), "RETRAIN_DEBOUNCE_SECONDS": "1"}  # fmt: skip
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    log = tmp_path / "compose.log"
    follower = None
    try:
        started = time.perf_counter()
        run([*compose, "up", "-d"])
        with open(log, "w") as out:
            follower = subprocess.Popen([*compose, "logs", "-f", "--no-color"], stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # fmt: skip
        backend = BackendServer(f"http://127.0.0.1:{ports['backend']}", tmp_path)
        wait_for(lambda: health_is_up(studio.url) and container_health(project, "backend") == "healthy",
                 "Label Studio and the backend healthy", log)  # fmt: skip
        timings[f"stack_start_{request.param}"] = start_seconds = time.perf_counter() - started
        yield Stack(studio, backend, compose, project, log, request.param, start_seconds, ports)
    finally:
        run([*compose, "down", "-v"])
        if follower is not None:
            stop_process(follower)


def test_compose_stack_imports_labels_and_switches_the_ranking(stack):
    from label_studio_sdk import LabelStudio

    studio, backend = stack.studio, stack.backend
    assert health_is_up(backend.url, BACKEND_CREDENTIALS) and not health_is_up(backend.url)  # auth on /health too
    source = write_bids(backend.root / "bids", "p05", PATIENTS["C"], 60)
    project_id, _ = import_patient(studio, backend, source, "P05", "--events", "predictions")
    client = LabelStudio(base_url=studio.url, api_key=studio.token)
    tasks: list[Any] = list(client.tasks.list(project=project_id, fields="all"))
    truth = {t.id: t.predictions[0].result[-1]["value"]["choices"][0] for t in tasks}
    spikes = [t for t in tasks if truth[t.id] == "Spike"][:5]
    quiet = [t for t in tasks if truth[t.id] == "No spike"][:5]
    for task in spikes + quiet:
        client.annotations.create(id=task.id, result=[window_result(truth[task.id])])

    def trained_version() -> str | None:  # the backend's versions after a training; "cold-start" before
        version = client.projects.get(project_id).model_version or ""
        return version if version.startswith(f"p{project_id}-v") else None

    version = wait_for(trained_version, "a trained ranking live in Label Studio", stack.log)
    trainer = "worker" if stack.profile == "redis" else "backend"  # with Redis the RQ worker trains, not the web
    wait_for(lambda: f"live as {version}" in run([*stack.compose, "logs", "--no-color", trainer]).stdout,
             f"the {trainer}'s log of ranking {version}", stack.log)  # fmt: skip

    if stack.profile == "postgres":  # Label Studio's tasks are in PostgreSQL, not in a SQLite file
        query = ["exec", "-T", "postgres", "psql", "-h", "/run/postgresql", "-p", str(stack.ports["postgres"]), "-U",
                 "labelstudio", "-d", "labelstudio", "-tAc", f"SELECT count(*) FROM task WHERE project_id={project_id}",
                 ]  # fmt: skip
        counted = run([*stack.compose, *query])  # the container's socket: trusted, as in the official image
        assert int(counted.stdout.strip()) == len(tasks)

    run([*stack.compose, "down", "-v"])
    assert project_leftovers(stack.project) == []
    assert not port_is_open(int(studio.url.rsplit(":", 1)[1]))
    assert not port_is_open(int(backend.url.rsplit(":", 1)[1]))
