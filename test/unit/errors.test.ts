import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeError } from '../../src/errors.ts';

describe('describeError', () => {
  it('folds line breaks, so a provider message cannot end a protocol line early', () => {
    const error = new Error('AADSTS7000215: Invalid client secret.\r\nTrace ID: 1\r\n* BYE fake\r\n');
    assert.equal(describeError(error), 'AADSTS7000215: Invalid client secret. Trace ID: 1 * BYE fake');
  });

  it('describes what is not an Error', () => {
    assert.equal(describeError('plain\nstring'), 'plain string');
  });
});
