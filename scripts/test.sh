#!/usr/bin/env bash
# The test suite: unit tests on tiny random models, loader tests on ../shared/rwku-data, integration tests.
source "$(dirname "$0")/setup.sh"
export RWKU_SHARED_DATA="${RWKU_SHARED_DATA:-$(cd .. && pwd)/shared/rwku-data}"
[ -d "$RWKU_SHARED_DATA" ] || unset RWKU_SHARED_DATA
python -m pytest -q "$@"
