// Datasets, Training and Models: empty states describing what each page will hold.
import type { ReactNode } from "react";
import type { IconName } from "../components/Icon";
import { Icon } from "../components/Icon";
import { Card, EmptyState, PageHeader } from "../components/ui";

function Placeholder({
  title,
  description,
  icon,
  emptyTitle,
  emptyText,
  features,
}: {
  title: string;
  description: string;
  icon: IconName;
  emptyTitle: string;
  emptyText: ReactNode;
  features: { title: string; text: string }[];
}) {
  return (
    <>
      <PageHeader title={title} description={description} />
      <Card>
        <EmptyState icon={icon} title={emptyTitle}>
          {emptyText}
        </EmptyState>
        <ul className="feature-list" aria-label={`What ${title.toLowerCase()} will show`}>
          {features.map((f) => (
            <li key={f.title} className="feature">
              <Icon name="check" size={16} className="feature__icon" />
              <div>
                <div className="feature__title">{f.title}</div>
                <div className="feature__text">{f.text}</div>
              </div>
            </li>
          ))}
        </ul>
      </Card>
    </>
  );
}

export function DatasetsPage() {
  return (
    <Placeholder
      title="Datasets"
      description="Training data you have uploaded, validated and prepared."
      icon="datasets"
      emptyTitle="No datasets yet"
      emptyText="Your uploaded datasets will be listed here with their format, row count and validation status."
      features={[
        { title: "Upload and validate", text: "JSONL, CSV or Parquet in chat, instruction or preference format, checked row by row." },
        { title: "Preview with the chat template", text: "See exactly what the model is trained on, with the trained spans marked." },
        { title: "Prepare and version", text: "Deduplicate, filter and split into train and validation sets; every change is a new version." },
      ]}
    />
  );
}

export function TrainingPage() {
  return (
    <Placeholder
      title="Training"
      description="Fine-tuning runs, queued, running and finished."
      icon="training"
      emptyTitle="No training runs yet"
      emptyText="Training jobs will appear here with their status, progress and live loss curves."
      features={[
        { title: "SFT, DPO and ORPO", text: "Full fine-tuning, LoRA or QLoRA, with presets and Hugging Face hyperparameter names." },
        { title: "Live charts", text: "Loss, learning rate, throughput and memory, streamed while the run trains." },
        { title: "Resilient runs", text: "Cancel, resume from the last checkpoint, or continue for more epochs." },
      ]}
    />
  );
}

export function ModelsPage() {
  return (
    <Placeholder
      title="Models"
      description="Base models and the fine-tuned models you have trained."
      icon="models"
      emptyTitle="No fine-tuned models yet"
      emptyText="Each successful training run produces a model here that you can test, compare and export."
      features={[
        { title: "Try it in the playground", text: "Chat with a fine-tuned model and compare it with its base model." },
        { title: "Export anywhere", text: "Download the adapter, merged safetensors or GGUF (f16, q8_0)." },
        { title: "Share", text: "Push to the Hugging Face Hub or import into Ollama in one step." },
      ]}
    />
  );
}
