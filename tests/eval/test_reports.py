"""Results where people's tools look: the official DAVIS CSVs, TensorBoard, command.txt."""

from __future__ import annotations

import shlex
import sys

import pytest
from eval_layouts import ColourEncoder, make_davis, make_jhmdb

from videorep.eval.core import FeatureExtractor
from videorep.eval.davis import official_csvs, run_davis
from videorep.eval.jhmdb import run_jhmdb
from videorep.eval.metrics import davis_summary
from videorep.eval.propagation import PropagationConfig


def _obj(jm, jr, jd, fm, fr, fd) -> dict:  # noqa: ANN001
    return {
        "J_mean": jm,
        "J_recall": jr,
        "J_decay": jd,
        "F_mean": fm,
        "F_recall": fr,
        "F_decay": fd,
    }


# Hand-made per-sequence results: 3 objects in 2 scored sequences, plus one sequence with only
# its first-frame annotation (the toolkit scores nothing there).
RESULTS = [
    {"sequence": "bear", "objects": [_obj(0.9, 1.0, 0.02, 0.8, 1.0, 0.05)]},
    {
        "sequence": "bike-packing",
        "objects": [
            _obj(0.7, 0.75, 0.1, 0.6, 0.5, -0.03),
            _obj(0.0625, 0.0, 0.4, 0.1, 0.0, 0.3),
        ],
    },
    {"sequence": "unscored", "objects": []},
]

# What davis2017-evaluation's evaluation_method.py writes for these objects, transcribed by hand
# from its code:
#   g_measures = ['J&F-Mean', 'J-Mean', 'J-Recall', 'J-Decay', 'F-Mean', 'F-Recall', 'F-Decay']
#   final_mean = (np.mean(J["M"]) + np.mean(F["M"])) / 2.
#   g_res = [final_mean, mean(J["M"]), mean(J["R"]), mean(J["D"]), mean(F["M"]), ...]
#   pd.DataFrame(g_res, columns=g_measures).to_csv(f, index=False, float_format="%.3f")
#   seq_measures = ['Sequence', 'J-Mean', 'F-Mean'], rows (f'{seq}_{ii+1}', JM, FM) in
#   evaluation order, to_csv(f, index=False, float_format="%.3f")
# i.e. a header line, comma separated, no index column, '%.3f' % value, '\n' line ends.
# J-Mean   (0.9 + 0.7 + 0.0625) / 3 = 0.554166...            -> 0.554
# F-Mean   (0.8 + 0.6 + 0.1) / 3    = 0.5                     -> 0.500
# J&F-Mean (0.554166... + 0.5) / 2  = 0.527083...             -> 0.527
# J-Recall (1.0 + 0.75 + 0.0) / 3   = 0.583333...             -> 0.583
# J-Decay  (0.02 + 0.1 + 0.4) / 3   = 0.173333...             -> 0.173
# F-Recall (1.0 + 0.5 + 0.0) / 3    = 0.5                     -> 0.500
# F-Decay  (0.05 - 0.03 + 0.3) / 3  = 0.106666...             -> 0.107
# per object: 0.0625 is exact in binary and '%.3f' rounds half to even -> 0.062
GLOBAL_CSV = (
    "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n"
    "0.527,0.554,0.583,0.173,0.500,0.500,0.107\n"
)
PER_SEQUENCE_CSV = (
    "Sequence,J-Mean,F-Mean\n"
    "bear_1,0.900,0.800\n"
    "bike-packing_1,0.700,0.600\n"
    "bike-packing_2,0.062,0.100\n"
)


def test_official_csv_text_matches_the_toolkit_format() -> None:
    summary = davis_summary([o for r in RESULTS for o in r["objects"]])
    global_csv, per_sequence_csv = official_csvs(RESULTS, summary)
    assert global_csv == GLOBAL_CSV
    assert per_sequence_csv == PER_SEQUENCE_CSV


def _scalars(folder) -> dict[str, float]:  # noqa: ANN001
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"]}


def test_davis_run_writes_csvs_tensorboard_and_command(tmp_path, monkeypatch) -> None:
    argv = ["/somewhere/bin/videorep", "eval", "davis", "--root", "my data", "--tensorboard"]
    monkeypatch.setattr(sys, "argv", argv)
    root = make_davis(tmp_path / "DAVIS", n_frames=5)
    ex = FeatureExtractor(ColourEncoder(), (64, 96))
    out = tmp_path / "out"
    rep = run_davis(
        root, 2017, "val", ex, PropagationConfig(5, 3, 4, 0.1), out, log=lambda s: None,
        tensorboard=True,
    )  # fmt: skip
    objs = rep["per_sequence"][0]["objects"]
    assert len(objs) == 2
    # the CSV files hold the run's own numbers in the toolkit's format
    seq_lines = (out / "per-sequence_results-val.csv").read_text().splitlines()
    assert seq_lines == ["Sequence,J-Mean,F-Mean"] + [
        f"squares_{i + 1},{o['J_mean']:.3f},{o['F_mean']:.3f}" for i, o in enumerate(objs)
    ]
    glob = (out / "global_results-val.csv").read_text().splitlines()
    assert glob[0] == "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay"
    assert [float(v) for v in glob[1].split(",")] == pytest.approx(
        [rep[k] for k in ("JF_mean", "J_mean", "J_recall", "J_decay", "F_mean")]
        + [rep["F_recall"], rep["F_decay"]],
        abs=5e-4,
    )
    # the command line, shell-quoted, with the entry point's path shortened
    assert (out / "command.txt").read_text() == (
        "videorep eval davis --root 'my data' --tensorboard\n"
    )
    assert shlex.split((out / "command.txt").read_text())[4] == "my data"
    scalars = _scalars(out / "tensorboard")
    assert scalars["eval/davis/JF_mean"] == pytest.approx(rep["JF_mean"], rel=1e-6)
    assert scalars["eval/davis/F_decay"] == pytest.approx(rep["F_decay"], rel=1e-6, abs=1e-7)
    assert "eval/davis/per_sequence" not in str(scalars)


def test_every_benchmark_logs_its_summary_to_tensorboard(tmp_path) -> None:
    root = make_jhmdb(tmp_path / "JHMDB", videos=("wave/a",), n_frames=4)
    ex = FeatureExtractor(ColourEncoder(patch_size=4), (96, 112))
    tb = tmp_path / "tb"
    out = tmp_path / "out"
    rep = run_jhmdb(root, ex, PropagationConfig(7, 20, 20, 0.1), out, log=lambda s: None,
                    tensorboard=tb)  # fmt: skip
    scalars = _scalars(tb)
    assert scalars["eval/jhmdb/PCK@0.1"] == pytest.approx(rep["PCK@0.1"], rel=1e-6)
    assert scalars["eval/jhmdb/PCK@0.2"] == pytest.approx(rep["PCK@0.2"], rel=1e-6)
    assert (out / "command.txt").is_file() and not (out / "tensorboard").exists()
    assert not list(out.glob("*.csv"))  # the CSVs are DAVIS's


def test_eval_cli_takes_tensorboard_with_or_without_a_folder() -> None:
    import argparse

    from videorep.eval import commands

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    base = ["eval", "vip", "--root", "R", "--out", "O"]
    assert parser.parse_args(base).tensorboard is None
    assert parser.parse_args(base + ["--tensorboard"]).tensorboard is True
    assert parser.parse_args(base + ["--tensorboard", "TB"]).tensorboard == "TB"
