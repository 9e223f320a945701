"""Precomputed GAP-TV estimates for training the GAP-TV-initialised CASSI decoder.

GAP-TV takes seconds per 256x256 measurement, too slow to run inside every training step, so
it runs once per *tile* of the training scenes: each CAVE train scene (28 bands) is cut into
``tile`` x ``tile`` tiles coded by the simulation mask (``mask_256.mat``), plus
``real_per_scene`` tiles at random places coded by random crops of the real-system mask
(``mask_real_660.mat``). Each tile is stored as one ``.npz`` file (scene name, position,
mask, GAP-TV estimate in float16), so building is resumable and can be split into shards
that run in parallel (``shard`` / ``shards``). Training crops patches from (clean tile,
GAP-TV tile, mask tile) at one position and simulates the patch's measurement itself.

On a GPU, GAP-TV of a batch of tiles takes a fraction of a second, so
:class:`OnlineGaptvPatches` makes its tiles on the training device instead: from random
places of the scenes, rotated and flipped *before* they are coded (the estimate is made
afterwards, so every augmentation is valid), and it remakes some of them as training goes.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from hsirestore.errors import OptionError
from hsirestore.physics.cassi import CASSI_WAVELENGTHS_28, cassi_forward, interpolate_bands


def load_mask(path: Path) -> np.ndarray:
    """The ``mask`` variable of a TSA-Net mask file as float32 (H, W)."""
    import scipy.io as sio

    return sio.loadmat(str(path))["mask"].astype(np.float32)


def load_scenes(data_dir: Path, split: str = "train") -> dict[str, np.ndarray]:
    """{scene name: cube (28, H, W) float32} of the CAVE split interpolated to 28 bands."""
    from hsirestore.training.cave import load_cave_scene

    wl28 = np.asarray(CASSI_WAVELENGTHS_28)
    out = {}
    for p in sorted((Path(data_dir) / "cave" / split).glob("*.h5")):
        cube, wl = load_cave_scene(p)
        out[p.stem] = interpolate_bands(cube, wl, wl28).astype(np.float32)
    return out


def tile_plan(scenes: dict[str, np.ndarray], tile: int, real_mask_shape: tuple[int, int],
              real_per_scene: int = 1, seed: int = 0) -> list[dict]:
    """Deterministic list of tiles: {name, scene, r, c, mask: "sim" | (mr, mc)}."""
    rng = np.random.default_rng(seed)
    plan = []
    for name, cube in scenes.items():
        _, h, w = cube.shape
        k = 0
        for r in range(0, h - tile + 1, tile):
            for c in range(0, w - tile + 1, tile):
                plan.append({"name": f"{name}_{k:02d}", "scene": name, "r": r, "c": c, "mask": "sim"})
                k += 1
        for _ in range(real_per_scene):
            r, c = int(rng.integers(0, h - tile + 1)), int(rng.integers(0, w - tile + 1))
            mr = int(rng.integers(0, real_mask_shape[0] - tile + 1))
            mc = int(rng.integers(0, real_mask_shape[1] - tile + 1))
            plan.append({"name": f"{name}_{k:02d}", "scene": name, "r": r, "c": c, "mask": (mr, mc)})
            k += 1
    return plan


def build_gaptv_pool(folder: os.PathLike | str, data_dir: Path, tile: int = 256,
                     iterations: int = 120, tv_weight: float = 4.0, real_per_scene: int = 1,
                     shard: int = 0, shards: int = 1, seed: int = 0, threads: int = 1,
                     log=print) -> int:
    """Compute the missing tiles of this shard into ``folder``; returns how many were made."""
    import torch

    from hsirestore.physics.gaptv import gap_tv

    torch.set_num_threads(threads)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scenes = load_scenes(data_dir)
    sim = load_mask(Path(data_dir) / "cassi" / "mask_256.mat")
    real = load_mask(Path(data_dir) / "cassi" / "mask_real_660.mat")
    if sim.shape[0] < tile or sim.shape[1] < tile:
        raise OptionError(f"mask_256.mat is smaller than the {tile}-pixel tile")
    plan = tile_plan(scenes, tile, real.shape, real_per_scene, seed)
    made = 0
    for i, t in enumerate(plan):
        if i % shards != shard:
            continue
        path = folder / f"{t['name']}.npz"
        if path.exists():
            continue
        x = scenes[t["scene"]][:, t["r"] : t["r"] + tile, t["c"] : t["c"] + tile]
        if t["mask"] == "sim":
            mask = sim[:tile, :tile]
        else:
            mr, mc = t["mask"]
            mask = real[mr : mr + tile, mc : mc + tile]
        y = cassi_forward(x, mask, 2)
        t0 = time.time()
        est = gap_tv(torch.from_numpy(y), torch.from_numpy(np.ascontiguousarray(mask)), x.shape[0],
                     step=2, iterations=iterations, tv_weight=tv_weight).numpy()
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, scene=t["scene"], r=t["r"], c=t["c"], mask=mask.astype(np.float32),
                 gaptv=est.astype(np.float16), iterations=iterations, tv_weight=tv_weight)
        os.replace(tmp, path)
        made += 1
        log(f"pool {t['name']}: {time.time() - t0:.1f} s")
    return made


class GaptvPool:
    """The tiles of a pool folder with their clean cubes: lists of arrays (28, T, T)."""

    def __init__(self, folder: os.PathLike | str, scenes: dict[str, np.ndarray]):
        files = sorted(Path(folder).glob("*.npz"))
        files = [f for f in files if not f.name.endswith(".tmp.npz")]
        if not files:
            raise FileNotFoundError(f"no GAP-TV tiles in {folder} (build them with "
                                    "`hsirestore train cassi-pool`)")
        self.clean, self.gaptv, self.masks = [], [], []
        for f in files:
            with np.load(f) as z:
                est = z["gaptv"].astype(np.float32)
                t = est.shape[-1]
                r, c = int(z["r"]), int(z["c"])
                self.clean.append(scenes[str(z["scene"])][:, r : r + t, c : c + t])
                self.gaptv.append(est)
                self.masks.append(z["mask"].astype(np.float32))

    def __len__(self) -> int:
        return len(self.gaptv)


class OnlineGaptvPatches:
    """Training batches (cube (N, 28, P, P), mask (N, P, P), GAP-TV estimate (N, 28, P, P))
    on ``device``, cut from a pool of ``size`` tiles whose GAP-TV estimates are made there.

    Each tile is a random ``tile`` x ``tile`` crop of a scene, rotated by a multiple of 90
    degrees and flipped at random, times a random gain, coded by a crop of ``mask_256.mat``
    or (with probability ``real_fraction``) of ``mask_real_660.mat``; :meth:`refresh`
    replaces tiles with new ones. The pool's content is not part of a checkpoint: a resumed
    run makes a new one.
    """

    def __init__(self, scenes: dict[str, np.ndarray], sim_mask: np.ndarray, real_mask: np.ndarray,
                 size: int, tile: int, patch: int, batch_size: int, device, gain=(0.5, 1.5),
                 real_fraction: float = 0.25, iterations: int = 120, tv_weight: float = 4.0,
                 chunk: int | None = None, seed: int = 0, log=print):
        import torch

        if patch > tile or tile > min(sim_mask.shape):
            raise OptionError(f"need patch <= tile <= {min(sim_mask.shape)} (the simulation "
                             f"mask); got patch {patch}, tile {tile}")
        if size < 1:
            raise OptionError("the GAP-TV pool needs at least one tile")
        smallest = min(min(c.shape[-2:]) for c in scenes.values())
        if tile > min(smallest, *real_mask.shape):
            raise OptionError(f"the {tile}-pixel tile is larger than a scene ({smallest} px) "
                             f"or the real-system mask {real_mask.shape}")
        self.device = torch.device(device)
        self.rng = np.random.default_rng(seed)
        self.scenes = [torch.from_numpy(c).to(self.device) for c in scenes.values()]
        self.sim = torch.from_numpy(sim_mask).to(self.device)
        self.real = torch.from_numpy(real_mask).to(self.device)
        self.tile, self.patch, self.batch_size, self.gain = tile, patch, batch_size, gain
        self.real_fraction, self.iterations, self.tv_weight = real_fraction, iterations, tv_weight
        # tiles per GAP-TV call: a GPU wants big batches; a CPU small ones (256x256 tiles on 2
        # cores: about 10 s each in pairs, 21 s each in batches of 32)
        self.chunk = max(1, chunk or (32 if self.device.type == "cuda" else 2))
        bands = self.scenes[0].shape[0]
        self.clean = torch.empty(size, bands, tile, tile, device=self.device)
        self.gaptv = torch.empty_like(self.clean)
        self.masks = torch.empty(size, tile, tile, device=self.device)
        t0 = time.time()
        for start in range(0, size, self.chunk):
            self._fill(torch.arange(start, min(size, start + self.chunk), device=self.device))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        log(f"GAP-TV pool: {size} tiles of {tile}x{tile} made on {self.device} in {time.time() - t0:.1f} s")

    def __len__(self) -> int:
        return self.clean.shape[0]

    def _crop(self, a, size: int):
        r = int(self.rng.integers(0, a.shape[-2] - size + 1))
        c = int(self.rng.integers(0, a.shape[-1] - size + 1))
        return a[..., r : r + size, c : c + size]

    def _fill(self, slots) -> None:
        import torch

        from hsirestore.physics.gaptv import gap_tv

        t, rng = self.tile, self.rng
        xs, ms = [], []
        for _ in range(len(slots)):
            x = self._crop(self.scenes[int(rng.integers(len(self.scenes)))], t)
            x = torch.rot90(x, int(rng.integers(4)), dims=(-2, -1))
            if rng.random() < 0.5:
                x = x.flip(-1)
            xs.append(x * float(rng.uniform(*self.gain)))
            ms.append(self._crop(self.real if rng.random() < self.real_fraction else self.sim, t))
        x, m = torch.stack(xs), torch.stack(ms)
        y = cassi_forward(x, m.unsqueeze(1), 2)
        self.clean[slots] = x
        self.masks[slots] = m
        self.gaptv[slots] = gap_tv(y, m, x.shape[1], 2, self.iterations, self.tv_weight)

    def refresh(self, n: int) -> None:
        """Replace ``n`` random tiles by new ones."""
        import torch

        n = min(n, len(self))
        if n > 0:
            slots = torch.from_numpy(self.rng.choice(len(self), n, replace=False)).to(self.device)
            for start in range(0, n, self.chunk):
                self._fill(slots[start : start + self.chunk])

    def batch(self):
        """Patches at one random place of random tiles, flipped up-down at random (other
        flips would change the dispersion direction the estimates were made with)."""
        import torch

        p, rng = self.patch, self.rng
        xs, ms, es = [], [], []
        for _ in range(self.batch_size):
            i = int(rng.integers(len(self)))
            r = int(rng.integers(0, self.tile - p + 1))
            c = int(rng.integers(0, self.tile - p + 1))
            x = self.clean[i, :, r : r + p, c : c + p]
            e = self.gaptv[i, :, r : r + p, c : c + p]
            m = self.masks[i, r : r + p, c : c + p]
            if rng.random() < 0.5:
                x, e, m = x.flip(-2), e.flip(-2), m.flip(-2)
            xs.append(x)
            es.append(e)
            ms.append(m)
        return torch.stack(xs), torch.stack(ms), torch.stack(es)
