/**
 * Every size and time limit of the thread filter, in one place, each with the reason for its value.
 */
export const ThreadLimits = {
  /**
   * IDs taken from one message's In-Reply-To and References. Clients trim References long before this; a
   * hostile message with thousands would only slow every lookup. When trimming, the first (the thread's root)
   * and the most recent are kept, as RFC 5322 §3.6.4 suggests for writers.
   */
  relatedIdsPerMessage: 200,
  /** A message's own IDs: it has one Message-ID; a few more cover duplicated fields, never thousands. */
  ownIdsPerMessage: 4,
  /** One Message-ID: RFC 5322's line limit is 998 octets, and no ID can be longer than a line. */
  idChars: 998,
  /**
   * How long a process waits for another one holding the database's write lock. Writes take milliseconds;
   * procmail runs one filter per message, so even a burst of hundreds of messages drains well within this.
   */
  busyTimeoutMs: 15_000,
  /** A list name: printable and short enough to type in a procmail recipe or a mutt macro. */
  listNameChars: 100,
} as const;
