"""OnlineGaptvPatches (the GAP-TV pool made on the training device) and the options that use
it: train cassi --gaptv-online / --gaptv-tile / --time-schedule, and a tiny training run."""
import json

import h5py
import numpy as np
import pytest
import scipy.io as sio
import torch
from typer.testing import CliRunner

from hsirestore.physics.gaptv import gap_tv
from hsirestore.physics.cassi import cassi_forward
from hsirestore.training.cassi_pool import OnlineGaptvPatches

BANDS, TILE, PATCH, ITERS, TV = 4, 32, 16, 3, 4.0


def _inputs(bands=BANDS, seed=0):
    rng = np.random.default_rng(seed)
    # strictly positive scenes, so that the gain of a tile is well defined
    scenes = {f"s{i}": (0.1 + rng.random((bands, 48, 48))).astype(np.float32) for i in range(2)}
    sim = rng.random((40, 40)).astype(np.float32)
    real = rng.random((60, 60)).astype(np.float32)
    return scenes, sim, real


def _pool(size=4, seed=0, real_fraction=0.5, batch_size=3, inputs=None, **kw):
    scenes, sim, real = inputs or _inputs()
    return OnlineGaptvPatches(scenes, sim, real, size=size, tile=TILE, patch=PATCH,
                              batch_size=batch_size, device="cpu", real_fraction=real_fraction,
                              iterations=ITERS, tv_weight=TV, seed=seed, log=lambda *_: None)


def _recomputed_gaptv(pool, i):
    x, m = pool.clean[i], pool.masks[i]
    return gap_tv(cassi_forward(x, m, 2), m, x.shape[0], 2, ITERS, TV)


def _find_crop(tile, big):
    """(r, c) where tile (T, T) equals big[r:r+T, c:c+T] exactly, or None."""
    t = tile.shape[-1]
    for r in range(big.shape[0] - t + 1):
        for c in range(big.shape[1] - t + 1):
            if torch.equal(big[r : r + t, c : c + t], tile):
                return r, c
    return None


def _best_gain_fit(tile, scene):
    """Over all 8 rotations/flips of ``scene`` and every crop position: the least-squares gain
    g of tile ~ g * crop and the relative residual of the best fit."""
    t = tile.shape[-1]
    best = (float("inf"), None)
    for k in range(4):
        for flip in (False, True):
            s = torch.rot90(scene, k, dims=(-2, -1))
            if flip:
                s = s.flip(-1)
            win = s.unfold(1, t, 1).unfold(2, t, 1)  # (B, nr, nc, T, T)
            win = win.permute(1, 2, 0, 3, 4).reshape(-1, *tile.shape)  # (nr*nc, B, T, T)
            g = (win * tile).sum((1, 2, 3)) / (win * win).sum((1, 2, 3))
            res = (tile - g[:, None, None, None] * win).flatten(1).norm(dim=1) / tile.norm()
            j = int(res.argmin())
            if float(res[j]) < best[0]:
                best = (float(res[j]), float(g[j]))
    return best


# ---------------------------------------------------------------------------------------------
# the pool itself


def test_batch_shapes_device_and_pool_estimates_are_gaptv_of_the_tiles():
    pool = _pool(size=4)
    assert len(pool) == 4
    assert pool.clean.shape == pool.gaptv.shape == (4, BANDS, TILE, TILE)
    assert pool.masks.shape == (4, TILE, TILE)
    # every stored estimate is GAP-TV of its tile's simulated measurement under its mask
    for i in range(len(pool)):
        torch.testing.assert_close(pool.gaptv[i], _recomputed_gaptv(pool, i), rtol=1e-4, atol=1e-5)
        # and not trivially the clean tile
        assert not torch.allclose(pool.gaptv[i], pool.clean[i], atol=1e-3)

    x, m, e = pool.batch()
    assert x.shape == e.shape == (3, BANDS, PATCH, PATCH) and m.shape == (3, PATCH, PATCH)
    assert x.device.type == m.device.type == e.device.type == "cpu"
    assert x.dtype == m.dtype == e.dtype == torch.float32
    # each patch is cut at the same place of one tile (clean, mask and estimate together),
    # possibly flipped up-down as a whole
    for n in range(3):
        hits = []
        for i in range(len(pool)):
            for flip in (False, True):
                mm = m[n].flip(-2) if flip else m[n]
                pos = _find_crop(mm, pool.masks[i])
                if pos is None:
                    continue
                r, c = pos
                xx = pool.clean[i, :, r : r + PATCH, c : c + PATCH]
                ee = pool.gaptv[i, :, r : r + PATCH, c : c + PATCH]
                if flip:
                    xx, ee = xx.flip(-2), ee.flip(-2)
                if torch.equal(xx, x[n]) and torch.equal(ee, e[n]):
                    hits.append((i, r, c, flip))
        assert hits, f"batch patch {n} is not a crop of any pool tile"


