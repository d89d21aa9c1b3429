/**
 * The web UI (https://<proxy>/web): sign in, the nodes you may reach, a
 * terminal in the browser, recordings, the audit log (review_sessions), sign
 * out. No framework: six small views over plain DOM calls (`h`), hash
 * routing, and every piece of server text set as textContent (never HTML),
 * so nothing needs an inline script, inline style or eval (the page's CSP
 * forbids all three). The server side is src/server/web/.
 */
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import '@xterm/xterm/css/xterm.css';
import './style.css';
import { clock, parseCast, startPlayer } from './player.js';

interface Me {
  user: string;
  roles: string[];
  logins: string[];
  csrf_token: string;
  expires_at: string;
  review_sessions: boolean;
  cluster_name: string;
}
interface RecordingRow {
  session_id: string;
  user: string;
  login: string;
  node: string;
  start: string;
  end?: string;
  duration_ms?: number;
  size: number;
  truncated: boolean;
}
interface NodeRow {
  name: string;
  labels: Record<string, string>;
}

// xterm.js creates <style> elements for its theme and sizes; the CSP allows
// style elements only with this response's nonce, which the stylesheet link carries.
const styleNonce = document.querySelector<HTMLLinkElement>('link[rel=stylesheet]')?.nonce ?? '';
const createElement = document.createElement.bind(document);
document.createElement = ((tag: string, options?: ElementCreationOptions) => {
  const el = createElement(tag, options);
  if (tag.toLowerCase() === 'style' && styleNonce) el.setAttribute('nonce', styleNonce);
  return el;
}) as typeof document.createElement;

const main = document.getElementById('main')!;
const status = document.getElementById('status')!;
let me: Me | undefined;
let closeView: (() => void) | undefined;

/** An element with attributes and children; text children become text nodes (never parsed as HTML). */
function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string | boolean> = {}, ...children: Array<Node | string>): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, val] of Object.entries(attrs)) {
    if (val === false) continue;
    el.setAttribute(k, val === true ? '' : val);
  }
  for (const c of children) el.append(c);
  return el;
}

function say(text: string): void {
  status.textContent = text;
}

class NotSignedIn extends Error {}

async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(path, { credentials: 'same-origin', ...init });
  if (res.status === 401) throw new NotSignedIn();
  const body = (await res.json().catch(() => ({}))) as { error?: { message?: string } };
  if (!res.ok) throw new Error(body.error?.message ?? `${res.status} ${res.statusText}`);
  return body as T;
}

function signInView(message = ''): void {
  document.getElementById('nav')!.hidden = true;
  document.getElementById('signout')!.hidden = true;
  document.getElementById('who')!.textContent = '';
  main.replaceChildren(
    h('section', { class: 'card', 'aria-labelledby': 'signin-title' },
      h('h1', { id: 'signin-title' }, 'Sign in'),
      ...(message ? [h('p', { class: 'note' }, message)] : []),
      h('p', {}, 'Sign in with your organisation account to see your nodes and open a terminal.'),
      h('a', { class: 'button primary', href: '/web/login', id: 'signin' }, 'Sign in with SSO'),
    ),
  );
}

async function loadMe(): Promise<Me | undefined> {
  try {
    me = await api<Me>('/web/api/me');
  } catch (err) {
    if (err instanceof NotSignedIn) return undefined;
    throw err;
  }
  document.getElementById('cluster')!.textContent = me.cluster_name;
  document.getElementById('who')!.textContent = me.user;
  document.getElementById('nav')!.hidden = false;
  document.getElementById('signout')!.hidden = false;
  document.querySelector<HTMLElement>('[data-view=audit]')!.hidden = !me.review_sessions;
  return me;
}

function labelText(labels: Record<string, string>): string {
  return Object.entries(labels).map(([k, val]) => `${k}=${val}`).join(' ');
}

