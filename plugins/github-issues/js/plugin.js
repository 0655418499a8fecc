// The connector example: GitHub's REST API through the operator's `github` connector
// (connectors.github in the app config: base URL, bearer auth, the secret holding the token).
// The host joins the base URL, adds the token and cuts it from anything it returns, so this
// plugin never sees a credential; it only names the connector.
//
// - issues {"state"?: "open" | "closed" | "all", "limit"?: 1-100} lists the repository's
//   issues (pull requests left out) as [{number, title, state, url, labels, comments}].
// - open {"title", "body"?, "labels"?} opens an issue; {number, url}.
//
// Config: repo (owner/name, required), connector (default "github").
import { config, http, json, InputError } from "omnicore";

const HEADERS = { accept: "application/vnd.github+json", "x-github-api-version": "2022-11-28",
  "user-agent": "omnicore-github-issues" };

function repoPath() {
  const repo = config.get("repo");
  if (!repo || !/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/.test(repo)) {
    throw new Error('config "repo" must be owner/name');
  }
  return `/repos/${repo}`;
}

function call(method, path, body) {
  const resp = http.connector(config.get("connector", "github"), method, path,
    body === undefined ? "" : body, body === undefined ? HEADERS
      : { ...HEADERS, "content-type": "application/json" });
  if (!resp.ok) {
    let why = "";
    try { why = resp.json().message || ""; } catch (_) { why = resp.text().slice(0, 200); }
    throw new Error(`GitHub answered ${resp.status} to ${method} ${path}${why ? `: ${why}` : ""}`);
  }
  return resp.json();
}

function object(raw) {
  // No input (or JSON null) is an empty request: every field has a default.
  const req = raw.trim() === "" ? {} : json(raw) ?? {};
  if (typeof req !== "object" || Array.isArray(req)) {
    throw new InputError("invalid input: expected a JSON object");
  }
  return req;
}

export function issues(raw) {
  const req = object(raw);
  const state = req.state ?? "open";
  if (!["open", "closed", "all"].includes(state)) {
    throw new InputError('invalid input: "state" is open, closed or all');
  }
  const limit = req.limit ?? 30;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > 100) {
    throw new InputError('invalid input: "limit" is 1-100');
  }
  const list = call("GET", `${repoPath()}/issues?state=${state}&per_page=${limit}`);
  if (!Array.isArray(list)) throw new Error("GitHub answered something other than a list");
  return list.filter((i) => !i.pull_request).map((i) => ({
    number: i.number, title: i.title, state: i.state, url: i.html_url,
    labels: (i.labels || []).map((l) => (typeof l === "string" ? l : l.name)),
    comments: i.comments ?? 0,
  }));
}

export function open(raw) {
  const req = object(raw);
  if (typeof req.title !== "string" || !req.title.trim()) {
    throw new InputError('invalid input: expected {"title": "...", "body"?: "...", "labels"?: [...]}');
  }
  const issue = { title: req.title };
  if (req.body !== undefined) issue.body = String(req.body);
  if (req.labels !== undefined) {
    if (!Array.isArray(req.labels) || !req.labels.every((l) => typeof l === "string")) {
      throw new InputError('invalid input: "labels" is a list of strings');
    }
    issue.labels = req.labels;
  }
  const made = call("POST", `${repoPath()}/issues`, JSON.stringify(issue));
  return { number: made.number, url: made.html_url };
}
