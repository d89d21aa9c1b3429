/**
 * Jumpgate's one network layer: every outbound connection of tsh and of the
 * server goes through here, so HTTPS_PROXY/NO_PROXY behave the same for SSH
 * and HTTPS. See proxy-env.ts (which variables), no-proxy.ts (NO_PROXY
 * syntax), connect.ts (TCP and CONNECT tunnels), http.ts (undici dispatcher).
 */
export { dial, describeRoute, DEFAULT_DIAL_TIMEOUT_MS, type DialOptions, type DialTarget } from './connect.js';
export { NetError, type NetErrorCode } from './errors.js';
export { createHttpDispatcher, httpRequest, unwrapFetchError, type HttpDispatcherOptions, type HttpRequestOptions, type HttpResponse } from './http.js';
export { findNoProxyMatch, matchesNoProxy, parseNoProxy, type NoProxyList, type NoProxyRule } from './no-proxy.js';
export { ProxyEnvironment, resolveProxy, type Env, type ProxyDecision, type ProxyScheme, type ProxyTarget } from './proxy-env.js';
