"""Gaussian files: exact .ply round trip, INRIA property layout, .splat bytes, and no axis flips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from humansplat.cameras import orbit_cameras
from humansplat.gaussians import Gaussians, PlyError, load_ply, render, save_ply, save_splat
from humansplat.gaussians.io import SPLAT_DTYPE
from humansplat.gaussians.sh import SH_C0


def read_raw_ply(path) -> np.ndarray:
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode().splitlines()
    names = [line.split()[2] for line in header if line.startswith("property")]
    assert all(line.split()[1] == "float" for line in header if line.startswith("property"))
    assert "format binary_little_endian 1.0" in header
    return np.frombuffer(data[end:], dtype=[(n, "<f4") for n in names])


def degree3_scene(n=5, features=0) -> Gaussians:
    g = torch.Generator().manual_seed(0)
    k = torch.arange(16, dtype=torch.float32)
    c = torch.arange(3, dtype=torch.float32)
    sh = (torch.arange(n, dtype=torch.float32)[:, None, None] * 1000 + c * 100 + k[:, None]).contiguous()  # sh[n,k,c] = 1000n + 100c + k
    return Gaussians(torch.randn(n, 3, generator=g), torch.randn(n, 4, generator=g), torch.randn(n, 3, generator=g),
                     torch.randn(n, generator=g), sh, torch.randn(n, features, generator=g) if features else None)


def test_ply_round_trip_is_exact_and_inria_layout(tmp_path):
    g = degree3_scene(features=2)
    path = save_ply(g, tmp_path / "scene.ply")
    back = load_ply(path)
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh", "features"):
        assert torch.equal(getattr(back, name), getattr(g, name)), name
    raw = read_raw_ply(path)
    names = list(raw.dtype.names)
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[9:54] == [f"f_rest_{i}" for i in range(45)]
    assert names[54:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3", "feat_0", "feat_1"]
    # f_rest is grouped per colour channel: f_rest_{c * 15 + (k - 1)} = sh[:, k, c]
    for c in range(3):
        for k in range(1, 16):
            np.testing.assert_array_equal(raw[f"f_rest_{c * 15 + k - 1}"], g.sh[:, k, c].numpy())
    np.testing.assert_array_equal(raw["f_dc_1"], g.sh[:, 0, 1].numpy())
    np.testing.assert_array_equal(raw["opacity"], g.opacity_logits.numpy())  # logit, not sigmoid
    np.testing.assert_array_equal(raw["scale_2"], g.log_scales[:, 2].numpy())  # log, not exp
    np.testing.assert_array_equal(raw["rot_0"], g.quats[:, 0].numpy())  # w first


@pytest.mark.parametrize("degree", [0, 1, 2])
def test_ply_lower_degrees(tmp_path, degree):
    g = degree3_scene()
    g = Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, g.sh[:, : (degree + 1) ** 2].contiguous())
    back = load_ply(save_ply(g, tmp_path / "s.ply"))
    assert back.sh_degree == degree and torch.equal(back.sh, g.sh) and back.features is None


def test_ply_from_another_writer(tmp_path):
    # property order, types and extra properties of other tools do not matter: we read by name
    g = degree3_scene()
    names = ["rot_3", "rot_2", "rot_1", "rot_0", "x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2", "red"]
    vals = {"x": g.means[:, 0], "y": g.means[:, 1], "z": g.means[:, 2], "opacity": g.opacity_logits, "red": torch.zeros(5)}
    vals.update({f"rot_{i}": g.quats[:, i] for i in range(4)})
    vals.update({f"scale_{i}": g.log_scales[:, i] for i in range(3)})
    vals.update({f"f_dc_{i}": g.sh[:, 0, i] for i in range(3)})
    dtype = [(n, "<f8") for n in names]
    arr = np.empty(5, dtype=dtype)
    for n in names:
        arr[n] = vals[n].double().numpy()
    header = "ply\nformat binary_little_endian 1.0\ncomment from elsewhere\nelement vertex 5\n"
    header += "".join(f"property double {n}\n" for n in names) + "element face 0\nproperty list uchar int vertex_indices\nend_header\n"
    (tmp_path / "o.ply").write_bytes(header.encode() + arr.tobytes())
    back = load_ply(tmp_path / "o.ply")
    torch.testing.assert_close(back.quats, g.quats)
    torch.testing.assert_close(back.sh, g.sh[:, :1])


@pytest.mark.parametrize(
    "content, message",
    [
        (b"hello", "not a PLY"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n0\n", "ascii"),
        (b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\nend_header\n\0\0\0\0", "missing properties"),
        (b"ply\nformat binary_little_endian 1.0\nelement vertex 1000\nproperty float x\n", "truncated PLY header"),
    ],
)
def test_malformed_ply_is_a_clear_error(tmp_path, content, message):
    (tmp_path / "bad.ply").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_ply(tmp_path / "bad.ply")


def test_truncated_ply_data(tmp_path):
    path = save_ply(degree3_scene(), tmp_path / "s.ply")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated PLY data"):
        load_ply(path)


def _with_header_count(path, count: str) -> None:
    data = path.read_bytes()
    path.write_bytes(data.replace(b"element vertex 5\n", f"element vertex {count}\n".encode(), 1))


@pytest.mark.parametrize("count", [str(10**14), str(2**63 - 1), str(2**64 + 5)])
def test_huge_vertex_count_is_checked_against_the_file_size(tmp_path, count):
    path = save_ply(degree3_scene(), tmp_path / "s.ply")
    _with_header_count(path, count)
    with pytest.raises(PlyError, match=rf"{path}: truncated PLY data: the header claims {count} vertices"):
        load_ply(path)


@pytest.mark.parametrize("count", ["-1", "2.5", "five"])
def test_bad_vertex_count_names_the_file(tmp_path, count):
    path = save_ply(degree3_scene(), tmp_path / "s.ply")
    _with_header_count(path, count)
    with pytest.raises(PlyError, match=rf"{path}: PLY element 'vertex' has count '{count}', not a whole number"):
        load_ply(path)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_with_their_count(tmp_path, value):
    path = save_ply(degree3_scene(features=2), tmp_path / "s.ply")
    raw = read_raw_ply(path).copy()
    raw["x"][1] = raw["f_rest_44"][1] = raw["feat_1"][3] = value  # two Gaussians, three values
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"end_header\n") + len(b"end_header\n")] + raw.tobytes())
    with pytest.raises(PlyError, match=rf"{path}: 3 non-finite values \(NaN or inf\) in 2 of 5 Gaussians \(properties x, f_rest_44, feat_1\)"):
        load_ply(path)


def test_render_refuses_a_scene_with_one_nan(tmp_path, capsys):
    from humansplat.cli import main

    path = save_ply(degree3_scene(), tmp_path / "s.ply")
    raw = read_raw_ply(path).copy()
    raw["y"][0] = np.nan
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"end_header\n") + len(b"end_header\n")] + raw.tobytes())
    assert main(["render", str(path), "-o", str(tmp_path / "out"), "--frames", "1", "--size", "16", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}: 1 non-finite value (NaN or inf) in 1 of 5 Gaussians" in err[0] and not (tmp_path / "out").exists()


def test_duplicate_property_names_the_file(tmp_path):
    (tmp_path / "d.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\nproperty float x\nend_header\n" + bytes(8))
    with pytest.raises(PlyError, match=f"{tmp_path / 'd.ply'}: bad vertex properties"):
        load_ply(tmp_path / "d.ply")


def test_splat_layout(tmp_path):
    n = 6
    g = torch.Generator().manual_seed(1)
    means, rot = torch.randn(n, 3, generator=g), torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)
    scales, opac, rgb = torch.rand(n, 3, generator=g) * 0.1 + 0.01, torch.rand(n, generator=g) * 0.8 + 0.1, torch.rand(n, 3, generator=g)
    gs = Gaussians.from_activated(means, rot, scales, opac, colors=rgb)
    path = save_splat(gs, tmp_path / "s.splat")
    assert path.stat().st_size == 32 * n and SPLAT_DTYPE.itemsize == 32
    s = np.frombuffer(path.read_bytes(), dtype=SPLAT_DTYPE)
    order = torch.argsort(scales.prod(1) * opac, descending=True)
    np.testing.assert_allclose(s["position"], means[order].numpy(), rtol=1e-6)
    np.testing.assert_allclose(s["scale"], scales[order].numpy(), rtol=1e-5)
    np.testing.assert_allclose(s["rgba"][:, :3] / 255, rgb[order].numpy(), atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(s["rgba"][:, 3] / 255, opac[order].numpy(), atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose((s["rot"].astype(np.float32) - 128) / 128, rot[order].numpy(), atol=1 / 128)


def asymmetric_scene() -> Gaussians:
    """A grey core with a red blob at +X (the subject's left), green at +Y (up), blue at +Z (front)."""
    means = torch.tensor([[0.0, 0.0, 0.0], [0.35, 0.0, 0.0], [0.0, 0.35, 0.0], [0.0, 0.0, 0.35]])
    colors = torch.tensor([[0.5, 0.5, 0.5], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    scales = torch.tensor([[0.15, 0.15, 0.15]] + [[0.06, 0.06, 0.06]] * 3)
    return Gaussians.from_activated(means, torch.tensor([[1.0, 0, 0, 0]]).expand(4, 4), scales, torch.full((4,), 0.95), colors=colors)


def blob_centre(img: torch.Tensor, channel: int) -> tuple[float, float]:
    others = [c for c in range(3) if c != channel]
    mask = (img[..., channel] > 0.6) & (img[..., others[0]] < 0.3) & (img[..., others[1]] < 0.3)
    ys, xs = torch.nonzero(mask, as_tuple=True)
    assert len(xs) > 5, f"channel {channel} blob not visible"
    return xs.float().mean().item() / img.shape[1], ys.float().mean().item() / img.shape[0]


def test_no_axis_flip_between_render_file_and_back(tmp_path):
    g = asymmetric_scene()
    front = orbit_cameras(torch.tensor([0.0]), 0.0, 2.0, fov_deg=40, size=64)  # on +Z looking at the subject
    before = render(g, front, background=0.0, backend="torch").rgb[0]
    red_x, red_y = blob_centre(before, 0)
    green_x, green_y = blob_centre(before, 1)
    assert red_x > 0.6 and abs(red_y - 0.5) < 0.1  # +X (subject's left) on the image right
    assert green_y < 0.4 and abs(green_x - 0.5) < 0.1  # +Y up on the image top
    # the file stores world coordinates as they are
    path = save_ply(g, tmp_path / "a.ply")
    raw = read_raw_ply(path)
    assert raw["x"][1] > 0.3 and raw["y"][2] > 0.3 and raw["z"][3] > 0.3
    assert raw["f_dc_0"][1] == pytest.approx((1.0 - 0.5) / SH_C0)
    after = render(load_ply(path), front, background=0.0, backend="torch").rgb[0]
    assert torch.equal(before, after)
    # from the subject's left (azimuth 90, on +X, looking along -X) the front (+Z, blue) is on the image left
    side = orbit_cameras(torch.tensor([90.0]), 0.0, 2.0, fov_deg=40, size=64)
    assert blob_centre(render(load_ply(path), side, background=0.0, backend="torch").rgb[0], 2)[0] < 0.4
    # .splat keeps the same coordinates
    s = np.frombuffer(save_splat(g, tmp_path / "a.splat").read_bytes(), dtype=SPLAT_DTYPE)
    red = s[(s["rgba"][:, 0] > 200) & (s["rgba"][:, 1] < 50)]
    assert len(red) == 1 and red["position"][0, 0] == pytest.approx(0.35)
