// The greeter example: {"name": "Ada"} -> {"message": "Hello, Ada!"}.
@file:OptIn(kotlin.wasm.ExperimentalWasmInterop::class)

import kotlin.wasm.WasmExport
import omnicore.Config
import omnicore.Log
import omnicore.fail
import omnicore.handle
import omnicore.json

@WasmExport
fun greet(ptr: Int, len: Int): Long = handle(ptr, len) { input ->
    val given = input["name"]
    if (given != null && given !is String) return@handle fail("name must be a string")
    val name = given as String? ?: "world"
    if (name.isEmpty()) return@handle fail("name must not be empty")
    val word = Config.get("greeting") ?: "Hello"
    Log.info("greeting $name")
    json("message" to "$word, $name!")
}
