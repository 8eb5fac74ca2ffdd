"""Shapes of the dashboard API (documentation for drf-spectacular; the services build the data)."""

from __future__ import annotations

from rest_framework import serializers

from accounts.api.serializers import QuotaSummarySerializer
from finetune.serializers import FastReadMixin


class JobSummarySerializer(FastReadMixin, serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()
    phase = serializers.CharField()
    method = serializers.CharField()
    weights = serializers.CharField()
    backend = serializers.CharField()
    progress = serializers.FloatField()
    current_step = serializers.IntegerField()
    total_steps = serializers.IntegerField()
    eta_s = serializers.FloatField(allow_null=True)
    created = serializers.DateTimeField()
    started = serializers.DateTimeField(allow_null=True)
    finished = serializers.DateTimeField(allow_null=True)
    final_loss = serializers.FloatField(allow_null=True, help_text="Last logged training loss (finished jobs).")
    error = serializers.CharField()


class JobCountsSerializer(FastReadMixin, serializers.Serializer):
    total = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())


class StatsSerializer(FastReadMixin, serializers.Serializer):
    datasets = serializers.IntegerField(help_text="Datasets (a dataset's versions count once).")
    dataset_versions = serializers.IntegerField()
    models = serializers.IntegerField(help_text="Fine-tuned models.")
    jobs = JobCountsSerializer()
    running_jobs = JobSummarySerializer(many=True, help_text="Queued, starting, running or recovering jobs.")
    recent_jobs = JobSummarySerializer(many=True, help_text="The 10 most recent jobs.")
    success_rate = serializers.FloatField(allow_null=True, help_text="succeeded / (succeeded + failed), all time.")
    quota = QuotaSummarySerializer()


class JobsPerDaySerializer(serializers.Serializer):
    date = serializers.DateField()
    count = serializers.IntegerField(help_text="Jobs created that day (UTC).")
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()


class HoursPerDaySerializer(serializers.Serializer):
    date = serializers.DateField()
    hours = serializers.FloatField(help_text="Compute hours of the jobs that finished that day (UTC).")


class LossByMethodSerializer(serializers.Serializer):
    method = serializers.CharField()
    jobs = serializers.IntegerField()
    mean_final_train_loss = serializers.FloatField(allow_null=True)
    mean_final_eval_loss = serializers.FloatField(allow_null=True)


class FinishedCountsSerializer(serializers.Serializer):
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()


class AnalyticsSerializer(serializers.Serializer):
    days = serializers.IntegerField()
    since = serializers.DateField()
    jobs_per_day = JobsPerDaySerializer(many=True)
    training_hours_per_day = HoursPerDaySerializer(many=True)
    jobs_created = serializers.IntegerField()
    jobs_finished = FinishedCountsSerializer()
    training_hours = serializers.FloatField()
    success_rate = serializers.FloatField(allow_null=True, help_text="Of the jobs finished in the window.")
    final_loss_by_method = LossByMethodSerializer(many=True)
