"""SIGINT and SIGTERM sent to a real ``rwku`` process: it stops within seconds, keeps every finished unit and
nothing half-written, prints one line saying so and what to run to go on, and exits 130 or 143; run again, the
same command continues where it stopped.

Each command runs in a child process whose SIGINT disposition is set back to the default (a background job of a
script inherits "ignore", and rwku keeps an ignored SIGINT ignored). The signal is sent once the child shows it
is at work: a unit stored (eval, unlearn, experiment, audit), the planted model's temporary folder (plant), or
rwku's handlers installed (seen in ``/proc/<pid>/status``) for the others.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

import rwku

SRC = Path(rwku.__file__).resolve().parents[1]
#: How long a child may take to stop once signalled (generous: 2 CPU cores shared by other work).
STOP_SECONDS = 60


def child_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=f"{SRC}{os.pathsep}{env.get('PYTHONPATH', '')}", RWKU_CACHE=str(tmp_path / "cache"),
               HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    return env


def start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    """``rwku args`` in a child process with SIGINT's default disposition; stdout and stderr to files."""
    def default_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    with open(tmp_path / "stdout.txt", "w") as out, open(tmp_path / "stderr.txt", "w") as err:
        child = subprocess.Popen([sys.executable, "-c", "from rwku.cli import main; main()", *args],
                                 env=child_env(tmp_path), stdout=out, stderr=err, preexec_fn=default_sigint)
    child.stderr_path = tmp_path / "stderr.txt"
    return child


