//! The MCP conformance suite's fixture tools as one omnicore plugin. Each handler is the tool
//! of the same name the suite calls (the operator serves them unprefixed: `mcp.prefix: ""`);
//! test_tool_with_progress is the TypeScript plugin's (prompts-ts).

use omnicore::{handler, mcp, Error};
use serde_json::{json, Value};

/// A 1x1 PNG.
const PNG: [u8; 70] = [
    137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13, 73, 72, 68, 82, 0, 0, 0, 1, 0, 0, 0, 1, 8, 6,
    0, 0, 0, 31, 21, 196, 137, 0, 0, 0, 13, 73, 68, 65, 84, 120, 218, 99, 252, 207, 192, 240,
    31, 0, 5, 5, 2, 0, 95, 200, 241, 210, 0, 0, 0, 0, 73, 69, 78, 68, 174, 66, 96, 130,
];

/// A WAV file of `samples` silent 8-bit mono samples at 8 kHz.
fn wav(samples: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(44 + samples as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + samples).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&8000u32.to_le_bytes()); // sample rate
    out.extend_from_slice(&8000u32.to_le_bytes()); // byte rate
    out.extend_from_slice(&1u16.to_le_bytes()); // block align
    out.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&samples.to_le_bytes());
    out.resize(44 + samples as usize, 128); // 128 is silence in 8-bit PCM
    out
}

fn object(input: &[u8]) -> Result<serde_json::Map<String, Value>, Error> {
    if input.is_empty() {
        return Ok(Default::default());
    }
    match serde_json::from_slice(input) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Error::new("invalid JSON input: expected an object")),
    }
}

fn string_arg(input: &[u8], name: &str) -> Result<String, Error> {
    match object(input)?.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(Error::new(format!("{} must be a string", name))),
    }
}

fn simple_text(_: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(mcp::result(&[mcp::text("This is a simple text response for testing.")], false))
}

fn image_content(_: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(mcp::result(&[mcp::image(&PNG, "image/png")], false))
}

fn audio_content(_: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(mcp::result(&[mcp::audio(&wav(80), "audio/wav")], false))
}

fn embedded_resource(_: &[u8]) -> Result<Vec<u8>, Error> {
    let item = mcp::resource_text(
        "test://embedded-resource",
        "text/plain",
        "This is an embedded resource content.",
    );
    Ok(mcp::result(&[item], false))
}

fn multiple_content_types(_: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(mcp::result(
        &[
            mcp::text("Multiple content types test:"),
            mcp::image(&PNG, "image/png"),
            mcp::resource_text(
                "test://mixed-content-resource",
                "application/json",
                r#"{"test":"data","value":123}"#,
            ),
        ],
        false,
    ))
}

fn error_handling(_: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(mcp::result(&[mcp::text("This tool intentionally returns an error for testing")], true))
}

fn tool_with_logging(_: &[u8]) -> Result<Vec<u8>, Error> {
    // The host sends a call's log lines to a client that set a level (logging/setLevel).
    omnicore::log::info("Tool execution started");
    omnicore::log::info("Tool processing data");
    omnicore::log::info("Tool execution completed");
    Ok(b"Logging test completed".to_vec())
}

fn sampling(input: &[u8]) -> Result<Vec<u8>, Error> {
    let prompt = string_arg(input, "prompt")?;
    let answer: Value = serde_json::from_str(&mcp::sample(&prompt, 100)?)
        .map_err(|e| Error::new(format!("the client's answer is not JSON: {}", e)))?;
    let text = answer["content"]["text"].as_str().unwrap_or("");
    Ok(format!("LLM response: {}", text).into_bytes())
}

fn elicitation(input: &[u8]) -> Result<Vec<u8>, Error> {
    let message = string_arg(input, "message")?;
    let schema = json!({
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        },
        "required": ["username", "email"],
    });
    let answer = mcp::elicit(&message, &schema.to_string())?;
    Ok(format!("User response: {}", answer).into_bytes())
}

