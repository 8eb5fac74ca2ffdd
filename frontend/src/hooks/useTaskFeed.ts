// Live progress of background tasks (exports, pushes, Ollama imports, Hub downloads) from /ws/notifications/.
// The socket's `{"type":"task","kind","id","progress","status"}` moves progress bars at once; the REST detail
// endpoints stay the source of truth (refreshed on every status change and polled while a task is active).
import { useEffect, useRef } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { refreshForTask } from "../api/models";
import type { TaskMessage } from "../api/types";
import { useNotificationsSocket } from "./useNotificationsSocket";

export interface LiveTask {
  progress?: number | null;
  status?: string;
  stage?: string;
}

/** Live task state keyed by `${kind}:${id}`; `lookup(kindPart, id)` finds a task whose kind contains kindPart. */
export function useTaskFeed(modelId?: number) {
  const queryClient = useQueryClient();
  const socket = useNotificationsSocket(true);
  const lastStatus = useRef(new Map<string, string | undefined>());
  const lastRefresh = useRef(new Map<string, number>());

  useEffect(() => {
    for (const entry of socket.messages) {
      const message = entry.message;
      if (message.type !== "task") continue;
      const task = message as TaskMessage;
      const key = `${task.kind}:${task.id}`;
      const status = typeof task.status === "string" ? task.status : undefined;
      const seen = lastStatus.current.get(key);
      const now = Date.now();
      // Refresh on a status change, and at most every 3 s while progress moves (stage text and the like).
      if (seen !== status || now - (lastRefresh.current.get(key) ?? 0) > 3_000) {
        lastStatus.current.set(key, status);
        lastRefresh.current.set(key, now);
        refreshForTask(queryClient, String(task.kind), task.id, modelId);
      }
    }
  }, [socket.messages, queryClient, modelId]);

  const lookup = (kindPart: string, id: number | string): LiveTask | undefined => {
    for (const entry of socket.messages) {
      const message = entry.message;
      if (message.type !== "task") continue;
      const task = message as TaskMessage;
      if (String(task.id) === String(id) && String(task.kind).toLowerCase().includes(kindPart)) {
        return {
          progress: typeof task.progress === "number" ? task.progress : null,
          status: typeof task.status === "string" ? task.status : undefined,
          stage: typeof task.stage === "string" ? task.stage : undefined,
        };
      }
    }
    return undefined;
  };

  return { state: socket.state, lookup };
}

/** The fresher of the REST row and the live message: a finished REST status always wins. */
export function mergeLive<T extends { status: string; progress?: number; stage?: string }>(row: T, live: LiveTask | undefined): T {
  if (!live || row.status === "succeeded" || row.status === "failed") return row;
  const progress = typeof live.progress === "number" ? Math.max(live.progress, row.progress ?? 0) : row.progress;
  return { ...row, progress, stage: live.stage || row.stage };
}
