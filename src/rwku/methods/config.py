"""Settings of an unlearning run: the fine-tuning mode, the shared training loop, the corpus, each method's own
parameters, the presets, and where every value came from.

A value is resolved in this order (later wins): the field's default, the preset for (method, mode, setting), a
``--config`` JSON file, ``--set key=value`` and an experiment's sweep. Every value keeps its source ("paper,
appendix H", "calibrated here", "--set" ...), printed before a run and stored beside its results, so nobody has
to guess whether a learning rate is the paper's.

Presets: ``paper`` holds the paper's values for Llama-3-8B-Instruct; ``small`` holds values calibrated here for the
~135M default model on a CPU (the paper's rates do not move a model that small). ``--preset auto`` picks ``small``
for the embedded default model and ``paper`` for any other, and says so.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from rwku.errors import RwkuError

PAPER = "paper, appendix H"
PAPER_TEXT = "paper, §4.2"
OFFICIAL = "official scripts"
OFFICIAL_GENERATION = "official corpus generation"
TRAINER_DEFAULT = "Hugging Face Trainer default (the official scripts train with it)"
CALIBRATED = "calibrated here on SmolLM2-135M (docs/methods.md: presets)"
RWKU_DEFAULT = "rwku default"
PRESET_NAMES = ("auto", "paper", "small", "none")
Precision = Literal["auto", "float32", "bf16-mixed", "pure"]
Switch = Literal["auto", "on", "off"]
Optimizer = Literal["adamw", "adamw8bit"]


def source(text: str, default: Any) -> Any:
    """A dataclass field with a default and the provenance of that default."""
    return field(default=default, metadata={"source": text})


@dataclass(frozen=True)
class ModeConfig:
    """Which parameters train: all (``full``), a LoRA adapter (``lora``), optionally only layers a…b−1."""

    mode: str = "lora"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    train_layers: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("full", "lora"):
            raise RwkuError(f"--mode {self.mode}: choose full or lora")
        if self.train_layers is not None and not (0 <= self.train_layers[0] < self.train_layers[1]):
            raise RwkuError(f"--train-layers {self.train_layers[0]}-{self.train_layers[1]}: need a-b with 0 <= a < b")

    @property
    def label(self) -> str:
        layers = f"-layers{self.train_layers[0]}-{self.train_layers[1]}" if self.train_layers else ""
        return f"{self.mode}{layers}"

    def check_fits(self, n_layers: int) -> None:
        """Refuse a layer window past the model's last layer (checked as soon as the model is loaded)."""
        if self.train_layers is not None and self.train_layers[1] > n_layers:
            raise RwkuError(f"--train-layers {self.train_layers[0]}-{self.train_layers[1]}: the model has {n_layers} layers "
                            f"(0-{n_layers}); pick a window inside it")


@dataclass(frozen=True)
class TrainConfig:
    """The shared training loop (the effective batch is ``batch_size × grad_accum``)."""

    lr: float = source(RWKU_DEFAULT, 1e-5)
    batch_size: int = source(RWKU_DEFAULT, 8)
    grad_accum: int = source(OFFICIAL + " (no gradient accumulation)", 1)
    epochs: int = source(RWKU_DEFAULT, 3)
    warmup_steps: int = source(PAPER, 20)
    weight_decay: float = source(TRAINER_DEFAULT, 0.0)
    max_grad_norm: float = source(TRAINER_DEFAULT, 1.0)
    max_length: int = source(PAPER + " (cutoff 512)", 512)
    seed: int = source(PAPER, 42)
    #: auto: float32 on float32 weights; on bfloat16/float16 weights float32 master weights with bfloat16 autocast
    #: (what the official scripts get from the Trainer's mixed precision); ``pure`` trains in the weights' dtype
    precision: Precision = source(RWKU_DEFAULT + " (auto: mixed precision on half-precision weights)", "auto")
    #: auto: on for full tuning on a GPU (recomputes activations in the backward pass: slower, far less memory)
    gradient_checkpointing: Switch = source(RWKU_DEFAULT + " (auto: full tuning on a GPU)", "auto")
    #: adamw8bit: bitsandbytes' 8-bit AdamW (a GPU and the package needed): 2 bytes of state per parameter, not 8
    optimizer: Optimizer = source(TRAINER_DEFAULT + " (AdamW)", "adamw")


