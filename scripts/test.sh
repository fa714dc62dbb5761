#!/usr/bin/env bash
# The test suite: unit tests on tiny random models, loader tests on ../shared/rwku-data, integration tests, and
# the HTML report in headless Chromium (Debian's package; installed here when missing and we may use apt).
source "$(dirname "$0")/setup.sh"
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then
  as_root=""; [ "$(id -u)" = 0 ] || as_root="sudo -n"
  ($as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq chromium >/dev/null) \
    || echo "could not install chromium: the browser test will be skipped (or fail with RWKU_REQUIRE_BROWSER=1)"
fi
export RWKU_SHARED_DATA="${RWKU_SHARED_DATA:-$(cd .. && pwd)/shared/rwku-data}"
[ -d "$RWKU_SHARED_DATA" ] || unset RWKU_SHARED_DATA
python -m pytest -q "$@"
