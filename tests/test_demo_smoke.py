"""Cheap checks of ``scripts/demo.sh`` (the full demo takes ~15 minutes and is run by hand / ``make demo``).

They catch what would otherwise only fail minutes into a demo: a syntax error, an objective without a
tiny preset, or an override the fine-tuning / evaluation configs do not accept.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scripts" / "demo.sh"


def test_demo_script_parses() -> None:
    done = subprocess.run(["bash", "-n", str(DEMO)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_unknown_objective_stops_before_any_work(tmp_path: Path) -> None:
    env = {**os.environ, "OBJECTIVE": "nope", "DEMO_DIR": str(tmp_path / "demo")}
    done = subprocess.run(["bash", str(DEMO)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=30)
    assert done.returncode == 2
    assert "conf/experiment/nope_tiny.yaml" in done.stderr and "wav2vec2" in done.stderr
    assert not (tmp_path / "demo").exists()


def demo_overrides(command: str) -> list[str]:
    """The ``key=value`` overrides the demo passes to ``audiossl-<command>`` (shell variables filled in)."""
    text = DEMO.read_text()
    recipe = re.search(r"RECIPE=\((.*?)\)", text, re.S).group(1).split()
    if command == "finetune":
        return [re.sub(r"\$\{[^}]*\}", "100", item) for item in recipe] + ["init=random", "run_dir=runs/x"]
    return ["runs=[a,b]", "names=[x,y]", "splits=[test_clean,test_other]", "decoders=[greedy,lm]", "out_dir=r",
            "bench=probes"]


def test_demo_overrides_compose_with_the_configs() -> None:
    for command in ("finetune", "evaluate"):
        overrides = [o.replace("$MANIFESTS", "manifests/synth") for o in demo_overrides(command)]
        code = f"from audiossl.cli.{command} import main; main()"
        done = subprocess.run([sys.executable, "-c", code, *overrides, "--cfg", "job"], capture_output=True,
                              text=True, cwd=ROOT, env={**os.environ, "TORCH_COMPILE_DISABLE": "1"}, timeout=120)
        assert done.returncode == 0, f"{command}: {done.stderr[-2000:]}"


def test_few_label_script_parses_and_needs_a_pretrained_run(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "few_label.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    env = {**os.environ, "PRETRAINED": str(tmp_path / "missing"), "OUT": str(tmp_path / "out")}
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=30)
    assert done.returncode == 2 and "PRETRAINED" in done.stderr and "hubert_tiny" in done.stderr
    assert not (tmp_path / "out").exists()
