"""The fault table of docs/reliability.md: each fault or bad input tried on the real ``rwku`` command, what it
printed (its last line), its exit code and what was kept. Prints a Markdown table.

    python benchmarks/reliability_table.py --work /tmp/rwku-faults [--model smollm2-135m] [--only NAME ...]

Runs in its own cache (``<work>/cache``: the default model is converted there once) so that truncating cache
entries never touches ``~/.cache/rwku``. Signals go to a child whose SIGINT disposition is the default, once it has
stored a unit (plan-based commands) or has started (the others).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

SRC = Path(__file__).resolve().parents[1] / "src"


def env(work: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "RWKU_CACHE": str(work / "cache"),
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def start(args: list[str], work: Path) -> subprocess.Popen:
    err = open(work / "stderr.txt", "w")
    return subprocess.Popen(["rwku", *args], env=env(work), stdout=subprocess.DEVNULL, stderr=err,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def last_line(work: Path) -> str:
    lines = [line for line in (work / "stderr.txt").read_text().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run(args: list[str], work: Path) -> tuple[int, str, float]:
    begin = time.monotonic()
    child = start(args, work)
    code = child.wait()
    return code, last_line(work), time.monotonic() - begin


def units(out: Path) -> int:
    return sum(1 for p in out.rglob("summary.json") if p.parent != out and (p.parent / "items.json").is_file())


def leftovers(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith((".plant-", ".convert-", ".build-")))


def handlers_installed(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


def interrupted(args: list[str], work: Path, sig: int, ready: Callable[[subprocess.Popen], bool]) -> tuple[int, str, float]:
    child = start(args, work)
    while not ready(child):
        if child.poll() is not None:
            return child.returncode, "finished before the signal: " + last_line(work), 0.0
        time.sleep(0.05)
    sent = time.monotonic()
    child.send_signal(sig)
    code = child.wait()
    return code, last_line(work), time.monotonic() - sent


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def scenarios(work: Path, model: str) -> dict[str, Callable[[], tuple[str, str, int, str]]]:
    """name -> a function returning (fault, command, printed line, exit code, what was kept)."""
    out = work / "out"
    demo_eval = ["eval", "--model", model, "--data", "demo", "--targets", "all", "--sets", "forget,neighbor", "--limit", "3",
                 "--threads", "1"]

    def signalled(name: str, args: list[str], sig: int, ready: Callable[[subprocess.Popen], bool], kept: Callable[[], str]):
        def go():
            shutil.rmtree(Path(args[args.index("--out") + 1]), ignore_errors=True)  # a fresh run
            code, line, seconds = interrupted(args, work, sig, ready)
            return (f"{signal.Signals(sig).name} {name} (stopped in {seconds:.1f} s)", shlex.join(["rwku", *args]), line,
                    code, kept())
        return go

    def stored_kept(folder: Path) -> Callable[[], str]:
        return lambda: f"{units(folder)} unit(s) whole, {leftovers(folder)} temporary file(s)"

    def one_unit(folder: Path) -> Callable[[subprocess.Popen], bool]:
        return lambda child: units(folder) >= 1

    def started(child: subprocess.Popen) -> bool:
        return handlers_installed(child.pid)

    def bad(name: str, args: list[str]):
        def go():
            code, line, _ = run(args, work)
            return name, shlex.join(["rwku", *args]), line, code, "nothing written" if not (work / "bad").exists() else "?"
        return go

    ga = ["unlearn", "--method", "ga", "--model", model, "--data", "demo", "--targets", "1", "--sets", "forget",
          "--limit", "3", "--set", "corpus_size=4", "--set", "epochs=1", "--threads", "1"]

    def corpus_cut():
        folder = work / "ga"
        shutil.rmtree(folder, ignore_errors=True)  # a fresh run: its corpus is generated (or read) now
        code, line, _ = run([*ga, "--out", str(folder)], work)
        assert code == 0, line
        [path] = sorted((work / "cache" / "corpora").glob("1_Isaac_Newton-forget-*.json"))
        earlier = len(list(path.parent.glob(f".{path.name}.corrupt-*")))
        truncate(path)
        code, line, _ = run([*ga, "--out", str(folder), "--force"], work)
        warning = next((x for x in (work / "stderr.txt").read_text().splitlines() if x.startswith("warning:")), "")
        aside = len(list(path.parent.glob(f".{path.name}.corrupt-*"))) - earlier
        return ("forget corpus cache cut to half its bytes", shlex.join(["rwku", *ga, "--out", str(folder), "--force"]),
                warning, code, f"unit recomputed ({units(folder)} stored), broken file moved aside ({aside}), corpus rebuilt")

    def converted_cut():
        folder = work / "cache" / "models" / "smollm2-135m-instruct"
        truncate(folder / "model.safetensors", keep=0.9)
        args = ["eval", "--model", model, "--data", "demo", "--targets", "1", "--sets", "forget", "--limit", "1",
                "--out", str(work / "conv"), "--threads", "1"]
        code, line, _ = run(args, work)
        warning = next((x for x in (work / "stderr.txt").read_text().splitlines() if x.startswith("warning:")), "")
        return ("converted default model: model.safetensors cut to 90 %", shlex.join(["rwku", *args]), warning, code,
                "model moved aside, converted again; the evaluation ran")

    def legend():
        args = ["eval", "--model", model, "--data", "demo", "--targets", "1", "--sets", "forget", "--limit", "1",
                "--out", str(work / "legend"), "--threads", "1"]
        shown = []
        for _ in range(2):
            result = subprocess.run(["rwku", *args], env=env(work), capture_output=True, text=True)
            shown.append("legend" if "stored result of an earlier run" in result.stdout else "no legend")
        return ("the same evaluation twice", shlex.join(["rwku", *args]), f"first run: {shown[0]}; second (row stored, *): {shown[1]}",
                0, "-")

    def cache_check():
        corpora = work / "cache" / "corpora"
        victim = sorted(p for p in corpora.glob("*.json"))[0]
        victim.write_text(victim.read_text()[:40])
        result = subprocess.run(["rwku", "cache", "--check"], env=env(work), capture_output=True, text=True)
        return ("a corpus cache entry cut short, then rwku cache --check", "rwku cache --check",
                [x for x in result.stdout.splitlines() if x.strip()][-1], result.returncode, "broken entry moved aside")

    def again():
        args = [*demo_eval, "--out", str(out / "e1")]
        before = units(out / "e1")
        result = subprocess.run(["rwku", *args], env=env(work), capture_output=True, text=True)
        rows = [x for x in result.stdout.splitlines() if "Isaac Newton" in x or "Marie Curie" in x or "Mozart" in x]
        reused = sum("*" in x.split("│")[1] for x in rows if "│" in x)
        return ("the interrupted evaluation run again", shlex.join(["rwku", *args]),
                f"{len(rows)} Table-1 rows, {reused} marked * (stored)", result.returncode,
                f"{before} unit(s) reused, {units(out / 'e1') - before} computed")

    table = {
        "eval-again": again,
        "eval-int": signalled("during rwku eval (local), after its first unit", [*demo_eval, "--out", str(out / "e1")],
                              signal.SIGINT, one_unit(out / "e1"), stored_kept(out / "e1")),
        "eval-term": signalled("during rwku eval (local), after its first unit", [*demo_eval, "--out", str(out / "e2")],
                               signal.SIGTERM, one_unit(out / "e2"), stored_kept(out / "e2")),
        "ray-int": signalled("during rwku eval --executor ray, after its first unit",
                             [*demo_eval, "--out", str(out / "r1"), "--executor", "ray"], signal.SIGINT, one_unit(out / "r1"),
                             stored_kept(out / "r1")),
        "ray-term": signalled("during rwku eval --executor ray, after its first unit",
                              [*demo_eval, "--out", str(out / "r2"), "--executor", "ray"], signal.SIGTERM, one_unit(out / "r2"),
                              stored_kept(out / "r2")),
        "unlearn-int": signalled("during rwku unlearn --method ga, after its first unit",
                                 [*ga[:8], "1-2", *ga[9:], "--out", str(out / "u1")], signal.SIGINT, one_unit(out / "u1"),
                                 stored_kept(out / "u1")),
        "plant-term": signalled("during rwku plant", ["plant", "--model", model, "--data", "demo", "--targets", "1-2", "--sets",
                                                       "forget", "--out", str(out / "p1"), "--threads", "1"],
                                signal.SIGTERM, lambda child: leftovers(out) > 0,
                                lambda: f"{'a folder' if (out / 'p1').exists() else 'no folder'} at --out, {leftovers(out)} temporary folder(s)"),
        "memorization-int": signalled("during rwku memorization", ["memorization", "--model", model, "--out", str(out / "m1"),
                                                                    "--limit", "20", "--threads", "1"],
                                      signal.SIGINT, lambda child: started(child) and time.sleep(8) is None,
                                      lambda: f"{len(list((out / 'm1').glob('*')))} file(s) in --out"),
        "threads": bad("--threads 0", ["eval", "--data", "demo", "--out", str(work / "bad"), "--threads", "0"]),
        "limit": bad("--limit -3", ["eval", "--data", "demo", "--out", str(work / "bad"), "--limit", "-3"]),
        "batch": bad("--batch-size 0", ["unlearn", "--method", "ga", "--data", "demo", "--out", str(work / "bad"), "--batch-size", "0"]),
        "limit-word": bad("--limit abc", ["eval", "--data", "demo", "--out", str(work / "bad"), "--limit", "abc"]),
        "gpus": bad("--gpus-per-unit -1", ["eval", "--data", "demo", "--out", str(work / "bad"), "--gpus-per-unit", "-1"]),
        "executor": bad("--executor slurm", ["eval", "--data", "demo", "--out", str(work / "bad"), "--executor", "slurm"]),
        "device": bad("--device tpu", ["eval", "--data", "demo", "--out", str(work / "bad"), "--device", "tpu"]),
        "out-file": bad("--out naming a file", ["experiment", "experiments/beyond-paper.json", "--out", str(SRC / "rwku" / "cli.py"), "--dry-run"]),
        "attacks": bad("--attacks unknown", ["report", str(work / "legend"), "--out", str(work / "bad"), "--attacks", "loss,nope"]),
        "lora": bad("--lora-targets ','", ["unlearn", "--method", "ga", "--data", "demo", "--out", str(work / "bad"), "--lora-targets", ","]),
        "remove": bad("rwku cache --remove of an unknown entry", ["cache", "--remove", "nope"]),
        "corpus": corpus_cut,
        "converted": converted_cut,
        "legend": legend,
        "cache-check": cache_check,
    }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--only", nargs="*", help="scenario names, run in this order (default: all)")
    options = parser.parse_args()
    options.work.mkdir(parents=True, exist_ok=True)
    chosen = scenarios(options.work, options.model)
    rows = []
    for name in options.only or list(chosen):  # --only: in the order given
        fault, command, line, code, kept = chosen[name]()
        rows.append(f"| {fault} | `{command}` | {line.replace('|', '/')} | {code} | {kept} |")
        print(rows[-1], file=sys.stderr, flush=True)
    print("| fault or bad input | command | what rwku printed (last line) | exit | kept |")
    print("|---|---|---|---:|---|")
    print("\n".join(rows))
    (options.work / "table.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
