// Markdown rendering with a real npm package, bundled by `omnicore build` through esbuild.
//   render:   Markdown text in, HTML out (bytes, not JSON)
//   headings: Markdown text in, JSON [{"depth": 1, "text": "Title", "id": "title"}] out
import { Marked } from "marked";
import { config, log } from "omnicore";

let marked;

// Built on first use rather than at load time: config is the operator's and may be read only
// inside a call.
function renderer() {
  if (!marked) {
    const gfm = config.value("gfm", true) !== false;
    const breaks = config.value("breaks", false) === true;
    marked = new Marked({ gfm, breaks, async: false });
    log.debug(`marked ready (gfm=${gfm}, breaks=${breaks})`);
  }
  return marked;
}

export function render(markdown) {
  return renderer().parse(markdown);
}

const slug = (text) =>
  text.toLowerCase().trim().replace(/[^\p{L}\p{N}\s-]/gu, "").replace(/\s+/g, "-");

export function headings(markdown) {
  const out = [];
  for (const token of renderer().lexer(markdown)) {
    if (token.type === "heading") out.push({ depth: token.depth, text: token.text, id: slug(token.text) });
  }
  return out;
}
