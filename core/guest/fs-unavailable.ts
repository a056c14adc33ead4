/**
 * Node file-system functions the sandbox does not provide. The guest's `fs` makes each throw a
 * clear error (instead of "is not a function"), and the compiler still exports their names.
 */
export const FS_UNAVAILABLE = [
  "realpath",
  "chmod",
  "chown",
  "truncate",
  "ftruncate",
  "utimes",
  "link",
  "mkdtemp",
  "opendir",
  "cp",
];
