"""The command line as installed: the console script and the model listing."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from cli import main
from models.extractor_factory import BASELINE_IDS
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


def test_a_bug_shows_its_traceback_and_asks_for_a_report(monkeypatch, capsys):
    import cli

    def broken(args):
        raise ZeroDivisionError("a bug")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["models"].set_defaults(func=broken)
    assert main(["models"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err and "please report it" in err


def test_an_input_error_is_one_line(tmp_path, capsys):
    assert main(["status", "--db", str(tmp_path / "none.db")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "none.db" in err


def test_candidates_reach_the_query_options_and_are_checked(tmp_path, capsys):
    import cli

    args = cli.build_parser().parse_args(["query", "theme.xml", "--candidates", "71"])
    assert cli._query_options(args).candidates == 71
    assert cli._query_options(cli.build_parser().parse_args(["query", "theme.xml"])).candidates is None  # by size
    assert main(["query", str(tmp_path / "theme.xml"), "--candidates", "0", "--db", str(tmp_path / "x.db")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "candidates" in err


def test_presets_set_the_feature_settings_and_explicit_flags_override_them():
    import cli
    from models.retrieval_features import PRESETS, IndexSettings, SettingsMismatchError

    def settings(*flags: str):
        return cli._settings_from_args(cli.build_parser().parse_args(["index", "audio", *flags]))

    assert settings() is None  # no flag: an existing index keeps its own settings
    assert settings("--preset", "default") == IndexSettings()
    default = IndexSettings()
    assert (default.model_id, default.downsample, default.smoothing, default.shingle_length, default.shingle_hop,
            default.coarse_at_scale) == ("v2_ctc_train123valid4+v2_ctc_train512valid3", 1, 1, 32, 4, True)
    assert settings("--preset", "textures").model_id == "v2_ctc_train123valid4+cens"
    fast = settings("--preset", "fast", "--shingle-hop", "4")
    assert (fast.model_id, fast.downsample, fast.smoothing, fast.shingle_length, fast.shingle_hop,
            fast.coarse_at_scale) == ("v2_ctc_train123valid4", 2, 5, 16, 4, False)
    assert PRESETS["fast"].apply().shingle_hop == 2 and PRESETS["textures"].apply().rate == 12.5
    with pytest.raises(SettingsMismatchError, match="model_id"):
        settings("--preset", "textures").check_matches(IndexSettings())
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["index", "audio", "--preset", "loud"])
