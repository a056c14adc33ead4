import type { Case } from "../case.ts";

export const FUEL_ATTACKS: Case[] = [];
