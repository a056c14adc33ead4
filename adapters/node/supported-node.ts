/**
 * The Node lines this package runs on, checked before anything else loads: older lines lack
 * require() of ES modules, the permission model's flags the Python process relies on, or both,
 * and would fail later with a less telling error.
 */
export const SUPPORTED_NODE = "^20.19.0 || >=22.12.0";

/** Whether `version` (as in process.versions.node) is one SUPPORTED_NODE allows. */
export function isSupportedNode(version: string): boolean {
  const [major = 0, minor = 0] = version.split(".").map(Number);
  if (major === 20) return minor >= 19;
  if (major === 22) return minor >= 12;
  return major > 22;
}

export class UnsupportedNodeError extends Error {
  readonly code = "CAPSULE_UNSUPPORTED_NODE";
  constructor(version: string) {
    super(
      `capsule-portable needs Node.js ${SUPPORTED_NODE} (20.19 or later on line 20, 22.12 or later on line 22, or any newer line); this is Node.js ${version}`,
    );
    this.name = "UnsupportedNodeError";
  }
}

if (!isSupportedNode(process.versions.node)) throw new UnsupportedNodeError(process.versions.node);
