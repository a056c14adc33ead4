import type { Case } from "../case.ts";

export const NETWORK_ATTACKS: Case[] = [];
