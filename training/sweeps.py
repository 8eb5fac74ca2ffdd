"""Hyperparameter sweeps: one job spec plus a grid or seeded random search over up to three numeric hyperparameters,
queued as ordinary training jobs (each stays cancellable on its own). The sweep's estimated GPU time must fit the
month's budget as a whole; variants beyond the concurrent-jobs limit are created ``waiting`` and queued, oldest
first, as the owner's running jobs finish (``services.release_waiting``), so a 12-variant sweep runs under a limit
of 2.

A sweep's variants are ranked by their final eval loss (the last evaluation of the run); when a succeeded variant has
no eval loss (no validation rows) every variant is ranked by its final training loss instead, and the summary says
which (``metric_used``). The best variant is the first of the ranking: the current best while some still run, the
final one once all have finished (``Sweep.best_job``, recomputed whenever a variant finishes).

Promoting a variant puts its fine-tuned model into the registry under the sweep's name, as the next version of that
name (so promoting again later keeps the history), tagged ``best of sweep <id>``; ``Sweep.promoted_model`` names it.
Deleting a finished sweep deletes only the sweep record: its jobs and models stay, as ordinary jobs and models."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import random
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from accounts import quotas
from accounts.models import User
from finetune.exceptions import ServiceError
from models_app.catalogue import find_usable_base_model
from models_app.models import FineTunedModel
from training.engine.hyperparams import HyperParams

from . import quotas as job_quotas
from . import services
from .models import MetricPoint, Sweep, TrainingJob

logger = logging.getLogger(__name__)
MAX_PARAMETERS = 3
MAX_VARIANTS = 12
CURVE_POINTS = 200  # training-loss points per variant in the overlay (downsampled evenly)
# The hyperparameters a sweep may vary: the engine's numeric ones (int or float, not bool or text).
SWEEPABLE: dict[str, str] = {
    f.name: str(f.type) for f in dataclasses.fields(HyperParams) if str(f.type) in ("int", "float")
}


# --- creation ---------------------------------------------------------------------------------------------------
def _number(value: Any, where: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ServiceError(f"{where} must be a number, got {value!r}.", field="parameters")
    return value


def _cast(name: str, value: float | int) -> float | int:
    """An int hyperparameter takes whole values only (a random draw is rounded)."""
    return int(round(value)) if SWEEPABLE[name] == "int" else float(value)


def _check_names(parameters: Any) -> dict[str, Any]:
    if not isinstance(parameters, dict) or not parameters:
        raise ServiceError("parameters must name 1 to 3 hyperparameters to sweep.", field="parameters")
    if len(parameters) > MAX_PARAMETERS:
        raise ServiceError(
            f"A sweep varies at most {MAX_PARAMETERS} hyperparameters; got {len(parameters)} "
            f"({', '.join(sorted(parameters))}).",
            field="parameters",
        )
    unknown = sorted(set(parameters) - set(SWEEPABLE))
    if unknown:
        raise ServiceError(
            f"Cannot sweep {', '.join(unknown)}: only numeric hyperparameters can be swept "
            f"({', '.join(sorted(SWEEPABLE))}).",
            field="parameters",
        )
    return parameters


def _value_list(name: str, values: Any) -> list[float | int]:
    if not isinstance(values, list) or not values:
        raise ServiceError(f"parameters.{name} must be a non-empty list of values.", field="parameters")
    out: list[float | int] = []
    for v in values:
        cast = _cast(name, _number(v, f"parameters.{name}"))
        if cast not in out:
            out.append(cast)
    return out


def expand_variants(strategy: str, parameters: Any, max_variants: int | None, seed: int) -> list[dict[str, Any]]:
    """The swept values of each variant: every combination of a grid, or ``max_variants`` seeded random draws (a
    range ``{"min", "max", "log"}`` or a list to choose from, per hyperparameter; duplicate draws are drawn again)."""
    params = _check_names(parameters)
    if max_variants is not None and not 1 <= max_variants <= MAX_VARIANTS:
        raise ServiceError(f"max_variants must be 1 to {MAX_VARIANTS}.", field="max_variants")
    if strategy == Sweep.Strategy.GRID:
        names = sorted(params)
        lists = [_value_list(n, params[n]) for n in names]
        count = math.prod(len(v) for v in lists)
        cap = max_variants or MAX_VARIANTS
        if count > cap:
            raise ServiceError(
                f"This grid has {count} variants ({' x '.join(str(len(v)) for v in lists)}); the limit is {cap}. "
                "Use fewer values, or a random search.",
                field="parameters",
            )
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*lists)]
    if strategy != Sweep.Strategy.RANDOM:
        raise ServiceError("strategy must be 'grid' or 'random'.", field="strategy")
    if not max_variants:
        raise ServiceError(
            "A random search needs max_variants (the number of variants, 1 to 12).", field="max_variants"
        )
    draws: dict[str, Any] = {}
    for name, spec in sorted(params.items()):
        if isinstance(spec, list):
            draws[name] = _value_list(name, spec)
            continue
        if not isinstance(spec, dict) or not {"min", "max"} <= spec.keys():
            raise ServiceError(
                f'parameters.{name} must be a list of values or a range {{"min", "max", "log"}}.',
                field="parameters",
            )
        low, high = _number(spec["min"], f"parameters.{name}.min"), _number(spec["max"], f"parameters.{name}.max")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise ServiceError(f"parameters.{name}.log must be true or false.", field="parameters")
        if low > high:
            raise ServiceError(f"parameters.{name}: min is above max.", field="parameters")
        if log and low <= 0:
            raise ServiceError(f"parameters.{name}: a log-scale range needs min > 0.", field="parameters")
        draws[name] = (float(low), float(high), log)
    rng = random.Random(seed)

    def draw(name: str) -> float | int:
        spec = draws[name]
        if isinstance(spec, list):
            return rng.choice(spec)
        low, high, log = spec
        value = math.exp(rng.uniform(math.log(low), math.log(high))) if log else rng.uniform(low, high)
        return _cast(name, float(f"{value:.4g}"))  # readable values; ints round

    variants: list[dict[str, Any]] = []
    for _ in range(20 * max_variants):
        variant = {name: draw(name) for name in sorted(draws)}
        if variant not in variants:
            variants.append(variant)
        if len(variants) == max_variants:
            break
    return variants


def _label(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))


def create_sweep(
    *,
    owner: User,
    name: str,
    spec: dict[str, Any],
    strategy: str,
    parameters: Any,
    max_variants: int | None = None,
    seed: int = 0,
) -> Sweep:
    """Expand the variants, validate every one of them, check that the whole sweep fits the owner's quotas, then
    create one job per variant through ``services.create_job`` (each enqueued once the transaction commits). All or
    nothing: a refused variant or quota creates no job and no sweep. ``spec`` is a job creation body (the fields
    of ``create_job``: base_model, dataset, dataset_version, method, weights, hyperparameters, backend, modal_gpu,
    compare_prompts, eval_dataset, eval_dataset_version)."""
    variants = expand_variants(strategy, parameters, max_variants, seed)
    method = spec.get("method", "sft")
    base_hyper = dict(spec.get("hyperparameters") or {})
    validated: list[dict[str, Any]] = []
    for i, params in enumerate(variants, start=1):
        try:
            validated.append(services.validate_hyperparameters({**base_hyper, **params}, method))
        except ServiceError as exc:
            raise ServiceError(
                f"Variant {i} ({_label(params)}) is refused: {exc.message} No job was created.", field=exc.field
            ) from None
    base = find_usable_base_model(owner, spec["base_model"], available=True)
    if base is None:
        raise ServiceError("Base model not found or not downloaded yet.", field="base_model")
    ds = services.resolve_dataset(owner, spec["dataset"], spec.get("dataset_version"))
    backend, modal_gpu = spec.get("backend", "local"), spec.get("modal_gpu") or ""
    estimates = [
        job_quotas.estimated_cost(
            TrainingJob(
                owner=owner,
                base_model=base,
                dataset=ds,
                method=method,
                weights=spec.get("weights", "lora"),
                hyperparameters=hyper,
                backend=backend,
                modal_gpu=modal_gpu,
            )
        )
        for hyper in validated
    ]
    name = (name or f"Sweep of {base.name} on {ds.name}").strip()[:200]
    with transaction.atomic():
        quotas.lock_user(owner.pk)
        _check_sweep_quota(owner, backend, estimates)
        free = job_quotas.free_slots(owner.pk)
        sweep = Sweep.objects.create(
            owner=owner,
            name=name,
            spec=spec,
            strategy=strategy,
            parameters=parameters,
            max_variants=max_variants or len(variants),
            seed=seed,
        )
        for i, params in enumerate(variants, start=1):
            job = services.create_job(
                owner=owner,
                name=f"{name} #{i} ({_label(params)})"[:200],
                base_model_id=spec["base_model"],
                dataset_id=spec["dataset"],
                dataset_version=spec.get("dataset_version"),
                method=method,
                weights=spec.get("weights", "lora"),
                hyperparameters={**base_hyper, **params},
                backend=backend,
                modal_gpu=modal_gpu,
                compare_prompts=spec.get("compare_prompts") or 0,
                eval_dataset_id=spec.get("eval_dataset"),
                eval_dataset_version=spec.get("eval_dataset_version"),
                hold=i > free,
            )
            TrainingJob.objects.filter(pk=job.pk).update(sweep=sweep, sweep_params=params)
    logger.info(
        "sweep %s created by user %s: %s variants (%s waiting for a slot)",
        sweep.pk,
        owner.pk,
        len(variants),
        max(len(variants) - free, 0),
    )
    return sweep


def _check_sweep_quota(owner: User, backend: str, estimates: list[tuple[float, float]]) -> None:
    """The whole sweep must fit: the variants' estimated GPU time (and Modal spend) within what is left this month
    (the concurrent-jobs limit only paces it). Call it holding ``quotas.lock_user``."""
    limits = quotas.limits_of(owner.pk)
    now = timezone.now()
    totals = job_quotas.monthly_totals(owner.pk, now, reserve=True)
    quotas.check_budget(
        limits,
        backend,
        used_seconds=totals.seconds.get(backend, 0.0),
        used_usd=totals.cost_usd,
        need_s=sum(s for s, _ in estimates),
        need_usd=sum(u for _, u in estimates),
        now=now,
    )


# --- queries ----------------------------------------------------------------------------------------------------
def owned_sweeps(owner: User) -> QuerySet[Sweep]:
    """The user's sweeps, newest first, with their job counts (``variant_count``, ``active_count``)."""
    return (
        Sweep.objects.filter(owner=owner)
        .annotate(
            variant_count=Count("jobs"),
            active_count=Count("jobs", filter=Q(jobs__status__in=TrainingJob.UNFINISHED)),
        )
        .order_by("-created", "-id")
    )


