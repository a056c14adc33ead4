// Tool use in Anthropic's format, with no Anthropic SDK and no live model: the tool_use blocks a
// model sent (anthropic-transcript.json) go through capsuleTools().handle, and each tool_result
// is checked against the one recorded. Both calls share a session_id, so the function defined by
// the first is there for the second. Run it with `node examples/agents/anthropic.mjs`.
//
// With a live model, `anthropicTools` goes in the request's `tools`, and each tool_use block of
// the reply is answered in the next user message with a tool_result block, as below.
import { readFileSync } from "node:fs";
import { capsuleTools } from "capsule-portable/node";

const transcript = JSON.parse(
  readFileSync(new URL("./anthropic-transcript.json", import.meta.url), "utf8"),
);
const { tools, handle, close } = capsuleTools();

/** The Messages API's shape for a tool. */
const anthropicTools = tools.map(({ name, description, inputSchema }) => ({
  name,
  description,
  input_schema: inputSchema,
}));
console.log(`tools: ${anthropicTools.map((tool) => tool.name).join(", ")}`);

const recorded = new Map();
for (const message of transcript.messages) {
  if (!Array.isArray(message.content)) continue;
  for (const block of message.content) {
    if (block.type === "tool_result") recorded.set(block.tool_use_id, block);
  }
}
const isToolResults = (message) =>
  Array.isArray(message.content) && message.content.every((block) => block.type === "tool_result");

const messages = [];
let mismatches = 0;
for (const message of transcript.messages) {
  if (isToolResults(message)) continue; // answered afresh below
  messages.push(message);
  const blocks =
    typeof message.content === "string"
      ? [{ type: "text", text: message.content }]
      : message.content;
  const results = [];
  for (const block of blocks) {
    if (block.type === "text") console.log(`\n${message.role}: ${block.text}`);
    if (block.type !== "tool_use") continue;
    console.log(
      `\n-> ${block.name} (session ${block.input.session_id ?? "none"})\n${indent(block.input.code)}`,
    );
    const result = await handle(block.name, block.input);
    console.log(`<- ${result.isError ? "error: " : ""}${result.text}`);
    const answer = {
      type: "tool_result",
      tool_use_id: block.id,
      content: result.text,
      ...(result.isError ? { is_error: true } : {}),
    };
    results.push(answer);
    const expected = recorded.get(block.id);
    if (expected?.content !== answer.content || Boolean(expected?.is_error) !== result.isError) {
      mismatches++;
      console.log(`   (recorded: ${JSON.stringify(expected)})`);
    }
  }
  if (results.length > 0) messages.push({ role: "user", content: results });
}
await close();
console.log(
  `\n${messages.length} messages; ${mismatches === 0 ? "every tool result matches the recording" : `${mismatches} tool results differ from the recording`}`,
);
process.exitCode = mismatches === 0 ? 0 : 1;

function indent(text) {
  return text.replace(/^/gm, "   ");
}
