"""Helpers the three trainers share: option checks, run-folder and resume checks, reading
training checkpoints and loading weights with one-line errors, export-target checks, and the
loop control (checkpoint cadence, time limit, Ctrl-C handling).

Ctrl-C (SIGINT) during training: :class:`InterruptGuard` defers the interrupt while a step
commits its update (optimiser step, scheduler, step counter, dead-code restarts), so a
checkpoint written on the way out always holds the state after a whole number of steps.
:class:`LoopControl` records the step count and a snapshot of the random-number state at
the end of each commit; the interrupt checkpoint stores that snapshot, so ``--resume``
continues exactly as if the run had not been interrupted.
"""
from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from hsirestore.errors import (FormatError, ModelError, OptionError, OutputExistsError,
                               first_line)

#: What each model task's training checkpoints are called in messages, and its export command.
_KINDS = {"cassi": ("a CASSI (train cassi)", "cassi-export"),
          "restore": ("an HSI-VAR (train hsivar)", "hsivar-export"),
          "rgb2hsi": ("an MCGA (train mcga)", "mcga-export")}
#: How a task is named in "is a ... model, not a ... preset" errors.
TASK_NAMES = {"cassi": "a CASSI", "restore": "a restore (HSI-VAR)", "rgb2hsi": "an rgb2hsi (MCGA)"}


def torch_rng_state() -> dict:
    """torch's random state for a checkpoint: ``torch_rng`` (CPU) and, once CUDA has been
    used in this process, ``cuda_rng`` (one state per GPU), so that a GPU run resumes with
    the same channel masks, dead-code picks and jitter it would have drawn."""
    import torch

    state = {"torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def set_torch_rng_state(ck: dict) -> None:
    """Restore what :func:`torch_rng_state` saved (the CUDA part only where CUDA is available
    with the same number of GPUs; a checkpoint from another machine continues from its CPU
    state)."""
    import torch

    torch.set_rng_state(ck["torch_rng"])
    cuda = ck.get("cuda_rng")
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)


