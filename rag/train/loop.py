"""The training loop every trainer of rag.train uses (reader, generator, retriever, reranker and
joint training): AdamW over parameter groups, linear warmup then linear decay (or a constant rate),
bf16 autocast where the hardware runs it fast, progress with examples/s and ETA, a time limit, an
after-step hook (joint training's index refresh), and resumable checkpoints swapped in whole; and
the length-grouped batches it steps through. `TrainSettings` holds the settings all of them share.

A checkpoint folder OUT holds OUT/<weights>/ (the trained model, fp16: what ships), training_state.pt
(model, optimizer, schedule, position) and run.json (the run's kind, settings and progress). A resume
with other settings is refused; a folder that is not such a checkpoint is never written to.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from rag.console import log
from rag.files import ArtifactKind, check_replaceable, fresh_scratch, publish_folder, read_versioned_json, recover_folder
from rag.types import RagError

STATE_FILE, RUN_FILE = "training_state.pt", "run.json"
RESUME_FREE = ("out", "save_every", "device", "max_minutes", "fresh")  # settings a resume may change
SCHEDULES = ("linear", "constant")


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """What every trainer's config holds, with the same names (and `rag train ...` flags) everywhere.

    A trainer's config extends it with its own data and model fields and may give other defaults.
    """

    out: str  # checkpoint folder; rerunning with the same settings resumes it
    batch_size: int = 32  # examples (or questions) per optimizer step
    lr: float = 1e-4  # peak learning rate: linear warmup, then linear decay (schedule "linear") or constant
    warmup: float = 0.1  # fraction of steps with a linearly rising learning rate
    schedule: str = "linear"  # after warmup: "linear" decay to 0 at the last step, or "constant"
    weight_decay: float = 0.01  # AdamW's (decoupled) weight decay
    epochs: float = 1.0  # fractions allowed: 0.5 trains on half the shuffled batches
    max_steps: int = 0  # >0: stop after this many optimizer steps (for smoke runs)
    max_minutes: float = 0  # >0: save and stop after this long (a rerun continues)
    limit: int = 0  # >0: the first N questions only (of each file, where several are read)
    seed: int = 0
    save_every: int = 500  # optimizer steps between checkpoints (and one at the end)
    precision: str = "auto"  # auto | bf16 | fp32: autocast dtype for the forward pass
    device: str | None = None
    fresh: bool = False  # start from step 0 although `out` holds this run's checkpoint (replaced at the first save)


def run_kind(trained: str) -> ArtifactKind:
    """What a checkpoint folder of `rag train TRAINED` is: its run.json names the format "rag-TRAINED-training v1"."""
    return ArtifactKind(f"a {trained}-training checkpoint", RUN_FILE, f"rag-{trained}-training v1")


def check_out(config: TrainSettings, kind: ArtifactKind) -> None:
    """Refuse `config.out` at once (before minutes of preparation) when it is a folder this run may not write."""
    check_replaceable(Path(config.out).resolve(), kind, "Choose another --out.")


def will_resume(config: TrainSettings, kind: ArtifactKind) -> bool:
    """check_out, and whether `fit` will resume a checkpoint in `config.out` (a kill between the two
    renames of a folder swap is recovered first), for a trainer that prepares differently then."""
    out = Path(config.out).resolve()
    recover_folder(out, kind)
    check_out(config, kind)
    return not config.fresh and (out / RUN_FILE).exists()


class Trainee(Protocol):
    """What the loop trains: a torch module, its per-batch loss, and how its weights are saved."""

    model: object  # torch.nn.Module
    device: str

    def loss(self, batch: list[int]): ...  # the mean loss of these examples, a scalar tensor (None: no signal, no update)

    def save(self, folder: Path) -> None: ...  # the fp16 weights folder that ships


@dataclass(frozen=True)
class FitReport:
    steps: int
    mean_loss: float  # over the last 200 steps
    seconds: float


def fit(trainee: Trainee, batches: list[list[int]], config: TrainSettings, kind: ArtifactKind, weights: str, progress: bool = True,
        groups: list[dict] | None = None, after_step: Callable[[int], None] | None = None) -> FitReport:
    """Train `trainee` on `batches` (lists of example indices) with `config`'s batch_size, lr, schedule,
    max_steps, save_every, precision and out; resumes `config.out` when it holds this run's checkpoint.

    groups: AdamW parameter groups (`{"params": [...], "lr": ...}`; default: every trainable parameter
    of trainee.model at config.lr); the schedule scales each group's rate. after_step(step) runs after
    each optimizer step, before a checkpoint is saved. The checkpoint holds trainee.save(OUT/weights)
    ("" : the checkpoint folder itself) and trainee.model's state, which a resume loads back."""
    import torch

    from rag.precision import autocast, autocast_dtype

    if config.schedule not in SCHEDULES:
        raise RagError(f"schedule must be one of {', '.join(SCHEDULES)}, not {config.schedule!r}")
    out = Path(config.out).resolve()  # "." has no name to put ".partial" after
    recover_folder(out, kind)
    saved = _resumable(out, config, kind)
    total = min(len(batches), config.max_steps) if config.max_steps else len(batches)
    model = trainee.model
    groups = groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
    optimizer = adamw(groups, lr=config.lr, weight_decay=config.weight_decay)
    warmup = max(1, int(config.warmup * total))
    decay = (lambda s: max(0.0, (total - s) / max(1, total - warmup))) if config.schedule == "linear" else (lambda s: 1.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, decay(s)))
    step, losses, elapsed = 0, [], 0.0
    if saved:
        state = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step, losses, elapsed = state["step"], state["losses"], state["seconds"]
        log(f"resuming {out} at step {step} of {total}", progress)
    dtype = autocast_dtype(config.precision, trainee.device)
    log(f"{total:,} steps of {config.batch_size}; autocast {dtype or 'off (fp32)'}", progress)
    model.train()
    started = time.monotonic() - elapsed
    save = lambda: _save(out, config, kind, weights, trainee, optimizer, schedule, step, total, losses, time.monotonic() - started)  # noqa: E731
    parameters = [p for group in groups for p in group["params"]]
    while step < total:
        with autocast(trainee.device, dtype):
            loss = trainee.loss(batches[step])
        if loss is not None:
            optimizer_step(optimizer, loss, parameters)
            losses.append(float(loss.detach()))
        schedule.step()
        step += 1
        if after_step is not None:
            after_step(step)
        _progress(step, total, losses, config.batch_size, time.monotonic() - started, progress)
        out_of_time = bool(config.max_minutes) and time.monotonic() - started > 60 * config.max_minutes
        if step % config.save_every == 0 or step == total or out_of_time:
            save()
            log(f"saved {out} at step {step}", progress)
        if out_of_time:
            log(f"stopped at step {step} of {total}: --max-minutes {config.max_minutes} spent (rerun to continue)", progress)
            break
    return FitReport(step, float(np.mean(losses[-200:])) if losses else float("nan"), time.monotonic() - started)