def wait_for(child: subprocess.Popen, ready: Callable[[], bool], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert child.poll() is None, f"finished before the signal (exit {child.returncode}): " + stderr_of(child)
        assert time.monotonic() < deadline, "never got ready"
        time.sleep(0.05)


def stderr_of(child: subprocess.Popen) -> str:
    return child.stderr_path.read_text()


def handlers_installed(pid: int) -> bool:
    """rwku's SIGTERM handler is in place (Python alone catches SIGINT, never SIGTERM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


def interrupt(child: subprocess.Popen, sig: int) -> tuple[int, float, list[str]]:
    """Send ``sig``; the exit code, the seconds it took to stop, and the lines it printed to stderr after the
    progress bars (rich draws none without a terminal)."""
    sent = time.monotonic()
    child.send_signal(sig)
    code = child.wait(timeout=STOP_SECONDS)
    seconds = time.monotonic() - sent
    lines = [line for line in stderr_of(child).splitlines() if line.strip()]
    return code, seconds, lines


def stored_units(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.rglob("summary.json") if p.parent != out and (p.parent / "items.json").is_file())


def leftovers(root: Path) -> list[Path]:
    """Temporary files or folders an interrupted write would leave."""
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith((".plant-", ".convert-", ".build-"))]


def assert_stopped(code: int, seconds: float, lines: list[str], sig: int, *fragments: str) -> str:
    assert code == 128 + sig, lines
    assert seconds < STOP_SECONDS
    last = lines[-1]
    assert "Traceback" not in "\n".join(lines)
    assert last.startswith(f"interrupted by {signal.Signals(sig).name}: "), lines
    for fragment in fragments:
        assert fragment in last, (fragment, last)
    return last


def eval_args(model: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "--model", str(model), "--data", "demo", "--targets", "all", "--sets", "forget,neighbor",
            "--limit", "4", "--out", str(out), "--threads", "1", "--device", "cpu", *extra]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_eval_interrupted_after_a_unit_keeps_it_and_continues(tiny_model_dir, tmp_path, sig):
    out = tmp_path / "run"
    child = start(eval_args(tiny_model_dir, out), tmp_path)
    wait_for(child, lambda: len(stored_units(out)) >= 1)
    code, seconds, lines = interrupt(child, sig)
    kept = stored_units(out)
    assert_stopped(code, seconds, lines, sig, f"{len(kept)} of 3 unit(s) stored in {out}",
                          "the same command again continues: rwku eval --model")
    assert 1 <= len(kept) < 3 and not leftovers(out)
    for unit in kept:  # whole files only
        json.loads((unit / "summary.json").read_text()) and json.loads((unit / "items.json").read_text())
    stamps = {unit: (unit / "summary.json").stat().st_mtime_ns for unit in kept}
    again = start(eval_args(tiny_model_dir, out), tmp_path)
    assert again.wait(timeout=600) == 0, stderr_of(again)
    assert len(stored_units(out)) == 3 and all((u / "summary.json").stat().st_mtime_ns == t for u, t in stamps.items())
    printed = (tmp_path / "stdout.txt").read_text()
    assert "stored result of an earlier run" in printed  # the kept units are reused, marked *


def test_unlearn_interrupted_keeps_the_finished_units(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    args = ["unlearn", "--method", "ga", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1-2",
            "--out", str(out), "--sets", "forget", "--limit", "2", "--mode", "full", "--preset", "none", "--threads", "1",
            "--device", "cpu", "--set", "corpus_size=2", "--set", "corpus_max_new_tokens=8", "--set", "epochs=1",
            "--set", "max_length=32"]
    child = start(args, tmp_path)
    wait_for(child, lambda: len(stored_units(out)) >= 1)
    code, seconds, lines = interrupt(child, signal.SIGINT)
    kept = stored_units(out)
    assert_stopped(code, seconds, lines, signal.SIGINT, f"{len(kept)} of 4 unit(s) stored in {out}")
    assert 1 <= len(kept) < 4 and not leftovers(out) and not leftovers(tmp_path / "cache")


def test_experiment_interrupted(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    config = tmp_path / "experiment.json"
    config.write_text(json.dumps({
        "model": str(tiny_model_dir), "data": "demo", "targets": "1-3", "out": str(out), "sets": "forget",
        "limit": 2, "device": "cpu", "grids": [{"name": "icu", "methods": ["icu"], "modes": ["full"]}]}))
    child = start(["experiment", str(config), "--threads", "1"], tmp_path)
    wait_for(child, lambda: len(stored_units(out)) >= 1)
    code, seconds, lines = interrupt(child, signal.SIGTERM)
    kept = stored_units(out)
    assert_stopped(code, seconds, lines, signal.SIGTERM, f"{len(kept)} of 6 unit(s) stored")
    assert not leftovers(out)


def test_plant_interrupted_leaves_no_folder(tiny_model_dir, tmp_path):
    out = tmp_path / "planted"
    args = ["plant", "--model", str(tiny_model_dir), "--data", "demo", "--targets", "1-2", "--out", str(out),
            "--sets", "forget", "--threads", "1", "--set", "epochs=50"]
    child = start(args, tmp_path)
    wait_for(child, lambda: bool(leftovers(tmp_path)))
    code, seconds, lines = interrupt(child, signal.SIGTERM)
    assert_stopped(code, seconds, lines, signal.SIGTERM, "no planted model was written", "starts over")
    assert not out.exists() and not leftovers(tmp_path)


@pytest.mark.parametrize("command", ["memorization", "build-target", "report", "audit"])
def test_other_commands_interrupted(command, tiny_model_dir, tmp_path):
    """Interrupted as soon as rwku's handlers are in place (the command is importing its modules or at work)."""
    source = tmp_path / "source.txt"
    source.write_text("Ada Lovelace was an English mathematician. She wrote the first published program.\n" * 20)
    runs = tmp_path / "runs"
    (runs / "1_Isaac_Newton").mkdir(parents=True)
    args = {
        "memorization": ["memorization", "--model", str(tiny_model_dir), "--out", str(tmp_path / "m"), "--threads", "1",
                         "--device", "cpu"],
        "build-target": ["build-target", "--name", "Ada Lovelace", "--source-text", str(source), "--out",
                         str(tmp_path / "data"), "--generator", str(tiny_model_dir), "--device", "cpu", "--threads", "1"],
        "report": ["report", str(runs), "--out", str(tmp_path / "report")],
        "audit": ["audit", "--model", str(tiny_model_dir), "--original", str(tiny_model_dir), "--data", "demo",
                  "--targets", "all", "--out", str(tmp_path / "audit"), "--audit", "logit_lens", "--limit", "2",
                  "--device", "cpu", "--threads", "1"],
    }[command]
    child = start(args, tmp_path)
    wait_for(child, lambda: handlers_installed(child.pid))
    code, seconds, lines = interrupt(child, signal.SIGINT)
    assert_stopped(code, seconds, lines, signal.SIGINT, f"the same command again", f"rwku {command}")
    assert not leftovers(tmp_path)


def test_an_ignored_sigint_stays_ignored():
    """``nohup`` or a script's background job: rwku does not start answering a SIGINT its parent told it to ignore;
    SIGTERM is handled, and both handlers are put back after the command."""
    from rwku.interrupts import handled

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    term = signal.getsignal(signal.SIGTERM)
    try:
        with handled():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not term
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and signal.getsignal(signal.SIGTERM) is term
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_signal_waits_for_a_deferred_stretch():
    """A signal inside ``deferred`` (a unit's files being written) is raised when the stretch ends, not in it."""
    from rwku.interrupts import Interrupted, deferred, handled

    steps = []
    with handled(), pytest.raises(Interrupted) as caught:
        with deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            steps.append("written")
        steps.append("after")
    assert steps == ["written"] and caught.value.exit_code == 143


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ray_executor_interrupted(tiny_model_dir, tmp_path, sig):
    """With ``--executor ray`` too (SIGTERM included: ``ray.init`` installs a SIGTERM handler of its own, which rwku
    puts back): the units queued or running are cancelled, the cluster is shut down, the finished ones are kept."""
    if importlib.util.find_spec("ray") is None:
        if os.environ.get("RWKU_REQUIRE_RAY") == "1":
            pytest.fail("the Ray executor tests need Ray; pip install -e '.[ray]'", pytrace=False)
        pytest.skip("needs Ray")
    out = tmp_path / "run"
    # every set: units long enough (seconds each, two at a time) that the signal finds the later ones running
    args = [*eval_args(tiny_model_dir, out, "--executor", "ray", "--cpus-per-unit", "1"), "--limit", "8", "--sets", "all"]
    child = start(args, tmp_path)
    wait_for(child, lambda: len(stored_units(out)) >= 1)
    time.sleep(0.5)  # the driver back in ray.wait, where Ray's native code checks for signals
    code, seconds, lines = interrupt(child, sig)
    kept = stored_units(out)
    assert_stopped(code, seconds, lines, sig, f"{len(kept)} of 3 unit(s) stored in {out}")
    assert 1 <= len(kept) and not leftovers(out)


def test_native_code_sees_a_keyboard_interrupt_and_rwku_an_interrupted():
    """Ray's wait/get turn only a KeyboardInterrupt from the handler into an error of theirs (anything else: a
    SystemError): inside ``native_calls`` the handler raises one, turned back into Interrupted when it leaves."""
    from rwku.interrupts import Interrupted, handled, native_calls

    seen = []
    with handled(), pytest.raises(Interrupted) as caught:
        with native_calls():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            except KeyboardInterrupt:
                seen.append("KeyboardInterrupt")
                raise
    assert seen == ["KeyboardInterrupt"] and caught.value.exit_code == 143
    with pytest.raises(KeyboardInterrupt), native_calls():  # without rwku's handlers: Python's own Ctrl-C
        raise KeyboardInterrupt
