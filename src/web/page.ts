import { createHash } from 'node:crypto';
import { html, type SafeHtml, trusted } from './html.ts';
import type { Flash } from './sessions.ts';
import type { AccountStatus, ConsoleStatus, PendingStatus } from './status.ts';

/**
 * The console's HTML, rendered on the server from ConsoleStatus (so there is one place that escapes). The
 * live parts (pending requests, accounts) are lists of elements with a stable id and a hash of their
 * content: the page's script swaps in only the elements whose hash changed, so a half-typed password or
 * pasted URL in another row survives an update.
 */
export interface Sections {
  pending: string;
  accounts: string;
}

export function renderSections(status: ConsoleStatus, csrf: string): Sections {
  const pending =
    status.pending.length === 0
      ? keyed('p', 'pending-none', html`No authorisation is waiting.`, { class: 'empty' })
      : status.pending.map((item) =>
          keyed('article', `pending-${item.id}`, pendingItem(item, csrf), {
            class: 'pending',
            'data-account': item.account,
            'data-kind': item.kind,
          }),
        );
  const accounts =
    status.accounts.length === 0
      ? keyed(
          'tr',
          'account-none',
          html`<td colspan="5" class="empty">No account section in the configuration file yet.</td>`,
          {},
        )
      : status.accounts.map((account) =>
          keyed('tr', `account-${Buffer.from(account.account).toString('hex')}`, accountRow(account, csrf), {
            'data-account': account.account,
            'data-state': account.token.state,
          }),
        );
  const join = (parts: SafeHtml | SafeHtml[]) => (Array.isArray(parts) ? parts.join('') : parts.text);
  return { pending: join(pending), accounts: join(accounts) };
}

export function renderPage(status: ConsoleStatus, csrf: string, flash: Flash[]): string {
  const sections = renderSections(status, csrf);
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>mailbridge console</title>
<link rel="stylesheet" href="/console.css">
<script src="/console.js" defer></script>
</head>
<body>
<header>
  <h1>mailbridge</h1>
  <span id="live" class="live" data-state="static">static page</span>
  ${
    status.reloadAvailable
      ? html`<form method="post" action="/reload" class="reload">${csrfField(csrf)}<button type="submit">Reload configuration</button></form>`
      : ''
  }
</header>
<div id="flash" role="status">${flash.map((item) => html`<p class="flash flash-${item.kind}">${item.text}</p>`)}</div>
<main>
<section>
  <h2>Pending authorisations</h2>
  <div id="pending">${trusted(sections.pending)}</div>
</section>
<section>
  <h2>Accounts</h2>
  <table class="accounts">
    <thead><tr><th>Account</th><th>Token</th><th>Activity</th><th>Last error</th><th>Actions</th></tr></thead>
    <tbody id="accounts">${trusted(sections.accounts)}</tbody>
  </table>
</section>
<section>
  <h2>Servers</h2>
  ${
    status.servers.length === 0
      ? html`<p class="empty">No server section: nothing listens for mail clients.</p>`
      : html`<table class="servers"><thead><tr><th>Section</th><th>Listens on</th><th>Upstream</th></tr></thead><tbody>${status.servers.map(
          (server) =>
            html`<tr><td>${server.section}</td><td><code>${server.listen}</code></td><td><code>${server.upstream}</code></td></tr>`,
        )}</tbody></table>`
  }
</section>
</main>
<footer>
  Configuration <code>${status.configFile}</code> ·
  <a href="/api/status">status as JSON</a> · <a href="/metrics">metrics</a>
</footer>
</body>
</html>
`.text;
}

function pendingItem(item: PendingStatus, csrf: string): SafeHtml {
  const since = html`<p class="meta">Waiting since ${time(item.waitingSince)} · expires ${time(item.expiresAt)}</p>`;
  if (item.kind === 'device') {
    return html`<h3>${item.account} <span class="kind">device code</span></h3>
<p>Open <a href="${item.url}" target="_blank" rel="noopener noreferrer">${item.url}</a> on any device and enter the code</p>
<p class="user-code"><code>${item.userCode}</code></p>
<p>The code expires in <span class="countdown" data-expires="${Date.parse(item.expiresAt)}">${time(item.expiresAt)}</span>; mailbridge notices by itself when you have entered it.</p>
${since}`;
  }
  const paste = html`<form method="post" action="/pending/complete" class="paste">
${csrfField(csrf)}<input type="hidden" name="id" value="${item.id}">
<label>Address the browser was sent to after signing in
<input type="url" name="redirect" required autocomplete="off" spellcheck="false" placeholder="${item.redirectUri ?? 'http://localhost/'}?code=…&amp;state=…"></label>
<button type="submit">Complete</button>
</form>`;
  return html`<h3>${item.account} <span class="kind">sign-in</span></h3>
<p><a class="button authorise" href="${item.url}" target="_blank" rel="noopener noreferrer">Authorise ${item.account}</a>
opens the provider's sign-in page.</p>
${
  item.completesHere
    ? html`<p class="hint">After you sign in, the provider sends your browser back to this console, which completes the authorisation by itself.</p>
<details><summary>Signed in on another device?</summary>${paste}</details>`
    : html`<p class="hint">After you sign in, the browser goes to <code>${item.redirectUri ?? 'the redirect_uri'}</code>, which may show an error page: copy the whole address from the address bar and paste it here.</p>${paste}`
}
${since}`;
}

const STATE_WORDS = {
  valid: 'valid',
  'refresh-due': 'refreshes at next use',
  expired: 'expired',
  none: 'not authorised',
} as const;

function accountRow(account: AccountStatus, csrf: string): SafeHtml {
  const { token } = account;
  const hasTokens = token.state !== 'none' || token.refreshTokenPresent;
  const tokenCell = html`<span class="state state-${token.state}">${STATE_WORDS[token.state]}</span>
${token.validUntil ? html`<div>valid until ${time(token.validUntil)}</div>` : ''}
<div>refresh token: ${token.refreshTokenPresent ? 'present' : 'none'}</div>`;
  const activityCell = html`<div>servers: ${account.servers.length > 0 ? account.servers.join(', ') : 'none seen since start'}</div>
<div>last refresh: ${account.lastRefresh ? time(account.lastRefresh) : 'never'}</div>
<div>last login: ${account.lastActivity ? time(account.lastActivity) : 'none since start'}</div>`;
  const error = account.problem
    ? html`<div class="error">${account.problem}</div><div class="remedy">Fix the account's section in the configuration file, then reload the configuration.</div>`
    : account.lastError
      ? html`<div class="error">${account.lastError.message}</div><div class="remedy">${account.lastError.remedy}</div><div class="meta">${time(account.lastError.at)}</div>`
      : html`<span class="none">none</span>`;
  return html`<td class="name">${account.account}<div class="flow">${account.flow ?? ''}</div></td>
<td>${tokenCell}</td>
<td>${activityCell}</td>
<td>${error}</td>
<td class="actions">${actions(account, csrf, hasTokens)}</td>`;
}

