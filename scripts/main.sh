#!/usr/bin/env bash
# The main job: evaluate the embedded default model on the bundled demo targets and print the Table-1 rows.
source "$(dirname "$0")/setup.sh"
rwku eval --model smollm2-135m --data demo --targets all --out runs/demo "$@"
