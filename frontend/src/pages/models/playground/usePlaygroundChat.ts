// The playground's conversation: each exchange holds the prompt and the streamed answer (two in side-by-side mode).
import { useRef, useState } from "react";
import type { ChatTurn } from "../../../api/models";
import type { ToolCall } from "../../../api/types";
import { useGenerateStream, type AnswerStats, type GenerateTarget } from "../../../hooks/useGenerateStream";

export interface Answer {
  text: string;
  /** Streamed pieces so far; replaced by the server's token count when the answer is done. */
  tokens: number;
  /** Generation time measured by the server (excludes model loading). */
  durationS: number | null;
  startedAt: number;
  firstTokenAt: number | null;
  endedAt: number | null;
  /** With tools: the calls the answer made (its `<tool_call>` blocks, parsed by the server when it finished). */
  toolCalls: ToolCall[];
}

export interface Exchange {
  id: number;
  /** What was sent: the user's prompt, or a tool's result answering the previous answer's call. */
  role: "user" | "tool";
  user: string;
  model: Answer;
  base: Answer | null;
  streaming: boolean;
  error: string | null;
  fallback: boolean;
}

export interface GenerationSettings {
  system: string;
  temperature: number;
  topP: number;
  maxNew: number;
  /** Tools (JSON): a list of function specs offered to the model; blank for none. */
  tools: string;
}

/** The tools of the settings: none when blank, else a JSON list (an error message when it is not one). */
export function parseTools(text: string): { tools?: Record<string, unknown>[]; error?: string } {
  if (!text.trim()) return {};
  try {
    const value: unknown = JSON.parse(text);
    if (!Array.isArray(value) || !value.every((t) => t && typeof t === "object" && !Array.isArray(t))) {
      return { error: "Tools must be a JSON list of function specs, e.g. [{\"name\": \"get_weather\", \"parameters\": {...}}]." };
    }
    return value.length ? { tools: value as Record<string, unknown>[] } : {};
  } catch (e) {
    return { error: `Tools are not valid JSON: ${e instanceof Error ? e.message : String(e)}` };
  }
}

const newAnswer = (): Answer => ({ text: "", tokens: 0, durationS: null, startedAt: performance.now(), firstTokenAt: null, endedAt: null, toolCalls: [] });

const TOOL_CALL_BLOCK = /<tool_call>[\s\S]*?(?:<\/tool_call>|$)/g;

/** An answer's text as shown: once the server returned its tool calls, their `<tool_call>` blocks are shown as
 * cards instead (blocks that were not valid calls stay in the text). */
export function visibleText(answer: Answer): string {
  if (!answer.toolCalls.length) return answer.text;
  return answer.text
    .replace(TOOL_CALL_BLOCK, (block) => (/\{[\s\S]*"name"[\s\S]*\}/.test(block) ? "" : block))
    .trim();
}

/** The whole conversation as chat turns, then the new prompt (answers of the base column are not sent back). */
function turns(chat: Exchange[], system: string, text: string, role: Exchange["role"]): ChatTurn[] {
  const messages: ChatTurn[] = [];
  if (system.trim()) messages.push({ role: "system", content: system.trim() });
  for (const e of chat) {
    messages.push({ role: e.role, content: e.user });
    if (e.model.text) messages.push({ role: "assistant", content: e.model.text });
  }
  messages.push({ role, content: text });
  return messages;
}

export function usePlaygroundChat() {
  const stream = useGenerateStream();
  const [chat, setChat] = useState<Exchange[]>([]);
  const nextId = useRef(1);

  const update = (id: number, change: (e: Exchange) => Exchange) => setChat((list) => list.map((e) => (e.id === id ? change(e) : e)));

  /** Ask `target` (and with `compare` its base model too); the answer streams into a new exchange. With `role`
   * "tool", `text` is a tool's result answering the last answer's call (the model then goes on from it). */
  const send = (text: string, target: GenerateTarget, settings: GenerationSettings, compare: boolean, role: Exchange["role"] = "user") => {
    const messages = turns(chat, settings.system, text, role);
    const id = nextId.current++;
    const { tools, error: toolsError } = parseTools(settings.tools);
    if (toolsError) {
      setChat((list) => [...list, { id, role, user: text, model: newAnswer(), base: null, streaming: false, error: toolsError, fallback: false }]);
      return;
    }
    setChat((list) => [...list, { id, role, user: text, model: newAnswer(), base: compare ? newAnswer() : null, streaming: true, error: null, fallback: false }]);
    const params = { messages, max_new_tokens: settings.maxNew, temperature: settings.temperature, top_p: settings.topP, ...(tools ? { tools } : {}) };
    stream.start(target, params, compare, {
      onToken: (side, piece) =>
        update(id, (e) => {
          const now = performance.now();
          const grow = (a: Answer): Answer => ({ ...a, text: a.text + piece, tokens: a.tokens + (piece ? 1 : 0), firstTokenAt: a.firstTokenAt ?? now, endedAt: now });
          // A base model's own tokens are marked "base" too: they belong in the single column then.
          if (side === "base" && e.base) return { ...e, base: grow(e.base) };
          return { ...e, model: grow(e.model) };
        }),
      onDone: ({ error, fallback, results }) =>
        update(id, (e) => {
          const settle = (a: Answer, stats: AnswerStats | undefined): Answer =>
            stats ? { ...a, tokens: stats.tokens ?? a.tokens, durationS: stats.duration_s ?? null, toolCalls: stats.tool_calls ?? [] } : a;
          return {
            ...e,
            model: settle(e.model, results?.model),
            base: e.base ? settle(e.base, results?.base) : null,
            streaming: false,
            error: error ?? null,
            fallback: !!fallback,
          };
        }),
    });
  };

  /** Stop the answer being streamed; what arrived stays. */
  const stop = () => {
    stream.stop();
    setChat((list) => list.map((e) => (e.streaming ? { ...e, streaming: false } : e)));
  };

  /** A new, empty conversation. */
  const reset = () => {
    stream.stop();
    setChat([]);
  };

  return { chat, streaming: stream.streaming, send, stop, reset };
}
