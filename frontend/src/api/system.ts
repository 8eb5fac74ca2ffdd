// Service health and test notifications.
import { useMutation, useQuery } from "@tanstack/react-query";
import { api, ApiError } from "./client";
import type { Health } from "./types";

function isHealth(value: unknown): value is Health {
  return !!value && typeof value === "object" && "database" in value && "redis" in value;
}

/** GET /api/health/; a degraded service may answer 503 with the same body, which is still a result. */
export async function fetchHealth(signal?: AbortSignal): Promise<Health> {
  try {
    return await api.get<Health>("/api/health/", signal);
  } catch (error) {
    if (error instanceof ApiError && isHealth(error.body)) return error.body;
    throw error;
  }
}

export function useHealth() {
  return useQuery({
    queryKey: ["health"],
    queryFn: ({ signal }) => fetchHealth(signal),
    refetchInterval: 15_000,
    retry: false,
  });
}

export function useSendTestNotification() {
  return useMutation({ mutationFn: () => api.post<unknown>("/api/notifications/test/") });
}
