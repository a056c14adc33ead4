/**
 * Task source to program in the browser: the same path as on every host
 * (core/compile/task-module.ts). TypeScript loads sucrase, a chunk of its own fetched by the first
 * TypeScript task; plain JavaScript loads no compiler at all.
 */
import {
  CODE_SOURCE_NAME,
  checkLanguage,
  compileTaskModule,
} from "../../core/compile/task-module.ts";
import type { Bundle } from "../../core/runtime/run-task.ts";

export function compileCode(code: string, language: "ts" | "js"): Promise<Bundle> {
  checkLanguage(language);
  return compileTaskModule(code, language, {
    sourceName: `${CODE_SOURCE_NAME}.${language}`,
    // A chunk of its own in the build: pages that run only JavaScript never download it.
    loadSucrase: () => import("sucrase"),
  });
}
