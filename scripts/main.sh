#!/usr/bin/env bash
# The main job: Before, ICU, GA and NPO (LoRA) on the bundled demo targets with the embedded default model,
# then the report (Table 1, figures, HTML) in runs/demo-report.
source "$(dirname "$0")/setup.sh"
rwku unlearn --model smollm2-135m --data demo --targets all --method icu,ga,npo --mode lora --out runs/demo "$@"
rwku report runs/demo --out runs/demo-report --title "RWKU demo · SmolLM2-135M · Before, ICU, GA, NPO (LoRA)"
