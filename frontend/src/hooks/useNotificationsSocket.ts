// Live messages from /ws/notifications/ (reconnecting: see useReconnectingSocket), newest first.
import { useRef, useState } from "react";
import type { SocketMessage } from "../api/types";
import { socketUrl, useReconnectingSocket, type SocketState } from "./useReconnectingSocket";

export type { SocketState };

export interface ReceivedMessage {
  /** Stable key: tasks are updated in place by kind and id; other messages get a sequence number. */
  key: string;
  receivedAt: Date;
  message: SocketMessage;
}

const MAX_MESSAGES = 50;

export function notificationsSocketUrl(): string {
  return socketUrl("/ws/notifications/");
}

function messageKey(message: SocketMessage, seq: number): string {
  if (message.type === "task" && "kind" in message && "id" in message) return `task:${String(message.kind)}:${String(message.id)}`;
  return `msg:${seq}`;
}

/** The last 50 messages while `enabled` (state "idle" otherwise). */
export function useNotificationsSocket(enabled = true) {
  const [messages, setMessages] = useState<ReceivedMessage[]>([]);
  const seq = useRef(0);
  const { state, retryInMs } = useReconnectingSocket<SocketMessage>(enabled ? notificationsSocketUrl() : null, {
    onMessage: (message) => {
      seq.current += 1;
      const entry: ReceivedMessage = { key: messageKey(message, seq.current), receivedAt: new Date(), message };
      setMessages((previous) => [entry, ...previous.filter((m) => m.key !== entry.key)].slice(0, MAX_MESSAGES));
    },
  });
  return { state, messages, retryInMs, clear: () => setMessages([]) };
}
