"""Adam over a body fit's unknowns, one stage at a time: eager on the CPU, a replayed CUDA graph on the GPU.

A fit is about 140 Adam iterations of ~1,500 small kernels each (energy, its gradient, the update). Eager on
a GPU every kernel waits for Python to launch it: 2.4 s on an H100, slower than two CPU cores. On CUDA a
stage's whole iteration is therefore captured once (``torch.cuda.graph``) and replayed. Solvers are kept
on the body model per problem shape, so the next photo of the same size only copies its observations
and starting point into the captured tensors, resets Adam and replays: the same arithmetic every time.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import astuple
from typing import Any, Callable, Protocol

import torch
from torch import Tensor

__all__ = ["StageSolver", "solve_stage"]

MAX_KEPT = 16  # solvers kept per body model (each holds a small graph and its memory pool)
WARMUP_STEPS = 2  # eager steps before a capture (Adam's state and the autograd caches must exist)


Objective = Callable[..., Tensor]


class StageProblem(Protocol):
    """What a solver needs of a fitting problem (humansplat.body.fit builds one): its observation tensors, a
    copy of itself, the energy of body parameters made from the unknowns, and what keys its solver."""

    body: Any  # the BodyModel: keeps the solvers (``stage_solvers``) and gives the rest state
    cfg: Any  # the FitConfig (a dataclass)
    prior: Any
    scale: float

    def tensors(self) -> list[Tensor]: ...

    def clone(self) -> StageProblem: ...

    def params(self, base_angles: Tensor, root: Tensor, d_angles: Tensor, ph_logit: Tensor, transl: Tensor) -> Any: ...

    def energy(self, params: Any, rest: dict[str, Tensor] | None, robust: float) -> Tensor: ...


class StageSolver:
    """One stage's Adam on static tensors: ``load`` a problem and starting point, ``run(n)``, then ``result``.

    Unknowns: root (B, 3) global orientation, transl (B, 3), d_angles (B, F, 3) fitted-bone angle changes,
    ph_logit (B, P) logit phenotype. Level 0 moves the body, 1 also poses it, 2 also shapes it. Three
    pieces run as graphs on CUDA: the rest state (levels 0 and 1 fix the phenotype), the step, the energy."""

    def __init__(self, problem: StageProblem, level: int, robust: float, unknowns: list[Tensor], base_angles: Tensor,
                 objective: Objective, graph: bool) -> None:  # fmt: skip
        self.problem, self.level, self.robust, self.objective = problem.clone(), level, robust, objective
        self.base = base_angles.detach().clone()
        self.x = [t.detach().clone(memory_format=torch.contiguous_format) for t in unknowns]
        root, transl, d_angles, ph_logit = self.x
        cfg = problem.cfg
        groups = [{"params": [root, transl] + ([d_angles] if level >= 1 else [])}]
        if level == 2:
            groups.append({"params": [ph_logit], "lr": cfg.phenotype_lr})
        for group in groups:  # only the stage's free unknowns get gradients
            for t in group["params"]:
                t.requires_grad_(True)
        self.opt = torch.optim.Adam(groups, lr=cfg.lr, capturable=graph)
        self.rest: dict[str, Tensor] | None = None
        self.energy: Tensor | None = None
        self.graphs: dict[str, torch.cuda.CUDAGraph] = {}
        if graph:  # the rest state first: the step graph reads its outputs
            self.stream = torch.cuda.Stream()
            for piece, warmup in (("rest_state", 1), ("step", WARMUP_STEPS), ("final_energy", 1)):
                if piece != "rest_state" or level < 2:
                    self.graphs[piece] = self._capture(getattr(self, piece), warmup)

    def rest_state(self) -> None:
        with torch.no_grad():
            self.rest = self.problem.body.rest_state(torch.sigmoid(self.x[3]))

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)  # captured, the backward allocates the gradients from the graph's pool
        root, transl, d_angles, ph_logit = self.x
        self.objective(self.problem, self.base, root, d_angles, ph_logit, transl, self.rest, self.robust).backward()
        self.opt.step()

    def final_energy(self) -> None:
        with torch.no_grad():
            root, transl, d_angles, ph_logit = self.x
            self.energy = self.problem.energy(self.problem.params(self.base, root, d_angles, ph_logit, transl), None, self.robust)

    def _capture(self, piece: Callable[[], None], warmup: int) -> torch.cuda.CUDAGraph:
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            for _ in range(warmup):
                piece()
        torch.cuda.current_stream().wait_stream(self.stream)
        graph = torch.cuda.CUDAGraph()
        # Capture on the warm-up stream: autograd keeps the leaves' gradient accumulators, with the stream they
        # first ran on, and waiting on another (non-capturing) stream would break the capture.
        with torch.cuda.graph(graph, stream=self.stream):
            piece()
        return graph

    def _do(self, piece: str) -> None:
        if piece in self.graphs:
            self.graphs[piece].replay()
        else:
            getattr(self, piece)()

    @torch.no_grad()
    def load(self, problem: StageProblem, unknowns: list[Tensor], base_angles: Tensor) -> None:
        """Copy a problem of the same shapes and a starting point in; Adam starts afresh."""
        for dst, src in zip(self.problem.tensors(), problem.tensors(), strict=True):
            dst.copy_(src)
        for dst, src in zip(self.x, unknowns, strict=True):
            dst.copy_(src)
        self.base.copy_(base_angles)
        if self.level < 2:
            self._do("rest_state")
        for state in self.opt.state.values():
            for value in state.values():
                value.zero_()

    def run(self, n_iter: int) -> None:
        for _ in range(n_iter):
            self._do("step")

    def result(self) -> tuple[list[Tensor], Tensor]:
        """The unknowns and the energy per person (at this stage's robust scale), copied out."""
        self._do("final_energy")
        return [t.detach().clone() for t in self.x], self.energy.clone()


def solve_stage(problem: StageProblem, level: int, robust: float, n_iter: int, unknowns: list[Tensor], base_angles: Tensor,
                objective: Objective, graph: bool) -> tuple[list[Tensor], Tensor]:  # fmt: skip
    """``n_iter`` Adam iterations of one stage from ``unknowns``: the unknowns found and their energy (B,).
    The solver for this shape is kept and reused."""
    graph = graph and unknowns[0].is_cuda
    kept: OrderedDict = problem.body.stage_solvers
    key = (level, robust, graph, objective, unknowns[0].device, problem.scale, astuple(problem.cfg), problem.prior,
           tuple(tuple(t.shape) for t in problem.tensors() + unknowns))  # fmt: skip
    solver = kept.get(key)
    if solver is None:
        solver = StageSolver(problem, level, robust, unknowns, base_angles, objective, graph)
        kept[key] = solver
        while len(kept) > MAX_KEPT:
            kept.popitem(last=False)
    kept.move_to_end(key)
    solver.load(problem, unknowns, base_angles)
    solver.run(n_iter)
    return solver.result()
