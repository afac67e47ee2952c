import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeSkew, readSkew } from '../../../src/doctor/clock.ts';
import {
  claimProblems,
  describeClaims,
  isMicrosoftMailAudience,
  peekClaims,
} from '../../../src/doctor/token-claims.ts';

function jwt(payload: Record<string, unknown>): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'RS256', typ: 'JWT' })}.${part(payload)}.c2lnbmF0dXJl`;
}

const NOW = 1_800_000_000;

describe('token claims', () => {
  it("reads a Microsoft token's claims without verifying it, and nothing from an opaque token", () => {
    const claims = peekClaims(
      jwt({
        aud: 'https://outlook.office.com',
        scp: 'IMAP.AccessAsUser.All SMTP.Send',
        upn: 'alice@contoso.com',
        tid: 'tenant-1',
        iat: NOW,
        nbf: NOW,
        exp: NOW + 3600,
      }),
    );
    assert.deepEqual(claims, {
      audience: 'https://outlook.office.com',
      scopes: ['IMAP.AccessAsUser.All', 'SMTP.Send'],
      user: 'alice@contoso.com',
      tenant: 'tenant-1',
      issuedAt: NOW,
      notBefore: NOW,
      expiresAt: NOW + 3600,
    });
    assert.ok(claims && isMicrosoftMailAudience(claims));
    assert.equal(
      describeClaims(claims as NonNullable<typeof claims>),
      'for alice@contoso.com, audience https://outlook.office.com, scopes IMAP.AccessAsUser.All SMTP.Send, tenant tenant-1',
    );
    assert.equal(peekClaims('ya29.a0AfH6SM-opaque'), undefined);
    assert.equal(peekClaims('EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA'), undefined);
    assert.equal(peekClaims('a.bm90IGpzb24.c'), undefined);
  });

  it('finds another user, a Graph audience and clock skew, and nothing wrong in a good token', () => {
    const good = peekClaims(jwt({ aud: 'https://outlook.office.com', upn: 'Alice@Contoso.com', iat: NOW }));
    assert.deepEqual(claimProblems(good as NonNullable<typeof good>, 'alice@contoso.com', NOW), []);
    const other = peekClaims(
      jwt({
        aud: '00000003-0000-0000-c000-000000000000',
        preferred_username: 'bob@contoso.com',
        nbf: NOW + 3600,
      }),
    );
    const problems = claimProblems(other as NonNullable<typeof other>, 'alice@contoso.com', NOW);
    assert.equal(problems.length, 3);
    assert.match(problems[0] ?? '', /belongs to bob@contoso\.com, not alice@contoso\.com/);
    assert.match(problems[1] ?? '', /for Microsoft Graph, not the mail servers/);
    assert.match(problems[2] ?? '', /60 min in this computer's future: its clock is behind/);
  });
});

describe('clock skew from a Date header', () => {
  it('measures how far this clock is from the server, either way', () => {
    const server = Date.parse('Sun, 29 Nov 2026 10:00:00 GMT');
    assert.deepEqual(readSkew(server + 400_000, 'Sun, 29 Nov 2026 10:00:00 GMT'), {
      skewSeconds: 400,
      serverDate: '2026-11-29T10:00:00.000Z',
    });
    const behind = readSkew(server - 30_000, 'Sun, 29 Nov 2026 10:00:00 GMT');
    assert.equal(
      describeSkew(behind as NonNullable<typeof behind>),
      "this computer's clock is 30 s behind the token endpoint's",
    );
    assert.equal(
      describeSkew({ skewSeconds: 7200, serverDate: '' }),
      "this computer's clock is 120 min ahead of the token endpoint's",
    );
    assert.equal(readSkew(server, null), undefined);
    assert.equal(readSkew(server, 'not a date'), undefined);
  });
});
