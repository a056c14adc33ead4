/**
 * Attacks added after the first adversarial suite, one file per area of the host a hostile task
 * aims at. They run with the adversarial cases, on every host.
 */
import type { Case } from "../case.ts";
import { COMPILE_ATTACKS } from "./compile.ts";
import { FILES_ATTACKS } from "./files.ts";
import { FUEL_ATTACKS } from "./fuel.ts";
import { HOSTS_ATTACKS } from "./hosts.ts";
import { NETWORK_ATTACKS } from "./network.ts";
import { PYTHON_ATTACKS } from "./python.ts";
import { REUSE_ATTACKS } from "./reuse.ts";

export const ATTACK_CASES: Case[] = [
  ...COMPILE_ATTACKS,
  ...FILES_ATTACKS,
  ...FUEL_ATTACKS,
  ...NETWORK_ATTACKS,
  ...PYTHON_ATTACKS,
  ...HOSTS_ATTACKS,
  ...REUSE_ATTACKS,
];
