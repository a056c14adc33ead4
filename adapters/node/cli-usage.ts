/**
 * Every usage problem of a command line at once. commander stops at the first unknown option or
 * bad value; someone who typed two wrong options should not have to find them one run at a time.
 */
import type { Command, Option } from "commander";

/**
 * The problems in `argv` (the words after `capsule`) for the subcommand it names: unknown
 * options, options missing their value, and values the option's own parser refuses. Empty when
 * commander should take over (no subcommand, help, or nothing wrong).
 */
export function usageProblems(program: Command, argv: readonly string[]): string[] {
  const command = program.commands.find((c) => c.name() === argv[0]);
  if (command === undefined) return [];
  const problems: string[] = [];
  const words = argv.slice(1);
  for (let i = 0; i < words.length; i++) {
    const word = words[i] as string;
    if (word === "--") break;
    if (!word.startsWith("-") || word === "-" || /^-\d/.test(word)) continue;
    if (word === "-h" || word === "--help") return [];
    const equals = word.startsWith("--") ? word.indexOf("=") : -1;
    const flag = equals === -1 ? word : word.slice(0, equals);
    const option = findOption(command, flag);
    if (option === undefined) {
      problems.push(`unknown option '${flag}'`);
      continue;
    }
    if (!option.required && !option.optional) continue;
    let value: string | undefined;
    if (equals !== -1) value = word.slice(equals + 1);
    else if (i + 1 < words.length && !(words[i + 1] as string).startsWith("-")) value = words[++i];
    if (value === undefined) {
      if (option.required) problems.push(`option '${option.flags}' argument missing`);
      continue;
    }
    try {
      option.parseArg?.(value, option.defaultValue);
    } catch (error) {
      problems.push(
        `option '${option.flags}' argument '${value}' is invalid. ${(error as Error).message}`,
      );
    }
  }
  return problems;
}

function findOption(command: Command, flag: string): Option | undefined {
  return command.options.find((option) => option.long === flag || option.short === flag);
}
