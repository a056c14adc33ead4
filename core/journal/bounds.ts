/**
 * What the journal keeps of one sub-task's envelope or one fetch's response, in characters of
 * JSON (a response's body counted as base64): over it, that call or fetch runs again on resume.
 * Apart from journal.ts so that a sandbox's thread can check it without loading the journal.
 */
export const MAX_ENVELOPE_CHARS = 1024 * 1024;