def test_tiles_are_mask_crops_and_gained_transformed_scene_crops():
    inputs = _inputs()
    scenes, sim, real = inputs
    pool = _pool(size=6, real_fraction=0.5, seed=1, inputs=inputs)
    sim_t, real_t = torch.from_numpy(sim), torch.from_numpy(real)
    scene_t = [torch.from_numpy(s) for s in scenes.values()]
    sources = []
    for i in range(len(pool)):
        in_sim = _find_crop(pool.masks[i], sim_t) is not None
        in_real = _find_crop(pool.masks[i], real_t) is not None
        assert in_sim or in_real, f"mask tile {i} is a crop of neither mask"
        sources.append("sim" if in_sim else "real")

        res, g = min(_best_gain_fit(pool.clean[i], s) for s in scene_t)
        assert res < 1e-5, f"clean tile {i} is no rotated/flipped crop of a scene (residual {res})"
        assert 0.5 - 1e-5 <= g <= 1.5 + 1e-5, f"gain {g} of tile {i} is outside (0.5, 1.5)"
    # with real_fraction 0.5 and this seed both masks are used (the draw is deterministic)
    assert set(sources) == {"sim", "real"}, sources


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_real_fraction_picks_the_mask(fraction):
    scenes, sim, real = _inputs()
    pool = _pool(size=4, real_fraction=fraction, inputs=(scenes, sim, real))
    source = torch.from_numpy(real if fraction == 1.0 else sim)
    assert all(_find_crop(pool.masks[i], source) is not None for i in range(4))


def _changed(a, b):
    return {i for i in range(a.shape[0]) if not torch.equal(a[i], b[i])}


def test_refresh_changes_exactly_n_tiles_and_keeps_them_consistent():
    pool = _pool(size=5)
    before = [pool.clean.clone(), pool.masks.clone(), pool.gaptv.clone()]
    pool.refresh(2)
    changed = _changed(before[0], pool.clean)
    assert len(changed) == 2
    assert _changed(before[2], pool.gaptv) == changed  # estimates remade for exactly those
    for i in set(range(5)) - changed:  # the others are untouched
        assert torch.equal(before[1][i], pool.masks[i])
    for i in changed:  # the new estimates belong to the new tiles
        torch.testing.assert_close(pool.gaptv[i], _recomputed_gaptv(pool, i), rtol=1e-4, atol=1e-5)

    snap = pool.clean.clone()
    pool.refresh(0)
    assert torch.equal(snap, pool.clean)
    pool.refresh(50)  # more than the pool holds: all of them, no error
    assert len(_changed(snap, pool.clean)) == 5


def test_pool_is_deterministic_for_a_seed():
    a, b, c = _pool(seed=7), _pool(seed=7), _pool(seed=8)
    for name in ("clean", "masks", "gaptv"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.clean, c.clean)
    for ta, tb in zip(a.batch(), b.batch()):
        assert torch.equal(ta, tb)
    a.refresh(2)
    b.refresh(2)
    for name in ("clean", "masks", "gaptv"):
        assert torch.equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("tile,patch", [(32, 40), (48, 16)])
def test_constructor_rejects_bad_sizes(tile, patch):
    scenes, sim, real = _inputs()
    with pytest.raises(ValueError, match="patch <= tile"):
        OnlineGaptvPatches(scenes, sim, real, size=2, tile=tile, patch=patch, batch_size=1,
                           device="cpu", iterations=1, log=lambda *_: None)


