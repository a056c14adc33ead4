import type { Case } from "../case.ts";

export const PYTHON_ATTACKS: Case[] = [];
