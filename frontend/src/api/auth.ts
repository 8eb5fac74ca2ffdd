// Accounts endpoints (/api/auth/…) and their react-query hooks.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, ApiError } from "./client";
import type {
  ApiToken,
  ChangePasswordInput,
  HfTokenSaved,
  HfTokenStatus,
  LoginInput,
  Paginated,
  ProfileInput,
  RegisterInput,
  User,
} from "./types";

export const keys = {
  me: ["auth", "me"] as const,
  hfToken: ["auth", "hf-token"] as const,
  tokens: ["auth", "tokens"] as const,
};

/** The signed-in user, or null when the session is anonymous (401/403). */
export async function fetchMe(signal?: AbortSignal): Promise<User | null> {
  try {
    return await api.get<User>("/api/auth/me/", signal);
  } catch (error) {
    if (error instanceof ApiError && error.isAuthError) return null;
    throw error;
  }
}

export function useMe() {
  return useQuery({ queryKey: keys.me, queryFn: ({ signal }) => fetchMe(signal), staleTime: 60_000 });
}

export function useLogin() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (input: LoginInput) => api.post<User>("/api/auth/login/", input),
    onSuccess: (user) => {
      queryClient.clear();
      queryClient.setQueryData(keys.me, user);
    },
  });
}

export function useRegister() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (input: RegisterInput) => api.post<User>("/api/auth/register/", input),
    onSuccess: (user) => {
      queryClient.clear();
      queryClient.setQueryData(keys.me, user);
    },
  });
}

export function useLogout() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: () => api.post<unknown>("/api/auth/logout/"),
    onSettled: () => {
      queryClient.clear();
      queryClient.setQueryData(keys.me, null);
    },
  });
}

export function useUpdateProfile() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (input: ProfileInput) => api.patch<User>("/api/auth/me/", input),
    onSuccess: (user) => queryClient.setQueryData(keys.me, user),
  });
}

export function useChangePassword() {
  return useMutation({
    mutationFn: (input: ChangePasswordInput) => api.post<unknown>("/api/auth/change-password/", input),
  });
}

export function useHfToken() {
  return useQuery({
    queryKey: keys.hfToken,
    queryFn: ({ signal }) => api.get<HfTokenStatus>("/api/auth/hf-token/", signal),
  });
}

export function useSaveHfToken() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (token: string) => api.post<HfTokenSaved>("/api/auth/hf-token/", { token }),
    onSuccess: (saved) => {
      if (saved.valid) {
        queryClient.setQueryData<HfTokenStatus>(keys.hfToken, {
          present: true,
          last4: saved.last4,
          hf_username: saved.hf_username,
        });
      }
      void queryClient.invalidateQueries({ queryKey: keys.hfToken });
      void queryClient.invalidateQueries({ queryKey: keys.me });
    },
  });
}

export function useDeleteHfToken() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: () => api.delete("/api/auth/hf-token/"),
    onSuccess: () => {
      queryClient.setQueryData<HfTokenStatus>(keys.hfToken, { present: false, last4: null, hf_username: null });
      void queryClient.invalidateQueries({ queryKey: keys.me });
    },
  });
}

/** Accept both a plain list and a paginated page. */
function unpage<T>(data: T[] | Paginated<T>): T[] {
  return Array.isArray(data) ? data : data.results;
}

export function useApiTokens() {
  return useQuery({
    queryKey: keys.tokens,
    queryFn: async ({ signal }) => unpage(await api.get<ApiToken[] | Paginated<ApiToken>>("/api/auth/tokens/", signal)),
  });
}

export function useCreateApiToken() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (name: string) => api.post<ApiToken>("/api/auth/tokens/", { name }),
    onSuccess: () => queryClient.invalidateQueries({ queryKey: keys.tokens }),
  });
}

export function useRevokeApiToken() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (id: ApiToken["id"]) => api.delete(`/api/auth/tokens/${encodeURIComponent(String(id))}/`),
    onSuccess: () => queryClient.invalidateQueries({ queryKey: keys.tokens }),
  });
}
