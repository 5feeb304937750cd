"""One torchrun rank of `humansplat train` for tests/test_train_ddp.py: the real command and trainer, with a
fake engine (random images from the rank's own generator, so the test can see which seed each rank used;
``HS_SLOW_RANK1_S`` makes rank 1 slower, so the ranks' clocks disagree) and an audit hook that records every
write, folder, rename or removal a rank makes inside the run directory (``HS_RUN_DIR``). Each rank leaves what
it did in ``HS_PROBE_DIR/rank-N.json``, outside the run directory.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py train CONFIG --out DIR
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

import torch

WRITE_EVENTS = ("os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "os.unlink", "shutil.copytree",
                "shutil.rmtree", "shutil.move", "os.truncate", "os.symlink", "os.link")


class FakeEngine:
    """Stands in for humansplat.data.SyntheticEngine: images only (all the autoencoder task reads)."""

    body = "unused"  # the autoencoder task never touches the body, so no body model is loaded
    draws: list[tuple[int, float]] = []  # (seed of the generator, first pixel) per call

    def __init__(self, config, device):
        self.config, self.device = config, device

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict:
        r = self.config.resolution
        images = torch.rand(batch_size, self.config.views + 1, 3, r, r, generator=generator)
        FakeEngine.draws.append((generator.initial_seed() if generator is not None else -1, float(images.flatten()[0])))
        if os.environ.get("RANK") == "1":
            time.sleep(float(os.environ.get("HS_SLOW_RANK1_S", "0")))
        return {"images": images.to(self.device)}


def audit_writes(run_dir: str, into: list[str]):
    """An audit hook listing what this process changes below ``run_dir`` (safetensors writes from Rust, so
    its files show up as the folder they are made in and the rename that puts the folder in place)."""
    root = os.path.abspath(run_dir)

    def inside(path) -> bool:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return False
        p = os.path.abspath(os.fsdecode(path))
        return p.startswith(root + os.sep)

    def hook(event: str, args: tuple) -> None:
        if not hook.active:
            return
        if event == "open":
            path, mode, flags = args
            writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writes and inside(path):
                into.append(f"open {os.fsdecode(path)}")
        elif event in WRITE_EVENTS and any(inside(a) for a in args[:2]):
            into.append(f"{event} {args[0]}")

    hook.active = True
    sys.addaudithook(hook)
    return hook


def main(argv: list[str]) -> int:
    import humansplat.data
    from humansplat.cli import main as cli_main
    from humansplat.train import trainer as trainer_module

    humansplat.data.SyntheticEngine = FakeEngine
    writes: list[str] = []
    hook = audit_writes(os.environ["HS_RUN_DIR"], writes)
    seen: dict = {"lrs": [], "checkpoints": []}
    Trainer = trainer_module.Trainer
    real_step, real_save, real_fit = Trainer.train_step, Trainer.save_checkpoint, Trainer.fit

    def train_step(self):
        logs = real_step(self)
        seen["lrs"].append((self.step + 1, float(self.optimizer.param_groups[0]["lr"])))
        return logs

    def save_checkpoint(self, last=False):
        seen["checkpoints"].append(self.step)
        return real_save(self, last)

    def fit(self):
        seen.update(data_seed=self.generator.initial_seed(), view_seed=self.cpu_gen.initial_seed(), world=self.world,
                    start_step=self.step)
        out = real_fit(self)
        digest = hashlib.sha256()
        for t in self.model.state_dict().values():
            digest.update(t.detach().cpu().contiguous().numpy().tobytes())
        seen.update(final_step=self.step, params_sha256=digest.hexdigest(), elapsed=self.elapsed)
        return out

    Trainer.train_step, Trainer.save_checkpoint, Trainer.fit = train_step, save_checkpoint, fit
    code = cli_main(argv)
    hook.active = False
    seen.update(code=code, writes=writes, draws=FakeEngine.draws)
    rank = os.environ.get("RANK", "0")
    with open(os.path.join(os.environ["HS_PROBE_DIR"], f"rank-{rank}.json"), "w") as f:
        json.dump(seen, f)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
