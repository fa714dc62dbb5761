#!/usr/bin/env bash
# The main job: Before, ICU, GA and NPO (LoRA) on the bundled demo targets with smollm2-135m-demo (the embedded
# default model taught the demo facts of Newton and Curie; Mozart is the control, left as the base model knows him;
# built once on first use, docs/knowledge-tools.md: "A model that knows its targets"), then the report (Table 1, figures, HTML) in
# runs/demo-report. The same job with the base model: rwku unlearn --model smollm2-135m ... --out runs/demo-base.
source "$(dirname "$0")/setup.sh"
rwku unlearn --model smollm2-135m-demo --data demo --targets all --method icu,ga,npo --mode lora --out runs/demo "$@"
rwku report runs/demo --out runs/demo-report \
  --title "RWKU demo · smollm2-135m-demo (SmolLM2-135M taught the demo facts; Mozart the control) · Before, ICU, GA, NPO (LoRA)"