/** `env=prod web` matches nodes whose labels include env=prod and whose name or labels contain "web". */
function matches(node: NodeRow, filter: string): boolean {
  const words = filter.trim().toLowerCase().split(/\s+/).filter(Boolean);
  const hay = `${node.name} ${labelText(node.labels)}`.toLowerCase();
  return words.every((w) => {
    const eq = w.indexOf('=');
    if (eq > 0) return (node.labels[w.slice(0, eq)] ?? '').toLowerCase() === w.slice(eq + 1);
    return hay.includes(w);
  });
}

async function nodesView(): Promise<void> {
  const { nodes, logins } = await api<{ nodes: NodeRow[]; logins: string[] }>('/web/api/nodes');
  const filter = h('input', { type: 'search', id: 'filter', placeholder: 'env=prod web', autocomplete: 'off', 'aria-describedby': 'filter-help' });
  const loginSelect = h('select', { id: 'login' }, ...logins.map((l) => h('option', { value: l }, l)));
  const tbody = h('tbody');
  const count = h('p', { id: 'count', class: 'muted', 'aria-live': 'polite' });
  const render = () => {
    const shown = nodes.filter((n) => matches(n, filter.value));
    tbody.replaceChildren(
      ...shown.map((n) =>
        h('tr', {},
          h('th', { scope: 'row' }, n.name),
          h('td', {}, ...Object.entries(n.labels).map(([k, val]) => h('span', { class: 'label' }, `${k}=${val}`))),
          h('td', {}, h('a', { class: 'button', href: `#/terminal/${encodeURIComponent(n.name)}`, 'aria-label': `Connect to ${n.name}` }, 'Connect')),
        ),
      ),
    );
    count.textContent = `${shown.length} of ${nodes.length} nodes`;
  };
  filter.addEventListener('input', render);
  loginSelect.addEventListener('change', () => sessionStorage.setItem('login', loginSelect.value));
  const saved = sessionStorage.getItem('login');
  if (saved && logins.includes(saved)) loginSelect.value = saved;
  main.replaceChildren(
    h('section', { 'aria-labelledby': 'nodes-title' },
      h('h1', { id: 'nodes-title' }, 'Nodes'),
      h('div', { class: 'toolbar' },
        h('label', { for: 'filter' }, 'Filter'), filter,
        h('label', { for: 'login' }, 'Log in as'), loginSelect,
      ),
      h('p', { id: 'filter-help', class: 'muted' }, 'Words match names and labels; key=value matches a label exactly.'),
      count,
      h('table', { class: 'nodes' },
        h('caption', { class: 'sr-only' }, 'Nodes you may reach'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Labels'), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Action')))),
        tbody,
      ),
    ),
  );
  render();
}

function terminalView(node: string): void {
  const login = sessionStorage.getItem('login') ?? me!.logins[0]!;
  const banner = h('p', { id: 'term-status', class: 'term-status', role: 'status', 'aria-live': 'polite' }, `Connecting to ${login}@${node}…`);
  const box = h('div', { id: 'terminal', class: 'terminal', role: 'region', 'aria-label': `Terminal: ${login}@${node}` });
  main.replaceChildren(
    h('section', { class: 'term-view', 'aria-labelledby': 'term-title' },
      h('div', { class: 'term-head' },
        h('h1', { id: 'term-title' }, `${login}@${node}`),
        h('a', { href: '#/nodes', class: 'button' }, 'Back to nodes'),
      ),
      banner,
      box,
    ),
  );
  const term = new Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000, screenReaderMode: false, fontFamily: 'ui-monospace, Menlo, Consolas, monospace' });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();
  term.focus();
  const ws = new WebSocket(`wss://${location.host}/web/api/terminal`);
  ws.binaryType = 'arraybuffer';
  const encoder = new TextEncoder();
  let open = false;
  ws.addEventListener('open', () => ws.send(JSON.stringify({ type: 'start', csrf: me!.csrf_token, node, login, cols: term.cols, rows: term.rows })));
  ws.addEventListener('message', (ev: MessageEvent<ArrayBuffer | string>) => {
    if (typeof ev.data !== 'string') return term.write(new Uint8Array(ev.data));
    const msg = JSON.parse(ev.data) as { type: string; message?: string; reason?: string; session_id?: string };
    if (msg.type === 'ready') {
      open = true;
      banner.textContent = `Connected to ${login}@${node} (session ${msg.session_id ?? ''})`;
      document.body.dataset['terminal'] = 'ready';
    } else if (msg.type === 'end') {
      open = false;
      banner.textContent = msg.message ?? 'The session ended.';
      banner.className = `term-status ${msg.reason === 'exit' ? '' : 'ended'}`;
      document.body.dataset['terminal'] = `ended-${msg.reason ?? 'exit'}`;
    }
  });
  ws.addEventListener('close', () => {
    if (open) {
      banner.textContent = 'The connection to the proxy was lost.';
      document.body.dataset['terminal'] = 'ended-lost';
    }
    open = false;
  });
  const input = term.onData((d) => {
    if (open) ws.send(encoder.encode(d));
  });
  const resize = term.onResize(({ cols, rows }) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'resize', cols, rows }));
  });
  const observer = new ResizeObserver(() => fit.fit());
  observer.observe(box);
  closeView = () => {
    observer.disconnect();
    input.dispose();
    resize.dispose();
    ws.close();
    term.dispose();
    delete document.body.dataset['terminal'];
  };
}