@dataclass(frozen=True)
class CorpusConfig:
    """Sizes of the corpora the model writes about the target (and the cap on GA*'s passages)."""

    corpus_size: int = source(OFFICIAL_GENERATION + " (582 texts)", 582)
    question_count: int = source(OFFICIAL_GENERATION + " (300 questions)", 300)
    corpus_max_new_tokens: int = source(OFFICIAL_GENERATION, 512)


@dataclass(frozen=True)
class NoParams:
    """A method without parameters of its own."""


@dataclass(frozen=True)
class Preset:
    """Values for one (preset, mode, setting) of a method, and where they come from."""

    values: Mapping[str, Any]
    source: str


def paper(lr: float, batch: int, epochs: int) -> Preset:
    """Appendix H: learning rate, batch and epochs (the official scripts' per-device batch, no accumulation)."""
    return Preset({"lr": lr, "batch_size": batch, "grad_accum": 1, "epochs": epochs}, PAPER)


#: The small preset of every trained method: few short texts, few large steps (SmolLM2-135M on 2 CPU cores).
SMALL_CORPUS = {"corpus_size": 8, "question_count": 8, "corpus_max_new_tokens": 96, "max_length": 256}


def small(mode: str) -> Preset:
    lr = 3e-3 if mode == "lora" else 5e-5
    return Preset({**SMALL_CORPUS, "lr": lr, "batch_size": 4, "grad_accum": 1, "epochs": 3, "warmup_steps": 0}, CALIBRATED)


def trained_presets(full: tuple[float, int, int], lora: tuple[float, int, int],
                    batch: tuple[float, int, int] | None = None) -> dict[tuple[str, str, str], Preset]:
    """A trained method's presets: the paper's (lr, batch, epochs) for full tuning, LoRA and (where the paper has
    one) full tuning in the batch setting, and ``small`` for both modes; the batch setting falls back to the
    single-target values of a mode it has none for, and says so."""
    presets = {("paper", "full", "single"): paper(*full), ("paper", "lora", "single"): paper(*lora)}
    if batch is not None:
        presets[("paper", "full", "batch")] = paper(*batch)
    return {**presets, **{("small", mode, "single"): small(mode) for mode in ("full", "lora")}}


# ------------------------------------------------------------------ presets of the methods beyond the paper


def sourced(source_text: str, lr: float, batch: int, epochs: int, **params: Any) -> Preset:
    """A preset from a method's own paper (or its reference implementation): lr, batch, epochs and its own values."""
    return Preset({"lr": lr, "batch_size": batch, "grad_accum": 1, "epochs": epochs, **params}, source_text)


def beyond_presets(paper_presets: Mapping[str, Preset], **small_params: Any) -> dict[tuple[str, str, str], Preset]:
    """Presets of a method beyond the RWKU paper: ``paper`` per mode where its paper gives values for a ~7-8B model
    (elsewhere the defaults, "rwku default"), and ``small`` as every trained method's, plus its own values checked
    on the demo (docs/methods.md: Methods beyond the paper)."""
    presets = {("paper", mode, "single"): preset for mode, preset in paper_presets.items()}
    for mode in ("full", "lora"):
        presets[("small", mode, "single")] = Preset({**small(mode).values, **small_params}, CALIBRATED)
    return presets


# ------------------------------------------------------------------ reading values


def parse_range(text: str) -> tuple[int, int]:
    """``"4-8"`` -> ``(4, 8)``."""
    try:
        low, high = (int(x) for x in str(text).split("-"))
    except ValueError as exc:
        raise RwkuError(f"{text!r}: expected a range like 4-8") from exc
    return low, high


def convert(key: str, value: Any, hint: Any) -> Any:
    """``value`` (from the command line, a JSON file or a sweep) as the type of field ``key``; one-line error if not."""
    optional = type(None) in typing.get_args(hint)
    kind = next((a for a in typing.get_args(hint) if a is not type(None)), hint) if optional else hint
    if value is None or (optional and str(value).lower() in ("none", "null")):
        if optional:
            return None
        raise RwkuError(f"{key}: needs a value")
    origin = typing.get_origin(kind)
    if origin is Literal:
        if value not in typing.get_args(kind):
            raise RwkuError(f"{key}={value}: {key} takes one of {', '.join(map(str, typing.get_args(kind)))}")
        return value
    try:
        if origin is tuple:
            return parse_range(value) if isinstance(value, str) else tuple(int(v) for v in value)
        if kind is bool:
            if isinstance(value, str) and value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1") if isinstance(value, str) else bool(value)
        if kind is int:
            number = float(value)
            if number != int(number):
                raise ValueError(value)
            return int(number)
        if kind is float:
            return float(value)
    except (TypeError, ValueError, RwkuError):
        names = {int: "a whole number", float: "a number", bool: "true or false"}
        expected = "a range like 4-8" if origin is tuple else names.get(kind, str(kind))
        raise RwkuError(f"{key}={value}: {key} takes {expected}") from None
    return value


