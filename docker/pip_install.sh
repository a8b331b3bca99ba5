#!/bin/sh
# pip install during an image build (both Dockerfiles run it from a bind mount of docker/, so it is in no layer).
# - trusts the CA bundle given as the build secret "ca" (a proxy's or hospital's CA), never copied into a layer;
# - looks in the wheelhouse docker/wheelhouse (wheels from `pip download`) before any index, so wheels there are
#   used as they are (e.g. the CPU torch); with the build argument PIP_NO_INDEX=1 it uses nothing else (offline).
set -eu
if [ -s /run/secrets/ca ]; then
    export PIP_CERT=/run/secrets/ca
fi
exec python -m pip install --find-links /build/docker/wheelhouse "$@"
