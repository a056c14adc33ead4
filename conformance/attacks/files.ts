import type { Case } from "../case.ts";

export const FILES_ATTACKS: Case[] = [];
