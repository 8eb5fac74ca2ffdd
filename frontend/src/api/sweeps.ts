// Hyperparameter sweeps (/api/training/sweeps/): one job spec plus a grid or random search over up to three numeric
// hyperparameters, run as ordinary jobs; the detail ranks the variants and carries their loss curves for the overlay.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "./client";
import type { components } from "./schema.gen";

const BASE = "/api/training/sweeps/";

export type SweepStrategy = "grid" | "random";
/** A random range for one hyperparameter (log: draw uniformly in log space). */
export interface SweepRange {
  min: number;
  max: number;
  log?: boolean;
}
/** Grid: {name: [values]}. Random: {name: range or [values to choose from]}. */
export type SweepParameters = Record<string, number[] | SweepRange>;

/** Numeric hyperparameters a sweep may vary (the engine's int and float ones), the useful ones first. */
export const SWEEPABLE: readonly string[] = [
  "learning_rate",
  "lora_r",
  "lora_alpha",
  "num_train_epochs",
  "max_steps",
  "per_device_train_batch_size",
  "gradient_accumulation_steps",
  "warmup_ratio",
  "weight_decay",
  "lora_dropout",
  "beta",
  "max_length",
  "max_grad_norm",
  "seed",
];
export const MAX_SWEEP_PARAMETERS = 3;
export const MAX_SWEEP_VARIANTS = 12;

export interface SweepCreateInput {
  name?: string;
  strategy: SweepStrategy;
  parameters: SweepParameters;
  max_variants?: number | null;
  seed?: number;
}

// The REST shapes are the generated ones (schema.gen.ts, `make types`), with the JSON fields the schema leaves
// untyped given their real types.
type Schemas = components["schemas"];

export type Sweep = Omit<Schemas["Sweep"], "parameters"> & { parameters: SweepParameters };

export type SweepVariant = Omit<Schemas["SweepVariant"], "params"> & {
  /** The swept values of this variant. */
  params: Record<string, number>;
};

export type SweepDetail = Omit<Schemas["SweepDetail"], "parameters" | "variants"> & {
  parameters: SweepParameters;
  variants: SweepVariant[];
};

export interface PromotedModel {
  model: number;
  name: string;
  version: number;
  tag: string;
}

interface Page<T> {
  count: number;
  results: T[];
}

export const sweepKeys = {
  all: ["training", "sweeps"] as const,
  list: ["training", "sweeps", "list"] as const,
  detail: (id: number) => ["training", "sweeps", id] as const,
};

export const sweepUrl = (id: number, suffix = "") => `${BASE}${encodeURIComponent(String(id))}/${suffix}`;

/** The user's sweeps, newest first (first page). */
export function useSweeps() {
  return useQuery({
    queryKey: sweepKeys.list,
    queryFn: ({ signal }) => api.get<Page<Sweep>>(BASE, signal),
    refetchInterval: (query) => (query.state.data?.results.some((s) => s.status === "running") ? 10_000 : false),
  });
}

/** One sweep with its ranked variants; polled every 3 s while a variant is still active. */
export function useSweep(id: number) {
  return useQuery({
    queryKey: sweepKeys.detail(id),
    queryFn: ({ signal }) => api.get<SweepDetail>(sweepUrl(id), signal),
    enabled: Number.isFinite(id),
    refetchInterval: (query) => (query.state.data?.status === "running" ? 3_000 : false),
  });
}

/** Launch a sweep: `spec` is the wizard's job body, the sweep fields are added to it. */
export function useCreateSweep() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: ({ spec, sweep }: { spec: object; sweep: SweepCreateInput }) => api.post<SweepDetail>(BASE, { ...spec, ...sweep }),
    onSuccess: () => qc.invalidateQueries({ queryKey: ["training"] }),
  });
}

export function useCancelSweep(id: number) {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: () => api.post<SweepDetail>(sweepUrl(id, "cancel/")),
    onSuccess: (data) => {
      qc.setQueryData(sweepKeys.detail(id), data);
      qc.invalidateQueries({ queryKey: ["training"] });
    },
  });
}

export function usePromoteSweep(id: number) {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (job?: number) => api.post<PromotedModel>(sweepUrl(id, "promote/"), job === undefined ? {} : { job }),
    onSuccess: () => {
      qc.invalidateQueries({ queryKey: sweepKeys.detail(id) });
      qc.invalidateQueries({ queryKey: ["models"] });
    },
  });
}

/** How many variants a sweep form describes (grid: the product of the value counts; random: N). */
export function variantCount(strategy: SweepStrategy, parameters: SweepParameters, maxVariants: number): number {
  if (strategy === "random") return maxVariants;
  return Object.values(parameters).reduce((n, v) => n * (Array.isArray(v) ? new Set(v).size : 1), 1);
}
