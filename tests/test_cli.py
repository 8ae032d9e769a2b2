"""The command line as installed: the console script and the model listing."""

from __future__ import annotations

import json
import shutil
import subprocess

from cli import main
from models.baselines import BASELINE_IDS
from models.registry import MODEL_IDS


def test_models_lists_every_id_index_accepts(capsys):
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["models"] == list(MODEL_IDS) and listed["baselines"] == list(BASELINE_IDS)
    assert "cens" in listed["baselines"]


def test_console_script_runs_the_same_commands():
    script = shutil.which("score-retrieval")
    assert script, "pip install -e . installs the score-retrieval console script"
    done = subprocess.run([script, "models", "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and json.loads(done.stdout)["models"] == list(MODEL_IDS)
