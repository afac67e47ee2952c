import type { Protocol } from '../config/servers.ts';

/**
 * What mailbridge knows about the big providers: OAuth endpoints, scopes and mail servers, for `mailbridge
 * init` to write a starting configuration and for `mailbridge doctor` to recognise a provider and explain its
 * quirks. Each fact names the page it comes from; check them there before changing one.
 *
 * No client ID is shipped: providers tie an app registration to its owner, so every user registers their own
 * (the preset says how).
 */
export const ProviderId = {
  OFFICE365: 'office365',
  OUTLOOK: 'outlook',
  GMAIL: 'gmail',
  FASTMAIL: 'fastmail',
} as const;

export type ProviderId = (typeof ProviderId)[keyof typeof ProviderId];

export const PROVIDER_IDS: readonly ProviderId[] = Object.values(ProviderId);

export interface ServerPreset {
  protocol: Protocol;
  /** The local port mailbridge listens on (the README's recipes use these). */
  localPort: number;
  serverAddress: string;
  serverPort: number;
  /** True: the server starts in clear and upgrades with STARTTLS; false: TLS from the first byte. */
  serverStartTls: boolean;
}

export interface OAuthPreset {
  permissionUrl: string;
  tokenUrl: string;
  /** Space-separated, sent verbatim. */
  scope: string;
  redirectUri: string;
  /** Whether the provider's token endpoint wants a client_secret for the kind of app registration described. */
  clientSecretRequired: boolean;
  usePkce: boolean;
  /** How to get a client ID, one step per line, for the generated file's comments. */
  registration: readonly string[];
}

export interface ProviderPreset {
  id: ProviderId;
  name: string;
  /** Undefined when the provider offers no OAuth client registration to the public (Fastmail). */
  oauth: OAuthPreset | undefined;
  servers: readonly ServerPreset[];
  /** Quirks worth knowing before the first login, for the generated file's comments. */
  notes: readonly string[];
  /** Where the facts above come from. */
  sources: readonly string[];
}

const MICROSOFT_SOURCES = [
  'https://learn.microsoft.com/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth',
  'https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow',
] as const;

// Microsoft identity platform v2 endpoints. The resource of the mail scopes is outlook.office.com; without
// offline_access no refresh token is issued, and the account must be authorised again every hour.
const MICROSOFT_SCOPE =
  'https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/POP.AccessAsUser.All https://outlook.office.com/SMTP.Send offline_access';

/** Microsoft's IMAP and POP (implicit TLS) are one host for work and personal accounts; SMTP differs. */
function microsoftServers(smtpHost: string): ServerPreset[] {
  return [
    {
      protocol: 'IMAP',
      localPort: 1993,
      serverAddress: 'outlook.office365.com',
      serverPort: 993,
      serverStartTls: false,
    },
    {
      protocol: 'POP',
      localPort: 1995,
      serverAddress: 'outlook.office365.com',
      serverPort: 995,
      serverStartTls: false,
    },
    { protocol: 'SMTP', localPort: 1587, serverAddress: smtpHost, serverPort: 587, serverStartTls: true },
  ];
}

function microsoftEndpoints(tenant: string): Pick<OAuthPreset, 'permissionUrl' | 'tokenUrl'> {
  return {
    permissionUrl: `https://login.microsoftonline.com/${tenant}/oauth2/v2.0/authorize`,
    tokenUrl: `https://login.microsoftonline.com/${tenant}/oauth2/v2.0/token`,
  };
}

const MICROSOFT_REGISTRATION = [
  'Register an app at https://entra.microsoft.com > Applications > App registrations > New registration.',
  'Add the platform "Mobile and desktop applications" with the redirect URI http://localhost (a public client:',
  'no client secret; with the "Web" platform instead you must create a secret and set client_secret).',
  'Under API permissions > Add a permission > Microsoft Graph > Delegated permissions add IMAP.AccessAsUser.All,',
  'POP.AccessAsUser.All, SMTP.Send and offline_access.',
  'Copy the "Application (client) ID" into client_id.',
] as const;

