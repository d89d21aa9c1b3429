/**
 * The proxy's HTTPS API as both sides see it: paths and JSON shapes. Field
 * names are snake_case on the wire.
 */
import type * as v from 'valibot';
import type { ApiErrorSchema, HeadlessPollRequestSchema, HeadlessPollResponseSchema, HeadlessStartRequestSchema, HeadlessStartResponseSchema, LoginResultSchema, LoginStartRequestSchema, LoginStartResponseSchema, PingResponseSchema, TlsRouteAnswerSchema, TlsRouteRequestSchema } from './schema.js';

export const API = {
  ping: '/v1/ping',
  loginStart: '/v1/login/start',
  oidcCallback: '/v1/login/oidc/callback',
  headlessStart: '/v1/login/headless/start',
  headlessPoll: '/v1/login/headless/poll',
  /** The approval page of a headless login: `${headlessPage}<request_id>` on the proxy's public address. */
  headlessPage: '/web/headless/',
} as const;

// The shapes are declared once, as valibot schemas (api/schema.ts): both
// sides use the types derived from them, and tsh parses every answer with them.

/** GET /v1/ping: what a client needs to know before logging in. */
export type PingResponse = v.InferOutput<typeof PingResponseSchema>;

/** POST /v1/login/start */
export type LoginStartRequest = v.InferOutput<typeof LoginStartRequestSchema>;

export type LoginStartResponse = v.InferOutput<typeof LoginStartResponseSchema>;

/** The sealed payload tsh receives at its loopback listener (`response=` parameter). */
export type LoginResult = v.InferOutput<typeof LoginResultSchema>;

/** POST /v1/login/headless/start */
export type HeadlessStartRequest = v.InferOutput<typeof HeadlessStartRequestSchema>;
export type HeadlessStartResponse = v.InferOutput<typeof HeadlessStartResponseSchema>;
/** POST /v1/login/headless/poll */
export type HeadlessPollRequest = v.InferOutput<typeof HeadlessPollRequestSchema>;
export type HeadlessPollResponse = v.InferOutput<typeof HeadlessPollResponseSchema>;

/** The TLS route's request and answer lines (shared/wire-names.ts TLS_ROUTE_ALPN). */
export type TlsRouteRequest = v.InferOutput<typeof TlsRouteRequestSchema>;
export type TlsRouteAnswer = v.InferOutput<typeof TlsRouteAnswerSchema>;

/** Query parameters of the loopback callback when the login failed. */
export interface LoginCallbackError {
  error: string;
  error_description: string;
}

/** Errors from the API: JSON with a stable code. */
export type ApiError = v.InferOutput<typeof ApiErrorSchema>;
