import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HSIRESTORE_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip (users and some CI machines do not have it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not available")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (two OpenMP threads on a shared, busy 2-core machine are
    many times slower than one); use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def hsivar_tiny_weights(tmp_path_factory) -> Path:
    """Randomly initialised hsivar-tiny weights exported like a training run's (safetensors
    with the preset name and config), for CLI tests of --weights."""
    import torch

    from hsirestore.registry import build_model, get_spec
    from hsirestore.weights import save_state_dict

    torch.manual_seed(0)
    m = build_model("hsivar-tiny")
    m.init_condition_encoder()
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_state_dict(m.state_dict(), path, metadata={"model": "hsivar-tiny",
                                                    "config": get_spec("hsivar-tiny").config})
    return path


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture
def cassi_files(tmp_path) -> Path:
    """A small CASSI case in tmp_path: truth.h5 (8 bands, 16x24, wavelengths 450-650 nm),
    mask.mat (``mask``, binary 16x24) and meas.mat (``meas_real``, its step-2 snapshot)."""
    import numpy as np
    import scipy.io

    from hsirestore.io import Cube, write_cube
    from hsirestore.physics.cassi import cassi_forward

    rng = np.random.default_rng(0)
    x = np.full((8, 16, 24), 0.2, np.float32)
    x[:, 4:12, 6:18] = np.linspace(0.3, 0.9, 8, dtype=np.float32)[:, None, None]
    mask = (rng.random((16, 24)) > 0.5).astype(np.float32)
    write_cube(Cube(x, wavelengths=np.linspace(450, 650, 8)), tmp_path / "truth.h5")
    scipy.io.savemat(tmp_path / "mask.mat", {"mask": mask})
    scipy.io.savemat(tmp_path / "meas.mat", {"meas_real": cassi_forward(x, mask, 2)})
    return tmp_path


def _write_fake_cassi_data(root: Path, sim: int = 256, real: int = 40, val: int = 1) -> Path:
    """CAVE-like HDF5 scenes (2 train, ``val`` val; 31 x 48 x 48 uint16 with ``scale``) and
    CASSI masks (``sim`` x ``sim`` simulation, ``real`` x ``real`` real-system), generated
    (torchgeo-style fixtures) in the layout of ../shared/data."""
    import h5py
    import numpy as np
    import scipy.io as sio

    rng = np.random.default_rng(0)
    for split, n in (("train", 2), ("val", val)):
        if not n:
            continue
        (root / "cave" / split).mkdir(parents=True)
        for i in range(n):
            with h5py.File(root / "cave" / split / f"s{i}.h5", "w") as f:
                ds = f.create_dataset("cube", data=rng.integers(0, 4096, (31, 48, 48), dtype=np.uint16))
                ds.attrs["scale"] = 1 / 4095
                f["wavelength_nm"] = np.arange(400, 701, 10)
    (root / "cassi").mkdir()
    sio.savemat(root / "cassi" / "mask_256.mat", {"mask": rng.random((sim, sim)).astype(np.float32)})
    sio.savemat(root / "cassi" / "mask_real_660.mat", {"mask": rng.random((real, real)).astype(np.float32)})
    return root


@pytest.fixture
def fake_cassi_data():
    """Factory: ``fake_cassi_data(root, sim=256, real=40, val=1)`` writes generated CASSI
    training data under root and returns root."""
    return _write_fake_cassi_data


@pytest.fixture(scope="session")
def load_benchmark():
    """Factory: ``load_benchmark("cassi_speed")`` imports benchmarks/cassi_speed.py as a module."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load