fn elicitation_sep1034_defaults(_: &[u8]) -> Result<Vec<u8>, Error> {
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "default": "John Doe"},
            "age": {"type": "integer", "default": 30},
            "score": {"type": "number", "default": 95.5},
            "status": {"type": "string", "enum": ["active", "inactive", "pending"],
                       "default": "active"},
            "verified": {"type": "boolean", "default": true},
        },
    });
    let answer = mcp::elicit("Please review your details", &schema.to_string())?;
    Ok(format!("Elicitation completed: {}", answer).into_bytes())
}

fn elicitation_sep1330_enums(_: &[u8]) -> Result<Vec<u8>, Error> {
    let titled = |values: &[(&str, &str)]| -> Vec<Value> {
        values.iter().map(|(v, t)| json!({"const": v, "title": t})).collect()
    };
    let schema = json!({
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
            "titledSingle": {"type": "string", "oneOf": titled(&[
                ("value1", "First Option"), ("value2", "Second Option"),
                ("value3", "Third Option")])},
            "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"],
                           "enumNames": ["Option One", "Option Two", "Option Three"]},
            "untitledMulti": {"type": "array",
                              "items": {"type": "string",
                                        "enum": ["option1", "option2", "option3"]}},
            "titledMulti": {"type": "array", "items": {"anyOf": titled(&[
                ("value1", "First Choice"), ("value2", "Second Choice"),
                ("value3", "Third Choice")])}},
        },
    });
    let answer = mcp::elicit("Pick some options", &schema.to_string())?;
    Ok(format!("Elicitation completed: {}", answer).into_bytes())
}

fn schema_2020_12(input: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(format!("Received: {}", Value::Object(object(input)?)).into_bytes())
}

fn missing_capability(_: &[u8]) -> Result<Vec<u8>, Error> {
    // Asked of a client that did not declare sampling: on 2026-07-28 the host refuses the
    // whole call with -32021 (SEP-2575); before, this is a tool error.
    let answer = mcp::sample("Say hello", 10)?;
    Ok(answer.into_bytes())
}

// SEP-2322 (2026-07-28): each question under the key the suite expects; the host answers
// input_required until the client's retry carries the answers.
fn form(message: &str, field: &str, kind: &str) -> String {
    json!({"message": message, "requestedSchema": {"type": "object",
        "properties": {field: {"type": kind}}, "required": [field]}}).to_string()
}

fn prompt(text: &str, max_tokens: u32) -> String {
    json!({"messages": [{"role": "user", "content": {"type": "text", "text": text}}],
           "maxTokens": max_tokens}).to_string()
}

