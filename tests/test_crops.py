"""Face and hand crops (data/crops.py): the crop camera maps its box onto the whole crop; boxes follow the
region's projection and are refused behind the camera or when tiny; the engine's crops zoom in on the face
(far more face pixels than in the full view); the training step scores them as one more loss term."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

from humansplat.body.parts import CLASS_ID
from humansplat.cameras import Cameras, intrinsics_from_fov, look_at, project_points
from humansplat.data.crops import CROP_REGIONS, crop_cameras, region_boxes


def front_camera(size: int = 64) -> Cameras:
    K = intrinsics_from_fov(40.0, size, size)[None]
    w2c = look_at(torch.tensor([[0.0, 0.0, 3.0]]), torch.zeros(1, 3))
    return Cameras(K, w2c, size, size)


def test_crop_camera_maps_its_box_onto_the_crop():
    cam = front_camera()
    points = torch.randn(1, 50, 3) * 0.3
    box = torch.tensor([[10.0, 14.0, 20.0]])
    uv, _ = project_points(points, cam)
    uv_crop, _ = project_points(points, crop_cameras(cam, box, 80))
    assert torch.allclose(uv_crop, (uv - box[:, None, :2]) * 80 / 20, atol=1e-4)
    assert crop_cameras(cam, box, 80).width == 80


def test_region_boxes_follow_the_projection_and_refuse_what_is_not_seen():
    cam = Cameras(front_camera().K[:, None], front_camera().w2c[:, None], 64, 64)  # (1, 1)
    square = torch.tensor([[[x, y, 0.0] for x in (-0.2, 0.2) for y in (-0.2, 0.2)]])
    boxes, valid = region_boxes(square, cam, margin=0.0)
    uv, _ = project_points(square, cam[:, 0])
    side = float(uv[0, :, 0].max() - uv[0, :, 0].min())
    assert bool(valid[0, 0]) and abs(float(boxes[0, 0, 2]) - side) < 1e-4
    assert torch.allclose(boxes[0, 0, :2] + side / 2, torch.tensor([32.0, 32.0]), atol=1e-3)  # centred on the axis
    assert not bool(region_boxes(square + torch.tensor([0.0, 0.0, 5.0]), cam)[1][0, 0])  # behind the camera
    assert not bool(region_boxes(square * 0.01, cam)[1][0, 0])  # a few pixels across: not cropped


@pytest.fixture(scope="module")
def cropped():
    from humansplat.data import EngineConfig, SyntheticEngine

    engine = SyntheticEngine(EngineConfig(resolution=48, views=3, crop_size=32), torch.device("cpu"))
    return engine.sample(2, torch.Generator().manual_seed(4))


def test_engine_crops_zoom_in_on_the_face_and_hands(cropped):
    R = len(CROP_REGIONS)
    assert cropped["crop_images"].shape == (2, 2 * R, 3, 32, 32) and cropped["crop_valid"].shape == (2, 2 * R)
    assert tuple(cropped["crop_cameras"].batch_shape) == (2, 2 * R)
    head_ids = torch.tensor([CLASS_ID[n] for n in (*CROP_REGIONS["face"], "Hair")])  # a head seen from behind is hair
    head_crop = cropped["crop_labels"][:, 0]  # the face through the input view
    assert bool(cropped["crop_valid"][:, 0].all())
    share_crop = torch.isin(head_crop, head_ids).float().mean()
    share_view = torch.isin(cropped["labels"][:, 0], head_ids).float().mean()
    assert share_crop > 0.2 and share_crop > 4 * share_view, (share_crop, share_view)


def test_the_step_scores_the_crops(tmp_path, cropped):
    from humansplat.train.step import ViewPlan
    from tests.test_train import step_losses

    with_crops, logs, without, step = step_losses(tmp_path, cropped, region_crops=1.0)
    assert "loss/region_crops" in logs and float(logs["loss/region_crops"]) > 0
    assert torch.allclose(with_crops - without, logs["loss/region_crops"], atol=1e-5)
    no_valid = {**cropped, "crop_valid": torch.zeros_like(cropped["crop_valid"])}
    assert "loss/region_crops" not in step(no_valid, ViewPlan([0], [0, 1], False), nullcontext())[1]
