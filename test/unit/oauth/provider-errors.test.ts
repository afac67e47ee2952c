import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { explainProviderError } from '../../../src/oauth/provider-errors.ts';

describe('provider error explanations', () => {
  const cases: [string, string, RegExp][] = [
    ['invalid_grant', 'AADSTS700082: The refresh token has expired due to inactivity.', /90 days/],
    [
      'invalid_grant',
      'AADSTS70043: The refresh token has expired or is invalid due to sign-in frequency checks',
      /Conditional Access sign-in frequency/,
    ],
    [
      'invalid_grant',
      'AADSTS70000: The provided grant is invalid or malformed',
      /authorise the account again/,
    ],
    ['invalid_grant', 'AADSTS65001: The user or administrator has not consented', /consent/],
    [
      'invalid_grant',
      'AADSTS53003: Access has been blocked by Conditional Access policies',
      /Conditional Access blocked/,
    ],
    [
      'invalid_grant',
      'AADSTS50076: Due to a configuration change made by your administrator',
      /multi-factor/,
    ],
    [
      'invalid_request',
      'AADSTS900144: The request body must contain the following parameter',
      /oauth2_scope/,
    ],
    ['invalid_client', 'AADSTS7000215: Invalid client secret provided.', /client_secret is wrong/],
    ['invalid_client', 'bad credentials', /client_id and client_secret/],
    ['invalid_grant', 'Token has been expired or revoked.', /Testing/],
    ['invalid_request', 'The out-of-band (OOB) flow has been blocked', /http:\/\/localhost/],
  ];
  // The ways of being in the wrong tenant or registration, which `mailbridge doctor` met first.
  cases.push(
    [
      'invalid_request',
      'AADSTS50194: Application is not configured as a multi-tenant application',
      /Directory \(tenant\) ID/,
    ],
    ['invalid_request', "AADSTS90002: Tenant 'contoso.onmicrosoft.co' not found", /tenant .* does not exist/],
    [
      'invalid_grant',
      'AADSTS50020: User account from identity provider does not exist in tenant',
      /not part of the app's organisation/,
    ],
    [
      'invalid_resource',
      'AADSTS500011: The resource principal named https://outlook.office.com was not found',
      /Exchange Online/,
    ],
    [
      'invalid_client',
      'AADSTS7000218: The request body must contain client_assertion or client_secret',
      /confidential/,
    ],
    [
      'invalid_request',
      'AADSTS9002326: Cross-origin token redemption is permitted only for the Single-Page Application',
      /single-page/,
    ],
    ['invalid_client', 'AADSTS700024: Client assertion is not within its valid time range', /clock skew/],
    ['redirect_uri_mismatch', 'Bad Request', /Desktop app/],
  );
  for (const [error, description, remedy] of cases) {
    it(`${error}: ${description.slice(0, 40)}`, () => {
      assert.match(explainProviderError(error, description) ?? '', remedy);
    });
  }

  it('says nothing it does not know', () => {
    assert.equal(explainProviderError('invalid_grant', 'something new'), undefined);
  });
});