function actions(account: AccountStatus, csrf: string, hasTokens: boolean): SafeHtml {
  const hidden = html`${csrfField(csrf)}<input type="hidden" name="account" value="${account.account}">`;
  // The username field lets a password manager offer the right password; the password is the mail client's.
  const password = html`<input type="text" name="username" value="${account.account}" autocomplete="username" hidden>
<label>Mail client password <input type="password" name="password" required autocomplete="current-password"></label>`;
  const parts: SafeHtml[] = [];
  if (account.pending) {
    parts.push(html`<a href="#pending-${account.pending}">authorisation waiting above</a>`);
  } else if (account.canAuthorise && !hasTokens) {
    parts.push(html`<form method="post" action="/accounts/authorise" class="authorise">${hidden}${password}
<button type="submit">Authorise</button></form>`);
  } else if (account.canAuthorise) {
    parts.push(html`<details><summary>Re-authorise…</summary><form method="post" action="/accounts/authorise" class="reauthorise">${hidden}<input type="hidden" name="again" value="yes">${password}
<p class="hint">The password is checked against the current tokens, which are then discarded, and a new authorisation starts.</p>
<button type="submit">Re-authorise</button></form></details>`);
  }
  if (hasTokens) {
    parts.push(html`<details><summary>Forget tokens…</summary><form method="post" action="/accounts/forget" class="forget">${hidden}
<label><input type="checkbox" name="confirm" value="yes" required> Delete this account's cached tokens</label>
<p class="hint">Its mail clients cannot log in until it is authorised again.</p>
<button type="submit" class="danger">Forget tokens</button></form></details>`);
  }
  return html`${parts}`;
}

function csrfField(csrf: string): SafeHtml {
  return html`<input type="hidden" name="csrf" value="${csrf}">`;
}

/** UTC on the server; the page's script shows it in the browser's own time zone. */
function time(iso: string): SafeHtml {
  return html`<time datetime="${iso}">${iso.replace('T', ' ').replace(/:\d\d(\.\d+)?Z$/, ' UTC')}</time>`;
}

/** An element with an id and a hash of everything in it, for the script's keyed update. */
function keyed(tag: string, id: string, inner: SafeHtml, attributes: Record<string, string>): SafeHtml {
  const extra = Object.entries(attributes).map(([name, value]) => html` ${name}="${value}"`);
  const hash = createHash('sha256')
    .update(`${JSON.stringify(attributes)}\n${inner.text}`)
    .digest('hex')
    .slice(0, 16);
  return html`<${trusted(tag)} id="${id}" data-hash="${hash}"${extra}>${inner}</${trusted(tag)}>`;
}

/** A small standalone page (the callback's answer, sign-in problems): no script, no stylesheet needed. */
export function renderMessagePage(
  title: string,
  message: string,
  link?: { href: string; text: string },
): string {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="same-origin"><title>${title}</title>
<link rel="stylesheet" href="/console.css"></head>
<body class="message"><main><h1>${title}</h1><p>${message}</p>${link ? html`<p><a href="${link.href}">${link.text}</a></p>` : ''}</main></body></html>
`.text;
}
