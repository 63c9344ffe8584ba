// A streaming chat to a rag:<collection> model through the openai npm SDK; the final chunk's
// extra "sources" field (which the SDK passes through untouched) is read as a web app would.
//   usage: node rag.mjs BASE_URL MODEL QUESTION [API_KEY]
// Prints one JSON line: {"chunks": N, "text": "...", "finish_reason": "...", "sources": N}.
import OpenAI from "openai";

const [baseURL, model, question, apiKey] = process.argv.slice(2);
if (!baseURL || !model || !question) {
  console.error("usage: node rag.mjs BASE_URL MODEL QUESTION [API_KEY]");
  process.exit(2);
}
const client = new OpenAI({ baseURL, apiKey: apiKey || "unused", maxRetries: 0, timeout: 120_000 });
const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: question }],
  max_tokens: 24,
  seed: 1,
  stream: true,
});
let chunks = 0;
let text = "";
let finishReason = null;
let sources = -1;
for await (const chunk of stream) {
  chunks++;
  if (Array.isArray(chunk.sources)) sources = chunk.sources.length;
  const choice = chunk.choices[0];
  if (!choice) continue;
  text += choice.delta?.content ?? "";
  if (choice.finish_reason) finishReason = choice.finish_reason;
}
console.log(JSON.stringify({ chunks, text, finish_reason: finishReason, sources }));
