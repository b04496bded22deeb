"""The `seg4reg` dispatcher: every command registered, import errors surface, `--config` by shipped name."""
from __future__ import annotations

import os
import sys

import pytest

from seg4reg_tf import cli
from seg4reg_tf.shipped_configs import config_dir, resolve_config, shipped_names

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _subparsers(parser):
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return action.choices


def test_every_command_is_registered_and_predict_lives_with_the_client():
    commands = _subparsers(cli.build_parser())
    assert {"data", "train", "evaluate", "export", "predict", "serve", "tune"} <= set(commands)
    predict = commands["predict"]
    assert predict.get_default("func").__module__ == "seg4reg_tf.client.cli"
    flags = {s for a in predict._actions for s in a.option_strings}
    assert {"--model", "--server", "--rest", "--model-name", "--out", "--threshold", "--geometry-threshold"} <= flags
    args = predict.parse_args(["a.jpg", "--model", "m", "--out", "o", "--geometry-threshold", "7.5"])
    assert (args.threshold, args.geometry_threshold, args.model_name) == (5.0, 7.5, "seg4reg")
    with pytest.raises(SystemExit):
        predict.parse_args(["a.jpg", "--model", "m", "--out", "o", "--threshold", "-1"])


def test_predict_rest_without_server_is_a_usage_error(capsys):
    assert cli.main(["predict", "x.jpg", "--model", "m", "--rest", "--out", "o"]) == 2
    assert "--rest needs --server" in capsys.readouterr().err


@pytest.mark.parametrize("module_text,missing", [
    (None, "seg4reg_tf_no_such_package"),  # the command module itself is missing
    ("import seg4reg_tf_no_such_dependency\n", "seg4reg_tf_no_such_dependency"),  # it fails to import
])
def test_a_command_module_that_fails_to_import_is_an_error(tmp_path, monkeypatch, module_text, missing):
    name = "seg4reg_tf_no_such_package.cli"
    if module_text is not None:
        (tmp_path / "broken_cli.py").write_text(module_text)
        monkeypatch.syspath_prepend(str(tmp_path))
        name = "broken_cli"
    monkeypatch.setattr(cli, "_COMMAND_MODULES", cli._COMMAND_MODULES + (name,))
    with pytest.raises(ImportError, match=name) as info:
        cli.build_parser()
    assert missing in str(info.value)
    sys.modules.pop("broken_cli", None)


def test_shipped_configs_resolve_by_name(tmp_path, monkeypatch):
    assert os.path.samefile(config_dir(), os.path.join(REPO, "configs"))  # the checkout's (editable install)
    names = {f[:-5] for f in os.listdir(os.path.join(REPO, "configs")) if f.endswith(".yaml")}
    assert set(shipped_names()) == names and "demo" in names
    monkeypatch.chdir(tmp_path)  # no configs/ here
    want = os.path.join(REPO, "configs", "demo.yaml")
    for value in ("demo", "demo.yaml", os.path.join("configs", "demo.yaml")):
        assert os.path.samefile(resolve_config(value), want)
    (tmp_path / "demo").write_text("name: mine\n")  # an existing file always wins over a shipped name
    assert resolve_config("demo") == "demo"
    with pytest.raises(FileNotFoundError, match="not found: nope.*shipped: .*demo"):
        resolve_config("nope")
    with pytest.raises(FileNotFoundError):
        resolve_config(os.path.join("elsewhere", "demo.yaml"))  # only bare names and configs/NAME are looked up


def test_train_and_tune_take_a_shipped_config_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    missing = str(tmp_path / "no_data")
    # seg4reg_plus extends aasce_cpu.yaml with `base:`: the config loads, then --data is refused
    assert cli.main(["train", "--config", "seg4reg_plus", "--data", missing]) == 2
    err = capsys.readouterr().err
    assert "not a directory" in err and "config error" not in err
    assert cli.main(["train", "--config", "nope", "--data", missing]) == 2
    assert "config file not found: nope" in capsys.readouterr().err
    assert cli.main(["tune", "--config", "nope", "--data", missing, "--trials", "1",
                     "--out", str(tmp_path / "t")]) == 2
    assert "config file not found: nope" in capsys.readouterr().err