fn field(answer: &str, name: &str) -> String {
    let v: Value = serde_json::from_str(answer).unwrap_or(Value::Null);
    match &v["content"][name] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn ir_elicitation(_: &[u8]) -> Result<Vec<u8>, Error> {
    let answer = mcp::ask_as("user_name", "elicitation/create",
                             &form("What is your name?", "name", "string"))?;
    Ok(format!("Hello, {}!", field(&answer, "name")).into_bytes())
}

fn ir_sampling(_: &[u8]) -> Result<Vec<u8>, Error> {
    let answer = mcp::ask_as("capital_question", "sampling/createMessage",
                             &prompt("What is the capital of France?", 100))?;
    let v: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
    Ok(format!("LLM response: {}", v["content"]["text"].as_str().unwrap_or("")).into_bytes())
}

fn ir_list_roots(_: &[u8]) -> Result<Vec<u8>, Error> {
    let answer = mcp::ask_as("client_roots", "roots/list", "{}")?;
    Ok(format!("Roots: {}", answer).into_bytes())
}

fn ir_request_state(_: &[u8]) -> Result<Vec<u8>, Error> {
    // The host checks the echoed requestState before the answer reaches the handler.
    let answer = mcp::ask_as("confirm", "elicitation/create", &form("Please confirm", "ok",
                                                                     "boolean"))?;
    Ok(format!("state-ok: confirmed {}", field(&answer, "ok")).into_bytes())
}

fn ir_multiple_inputs(_: &[u8]) -> Result<Vec<u8>, Error> {
    // All three asked before any answer is used: one round asks them together.
    let name = mcp::ask_as("user_name", "elicitation/create",
                           &form("What is your name?", "name", "string"));
    let greeting = mcp::ask_as("greeting", "sampling/createMessage",
                               &prompt("Generate a greeting", 50));
    let roots = mcp::ask_as("client_roots", "roots/list", "{}");
    let (name, greeting, roots) = (name?, greeting?, roots?);
    Ok(format!("name {}, greeting {}, roots {}", field(&name, "name"), greeting, roots)
        .into_bytes())
}

fn ir_multi_round(_: &[u8]) -> Result<Vec<u8>, Error> {
    // The second question is asked only once the first is answered: two rounds.
    let name = mcp::ask_as("step1", "elicitation/create",
                           &form("Step 1: What is your name?", "name", "string"))?;
    let color = mcp::ask_as("step2", "elicitation/create",
                            &form("Step 2: What is your favorite color?", "color", "string"))?;
    Ok(format!("{} likes {}", field(&name, "name"), field(&color, "color")).into_bytes())
}

fn ir_capabilities(_: &[u8]) -> Result<Vec<u8>, Error> {
    // A client without elicitation is asked only what it can answer.
    let form_answer = mcp::ask_as("user_name", "elicitation/create",
                                  &form("What is your name?", "name", "string"));
    let sample = mcp::ask_as("greeting", "sampling/createMessage",
                             &prompt("Generate a greeting", 50));
    let sample = sample?;
    Ok(format!("{} / {}", form_answer.unwrap_or_default(), sample).into_bytes())
}

fn custom_header(input: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(format!("Region: {}", string_arg(input, "region")?).into_bytes())
}

// The tasks extension's fixtures (SEP-2663): the manifest marks the slow ones long_running,
// so each call runs as a durable job, a task for a client that declared the extension.
fn greet(input: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(format!("Hello, {}!", string_arg(input, "name")?).into_bytes())
}

// wasm32-unknown-unknown's std cannot sleep; the host's WASI poll_oneoff can (bounded by the
// call's deadline): one relative clock subscription.
#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn poll_oneoff(subs: *const u8, events: *mut u8, nsubs: u32, nevents: *mut u32) -> u16;
}

#[cfg(target_arch = "wasm32")]
fn sleep(seconds: f64) {
    let mut sub = [0u8; 48];
    sub[16..20].copy_from_slice(&1u32.to_le_bytes()); // the monotonic clock
    sub[24..32].copy_from_slice(&((seconds * 1e9) as u64).to_le_bytes());
    let mut event = [0u8; 32];
    let mut n = 0u32;
    // SAFETY: one 48-byte subscription in, room for one 32-byte event out.
    unsafe { poll_oneoff(sub.as_ptr(), event.as_mut_ptr(), 1, &mut n) };
}

#[cfg(not(target_arch = "wasm32"))]
fn sleep(seconds: f64) {
    sleep(seconds);
}

fn slow_compute(input: &[u8]) -> Result<Vec<u8>, Error> {
    let args = object(input)?;
    let seconds = args.get("seconds").and_then(Value::as_f64).unwrap_or(0.0).clamp(0.0, 120.0);
    sleep(seconds);
    let label = args.get("label").and_then(Value::as_str).unwrap_or("");
    Ok(format!("Computed {} after {}s", label, seconds).into_bytes())
}

fn failing_job(_: &[u8]) -> Result<Vec<u8>, Error> {
    sleep(1.0);
    Ok(json!({"content": [{"type": "text", "text": "the job failed, as it always does"}],
              "isError": true}).to_string().into_bytes())
}

fn protocol_error_job(_: &[u8]) -> Result<Vec<u8>, Error> {
    Err(Error::new("protocol_error_job fails the call itself".to_string()))
}

// A task that asks its client (SEP-2663 with SEP-2322's questions): the task waits in
// input_required until tasks/update answers, then its job calls the handler again from the
// start with the answers.
fn confirm_delete(input: &[u8]) -> Result<Vec<u8>, Error> {
    let filename = string_arg(input, "filename")?;
    let answer = mcp::ask_as("confirm_delete", "elicitation/create",
                             &form(&format!("Delete {}?", filename), "confirm", "boolean"))?;
    let verb = if field(&answer, "confirm") == "true" { "Deleted" } else { "Kept" };
    Ok(format!("{} {}", verb, filename).into_bytes())
}

