// A streaming chat through the openai npm SDK, as a phone or web app would make it.
//   usage: node stream.mjs BASE_URL [MODEL]     (or HEARTH_BASE_URL, HEARTH_MODEL)
// Prints one JSON line: {"chunks": N, "text": "...", "finish_reason": "...", "node": "..."}.
import OpenAI from "openai";

const baseURL = process.argv[2] || process.env.HEARTH_BASE_URL;
const model = process.argv[3] || process.env.HEARTH_MODEL || "tiny";
if (!baseURL) {
  console.error("usage: node stream.mjs BASE_URL [MODEL]");
  process.exit(2);
}

const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 120_000 });
const { data: stream, response } = await client.chat.completions
  .create({
    model,
    messages: [{ role: "user", content: "hello" }],
    max_tokens: 32,
    seed: 1, // the tiny models' noise, fixed: several chunks of text on every run
    stream: true,
  })
  .withResponse();

let chunks = 0;
let text = "";
let finishReason = null;
for await (const chunk of stream) {
  chunks++;
  const choice = chunk.choices[0];
  if (!choice) continue;
  text += choice.delta?.content ?? "";
  if (choice.finish_reason) finishReason = choice.finish_reason;
}
console.log(
  JSON.stringify({ chunks, text, finish_reason: finishReason, node: response.headers.get("x-hearth-node") }),
);
