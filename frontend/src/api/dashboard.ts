// The user's dashboard: GET /api/dashboard/stats/ and GET /api/dashboard/analytics/?days=N.
import { useQuery } from "@tanstack/react-query";
import { api } from "./client";
import type { JobStatus, TrainingMethod } from "./types";

export interface DashboardJob {
  id: number;
  name: string;
  status: JobStatus;
  phase: string;
  method: TrainingMethod;
  weights: string;
  backend: string;
  progress: number;
  current_step: number;
  total_steps: number;
  eta_s: number | null;
  created: string;
  started: string | null;
  finished: string | null;
  final_loss: number | null;
  error: string;
}

export interface QuotaSummary {
  quotas: Record<string, number>;
  usage: Record<string, number | string>;
  remaining: Record<string, number>;
  resets_at: string;
}

export interface DashboardStats {
  datasets: number;
  dataset_versions: number;
  models: number;
  jobs: { total: number; by_status: Record<string, number> };
  running_jobs: DashboardJob[];
  recent_jobs: DashboardJob[];
  success_rate: number | null;
  quota: QuotaSummary;
}

export interface DashboardAnalytics {
  days: number;
  since: string;
  jobs_per_day: { date: string; count: number; succeeded: number; failed: number }[];
  training_hours_per_day: { date: string; hours: number }[];
  jobs_created: number;
  jobs_finished: { succeeded: number; failed: number };
  training_hours: number;
  success_rate: number | null;
  final_loss_by_method: {
    method: string;
    jobs: number;
    mean_final_train_loss: number | null;
    mean_final_eval_loss: number | null;
  }[];
}

export const dashboardKeys = {
  stats: ["dashboard", "stats"] as const,
  analytics: (days: number) => ["dashboard", "analytics", days] as const,
};

export function useDashboardStats() {
  return useQuery({
    queryKey: dashboardKeys.stats,
    queryFn: ({ signal }) => api.get<DashboardStats>("/api/dashboard/stats/", signal),
    // Progress itself arrives over each running job's socket; this poll picks up new and finished jobs.
    refetchInterval: (query) => (query.state.data?.running_jobs.length ? 10_000 : 30_000),
  });
}

export function useDashboardAnalytics(days: number) {
  return useQuery({
    queryKey: dashboardKeys.analytics(days),
    queryFn: ({ signal }) => api.get<DashboardAnalytics>(`/api/dashboard/analytics/?days=${days}`, signal),
    staleTime: 30_000,
    refetchInterval: 60_000,
  });
}
