"""The training step's per-epoch checkpoint copy to a (remote) artifact store, through ZenML's
own fileio (a local folder stands in for the bucket: fileio treats both alike), and the way
back before a preempted run resumes. Also: the run folder's key."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny_train_data import colour_dataset, tiny_config

from rxvision.training import fit_datasets, prepare_run_dir, run_key
from steps.training import ArtifactStoreSync


def test_checkpoints_reach_the_store_every_epoch_and_come_back_for_a_resume(
    tmp_path: Path,
) -> None:
    local, remote = tmp_path / "scratch", tmp_path / "bucket" / "runs" / "k"
    seen: list[int] = []

    class Watch(ArtifactStoreSync):
        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            super().on_epoch_end(epoch, metrics)
            seen.append(int(torch.load(remote / "last.ckpt", weights_only=True)["epoch"]))

    cfg = tiny_config(epochs=2, early_stopping={"enabled": False})
    train, val = colour_dataset(24, seed=0), colour_dataset(12, seed=1)
    fit_datasets(cfg, train, val, ["a", "b", "c"], local, hooks=[Watch(local, str(remote))])
    assert seen == [1, 2]  # uploaded after each epoch, not only at the end
    assert sorted(p.name for p in remote.glob("*.ckpt")) == sorted(
        p.name for p in local.glob("*.ckpt")
    )  # evicted top-k files are gone there too

    fresh_pod = tmp_path / "other-pod"
    ArtifactStoreSync(fresh_pod, str(remote)).pull()
    assert (fresh_pod / "last.ckpt").read_bytes() == (local / "last.ckpt").read_bytes()
    assert (fresh_pod / "history.json").is_file()


def test_run_key_follows_what_is_trained_not_how() -> None:
    base = tiny_config(epochs=2)
    assert run_key(base, "fp1") == run_key(tiny_config(epochs=2, num_threads=2), "fp1")
    assert run_key(base, "fp1") == run_key(tiny_config(epochs=2, resume=False), "fp1")
    assert run_key(base, "fp1") != run_key(base, "fp2")  # other data
    assert run_key(base, "fp1") != run_key(tiny_config(epochs=3), "fp1")
    assert run_key(base, "fp1") != run_key(tiny_config(epochs=2, optimizer={"lr": 1e-2}), "fp1")


def test_a_finished_run_folder_is_cleared_for_a_new_pipeline_run(tmp_path: Path) -> None:
    cfg = tiny_config(epochs=1)
    fit_datasets(
        cfg, colour_dataset(24, seed=0), colour_dataset(12, seed=1), ["a", "b", "c"], tmp_path
    )
    assert prepare_run_dir(tmp_path, resume=True) is None
    assert not (tmp_path / "last.ckpt").exists()
