// /playground: chat with one of your fine-tuned models or a base model. System prompt, temperature, top-p and
// max new tokens; the answer streams in token by token over /ws/models/<id>/generate/; side-by-side mode answers
// the same prompt with the base model and the fine-tuned model in two columns.
import { useState } from "react";
import { Link } from "react-router-dom";
import { errorMessage } from "../../../api/client";
import { Icon } from "../../../components/Icon";
import { modelLabel } from "../../../components/models/TaskBits";
import { Banner, Card, EmptyState, PageHeader, Spinner } from "../../../components/ui";
import { ChatPanel } from "./ChatPanel";
import { SettingsPanel } from "./SettingsPanel";
import { useModelChoice } from "./useModelChoice";
import { usePlaygroundChat, type GenerationSettings } from "./usePlaygroundChat";
import "../../../styles/models.css";

export default function PlaygroundPage() {
  const models = useModelChoice();
  const conversation = usePlaygroundChat();
  const [settings, setSettings] = useState<GenerationSettings>({ system: "You are a helpful assistant.", temperature: 0.7, topP: 0.9, maxNew: 128, tools: "" });
  const [sideBySide, setSideBySide] = useState(models.compareParam);

  const { target, selectedModel, selectedBase } = models;
  const canCompare = target?.kind === "model";
  const compare = sideBySide && canCompare;
  const loading = models.models.isPending || models.bases.isPending;
  const targetName = selectedModel ? modelLabel(selectedModel) : (selectedBase?.name ?? "");

  const send = (text: string) => {
    if (!text || !target || conversation.streaming) return false;
    conversation.send(text, target, settings, compare);
    return true;
  };
  /** A tool's result for the last answer's calls: the model (alone, not side by side) goes on from it. */
  const sendToolResult = (text: string) => {
    if (!text || !target || conversation.streaming) return false;
    conversation.send(text, target, settings, false, "tool");
    return true;
  };

  let body;
  if (loading) {
    body = (
      <div className="center-pad">
        <Spinner label="Loading models" />
      </div>
    );
  } else if (models.models.isError) {
    body = <Banner tone="error">{errorMessage(models.models.error)}</Banner>;
  } else if (!models.fineTuned.length && !models.baseList.length) {
    body = (
      <Card>
        <EmptyState icon="spark" title="No model to chat with">
          No base model is available and you have no fine-tuned models yet.
        </EmptyState>
      </Card>
    );
  } else {
    body = (
      <div className="md-playground">
        <SettingsPanel
          choice={models.choice}
          onPick={(value) => {
            conversation.reset();
            models.pick(value);
          }}
          fineTuned={models.fineTuned}
          baseList={models.baseList}
          selectedModel={selectedModel}
          canCompare={canCompare}
          compare={compare}
          onCompare={setSideBySide}
          settings={settings}
          onSettings={(patch) => setSettings((s) => ({ ...s, ...patch }))}
        />
        <ChatPanel
          title={targetName}
          columns={
            compare
              ? [`Base · ${selectedBase?.name ?? selectedModel?.base_model_name ?? ""}`, `Fine-tuned · ${selectedModel ? modelLabel(selectedModel) : ""}`]
              : null
          }
          chat={conversation.chat}
          canSend={!!target}
          streaming={conversation.streaming}
          onSend={send}
          onStop={conversation.stop}
          onNewChat={conversation.reset}
          onToolResult={sendToolResult}
        />
      </div>
    );
  }

  return (
    <>
      <PageHeader
        title="Playground"
        description="Chat with a fine-tuned model or a base model. Answers stream in as they are generated."
        actions={
          selectedModel ? (
            <Link to={`/models/${selectedModel.id}`} className="btn btn--secondary btn--md tr-link-btn">
              <Icon name="models" size={16} />
              <span>Open {modelLabel(selectedModel)}</span>
            </Link>
          ) : undefined
        }
      />
      {body}
    </>
  );
}