def _opt(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_config(cfg) -> None:
    """OptionError for out-of-range values of the options the trainers share (whichever of
    them ``cfg`` has): counts >= 1, durations/noise/intervals >= 0, a finite lr >= 0, a
    checkpoint interval (``ckpt_minutes``) > 0."""
    for name in ("steps", "batch_size", "patch", "log_every", "ckpt_every"):
        v = getattr(cfg, name, None)
        if v is not None and not v >= 1:
            raise OptionError(f"{_opt(name)} must be >= 1; got {v}")
    for name in ("max_minutes", "val_every", "warmup", "threads"):
        v = getattr(cfg, name, None)
        if v is not None and not v >= 0:  # also NaN
            raise OptionError(f"{_opt(name)} must be >= 0; got {v}")
    v = getattr(cfg, "ckpt_minutes", None)
    if v is not None and not v > 0:  # also NaN; 0 would mean a checkpoint every step
        raise OptionError(f"--ckpt-minutes must be > 0; got {v}")
    for name in ("lr", "shot_noise"):
        v = getattr(cfg, name, None)
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise OptionError(f"{_opt(name)} must be a finite number >= 0; got {v}")


def check_lr(lr: float) -> None:
    """The CLI's learning-rate check (the Python API also allows 0, e.g. for tests)."""
    if not (math.isfinite(lr) and lr > 0):
        raise OptionError(f"--lr must be a finite number > 0; got {lr}")


def check_task(preset: str, task: str) -> None:
    """ModelError when ``preset`` is registered for another task than ``task``; an unknown
    preset lists this task's presets (a usage error, exit 2)."""
    from hsirestore.errors import UnknownModelError
    from hsirestore.registry import get_spec, list_models

    try:
        spec = get_spec(preset)
    except UnknownModelError:
        names = ", ".join(m.name for m in list_models(task)) or "(none)"
        kind = TASK_NAMES.get(task, task).split(" ", 1)[-1]  # without "a"/"an"
        raise UnknownModelError(f"unknown preset {preset!r}; the {kind} presets are: {names}") from None
    if spec.task != task:
        raise ModelError(f"{preset} is {TASK_NAMES.get(spec.task, 'a ' + spec.task)} model, not "
                         f"{TASK_NAMES.get(task, 'a ' + task)} preset (see 'hsirestore models')")


def check_run_folder(ckpt: Path, resume: bool) -> None:
    """Without --resume an existing checkpoint is never replaced; with it, one must exist."""
    ckpt = Path(ckpt)
    if resume and not ckpt.is_file():
        raise OptionError(f"--resume: no checkpoint {ckpt} to continue (check --out, or leave "
                          "out --resume to start a new run)")
    if not resume and ckpt.exists():
        raise OutputExistsError(f"{ckpt} exists; pass --resume to continue it or use another --out")


#: The hint of a missing stage-1 checkpoint (train hsivar and train mcga, stage 2).
STAGE1_HINT = "run --stage 1 first, or pass --init-weights FILE"


def require_file(path, what: str, hint: str = "") -> Path:
    """``path`` as a Path; FormatError (exit 1, one line) when it is not a file:
    "<what> <path>: file not found[ (<hint>)]". The one check (and wording) the trainers and
    the export commands use for the files they are given or expect: --init-weights, the
    stage-1 checkpoint, the checkpoint to export or resume."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{what} {path}: file not found" + (f" ({hint})" if hint else ""))
    return path


def require_stage2_start(init, stage1) -> Path:
    """The file a stage-2 run starts from: ``init`` (--init-weights) when given, else the
    run's stage-1 checkpoint ``stage1`` (FormatError when it is missing, see
    :func:`require_file`)."""
    if init:
        return require_file(init, "--init-weights")
    return require_file(stage1, "stage-1 checkpoint", STAGE1_HINT)


def load_checkpoint(path) -> dict:
    """A training checkpoint (read with ``weights_only=True``) as a dict with a ``model``
    state; FormatError when the file is missing (:func:`require_file`), ModelError (one
    line) for exported weights, corrupt files and other pickles."""
    import torch

    path = require_file(path, "checkpoint")
    if path.suffix == ".safetensors":
        raise ModelError(f"{path} holds exported weights, not a training checkpoint "
                         "(OUT/last.pt, OUT/stageN/last.pt or OUT/stageN.pt)")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as e:  # truncated files, other pickles, non-torch files
        why = first_line(e).split(". ")[0].rstrip(".")  # torch adds paragraphs of advice
        raise ModelError(f"cannot read the checkpoint {path} (truncated, or not a training "
                         f"checkpoint): {why}") from e
    if not isinstance(ck, dict) or not isinstance(ck.get("model"), dict) or "step" not in ck:
        raise ModelError(f"{path} is not an hsirestore training checkpoint")
    return ck


def checkpoint_preset(ck: dict) -> str | None:
    """The preset a training checkpoint (as :func:`load_checkpoint` returns it) was made
    for, by the one rule for what a file records (:func:`hsirestore.weights.recorded_model`,
    given the metadata :func:`hsirestore.weights.load_state_dict` would give: mcga keeps the
    preset at the top level, cassi and hsivar in the run config)."""
    from hsirestore.weights import recorded_model

    meta = {"preset": ck.get("preset")}
    if isinstance(ck.get("config"), dict):
        meta["training_config"] = ck["config"]
    return recorded_model(ck.get("model") or {}, meta)[0]


def require_kind(ck: dict, path, task: str) -> str:
    """The checkpoint's preset, after checking it is a ``task`` model's checkpoint
    (ModelError naming the kind it is and the export command for it otherwise)."""
    from hsirestore.registry import get_spec

    preset = checkpoint_preset(ck)
    want, _ = _KINDS[task]
    try:
        found = get_spec(preset).task if preset else None
    except ModelError:
        raise ModelError(f"{path} was made for the unknown model {preset!r}") from None
    if found is None:
        raise ModelError(f"{path} is not {want} training checkpoint")
    if found != task:
        kind, cmd = _KINDS.get(found, (f"a {found}", None))
        raise ModelError(f"{path} is {kind} checkpoint, not {want} one"
                         + (f"; export it with 'hsirestore train {cmd}'" if cmd else ""))
    return preset


def check_preset(path, found: str | None, preset: str, hint: str | None = None) -> None:
    """ModelError when a file (weights to start from, a checkpoint to resume) records
    another preset (``found``; None: it does not say) than the run's ``preset``: the one
    wording of this mistake in all three trainers, "FILE holds P weights, not Q weights
    (HINT)"; the default hint suits weights to start from."""
    if found is not None and found != preset:
        hint = hint or f"pass --preset {found}, or weights of {preset}"
        raise ModelError(f"{path} holds {found} weights, not {preset} weights ({hint})")


