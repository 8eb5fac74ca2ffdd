// Settings: profile, password, Hugging Face token and API tokens.
import { useState, type FormEvent } from "react";
import {
  useApiTokens,
  useChangePassword,
  useCreateApiToken,
  useDeleteHfToken,
  useHfToken,
  useMe,
  useRevokeApiToken,
  useSaveHfToken,
  useUpdateProfile,
} from "../api/auth";
import { ApiError, errorMessage } from "../api/client";
import type { ApiToken, HfTokenStatus, User } from "../api/types";
import { Icon } from "../components/Icon";
import { Banner, Button, Card, Field, PageHeader, Spinner } from "../components/ui";
import { formatDate } from "../lib/format";
import { NotificationsCard } from "../components/settings/NotificationsCard";
import { WandbKeyCard } from "../components/settings/WandbKeyCard";

const FALLBACK = "Please correct the errors below.";

function fieldError(error: unknown, name: string): string | undefined {
  return error instanceof ApiError ? error.field(name) : undefined;
}

/** The banner for a failed form: the server's detail plus errors for fields the form does not show. */
function formBanner(error: unknown, shownFields: string[]) {
  if (!error) return null;
  let text = errorMessage(error);
  if (error instanceof ApiError) {
    const others = Object.entries(error.fieldErrors).filter(([f]) => !shownFields.includes(f));
    if (error.detail === FALLBACK && !others.length) return null;
    text = [error.detail === FALLBACK && others.length ? "" : error.detail, ...others.map(([, m]) => m.join(" "))]
      .filter(Boolean)
      .join(" ");
  }
  return <Banner tone="error">{text}</Banner>;
}

/** A token date, or "Never" (a token not used yet). */
const dateOrNever = (value: string | null | undefined) => (value ? formatDate(value) : "Never");

function ProfileForm({ user }: { user: User }) {
  const update = useUpdateProfile();
  const [displayName, setDisplayName] = useState(user.display_name ?? "");
  const [email, setEmail] = useState(user.email ?? "");

  const submit = (event: FormEvent) => {
    event.preventDefault();
    update.mutate({ display_name: displayName.trim(), email: email.trim() });
  };
  const dirty = () => update.isSuccess && update.reset();

  return (
    <Card title="Profile" icon="user" description="How you appear in finetune and where we can reach you.">
      <form className="form" onSubmit={submit} noValidate>
        {formBanner(update.error, ["display_name", "email"])}
        {update.isSuccess && <Banner tone="success" testId="profile-saved">Profile saved.</Banner>}
        <div className="form-row">
          <Field label="Username" name="username" value={user.username} readOnly disabled hint="Your username cannot be changed." />
          <Field
            label="Display name"
            name="display_name"
            autoComplete="name"
            value={displayName}
            onChange={(e) => {
              setDisplayName(e.target.value);
              dirty();
            }}
            hint="Shown in the top bar. Leave empty to use your username."
            error={fieldError(update.error, "display_name")}
          />
        </div>
        <Field
          label="Email"
          name="email"
          type="email"
          autoComplete="email"
          value={email}
          onChange={(e) => {
            setEmail(e.target.value);
            dirty();
          }}
          error={fieldError(update.error, "email")}
        />
        <div className="form__actions">
          <Button type="submit" variant="primary" loading={update.isPending}>
            Save profile
          </Button>
        </div>
      </form>
    </Card>
  );
}

function PasswordForm() {
  const change = useChangePassword();
  const empty = { old_password: "", new_password: "", confirm: "" };
  const [form, setForm] = useState(empty);
  const [confirmError, setConfirmError] = useState<string>();
  const set = (key: keyof typeof form) => (e: { target: { value: string } }) => {
    setForm((f) => ({ ...f, [key]: e.target.value }));
    if (change.isSuccess) change.reset();
  };

  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (form.new_password !== form.confirm) {
      setConfirmError("Passwords do not match.");
      return;
    }
    setConfirmError(undefined);
    change.mutate(
      { old_password: form.old_password, new_password: form.new_password },
      { onSuccess: () => setForm(empty) },
    );
  };

  return (
    <Card title="Password" icon="lock" description="Use a long password you do not use anywhere else.">
      <form className="form" onSubmit={submit} noValidate>
        {formBanner(change.error, ["old_password", "new_password"])}
        {change.isSuccess && <Banner tone="success" testId="password-changed">Password changed.</Banner>}
        <Field
          label="Current password"
          name="old_password"
          type="password"
          autoComplete="current-password"
          required
          value={form.old_password}
          onChange={set("old_password")}
          error={fieldError(change.error, "old_password")}
        />
        <div className="form-row">
          <Field
            label="New password"
            name="new_password"
            type="password"
            autoComplete="new-password"
            required
            value={form.new_password}
            onChange={set("new_password")}
            error={fieldError(change.error, "new_password")}
          />
          <Field
            label="Confirm new password"
            name="confirm_password"
            type="password"
            autoComplete="new-password"
            required
            value={form.confirm}
            onChange={set("confirm")}
            error={confirmError}
          />
        </div>
        <div className="form__actions">
          <Button type="submit" variant="primary" loading={change.isPending}>
            Change password
          </Button>
        </div>
      </form>
    </Card>
  );
}

