// What a TypeScript plugin's exported handlers take and give, read from their types with the
// TypeScript compiler API (omnicore.toolchains.js.describe runs this with node).
//
//   node describe.cjs TYPESCRIPT_JS ENTRY SDK_TYPES  ->  {"HANDLER": {"description", ...}}
//
// A handler `export function add(input: Json<AddIn>): AddOut` has the input schema of AddIn
// and the output schema of AddOut (a Promise's value for an async one); its JSDoc comment is
// its description, `@title` and `@destructive` tags say the rest. Properties carry their own
// JSDoc as descriptions; an optional property (`tag?: string`) is not required.
"use strict";
const [tsPath, entry, sdkTypes] = process.argv.slice(2);
const ts = require(tsPath);

const program = ts.createProgram([entry], {
  strict: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler, noEmit: true, skipLibCheck: true,
  paths: { omnicore: [sdkTypes] },
});
const checker = program.getTypeChecker();
const source = program.getSourceFile(entry);

function doc(symbol) {
  const text = ts.displayPartsToString(symbol.getDocumentationComment(checker)).trim();
  return text.split(/\n\s*\n/)[0].replace(/\s+/g, " ");
}

// A type met again below itself (the SDK's JsonValue holds JsonValue[] and an object of
// JsonValues) is anything there: the schema stops at its first level instead of recursing for
// ever. Not a $ref: the console's forms read properties, not references, and many MCP clients
// do not resolve them; a JsonValue is any JSON anyway. `seen` holds the types on the path from
// the handler's type down (unions, arrays, tuples and objects: any of them can close a loop);
// MAX_DEPTH stops a generic type that makes a new type at each level (`Deep<T[]>`).
const MAX_DEPTH = 32;

function schema(type, seen) {
  if (seen.has(type) || seen.size >= MAX_DEPTH) return {};
  seen.add(type);
  try {
    return shape(type, seen);
  } finally {
    seen.delete(type);
  }
}

function shape(type, seen) {
  const f = type.flags;
  if (f & ts.TypeFlags.Any || f & ts.TypeFlags.Unknown) return {};
  if (f & ts.TypeFlags.StringLiteral) return { const: type.value };
  if (f & ts.TypeFlags.NumberLiteral) return { const: type.value };
  if (f & ts.TypeFlags.BooleanLiteral) return { const: type.intrinsicName === "true" };
  if (f & ts.TypeFlags.String) return { type: "string" };
  if (f & ts.TypeFlags.Number) return { type: "number" };
  if (f & ts.TypeFlags.Boolean) return { type: "boolean" };
  if (f & ts.TypeFlags.Null) return { type: "null" };
  if (type.isUnion()) {
    const members = type.types.filter((t) => !(t.flags & ts.TypeFlags.Undefined));
    if (members.length && members.every((t) => t.flags & ts.TypeFlags.BooleanLiteral)) {
      return { type: "boolean" };
    }
    if (members.length && members.every((t) => t.isStringLiteral())) {
      return { type: "string", enum: members.map((t) => t.value) };
    }
    const parts = members.map((t) => schema(t, seen));
    if (parts.some((p) => Object.keys(p).length === 0)) return {};
    return parts.length === 1 ? parts[0] : { anyOf: parts };
  }
  if (checker.isArrayType(type)) {
    const [item] = checker.getTypeArguments(type);
    return { type: "array", items: item ? schema(item, seen) : {} };
  }
  if (checker.isTupleType(type)) {
    const items = checker.getTypeArguments(type).map((t) => schema(t, seen));
    return { type: "array", prefixItems: items, minItems: items.length, maxItems: items.length };
  }
  if (f & ts.TypeFlags.Object) {
    const properties = {};
    const required = [];
    for (const prop of checker.getPropertiesOfType(type)) {
      const declaration = prop.valueDeclaration || (prop.declarations || [])[0];
      const propType = declaration
        ? checker.getTypeOfSymbolAtLocation(prop, declaration) : checker.getTypeOfSymbol(prop);
      if (checker.getSignaturesOfType(propType, ts.SignatureKind.Call).length) continue;
      const s = { ...schema(propType, seen) };
      const text = doc(prop);
      if (text) s.description = text;
      properties[prop.name] = s;
      if (!(prop.flags & ts.SymbolFlags.Optional)) required.push(prop.name);
    }
    const out = { type: "object", properties };
    if (required.length) out.required = required;
    const index = checker.getIndexTypeOfType(type, ts.IndexKind.String);
    if (index) out.additionalProperties = schema(index, seen);
    return out;
  }
  return {};
}

function object(s) {
  return s && s.type === "object" ? s : undefined;
}

const out = {};
const moduleSymbol = checker.getSymbolAtLocation(source);
for (const symbol of moduleSymbol ? checker.getExportsOfModule(moduleSymbol) : []) {
  const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
  const declaration = (target.declarations || [])[0];
  if (!declaration) continue;
  const type = checker.getTypeOfSymbolAtLocation(target, declaration);
  const [signature] = checker.getSignaturesOfType(type, ts.SignatureKind.Call);
  if (!signature) continue;
  const entry = {};
  const text = doc(target);
  if (text) entry.description = text;
  for (const tag of target.getJsDocTags(checker)) {
    const value = ts.displayPartsToString(tag.text || []).trim();
    if (tag.name === "title" && value) entry.title = value;
    if (tag.name === "destructive") entry.destructive = value !== "false";
  }
  const [param] = signature.getParameters();
  const paramNode = param && param.valueDeclaration;
  // Json<T> is a string at run time; its type argument is what the JSON holds.
  if (paramNode && paramNode.type && ts.isTypeReferenceNode(paramNode.type) &&
      paramNode.type.typeName.getText() === "Json" && paramNode.type.typeArguments) {
    const input = object(schema(checker.getTypeFromTypeNode(paramNode.type.typeArguments[0]),
      new Set()));
    if (input) entry.input_schema = input;
  }
  let returns = signature.getReturnType();
  const awaited = checker.getAwaitedType ? checker.getAwaitedType(returns) : undefined;
  if (awaited) returns = awaited;
  const output = object(schema(returns, new Set()));
  if (output) entry.output_schema = output;
  if (Object.keys(entry).length) out[symbol.name] = entry;
}
process.stdout.write(JSON.stringify(out));