def load_weights(model, state: dict, path, preset: str, holds: str | None = None,
                 optional: tuple[str, ...] = ()) -> None:
    """Put ``state`` (weights, or a training checkpoint's model, read from ``path``) into
    ``model``, built for ``preset``: the one way the trainers load weights (--init-weights,
    stage-2 starts, --resume). A one-line ModelError, worded alike for all three, when
    ``holds`` (the preset the file says it holds, where it says so) is another preset
    (:func:`check_preset`), or when ``state`` does not fit the model ("FILE does not fit
    PRESET: ..." from :func:`hsirestore.weights.load_into`: keys missing or unexpected,
    tensors of other shapes). Model keys that start with one of ``optional`` may be missing
    from ``state``: they keep their values."""
    from hsirestore.weights import load_into

    check_preset(path, holds, preset)
    kept = {k: v for k, v in model.state_dict().items() if k not in state and k.startswith(optional)}
    try:
        load_into(model, {**state, **kept}, strict=True, source=str(path), target=preset)
    except (TypeError, AttributeError) as e:  # non-tensor values in the state
        raise ModelError(f"{path} does not fit {preset}: {first_line(e, 300)}") from e


def check_resume_preset(path, ck: dict, preset: str) -> None:
    """ModelError when a checkpoint to resume was made for another preset (the wording of
    :func:`check_preset`)."""
    found = checkpoint_preset(ck)
    check_preset(path, found, preset, f"pass --preset {found} to continue it")


def init_steps(path, meta: dict) -> int:
    """:func:`hsirestore.weights.recorded_steps` of a weights file already read (``meta``:
    its metadata from :func:`~hsirestore.weights.load_state_dict`) without reading it
    again: the steps its metadata records (a training checkpoint's step plus the steps
    behind its initial weights, else ``steps``), unless the manifest beside it lists it
    with another number of steps; only then is the file hashed (by ``recorded_steps``),
    to see whether that entry is for this very file."""
    from hsirestore.weights import read_manifest, recorded_steps

    run = meta.get("training_config")
    if isinstance(run, dict):
        steps = int(meta.get("step") or 0) + int(run.get("init_steps") or 0)
    else:
        try:
            steps = int(meta.get("steps") or 0)
        except (TypeError, ValueError):
            steps = 0
    path = Path(path)
    entry = read_manifest(path.parent).get("files", {}).get(path.name)
    if entry and entry.get("steps") is not None and int(entry["steps"]) != steps:
        return recorded_steps(path)
    return steps


def _norm(v):
    if isinstance(v, (list, tuple)):
        return tuple(_norm(x) for x in v)
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v


def resume_overrides(path, preset: str, run: dict | None, given: dict | None, strict: bool = False,
                     log=None) -> dict:
    """The model overrides to rebuild a run with: the run's (its architecture, whatever this
    invocation's options say). Overrides given now with another value than the run's
    architecture has are a ModelError with ``strict`` (the CLI's explicit options), else
    noted through ``log``; those left out are taken from the run."""
    from hsirestore.registry import get_spec

    run, given = dict(run or {}), dict(given or {})
    have = {**get_spec(preset).config, **run}
    diff = [k for k, v in given.items() if _norm(have.get(k)) != _norm(v)]
    if diff:
        said = ", ".join(f"{k}={have.get(k)!r} (not {given[k]!r})" for k in diff)
        if strict:
            raise ModelError(f"{path} was trained with {said}; resume with the run's model "
                             "options or start a new run in another --out")
        if log is not None:
            log(f"the run's model options are kept: {said}")
    return run


def check_export_target(out_file: Path, force: bool) -> None:
    """OutputExistsError unless ``force`` when the weights file or its manifest entry exists."""
    if force:
        return
    from hsirestore.weights import read_manifest

    out_file = Path(out_file)
    if out_file.exists():
        raise OutputExistsError(f"{out_file} exists; pass --force to overwrite it (and its "
                                "manifest entry)")
    try:
        listed = out_file.name in read_manifest(out_file.parent).get("files", {})
    except Exception:  # an unreadable manifest is reported when it is written
        listed = False
    if listed:
        raise OutputExistsError(f"{out_file.parent / 'manifest.json'} already lists "
                                f"{out_file.name}; pass --force to replace its entry")


class InterruptGuard:
    """Context manager for a training loop: Ctrl-C raises KeyboardInterrupt at once, except
    inside :meth:`commit` blocks, where it is deferred to the end of the block. ``broken``
    tells whether an exception left a commit block half done (then no checkpoint should be
    written from the current state). Only installed in the main thread, and only over a
    callable SIGINT handler (an ignored SIGINT stays ignored)."""

    def __init__(self):
        self._prev = None
        self._committing = False
        self._pending = False
        self.broken = False

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            prev = signal.getsignal(signal.SIGINT)
            if callable(prev):
                self._prev = prev
                signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> bool:
        if self._prev is not None:
            signal.signal(signal.SIGINT, self._prev)
            self._prev = None
        return False

    def _handler(self, signum, frame):
        if self._committing:
            self._pending = True
        else:
            self._prev(signum, frame)

    @contextmanager
    def commit(self):
        self._committing = True
        try:
            yield
        except BaseException:
            self.broken = True
            raise
        finally:
            self._committing = False
        if self._pending:
            self._pending = False
            prev = self._prev
            if prev is None or prev is signal.default_int_handler:
                raise KeyboardInterrupt
            prev(signal.SIGINT, None)  # someone else's handler decides