def _final_losses(job_ids: list[int]) -> tuple[dict[int, float], dict[int, float]]:
    """(last eval loss, last training loss) per job."""
    evals: dict[int, float] = {}
    trains: dict[int, float] = {}
    rows = (
        MetricPoint.objects.filter(job_id__in=job_ids)
        .filter(Q(kind="eval", eval_loss__isnull=False) | Q(kind="metric", loss__isnull=False))
        .order_by("job_id", "seq")
        .values_list("job_id", "kind", "loss", "eval_loss")
    )
    for job_id, kind, loss, eval_loss in rows.iterator():
        if kind == "eval":
            evals[job_id] = eval_loss
        else:
            trains[job_id] = loss
    return evals, trains


def _ranking(jobs: list[TrainingJob]) -> tuple[str, dict[int, float], dict[int, float], list[int]]:
    """(metric used, eval losses, final train losses, succeeded job ids best first)."""
    evals, trains = _final_losses([j.pk for j in jobs])
    done = [j.pk for j in jobs if j.status == TrainingJob.Status.SUCCEEDED]
    metric = "eval_loss" if all(pk in evals for pk in done) else "train_loss"
    scores = evals if metric == "eval_loss" else trains
    ranked = sorted((pk for pk in done if pk in scores), key=lambda pk: (scores[pk], pk))
    return metric, evals, trains, ranked


