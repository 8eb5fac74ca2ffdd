"""One factory per model, and the tiny training settings every training test uses."""

from __future__ import annotations

import json

import factory
from django.core.files.base import ContentFile
from django.db.models import Max
from django.utils import timezone

from accounts.models import User
from datasets_app.models import Dataset, DatasetFile
from models_app.models import BaseModel, FineTunedModel
from tests.datasets_dir import DATASETS
from training.models import TrainingJob
from training.services import validate_hyperparameters

PASSWORD = "correct-horse-battery-9"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):  # type: ignore[no-untyped-def]
        if create:
            obj.save()


# --- data, models and jobs ------------------------------------------------------------------------------------------
# A few real steps on CPU: short sequences, LoRA r=8, a checkpoint every 2 steps and an evaluation at step 3.
TINY_HYPER = {
    "max_steps": 6,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "max_length": 128,
    "learning_rate": 1e-3,
    "logging_steps": 1,
    "save_steps": 2,
    "eval_steps": 3,
    "lora_r": 8,
    "lora_alpha": 16,
    "warmup_ratio": 0.0,
    "seed": 7,
}


def alpaca_rows(n: int = 4) -> list[dict]:
    """The ``n`` shortest of the first 60 rows of the public Alpaca demo: a few steps cycle over the same examples,
    so the loss clearly falls."""
    first = json.loads((DATASETS / "alpaca_en_demo.json").read_text())[:60]
    return sorted(first, key=lambda r: len(r["instruction"]) + len(r["input"]) + len(r["output"]))[:n]


class BaseModelFactory(factory.django.DjangoModelFactory):
    """The embedded base model (SmolLM2-135M-Instruct), the one every test trains."""

    class Meta:
        model = BaseModel

    @classmethod
    def _create(cls, model_class, *args, **kwargs):  # type: ignore[no-untyped-def]
        return model_class.objects.ensure_embedded()


class DatasetFactory(factory.django.DjangoModelFactory):
    """A ready dataset whose source file (``rows``: a list of records, default four real Alpaca rows) is stored like
    an upload's; ``rows=False`` makes a row without files (for listings and model pages)."""

    class Meta:
        model = Dataset
        skip_postgeneration_save = True

    owner = factory.SubFactory(UserFactory)
    name = "tiny alpaca"
    status = Dataset.Status.READY
    format = "alpaca"
    verdict = "ok"
    row_count = 4
    report = factory.LazyAttribute(lambda o: {"rows": o.row_count, "rows_valid": o.row_count, "tokens": {"mean": 120}})

    @factory.post_generation
    def rows(obj, create, extracted, **kwargs):  # type: ignore[no-untyped-def]
        if not create or extracted is False:
            return
        data = alpaca_rows() if extracted is None else extracted
        body = "".join(json.dumps(r) + "\n" for r in data).encode()
        df = DatasetFile(
            dataset=obj,
            role="source",
            kind="jsonl",
            original_filename=f"{obj.name.replace(' ', '_')}.jsonl",
            size_bytes=len(body),
            sha256="0" * 64,
        )
        df.file.save("upload", ContentFile(body), save=False)
        df.save()


class TrainingJobFactory(factory.django.DjangoModelFactory):
    """A job row in a given state. ``running_since`` opens an attempt (a job holding a worker or a Modal GPU since
    then); a finished status gets ``finished`` now unless given; ``created`` back-dates the row."""

    class Meta:
        model = TrainingJob
        skip_postgeneration_save = True

    class Params:
        running_since = None
        attempt_worker = "w"

    owner = factory.SubFactory(UserFactory)
    name = "job"
    base_model = factory.SubFactory(BaseModelFactory)
    dataset = factory.LazyAttribute(lambda o: dataset_for(o.owner))
    method = "sft"
    weights = "lora"
    hyperparameters = factory.LazyFunction(lambda: validate_hyperparameters(dict(TINY_HYPER)))
    backend = "local"
    modal_gpu = factory.LazyAttribute(lambda o: "A10G" if o.backend == "modal" else "")
    status = "queued"
    started = factory.LazyAttribute(lambda o: o.running_since)
    attempt_history = factory.LazyAttribute(
        lambda o: (
            []
            if o.running_since is None
            else [{"attempt": 1, "worker": o.attempt_worker, "started": o.running_since.isoformat()}]
        )
    )
    finished = factory.LazyAttribute(lambda o: timezone.now() if o.status in TrainingJob.FINISHED else None)

    @factory.post_generation
    def created(obj, create, extracted, **kwargs):  # type: ignore[no-untyped-def]
        if create and extracted is not None:
            TrainingJob.objects.filter(pk=obj.pk).update(created=extracted)
            obj.refresh_from_db()


def make_ready_dataset(
    owner: User, *, rows: list[dict] | None = None, fmt: str = "alpaca", name: str = "tiny alpaca"
) -> Dataset:
    """A ready dataset whose source file (``rows``, default four real Alpaca rows) is stored like an upload's."""
    data = alpaca_rows() if rows is None else rows
    return DatasetFactory(owner=owner, rows=data, row_count=len(data), format=fmt, name=name)


def dataset_for(owner: User) -> Dataset:
    """The owner's ready dataset (one per owner, made on first use)."""
    return Dataset.objects.filter(owner=owner, status=Dataset.Status.READY).first() or DatasetFactory(owner=owner)


class FineTunedModelFactory(factory.django.DjangoModelFactory):
    """A registry row without stored files (for listings, versions and model pages); a model with real weights comes
    from the ``make_finetuned`` fixture (tests/plugins/models.py)."""

    class Meta:
        model = FineTunedModel

    owner = factory.SubFactory(UserFactory)
    name = "tiny-alpaca"
    version = factory.LazyAttribute(
        lambda o: 1 + (FineTunedModel.objects.filter(owner=o.owner, name=o.name).aggregate(v=Max("version"))["v"] or 0)
    )
    base_model = factory.SubFactory(BaseModelFactory)
    job = None
    method = "sft"
    weights = "lora"