def field_hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def default_sources(cls: type) -> dict[str, str]:
    return {f.name: f.metadata.get("source", RWKU_DEFAULT) for f in dataclasses.fields(cls)}


# ------------------------------------------------------------------ choosing and resolving


def choose_preset(requested: str | None, model: str) -> tuple[str, str]:
    """The preset to use and why (printed and stored). ``auto``: ``small`` for the embedded default (planted or
    not), else ``paper``."""
    from rwku.models.loading import DEFAULT_MODEL, PLANTED_DEMO_MODEL

    requested = requested or "auto"
    if requested not in PRESET_NAMES:
        raise RwkuError(f"--preset {requested}: choose {', '.join(PRESET_NAMES)}")
    if requested != "auto":
        return requested, f"--preset {requested}"
    if model == DEFAULT_MODEL:
        return "small", f"auto: {model} is the embedded ~135M default, calibrated here"
    if model == PLANTED_DEMO_MODEL:
        return "small", f"auto: {model} is the embedded ~135M default taught the demo facts; the small preset was calibrated on the default"
    return "paper", (f"auto: {model} is not the embedded default, so the paper's Llama-3-8B values are used; "
                     "for a model under ~1B parameters pass --preset small or set lr")


@dataclass(frozen=True)
class MethodSettings:
    """Everything that configures one method in one mode and setting, with each value's source.

    ``train`` and ``corpus`` are None for methods that do not train (ICU, RepE); ``params`` is the method's own
    typed parameters (``beta`` of NPO, ``alpha`` of RepE ...).
    """

    method: str
    preset: str
    params: Any
    train: TrainConfig | None = None
    corpus: CorpusConfig | None = None
    sources: Mapping[str, str] = field(default_factory=dict)

    def sections(self) -> dict[str, Any]:
        """The dataclasses in use, by the name they are stored under."""
        found = {"train": self.train, "corpus": self.corpus, "params": self.params}
        return {name: value for name, value in found.items() if value is not None and dataclasses.fields(value)}

    def as_config(self) -> dict[str, dict[str, Any]]:
        """What a stored result records (and compares) of these settings."""
        return {name: dataclasses.asdict(value) for name, value in self.sections().items()}

    def rows(self) -> list[tuple[str, Any, str]]:
        """(key, value, source) for every value in use: what ``rwku unlearn`` prints before it runs."""
        return [(key, value, self.sources[key]) for section in self.sections().values()
                for key, value in dataclasses.asdict(section).items()]

    def keys(self) -> set[str]:
        return {key for section in self.sections().values() for key in dataclasses.asdict(section)}

    def changed(self) -> dict[str, tuple[Any, str]]:
        """key -> (value, source) for every value that differs from its field's default: the cells of the settings
        table ``rwku unlearn`` prints."""
        defaults = {key: value for section in self.sections().values()
                    for key, value in dataclasses.asdict(type(section)()).items()}
        return {key: (value, where) for key, value, where in self.rows() if value != defaults[key]}


#: The settings table's columns: the training loop's values, then the corpus's, then each method's own.
SECTION_ORDER = ("train", "corpus", "params")
SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


class Footnotes:
    """Numbers each distinct source once, in the order of first use, so that a table can mark a value with the
    superscript of its source and list the sources once below."""

    def __init__(self) -> None:
        self.sources: list[str] = []

    def mark(self, where: str) -> str:
        if where not in self.sources:
            self.sources.append(where)
        return str(self.sources.index(where) + 1).translate(SUPERSCRIPT)

    def lines(self) -> list[str]:
        return [f"{str(number).translate(SUPERSCRIPT)} {where}" for number, where in enumerate(self.sources, 1)]


