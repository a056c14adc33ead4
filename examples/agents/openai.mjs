// Tool calling in OpenAI's format, with no OpenAI SDK and no live model: the tool calls a model
// made (openai-transcript.json) go through capsuleTools().handle, and each result is checked
// against the one recorded. Run it with `node examples/agents/openai.mjs` after `npm install`.
//
// With a live model, `openAiTools` goes in the request's `tools`, and each `tool_calls` entry of
// the reply is answered with a `{ role: "tool", tool_call_id, content }` message, as below.
import { readFileSync } from "node:fs";
import { capsuleTools } from "capsule-portable/node";

const transcript = JSON.parse(
  readFileSync(new URL("./openai-transcript.json", import.meta.url), "utf8"),
);
const { tools, handle, close } = capsuleTools();

/** Chat Completions' shape for a function tool. */
const openAiTools = tools.map(({ name, description, inputSchema }) => ({
  type: "function",
  function: { name, description, parameters: inputSchema },
}));
console.log(`tools: ${openAiTools.map((tool) => tool.function.name).join(", ")}`);

const recorded = new Map(
  transcript.messages
    .filter((message) => message.role === "tool")
    .map((message) => [message.tool_call_id, message.content]),
);
const messages = [];
let mismatches = 0;
for (const message of transcript.messages) {
  if (message.role === "tool") continue; // answered afresh below
  messages.push(message);
  if (message.role === "user") console.log(`\nuser: ${message.content}`);
  if (message.role === "assistant" && message.content)
    console.log(`\nassistant: ${message.content}`);
  for (const call of message.tool_calls ?? []) {
    const input = JSON.parse(call.function.arguments);
    console.log(`\n-> ${call.function.name}\n${indent(input.code)}`);
    const result = await handle(call.function.name, input);
    console.log(`<- ${result.isError ? "error: " : ""}${result.text}`);
    messages.push({ role: "tool", tool_call_id: call.id, content: result.text });
    if (recorded.get(call.id) !== result.text) {
      mismatches++;
      console.log(`   (recorded: ${JSON.stringify(recorded.get(call.id))})`);
    }
  }
}
await close();
console.log(
  `\n${messages.length} messages; ${mismatches === 0 ? "every tool result matches the recording" : `${mismatches} tool results differ from the recording`}`,
);
process.exitCode = mismatches === 0 ? 0 : 1;

function indent(text) {
  return text.replace(/^/gm, "   ");
}
