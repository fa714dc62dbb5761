#!/usr/bin/env bash
# The main job: Before, ICU, GA and NPO (LoRA) on the bundled demo targets with the embedded default model.
source "$(dirname "$0")/setup.sh"
rwku unlearn --model smollm2-135m --data demo --targets all --method icu,ga,npo --mode lora --out runs/demo "$@"
