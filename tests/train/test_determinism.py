"""``--deterministic``: deterministic kernels, one thread, and byte-identical results run to run."""

from __future__ import annotations

import pytest
import torch

from videorep.cli import main
from videorep.train.distributed import set_deterministic


@pytest.fixture
def restore_torch_state():
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(det)
    torch.set_num_threads(threads)


def test_set_deterministic_switches_torch(restore_torch_state) -> None:
    assert set_deterministic(threads=1) == {"deterministic": True, "threads": 1}
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == 1


def test_deterministic_training_is_byte_identical_run_to_run(
    frame_folders, tmp_path, capsys, restore_torch_state
) -> None:
    outputs = []
    for run in ("a", "b"):
        args = ["train", "cosettle", "--data", str(frame_folders), "--out", str(tmp_path / run)]
        args += ["--backbone", "random_vit_tiny16", "--size", "32", "--pool", "1"]
        args += ["--batch-size", "4", "--max-steps", "3", "--lr", "1e-3", "--no-progress"]
        assert main([*args, "--deterministic"]) == 0
        assert torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 1
        outputs.append((tmp_path / run / "projection" / "projection.safetensors").read_bytes())
    capsys.readouterr()
    assert outputs[0] == outputs[1]
