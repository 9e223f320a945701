"""Shipped weights: manifest, checksums and safe loading.

Weights are safetensors files in the ``weights/`` folder, listed in ``weights/manifest.json``:

    {"files": {"<file>": {"model": "<registry name>", "sha256": "...", "config": {...},
                "training_data": "...", "steps": N, "val_metrics": {...}, "dtype": "float16"}}}

Lookup order for the folder: ``$HSIRESTORE_WEIGHTS``, the ``weights/`` folder beside the
package (source checkout / editable install), then ``share/hsirestore/weights`` under the
install prefix, the base prefix, the user base (data files of a regular ``pip install``) or
the ``--target`` folder the package was installed into.
Loading always verifies the sha256 recorded in the manifest before reading a tensor.

The predictors read weights through :func:`load_checkpoint` (which preset and builder
configuration a file records: exported safetensors, a training ``last.pt``, the authors'
S2-Transformer checkpoint) and :meth:`Checkpoint.build` (the model built through
:func:`hsirestore.registry.build_model` and loaded strictly with :func:`load_into`), so the
same mistake gives the same one-line ModelError whichever predictor reads the file.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hsirestore.errors import ModelError, first_line

MANIFEST = "manifest.json"


def weights_dir() -> Path:
    env = os.environ.get("HSIRESTORE_WEIGHTS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent / "weights"
    if here.is_dir():
        return here
    import site

    user_base = getattr(site, "USER_BASE", None) or ""
    # non-editable install: data files under the prefix; `pip install --target DIR` puts them
    # in DIR/share beside the package
    target = Path(__file__).resolve().parent.parent
    for prefix in (sys.prefix, sys.base_prefix, user_base, target):
        if not prefix:
            continue
        installed = Path(prefix) / "share" / "hsirestore" / "weights"
        if (installed / MANIFEST).is_file():
            return installed
    return here


def sha256_file(path: os.PathLike | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(folder: Path | None = None) -> dict[str, Any]:
    folder = folder or weights_dir()
    path = folder / MANIFEST
    if not path.exists():
        return {"files": {}}
    with open(path) as f:
        return json.load(f)


def write_manifest(manifest: dict[str, Any], folder: Path | None = None) -> None:
    folder = folder or weights_dir()
    tmp = folder / (MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, folder / MANIFEST)


def recorded_steps(path: os.PathLike | str) -> int:
    """Training steps behind a weights file (0 when unknown): its manifest entry's ``steps``
    when the manifest beside it lists it with the same sha256, else the ``steps`` in its
    metadata; for a training checkpoint, its step plus the steps behind its initial weights."""
    path = Path(path)
    if not path.is_file():
        return 0
    entry = read_manifest(path.parent).get("files", {}).get(path.name)
    if entry and entry.get("sha256") == sha256_file(path) and entry.get("steps") is not None:
        return int(entry["steps"])
    _, meta = load_state_dict(path)
    run = meta.get("training_config")
    if isinstance(run, dict):
        return int(meta.get("step") or 0) + int(run.get("init_steps") or 0)
    try:
        return int(meta.get("steps") or 0)
    except (TypeError, ValueError):
        return 0


def shipped_weights_path(file_name: str) -> Path:
    """Path of a shipped weights file, checked against the manifest's sha256."""
    folder = weights_dir()
    entry = read_manifest(folder).get("files", {}).get(file_name)
    path = folder / file_name
    if entry is None or not path.exists():
        raise ModelError(
            f"no shipped weights {file_name!r} in {folder}; train them with 'hsirestore train' "
            "or pass --weights FILE"
        )
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise ModelError(f"checksum mismatch for {path}: expected {entry['sha256']}, got {digest}")
    return path


def _sorted_header(blob: bytes) -> bytes:
    """A safetensors byte string with its JSON header rewritten with sorted keys, padded
    with spaces to a multiple of 8 bytes as the format asks (the data offsets are relative
    to the end of the header, so they do not change)."""
    n = int.from_bytes(blob[:8], "little")
    header = json.dumps(json.loads(blob[8 : 8 + n]), sort_keys=True, separators=(",", ":"))
    raw = header.encode() + b" " * (-len(header.encode()) % 8)
    return len(raw).to_bytes(8, "little") + raw + blob[8 + n :]


def save_state_dict(state: dict, path: os.PathLike | str, metadata: dict[str, Any] | None = None,
                    half: bool = False) -> str:
    """Save a state dict as safetensors (optionally fp16) atomically; returns its sha256.

    ``metadata`` values are JSON-encoded (safetensors metadata is str -> str). The file is
    byte-for-byte reproducible: the header is written with sorted keys (safetensors itself
    writes the metadata in a per-process random order, so two exports of the same tensors
    had different sha256).
    """
    import torch
    from safetensors.torch import save

    tensors = {}
    for k, v in state.items():
        v = v.detach().cpu().contiguous()
        if half and v.is_floating_point():
            v = v.half()
        tensors[k] = v
    meta = {k: json.dumps(v, sort_keys=True) for k, v in (metadata or {}).items()}
    blob = _sorted_header(save(tensors, metadata=meta))
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(blob)
    os.chmod(tmp, 0o644)  # readable like any installed file
    os.replace(tmp, path)
    del torch
    return sha256_file(path)


