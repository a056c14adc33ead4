// `require("capsule-portable/node")`. The package is ES modules, which Node's require() loads
// from 20.19 and 22.12 on: this file hands over to them, or says why it cannot.
"use strict";

if (!process.features.require_module) {
  throw new Error(
    `capsule-portable is ES modules, and this Node.js (${process.versions.node}) cannot require() them: it needs Node.js ^20.19.0 || >=22.12.0 without --no-experimental-require-module, or \`await import("capsule-portable/node")\``,
  );
}
module.exports = require("./node.mjs");