@dataclass(frozen=True)
class SettingsTable:
    """Several runs' settings as one table: a column per key that some run sets away from its default, a row per
    run. A cell is the run's value, marked with its source's footnote where it differs from the default, or ``-``
    where the run's method does not take the key."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str, ...]], ...]


def settings_table(runs: Mapping[str, MethodSettings], notes: Footnotes) -> SettingsTable:
    """The table of ``runs`` (run name -> its resolved settings); ``notes`` numbers the sources of the marked cells."""
    changed = {run: settings.changed() for run, settings in runs.items()}
    section = {key: name for settings in runs.values() for name, values in settings.as_config().items() for key in values}
    first_seen = list(dict.fromkeys(key for cells in changed.values() for key in cells))
    columns = tuple(sorted(first_seen, key=lambda key: (SECTION_ORDER.index(section[key]), first_seen.index(key))))
    rows = []
    for run, settings in runs.items():
        values = {key: value for key, value, _ in settings.rows()}
        cells = tuple(f"{changed[run][key][0]}{notes.mark(changed[run][key][1])}" if key in changed[run]
                      else str(values[key]) if key in values else "-" for key in columns)
        rows.append((run, cells))
    return SettingsTable(columns=columns, rows=tuple(rows))


def find_preset(method: Any, preset: str, mode: str, setting: str) -> Preset | None:
    """The method's preset for (mode, setting); the batch and sequential settings fall back to the single-target
    values, saying so."""
    presets = method.presets
    if preset == "none":
        return None
    if (preset, mode, setting) in presets:
        return presets[(preset, mode, setting)]
    single = presets.get((preset, mode, "single"))
    if single is not None and setting == "batch":
        gap = "the paper gives no" if preset == "paper" else "no calibrated"
        return Preset(single.values, f"{single.source}: single-target value ({gap} batch-setting {mode} value)")
    if single is not None and setting == "sequential":
        return Preset(single.values, f"{single.source}: single-target value (each sequential step unlearns one target)")
    return None


def resolve_settings(method: Any, mode: str, setting: str, preset: str, overrides: Mapping[str, Any] = {},
                     config_file: Path | None = None, sweep: Mapping[str, Any] = {}) -> MethodSettings:
    """Defaults, then the preset, then the config file, then ``--set``, then the sweep; keys this method does not
    take are left to the methods that do (:func:`check_known_keys` rejects keys no method takes)."""
    kinds: dict[str, type] = {"params": method.params_type}
    if method.trains:
        kinds.update(train=TrainConfig, corpus=CorpusConfig)
    values: dict[str, dict[str, Any]] = {name: {} for name in kinds}
    owner = {key: name for name, cls in kinds.items() for key in field_hints(cls)}
    sources = {key: src for cls in kinds.values() for key, src in default_sources(cls).items()}

    def apply(layer: Mapping[str, Any], label: str) -> None:
        for raw_key, value in layer.items():
            key = raw_key.replace("-", "_")
            if key in owner:
                values[owner[key]][key] = convert(key, value, field_hints(kinds[owner[key]])[key])
                sources[key] = label

    found = find_preset(method, preset, mode, setting)
    if found is not None:
        apply(found.values, found.source)
    if config_file is not None:
        apply(read_config_file(config_file), f"--config {config_file}")
    apply(overrides, "--set")
    apply(sweep, "sweep")
    built = {name: cls(**values[name]) for name, cls in kinds.items()}
    return MethodSettings(method=method.name, preset=preset, params=built["params"], train=built.get("train"),
                          corpus=built.get("corpus"), sources=sources)


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RwkuError(f"--config {path}: cannot read it as JSON ({exc})") from exc
    if not isinstance(loaded, dict):
        raise RwkuError(f"--config {path}: expected a JSON object of hyper-parameters, e.g. {{\"lr\": 1e-5}}")
    return loaded


def check_known_keys(methods: list[Any], layers: Mapping[str, Mapping[str, Any]]) -> None:
    """Every key of ``--set``, ``--config`` or a sweep must be taken by at least one of ``methods``."""
    known: dict[str, None] = {}
    for method in methods:
        for cls in (method.params_type, *((TrainConfig, CorpusConfig) if method.trains else ())):
            known.update(dict.fromkeys(field_hints(cls)))
    for where, layer in layers.items():
        for raw_key in layer:
            if raw_key.replace("-", "_") not in known:
                names = ", ".join(m.name for m in methods)
                raise RwkuError(f"{where}: unknown hyper-parameter {raw_key!r} (no chosen method, {names}, takes it); "
                                f"known: {', '.join(known)}")
