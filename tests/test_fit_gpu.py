"""The body fit on CUDA: each stage replayed as a captured graph equals the eager fit (run on the GPU machine)."""

import pytest
import torch

from humansplat.body import BodyModel
from humansplat.body.evaluate import random_scene, simulate_keypoints
from humansplat.body.fit import FitConfig, fit_body

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_graphed_fit_matches_eager():
    body = BodyModel.load("cuda")
    g = torch.Generator().manual_seed(11)
    params, cams = random_scene(2, g)
    obs, conf = simulate_keypoints(body(params.to("cuda")).keypoints.cpu(), cams, generator=g)
    obs, conf, cams = obs.cuda(), conf.cuda(), cams.to("cuda")
    mask = torch.zeros(2, 120, 96, dtype=torch.bool, device="cuda")
    mask[:, 5:115, 10:86] = True
    eager = fit_body(obs, conf, cams, mask=mask, body=body, config=FitConfig(cuda_graphs=False))
    graphed = fit_body(obs, conf, cams, mask=mask, body=body)
    again = fit_body(obs, conf, cams, mask=mask, body=body)
    assert sum("step" in s.graphs for s in body.stage_solvers.values()) >= 3  # placement, starts, pose (+ shape)
    assert torch.equal(again.params.pose, graphed.params.pose) and torch.equal(again.loss, graphed.loss)
    assert (graphed.reprojection_px - eager.reprojection_px).abs().max() < 0.5
    assert (graphed.output.joints - eager.output.joints).norm(dim=-1).max() < 0.02  # metres
