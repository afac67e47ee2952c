/**
 * The page's script and stylesheet, served as files of the console ('self' in the Content-Security-Policy:
 * no inline script or style anywhere). The script only makes the page live; every form works without it.
 *
 * Script: Server-Sent Events from /events carry the re-rendered pending and account lists; elements whose
 * hash is unchanged stay in place (keeping anything typed into them). It also counts device codes down and
 * shows times in the browser's time zone.
 */
export const CONSOLE_JS = `'use strict';
(() => {
  const live = document.getElementById('live');
  const setLive = (state, text) => {
    if (!live) return;
    live.dataset.state = state;
    live.textContent = text;
  };

  const tick = () => {
    for (const element of document.querySelectorAll('[data-expires]')) {
      const left = Math.max(0, Math.round((Number(element.dataset.expires) - Date.now()) / 1000));
      element.textContent =
        left > 0 ? Math.floor(left / 60) + ':' + String(left % 60).padStart(2, '0') + ' min' : 'no time: it has expired';
    }
  };

  const decorate = (root) => {
    for (const element of root.querySelectorAll('time[datetime]')) {
      if (element.closest('[data-expires]')) continue;
      const date = new Date(element.getAttribute('datetime'));
      if (!Number.isNaN(date.getTime())) {
        element.textContent = date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
      }
    }
    tick();
  };

  const reconcile = (container, markup) => {
    const template = document.createElement('template');
    template.innerHTML = markup;
    const wanted = Array.from(template.content.children);
    const current = new Map();
    for (const child of Array.from(container.children)) if (child.id) current.set(child.id, child);
    const nodes = wanted.map((node) => {
      const existing = node.id ? current.get(node.id) : undefined;
      if (existing && existing.dataset.hash === node.dataset.hash) return existing;
      decorate(node);
      return node;
    });
    const keep = new Set(nodes);
    for (const child of Array.from(container.children)) if (!keep.has(child)) child.remove();
    nodes.forEach((node, index) => {
      const at = container.children[index];
      if (at !== node) container.insertBefore(node, at || null);
    });
  };

  decorate(document);
  setInterval(tick, 1000);

  if (!('EventSource' in window)) return;
  const source = new EventSource('/events');
  source.addEventListener('open', () => setLive('live', 'live'));
  source.addEventListener('update', (event) => {
    const data = JSON.parse(event.data);
    for (const [id, markup] of Object.entries(data.sections)) {
      const container = document.getElementById(id);
      if (container) reconcile(container, markup);
    }
    document.title = (data.pendingCount > 0 ? '(' + data.pendingCount + ') ' : '') + 'mailbridge console';
    setLive('live', 'live');
  });
  source.addEventListener('error', () => {
    if (source.readyState === EventSource.CLOSED) {
      setLive('closed', 'disconnected: sign in again with the URL mailbridge printed at start');
    } else {
      setLive('reconnecting', 'reconnecting…');
    }
  });
})();
`;

export const CONSOLE_CSS = `:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --fg: #1d2330; --muted: #5d6778; --card: #fff; --line: #d9dde4;
  --accent: #1f5fbf; --ok: #1d7a3a; --warn: #a05a00; --bad: #b3261e;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #15181e; --fg: #e4e7ec; --muted: #9aa3b2; --card: #1d2129; --line: #333a46; --accent: #7aa7ff; --ok: #5cc27a; --warn: #e0a347; --bad: #ff8a80; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); }
header { display: flex; align-items: center; gap: 1rem; padding: .8rem 1.5rem; background: var(--card); border-bottom: 1px solid var(--line); }
header h1 { font-size: 1.3rem; margin: 0; }
header form.reload { margin-left: auto; }
main { padding: 0 1.5rem 1rem; max-width: 80rem; }
h2 { font-size: 1.05rem; margin: 1.4rem 0 .6rem; }
h3 { font-size: 1rem; margin: 0 0 .4rem; }
footer { padding: 1rem 1.5rem; color: var(--muted); font-size: .9rem; }
a { color: var(--accent); }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .92em; }
.live { font-size: .8rem; padding: .1rem .5rem; border-radius: 1rem; border: 1px solid var(--line); color: var(--muted); }
.live[data-state="live"] { color: var(--ok); border-color: var(--ok); }
.live[data-state="closed"] { color: var(--bad); border-color: var(--bad); }
.flash { margin: .8rem 1.5rem 0; padding: .5rem .8rem; border-radius: .4rem; border: 1px solid var(--line); background: var(--card); }
.flash-ok { border-color: var(--ok); }
.flash-error { border-color: var(--bad); color: var(--bad); }
table { width: 100%; border-collapse: collapse; background: var(--card); border: 1px solid var(--line); border-radius: .4rem; }
th, td { text-align: left; vertical-align: top; padding: .55rem .7rem; border-bottom: 1px solid var(--line); }
th { font-size: .85rem; color: var(--muted); font-weight: 600; }
td.name { font-weight: 600; word-break: break-all; }
.flow, .meta, .hint, .none { color: var(--muted); font-weight: normal; font-size: .88rem; }
.state { display: inline-block; padding: 0 .45rem; border-radius: .3rem; font-size: .85rem; font-weight: 600; border: 1px solid currentColor; }
.state-valid { color: var(--ok); }
.state-refresh-due { color: var(--warn); }
.state-expired, .state-none { color: var(--bad); }
.error { color: var(--bad); }
.remedy { font-size: .9rem; margin-top: .2rem; }
.pending { background: var(--card); border: 1px solid var(--line); border-left: 4px solid var(--warn); border-radius: .4rem; padding: .8rem 1rem; margin-bottom: .7rem; }
.pending .kind { font-weight: normal; color: var(--muted); font-size: .85rem; }
.user-code code { font-size: 1.6rem; letter-spacing: .15rem; padding: .2rem .6rem; border: 1px dashed var(--line); border-radius: .3rem; }
.countdown { font-weight: 600; }
.empty { color: var(--muted); }
form { margin: .3rem 0; }
label { display: block; font-size: .88rem; margin-bottom: .3rem; }
input[type="url"], input[type="password"] { display: block; width: 100%; max-width: 34rem; margin-top: .2rem; padding: .35rem .5rem; border: 1px solid var(--line); border-radius: .3rem; background: var(--bg); color: var(--fg); font: inherit; }
button, a.button { display: inline-block; padding: .35rem .8rem; border-radius: .3rem; border: 1px solid var(--accent); background: var(--accent); color: #fff; font: inherit; cursor: pointer; text-decoration: none; }
button.danger { background: var(--bad); border-color: var(--bad); }
details summary { cursor: pointer; color: var(--accent); font-size: .9rem; }
td.actions { min-width: 16rem; }
body.message main { max-width: 40rem; margin: 3rem auto; background: var(--card); border: 1px solid var(--line); border-radius: .5rem; padding: 1rem 1.5rem; }
`;
