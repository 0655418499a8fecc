// The MCP conformance suite's prompts and resources, and its progress tool. omnicore.toml
// declares each prompt and resource and names the handler that renders it: a prompt's handler gets its arguments and answers MCP's
// {"messages": [...]}; a resource's gets {"uri", "params"} and answers {"contents": [...]}.
import { json, mcp, type Json } from "omnicore";
import type { PromptResult, ResourceRead, ResourceResult } from "omnicore";

/** A 1x1 PNG. */
const PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

interface TwoArgs {
  arg1: string;
  arg2: string;
}

interface ResourceArg {
  resourceUri: string;
}

/** Reports progress 0, 50 and 100 of 100 (the tool test_tool_with_progress). */
export function test_tool_with_progress(_input: string): string {
  for (const step of [0, 50, 100]) mcp.progress(step, 100);
  return "Progress test completed";
}

/** The prompt test_simple_prompt. */
export function simple_prompt(_input: string): PromptResult {
  return { messages: [{ role: "user", content: { type: "text", text: "This is a simple prompt for testing." } }] };
}

/** The prompt test_prompt_with_arguments. */
export function prompt_with_arguments(input: Json<TwoArgs>): PromptResult {
  const args: TwoArgs = json(input);
  const text = `Prompt with arguments: arg1='${args.arg1}', arg2='${args.arg2}'`;
  return { messages: [{ role: "user", content: { type: "text", text } }] };
}

/** The prompt test_prompt_with_embedded_resource. */
export function prompt_with_embedded_resource(input: Json<ResourceArg>): PromptResult {
  const { resourceUri } = json<ResourceArg>(input);
  return {
    messages: [
      {
        role: "user",
        content: {
          type: "resource",
          resource: { uri: resourceUri, mimeType: "text/plain", text: "Embedded resource content for testing." },
        },
      },
      { role: "user", content: { type: "text", text: "Please process the embedded resource above." } },
    ],
  };
}

/** The prompt test_input_required_result_prompt: asks the user for its context first (on
 * MCP 2026-07-28 the host answers input_required, and renders it again with the answer). */
export function input_required_prompt(_input: string): PromptResult {
  const answer = mcp.elicit("What context should the prompt use?", {
    type: "object", properties: { context: { type: "string" } }, required: ["context"],
  });
  const context = (answer.content as { context?: string } | undefined)?.context ?? "";
  return { messages: [{ role: "user", content: { type: "text", text: `Context: ${context}` } }] };
}

/** The prompt test_prompt_with_image. */
export function prompt_with_image(_input: string): PromptResult {
  return {
    messages: [
      { role: "user", content: { type: "image", data: PNG, mimeType: "image/png" } },
      { role: "user", content: { type: "text", text: "Please analyze the image above." } },
    ],
  };
}

/** The resource test://static-text. */
export function static_text(_input: Json<ResourceRead>): ResourceResult {
  return { contents: [{ text: "This is the content of the static text resource." }] };
}

/** The resource test://static-binary. */
export function static_binary(_input: Json<ResourceRead>): ResourceResult {
  return { contents: [{ blob: PNG }] };
}

/** The resource test://watched-resource. */
export function watched(_input: Json<ResourceRead>): ResourceResult {
  return { contents: [{ text: "Watched resource content" }] };
}

/** The resource template test://template/{id}/data. */
export function template_data(input: Json<ResourceRead>): ResourceResult {
  const { params } = json<ResourceRead>(input);
  const id = params.id ?? "";
  return { contents: [{ text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) }] };
}
