"""Base-model catalogue and the fine-tuned models that succeeded jobs produce."""

from __future__ import annotations

from django.conf import settings
from django.db import models

EMBEDDED_DEFAULTS = {
    "name": "SmolLM2-135M-Instruct (embedded)",
    "source": "embedded",
    "architecture": "LlamaForCausalLM",
    "parameters": 134_515_008,
    "context_length": 8192,
    "license": "apache-2.0",
    "has_chat_template": True,
    "size_bytes": 538_090_408,
    "description": "Bundled with finetune: works offline, answers chat prompts, trains on a CPU.",
}
EMBEDDED_REPO_ID = "embedded/SmolLM2-135M-Instruct"
EMBEDDED_PUBLIC_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the embedded default is on the Hub


class BaseModelManager(models.Manager["BaseModel"]):
    def ensure_embedded(self) -> BaseModel:
        """The embedded default's catalogue row (created if missing, e.g. after a database flush)."""
        obj, _ = self.get_or_create(repo_id=EMBEDDED_REPO_ID, defaults=EMBEDDED_DEFAULTS)
        return obj


class BaseModel(models.Model):
    """A model users can fine-tune: the embedded default, or one downloaded from the Hub into the shared cache."""

    objects = BaseModelManager()

    class Source(models.TextChoices):
        EMBEDDED = "embedded"
        HUB = "hub"
        LOCAL = "local"

    class Status(models.TextChoices):
        AVAILABLE = "available"
        DOWNLOADING = "downloading"
        FAILED = "failed"

    name = models.CharField(max_length=200)
    source = models.CharField(max_length=16, choices=Source.choices)
    repo_id = models.CharField(max_length=300, unique=True)  # engine id: "embedded/..." or a Hub id
    revision = models.CharField(max_length=64, blank=True, default="")  # the Hub commit the snapshot was taken at
    # The snapshot in the artifact store (Hub and uploaded models; the embedded one comes from its package).
    artifact_key = models.CharField(max_length=300, blank=True, default="")
    artifact_sha256 = models.CharField(max_length=64, blank=True, default="")
    artifact_size = models.BigIntegerField(default=0)
    architecture = models.CharField(max_length=100, blank=True, default="")
    parameters = models.BigIntegerField(default=0)
    context_length = models.PositiveIntegerField(default=0)
    license = models.CharField(max_length=100, blank=True, default="")
    has_chat_template = models.BooleanField(default=False)
    size_bytes = models.BigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.AVAILABLE)
    description = models.TextField(blank=True, default="")
    # What the Hub said when the row was made: a private or gated repo is only listed for, and used by, users whose
    # own token can read it (models_app/catalogue.py). private None: not recorded (older rows), checked at use.
    gated = models.BooleanField(default=False)
    private = models.BooleanField(null=True, default=None)
    download_progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True, default="")
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    @property
    def restricted(self) -> bool:
        """A Hub model that not everyone may read (private, gated, or not known to be neither)."""
        return self.source == self.Source.HUB and (self.private is not False or self.gated)

    @property
    def provenance_note(self) -> str | None:
        """What a model card must add about these weights when they are not the Hub repository's own (the embedded
        model is dequantized from a GGUF); None for a model downloaded from the Hub as it is."""
        from training.engine.embedded import EMBEDDED_PROVENANCE

        return EMBEDDED_PROVENANCE if self.source == self.Source.EMBEDDED else None

    @property
    def public_id(self) -> str:
        """The id on the Hub that model cards and adapter configs name (never a path on this server)."""
        return EMBEDDED_PUBLIC_ID if self.source == self.Source.EMBEDDED else self.repo_id


