import { ErrorCode, MailbridgeError } from '../errors.ts';

const UNIT_MS = {
  h: 60 * 60 * 1000,
  d: 24 * 60 * 60 * 1000,
  w: 7 * 24 * 60 * 60 * 1000,
  y: 365 * 24 * 60 * 60 * 1000,
} as const;

/**
 * A period such as `180d`, `26w`, `1y` or `12h`, in milliseconds. There is deliberately no `m`: months and
 * minutes are both plausible readings, and pruning by the wrong one would delete a year of mutes.
 */
export function parseDuration(text: string): number {
  const match = /^(\d{1,6})([hdwy])$/.exec(text.trim());
  if (!match) {
    throw new MailbridgeError(
      ErrorCode.THREAD_INVALID_ARGUMENT,
      `invalid duration '${text}'; write a whole number and a unit: h (hours), d (days), w (weeks), y (years), as in 180d`,
    );
  }
  return Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
}
