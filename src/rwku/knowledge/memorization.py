"""Memorization quantification (the paper's Fig. 1): how well a model already knows a text.

For each text, cut to its first ``window`` tokens (the tokenizer's default special tokens included, as MIA scores
texts), every position t ≥ 1 is scored under teacher forcing:

* **EM** (exact memorization): the share of positions whose greedy prediction argmax p(· | x_<t) is x_t;
* **NLL**: the mean of −log p(x_t | x_<t) over the same positions (nats).

A source's numbers are means over its texts. Texts shorter than ``min_tokens`` (by default the window itself) are
left out and counted as skipped: the first positions of any text are the hardest to predict, so a source of short
fragments (RWKU's passages include section headings such as "== See also ==") would otherwise look less known for
its length alone. Sources: ``rwku`` (the selected targets' passages, which the RWKU
authors chose because models know them), ``unseen`` (fictional passages shipped with rwku, see
``knowledge/unseen/README.md``) and any user file (``--source NAME=FILE``). Per target, the same numbers over the
target's passages are its *knowledge* score: what the model knows before it is asked to forget.

Scoring goes through :meth:`rwku.evaluation.context.EvalContext.score`, batched and prefix-shared as everywhere.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from rwku.errors import RwkuError

if TYPE_CHECKING:
    from rwku.evaluation.context import ProgressFactory
    from rwku.evaluation.settings import RunSettings

RWKU = "rwku"
UNSEEN = "unseen"
RESERVED = (RWKU, UNSEEN)
DEFAULT_WINDOW = 128
RESULTS = "memorization.json"
TEXTS = "texts.jsonl"
FIGURE = "fig1_memorization"
SOURCE_FORMATS = (".txt", ".jsonl")


@dataclass(frozen=True)
class Text:
    """One text of a source; ``target`` is the slug of the RWKU target whose passage it is (rwku texts only)."""

    source: str
    id: str
    text: str
    target: str | None = None


@dataclass
class Source:
    """A named list of texts and where they came from."""

    name: str
    texts: list[Text]
    origin: str


# ---------------------------------------------------------------- sources


def parse_source_option(spec: str) -> tuple[str, Path]:
    """``--source NAME=FILE`` -> (name, path); the name is a plain word that is not a built-in source."""
    if "=" not in spec:
        raise RwkuError(f"--source {spec}: expected NAME=FILE, e.g. --source wiki=pages.jsonl")
    name, path = (part.strip() for part in spec.split("=", 1))
    if not name or not path:
        raise RwkuError(f"--source {spec}: expected NAME=FILE with both parts, e.g. --source wiki=pages.jsonl")
    if name in RESERVED:
        raise RwkuError(f"--source {spec}: {name!r} is a built-in source; give yours another name")
    if any(c.isspace() for c in name):
        raise RwkuError(f"--source {spec}: the name {name!r} has spaces; use a single word such as c4 or wiki_pages")
    return name, Path(path).expanduser()


def read_source_file(name: str, path: Path, limit: int | None = None) -> Source:
    """Texts of a user file: ``.txt`` one text a line (blank lines skipped), ``.jsonl`` one object a line with a
    string ``text`` field. Any problem is one :class:`RwkuError` naming the file (and line)."""
    label = f"--source {name}={path}"
    if path.suffix.lower() not in SOURCE_FORMATS:
        raise RwkuError(f"{label}: unknown format {path.suffix or '(no extension)'!r}; give a .txt file (one text a line) "
                        "or a .jsonl file (one JSON object a line with a 'text' field)")
    if not path.is_file():
        raise RwkuError(f"{label}: no such file; check the path")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise RwkuError(f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start}); convert the file to UTF-8") from None
    texts: list[Text] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if path.suffix.lower() == ".txt":
            text = line.strip()
        else:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RwkuError(f"{label} line {number}: not JSON ({exc.msg} at column {exc.colno}); "
                                "a .jsonl file holds one JSON object a line") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise RwkuError(f"{label} line {number}: expected an object with a string 'text' field, "
                                f"got {json.dumps(record, ensure_ascii=False)[:80]}")
            text = record["text"]
        texts.append(Text(source=name, id=f"{name}:{number}", text=text))
        if limit is not None and len(texts) >= limit:
            break
    if not texts:
        raise RwkuError(f"{label}: holds no text; give a file with at least one non-blank line")
    return Source(name=name, texts=texts, origin=str(path))


def unseen_path() -> Any:
    """The shipped corpus of hand-written fictional passages (package data)."""
    return resources.files("rwku.knowledge").joinpath("unseen", "unseen.jsonl")


def unseen_records() -> list[dict[str, Any]]:
    """Every record of the unseen corpus: ``id``, ``title``, ``kind`` and ``text``."""
    return [json.loads(line) for line in unseen_path().read_text(encoding="utf-8").splitlines() if line.strip()]


def unseen_source(limit: int | None = None) -> Source:
    records = unseen_records()[:limit] if limit else unseen_records()
    return Source(name=UNSEEN, texts=[Text(source=UNSEEN, id=r["id"], text=r["text"]) for r in records],
                  origin="fictional passages written for rwku (rwku/knowledge/unseen)")


def rwku_source(data: Any, targets: Sequence[Any], limit: int | None = None) -> Source:
    """The selected targets' Wikipedia passages (``passage.json``), the first ``limit`` of each target."""
    from rwku.data.schema import PASSAGE

    texts: list[Text] = []
    for target in targets:
        passages = data.load(target, (), optional=[PASSAGE])["passage"]
        if not passages:
            raise RwkuError(f"target {target.number} ({target.name}): no passages (passage.json) in {data.description}; "
                            "choose targets that have them or give data that holds them")
        texts.extend(Text(source=RWKU, id=f"{target.slug}:{i}", text=p, target=target.slug)
                     for i, p in enumerate(passages[:limit] if limit else passages))
    return Source(name=RWKU, texts=texts, origin=f"passages of {len(targets)} target(s) in {data.description}")


