"""DDP correctness on CPU (gloo): one real 2-process `humansplat train` under torchrun (tests/ddp_worker.py, a
fake engine, rank 1 made slower), then a 1-process resume of its checkpoint. What a multi-GPU run relies on:
only rank 0 writes, the ranks draw different data, they agree on every stop, checkpoint and learning rate
(so their weights stay identical), and a checkpoint outlives a change in the number of processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("ddp_worker.py")


def _config(tmp: Path, **overrides) -> Path:
    from humansplat.train.config import TrainConfig

    data = TrainConfig.load(ROOT / "configs" / "tiny_autoencoder.json").to_dict() | overrides
    path = tmp / f"config-{len(list(tmp.glob('config-*')))}.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """Two ranks until a 2-second step-time budget ends (rank 1 sleeps 0.1 s per batch), a checkpoint every
    0.3 s of wall time (each rank's own clock would call them at different steps)."""
    tmp = tmp_path_factory.mktemp("ddp")
    run, probe = tmp / "run", tmp / "probe"
    probe.mkdir()
    config = _config(tmp, max_steps=10_000, time_budget_minutes=2 / 60, checkpoint_minutes=0.005, log_every=2,
                     warmup_steps=2, keep_checkpoints=50)
    env = dict(os.environ, HS_RUN_DIR=str(run), HS_PROBE_DIR=str(probe), HS_SLOW_RANK1_S="0.1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER),
           "train", str(config), "--out", str(run), "--device", "cpu"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    ranks = [json.loads((probe / f"rank-{r}.json").read_text()) for r in (0, 1)]
    return run, ranks, tmp


def test_only_rank_0_writes_into_the_run_directory(ddp_run):
    run, (r0, r1), _ = ddp_run
    assert r1["writes"] == [], r1["writes"]
    assert any("checkpoints" in w for w in r0["writes"]) and (run / "log.txt").is_file()
    timing = json.loads((run / "timing.json").read_text())  # rank 0 writes every rank's phases
    assert timing["world_size"] == 2 and len(timing["ranks"]) == 2 and timing["steps_per_s"] > 0
    assert timing["ranks"][1]["phases_s"]["data"] > timing["ranks"][0]["phases_s"]["data"]  # rank 1's sleep


def test_ranks_draw_different_data(ddp_run):
    _, (r0, r1), _ = ddp_run
    assert r0["data_seed"] != r1["data_seed"] and r0["view_seed"] != r1["view_seed"]
    first = [[x for seed, x in r["draws"] if seed == r["data_seed"]] for r in (r0, r1)]
    assert len(first[0]) == len(first[1]) == r0["final_step"]
    assert not set(first[0]) & set(first[1])


def test_ranks_agree_on_stop_checkpoints_and_learning_rate(ddp_run):
    _, (r0, r1), _ = ddp_run
    assert r0["code"] == r1["code"] == 0
    assert r0["final_step"] == r1["final_step"] < 10_000  # the time budget stopped both, at the same step
    assert r0["checkpoints"] == r1["checkpoints"] and len(r0["checkpoints"]) >= 2  # mid-run ones plus the final
    assert r0["lrs"] == r1["lrs"] and r0["elapsed"] == r1["elapsed"]
    assert r0["params_sha256"] == r1["params_sha256"]  # DDP kept the replicas identical


def test_a_two_process_checkpoint_resumes_on_one_process(ddp_run, monkeypatch):
    import ddp_worker

    import humansplat.data
    from humansplat.cli import main
    from humansplat.train.trainer import complete_checkpoints

    run, (r0, _), tmp = ddp_run
    newest = json.loads((complete_checkpoints(run)[0] / "state.json").read_text())
    assert newest["step"] == r0["final_step"] and newest["world_size"] == 2
    monkeypatch.setattr(humansplat.data, "SyntheticEngine", ddp_worker.FakeEngine)
    monkeypatch.setattr(ddp_worker.FakeEngine, "draws", [])
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    config = _config(tmp, time_budget_minutes=None, checkpoint_minutes=100)
    assert main(["train", str(config), "--out", str(run), "--resume", "--max-steps", str(newest["step"] + 3), "--device", "cpu"]) == 0
    state = json.loads((complete_checkpoints(run)[0] / "state.json").read_text())
    assert state["step"] == newest["step"] + 3 and state["world_size"] == 1
    assert state["elapsed_s"] > newest["elapsed_s"]
    from humansplat.train.trainer import rank_seeds

    resumed_seed = rank_seeds(1, 0, newest["step"])[0]  # tiny_autoencoder.json: seed 1
    drawn = [x for seed, x in ddp_worker.FakeEngine.draws if seed == resumed_seed]
    first_run = [x for seed, x in r0["draws"] if seed == r0["data_seed"]]
    assert len(drawn) == 3 and not set(drawn) & set(first_run)  # new subjects, not the first run's again


def test_rank_seeds_never_repeat():
    from humansplat.train.trainer import rank_seeds

    seeds = [s for seed in (0, 1, 7) for rank in range(8) for step in (0, 1, 5000) for s in rank_seeds(seed, rank, step)]
    assert len(seeds) == len(set(seeds))
    assert all(0 <= s < 1 << 32 for s in seeds)  # torch's CPU generator keeps 32 bits of a seed
    assert rank_seeds(3, 2)[0] == 3002  # step 0: the data seeds runs always had
