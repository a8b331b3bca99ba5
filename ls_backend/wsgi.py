"""gunicorn entry point: ``gunicorn 'ls_backend.wsgi:app'`` (settings from the environment, see README)."""

from .app import make_server_app
from .engine import SpikeEngine
from .retrain import retraining_job

app = make_server_app(SpikeEngine, retraining_job)