def check_sources(sources: Sequence[Source]) -> None:
    if not sources:
        raise RwkuError("no text to score: give --data (the targets' passages), keep the unseen set, or add --source NAME=FILE")
    names = [s.name for s in sources]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise RwkuError(f"--source {duplicate}: given twice; give each source its own name")


# ---------------------------------------------------------------- scoring


def window_tokens(tokenizer: Any, text: str, window: int) -> list[int]:
    """The first ``window`` tokens of ``text`` with the tokenizer's default special tokens (as MIA encodes)."""
    return list(tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"])[:window]


def score_source(ctx: Any, source: Source, window: int, description: str | None = None,
                 min_tokens: int | None = None) -> list[dict[str, Any]]:
    """Per text: EM and NLL over positions 1 … len−1 of its window. Texts of fewer than ``min_tokens`` tokens
    (default: the window; at least two, the first position is never scored) get ``em``/``nll`` None (skipped)."""
    encoded = [window_tokens(ctx.lm.tokenizer, t.text, window) for t in source.texts]
    least = max(2, window if min_tokens is None else min(min_tokens, window))
    scorable = [i for i, e in enumerate(encoded) if len(e) >= least]
    scores = ctx.score(description or source.name, [encoded[i] for i in scorable], [len(encoded[i]) - 1 for i in scorable],
                       greedy=True)
    by_index = dict(zip(scorable, scores))
    rows = []
    for i, (text, tokens) in enumerate(zip(source.texts, encoded)):
        row: dict[str, Any] = {"source": source.name, "id": text.id, "target": text.target, "tokens": len(tokens)}
        found = by_index.get(i)
        if found is None or not found.logprobs:
            row.update(em=None, nll=None)
        else:
            row.update(em=sum(found.greedy) / len(found.greedy), nll=-sum(found.logprobs) / len(found.logprobs))
        row["window"] = ctx.lm.tokenizer.decode(tokens, skip_special_tokens=True)
        rows.append(row)
    return rows


def verbmem_scores(ctx: Any, source: Source, description: str) -> dict[str, dict[str, float]]:
    """VerbMem (:mod:`rwku.evaluation.sets.verbmem`: the first k tokens as prompt, ROUGE-L of the greedy continuation
    against the next m) of each text of at least its word minimum, by text id, in %."""
    from rwku.evaluation.sets.verbmem import continuation_items, long_enough

    texts = [t for t in source.texts if long_enough([t.text])]
    items = continuation_items(ctx, [t.text for t in texts], description=description)
    return {texts[i["passage"]].id: {"verbmem_f1": 100 * i["rougeL_f1"], "verbmem_recall": 100 * i["rougeL_recall"]}
            for i in items}


def mean_verbmem(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Mean VerbMem F1 and recall over the texts that have one, and how many."""
    scored = [r for r in rows if r.get("verbmem_f1") is not None]
    n = len(scored)
    return {"f1": sum(r["verbmem_f1"] for r in scored) / n if n else None,
            "recall": sum(r["verbmem_recall"] for r in scored) / n if n else None, "count": n}


def mean_scores(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Mean EM and NLL over the scored texts, how many went in, and how many had nothing to score."""
    rows = list(rows)
    scored = [r for r in rows if r["em"] is not None]
    n = len(scored)
    return {"em": sum(r["em"] for r in scored) / n if n else None, "nll": sum(r["nll"] for r in scored) / n if n else None,
            "count": n, "skipped": len(rows) - n}


def summarize(rows: Sequence[dict[str, Any]], sources: Sequence[Source], targets: Sequence[Any]) -> dict[str, Any]:
    """Per source and per target (its passages: the knowledge score) means; VerbMem's beside them where it ran."""
    with_verbmem = any("verbmem_f1" in r for r in rows)

    def means(chosen: list[dict[str, Any]]) -> dict[str, Any]:
        return {**mean_scores(chosen), **({"verbmem": mean_verbmem(chosen)} if with_verbmem else {})}

    per_source = {s.name: means([r for r in rows if r["source"] == s.name]) for s in sources}
    knowledge = {}
    for target in targets:
        knowledge[target.slug] = {"number": target.number, "name": target.name,
                                  **means([r for r in rows if r["source"] == RWKU and r["target"] == target.slug])}
    return {"sources": per_source, "targets": knowledge}


# ---------------------------------------------------------------- a run


def plain_run() -> RunSettings:
    """The default settings, texts scored as they are (the plain format); imported here, on first use, so that
    importing :mod:`rwku.knowledge` (which registers the planted models) stays light."""
    from rwku.evaluation.settings import RunSettings

    return RunSettings(prompt_format="plain")


@dataclass
class MemorizationJob:
    """Models × sources, scored with one window; ``targets`` are those whose passages form the ``rwku`` source.

    ``run`` is how each of ``models`` runs (its own ``model`` is replaced by each in turn); texts are scored as they
    are, in the plain format; ``run.limit`` keeps the first N texts of each source (rwku: of each target)."""

    models: Sequence[str]
    sources: Sequence[Source]
    run: RunSettings = field(default_factory=plain_run)
    targets: Sequence[Any] = ()
    window: int = DEFAULT_WINDOW
    min_tokens: int | None = None  # None: the window (only full windows are scored)
    data: str | None = None
    verbmem: bool = False  # also VerbMem (greedy continuations: slower than EM's one scoring pass)
    results: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def check(self) -> None:
        from rwku.models.loading import check_model_spec, pick_device, pick_dtype

        pick_dtype(self.run.dtype, pick_device(self.run.device), self.run.kernels)
        if self.window < 2:
            raise RwkuError(f"--window {self.window}: needs at least 2 tokens (the first one is never scored)")
        if self.min_tokens is not None and not 2 <= self.min_tokens <= self.window:
            raise RwkuError(f"--min-tokens {self.min_tokens}: give 2 … the window ({self.window})")
        if len(set(self.models)) < len(self.models):
            raise RwkuError(f"--model: {', '.join(self.models)} names a model twice; give each once")
        for model in self.models:
            check_model_spec(model)
        check_sources(self.sources)

    def run_model(self, model: str, progress: ProgressFactory, lm: Any = None) -> dict[str, Any]:
        """Score every source under one model (loaded here unless given); returns its entry of ``memorization.json``."""
        from rwku.models.fingerprint import provenance

        start = time.perf_counter()
        lm = lm or self.run.load(model)
        ctx = self.run.context(lm, progress=progress)
        rows = []
        for source in self.sources:
            label = f"{model} · {source.name}" if len(self.models) > 1 else source.name
            scored = score_source(ctx, source, self.window, f"memorization {label}", self.min_tokens)
            if self.verbmem:
                found = verbmem_scores(ctx, source, f"VerbMem {label}")
                scored = [{**r, **found.get(r["id"], {"verbmem_f1": None, "verbmem_recall": None})} for r in scored]
            rows += [{"model": model, **r} for r in scored]
        entry = {**summarize(rows, self.sources, self.targets), "seconds": round(time.perf_counter() - start, 2),
                 "kernels": lm.kernels, "provenance": provenance(lm.device)}
        self.results[model] = entry
        self.rows += rows
        return entry

    def payload(self) -> dict[str, Any]:
        from rwku import __version__

        return {
            "rwku_version": __version__, "window": self.window,
            "min_tokens": self.window if self.min_tokens is None else self.min_tokens,
            "limit": self.run.limit, "data": self.data,
            "targets": [{"slug": t.slug, "number": t.number, "name": t.name} for t in self.targets],
            "sources": {s.name: {"origin": s.origin, "texts": len(s.texts)} for s in self.sources},
            "definition": "per text, positions 1..n-1 of its first n <= W tokens under teacher forcing: EM = share of "
                          "positions whose argmax prediction is the next token, NLL = mean token negative log-likelihood "
                          "(nats); texts of fewer than min_tokens tokens are skipped; source and target values are means "
                          "over texts",
            **({"verbmem": verbmem_definition()} if self.verbmem else {}),
            "models": self.results,
        }


def verbmem_definition() -> dict[str, Any]:
    from rwku.evaluation.sets.verbmem import VERBMEM

    return {**dict(VERBMEM.key or {}), "definition": "texts of at least min_words words: the first prompt_tokens tokens as "
            "prompt, greedy continuation as long as the next (at most new_tokens) true tokens, ROUGE-L F1 and recall "
            "against them (MUSE's VerbMem), in %"}


def write_results(out: Path, job: MemorizationJob,
                  draw: Callable[[Path, dict[str, Any], Sequence[dict[str, Any]]], list[Path]] | None = None) -> list[Path]:
    """``texts.jsonl``, the figure, then ``memorization.json`` (last: its presence means complete). ``draw(out,
    payload, rows)`` writes the figure and returns its files; the command passes
    :func:`rwku.report.knowledge.memorization_figure` (figures belong to the report layer, above this one)."""
    from rwku.io import json_safe, write_json_atomic, write_text_atomic

    lines = "".join(json.dumps(json_safe(r), ensure_ascii=False) + "\n" for r in job.rows)
    write_text_atomic(out / TEXTS, lines)
    paths = [out / TEXTS]
    if draw is not None:
        paths += draw(out, job.payload(), job.rows)
    write_json_atomic(out / RESULTS, job.payload())
    return paths + [out / RESULTS]


# ---------------------------------------------------------------- reading results back


def panels_from(payload: dict[str, Any], rows: Sequence[dict[str, Any]], prefix: str = "") -> list[dict[str, Any]]:
    """What the Fig.-1 scatter draws, one panel per model: source -> per-text (NLL, EM) points and the means."""
    panels = []
    for model, entry in payload.get("models", {}).items():
        points: dict[str, list[tuple[float, float]]] = {name: [] for name in entry.get("sources", {})}
        for row in rows:
            if row.get("model") == model and row.get("em") is not None and row.get("source") in points:
                points[row["source"]].append((row["nll"], row["em"]))
        panels.append({"title": f"{prefix}{model}", "points": points, "means": entry.get("sources", {})})
    return panels


def load_results(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``memorization.json`` and the per-text rows of a folder (rows empty when ``texts.jsonl`` is missing)."""
    from rwku.io import read_json

    try:
        payload = read_json(folder / RESULTS)
    except (OSError, json.JSONDecodeError) as exc:
        raise RwkuError(f"{folder / RESULTS}: unreadable ({exc}); rerun rwku memorization") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("models"), dict):
        raise RwkuError(f"{folder / RESULTS}: not an rwku memorization result; rerun rwku memorization")
    rows = []
    texts = folder / TEXTS
    if texts.is_file():
        for line in texts.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a broken line only loses its point in the figure
    return payload, rows
