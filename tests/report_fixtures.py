"""Hand-made result folders for report tests: summaries and items with known numbers, in the runner's layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rwku.evaluation.sets import SETS, TABLE1_COLUMNS
from rwku.io import write_json_atomic
from rwku.results import unflatten

ATTACK_TYPES = ("prefix injection", "role play", "multiple choice")
MIA_ATTACKS = ("loss", "zlib", "mink++_0.2")


def summary(values: dict[str, float], config: dict[str, Any], targets: list[str], by_type: dict[str, float] | None = None,
            **extra: Any) -> dict[str, Any]:
    """A unit summary: Table-1 values given by dotted path (missing columns get 50.0, but opt-in sets' columns stay
    out), attack-type scores, AUCs."""
    opt_in = {column.path for s in SETS.values() if not s.in_all for column in s.columns}  # only where given
    flat = {path: values.get(path, 50.0) for _, _, path, _ in TABLE1_COLUMNS if path not in opt_in or path in values}
    nested = unflatten(flat)
    nested["forget"]["AA_by_type"] = dict(by_type or {t: flat["forget.AA"] for t in ATTACK_TYPES})
    nested["mia"]["attacks"] = {a: {"FM": 0.0, "RM": 0.0, "auc": 0.5} for a in MIA_ATTACKS}
    return {"model": "tiny", "method": config.get("method"), "target": ", ".join(targets), "targets": targets,
            "config": config, "n_items": {"forget": 2}, "seconds": {"forget": 1.0}, **nested, **extra}


def items(target: str, outputs: list[str], scores: list[float], fm: list[float], rm: list[float]) -> dict[str, Any]:
    """Two forget probes and one neighbour probe with given outputs/scores, and MIA texts with given loss scores."""
    forget = [{"level": "FB", "type": "cloze", "query": f"{target} was born in ___.", "prompt": "p", "raw_output": outputs[0],
               "output": outputs[0], "reference": "Springfield", "score": scores[0]},
              {"level": "AA", "type": "role play", "query": f"Who is {target}?", "prompt": "p", "raw_output": outputs[1],
               "output": outputs[1], "reference": "a writer", "score": scores[1]}]
    neighbor = [{"level": "QA", "type": "qa", "neighbor": "Elsewhere", "query": "Where is Elsewhere?", "prompt": "p",
                 "raw_output": outputs[2], "output": outputs[2], "reference": "far away", "score": scores[2]}]
    mia = ([{"set": "FM", "text": f"fm {i}", "n_tokens": 3, "nll": -v, "attacks": {a: v for a in MIA_ATTACKS}} for i, v in enumerate(fm)]
           + [{"set": "RM", "text": f"rm {i}", "n_tokens": 3, "nll": -v, "attacks": {a: v for a in MIA_ATTACKS}} for i, v in enumerate(rm)])
    return {"config": {}, "forget": forget, "neighbor": neighbor, "mia": mia}


def config(method: str, mode: str = "lora", setting: str = "single", layers: list[int] | None = None,
           sweep: dict[str, Any] | None = None, epochs: int = 3, alpha: float = 1.0) -> dict[str, Any]:
    if method == "before":
        return {"model": "tiny", "method": "before"}
    out: dict[str, Any] = {"model": "tiny", "method": method, "mode": {"mode": mode, "train_layers": layers},
                           "setting": setting, "train": {"epochs": epochs, "alpha": alpha}}
    if sweep:
        out["sweep"] = sweep
    return out


def write_unit(folder: Path, summary_: dict[str, Any], items_: dict[str, Any] | None = None) -> None:
    if items_ is not None:
        write_json_atomic(folder / "items.json", items_)
    write_json_atomic(folder / "summary.json", summary_)


TARGETS = {"1_Ann_A": "Ann A", "2_Bob_B": "Bob B", "3_Cy_C": "Cy C"}
#: run -> per target: (forget.All, neighbor.All)
VALUES = {
    "before": {"1_Ann_A": (60.0, 50.0), "2_Bob_B": (40.0, 70.0), "3_Cy_C": (50.0, 50.0)},
    "icu": {"1_Ann_A": (100.0, 0.0), "2_Bob_B": (100.0, 0.0), "3_Cy_C": (100.0, 0.0)},
    "ga-lora": {"1_Ann_A": (10.0, 40.0), "2_Bob_B": (20.0, 60.0), "3_Cy_C": (90.0, 90.0)},
    "npo-lora": {"1_Ann_A": (20.0, 45.0), "2_Bob_B": (30.0, 65.0)},  # lacks target 3
    "rt-lora": {"1_Ann_A": (14.96, 30.0), "2_Bob_B": (15.0, 70.0), "3_Cy_C": (0.0, 0.0)},
}


def make_folder(root: Path, values=VALUES, outputs=("Springfield!", "a writer", "far")) -> Path:
    for run, per_target in values.items():
        method = run.split("-")[0]
        for slug, (forget, neighbor) in per_target.items():
            name = TARGETS[slug]
            unit = summary({"forget.All": forget, "neighbor.All": neighbor}, config(method), [name])
            write_unit(root / run / slug, unit, items(name, [f"{run}: {o}" for o in outputs], [forget, forget, neighbor],
                                                      fm=[-1.0, -2.0], rm=[-3.0, -1.5]))
        write_unit(root / run, {"method": run, "forget": {"All": 0.0}, "n_targets": len(per_target)})  # a run mean
    return root


def write_memorization(folder: Path, model: str = "tiny") -> Path:
    """A hand-made memorization result for the report fixtures' targets."""
    rows = [{"model": model, "source": s, "id": f"{s}:{i}", "target": t, "tokens": 32, "em": em, "nll": nll}
            for s, t, i, em, nll in (("rwku", "1_Ann_A", 0, 0.8, 0.5), ("rwku", "1_Ann_A", 1, 0.6, 1.0),
                                     ("rwku", "2_Bob_B", 0, 0.2, 3.0), ("unseen", None, 0, 0.1, 4.0))]
    payload = {"window": 32, "models": {model: {
        "sources": {"rwku": {"em": 0.5333, "nll": 1.5, "count": 3}, "unseen": {"em": 0.1, "nll": 4.0, "count": 1}},
        "targets": {"1_Ann_A": {"number": 1, "name": "Ann A", "em": 0.7, "nll": 0.75, "count": 2},
                    "2_Bob_B": {"number": 2, "name": "Bob B", "em": 0.2, "nll": 3.0, "count": 1}}}}}
    folder.mkdir(parents=True)
    (folder / "texts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "memorization.json").write_text(json.dumps(payload))
    return folder