def adamw(groups: list[dict], lr: float = 1e-3, weight_decay: float = 0.0):
    """The optimizer of every trainer: AdamW over parameter groups (`{"params": [...]}`, each may set its own "lr")."""
    import torch

    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def optimizer_step(optimizer, loss, parameters) -> None:
    """One update: the loss's gradient (in fp32), its norm clipped at 1, the optimizer's step."""
    import torch

    optimizer.zero_grad()
    loss.float().backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()


def epoch_batches(lengths: list[int], batch_size: int, epochs: float, seed: int) -> list[list[int]]:
    """Length-grouped batches for `epochs` passes: whole epochs, then the first part of one more."""
    rng = random.Random(seed)
    full, part = divmod(epochs, 1.0)
    batches = []
    for _ in range(int(full)):
        batches += length_grouped_batches(lengths, batch_size, rng)
    extra = length_grouped_batches(lengths, batch_size, rng)
    return batches + extra[: int(len(extra) * part)] or extra[:1]


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of examples of similar length (little padding), in random order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for i in range(0, len(order), pool):
        group = sorted(order[i : i + pool], key=lambda j: lengths[j])
        batches += [group[b : b + batch_size] for b in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def _progress(step: int, total: int, losses: list[float], batch_size: int, spent: float, enabled: bool) -> None:
    if enabled and (step % 20 == 0 or step == total):
        rate = step * batch_size / spent
        eta = (total - step) * batch_size / rate
        log(f"step {step}/{total}  loss {np.mean(losses[-200:]) if losses else float('nan'):.3f}  {rate:.1f} examples/s  elapsed {spent / 60:.1f} min  ETA {eta / 60:.1f} min", True)


def _resumable(out: Path, config, kind: ArtifactKind) -> dict | None:
    """The run record of a checkpoint to resume, refused when it was trained with other settings."""
    check_replaceable(out, kind, "Choose another --out.")
    if config.fresh or not (out / RUN_FILE).exists():
        return None
    run = read_versioned_json(out / RUN_FILE, kind.format)
    defaults = {f.name: f.default for f in fields(config)}  # a setting added since the checkpoint was written had its default then
    free = RESUME_FREE + (("epochs", "max_steps") if config.schedule == "constant" else ())  # a constant rate: more steps continue the run
    then = {k: run["config"].get(k, defaults[k]) for k in defaults}
    changed = [k for k, v in asdict(config).items() if k not in free and then[k] != (list(v) if isinstance(v, tuple) else v)]  # JSON: tuples are lists
    if changed:
        listed = ", ".join(f"{k}: {then[k]!r} then, {getattr(config, k)!r} now" for k in changed)
        raise RagError(f"{out} was trained with other settings ({listed}): use the same ones to resume, --fresh to start over "
                       "(the checkpoint is replaced at the first save), or another --out")
    return run


def _save(out: Path, config, kind: ArtifactKind, weights: str, trainee: Trainee, optimizer, schedule, step: int, total: int, losses: list[float], seconds: float) -> None:
    """A complete checkpoint written beside `out`, then swapped in: a kill never loses the last one."""
    import torch

    partial = fresh_scratch(out.with_name(out.name + ".partial"), kind)
    trainee.save(partial / weights)
    torch.save({"model": trainee.model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "step": step, "losses": losses, "seconds": seconds}, partial / STATE_FILE)
    (partial / RUN_FILE).write_text(json.dumps({"format": kind.format, "config": asdict(config), "step": step, "total_steps": total,
                                                "seconds": round(seconds, 1), "loss_last_200": float(np.mean(losses[-200:])) if losses else None}, indent=2))
    publish_folder(partial, out, kind)