def save_on_exit(save, progressed: bool, guard: InterruptGuard, exc: BaseException, log,
                 ckpt: Path, step: int) -> None:
    """On an exception out of the training loop: write the checkpoint when this invocation
    ran at least one whole step (never from a half-committed step), and say so."""
    if not progressed or guard.broken:
        return
    try:
        save()
    except Exception as e:  # keep the original error; the last checkpoint stays as it was
        log(f"could not write a checkpoint: {first_line(e)}")
        return
    what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped by an error"
    log(f"{what} at step {step}: checkpoint saved to {ckpt} (continue with --resume)")


class LoopControl:
    """The part of a training loop the three trainers share: Ctrl-C handling (an
    :class:`InterruptGuard`), a checkpoint every ``ckpt_minutes`` minutes (and every
    ``ckpt_every`` steps where given), the time limit ``max_minutes`` (0 or None: none), a
    checkpoint when the loop ends (unless :meth:`after_step` has just written it), and a
    checkpoint of the last whole step when an exception leaves the loop
    (:func:`save_on_exit`)::

        ctl = LoopControl(save, ckpt_path, log, lambda: step, rng_state, cfg.ckpt_minutes,
                          cfg.max_minutes)
        with ctl:                            # leaving it: the final checkpoint
            while step < cfg.steps:
                ...                          # batch, forward, backward
                with ctl.commit():           # Ctrl-C waits until the step is whole
                    opt.step()
                    step += 1
                ...                          # log, validate
                if ctl.after_step(step):     # checkpoint when due; True at the time limit
                    break

    ``step()`` gives the number of whole steps (read at the start and at the end of each
    :meth:`commit`, so the trainer keeps its own counter: ``lambda: step`` sees every
    ``step += 1`` of the enclosing function); ``rng_state()`` a snapshot of everything
    random a resume needs, taken once per step, at the end of each commit. Nothing between
    a commit and the next step's first random draw (logging, validation) may draw from
    those generators: the snapshot also stands for the state at the start of the next step.
    ``save(rngs=None)`` writes the checkpoint with ``rngs`` (such a snapshot) when given,
    else with the current random state. ``t0`` is when the loop started."""

    def __init__(self, save, ckpt: Path, log, step, rng_state, ckpt_minutes: float,
                 max_minutes: float | None = None, ckpt_every: int | None = None):
        self.save, self.ckpt, self.log = save, Path(ckpt), log
        self._step, self._rng_state = step, rng_state
        self.ckpt_minutes, self.max_minutes, self.ckpt_every = ckpt_minutes, max_minutes, ckpt_every
        self.start = self.step = step()
        self.rngs = None  # the snapshot after the last whole step (None before the first)
        self.saved_at = None  # the step after_step last checkpointed
        self.guard = InterruptGuard()
        self.t0 = self.t_ckpt = time.time()

    def __enter__(self):
        self.guard.__enter__()
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        self.guard.__exit__(kind, exc, tb)
        if exc is not None:
            save_on_exit(lambda: self.save(self.rngs), self.step > self.start, self.guard, exc,
                         self.log, self.ckpt, self.step)
        elif self.saved_at is None or self.saved_at != self.step:
            self.save()  # the end of the loop (not again when after_step has just saved)
        return False

    @contextmanager
    def commit(self):
        """A block that commits one step (see :meth:`InterruptGuard.commit`); at its end the
        step count and the random-state snapshot are recorded, before a deferred Ctrl-C
        is raised."""
        with self.guard.commit():
            yield
            self.step, self.rngs = self._step(), self._rng_state()

    def after_step(self, step: int) -> bool:
        """After a whole step: checkpoint when one is due; True (and a log line) when the
        time limit is reached."""
        if ((self.ckpt_every and step % self.ckpt_every == 0)
                or time.time() - self.t_ckpt > self.ckpt_minutes * 60):
            self.save()
            self.saved_at = step
            self.t_ckpt = time.time()
        if self.max_minutes and time.time() - self.t0 > self.max_minutes * 60:
            self.log(f"time limit reached at step {step}")
            return True
        return False
