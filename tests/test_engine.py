"""TiledPredictor (array and streaming), device and AMP policy."""
import contextlib

import numpy as np
import pytest
import torch

from hsirestore.errors import HsiRestoreError, OptionError, ShapeError
from hsirestore.inference.device import amp_dtype, autocast_context, resolve_device
from hsirestore.inference.engine import TiledPredictor
from hsirestore.inference.normalize import fit_scaling
from hsirestore.io.cube import ArraySink, ArraySource, Cube


def _identity(t):
    return t


def _rand(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("shape,tile,overlap,multiple,batch", [
    ((3, 37, 53), 16, 5, 1, 3), ((2, 5, 7), 16, 3, 4, 2), ((4, 100, 130), 32, 8, 8, 4),
    ((1, 64, 64), 32, 0, 1, 1), ((3, 65, 33), (20, 10), (19, 9), 3, 5), ((2, 1, 1), 8, 2, 8, 1),
])
def test_identity_is_exact(shape, tile, overlap, multiple, batch):
    x = _rand(shape)
    p = TiledPredictor(_identity, tile=tile, overlap=overlap, multiple=multiple,
                       batch_size=batch, device="cpu")
    y = p.predict_array(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, x)


def test_whole_image_as_one_tile():
    seen = []

    def fn(t):
        seen.append(tuple(t.shape))
        return t + 1

    x = _rand((2, 37, 45))
    y = TiledPredictor(fn, tile=None, multiple=8, device="cpu").predict_array(x)
    assert seen == [(1, 2, 40, 48)]
    np.testing.assert_allclose(y, x + 1)


def test_multiple_padding_seen_by_model_and_cropped():
    seen = []

    def fn(t):
        seen.append(tuple(t.shape))
        assert t.shape[2] % 8 == 0 and t.shape[3] % 8 == 0
        return t * 3

    x = _rand((2, 30, 45))
    y = TiledPredictor(fn, tile=20, overlap=6, multiple=8, device="cpu").predict_array(x)
    assert all(s[2:] == (24, 24) for s in seen)
    np.testing.assert_allclose(y, 3 * x, rtol=1e-6)


def test_channel_mixing_model_matches_whole_image():
    conv = torch.nn.Conv2d(3, 5, 1)
    x = _rand((3, 41, 29), 1)
    p = TiledPredictor(conv, tile=16, overlap=4, batch_size=2, device="cpu", out_channels=5)
    y = p.predict_array(x)
    with torch.no_grad():
        ref = conv(torch.from_numpy(x)[None])[0].numpy()
    assert y.shape == (5, 41, 29)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_local_model_has_no_seams_with_enough_overlap():
    conv = torch.nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect", bias=False)
    x = _rand((2, 60, 70), 2)
    y = TiledPredictor(conv, tile=24, overlap=8, device="cpu").predict_array(x)
    with torch.no_grad():
        ref = conv(torch.from_numpy(x)[None])[0].numpy()
    # away from tile borders the tile results equal the whole-image result; the ramps give
    # zero-ish weight to the outermost pixel of each tile, so the blend stays close
    np.testing.assert_allclose(y, ref, atol=0.15)
    np.testing.assert_allclose(y[:, 1:-1, 1:-1].mean(), ref[:, 1:-1, 1:-1].mean(), atol=1e-3)


class _RecordingSource(ArraySource):
    def __init__(self, cube):
        super().__init__(cube)
        self.windows = []

    def read_window(self, r0, r1, c0, c1):
        self.windows.append((r0, r1, c0, c1))
        return super().read_window(r0, r1, c0, c1)


class _RecordingSink(ArraySink):
    def __init__(self, shape):
        super().__init__(shape)
        self.count = np.zeros(shape[1:], int)
        self.max_block = 0

    def write_window(self, r0, c0, block):
        super().write_window(r0, c0, block)
        self.count[r0:r0 + block.shape[1], c0:c0 + block.shape[2]] += 1
        self.max_block = max(self.max_block, block.size)


def test_stream_writes_each_pixel_once_in_tile_sized_blocks():
    x = _rand((3, 70, 90), 3)
    src = _RecordingSource(Cube(x))
    sink = _RecordingSink((3, 70, 90))
    p = TiledPredictor(_identity, tile=24, overlap=6, batch_size=4, device="cpu")
    p.predict_stream(src, sink)
    np.testing.assert_array_equal(sink.data, x)
    assert (sink.count == 1).all()
    assert sink.max_block <= 3 * 24 * 24
    tile_reads = [w for w in src.windows if (w[1] - w[0], w[3] - w[2]) == (24, 24)]
    assert len(tile_reads) == len(set(tile_reads)) == 4 * 5
    # after the (small) fill-value sample, every read is one tile window
    first = src.windows.index(tile_reads[0])
    assert src.windows[first:] == tile_reads


def test_stream_equals_array_and_applies_normalizer():
    x = np.abs(_rand((4, 50, 40), 4)) * 5000.0
    scaling = fit_scaling(x)
    peaks = []

    def fn(t):
        peaks.append(float(t.abs().max()))
        return t * 0.5

    p = TiledPredictor(fn, tile=16, overlap=4, device="cpu")
    sink = ArraySink(x.shape)
    p.predict_stream(ArraySource(Cube(x)), sink, normalizer=scaling)
    assert max(peaks) < 2.0  # the model saw normalised values
    np.testing.assert_allclose(sink.data, 0.5 * x, rtol=1e-5)  # back on the input scale
    np.testing.assert_allclose(p.predict_array(x, normalizer=scaling), sink.data, rtol=1e-6)


def test_invalid_pixels_filled_then_marked():
    x = _rand((3, 30, 30), 5) + 10.0
    x[:, 3, 4] = np.nan
    x[1, 20, 21] = np.inf
    valid = np.ones((30, 30), bool)
    valid[10, 11] = False
    seen = []

    def fn(t):
        assert torch.isfinite(t).all()
        seen.append(t.clone())
        return t

    p = TiledPredictor(fn, tile=16, overlap=4, device="cpu")
    y = p.predict_array(x, valid=valid)
    bad = ~np.isfinite(x).all(0) | ~valid
    assert np.isnan(y[:, bad]).all()
    np.testing.assert_array_equal(y[:, ~bad], x[:, ~bad])
    # the fill value is the per-band mean of the valid pixels
    first = seen[0][0].numpy()
    means = np.array([x[b][~bad].mean() for b in range(3)])
    np.testing.assert_allclose(first[:, 3, 4], means, rtol=1e-5)
    # without marking, the output keeps the model's value for those pixels
    y2 = TiledPredictor(fn, tile=16, overlap=4, device="cpu", mark_invalid=False).predict_array(
        Cube(x, valid=valid))
    assert np.isfinite(y2).all()


def test_stream_uses_source_nodata():
    x = _rand((2, 20, 20), 6)
    x[:, 5, 5] = -9999.0
    cube = Cube(x, nodata=-9999.0)
    sink = ArraySink(x.shape)

    def fn(t):
        assert float(t.min()) > -100
        return t

    TiledPredictor(fn, tile=8, overlap=2, device="cpu").predict_stream(ArraySource(cube), sink)
    assert np.isnan(sink.data[:, 5, 5]).all()
    assert np.isfinite(sink.data).sum() == 2 * 399


def test_stream_valid_mask_and_meta_valid():
    x = _rand((2, 20, 24), 7)
    valid = np.ones((20, 24), bool)
    valid[2:4, 5] = False

    def fn(t):
        assert float(t.abs().max()) < 50
        return t

    x2 = x.copy()
    x2[:, 2:4, 5] = 1e6  # garbage under the mask must not reach the model
    p = TiledPredictor(fn, tile=8, overlap=2, device="cpu")
    sink = ArraySink(x.shape)
    p.predict_stream(ArraySource(Cube(x2)), sink, valid=valid)
    assert np.isnan(sink.data[:, 2:4, 5]).all()
    np.testing.assert_array_equal(sink.data[:, valid], x[:, valid])
    with pytest.raises(ShapeError, match="valid mask"):
        p.predict_stream(ArraySource(Cube(x)), ArraySink(x.shape), valid=np.ones((2, 2), bool))


def test_model_shape_errors():
    x = _rand((2, 20, 20))
    with pytest.raises(ShapeError, match="expected"):
        TiledPredictor(lambda t: t[:, :, :-1], tile=8, overlap=2, device="cpu").predict_array(x)
    with pytest.raises(ShapeError, match="channels"):
        TiledPredictor(_identity, tile=8, overlap=2, device="cpu", out_channels=3).predict_array(x)
    with pytest.raises(ShapeError, match="output has shape"):
        TiledPredictor(_identity, tile=8, overlap=2, device="cpu").predict_stream(
            ArraySource(Cube(x)), ArraySink((3, 20, 20)))
    with pytest.raises(ShapeError):
        TiledPredictor(_identity, device="cpu").predict_array(np.zeros((2, 2, 2, 2), np.float32))
    with pytest.raises(ShapeError, match="valid mask"):
        TiledPredictor(_identity, device="cpu").predict_array(x, valid=np.ones((3, 3), bool))


@pytest.mark.parametrize("kwargs", [
    dict(tile=0), dict(tile=8, overlap=8), dict(overlap=-1), dict(batch_size=0),
    dict(multiple=0), dict(amp="fp8"), dict(device="tpu"),
])
def test_bad_options(kwargs):
    kwargs.setdefault("device", "cpu")
    with pytest.raises(OptionError) as e:
        TiledPredictor(_identity, **kwargs)
    assert "\n" not in str(e.value)


def test_grad_modes():
    modes = []

    def fn(t):
        modes.append((torch.is_grad_enabled(), torch.is_inference_mode_enabled()))
        w = torch.ones(1, requires_grad=True)
        return t * w

    x = _rand((1, 10, 10))
    TiledPredictor(fn, tile=8, overlap=2, device="cpu").predict_array(x)
    assert all(m == (False, True) for m in modes)
    modes.clear()
    y = TiledPredictor(fn, tile=8, overlap=2, device="cpu", enable_grad=True).predict_array(x)
    assert all(m == (True, False) for m in modes)
    np.testing.assert_allclose(y, x)


def test_progress_and_channels_last_run():
    x = _rand((3, 33, 33))
    seen = []

    def fn(t):
        seen.append(t.is_contiguous(memory_format=torch.channels_last))
        return t

    y = TiledPredictor(fn, tile=16, overlap=4, device="cpu", progress=True,
                       channels_last=True).predict_array(x)
    np.testing.assert_array_equal(y, x)
    assert all(seen)


def test_resolve_device_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(OptionError, match="unknown device"):
        resolve_device("cuda:x")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda_is_an_option_error():
    for spec in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(OptionError) as e:
            resolve_device(spec)
        assert isinstance(e.value, HsiRestoreError) and "CUDA is not available" in str(e.value)


def test_amp_is_a_noop_on_cpu():
    for amp in ("none", "bf16", "fp16", "auto"):
        assert amp_dtype("cpu", amp) is None
        assert isinstance(autocast_context(torch.device("cpu"), amp), contextlib.nullcontext)
    with pytest.raises(OptionError, match="AMP"):
        amp_dtype("cpu", "int8")


@pytest.mark.gpu
def test_cuda_amp_and_identity():
    dev = resolve_device("cuda")
    assert amp_dtype(dev, "fp16") == torch.float16 and amp_dtype(dev, "none") is None
    assert amp_dtype(dev, "auto") in (torch.bfloat16, torch.float16)
    conv = torch.nn.Conv2d(3, 3, 1).to(dev)
    x = _rand((3, 70, 50))
    y = TiledPredictor(conv, tile=32, overlap=8, device="cuda", amp="auto").predict_array(x)
    with torch.no_grad():
        ref = conv.cpu()(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(y, ref, atol=0.05)
    y = TiledPredictor(_identity, tile=32, overlap=8, device="cuda", amp="none").predict_array(x)
    np.testing.assert_array_equal(y, x)


def test_stream_through_envi_files_with_scaling_and_nodata(tmp_path):
    from hsirestore.io import create_cube, open_cube, read_cube, write_cube
    from hsirestore.io.common import cast_for_writing

    rng = np.random.default_rng(8)
    counts = rng.integers(100, 4000, size=(6, 37, 41)).astype(np.float32)
    counts[:, 4, 9] = np.nan
    write_cube(Cube(counts, wavelengths=np.linspace(400, 900, 6), source_dtype="float32"),
               tmp_path / "in.hdr")
    src = open_cube(tmp_path / "in.hdr")
    scaling = fit_scaling(src)
    assert scaling.rule.startswith("auto:percentile")
    peaks = []

    def fn(t):
        peaks.append(float(t.max()))
        return t

    sink = create_cube(tmp_path / "out.hdr", src.meta, src.shape)
    try:
        TiledPredictor(fn, tile=16, overlap=4, batch_size=3, device="cpu").predict_stream(
            src, sink, normalizer=scaling)
        sink.commit()
    finally:
        src.close()
    assert max(peaks) < 1.5
    out = read_cube(tmp_path / "out.hdr")
    # the NaN written for the invalid input pixel reads back as invalid
    assert out.valid is not None and not out.valid[4, 9] and out.valid.sum() == 37 * 41 - 1
    ok = np.isfinite(counts).all(0)
    np.testing.assert_allclose(out.data[:, ok], counts[:, ok], rtol=1e-6)
    np.testing.assert_array_equal(cast_for_writing(out.data, "uint16")[:, ok], counts[:, ok])