function hfStatusText(status: HfTokenStatus): string {
  if (!status.present) return "No token saved. Add one to download gated models and push models to the Hub.";
  const ending = status.last4 ? `Saved token ending in ••••${status.last4}` : "Token saved";
  return status.hf_username ? `${ending} for user ${status.hf_username}` : ending;
}

function HfTokenCard() {
  const status = useHfToken();
  const save = useSaveHfToken();
  const remove = useDeleteHfToken();
  const [token, setToken] = useState("");
  const [emptyError, setEmptyError] = useState<string>();

  const submit = (event: FormEvent) => {
    event.preventDefault();
    remove.reset();
    if (!token.trim()) {
      setEmptyError("Paste a Hugging Face access token first.");
      return;
    }
    save.mutate(token.trim(), { onSuccess: (saved) => saved.valid && setToken("") });
  };
  const onDelete = () => {
    if (!window.confirm("Delete your saved Hugging Face token? Downloads of gated models and pushes to the Hub will stop working until you add a new one.")) return;
    save.reset();
    remove.mutate();
  };

  // A 400 (invalid token) goes next to the field; anything else (Hub unreachable, server error) in a banner.
  const saveError = save.error instanceof ApiError ? save.error : null;
  const tokenFieldError =
    emptyError ??
    (save.data && !save.data.valid
      ? "Hugging Face did not accept this token."
      : saveError && saveError.status === 400
        ? saveError.field("token") ?? saveError.detail
        : undefined);
  const saveBanner = save.error && !(saveError && saveError.status === 400) ? errorMessage(save.error) : null;

  return (
    <Card
      title="Hugging Face token"
      icon="hf"
      description={
        <>
          Used to download gated models and push your models to the Hub. Create one at{" "}
          <a href="https://huggingface.co/settings/tokens" target="_blank" rel="noreferrer">
            huggingface.co/settings/tokens
          </a>
          . It is stored encrypted and never shown again.
        </>
      }
    >
      <div className="hf-status" data-testid="hf-token-status">
        {status.isPending ? (
          <Spinner label="Loading token status" />
        ) : status.isError ? (
          <span className="text-danger">{errorMessage(status.error)}</span>
        ) : (
          <>
            <span className={`hf-status__icon ${status.data.present ? "is-ok" : ""}`}>
              <Icon name={status.data.present ? "check" : "key"} size={15} />
            </span>
            <span>{hfStatusText(status.data)}</span>
          </>
        )}
      </div>
      <form className="form" onSubmit={submit} noValidate>
        {saveBanner && <Banner tone="error">{saveBanner}</Banner>}
        {remove.isError && <Banner tone="error">{errorMessage(remove.error)}</Banner>}
        {save.data?.valid && (
          <Banner tone="success" testId="hf-token-result">
            Token is valid — Hugging Face user: {save.data.hf_username ?? "unknown"}
          </Banner>
        )}
        {remove.isSuccess && <Banner tone="success">Token deleted.</Banner>}
        <Field
          label="Hugging Face token"
          hint={status.data?.present ? "Saving a new token replaces the current one." : undefined}
          name="hf_token"
          type="password"
          autoComplete="off"
          spellCheck={false}
          placeholder="hf_…"
          value={token}
          onChange={(e) => {
            setToken(e.target.value);
            setEmptyError(undefined);
            if (save.isError || save.data) save.reset();
          }}
          error={tokenFieldError}
        />
        <div className="form__actions">
          <Button type="submit" variant="primary" loading={save.isPending}>
            Save and validate
          </Button>
          {status.data?.present && (
            <Button type="button" variant="danger" onClick={onDelete} loading={remove.isPending}>
              Delete token
            </Button>
          )}
        </div>
      </form>
    </Card>
  );
}