export const PROVIDERS: Readonly<Record<ProviderId, ProviderPreset>> = {
  office365: {
    id: 'office365',
    name: 'Microsoft 365 (work or school account)',
    oauth: {
      ...microsoftEndpoints('common'),
      scope: MICROSOFT_SCOPE,
      redirectUri: 'http://localhost',
      clientSecretRequired: false,
      usePkce: true,
      registration: MICROSOFT_REGISTRATION,
    },
    // Port 465 does not answer for Microsoft 365: submission is 587 with STARTTLS only.
    servers: microsoftServers('smtp.office365.com'),
    notes: [
      'An app registered for one organisation only ("single tenant") must use its own endpoints: replace',
      '"common" in permission_url and token_url with your Directory (tenant) ID, or sign-in fails with AADSTS50194.',
      'Administrators can switch SMTP AUTH off for the whole tenant or one mailbox: the server then answers',
      '"535 5.7.139 ... SmtpClientAuthentication is disabled"; that is a setting, not a token problem.',
      'Refresh tokens expire after 90 days without use (AADSTS700082), and Conditional Access policies can',
      'force a new sign-in earlier (AADSTS70043, AADSTS53003).',
    ],
    sources: MICROSOFT_SOURCES,
  },
  outlook: {
    id: 'outlook',
    name: 'Outlook.com, Hotmail, Live (personal Microsoft account)',
    oauth: {
      // Personal accounts sign in at the `consumers` tenant.
      ...microsoftEndpoints('consumers'),
      scope: MICROSOFT_SCOPE,
      redirectUri: 'http://localhost',
      clientSecretRequired: false,
      usePkce: true,
      registration: [
        ...MICROSOFT_REGISTRATION.slice(0, 3),
        'Choose "Personal Microsoft accounts" (or "any organizational directory and personal accounts") as the',
        'supported account types; then add the permissions and copy the client ID as below.',
        ...MICROSOFT_REGISTRATION.slice(3),
      ],
    },
    servers: microsoftServers('smtp-mail.outlook.com'),
    notes: [
      'POP and IMAP are off by default for Outlook.com accounts: turn them on at outlook.com under',
      'Settings > Mail > Forwarding and IMAP before the first login.',
    ],
    sources: [
      ...MICROSOFT_SOURCES,
      'https://support.microsoft.com/office/pop-imap-and-smtp-settings-for-outlook-com-d088b986-291d-42b8-9564-9c414e2aa040',
    ],
  },
  gmail: {
    id: 'gmail',
    name: 'Gmail and Google Workspace',
    oauth: {
      // Google issues a refresh token only when the user consents, and skips the consent screen for an app
      // already allowed: re-authorising (a lost cache, a new password) would then yield an access token that
      // dies within the hour. prompt=consent asks every time; mailbridge keeps this query and adds its own.
      permissionUrl: 'https://accounts.google.com/o/oauth2/v2/auth?prompt=consent',
      tokenUrl: 'https://oauth2.googleapis.com/token',
      // The only scope that grants IMAP, POP and SMTP.
      scope: 'https://mail.google.com/',
      // Google blocked the out-of-band (copy the code) redirect for every client on 2023-01-31; a desktop app
      // redirects to a loopback address instead, and `--external-auth` lets you paste that address back.
      redirectUri: 'http://localhost',
      // A "Desktop app" client's secret is not confidential, but Google's token endpoint still requires it.
      clientSecretRequired: true,
      usePkce: true,
      registration: [
        'At https://console.cloud.google.com create a project, enable the Gmail API, and configure the OAuth',
        'consent screen (add your address as a test user while the app is in "Testing").',
        'Then Credentials > Create credentials > OAuth client ID > application type "Desktop app", and copy its',
        'client ID and client secret below.',
      ],
    },
    servers: [
      {
        protocol: 'IMAP',
        localPort: 1993,
        serverAddress: 'imap.gmail.com',
        serverPort: 993,
        serverStartTls: false,
      },
      {
        protocol: 'POP',
        localPort: 1995,
        serverAddress: 'pop.gmail.com',
        serverPort: 995,
        serverStartTls: false,
      },
      {
        protocol: 'SMTP',
        localPort: 1587,
        serverAddress: 'smtp.gmail.com',
        serverPort: 465,
        serverStartTls: false,
      },
    ],
    notes: [
      'While the consent screen is in "Testing" status Google expires refresh tokens after 7 days: publish the',
      'app ("In production"; an unverified personal app only shows a warning) to stay signed in.',
      'Google blocked the out-of-band redirect (urn:ietf:wg:oauth:2.0:oob): keep redirect_uri = http://localhost.',
    ],
    sources: [
      'https://developers.google.com/gmail/imap/xoauth2-protocol',
      'https://developers.google.com/identity/protocols/oauth2/native-app',
      'https://developers.google.com/identity/protocols/oauth2/resources/oob-migration',
    ],
  },
  fastmail: {
    id: 'fastmail',
    name: 'Fastmail',
    // Fastmail registers OAuth clients only by hand, for partners who contact them; there is no public
    // registration, so there are no endpoints and no client ID to put here.
    oauth: undefined,
    servers: [
      {
        protocol: 'IMAP',
        localPort: 1993,
        serverAddress: 'imap.fastmail.com',
        serverPort: 993,
        serverStartTls: false,
      },
      {
        protocol: 'POP',
        localPort: 1995,
        serverAddress: 'pop.fastmail.com',
        serverPort: 995,
        serverStartTls: false,
      },
      {
        protocol: 'SMTP',
        localPort: 1587,
        serverAddress: 'smtp.fastmail.com',
        serverPort: 465,
        serverStartTls: false,
      },
    ],
    notes: [
      'Fastmail does not offer OAuth client registration to the public: clients are registered by hand for',
      'partners who contact Fastmail. Fastmail accepts app passwords on IMAP, POP and SMTP instead',
      '(Settings > Privacy & Security > app passwords), so most people need no proxy at all: point the mail',
      'client straight at the servers below with an app password.',
      'If Fastmail has registered a client for you, uncomment the sections below and fill in the endpoints,',
      'scope and client ID they gave you.',
    ],
    sources: [
      'https://www.fastmail.com/for-developers/oauth/',
      'https://www.fastmail.help/hc/en-us/articles/1500000278342-Server-names-and-ports',
    ],
  },
};

export function isProviderId(value: string): value is ProviderId {
  return (PROVIDER_IDS as readonly string[]).includes(value);
}

/** The identity platform behind a token endpoint, for provider-specific advice; undefined when unknown. */
export type IdentityPlatform = 'microsoft' | 'google';

export function identityPlatform(tokenUrl: string): IdentityPlatform | undefined {
  let host: string;
  try {
    host = new URL(tokenUrl).hostname.toLowerCase();
  } catch {
    return undefined;
  }
  if (
    host === 'login.microsoftonline.com' ||
    host === 'login.live.com' ||
    host.endsWith('.microsoftonline.us')
  )
    return 'microsoft';
  if (host === 'oauth2.googleapis.com' || host === 'accounts.google.com' || host === 'www.googleapis.com')
    return 'google';
  return undefined;
}

/** Whether a mail server belongs to Microsoft, whose servers have quirks worth a special diagnosis. */
export function isMicrosoftMailHost(host: string): boolean {
  const name = host.toLowerCase();
  return name.endsWith('.office365.com') || name.endsWith('.outlook.com') || name === 'outlook.office.com';
}
