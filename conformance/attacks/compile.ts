import type { Case } from "../case.ts";

export const COMPILE_ATTACKS: Case[] = [];
