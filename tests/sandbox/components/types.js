// The types test component (componentize-qjs): one export per WIT type family.
export function greet(name) { return `Hello, ${name}!`; }
export function add(a, b) { return a + b; }
export function big(a, b) { return [a, b]; }
export function half(x) { return x / 2; }
export function upper(c) { return c.toUpperCase(); }
export function negate(b) { return !b; }
export function safeDiv(a, b) { if (b === 0) throw "division by zero"; return Math.trunc(a / b); }
export function check(ok) { if (!ok) throw "not ok"; }
export function maybeLen(x) { return x === undefined || x === null ? undefined : x.length; }
export function invert(b) { return Array.from(b, (v) => 255 - v); }
export function boom() { throw new Error("boom from js"); }
export function spin() { let i = 0; for (;;) { i++; } }
export function bomb() { const a = []; for (;;) { a.push(new Array(100000).fill(1.5)); } }
export function nothing() {}
export const shapes = {
  area(s) {
    switch (s.tag) {
      case "circle": return 3 * s.val * s.val;
      case "square": return s.val.x * s.val.yCoord;
      default: return 0;
    }
  },
  centroid(pts) {
    if (pts.length === 0) return undefined;
    let x = 0, y = 0;
    for (const p of pts) { x += p.x; y += p.yCoord; }
    return { x: Math.trunc(x / pts.length), yCoord: Math.trunc(y / pts.length) };
  },
  paint(c, p) { return [c, p]; },
};
