// Streaming generation for the playground: /ws/models/<id>/generate/ (send `{messages, ...}`, receive
// `{"type":"token","text","source"}` … `{"type":"done"}`; a base model's socket is /ws/models/base-<id>/generate/).
// With `compare_with_base` the same socket streams the base model's answer after the fine-tuned one, its tokens
// marked `"source": "base"`; one `done` ends both. If the socket cannot be opened at all, the
// answer is fetched in one piece from the REST endpoint instead.
import { useCallback, useEffect, useRef, useState } from "react";
import { errorMessage } from "../api/client";
import { generateOnce, type GenerateParams } from "../api/models";
import type { ToolCall } from "../api/types";
import { socketUrl } from "./useReconnectingSocket";

export type StreamSide = "model" | "base";

export interface GenerateTarget {
  kind: "model" | "base";
  id: number;
}

export interface StreamHandlers {
  onToken: (side: StreamSide, text: string) => void;
  onDone: (info: { error?: string; fallback?: boolean; results?: Partial<Record<StreamSide, AnswerStats>> }) => void;
}

/** What the server measured for one answer (the final `done` message's `results`). */
export interface AnswerStats {
  tokens?: number;
  duration_s?: number;
  prompt_tokens?: number;
  stopped?: boolean;
  /** With tools: the answer's `<tool_call>` blocks as structured calls (absent when it called none). */
  tool_calls?: ToolCall[];
}

function readResults(message: Record<string, unknown>): Partial<Record<StreamSide, AnswerStats>> | undefined {
  const raw = message.results;
  if (!raw || typeof raw !== "object") return undefined;
  const out: Partial<Record<StreamSide, AnswerStats>> = {};
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    if (value && typeof value === "object") out[key === "base" ? "base" : "model"] = value as AnswerStats;
  }
  return out;
}

export function generateSocketUrl(target: GenerateTarget): string {
  return socketUrl(target.kind === "base" ? `/ws/models/base-${target.id}/generate/` : `/ws/models/${target.id}/generate/`);
}

function sideOf(message: Record<string, unknown>): StreamSide | null {
  for (const key of ["source", "side", "model", "column", "stream", "target"]) {
    const value = message[key];
    if (typeof value === "string") return value.toLowerCase().includes("base") ? "base" : "model";
  }
  if (message.is_base === true || message.base === true) return "base";
  return null;
}

function closeReason(code: number, reason: string): string {
  if (reason) return reason;
  if (code === 4401 || code === 4403) return "You are not allowed to use this model (are you still signed in?).";
  if (code === 4404) return "This model no longer exists.";
  if (code === 4429) return "Too many generations at once. Wait for one to finish and try again.";
  return "The connection closed before the answer was finished.";
}

export function useGenerateStream() {
  const socketRef = useRef<WebSocket | null>(null);
  const [streaming, setStreaming] = useState(false);

  const stop = useCallback(() => {
    const socket = socketRef.current;
    socketRef.current = null;
    if (socket) {
      socket.onclose = null;
      socket.onmessage = null;
      socket.close();
    }
    setStreaming(false);
  }, []);

  useEffect(() => stop, [stop]);

  const start = useCallback(
    (target: GenerateTarget, params: GenerateParams, compareWithBase: boolean, handlers: StreamHandlers) => {
      stop();
      setStreaming(true);
      let opened = false;
      let finished = false;
      const doneSides = new Set<StreamSide>();
      const finish = (info: { error?: string; fallback?: boolean; results?: Partial<Record<StreamSide, AnswerStats>> } = {}) => {
        if (finished) return;
        finished = true;
        const socket = socketRef.current;
        socketRef.current = null;
        if (socket) {
          socket.onclose = null;
          socket.onmessage = null;
          socket.close();
        }
        setStreaming(false);
        handlers.onDone(info);
      };

      const fallback = async () => {
        // The socket never opened (a proxy without websockets, for instance): ask the REST endpoint.
        try {
          const body = await generateOnce(target, { ...params, compare_with_base: compareWithBase });
          if (finished) return;
          handlers.onToken("model", body.text ?? "");
          const base = body.base;
          if (compareWithBase && base && typeof base.text === "string") handlers.onToken("base", base.text);
          // The REST answers carry what the socket's `done` does (tokens, duration_s, tool_calls).
          finish({ fallback: true, results: { model: body, ...(compareWithBase && base ? { base } : {}) } });
        } catch (error) {
          finish({ error: errorMessage(error) });
        }
      };

      let socket: WebSocket;
      try {
        socket = new WebSocket(generateSocketUrl(target));
      } catch {
        void fallback();
        return;
      }
      socketRef.current = socket;
      socket.onopen = () => {
        opened = true;
        socket.send(JSON.stringify({ ...params, compare_with_base: compareWithBase }));
      };
      socket.onmessage = (event: MessageEvent) => {
        let message: Record<string, unknown>;
        try {
          message = JSON.parse(String(event.data)) as Record<string, unknown>;
        } catch {
          return;
        }
        const type = message.type;
        if (type === "token") {
          handlers.onToken(sideOf(message) ?? "model", typeof message.text === "string" ? message.text : "");
        } else if (type === "done") {
          const side = sideOf(message);
          if (side && compareWithBase) {
            doneSides.add(side);
            if (doneSides.size < 2) return;
          }
          let results = readResults(message);
          // A base model's own answer is reported as "base": it is the single column's answer.
          if (results && !compareWithBase && !results.model && results.base) results = { model: results.base };
          finish({ results });
        } else if (type === "error") {
          const detail = message.detail ?? message.message ?? message.error;
          finish({ error: typeof detail === "string" && detail ? detail : "The model could not answer." });
        }
      };
      socket.onclose = (event: CloseEvent) => {
        if (finished) return;
        if (!opened) {
          socketRef.current = null;
          void fallback();
          return;
        }
        finish({ error: closeReason(event.code, event.reason) });
      };
    },
    [stop],
  );

  return { start, stop, streaming };
}
