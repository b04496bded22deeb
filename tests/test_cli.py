"""The `seg4reg` dispatcher: every command registered, import errors surface, `--config` by shipped name;
`--help` answers without TensorFlow, whose start-up lines stay hidden unless `--verbose`."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from seg4reg_tf import cli, quiet_tf
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
    assert {"--model", "--server", "--rest", "--model-name", "--out", "--disagreement-threshold",
            "--fitted-threshold"} <= flags
    args = predict.parse_args(["a.jpg", "--model", "m", "--out", "o", "--fitted-threshold", "7.5"])
    assert (args.disagreement_threshold, args.fitted_threshold, args.model_name) == (5.0, 7.5, "seg4reg")
    with pytest.raises(SystemExit):
        predict.parse_args(["a.jpg", "--model", "m", "--out", "o", "--disagreement-threshold", "-1"])


def test_former_flag_spellings_still_work_for_one_release(capsys):
    predict = _subparsers(cli.build_parser())["predict"]
    args = predict.parse_args(["a.jpg", "--model", "m", "--out", "o", "--threshold", "3", "--geometry-threshold", "9"])
    assert (args.disagreement_threshold, args.fitted_threshold) == (3.0, 9.0)
    err = capsys.readouterr().err
    assert "--threshold is deprecated" in err and "use --disagreement-threshold" in err
    assert "--geometry-threshold is deprecated" in err and "use --fitted-threshold" in err
    assert "--threshold" not in predict.format_help()  # the documented spelling only
    with pytest.raises(SystemExit):
        predict.parse_args(["a.jpg", "--model", "m", "--out", "o", "--threshold", "-1"])  # still checked
    evaluate = _subparsers(cli.build_parser())["evaluate"]
    args = evaluate.parse_args(["--model", "m", "--data", "d", "--split", "s", "--out", "o", "--seg-fit", "rect"])
    assert args.fitted_corners == "rect" and "use --fitted-corners" in capsys.readouterr().err


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


# TensorFlow's C++ start-up lines (absl warning, oneDNN and cuda notes, cuInit error, CPU feature note)
STARTUP_MARKERS = ("absl::InitializeLog", "oneDNN", "cuda", "cuInit", "I0000", "E0000", "cpu_feature_guard")


def _env(**extra) -> dict:
    """This environment without the user's TensorFlow log settings (the default a user meets)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
    return {**env, **extra}


def _python(*args, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO,
                          env=env or _env(), timeout=timeout)


_MAIN_THEN_MODULES = ("import sys\nfrom seg4reg_tf import cli\ntry:\n    cli.main(sys.argv[1:])\n"
                      "except SystemExit:\n    pass\nprint('TF-MODULES', [m for m in ('tensorflow', 'keras') "
                      "if m in sys.modules])")


@pytest.mark.parametrize("argv,code", [(["--help"], 0), (["train", "--help"], 0), (["serve", "--help"], 0),
                                       (["data", "check", "--help"], 0), (["train"], 2), (["nope"], 2)])
def test_help_and_usage_errors_do_not_import_tensorflow(argv, code):
    proc = _python("-m", "seg4reg_tf.cli", *argv)
    assert proc.returncode == code, proc.stderr
    assert not any(m.lower() in proc.stderr.lower() for m in ("tensorflow", "absl", "oneDNN", "cuda")), proc.stderr
    proc = _python("-c", _MAIN_THEN_MODULES, *argv)
    assert proc.stdout.splitlines()[-1] == "TF-MODULES []", proc.stdout[-2000:] + proc.stderr[-2000:]


def test_help_answers_in_well_under_a_second():
    times = []
    for _ in range(3):  # the fastest of 3 absorbs a busy machine
        start = time.perf_counter()
        proc = _python("-m", "seg4reg_tf.cli", "--help")
        times.append(time.perf_counter() - start)
        assert proc.returncode == 0 and "COMMAND" in proc.stdout, proc.stderr
    assert min(times) < 1.0, times


def test_quiet_only_without_verbose_and_without_a_user_level_of_0():
    assert quiet_tf.wanted(False, {}) and quiet_tf.wanted(False, {"TF_CPP_MIN_LOG_LEVEL": "2"})
    assert quiet_tf.wanted(False, {"TF_CPP_MIN_LOG_LEVEL": "1"})  # the Makefile's 2 and a user's 1 still hide
    assert not quiet_tf.wanted(True, {}) and not quiet_tf.wanted(False, {"TF_CPP_MIN_LOG_LEVEL": "0"})


