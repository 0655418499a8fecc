// The Kotlin SDK's host calls through the contract's requests (tests/sdk/test_contract_fakes.py),
// answered by omnicore's test host (the redis and sql capabilities' own code): the test in
// tests/ runs each request, the requests written beside it as tests/requests.kt; each outcome
// printed as `CONTRACT ok <JSON>` or `CONTRACT error <text>`.
@file:OptIn(kotlin.wasm.ExperimentalWasmInterop::class)

import kotlin.wasm.WasmImport

/** A request the SDK never builds (args that are no list), sent as the plugin wrote it. */
@WasmImport("omnicore:redis", "command")
external fun rawRedisCommand(conn: Int, connLen: Int, req: Int, reqLen: Int): Long