async function auditView(): Promise<void> {
  const { events } = await api<{ events: Array<Record<string, unknown>> }>('/web/api/audit?limit=200');
  const rows = events.slice().reverse().map((e) =>
    h('tr', {},
      h('td', {}, String(e['time'] ?? '')),
      h('td', {}, String(e['event'] ?? '')),
      h('td', {}, String(e['user'] ?? e['claimed_user'] ?? '')),
      h('td', { class: 'detail' }, Object.entries(e).filter(([k]) => !['time', 'event', 'user', 'seq', 'server_id'].includes(k)).map(([k, val]) => `${k}=${typeof val === 'string' ? val : JSON.stringify(val)}`).join(' ')),
    ),
  );
  main.replaceChildren(
    h('section', { 'aria-labelledby': 'audit-title' },
      h('h1', { id: 'audit-title' }, 'Audit log'),
      h('p', { class: 'muted' }, `The newest ${events.length} events, newest first.`),
      h('div', { class: 'scroll' },
        h('table', { class: 'audit' },
          h('thead', {}, h('tr', {}, ...['Time', 'Event', 'User', 'Details'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, ...rows),
        ),
      ),
    ),
  );
}

function sizeText(bytes: number): string {
  return bytes < 1024 ? `${bytes} B` : bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** The recordings the user may see (their own; everyone's for review_sessions: the server decides). */
async function recordingsView(): Promise<void> {
  const { recordings } = await api<{ recordings: RecordingRow[] }>('/web/api/recordings');
  const rows = recordings.map((r) => {
    const when = new Date(r.start).toLocaleString();
    return h('tr', {},
      h('td', {}, when),
      h('td', {}, r.user),
      h('th', { scope: 'row', class: 'mono' }, `${r.login}@${r.node}`),
      h('td', {}, r.duration_ms !== undefined ? clock(r.duration_ms / 1000) : r.end ? '' : 'running'),
      h('td', {}, sizeText(r.size) + (r.truncated ? ' (truncated)' : '')),
      h('td', {}, h('a', { class: 'button', href: `#/play/${encodeURIComponent(r.session_id)}`, 'aria-label': `Play the session of ${r.user} as ${r.login}@${r.node} at ${when}` }, 'Play')),
    );
  });
  main.replaceChildren(
    h('section', { 'aria-labelledby': 'rec-title' },
      h('h1', { id: 'rec-title' }, 'Recordings'),
      h('p', { class: 'muted', id: 'rec-count' }, recordings.length
        ? `${recordings.length} recording${recordings.length === 1 ? '' : 's'}${me!.review_sessions ? ' (everyone\'s: your role reviews sessions)' : ' of your sessions'}, newest first.`
        : 'No recordings you may see. Sessions are recorded when the cluster records them (auth.session_recording: proxy).'),
      h('div', { class: 'scroll' },
        h('table', { class: 'recordings' },
          h('caption', { class: 'sr-only' }, 'Session recordings'),
          h('thead', {}, h('tr', {}, ...['Started', 'User', 'Session', 'Length', 'Size'].map((t) => h('th', { scope: 'col' }, t)), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Action')))),
          h('tbody', {}, ...rows),
        ),
      ),
    ),
  );
}

/** The player for one recording (player.ts). */
async function playView(sessionId: string): Promise<void> {
  const res = await fetch(`/web/api/recordings/${encodeURIComponent(sessionId)}`, { credentials: 'same-origin' });
  if (res.status === 401) throw new NotSignedIn();
  if (!res.ok) {
    const body = (await res.json().catch(() => ({}))) as { error?: { message?: string } };
    main.replaceChildren(
      h('section', { 'aria-labelledby': 'play-title' },
        h('h1', { id: 'play-title' }, 'Recording'),
        h('p', { class: 'note', id: 'play-error', role: 'alert' }, body.error?.message ?? `${res.status} ${res.statusText}`),
        h('a', { href: '#/recordings', class: 'button' }, 'Back to recordings'),
      ),
    );
    return;
  }
  const cast = parseCast(await res.text());
  const toggle = h('button', { type: 'button', id: 'play-toggle', class: 'primary' }, 'Play');
  const seek = h('input', { type: 'range', id: 'play-seek', min: '0', value: '0', 'aria-label': 'Position' });
  const speed = h('select', { id: 'play-speed' });
  const time = h('span', { id: 'play-time', class: 'mono', 'aria-live': 'off' });
  const screen = h('div', { id: 'player', class: 'terminal player', role: 'region', tabindex: '0', 'aria-label': `Recording of session ${sessionId}: space plays or pauses, arrows seek 5 seconds` });
  main.replaceChildren(
    h('section', { class: 'play-view', 'aria-labelledby': 'play-title' },
      h('div', { class: 'term-head' },
        h('h1', { id: 'play-title' }, 'Recording'),
        h('a', { href: '#/recordings', class: 'button' }, 'Back to recordings'),
      ),
      h('div', { class: 'controls', role: 'group', 'aria-label': 'Playback' },
        toggle, seek, time,
        h('label', { for: 'play-speed' }, 'Speed'), speed,
      ),
      ...(cast.markers.length ? [h('p', { class: 'muted' }, cast.markers.join('; '))] : []),
      screen,
    ),
  );
  closeView = startPlayer(cast, { screen, toggle, seek, speed, time });
}

async function route(): Promise<void> {
  closeView?.();
  closeView = undefined;
  say('');
  if (!me && !(await loadMe())) return signInView();
  const [, view = 'nodes', arg] = location.hash.split('/');
  for (const a of document.querySelectorAll<HTMLAnchorElement>('#nav a')) {
    if (a.dataset['view'] === (view === 'play' ? 'recordings' : view)) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  try {
    if (view === 'terminal' && arg) terminalView(decodeURIComponent(arg));
    else if (view === 'audit' && me!.review_sessions) await auditView();
    else if (view === 'recordings') await recordingsView();
    else if (view === 'play' && arg) await playView(decodeURIComponent(arg));
    else await nodesView();
    if (view !== 'terminal' && view !== 'play') main.focus();
    if (view === 'play') document.getElementById('play-toggle')?.focus();
  } catch (err) {
    if (err instanceof NotSignedIn) {
      me = undefined;
      return signInView('Your session ended; sign in again.');
    }
    say((err as Error).message);
  }
}

document.getElementById('signout')!.addEventListener('click', async () => {
  try {
    await api('/web/api/logout', { method: 'POST', headers: { 'x-csrf-token': me?.csrf_token ?? '' } });
  } catch (err) {
    if (!(err instanceof NotSignedIn)) return say((err as Error).message);
  }
  closeView?.();
  closeView = undefined;
  me = undefined;
  history.replaceState(null, '', '/web');
  signInView('You are signed out.');
});
window.addEventListener('hashchange', () => void route());
void route();