class FineTunedModel(models.Model):
    """A model produced by a succeeded training job; named models have auto-incremented versions."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="models")
    name = models.CharField(max_length=200)
    version = models.PositiveIntegerField(default=1)
    base_model = models.ForeignKey(BaseModel, on_delete=models.PROTECT, related_name="finetunes")
    job = models.OneToOneField(
        "training.TrainingJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="produced_model"
    )
    method = models.CharField(max_length=16)
    weights = models.CharField(max_length=16)
    # The adapter folder (lora/qlora) or the full model folder, in the artifact store (finetune/artifacts.py).
    artifact_key = models.CharField(max_length=300, blank=True, default="")
    artifact_sha256 = models.CharField(max_length=64, blank=True, default="")
    artifact_size = models.BigIntegerField(default=0)
    is_adapter = models.BooleanField(default=True)
    metrics = models.JSONField(default=dict, blank=True)
    hyperparameters = models.JSONField(default=dict, blank=True)
    # The evaluation report: base vs fine-tuned answers to held-out prompts with loss, perplexity, exact match and
    # ROUGE-L (training.engine.evaluation.compare_models); kept here so it outlives the job that made it.
    evaluation = models.JSONField(default=dict, blank=True)
    tag = models.CharField(max_length=100, blank=True, default="")
    notes = models.TextField(blank=True, default="")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [models.UniqueConstraint(fields=["owner", "name", "version"], name="finetune_name_version")]
        indexes = [models.Index(fields=["owner", "-created", "-id"], name="finetune_owner_created")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class TaskStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ModelTask(models.Model):
    """Common fields of the long-running actions on a fine-tuned model (export, push, import): owned, with a status
    and progress shown to the user, a user-readable error, and a run token that makes the Celery task idempotent."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.QUEUED)
    progress = models.FloatField(default=0.0)
    stage = models.CharField(max_length=200, blank=True, default="")
    error = models.TextField(blank=True, default="")
    run_token = models.CharField(max_length=64, blank=True, default="")
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created", "-id"]


class ModelExport(ModelTask):
    """An export of a fine-tuned model: the LoRA adapter, merged safetensors, or a (verified) GGUF file."""

    class Format(models.TextChoices):
        ADAPTER = "adapter"
        MERGED = "merged"
        GGUF = "gguf"

    model = models.ForeignKey(FineTunedModel, on_delete=models.CASCADE, related_name="exports")
    format = models.CharField(max_length=16, choices=Format.choices)
    quantization = models.CharField(max_length=16, blank=True, default="")  # gguf: f16 | q8_0 | q6_k | q5_k_m | q4_k_m
    file_key = models.CharField(max_length=500, blank=True, default="")  # storage key of the downloadable file
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, default="")
    verification = models.JSONField(default=dict, blank=True)  # gguf: golden prompts, both answers, verdict

    class Meta(ModelTask.Meta):
        pass

    def __str__(self) -> str:
        q = f" {self.quantization}" if self.quantization else ""
        return f"{self.model} → {self.format}{q}"


class HubPush(ModelTask):
    """A push of a fine-tuned model to a Hugging Face Hub repository with the owner's own token."""

    model = models.ForeignKey(FineTunedModel, on_delete=models.CASCADE, related_name="hub_pushes")
    repo_id = models.CharField(max_length=200)  # namespace/name
    private = models.BooleanField(default=True)
    repo_url = models.CharField(max_length=500, blank=True, default="")
    commit_sha = models.CharField(max_length=64, blank=True, default="")
    retryable = models.BooleanField(default=False)

    class Meta(ModelTask.Meta):
        pass

    def __str__(self) -> str:
        return f"{self.model} → hf:{self.repo_id}"


class OllamaImport(ModelTask):
    """An import of a fine-tuned model into the deployment's Ollama server (GGUF + Modelfile, then verified)."""

    model = models.ForeignKey(FineTunedModel, on_delete=models.CASCADE, related_name="ollama_imports")
    ollama_name = models.CharField(max_length=200)
    host = models.CharField(max_length=300, blank=True, default="")
    quantization = models.CharField(max_length=16, blank=True, default="")  # the GGUF imported ("" = the setting's)
    modelfile = models.TextField(blank=True, default="")
    verification = models.JSONField(default=dict, blank=True)

    class Meta(ModelTask.Meta):
        pass

    @property
    def run_command(self) -> str:
        return f"ollama run {self.ollama_name}"

    def __str__(self) -> str:
        return f"{self.model} → ollama:{self.ollama_name}"