def test_constructor_rejects_empty_pool():
    scenes, sim, real = _inputs()
    with pytest.raises(ValueError, match="at least one tile"):
        OnlineGaptvPatches(scenes, sim, real, size=0, tile=TILE, patch=PATCH, batch_size=1,
                           device="cpu", iterations=1, log=lambda *_: None)


# ---------------------------------------------------------------------------------------------
# CLI checks


def _one_line_error(r):
    assert r.exit_code != 0, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    return lines[0]


@pytest.fixture
def empty_data(tmp_path):
    (tmp_path / "data" / "cave" / "train").mkdir(parents=True)
    (tmp_path / "data" / "cassi").mkdir()
    return tmp_path / "data"


@pytest.mark.parametrize("args,expected", [
    (["--time-schedule"], "--time-schedule needs --max-minutes"),
    (["--gaptv-online", "4", "--gaptv-tile", "300"], "--gaptv-tile must be between --patch (64) and 256; got 300"),
    (["--gaptv-online", "4", "--patch", "64", "--gaptv-tile", "32"], "--gaptv-tile must be between --patch (64) and 256; got 32"),
    (["--gaptv-online", "-1"], "--gaptv-online and --gaptv-refresh must be >= 0"),
])
def test_train_cassi_option_errors(empty_data, tmp_path, args, expected):
    from hsirestore.cli import app

    r = CliRunner().invoke(app, ["train", "cassi", "--data", str(empty_data),
                                 "--out", str(tmp_path / "run"), *args])
    line = _one_line_error(r)
    assert "training data not found" not in line  # got past the data-dir check
    assert expected in line, line
    assert not (tmp_path / "run").exists()  # refused before training started


def test_train_cassi_data_check_comes_first(tmp_path):
    """Sanity check of the fixture above: without cassi/ the data error is what is reported."""
    from hsirestore.cli import app

    (tmp_path / "data" / "cave" / "train").mkdir(parents=True)
    r = CliRunner().invoke(app, ["train", "cassi", "--data", str(tmp_path / "data"), "--time-schedule"])
    assert "training data not found" in _one_line_error(r)


# ---------------------------------------------------------------------------------------------
# a tiny training run with the online pool


_TINY = dict(stages=2, embed_dim=8, depth=1, num_heads=1, spe_dim_head=8, gaptv_iters=3)


def test_train_with_online_pool(fake_cassi_data, tmp_path, monkeypatch):
    import hsirestore.training.cassi as tc
    from hsirestore.models.s2former import UnfoldedS2Transformer
    from hsirestore.training.cassi import CassiTrainConfig, train

    fake_cassi_data(tmp_path / "data", sim=40, real=60, val=0)

    def no_gaptv_in_model(*a, **k):
        raise AssertionError("the model ran GAP-TV itself instead of using the pool's estimate")

    monkeypatch.setattr(UnfoldedS2Transformer, "initial_estimate", no_gaptv_in_model)
    monkeypatch.setattr(tc, "REFRESH_EVERY", 1)  # refresh at steps 1 and 2
    refreshed = []
    orig_refresh = OnlineGaptvPatches.refresh
    monkeypatch.setattr(OnlineGaptvPatches, "refresh",
                        lambda self, n: (refreshed.append(n), orig_refresh(self, n)))

    cfg = CassiTrainConfig(preset="s2former-gaptv", out=str(tmp_path / "run"), gaptv_online=3,
                           gaptv_tile=32, gaptv_refresh=1, patch=16, batch_size=1, steps=3,
                           val_every=0, log_every=1, threads=1, warmup=1, aux_steps=1,
                           model_overrides=_TINY)
    msgs = []
    train(cfg, data_dir=tmp_path / "data", log=msgs.append)

    assert any("GAP-TV pool: 3 tiles of 32x32 made on cpu" in str(m) for m in msgs), msgs
    assert refreshed == [1, 1]
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck["step"] == 3
    assert ck["config"]["gaptv_online"] == 3 and ck["config"]["gaptv_tile"] == 32
    lines = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [1, 2, 3]
    assert all(np.isfinite(l["loss"]) for l in lines)
