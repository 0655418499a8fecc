// SQL statements in a JS/TS plugin are its constants: the check `omnicore build` and
// `omnicore test` run (omnicore.toolchains.js.statements runs this with node; specs/abi.md
// §4.10.1). The TypeScript compiler's parser reads each file; no type is checked.
//
//   node statements.cjs TYPESCRIPT_JS FILE...  ->  [{"file", "line", "method", "what"}, ...]
//
// The statement of every `.query(...)` and `.execute(...)` call (but `vectors.query`, whose
// first argument is a collection) must be a string literal, a template literal without `${}`,
// a `+` of those, or a name declared once in its file, by a top-level `const` bound to one.
// A tagged template (db.query`... ${v}`) is not a call: its values are parameters already.
"use strict";
const fs = require("fs");
const [tsPath, ...files] = process.argv.slice(2);
const ts = require(tsPath);

const METHODS = new Set(["query", "execute"]);
const NOT_SQL = new Set(["vectors"]);

function check(file) {
  const text = fs.readFileSync(file, "utf8");
  const kind = /\.m?ts$/.test(file) ? ts.ScriptKind.TS : ts.ScriptKind.JS;
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, kind);
  const counts = new Map();
  const constants = new Map();
  const bind = (names) => { for (const n of names) counts.set(n, (counts.get(n) ?? 0) + 1); };
  const calls = [];
  (function walk(node) {
    const names = [];
    if (ts.isVariableDeclaration(node) || ts.isParameter(node) || ts.isBindingElement(node)) {
      if (ts.isIdentifier(node.name)) names.push(node.name.text);  // a pattern's own elements come next
    } else if ((ts.isFunctionDeclaration(node) || ts.isClassDeclaration(node) ||
                ts.isFunctionExpression(node) || ts.isClassExpression(node)) && node.name) {
      names.push(node.name.text);
    } else if (ts.isImportClause(node) && node.name) names.push(node.name.text);
    else if (ts.isImportSpecifier(node) || ts.isNamespaceImport(node) ||
             ts.isImportEqualsDeclaration(node)) names.push(node.name.text);
    else if (ts.isBinaryExpression(node) && ts.isIdentifier(node.left) &&
             node.operatorToken.kind >= ts.SyntaxKind.FirstAssignment &&
             node.operatorToken.kind <= ts.SyntaxKind.LastAssignment) names.push(node.left.text);
    else if ((ts.isPrefixUnaryExpression(node) || ts.isPostfixUnaryExpression(node)) &&
             ts.isIdentifier(node.operand)) names.push(node.operand.text);
    bind(names);
    if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression) &&
        METHODS.has(node.expression.name.text) &&
        !(ts.isIdentifier(node.expression.expression) && NOT_SQL.has(node.expression.expression.text))) {
      calls.push(node);
    }
    ts.forEachChild(node, walk);
  })(sf);
  for (const stmt of sf.statements) {
    if (!ts.isVariableStatement(stmt) || !(stmt.declarationList.flags & ts.NodeFlags.Const)) continue;
    for (const d of stmt.declarationList.declarations) {
      if (ts.isIdentifier(d.name) && d.initializer) constants.set(d.name.text, d.initializer);
    }
  }
  const refusal = (node, seen) => {
    while (ts.isParenthesizedExpression(node) || ts.isAsExpression(node) ||
           ts.isSatisfiesExpression?.(node)) {
      node = node.expression;
    }
    if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) return null;
    if (ts.isTemplateExpression(node)) {
      return "a template literal with ${...} (the tag db.query`... ${value}` makes each value a parameter)";
    }
    if (ts.isBinaryExpression(node) && node.operatorToken.kind === ts.SyntaxKind.PlusToken) {
      return refusal(node.left, seen) ?? refusal(node.right, seen);
    }
    if (ts.isIdentifier(node)) {
      const name = node.text;
      const value = constants.get(name);
      if (value === undefined || counts.get(name) !== 1) {
        return `the name ${name}, which is not a top-level const bound once to a literal`;
      }
      if (seen.has(name)) return `the name ${name}, defined by itself`;
      const inner = refusal(value, new Set([...seen, name]));
      return inner === null ? null : `the name ${name}, bound to ${inner}`;
    }
    return `an expression computed at run time (${node.getText(sf).slice(0, 60)})`;
  };
  const found = [];
  for (const call of calls) {
    const statement = call.arguments[0];
    if (statement === undefined) continue;
    const what = ts.isSpreadElement(statement)
      ? `a spread (${statement.getText(sf).slice(0, 60)})` : refusal(statement, new Set());
    if (what !== null) {
      const line = sf.getLineAndCharacterOfPosition(statement.getStart(sf)).line + 1;
      found.push({ file, line, method: call.expression.name.text, what });
    }
  }
  return found;
}

process.stdout.write(JSON.stringify(files.flatMap(check)));
