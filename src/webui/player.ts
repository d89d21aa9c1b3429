/**
 * The recordings player: an asciicast v2 file
 * (https://docs.asciinema.org/manual/asciicast/v2/) played into xterm.js,
 * with play/pause, seek and speed.
 *
 * Why our own rather than asciinema-player 3.x: the page already bundles
 * xterm.js (the web terminal), so the player costs a few KB instead of a
 * second terminal emulator; and asciinema-player 3.x emulates the terminal
 * in WebAssembly, which the page's CSP would have to allow
 * (`'wasm-unsafe-eval'`), while xterm.js needs only the style nonce the page
 * already hands it.
 *
 * Time: gaps between events longer than the header's `idle_time_limit`
 * (else IDLE_LIMIT_S) are cut to it, as `tsh play --idle-limit` does; the
 * slider and the clock show that cut time. Seeking redraws from the start
 * (reset, then every output and resize up to the new time in one write):
 * recordings are capped server-side (recordings.max_bytes_per_session).
 * Only "o" (output) and "r" (resize) events are drawn; "i" (input) and "m"
 * (markers, e.g. truncation) are counted, not shown on the terminal.
 */
import { Terminal } from '@xterm/xterm';
import { clock, isDim, type Cast } from './cast.js';

export { clock, parseCast } from './cast.js';

/** Smallest font the player shrinks to (a 150-column session on a 390 px phone); below it the box scrolls. */
const MIN_FONT_PX = 4;
/** Speeds offered. */
export const SPEEDS = [0.5, 1, 2, 4, 8] as const;

function resizeOf(data: string): { cols: number; rows: number } | undefined {
  const m = /^(\d{1,5})x(\d{1,5})$/.exec(data);
  if (!m) return undefined;
  const cols = Number(m[1]);
  const rows = Number(m[2]);
  return isDim(cols) && isDim(rows) && cols <= 1000 && rows <= 500 ? { cols, rows } : undefined;
}

/** What the view gives the player: where to draw and the controls to drive. */
export interface PlayerParts {
  screen: HTMLElement;
  toggle: HTMLButtonElement;
  seek: HTMLInputElement;
  speed: HTMLSelectElement;
  time: HTMLElement;
}

/**
 * Plays `cast` into a new xterm.js terminal in `parts.screen` and wires the
 * controls. Sets `document.body.dataset.player` to paused / playing / ended
 * (what tests and styles read). Returns a function that stops and disposes it.
 */
export function startPlayer(cast: Cast, parts: PlayerParts): () => void {
  const term = new Terminal({ cols: cast.width, rows: cast.height, disableStdin: true, scrollback: 1000, fontFamily: 'ui-monospace, Menlo, Consolas, monospace', fontSize: 14, cursorBlink: false });
  term.open(parts.screen);
  // Fit the recorded width to the box by the font size (a phone shows an 80-column session whole).
  const fitFont = () => {
    const width = parts.screen.clientWidth - 8;
    const size = Math.max(MIN_FONT_PX, Math.min(14, Math.floor(width / (term.cols * 0.62))));
    if (term.options.fontSize !== size) term.options.fontSize = size;
  };
  fitFont();
  const observer = new ResizeObserver(fitFont);
  observer.observe(parts.screen);

  let pos = 0; // seconds on the cut timeline
  let next = 0; // index of the next event to draw
  let speed = 1;
  let playing = false;
  let timer: number | undefined;
  let wallStart = 0;
  let posStart = 0;
  parts.seek.max = String(cast.duration);
  parts.seek.step = 'any';

  const show = () => {
    parts.time.textContent = `${clock(pos)} / ${clock(cast.duration)}`;
    parts.seek.value = String(pos);
    parts.seek.setAttribute('aria-valuetext', `${clock(pos)} of ${clock(cast.duration)}`);
    parts.toggle.textContent = playing ? 'Pause' : 'Play';
    parts.toggle.setAttribute('aria-label', playing ? 'Pause' : 'Play');
    document.body.dataset['player'] = playing ? 'playing' : pos >= cast.duration ? 'ended' : 'paused';
  };
  // xterm.js parses writes later, in order; reset and resize act at once. So
  // both go through the write queue (a write's callback runs once it is
  // parsed), or a seek would reset before the previous draw and show both.
  const resizeQueued = (cols: number, rows: number) =>
    term.write('', () => {
      term.resize(cols, rows);
      fitFont();
    });
  /** Draws every event up to `t` (from `next` on): the output between resizes in one write. */
  const drawTo = (t: number) => {
    let out = '';
    while (next < cast.events.length && cast.events[next]![0] <= t) {
      const [, code, data] = cast.events[next++]!;
      if (code === 'o') out += data;
      else if (code === 'r') {
        const size = resizeOf(data);
        if (size) {
          if (out) term.write(out);
          out = '';
          resizeQueued(size.cols, size.rows);
        }
      }
    }
    if (out) term.write(out);
  };
  const stop = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    playing = false;
  };
  const tick = () => {
    pos = Math.min(cast.duration, posStart + ((performance.now() - wallStart) / 1000) * speed);
    drawTo(pos);
    if (pos >= cast.duration) stop();
    else timer = window.setTimeout(tick, next < cast.events.length ? Math.max(10, Math.min(100, ((cast.events[next]![0] - pos) * 1000) / speed)) : 100);
    show();
  };
  const play = () => {
    if (pos >= cast.duration) seekTo(0);
    playing = true;
    wallStart = performance.now();
    posStart = pos;
    tick();
  };
  const seekTo = (t: number) => {
    const was = playing;
    stop();
    pos = Math.max(0, Math.min(cast.duration, t));
    // RIS (ESC c) through the queue: a full reset after whatever was drawn before.
    term.write('\x1bc');
    resizeQueued(cast.width, cast.height);
    next = 0;
    drawTo(pos);
    if (was && pos < cast.duration) play();
    else show();
  };

  parts.toggle.addEventListener('click', () => (playing ? (stop(), show()) : play()));
  parts.seek.addEventListener('input', () => seekTo(Number(parts.seek.value)));
  parts.speed.replaceChildren(...SPEEDS.map((s) => Object.assign(document.createElement('option'), { value: String(s), textContent: `${s}×`, selected: s === 1 })));
  parts.speed.addEventListener('change', () => {
    speed = Number(parts.speed.value) || 1;
    if (playing) {
      posStart = pos;
      wallStart = performance.now();
    }
  });
  // Space toggles, arrows seek 5 s, anywhere on the player but its form controls.
  const keys = (ev: KeyboardEvent) => {
    if (ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement || ev.target instanceof HTMLButtonElement) return;
    if (ev.key === ' ') parts.toggle.click();
    else if (ev.key === 'ArrowRight') seekTo(pos + 5);
    else if (ev.key === 'ArrowLeft') seekTo(pos - 5);
    else return;
    ev.preventDefault();
  };
  parts.screen.addEventListener('keydown', keys);
  show();
  play();
  return () => {
    stop();
    observer.disconnect();
    parts.screen.removeEventListener('keydown', keys);
    term.dispose();
    delete document.body.dataset['player'];
  };
}