fn multi_input(_: &[u8]) -> Result<Vec<u8>, Error> {
    // Both asked before either answer is used: the task waits on two questions at once.
    let first = mcp::ask_as("first_name", "elicitation/create",
                            &form("Your first name?", "name", "string"));
    let second = mcp::ask_as("last_name", "elicitation/create",
                             &form("Your last name?", "name", "string"));
    let (first, second) = (first?, second?);
    Ok(format!("{} {}", field(&first, "name"), field(&second, "name")).into_bytes())
}

fn tool_with_task(_: &[u8]) -> Result<Vec<u8>, Error> {
    // Its manifest says it asks first: the question is answered in the call's own
    // input_required round, then the call becomes a task whose job has the answer.
    let answer = mcp::ask_as("user_name", "elicitation/create",
                             &form("What is your name?", "name", "string"))?;
    Ok(format!("Hello, {}! (from the task)", field(&answer, "name")).into_bytes())
}

fn reconnection(_: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(b"Reconnection test completed".to_vec())
}

handler! {
    /// Returns a simple text.
    test_simple_text => simple_text,
    /// Returns a 1x1 PNG image.
    test_image_content => image_content,
    /// Returns a short silent WAV.
    test_audio_content => audio_content,
    /// Returns an embedded text resource.
    test_embedded_resource => embedded_resource,
    /// Returns text, an image and an embedded resource.
    test_multiple_content_types => multiple_content_types,
    /// Always answers a tool error.
    test_error_handling => error_handling,
    /// Writes three log lines while it runs.
    test_tool_with_logging => tool_with_logging,
    /// Asks the client's model to answer the prompt (sampling).
    test_sampling => sampling,
    /// Asks the user for a username and an email (elicitation).
    test_elicitation => elicitation,
    /// Asks the user with a form whose fields have defaults (SEP-1034).
    test_elicitation_sep1034_defaults => elicitation_sep1034_defaults,
    /// Asks the user with every kind of enum field (SEP-1330).
    test_elicitation_sep1330_enums => elicitation_sep1330_enums,
    /// Takes input described by a JSON Schema 2020-12 with $defs.
    json_schema_2020_12_tool => schema_2020_12,
    /// Asks the client's model without checking it may (SEP-2575's -32021 on 2026-07-28).
    test_missing_capability => missing_capability,
    /// Answers plainly (the host keeps the stream resumable, SEP-1699).
    test_reconnection => reconnection,
    /// Asks the user's name under the key user_name (SEP-2322).
    test_input_required_result_elicitation => ir_elicitation,
    /// Asks the client's model a question under the key capital_question (SEP-2322).
    test_input_required_result_sampling => ir_sampling,
    /// Asks the client for its roots under the key client_roots (SEP-2322).
    test_input_required_result_list_roots => ir_list_roots,
    /// Asks for a confirmation whose round trip carries the request state (SEP-2322).
    test_input_required_result_request_state => ir_request_state,
    /// Asks a form, the model and the roots in one round (SEP-2322).
    test_input_required_result_multiple_inputs => ir_multiple_inputs,
    /// Asks two questions, the second after the first's answer (SEP-2322).
    test_input_required_result_multi_round => ir_multi_round,
    /// Asks for a confirmation; an altered request state is refused (SEP-2322).
    test_input_required_result_tampered_state => ir_request_state,
    /// Asks only what the client declared it can answer (SEP-2322).
    test_input_required_result_capabilities => ir_capabilities,
    /// Echoes its region, which HTTP clients also send as the Mcp-Param-Region header.
    test_custom_header => custom_header,
    /// Greets by name, at once.
    greet => greet,
    /// Sleeps `seconds`, then answers (a task).
    slow_compute => slow_compute,
    /// Answers a tool error after a second (a task).
    failing_job => failing_job,
    /// Fails the call itself (a task that fails).
    protocol_error_job => protocol_error_job,
    /// Asks the user to confirm deleting a file, then answers (a task that asks).
    confirm_delete => confirm_delete,
    /// Asks two questions at once (a task waiting on both).
    multi_input => multi_input,
    /// Asks the user's name, then runs as a task (SEP-2322 rounds, then SEP-2663).
    test_tool_with_task => tool_with_task,
}
