"""Helpers the three trainers share: option checks, run-folder and resume checks, reading
training checkpoints and loading weights with one-line errors, export-target checks, and the
loop control (checkpoint cadence, time limit, Ctrl-C handling).

Ctrl-C (SIGINT) during training: :class:`InterruptGuard` defers the interrupt while a step
commits its update (optimiser step, scheduler, step counter, dead-code restarts), so a
checkpoint written on the way out always holds the state after a whole number of steps. A
trainer takes a snapshot of its random-number state right after each commit (and at the
start of each step); the interrupt checkpoint stores that snapshot, so ``--resume``
continues exactly as if the run had not been interrupted.
"""
from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from hsirestore.errors import ModelError, OptionError, OutputExistsError, first_line

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
    them ``cfg`` has): counts >= 1, durations/noise/intervals >= 0, a finite lr >= 0."""
    for name in ("steps", "batch_size", "patch", "log_every", "ckpt_every"):
        v = getattr(cfg, name, None)
        if v is not None and not v >= 1:
            raise OptionError(f"{_opt(name)} must be >= 1; got {v}")
    for name in ("max_minutes", "ckpt_minutes", "val_every", "warmup", "threads"):
        v = getattr(cfg, name, None)
        if v is not None and not v >= 0:  # also NaN
            raise OptionError(f"{_opt(name)} must be >= 0; got {v}")
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



def load_checkpoint(path) -> dict:
    """A training checkpoint (read with ``weights_only=True``) as a dict with a ``model``
    state; ModelError (one line) for exported weights, corrupt files and other pickles."""
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        raise ModelError(f"{path} holds exported weights, not a training checkpoint "
                         "(OUT/last.pt, OUT/stageN/last.pt or OUT/stageN.pt)")
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found")
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
    """The preset a training checkpoint was made for (cassi and hsivar keep it in the
    config, mcga at the top level)."""
    cfg = ck.get("config") if isinstance(ck.get("config"), dict) else {}
    preset = ck.get("preset") or cfg.get("preset")
    return preset if isinstance(preset, str) else None


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


def weights_preset(meta: dict) -> str | None:
    """The preset a weights file says it holds (the metadata of
    :func:`hsirestore.weights.load_state_dict`: ``model`` for exported weights, the preset
    of a training checkpoint), or None where it does not say."""
    run = meta.get("training_config") if isinstance(meta.get("training_config"), dict) else {}
    found = meta.get("model") or meta.get("preset") or run.get("preset")
    return found if isinstance(found, str) else None


def load_weights(model, state: dict, path, preset: str, holds: str | None = None,
                 optional: tuple[str, ...] = ()) -> None:
    """Put ``state`` (weights, or a training checkpoint's model, read from ``path``) into
    ``model``, built for ``preset``: the one way the trainers load weights (--init-weights,
    stage-2 starts, --resume). A one-line ModelError, worded alike for all three, when
    ``holds`` (the preset the file says it holds, where it says so) is another preset, or
    when ``state`` does not fit the model (keys missing or unexpected, tensors of other
    shapes). Model keys that start with one of ``optional`` may be missing from ``state``:
    they keep their values."""
    from hsirestore.weights import load_into

    if holds is not None and holds != preset:
        raise ModelError(f"{path} holds {holds} weights, not {preset} weights (pass --preset "
                         f"{holds}, or weights of {preset})")
    kept = {k: v for k, v in model.state_dict().items() if k not in state and k.startswith(optional)}
    try:
        load_into(model, {**state, **kept}, strict=True)
    except (ModelError, TypeError, AttributeError) as e:  # the last two: non-tensor values
        why = first_line(e, 300)
        _, found, rest = why.partition("does not fit the model: ")
        raise ModelError(f"{path} does not fit {preset}: {rest if found else why}") from e


def check_resume_preset(path, ck: dict, preset: str) -> None:
    """ModelError when a checkpoint to resume was made for another preset (mcga's wording)."""
    found = checkpoint_preset(ck)
    if found != preset:
        raise ModelError(f"{path} is for preset {found!r}, not {preset!r} (pass --preset "
                         f"{found} to continue it)")


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
    ``ckpt_every`` steps where given), the time limit ``max_minutes`` (0 or None: none), and
    a checkpoint of the last whole step when an exception leaves the loop
    (:func:`save_on_exit`)::

        ctl = LoopControl(save, ckpt_path, log, step, cfg.ckpt_minutes, cfg.max_minutes)
        with ctl:
            while step < cfg.steps:
                ctl.rngs = rng_state()       # what an interrupt checkpoint stores
                ...                          # forward, backward
                with ctl.commit():           # Ctrl-C waits until the step is whole
                    opt.step()
                    step += 1
                    ctl.step, ctl.rngs = step, rng_state()
                ...                          # log, validate
                if ctl.after_step(step):     # checkpoint when due; True at the time limit
                    break
        save()

    ``save(rngs=None)`` writes the checkpoint with ``rngs`` (a random-state snapshot) when
    given, else with the current random state. ``t0`` is when the loop started."""

    def __init__(self, save, ckpt: Path, log, step: int, ckpt_minutes: float,
                 max_minutes: float | None = None, ckpt_every: int | None = None):
        self.save, self.ckpt, self.log = save, Path(ckpt), log
        self.ckpt_minutes, self.max_minutes, self.ckpt_every = ckpt_minutes, max_minutes, ckpt_every
        self.start = self.step = step
        self.rngs = None
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
        return False

    def commit(self):
        """See :meth:`InterruptGuard.commit`."""
        return self.guard.commit()

    def after_step(self, step: int) -> bool:
        """After a whole step: checkpoint when one is due; True (and a log line) when the
        time limit is reached."""
        if ((self.ckpt_every and step % self.ckpt_every == 0)
                or time.time() - self.t_ckpt > self.ckpt_minutes * 60):
            self.save()
            self.t_ckpt = time.time()
        if self.max_minutes and time.time() - self.t0 > self.max_minutes * 60:
            self.log(f"time limit reached at step {step}")
            return True
        return False
