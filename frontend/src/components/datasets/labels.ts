// Dataset format labels and the fields each format reads (number and date formatters: lib/format.ts).

export const FORMATS: { value: string; label: string; short: string; columns: string }[] = [
  { value: "alpaca", label: "Alpaca", short: "Alpaca", columns: "instruction, output, input?, system?, history?" },
  { value: "sharegpt", label: "ShareGPT", short: "ShareGPT", columns: "conversations, system?" },
  { value: "messages", label: "Messages (OpenAI chat)", short: "Messages", columns: "messages" },
  { value: "prompt_completion", label: "Prompt / completion", short: "Prompt/completion", columns: "prompt, completion" },
  { value: "text", label: "Plain text", short: "Text", columns: "text" },
  {
    value: "preference",
    label: "Preference (prompt, chosen, rejected)",
    short: "Preference",
    columns: "prompt, chosen, rejected",
  },
  { value: "hh_rlhf", label: "HH-RLHF transcripts", short: "HH-RLHF", columns: "chosen, rejected" },
  {
    value: "sharegpt_preference",
    label: "ShareGPT preference",
    short: "ShareGPT pref.",
    columns: "conversations, chosen, rejected",
  },
  {
    value: "sharegpt_tools",
    label: "ShareGPT tool calling",
    short: "ShareGPT tools",
    columns: "conversations (function_call, observation), tools?, system?",
  },
  { value: "messages_tools", label: "Messages with tool calls", short: "Messages tools", columns: "messages (tool_calls, tool), tools?" },
];

/** Field names each format reads, offered as suggestions in the column mapping editor. */
export const FORMAT_FIELDS: Record<string, string[]> = {
  alpaca: ["instruction", "input", "output", "system", "history"],
  sharegpt: ["conversations", "system"],
  messages: ["messages"],
  prompt_completion: ["prompt", "completion"],
  text: ["text"],
  preference: ["prompt", "chosen", "rejected", "system"],
  hh_rlhf: ["chosen", "rejected"],
  sharegpt_preference: ["conversations", "chosen", "rejected", "system"],
  sharegpt_tools: ["conversations", "tools", "system"],
  messages_tools: ["messages", "tools"],
};

export function formatLabel(value: string | null | undefined, short = false): string {
  if (!value) return "—";
  const format = FORMATS.find((f) => f.value === value);
  return (short ? format?.short : format?.label) ?? value;
}