def refresh(sweep: Sweep) -> Sweep:
    """Recompute the best variant (the current best while some run) and whether the sweep has finished."""
    with transaction.atomic():
        sweep = Sweep.objects.select_for_update().get(pk=sweep.pk)
        jobs = list(sweep.jobs.only("status", "finished"))
        _, _, _, ranked = _ranking(jobs)
        best = ranked[0] if ranked else None
        finished = (
            max((j.finished for j in jobs if j.finished), default=timezone.now())
            if jobs and all(j.status in TrainingJob.FINISHED for j in jobs)
            else None
        )
        if (best, finished) != (sweep.best_job_id, sweep.finished):
            sweep.best_job_id, sweep.finished = best, finished
            sweep.save(update_fields=["best_job", "finished"])
    return sweep


def on_job_finished(sender: Any, job: TrainingJob, **kwargs: Any) -> None:
    """``services.job_finished`` receiver: re-rank the job's sweep once the job's final status is committed."""
    sweep_id = job.sweep_id
    if sweep_id is None:
        return

    def run() -> None:
        sweep = Sweep.objects.filter(pk=sweep_id).first()
        if sweep is not None:
            refresh(sweep)

    transaction.on_commit(run, robust=True)


def _downsample(points: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    if len(points) <= limit:
        return points
    stride = (len(points) - 1) / (limit - 1)
    return [points[round(i * stride)] for i in range(limit)]


def sweep_summary(sweep: Sweep) -> dict[str, Any]:
    """The sweep page: the sweep, its variants (swept values, status, progress, eval loss, final train loss, rank,
    best) and each variant's loss curve (downsampled ``[{step, loss}]``) and eval points (``[{step, eval_loss}]``)."""
    sweep = refresh(sweep)
    jobs = list(
        sweep.jobs.order_by("id").only(
            "name", "status", "sweep_params", "progress", "current_step", "total_steps", "error", "sweep_id"
        )
    )
    metric, evals, trains, ranked = _ranking(jobs)
    models = dict(FineTunedModel.objects.filter(job__in=jobs).values_list("job_id", "id"))
    curves: dict[int, list[dict[str, Any]]] = {j.pk: [] for j in jobs}
    eval_points: dict[int, list[dict[str, Any]]] = {j.pk: [] for j in jobs}
    rows = (
        MetricPoint.objects.filter(job__sweep=sweep)
        .order_by("job_id", "seq")
        .values_list("job_id", "kind", "step", "loss", "eval_loss")
    )
    for job_id, kind, step, loss, eval_loss in rows.iterator():
        if kind == "metric" and loss is not None:
            curves[job_id].append({"step": step, "loss": loss})
        elif kind == "eval" and eval_loss is not None:
            eval_points[job_id].append({"step": step, "eval_loss": eval_loss})
    rank = {pk: i for i, pk in enumerate(ranked, start=1)}
    active = sum(1 for j in jobs if j.status in TrainingJob.UNFINISHED)
    variants = [
        {
            "job": j.pk,
            "name": j.name,
            "status": j.status,
            "params": j.sweep_params or {},
            "progress": j.progress,
            "current_step": j.current_step,
            "total_steps": j.total_steps,
            "error": j.error,
            "eval_loss": evals.get(j.pk),
            "final_loss": trains.get(j.pk),
            "rank": rank.get(j.pk),
            "best": j.pk == sweep.best_job_id,
            "model": models.get(j.pk),
            "curve": _downsample(curves[j.pk], CURVE_POINTS),
            "eval_points": eval_points[j.pk],
        }
        for j in jobs
    ]
    return {
        **sweep_fields(sweep, variant_count=len(jobs), active_count=active),
        "metric_used": metric,
        "variants": variants,
    }


def sweep_fields(sweep: Sweep, *, variant_count: int, active_count: int) -> dict[str, Any]:
    """A sweep's own fields as the API shows them (list rows and the detail)."""
    return {
        "id": sweep.pk,
        "name": sweep.name,
        "status": "running" if active_count else "finished",
        "strategy": sweep.strategy,
        "parameters": sweep.parameters,
        "max_variants": sweep.max_variants,
        "seed": sweep.seed,
        "metric": sweep.metric,
        "spec": sweep.spec,
        "variant_count": variant_count,
        "active_count": active_count,
        "best_job": sweep.best_job_id,
        "promoted_model": sweep.promoted_model_id,
        "created": sweep.created,
        "finished": sweep.finished,
    }


# --- actions ----------------------------------------------------------------------------------------------------
def cancel_sweep(sweep: Sweep) -> Sweep:
    """Cancel every unfinished variant (waiting and queued ones stop at once, running ones within a step)."""
    # One transaction: the slots the cancellations free are handed out (``release_waiting``) only after every
    # variant of this sweep is cancelled, so none of its waiting variants is queued on the way.
    with transaction.atomic():
        for job in sweep.jobs.filter(status__in=TrainingJob.UNFINISHED, cancel_requested=False):
            try:
                services.request_cancel(job)
            except ServiceError:  # it finished meanwhile
                continue
    logger.info("sweep %s: cancel requested", sweep.pk)
    return refresh(sweep)


def promote(sweep: Sweep, job_id: int | None = None) -> FineTunedModel:
    """Put a variant's model (default: the best variant's) into the registry under the sweep's name, as that name's
    next version, tagged ``best of sweep <id>``; the sweep records it as its promoted model."""
    sweep = refresh(sweep)
    chosen = job_id if job_id is not None else sweep.best_job_id
    if chosen is None:
        raise ServiceError("No variant has succeeded yet: there is nothing to promote.", status_code=409)
    job = sweep.jobs.filter(pk=chosen).first()
    if job is None:
        raise ServiceError(f"Job {chosen} is not a variant of this sweep.", field="job")
    tag = f"best of sweep {sweep.pk}"
    with transaction.atomic():
        model = FineTunedModel.objects.select_for_update().filter(job=job).first()
        if job.status != TrainingJob.Status.SUCCEEDED or model is None:
            raise ServiceError(
                f"Variant {job.pk} is {job.status} and has no model to promote; only a succeeded one can be.",
                status_code=409,
            )
        if model.name != sweep.name:
            last = FineTunedModel.objects.filter(owner_id=model.owner_id, name=sweep.name).order_by("-version").first()
            model.name, model.version = sweep.name, (last.version + 1) if last else 1
        model.tag = tag
        model.save(update_fields=["name", "version", "tag"])
        FineTunedModel.objects.filter(owner_id=model.owner_id, tag=tag).exclude(pk=model.pk).update(tag="")
        Sweep.objects.filter(pk=sweep.pk).update(promoted_model=model)
    logger.info(
        "sweep %s: model %s (job %s) promoted as %s v%s", sweep.pk, model.pk, job.pk, model.name, model.version
    )
    return model


def delete_sweep(sweep: Sweep) -> None:
    """Delete a finished sweep's record; its jobs and models stay (as ordinary jobs and models)."""
    if sweep.jobs.filter(status__in=TrainingJob.UNFINISHED).exists():
        raise ServiceError("The sweep still has active jobs: cancel it before deleting it.", status_code=409)
    sweep.delete()
