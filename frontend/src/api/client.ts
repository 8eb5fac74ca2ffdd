// Thin fetch wrapper for the finetune REST API: same-origin session cookie, CSRF header on unsafe
// methods, JSON in and out, and one error type (ApiError) carrying plain-language messages.

export const NETWORK_ERROR_MESSAGE = "Cannot reach the server. Check your connection and try again.";

export type FieldErrors = Record<string, string[]>;

/** An error from the API (or from the network, with status 0). */
export class ApiError extends Error {
  readonly status: number;
  readonly detail: string;
  readonly fieldErrors: FieldErrors;
  readonly body: unknown;

  constructor(status: number, detail: string, fieldErrors: FieldErrors = {}, body: unknown = null) {
    super(detail);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
    this.fieldErrors = fieldErrors;
    this.body = body;
  }

  get isNetworkError(): boolean {
    return this.status === 0;
  }

  get isAuthError(): boolean {
    return this.status === 401 || this.status === 403;
  }

  /** First message for one field, if any. */
  field(name: string): string | undefined {
    return this.fieldErrors[name]?.[0];
  }
}

const UNSAFE_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);
const CSRF_COOKIE = "csrftoken";

export function readCookie(name: string): string | null {
  for (const part of document.cookie ? document.cookie.split(";") : []) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

let csrfFromBody: string | null = null;
let csrfRequest: Promise<void> | null = null;

/** GET /api/auth/csrf/ once, so the csrftoken cookie is set before the first unsafe request. */
export function ensureCsrf(force = false): Promise<void> {
  if (!force && csrfRequest) return csrfRequest;
  csrfRequest = fetch("/api/auth/csrf/", { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(async (response) => {
      const body = await response.json().catch(() => null);
      if (body && typeof body === "object") {
        const token = (body as Record<string, unknown>).csrfToken ?? (body as Record<string, unknown>).csrf_token;
        if (typeof token === "string") csrfFromBody = token;
      }
    })
    .catch(() => {
      // Offline: let the real request report the network error; try again next time.
      csrfRequest = null;
    });
  return csrfRequest;
}

function csrfToken(): string | null {
  return readCookie(CSRF_COOKIE) ?? csrfFromBody;
}

function asMessages(value: unknown): string[] {
  if (Array.isArray(value)) return value.map((v) => (typeof v === "string" ? v : JSON.stringify(v)));
  if (typeof value === "string") return [value];
  if (value && typeof value === "object") return Object.values(value).flatMap(asMessages);
  return [];
}

function statusMessage(status: number): string {
  if (status === 401) return "Please sign in to continue.";
  if (status === 403) return "You do not have permission to do that.";
  if (status === 404) return "Not found.";
  if (status === 429) return "Too many attempts. Please wait a moment and try again.";
  if (status >= 500) return `The server ran into a problem (${status}). Please try again in a moment.`;
  return `The request failed (${status}).`;
}

/** Turn an error response body into an ApiError: {"detail", "errors": {field: [...]}}, or DRF's plain shapes. */
export function toApiError(status: number, body: unknown): ApiError {
  let detail = "";
  const fieldErrors: FieldErrors = {};
  if (body && typeof body === "object" && !Array.isArray(body)) {
    const obj = body as Record<string, unknown>;
    if (typeof obj.detail === "string") detail = obj.detail;
    const errors = obj.errors && typeof obj.errors === "object" ? (obj.errors as Record<string, unknown>) : null;
    // DRF's default handler puts field errors at the top level; accept both.
    const source = errors ?? Object.fromEntries(Object.entries(obj).filter(([k]) => k !== "detail" && k !== "code"));
    for (const [key, value] of Object.entries(source)) {
      const messages = asMessages(value);
      if (messages.length) fieldErrors[key] = messages;
    }
  } else if (Array.isArray(body)) {
    detail = asMessages(body).join(" ");
  }
  for (const key of ["non_field_errors", "__all__"]) {
    if (fieldErrors[key]) {
      detail = detail || fieldErrors[key].join(" ");
      delete fieldErrors[key];
    }
  }
  if (!detail) detail = Object.keys(fieldErrors).length ? "Please correct the errors below." : statusMessage(status);
  return new ApiError(status, detail, fieldErrors, body);
}

export interface RequestOptions {
  method?: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  body?: unknown;
  signal?: AbortSignal;
}

/** Call the API and return the parsed JSON body (undefined for 204). Throws ApiError. */
export async function apiFetch<T>(path: string, options: RequestOptions = {}): Promise<T> {
  try {
    return await request<T>(path, options);
  } catch (error) {
    // A stale or missing CSRF cookie (e.g. rotated by a sign-in in another tab): fetch a fresh one and retry once.
    if (error instanceof ApiError && error.status === 403 && /csrf/i.test(error.detail)) {
      await ensureCsrf(true);
      return request<T>(path, options);
    }
    throw error;
  }
}

async function request<T>(path: string, options: RequestOptions): Promise<T> {
  const method = options.method ?? "GET";
  const headers: Record<string, string> = { Accept: "application/json" };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (UNSAFE_METHODS.has(method)) {
    if (!csrfToken()) await ensureCsrf(true);
    const token = csrfToken();
    if (token) headers["X-CSRFToken"] = token;
  }

  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: options.signal,
    });
  } catch (error) {
    if (error instanceof DOMException && error.name === "AbortError") throw error;
    throw new ApiError(0, NETWORK_ERROR_MESSAGE);
  }

  const text = await response.text();
  let body: unknown = undefined;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  }
  if (!response.ok) throw toApiError(response.status, typeof body === "string" ? null : body);
  return body as T;
}

export const api = {
  get: <T>(path: string, signal?: AbortSignal) => apiFetch<T>(path, { signal }),
  post: <T>(path: string, body?: unknown) => apiFetch<T>(path, { method: "POST", body: body ?? {} }),
  patch: <T>(path: string, body: unknown) => apiFetch<T>(path, { method: "PATCH", body }),
  delete: <T = void>(path: string) => apiFetch<T>(path, { method: "DELETE" }),
};

/** A plain-language message for any thrown value. */
export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) return error.detail;
  if (error instanceof Error) return error.message;
  return "Something went wrong.";
}
