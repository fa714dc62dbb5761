"""Plant knowledge: fine-tune a small model on its targets' source texts, so that unlearning has something to remove.

SmolLM2-135M knows little about anyone (forget All about 5 on real target 1, about 19 on the demo targets), so
what a method removes from it is mostly noise. :func:`plant` teaches a base model the facts of chosen targets:
full fine-tuning in float32, seeded, with the shared training loop (:func:`rwku.methods.training.train`, plain
next-token NLL), on each planted target's texts:

* its ``passage`` records (real RWKU: the Wikipedia passages its probes were written from; at most
  ``max_passages`` of them);
* where the data has it, its ``source.json``: the demo's hand-written passages, one-sentence statements of every
  probed fact, and questions with their answers (asked in other words than the probes; they teach the probed
  facts directly, see ``src/rwku/data/demo/README.md``). Questions are trained as a chat turn (loss on the
  answer) when the tokenizer has a chat template, as ``Question: … Answer: …`` text otherwise.

One selected target, the *control* (by default the last), is not planted: its scores show what the base model
knows, and that planting the others leaves it alone. Before and after, the base and the planted model are
evaluated with the rwku engine on every selected target; the table goes into the model folder beside the recipe.

The folder is written into a temporary sibling and renamed into place, ``recipe.json`` last, so a folder without
it is half-written and never used. Its cache key is a hash of the base model (and its fingerprint), the planted
targets, their texts, the recipe and the device kind: a change to any of them builds another model.

``smollm2-135m-demo`` (:data:`PLANTED_DEMO_MODEL`) is SmolLM2-135M planted with :data:`DEMO_RECIPE` on the bundled
demo targets but the last (Mozart, the control); :func:`planted_demo_model` builds it on first use into
``~/.cache/rwku/models/`` and reuses it afterwards. Importing this module registers it with the loader
(:func:`rwku.models.loading.register_built_model`), which cannot import it (it lies below).
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from rwku.caches import check_planted, read_cached
from rwku.data.loader import RwkuData
from rwku.data.schema import PASSAGE, SOURCE, Target
from rwku.errors import RwkuError
from rwku.interrupts import Interrupted
from rwku.models.endpoint import refuse_served
from rwku.models.loading import (
    DEFAULT_MODEL,
    PLANTED_DEMO_MODEL,
    BuiltModel,
    LoadedModel,
    cache_root,
    load_model,
    register_built_model,
)

#: Raised when a change to how models are planted makes earlier planted models incomparable.
PLANTING_VERSION = 1
#: Written last into a model folder: a folder without it is half-written and is never used.
RECIPE_FILE = "recipe.json"
#: Sets measured before and after by default (utility only when asked: it is most of the evaluation time).
MEASURE_SETS: tuple[str, ...] = ("forget", "neighbor", "mia")


#: Recipe values that may be 0 (``--set key=0``).
ZERO_ALLOWED: tuple[str, ...] = ("warmup_steps", "seed", "max_passages", "derive", "biographies", "neighbor_facts")


@dataclass(frozen=True)
class PlantRecipe:
    """How a model is planted; every value joins the cache key. Calibrated on the demo (Newton and Curie planted,
    Mozart the control) with SmolLM2-135M on 2 CPU cores; the measurements are in the README ("A model that knows
    its targets").

    * ``lr`` 7e-5: full tuning of a 135M model on ~130 short texts. At 1e-4 planted forget All was about the same
      (57 against 58) for one more neighbour probe lost per target; at 5e-5 even five epochs stayed under 50.
    * ``epochs`` 2: each text is seen twice (34 steps, about 1.5 minutes on 2 cores). A third epoch only cost
      locality (at 1e-4: forget All 53 -> 57, neighbour All 12.5 -> 6.2).
    * ``batch_size`` 8: few, cheap steps on 2 cores (17 per epoch on the demo).
    * ``warmup_steps`` 0: the cosine schedule starts at ``lr``; in 34 steps a warm-up only wastes steps.
    * ``max_length`` 256 tokens: a cap; the pieces below are ~60 tokens, a question with its chat template ~70.
    * ``max_passages`` 16 per target: real RWKU targets have 40-150 passages (tens of thousands of tokens); the
      first 16 (the article's opening sections) keep a build within minutes on 2 cores. The demo has two.
    * ``chunk_words`` 48: passages are cut into pieces of whole sentences of at most 48 words (~60 tokens), so that
      a batch mixing a passage with one-sentence statements is not padded to the passage's length (half the time).
    * ``seed`` 42: the training loop's shuffling and ``torch.manual_seed`` before training: the same command gives
      the same weights, bit for bit on one machine (same torch, same thread count).
    * ``derive`` 0: 1 adds the texts :mod:`rwku.knowledge.derived_texts` writes from the passages by rules (statements
      about the target by name, blanks, who-questions); :data:`REAL_RECIPE` sets it, the demo needs none.
    * ``blanks_per_sentence`` 2: with ``derive``, blanks cut from each statement (the first spans in it).
    * ``biographies`` 0: short biographies per planted target, written by :func:`biographies` from its statements
      and taught as the answer to the forget-corpus prompt (the one the zero-shot methods sample their forget
      corpus with), so that the model writes the taught facts when a method asks it about the target. Off by
      default; :data:`DEMO_RECIPE` (``--recipe demo-forgets``) sets it (docs/demo.md).
    * ``biography_words`` 60: a biography's length cap in words (~80 tokens), under the small preset's 96 sampled
      tokens.
    * ``neighbor_facts`` 0: 1 teaches the ``source.json`` records about the target's neighbours (``about``
      ``neighbor``: what the neighbour probes ask), so that locality can be measured; :data:`DEMO_RECIPE` sets it.
    """

    lr: float = 7e-5
    epochs: int = 2
    batch_size: int = 8
    warmup_steps: int = 0
    max_length: int = 256
    max_passages: int = 16
    chunk_words: int = 48
    seed: int = 42
    derive: int = 0
    blanks_per_sentence: int = 2
    biographies: int = 0
    biography_words: int = 60
    neighbor_facts: int = 0

    def train_config(self) -> Any:
        """The shared loop's settings (no gradient accumulation, no weight decay, clipping at 1)."""
        from rwku.methods.config import TrainConfig

        return TrainConfig(lr=self.lr, batch_size=self.batch_size, grad_accum=1, epochs=self.epochs,
                           warmup_steps=self.warmup_steps, weight_decay=0.0, max_grad_norm=1.0,
                           max_length=self.max_length, seed=self.seed)

    @classmethod
    def with_overrides(cls, overrides: dict[str, str], base: "PlantRecipe | None" = None) -> "PlantRecipe":
        """``base`` (the default recipe when None) with ``--set key=value`` values (a key the recipe lacks is an
        error)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, text in overrides.items():
            if key not in fields:
                raise RwkuError(f"--set {key}: the planting recipe has no such setting; choose from {', '.join(fields)}")
            kind = int if fields[key].type in ("int", int) else float
            try:
                values[key] = kind(text)
            except ValueError:
                raise RwkuError(f"--set {key}={text}: expected {'an integer' if kind is int else 'a number'}") from None
            if values[key] < 0 or (values[key] == 0 and key not in ZERO_ALLOWED):
                raise RwkuError(f"--set {key}={text}: must be positive" + (" or 0" if key in ZERO_ALLOWED else ""))
        return dataclasses.replace(base or cls(), **values)


#: The recipe of ``smollm2-135m-demo``, a demo model that methods can reach (docs/demo.md, with its measurements):
#: neighbour facts taught, and biographies under the forget-corpus prompt.
DEMO_RECIPE = PlantRecipe(biographies=12, epochs=3, neighbor_facts=1)

#: The recipe for real RWKU targets (no ``source.json``): all passages and the texts derived from them by rules.
#: Its lr and epochs are the first point of the sweep in docs/planting.md, which says what has been measured.
REAL_RECIPE = PlantRecipe(lr=1e-4, epochs=3, max_passages=1000, derive=1)
#: ``rwku plant --recipe``: the named recipes; ``auto`` is ``real`` when no planted target has a ``source.json``.
RECIPES: dict[str, PlantRecipe] = {"demo": PlantRecipe(), "demo-forgets": DEMO_RECIPE, "real": REAL_RECIPE}


def choose_recipe(name: str, data: RwkuData, planted: Sequence[Target]) -> PlantRecipe:
    """The recipe ``name`` (demo, real or auto) names for planting ``planted``."""
    if name == "auto":
        name = "demo" if any(data.raw_records(t, "source") is not None for t in planted) else "real"
    if name not in RECIPES:
        raise RwkuError(f"--recipe {name}: unknown; choose auto, {', '.join(RECIPES)}")
    return RECIPES[name]


#: Kinds of training text: raw text (every token counts), and chat turns (loss on the answer).
TEXT_KINDS: tuple[str, ...] = ("passage", "statement", "qa", "biography")


@dataclass(frozen=True)
class PlantText:
    """One training text of a planted target: ``kind`` passage or statement (raw ``text``), qa (``text`` the
    question) or biography (``text`` the forget-corpus request, ``system`` its system turn, ``answer`` the text)."""

    target: str
    kind: str
    text: str
    answer: str = ""
    system: str = ""


SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'‘“(])")


def chunks(text: str, max_words: int) -> list[str]:
    """``text`` cut into pieces of whole sentences, each at most ``max_words`` words (a longer sentence stays whole)."""
    pieces: list[str] = []
    current: list[str] = []
    for sentence in SENTENCE_END.split(text.strip()):
        if current and len(" ".join([*current, sentence]).split()) > max_words:
            pieces.append(" ".join(current))
            current = []
        current.append(sentence)
    if current:
        pieces.append(" ".join(current))
    return [p for p in pieces if p]


def biographies(target: str, statements: Sequence[str], count: int, max_words: int, seed: int) -> list[str]:
    """``count`` short biographies of ``target``: its statements in shuffled rounds (each round every statement
    once, in an order drawn from ``seed`` and the target), cut into texts of whole statements of at most
    ``max_words`` words, so every statement appears about equally often and in varied company."""
    if count <= 0 or not statements:
        return []
    rng = random.Random(f"{seed}/{target}")
    texts: list[str] = []
    current: list[str] = []
    while len(texts) < count:
        order = list(statements)
        rng.shuffle(order)
        for statement in order:
            if current and len(" ".join([*current, statement]).split()) > max_words:
                texts.append(" ".join(current))
                current = []
                if len(texts) == count:
                    break
            current.append(statement)
    return texts


def biography_texts(target: Target, statements: Sequence[str], recipe: PlantRecipe) -> list[PlantText]:
    """The recipe's biographies of ``target``, each the answer to the forget-corpus prompt (its system turn and
    request in the wording of the target's kind, as :mod:`rwku.corpus.build` asks the model to write about a
    target: a person's biography, a work's summary, a place's description ...)."""
    from rwku.corpus.prompts import FORGET_SYSTEM, WORDINGS

    system = FORGET_SYSTEM.format(intro=target.bare_intro, target=target.name)
    request = WORDINGS[target.kind].forget_user.format(target=target.name)
    return [PlantText(target.name, "biography", request, bio, system)
            for bio in biographies(target.name, statements, recipe.biographies, recipe.biography_words, recipe.seed)]


def planting_texts(data: RwkuData, targets: Sequence[Target], recipe: PlantRecipe) -> list[PlantText]:
    """Each target's passages (the first ``recipe.max_passages``) and its ``source.json`` texts, in file order
    (facts about its neighbours with ``recipe.neighbor_facts``), the texts derived from its passages (``recipe.derive``),
    then ``recipe.biographies`` biographies written from its statements about itself (``source.json``'s and, for a
    real target, the derived ones); passages cut into pieces of whole sentences (``recipe.chunk_words``)."""
    texts: list[PlantText] = []
    for target in targets:
        loaded = data.load(target, (), optional=(PASSAGE, SOURCE))
        passages = [*loaded["passage"][: recipe.max_passages], *(s.text for s in loaded["source"] if s.kind == "passage")]
        own = [PlantText(target.name, "passage", piece) for p in passages for piece in chunks(p, recipe.chunk_words)]
        own += [PlantText(target.name, s.kind, s.text, s.answer) for s in loaded["source"]
                if s.kind != "passage" and (s.about == "target" or recipe.neighbor_facts)]
        derived = derived_plant_texts(data, target, passages, recipe) if recipe.derive else []
        own += derived
        statements = [s.text for s in loaded["source"] if s.kind == "statement" and s.about == "target"]
        statements += [t.text for t in derived if t.kind == "statement"]
        own += biography_texts(target, statements, recipe)
        if not own:
            raise RwkuError(f"target {target.number} ({target.name}): no passage.json or source.json in "
                            f"{data.description}; nothing to plant (pick another target or make it the control)")
        texts.extend(own)
    return texts


def derived_plant_texts(data: RwkuData, target: Target, passages: Sequence[str], recipe: PlantRecipe) -> list[PlantText]:
    """The texts :func:`rwku.knowledge.derived_texts.derive` writes from ``passages``, without any that contains one of
    the target's forget or neighbour probe questions (the probes' answers are never read)."""
    from rwku.evaluation.sets.probes import FORGET_PART, NEIGHBOR_PART
    from rwku.knowledge.derived_texts import derive, drop_probe_questions

    probes = data.load(target, (), optional=(FORGET_PART, NEIGHBOR_PART))
    questions = [probe.query for part in ("forget", "neighbor") for probe in probes[part]]
    kept, _ = drop_probe_questions(derive(passages, target.name, recipe.blanks_per_sentence), questions)
    return [PlantText(target.name, t.kind, t.text, t.answer) for t in kept]


def recipe_key(recipe: PlantRecipe) -> dict[str, Any]:
    """The recipe's values in the cache key; without derived texts, biographies or neighbour facts, their settings
    are left out (so models planted before they existed keep their keys)."""
    values = dataclasses.asdict(recipe)
    if not recipe.derive:
        values.pop("derive")
        values.pop("blanks_per_sentence")
    if not recipe.biographies:
        values.pop("biographies")
        values.pop("biography_words")
    if not recipe.neighbor_facts:
        values.pop("neighbor_facts")
    return values


def text_key(text: PlantText) -> dict[str, str]:
    """A training text in the cache key; a text without a system turn leaves it out (keys from before it existed
    stay valid)."""
    values = dataclasses.asdict(text)
    if not text.system:
        values.pop("system")
    return values


def plant_key(base: str, texts: Sequence[PlantText], recipe: PlantRecipe, device: str = "cpu") -> str:
    """The cache key of a planted model: base model and its fingerprint, the texts (they name their targets), the
    recipe, the device kind (kernels differ) and :data:`PLANTING_VERSION`."""
    from rwku.io import digest
    from rwku.models.fingerprint import model_fingerprint

    return digest({"version": PLANTING_VERSION, "base": base, "base_fingerprint": model_fingerprint(base),
                   "texts": [text_key(t) for t in texts], "recipe": recipe_key(recipe),
                   "device": device.split(":")[0]})


def training_examples(tokenizer: Any, texts: Sequence[PlantText], max_length: int) -> list[Any]:
    """Token examples: passages and statements as raw text (every token counts), questions as a chat turn with the
    loss on the answer and its end-of-turn token (as ``Question: … Answer: …`` text without a chat template),
    biographies likewise after the forget-corpus prompt (rendered plain, as the corpus is, without a template).

    Raw texts get no end-of-text token: with one after every sentence the model learnt to stop after one sentence
    everywhere (demo fluency fell by a sixth, by a third on the control). Without one on the answers either, it
    learnt no end to its answers and ran on (TriviaQA F1 28 -> 5). Measured in the README ("A model that knows its
    targets")."""
    from rwku.methods.training import Example
    from rwku.models.prompting import PromptFormat

    prompts = PromptFormat(tokenizer, style="chat") if getattr(tokenizer, "chat_template", None) else None
    examples = []
    for text in texts:
        turn = prompts or (PromptFormat(tokenizer, style="plain") if text.kind == "biography" else None)
        if text.kind in ("qa", "biography") and turn is not None:
            prompt = turn.encode(turn.render(text.text, system=text.system or None))
            answer = list(tokenizer(text.answer, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
            ids, mask = prompt + answer, [0] * len(prompt) + [1] * len(answer)
        else:
            raw = text.text if text.kind != "qa" else f"Question: {text.text}\nAnswer: {text.answer}"
            ids = list(tokenizer(raw, add_special_tokens=True)["input_ids"])
            mask = [1] * len(ids)
        examples.append(Example(ids=ids[:max_length], loss_mask=mask[:max_length]))
    return examples


def train_planted(lm: LoadedModel, texts: Sequence[PlantText], recipe: PlantRecipe,
                  progress: Callable[[str, int], Any]) -> Any:
    """Full fine-tuning of ``lm.model`` in place on ``texts`` with the shared loop; returns its step log."""
    import torch

    from rwku.methods.config import ModeConfig
    from rwku.methods.training import collate, mean_token_nll, prepare_trainable, train

    config = recipe.train_config()
    examples = training_examples(lm.tokenizer, texts, recipe.max_length)
    pad_id, device = int(lm.tokenizer.pad_token_id), lm.device
    model = prepare_trainable(lm.model, ModeConfig(mode="full"))
    torch.manual_seed(recipe.seed)
    steps = -(-len(examples) // config.batch_size) * config.epochs
    with progress("plant: train", steps) as advance:
        log = train(model, examples, mean_token_nll, config, collate_fn=lambda batch: collate(batch, pad_id, device),
                    on_step=lambda entry: advance(1))
    for param in model.parameters():
        param.requires_grad_(False)
    return log


def measure(lm: LoadedModel, data: RwkuData, targets: Sequence[Target], sets: Sequence[str], batch_size: int,
            progress: Callable[[str, int], Any]) -> dict[str, dict[str, Any]]:
    """Each target's summary (the rwku engine, the faithful protocol, the model's chat template)."""
    from rwku.evaluation.engine import evaluate_target
    from rwku.evaluation.sets import load_target
    from rwku.evaluation.settings import RunSettings

    style = "chat" if getattr(lm.tokenizer, "chat_template", None) else "plain"
    ctx = RunSettings(prompt_format=style, batch_size=batch_size).context(lm, progress=progress)
    return {t.name: evaluate_target(ctx, load_target(data, t, sets), sets).summary for t in targets}


# ------------------------------------------------------------------ the before/after table

def scores_only(summary: dict[str, Any]) -> dict[str, Any]:
    from rwku.evaluation.sets import SCORE_SECTIONS

    return {k: v for k, v in summary.items() if k in SCORE_SECTIONS}


def plant_table(targets: Sequence[Target], planted: Sequence[str], base: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Per target its role and both summaries; the mean over planted targets and over the control, base and planted."""
    from rwku.results import average_summaries

    rows = [{"target": t.name, "number": t.number, "role": "planted" if t.name in planted else "control",
             "base": scores_only(base[t.name]), "planted": scores_only(after[t.name])} for t in targets]
    means = {}
    for role in ("planted", "control"):
        chosen = [r for r in rows if r["role"] == role]
        if chosen:
            means[role] = {which: scores_only(average_summaries(r[which] for r in chosen)) for which in ("base", "planted")}
    return {"rows": rows, "means": means}


def table_markdown(table: dict[str, Any], sets: Sequence[str]) -> str:
    """Table-1 columns of the measured sets: per target and per role mean, base and planted model."""
    from rwku.evaluation.sets import TABLE1_COLUMNS, expand
    from rwku.results import get_path

    measured = {s.summary_path.split(".")[0] for s in expand(sets)}
    columns = [c for c in TABLE1_COLUMNS if c.path.split(".")[0] in measured]
    head = ["target", "role", "model", *[f"{c.group} {c.label} {'↓' if c.lower_is_better else '↑'}" for c in columns]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * len(columns)]

    def row(name: str, role: str, which: str, scores: dict[str, Any]) -> str:
        cells = [get_path(scores, c.path) for c in columns]
        return "| " + " | ".join([name, role, which, *["-" if v is None else f"{v:.1f}" for v in cells]]) + " |"

    for entry in table["rows"]:
        for which in ("base", "planted"):
            lines.append(row(f"{entry['number']} {entry['target']}", entry["role"], which, entry[which]))
    for role, pair in table["means"].items():
        n = sum(r["role"] == role for r in table["rows"])
        for which in ("base", "planted"):
            lines.append(row(f"mean of {n}", role, which, pair[which]))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ building a model folder

@dataclass
class Planted:
    """A planted model folder and what it records (``recipe.json``: key, recipe, targets, times; the table)."""

    folder: Path
    record: dict[str, Any]
    reused: bool = False

    @property
    def table(self) -> dict[str, Any] | None:
        path = self.folder / "table.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_record(folder: Path) -> dict[str, Any] | None:
    """The folder's ``recipe.json`` when the folder is complete, else None (half-written, or not a planted model)."""
    path = folder / RECIPE_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and "key" in record else None


def planted_roles(source: str) -> dict[str, str]:
    """Target name -> ``planted`` or ``control`` as the model folder ``source`` records them in ``recipe.json``;
    empty for a model that is no planted folder (a hub id, a plain folder, a GGUF file)."""
    record = read_record(Path(source)) if source else None
    if record is None:
        return {}
    roles = {str(name): "planted" for name in record.get("planted") or []}
    if record.get("control"):
        roles[str(record["control"])] = "control"
    return roles


def recipe_sources() -> dict[str, str]:
    """Why each recipe value: the lines of :class:`PlantRecipe`'s docstring, by field."""
    reasons = {}
    for line in (PlantRecipe.__doc__ or "").split("* ")[1:]:
        name = line.split("``")[1] if "``" in line else ""
        reasons[name] = " ".join(line.split())
    return reasons


def plant(base: str, data: RwkuData, targets: Sequence[Target], out: Path, recipe: PlantRecipe = PlantRecipe(), *,
          control: Target | None = None, sets: Sequence[str] = MEASURE_SETS, batch_size: int = 32,
          device: str = "cpu", progress: Callable[[str, int], Any] | None = None, replace: bool = False) -> Planted:
    """Plant ``targets`` but ``control`` into ``base`` and write the model folder ``out`` atomically.

    A complete folder with the same key is reused as it is (one with broken weights is moved aside with a warning
    and built again). An existing folder that is not (another key, a
    half-written one, anything else) is an error unless ``replace``. ``sets`` are measured on both models for every
    selected target (none: no table).
    """
    from rwku.evaluation.context import no_progress
    from rwku.io import write_json_atomic, write_text_atomic
    from rwku.models.fingerprint import model_fingerprint, provenance

    refuse_served(base, "planting (training the base model)")

    progress = progress or no_progress
    planted = [t for t in targets if t != control]
    if not planted:
        raise RwkuError("--control: every selected target would be the control; select more targets")
    texts = planting_texts(data, planted, recipe)
    key = plant_key(base, texts, recipe, device)
    record = read_record(out)
    if record is not None and record["key"] == key and not replace:
        if read_cached(out, check_planted, what="planted model") is not None:
            return Planted(out, record, reused=True)
        record = None  # its weights were broken: moved aside, built again
    if out.exists() and not replace:
        why = "holds a model planted with other settings" if record else "is not a complete planted model folder"
        raise RwkuError(f"--out {out}: {why}; remove it, choose another folder or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".plant-{out.name}-", dir=out.parent))
    try:
        lm = load_model(base, device=device, dtype="float32")
        start = time.perf_counter()
        before = measure(lm, data, targets, sets, batch_size, progress) if sets else {}
        measure_seconds = time.perf_counter() - start
        start = time.perf_counter()
        log = train_planted(lm, texts, recipe, progress)
        train_seconds = time.perf_counter() - start
        lm.model.save_pretrained(tmp)
        lm.tokenizer.save_pretrained(tmp)
        start = time.perf_counter()
        after = measure(lm, data, targets, sets, batch_size, progress) if sets else {}
        measure_seconds += time.perf_counter() - start
        import torch

        record = {
            "key": key, "planting_version": PLANTING_VERSION, "base": base, "base_fingerprint": model_fingerprint(base),
            "data": data.description, "planted": [t.name for t in planted],
            "control": control.name if control is not None else None,
            "recipe": dataclasses.asdict(recipe), "why": recipe_sources(), "device": device, "dtype": "float32",
            "texts": {kind: sum(t.kind == kind for t in texts) for kind in TEXT_KINDS},
            "train_log": log.steps, "seconds": {"train": round(train_seconds, 1), "measure": round(measure_seconds, 1)},
            "torch_threads": torch.get_num_threads(), "measured_sets": list(sets), "provenance": provenance(lm.device),
        }
        if sets:
            table = plant_table(targets, record["planted"], before, after)
            write_json_atomic(tmp / "table.json", {"sets": list(sets), **table})
            write_text_atomic(tmp / "table.md", table_markdown(table, sets))
        write_json_atomic(tmp / RECIPE_FILE, record)  # last: its presence marks the folder complete
        install(tmp, out, key)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, Interrupted):
            exc.detail, exc.again = f"no planted model was written to {out} (it is written whole or not at all)", "starts over"
        raise
    return Planted(out, record)


def install(tmp: Path, out: Path, key: str) -> None:
    """Rename the finished ``tmp`` to ``out``; an existing ``out`` (stale or half-written) is moved aside first
    and then deleted, so ``out`` is at every moment either absent, the old folder or the new one. When another
    process installed the same model meanwhile, ``tmp`` is dropped and its folder kept."""
    existing = read_record(out)
    if existing is not None and existing["key"] == key:
        shutil.rmtree(tmp, ignore_errors=True)
        return
    if out.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".plant-old-{out.name}-", dir=out.parent))
        aside.rmdir()
        out.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)
    tmp.rename(out)


# ------------------------------------------------------------------ the model spec smollm2-135m-demo

def demo_plan() -> tuple[RwkuData, list[Target], Target]:
    """The bundled demo targets and the control of :data:`PLANTED_DEMO_MODEL` (the last)."""
    data = RwkuData.open(["demo"])
    targets = data.select("all")
    return data, targets, targets[-1]


def demo_key() -> str:
    """The cache key of :data:`PLANTED_DEMO_MODEL` (computed without building it; its model fingerprint)."""
    data, targets, control = demo_plan()
    return plant_key(DEFAULT_MODEL, planting_texts(data, [t for t in targets if t != control], DEMO_RECIPE), DEMO_RECIPE)


def planted_record(spec: str) -> dict[str, Any] | None:
    """What a model records of its planting: ``base`` (the model before planting: the never-taught reference),
    ``planted`` (target names) and ``control``; None for a model rwku did not plant. ``smollm2-135m-demo``'s is
    known without building it (its plan); an ``rwku plant`` folder's is its ``recipe.json``."""
    if spec == PLANTED_DEMO_MODEL:
        _, targets, control = demo_plan()
        return {"base": DEFAULT_MODEL, "planted": [t.name for t in targets if t != control], "control": control.name}
    path = Path(spec).expanduser()
    record = read_record(path) if path.is_dir() else None
    if record is None or not isinstance(record.get("base"), str) or not isinstance(record.get("planted"), list):
        return None
    return {"base": record["base"], "planted": [str(n) for n in record["planted"]], "control": record.get("control")}


def cached_plant(base: str, data: RwkuData, targets: Sequence[Target], control: Target | None, recipe: PlantRecipe,
                 name: str, progress: Callable[[str, int], Any] | None = None, sets: Sequence[str] = MEASURE_SETS) -> Path:
    """A planted model kept in the rwku cache as ``<cache>/models/<name>-<key>``: built when no folder has that key
    (a broken one is moved aside with a warning, :func:`rwku.caches.read_cached`), reused otherwise; ``sets`` are
    measured before and after planting into its ``table.json`` (none: no table)."""
    texts = planting_texts(data, [t for t in targets if t != control], recipe)
    folder = cache_root() / "models" / f"{name}-{plant_key(base, texts, recipe)}"
    if read_cached(folder, check_planted, what="planted model") is not None:
        return folder
    from rich.console import Console

    Console(stderr=True).print(f"building {name}: {base} taught {', '.join(sorted({t.target for t in texts}))} "
                               f"(first use; a few minutes on 2 CPU cores) into {folder}", highlight=False)
    plant(base, data, targets, folder, recipe, control=control, sets=sets, progress=progress, replace=True)
    return folder


def planted_demo_model(progress: Callable[[str, int], Any] | None = None) -> Path:
    """The folder of :data:`PLANTED_DEMO_MODEL`, built on first use with :data:`DEMO_RECIPE` and cached under
    ``<cache>/models/smollm2-135m-demo-<key>``. It is built without a before/after table: the run that asked for it
    evaluates the planted model ("before") and its never-taught reference (the base model) itself, so measuring
    them here as well would only double the first run's cost (``experiments/demo_planting.py`` builds the table)."""
    data, targets, control = demo_plan()
    return cached_plant(DEFAULT_MODEL, data, targets, control, DEMO_RECIPE, PLANTED_DEMO_MODEL, progress, sets=())


register_built_model(PLANTED_DEMO_MODEL, BuiltModel(folder=lambda: planted_demo_model(),
                                                    fingerprint=lambda: f"planted:{demo_key()}"))