_FAKE_TF = """import os
os.write(2, b"I0000 fake start-up line\\n")
class config:
    @staticmethod
    def list_physical_devices():
        os.write(2, b"E0000 fake failed call to cuInit\\n")
        return []
if os.environ.get("FAKE_TF_FAIL"):
    raise ImportError("the fake tensorflow is broken")
"""


def test_the_quiet_import_hides_fd_2_writes_and_lets_python_errors_through(tmp_path):
    """A stand-in `tensorflow` writing to fd 2 as TensorFlow's C++ code does: quick, and the same path."""
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(_FAKE_TF)
    code = ("import os, sys\nfrom seg4reg_tf import quiet_tf\nassert quiet_tf.install()\nimport tensorflow\n"
            "print('after', os.environ['TF_CPP_MIN_LOG_LEVEL'], tensorflow.__loader__ is tensorflow.__spec__.loader,"
            " file=sys.stderr)")
    env = _env(PYTHONPATH=str(tmp_path))
    proc = _python("-c", code, env=env)
    assert (proc.returncode, proc.stderr) == (0, "after 3 True\n")
    proc = _python("-c", code, env={**env, "FAKE_TF_FAIL": "1"})
    assert proc.returncode == 1 and "ImportError: the fake tensorflow is broken" in proc.stderr, proc.stderr
    assert "I0000" not in proc.stderr and "cuInit" not in proc.stderr
    proc = _python("-c", "import tensorflow", env=env)  # without the hook the stand-in does write
    assert "I0000 fake start-up line" in proc.stderr


def test_tensorflow_start_up_lines_are_hidden_unless_verbose(tmp_path):
    """`train` loads its config (TensorFlow and Keras), then refuses the missing --data: a cheap TF command."""
    argv = ["train", "--config", "demo", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run")]
    quiet = _python("-m", "seg4reg_tf.cli", *argv, timeout=300)
    assert quiet.returncode == 2 and "not a directory" in quiet.stderr, quiet.stderr  # errors still show
    assert not [m for m in STARTUP_MARKERS if m in quiet.stderr], quiet.stderr
    verbose = _python("-m", "seg4reg_tf.cli", "--verbose", *argv, timeout=300)
    assert verbose.returncode == 2 and "not a directory" in verbose.stderr
    assert [m for m in STARTUP_MARKERS if m in verbose.stderr], verbose.stderr  # TensorFlow did print them


def test_predict_names_a_missing_input_before_tensorflow_loads(tmp_path):
    import subprocess
    import sys

    argv = ["predict", str(tmp_path / "nope.jpg"), "--model", "m", "--out", str(tmp_path / "o")]
    code = f"import sys; from seg4reg_tf.cli import main; rc = main({argv!r}); print(rc, 'tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stderr[-2000:]
    assert f"no such file or folder: {tmp_path / 'nope.jpg'}" in done.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_plain_predict_prints_one_line_per_film_and_nothing_of_tensorflow(tmp_path):
    """The shipped model on a synthetic film: stdout is the film's line, stderr holds no TensorFlow line
    (the oneDNN note at the first call included); --verbose keeps them."""
    import cv2
    import numpy as np

    from seg4reg_tf.data.synth import synth_example

    image, _ = synth_example(np.random.default_rng(0), height_range=(900, 900))
    cv2.imwrite(str(tmp_path / "film.png"), image)
    argv = ["predict", str(tmp_path / "film.png"), "--model", "serving/models/seg4reg", "--out", str(tmp_path / "o")]
    quiet = _python("-m", "seg4reg_tf.cli", *argv, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.splitlines() and len(quiet.stdout.splitlines()) == 1 and quiet.stdout.startswith("film.png")
    assert not [m for m in STARTUP_MARKERS + ("W0000",) if m in quiet.stderr], quiet.stderr
    verbose = _python("-m", "seg4reg_tf.cli", "--verbose", *argv, timeout=300)
    assert verbose.returncode == 0 and [m for m in STARTUP_MARKERS if m in verbose.stderr], verbose.stderr
