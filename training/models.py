"""Training jobs (a persistent queue with leases), their metric points and log lines."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class TrainingJob(models.Model):
    """One fine-tuning run requested by a user, executed by a `training` worker (local) or on Modal."""

    class Status(models.TextChoices):
        WAITING = "waiting"  # a sweep variant over the concurrent-jobs limit: queued when a slot frees up
        QUEUED = "queued"
        STARTING = "starting"
        RUNNING = "running"
        RECOVERING = "recovering"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (
        Status.QUEUED,
        Status.STARTING,
        Status.RUNNING,
        Status.RECOVERING,
    )  # what the concurrent-jobs limit counts
    UNFINISHED = (Status.WAITING, *ACTIVE)
    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    class Backend(models.TextChoices):
        LOCAL = "local"
        MODAL = "modal"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    name = models.CharField(max_length=200)
    base_model = models.ForeignKey("models_app.BaseModel", on_delete=models.PROTECT, related_name="jobs")
    dataset = models.ForeignKey("datasets_app.Dataset", on_delete=models.PROTECT, related_name="jobs")
    method = models.CharField(max_length=8)
    weights = models.CharField(max_length=8)
    hyperparameters = models.JSONField(default=dict)  # validated by the engine's HyperParams
    backend = models.CharField(max_length=8, choices=Backend.choices, default=Backend.LOCAL)
    modal_gpu = models.CharField(max_length=16, blank=True, default="")
    init_from_job = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="continuations"
    )
    # A variant of a hyperparameter sweep (training/sweeps.py): the sweep and the values it swept for this job.
    sweep = models.ForeignKey("Sweep", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    sweep_params = models.JSONField(null=True, blank=True)
    # The evaluation report (training.engine.evaluation.compare_models): after training, the base and the fine-tuned
    # model answer `compare_prompts` held-out prompts. They (and the eval loss) come from `eval_dataset` when the user
    # picked one, else from the training dataset's validation split or `validation_split` rows of it.
    compare_prompts = models.PositiveSmallIntegerField(default=0)
    eval_dataset = models.ForeignKey(
        "datasets_app.Dataset", null=True, blank=True, on_delete=models.PROTECT, related_name="eval_jobs"
    )

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True)
    phase = models.CharField(max_length=32, blank=True, default="")  # engine status (loading_model, training...)
    attempts = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    # Lease: the worker that runs the job renews it with a heartbeat; an expired lease means the worker died.
    lease_owner = models.CharField(max_length=200, blank=True, default="")
    lease_expires = models.DateTimeField(null=True, blank=True, db_index=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempt_history = models.JSONField(default=list, blank=True)

    current_step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    last_checkpoint_step = models.PositiveIntegerField(default=0)
    progress = models.FloatField(default=0.0)
    eta_s = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    error_kind = models.CharField(max_length=16, blank=True, default="")

    metric_seq = models.PositiveIntegerField(default=0)
    log_seq = models.PositiveIntegerField(default=0)
    # The newest complete checkpoint in the artifact store (uploaded, then recorded): any worker resumes from it.
    checkpoint_key = models.CharField(max_length=300, blank=True, default="")
    checkpoint_sha256 = models.CharField(max_length=64, blank=True, default="")
    checkpoint_size = models.BigIntegerField(default=0)
    # The stored checkpoint before it, kept until a newer one replaces it or the job finishes: a resume whose newest
    # checkpoint is damaged (changed in the store, or written truncated) starts from this one instead.
    previous_checkpoint_key = models.CharField(max_length=300, blank=True, default="")
    previous_checkpoint_sha256 = models.CharField(max_length=64, blank=True, default="")
    previous_checkpoint_size = models.BigIntegerField(default=0)
    previous_checkpoint_step = models.PositiveIntegerField(default=0)
    external_id = models.CharField(max_length=200, blank=True, default="")  # Modal call id
    cost_usd = models.FloatField(default=0.0)  # Modal: GPU seconds x the GPU's price (settings table)
    compute_seconds = models.FloatField(default=0.0)  # worker/GPU time held, all attempts
    result = models.JSONField(null=True, blank=True)
    versions = models.JSONField(default=dict, blank=True)  # library versions used (reproducibility)
    dataset_sha256 = models.CharField(max_length=64, blank=True, default="")

    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [
            models.Index(fields=["owner", "status"]),
            # The job list: one user's jobs newest first, optionally filtered by method or backend.
            models.Index(fields=["owner", "-created", "-id"], name="job_owner_created"),
            models.Index(fields=["owner", "method", "-created"], name="job_owner_method"),
            models.Index(fields=["owner", "backend", "-created"], name="job_owner_backend"),
        ]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.status})"


class MetricPoint(models.Model):
    """One logged step (or evaluation) of a job; `seq` orders points per job without gaps."""

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="metric_points")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=8, default="metric")  # metric | eval
    step = models.PositiveIntegerField(default=0)
    epoch = models.FloatField(null=True, blank=True)
    loss = models.FloatField(null=True, blank=True)
    eval_loss = models.FloatField(null=True, blank=True)
    learning_rate = models.FloatField(null=True, blank=True)
    grad_norm = models.FloatField(null=True, blank=True)
    memory_mb = models.FloatField(null=True, blank=True)
    tokens_per_s = models.FloatField(null=True, blank=True)
    eta_s = models.FloatField(null=True, blank=True)
    time = models.DateTimeField()
    extra = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["job", "seq"]
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="metric_job_seq")]


class LogLine(models.Model):
    """One log line of a job."""

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="log_lines")
    seq = models.PositiveIntegerField()
    level = models.CharField(max_length=8, default="info")
    line = models.TextField()
    time = models.DateTimeField()

    class Meta:
        ordering = ["job", "seq"]
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="log_job_seq")]


class Sweep(models.Model):
    """A hyperparameter sweep: one job spec and a grid or random search over up to three numeric hyperparameters,
    run as ordinary jobs (``TrainingJob.sweep``); the variants are ranked by ``metric`` (training/sweeps.py)."""

    class Strategy(models.TextChoices):
        GRID = "grid"
        RANDOM = "random"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sweeps")
    name = models.CharField(max_length=200)
    spec = models.JSONField(default=dict)  # the job creation body every variant starts from
    strategy = models.CharField(max_length=8, choices=Strategy.choices, default=Strategy.GRID)
    parameters = models.JSONField(default=dict)  # grid: {name: [values]}; random: {name: {min, max, log} | [values]}
    max_variants = models.PositiveIntegerField(default=0)
    seed = models.IntegerField(default=0)
    metric = models.CharField(max_length=16, default="eval_loss")
    best_job = models.ForeignKey(TrainingJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    promoted_model = models.ForeignKey(
        "models_app.FineTunedModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["owner", "-created", "-id"], name="sweep_owner_created")]

    def __str__(self) -> str:
        return f"sweep {self.pk} ({self.name})"