def publish_weights(state: dict, out_file: os.PathLike | str, entry: dict[str, Any]) -> dict[str, Any]:
    """Save ``state`` as fp16 safetensors at ``out_file`` and record ``entry`` (model, config,
    training data, steps, validation metrics, ...) plus its sha256 and dtype in the
    manifest.json of that folder. Returns the completed entry."""
    out_file = Path(out_file)
    entry = {**entry, "dtype": "float16"}
    entry["sha256"] = save_state_dict(
        state, out_file, half=True,
        metadata={"model": entry.get("model"), "config": entry.get("config"), "steps": entry.get("steps")})
    manifest = read_manifest(out_file.parent)
    manifest.setdefault("files", {})[out_file.name] = entry
    write_manifest(manifest, out_file.parent)
    return entry


def load_state_dict(path: os.PathLike | str, expected_sha256: str | None = None) -> tuple[dict, dict]:
    """Load (state_dict as float32 tensors, metadata) from safetensors or a torch checkpoint.

    Torch checkpoints are read with ``weights_only=True`` (no code execution).
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise ModelError(f"weights file {path} not found")
    if expected_sha256 is not None:
        digest = sha256_file(path)
        if digest != expected_sha256:
            raise ModelError(f"checksum mismatch for {path}: expected {expected_sha256}, got {digest}")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta_raw = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises its own error types
            raise ModelError(f"cannot read weights {path}: {first_line(e)}") from e
        meta = {}
        for k, v in meta_raw.items():
            try:
                meta[k] = json.loads(v)
            except json.JSONDecodeError:
                meta[k] = v
    else:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:
            raise ModelError(f"cannot read weights {path}: not a safetensors file or a PyTorch "
                             "state-dict checkpoint") from e
        meta = {}
        state = obj
        if isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
            meta = {k: v for k, v in obj.items() if not isinstance(v, (dict, torch.Tensor))}
            if isinstance(obj.get("config"), dict):  # a training checkpoint's run config
                meta["training_config"] = obj["config"]
            for key in ("model_weights", "state_dict", "model", "params"):
                if key in obj and isinstance(obj[key], dict):
                    state = obj[key]
                    break
    if not (isinstance(state, dict) and state
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise ModelError(f"cannot read weights {path}: it holds no state dict (a mapping of "
                         "parameter names to tensors)")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    return state, meta


def _keys(keys, n: int = 3) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_into(model, state: dict, strict: bool = True, *, source: str = "checkpoint",
              target: str = "the model") -> None:
    """load_state_dict with a short one-line ModelError on mismatch
    ("<source> does not fit <target>: ...")."""
    misfit = f"{source} does not fit {target}: "
    want = model.state_dict()
    if strict:
        missing, extra = set(want) - set(state), set(state) - set(want)
        if missing or extra:
            parts = ([f"{len(missing)} missing keys ({_keys(missing)})"] if missing else []) + \
                    ([f"{len(extra)} unexpected keys ({_keys(extra)})"] if extra else [])
            raise ModelError(misfit + "; ".join(parts) + " -- weights of another model or preset?")
    bad = [k for k, v in state.items() if k in want and tuple(v.shape) != tuple(want[k].shape)]
    if bad:
        k = bad[0]
        raise ModelError(f"{misfit}{len(bad)} tensors differ in shape "
                         f"(e.g. {k}: {tuple(state[k].shape)} in the file, "
                         f"{tuple(want[k].shape)} in the model) -- another preset?")
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as e:
        raise ModelError(misfit + first_line(e)) from e


# ------------------------------------------------------------------ weights for a predictor
#: per task: what its models are called in messages, and where weights come from
_TASKS = {
    "restore": ("a restoration model", "train them with 'hsirestore train hsivar'"),
    "rgb2hsi": ("an RGB-to-hyperspectral model",
                "train them with 'hsirestore train mcga', or use --method poly"),
    "cassi": ("a CASSI decoder", "train them with 'hsirestore train cassi'"),
}


@dataclass
class Checkpoint:
    """Weights resolved for a registered model (see :func:`load_checkpoint`).

    Attributes:
        name: registry preset the weights are for.
        overrides: builder keyword arguments recorded with the weights (over the preset's).
        state: state dict, float32 tensors, keys as the model names them.
        meta: the file's metadata (safetensors metadata, or a torch file's non-tensor entries).
        path: the file read.
        replaced: the model name asked for when the file records another preset (which is
            built instead), else None.
    """

    name: str
    overrides: dict[str, Any]
    state: dict
    meta: dict[str, Any]
    path: Path
    replaced: str | None = None

    @property
    def note(self) -> str | None:
        """A one-line warning when the file's preset replaced the model asked for."""
        if self.replaced is None:
            return None
        return (f"{self.path.name} holds {self.name} weights: built as {self.name}, not as "
                f"--model {self.replaced}")

    @property
    def config(self) -> dict[str, Any]:
        """The full builder configuration: the preset's config updated with ``overrides``."""
        from hsirestore.registry import get_spec

        return {**get_spec(self.name).config, **self.overrides}

    def build(self):
        """The model (CPU, float32, eval mode) built through the registry with ``overrides``
        and these weights loaded strictly; ModelError naming the file when its configuration
        cannot be built or its tensors do not fit."""
        from hsirestore.registry import build_model

        try:
            model = build_model(self.name, **self.overrides)
        except ModelError as e:
            raise ModelError(f"{self.path}: {first_line(e)}") from e
        load_into(model, self.state, strict=True, source=str(self.path), target=self.name)
        return model.eval()