function NewKey({ token, onDone }: { token: ApiToken; onDone: () => void }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(token.key ?? "");
      setCopied(true);
    } catch {
      const input = document.getElementById("new-api-token") as HTMLInputElement | null;
      input?.select();
    }
  };
  return (
    <div className="new-key" data-testid="new-token">
      <Banner tone="warning" title={`Token “${token.name}” created`}>
        Copy this key now. For your security it will not be shown again.
      </Banner>
      <label htmlFor="new-api-token" className="field__label">
        New API token
      </label>
      <div className="input-group">
        <input
          id="new-api-token"
          className="input mono"
          readOnly
          value={token.key ?? ""}
          data-testid="new-token-key"
          onFocus={(e) => e.currentTarget.select()}
        />
        <Button type="button" icon={copied ? "check" : "copy"} onClick={() => void copy()}>
          {copied ? "Copied" : "Copy"}
        </Button>
      </div>
      <p className="field__hint">
        Use it as <code className="code">Authorization: Token &lt;key&gt;</code> in scripts and API clients.
      </p>
      <div className="form__actions">
        <Button type="button" variant="secondary" onClick={onDone}>
          Done
        </Button>
      </div>
    </div>
  );
}

function ApiTokensCard() {
  const tokens = useApiTokens();
  const create = useCreateApiToken();
  const revoke = useRevokeApiToken();
  const [name, setName] = useState("");
  const [nameError, setNameError] = useState<string>();
  const [created, setCreated] = useState<ApiToken | null>(null);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (!name.trim()) {
      setNameError("Give the token a name, such as the machine or script that will use it.");
      return;
    }
    create.mutate(name.trim(), {
      onSuccess: (token) => {
        setCreated(token);
        setName("");
      },
    });
  };
  const onRevoke = (token: ApiToken) => {
    if (!window.confirm(`Revoke the token “${token.name}”? Scripts using it will stop working immediately.`)) return;
    revoke.mutate(token.id, { onSuccess: () => created?.id === token.id && setCreated(null) });
  };

  return (
    <Card title="API tokens" icon="key" description="Tokens let scripts and other tools use the finetune API as you.">
      {created ? (
        <NewKey token={created} onDone={() => setCreated(null)} />
      ) : (
        <form className="form form--inline" onSubmit={submit} noValidate>
          <Field
            label="Token name"
            name="token_name"
            placeholder="e.g. laptop-cli"
            value={name}
            onChange={(e) => {
              setName(e.target.value);
              setNameError(undefined);
              if (create.isError) create.reset();
            }}
            error={nameError ?? fieldError(create.error, "name")}
            className="grow"
          />
          <Button type="submit" variant="primary" icon="plus" loading={create.isPending}>
            Create token
          </Button>
        </form>
      )}
      {formBanner(create.error, ["name"])}
      {revoke.isError && <Banner tone="error">{errorMessage(revoke.error)}</Banner>}
      <div className="table-wrap">
        {tokens.isPending ? (
          <div className="center-pad">
            <Spinner label="Loading tokens" />
          </div>
        ) : tokens.isError ? (
          <Banner tone="error">{errorMessage(tokens.error)}</Banner>
        ) : tokens.data.length === 0 ? (
          <p className="muted small table-empty">No API tokens yet.</p>
        ) : (
          <table className="table" data-testid="api-tokens">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Token</th>
                <th scope="col">Created</th>
                <th scope="col">Last used</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {tokens.data.map((token) => (
                <tr key={String(token.id)}>
                  <td className="strong">{token.name}</td>
                  <td>
                    <code className="code">{token.prefix}…</code>
                  </td>
                  <td>{dateOrNever(token.created)}</td>
                  <td>{dateOrNever(token.last_used)}</td>
                  <td className="table__actions">
                    <Button
                      size="sm"
                      variant="ghost"
                      className="btn--danger-text"
                      aria-label={`Revoke ${token.name}`}
                      onClick={() => onRevoke(token)}
                      loading={revoke.isPending && revoke.variables === token.id}
                    >
                      Revoke
                    </Button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
    </Card>
  );
}

export default function SettingsPage() {
  const me = useMe();
  return (
    <div className="settings">
      <PageHeader title="Settings" description="Your profile, password and the credentials finetune uses on your behalf." />
      {me.data && <ProfileForm key={me.data.id} user={me.data} />}
      <PasswordForm />
      {me.data && <NotificationsCard key={`n${me.data.id}`} user={me.data} />}
      <HfTokenCard />
      <WandbKeyCard />
      <ApiTokensCard />
    </div>
  );
}
