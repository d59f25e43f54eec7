"""Which data the demo evaluates on: --davis-root, $VIDEOREP_DATA, --download, else generated."""

from __future__ import annotations

import pytest

from videorep import demo
from videorep.data.synthetic import write_davis_set


def test_explicit_root_wins(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VIDEOREP_DATA", str(tmp_path / "nothing"))
    root, source = demo.find_evaluation_data(str(tmp_path / "mine"), download=False)
    assert root == tmp_path / "mine" and source == "--davis-root"


def test_a_davis_root_in_videorep_data_is_found(tmp_path, monkeypatch) -> None:
    write_davis_set(tmp_path / "data" / "DAVIS", sequences=1, frames=3, seed=0)
    monkeypatch.setenv("VIDEOREP_DATA", str(tmp_path / "data"))
    root, source = demo.find_evaluation_data(None, download=False)
    assert root == tmp_path / "data" / "DAVIS" and "$VIDEOREP_DATA" in source


def test_nothing_found_means_the_generated_set_and_no_download(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VIDEOREP_DATA", str(tmp_path / "empty"))

    def no_network(*args, **kwargs):  # noqa: ANN002, ANN003
        raise AssertionError("downloaded without --download")

    monkeypatch.setattr("videorep.data.download.fetch_davis", no_network)
    root, source = demo.find_evaluation_data(None, download=False)
    assert root is None and "GENERATED" in source


def test_download_flag_fetches_into_videorep_data(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VIDEOREP_DATA", str(tmp_path / "data"))
    calls = []

    def fake_fetch(out):  # noqa: ANN001, ANN202
        calls.append(out)
        return out / "DAVIS"

    monkeypatch.setattr("videorep.data.download.fetch_davis", fake_fetch)
    root, source = demo.find_evaluation_data(None, download=True)
    assert calls == [tmp_path / "data"] and root == tmp_path / "data" / "DAVIS"
    assert source.startswith("downloaded")


@pytest.mark.parametrize("flag", [["--download"], []])
def test_demo_parser_has_the_download_flag(flag) -> None:
    from videorep.cli import build_parser

    args = build_parser().parse_args(["demo", *flag])
    assert args.download is bool(flag)