def _official_s2former(state: dict) -> dict | None:
    """The state in this package's S2-Transformer keys when ``state`` is the authors'
    checkpoint (DataParallel ``module.`` keys of an S2-Transformer); else None."""
    from hsirestore.models.s2former import is_official_checkpoint, official_key_map

    if not is_official_checkpoint(state):
        return None
    mapped = official_key_map(state)
    return mapped if "RSTB_pin.weight" in mapped and "conv_first.weight" in mapped else None


def recorded_model(state: dict, meta: dict) -> tuple[str | None, dict[str, Any], dict]:
    """(preset the weights name or None, builder overrides they record, state) of a file.

    * the authors' S2-Transformer checkpoint: "s2former", no overrides, keys mapped;
    * a training checkpoint (``last.pt``; its run config is ``meta["training_config"]``, or a
      ``config`` that names a ``preset``): the run's ``preset`` and ``model_overrides``; the
      training-only auxiliary head (``aux.*``) is dropped;
    * exported weights: metadata ``model`` (or ``preset``), and ``model_overrides`` or else
      the full builder ``config``.
    """
    official = _official_s2former(state)
    if official is not None:
        return "s2former", {}, official
    run = meta.get("training_config")
    if not isinstance(run, dict) and isinstance(meta.get("config"), dict) and "preset" in meta["config"]:
        run = meta["config"]
    named = meta.get("model") or meta.get("preset")
    if isinstance(run, dict):
        overrides = run.get("model_overrides")
        named = named or run.get("preset")
        state = {k: v for k, v in state.items() if not k.startswith("aux.")}
    else:
        overrides = meta.get("model_overrides")
        if not isinstance(overrides, dict):
            overrides = meta.get("config")
    overrides = dict(overrides) if isinstance(overrides, dict) else {}
    return (named if isinstance(named, str) else None), overrides, state


def load_checkpoint(weights: os.PathLike | str | None, task: str, model_name: str | None,
                    default: str) -> Checkpoint:
    """Read the weights of a ``task`` ("restore", "rgb2hsi" or "cassi") model.

    ``weights`` None: the shipped file of ``model_name`` (or ``default``), checksum-checked.
    Otherwise the file (safetensors, a training ``last.pt`` or the authors' S2-Transformer
    ``.pth``) is built as the preset it records (see :func:`recorded_model`), else as
    ``model_name``, else as ``default``, with the builder overrides it records.
    ModelError (one line) for: an unknown model, a model or weights of another task, no
    shipped weights, an unreadable file.
    """
    from hsirestore.registry import get_spec, list_models

    what, hint = _TASKS[task]
    name = model_name or default
    spec = get_spec(name)
    if spec.task != task:
        raise ModelError(f"model {name!r} is a {spec.task} model, not {what}")
    if weights is None:
        if spec.weights is None:
            raise ModelError(f"model {name!r} has no shipped weights; pass --weights FILE ({hint})")
        path = shipped_weights_path(spec.weights)
    else:
        path = Path(weights)
    state, meta = load_state_dict(path)
    named, overrides, state = recorded_model(state, meta)
    tasks = {s.name: s.task for s in list_models()}
    replaced = None
    if named in tasks:  # an unknown name (a renamed preset, another package's) is not used
        if tasks[named] != task:
            raise ModelError(f"{path} holds weights of the {tasks[named]} model {named!r}, "
                             f"not {what}")
        if model_name is not None and named != model_name:
            replaced = model_name
        name = named
    return Checkpoint(name=name, overrides=overrides, state=state, meta=meta, path=path,
                      replaced=replaced)


def load_model(weights: os.PathLike | str | None, task: str, model_name: str | None,
               default: str):
    """(model, :class:`Checkpoint`): :func:`load_checkpoint` then :meth:`Checkpoint.build`."""
    ck = load_checkpoint(weights, task, model_name, default)
    return ck.build(), ck
