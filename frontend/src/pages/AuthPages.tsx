// Sign in and sign up screens.
import { useState, type ChangeEvent, type FormEvent, type ReactNode } from "react";
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import { useLogin, useRegister } from "../api/auth";
import { ApiError, errorMessage } from "../api/client";
import { safeNext } from "../auth/guards";
import { Logo } from "../components/AppLayout";
import { Banner, Button, Field } from "../components/ui";

function AuthShell({ title, subtitle, children, footer }: { title: string; subtitle: string; children: ReactNode; footer: ReactNode }) {
  return (
    <div className="auth">
      <div className="auth__panel">
        <div className="auth__brand">
          <Logo />
        </div>
        <main className="auth__card">
          <h1 className="auth__title">{title}</h1>
          <p className="auth__subtitle">{subtitle}</p>
          {children}
        </main>
        <p className="auth__footer">{footer}</p>
      </div>
    </div>
  );
}

function fieldError(error: unknown, name: string): string | undefined {
  return error instanceof ApiError ? error.field(name) : undefined;
}

/** Banner text for a failed auth form: the server's detail, unless the field errors already say it all. */
function bannerText(error: unknown, fields: string[]): string | null {
  if (!error) return null;
  if (error instanceof ApiError) {
    const shownNextToFields = fields.some((f) => error.field(f));
    const otherFields = Object.keys(error.fieldErrors).filter((f) => !fields.includes(f));
    if (shownNextToFields && !otherFields.length && error.detail === "Please correct the errors below.") return null;
    const extra = otherFields.map((f) => error.fieldErrors[f].join(" "));
    return [error.detail, ...extra].join(" ");
  }
  return errorMessage(error);
}

export function LoginPage() {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const login = useLogin();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const next = safeNext(params.get("next"));

  const submit = (event: FormEvent) => {
    event.preventDefault();
    login.mutate({ username: username.trim(), password }, { onSuccess: () => navigate(next, { replace: true }) });
  };
  const banner = bannerText(login.error, ["username", "password"]);
  const throttled = login.error instanceof ApiError && login.error.status === 429;

  return (
    <AuthShell
      title="Sign in"
      subtitle="Welcome back. Sign in to manage your datasets, training runs and models."
      footer={
        <>
          New here? <Link to={params.get("next") ? `/signup?next=${encodeURIComponent(next)}` : "/signup"}>Create an account</Link>
        </>
      }
    >
      <form className="form" onSubmit={submit} noValidate>
        {banner && (
          <Banner tone="error" title={throttled ? "Too many attempts" : undefined}>
            {banner}
          </Banner>
        )}
        <Field
          label="Username"
          name="username"
          autoComplete="username"
          autoFocus
          required
          value={username}
          onChange={(e) => setUsername(e.target.value)}
          error={fieldError(login.error, "username")}
        />
        <Field
          label="Password"
          name="password"
          type="password"
          autoComplete="current-password"
          required
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          error={fieldError(login.error, "password")}
        />
        <Button type="submit" variant="primary" className="btn--block" loading={login.isPending}>
          Sign in
        </Button>
      </form>
    </AuthShell>
  );
}

export function SignupPage() {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const register = useRegister();
  const [form, setForm] = useState({ username: "", email: "", password: "", confirm: "" });
  const [confirmError, setConfirmError] = useState<string>();
  const set = (key: keyof typeof form) => (e: ChangeEvent<HTMLInputElement>) => setForm({ ...form, [key]: e.target.value });

  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (form.password !== form.confirm) {
      setConfirmError("Passwords do not match.");
      return;
    }
    setConfirmError(undefined);
    register.mutate(
      { username: form.username.trim(), email: form.email.trim(), password: form.password },
      { onSuccess: () => navigate(safeNext(params.get("next")), { replace: true }) },
    );
  };
  const banner = bannerText(register.error, ["username", "email", "password"]);

  return (
    <AuthShell
      title="Create your account"
      subtitle="Fine-tune open models on your own data, on your own hardware."
      footer={
        <>
          Already have an account? <Link to="/login">Sign in</Link>
        </>
      }
    >
      <form className="form" onSubmit={submit} noValidate>
        {banner && <Banner tone="error">{banner}</Banner>}
        <Field
          label="Username"
          name="username"
          autoComplete="username"
          autoFocus
          required
          value={form.username}
          onChange={set("username")}
          error={fieldError(register.error, "username")}
        />
        <Field
          label="Email"
          name="email"
          type="email"
          autoComplete="email"
          required
          value={form.email}
          onChange={set("email")}
          error={fieldError(register.error, "email")}
        />
        <Field
          label="Password"
          name="password"
          type="password"
          autoComplete="new-password"
          required
          value={form.password}
          onChange={set("password")}
          hint="At least 8 characters; avoid common or all-numeric passwords."
          error={fieldError(register.error, "password")}
        />
        <Field
          label="Confirm password"
          name="confirm"
          type="password"
          autoComplete="new-password"
          required
          value={form.confirm}
          onChange={set("confirm")}
          error={confirmError}
        />
        <Button type="submit" variant="primary" className="btn--block" loading={register.isPending}>
          Sign up
        </Button>
      </form>
    </AuthShell>
  );
}
