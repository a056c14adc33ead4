import type { Case } from "../case.ts";

export const HOSTS_ATTACKS: Case[] = [];
