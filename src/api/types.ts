/**
 * The proxy's HTTPS API as both sides see it: paths and JSON shapes. Field
 * names are snake_case on the wire.
 */
import type * as v from 'valibot';
import type { NodeHeartbeatRequestSchema, NodeHeartbeatResponseSchema, NodeJoinRequestSchema, NodeJoinResponseSchema, NodeRenewRequestSchema, NodeRenewResponseSchema, ApiErrorSchema, HeadlessPollRequestSchema, HeadlessPollResponseSchema, HeadlessStartRequestSchema, HeadlessStartResponseSchema, LoginResultSchema, LoginStartRequestSchema, LoginStartResponseSchema, PingResponseSchema, RecordingListResponseSchema, RecordingSummarySchema, TlsRouteAnswerSchema, TlsRouteRequestSchema } from './schema.js';

export const API = {
  ping: '/v1/ping',
  loginStart: '/v1/login/start',
  oidcCallback: '/v1/login/oidc/callback',
  headlessStart: '/v1/login/headless/start',
  headlessPoll: '/v1/login/headless/poll',
  /** The approval page of a headless login: `${headlessPage}<request_id>` on the proxy's public address. */
  headlessPage: '/web/headless/',
  /** GET: the recordings the certificate may see (RecordingListResponse). */
  recordings: '/v1/recordings',
  /** GET `${recording}<session id>`: the asciicast file (application/x-asciicast), streamed. */
  recording: '/v1/recordings/',
  nodeJoin: '/v1/nodes/join',
  nodeHeartbeat: '/v1/nodes/heartbeat',
  nodeRenew: '/v1/nodes/renew',
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

/** GET /v1/recordings */
export type RecordingListResponse = v.InferOutput<typeof RecordingListResponseSchema>;
export type RecordingSummary = v.InferOutput<typeof RecordingSummarySchema>;

/** Errors from the API: JSON with a stable code. */
export type ApiError = v.InferOutput<typeof ApiErrorSchema>;

/** POST /v1/nodes/join, /v1/nodes/heartbeat, /v1/nodes/renew (jumpgate node start). */
export type NodeJoinRequest = v.InferOutput<typeof NodeJoinRequestSchema>;
export type NodeJoinResponse = v.InferOutput<typeof NodeJoinResponseSchema>;
export type NodeHeartbeatRequest = v.InferOutput<typeof NodeHeartbeatRequestSchema>;
export type NodeHeartbeatResponse = v.InferOutput<typeof NodeHeartbeatResponseSchema>;
export type NodeRenewRequest = v.InferOutput<typeof NodeRenewRequestSchema>;
export type NodeRenewResponse = v.InferOutput<typeof NodeRenewResponseSchema>;
