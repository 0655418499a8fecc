// omnicore SDK for Kotlin/Wasm: JSON in and out, without a library (the WASI target has no
// kotlinx.serialization offline). Values are Kotlin's own: Map<String, Any?>, List<Any?>,
// String, Long or Double, Boolean and null. Nothing here throws (Kotlin/Wasm plugins build with
// traps instead of exceptions): a parse error is a value of its own.
package omnicore

/** A JSON text that did not parse: where and why. */
class JsonError(val message: String)

object Json {
    /** `text` parsed: a Map, List, String, Long, Double, Boolean, null, or a [JsonError]. */
    fun parse(text: String): Any? {
        val p = Parser(text)
        p.space()
        val value = p.value()
        if (p.error != null) return JsonError(p.error!!)
        p.space()
        if (p.i != text.length) return JsonError("unexpected text at offset ${p.i}")
        return value
    }

    /** `value` as compact JSON (a Map's keys as strings, other objects by `toString()`). */
    fun stringify(value: Any?): String {
        val out = StringBuilder()
        write(out, value)
        return out.toString()
    }

    private fun write(out: StringBuilder, value: Any?) {
        when (value) {
            null -> out.append("null")
            is String -> quote(out, value)
            is Boolean, is Int, is Long, is Short, is Byte -> out.append(value.toString())
            is Double -> out.append(if (value.isFinite()) number(value) else "null")
            is Float -> out.append(if (value.isFinite()) number(value.toDouble()) else "null")
            is Map<*, *> -> {
                out.append('{')
                var first = true
                for ((k, v) in value) {
                    if (!first) out.append(',')
                    first = false
                    quote(out, k.toString())
                    out.append(':')
                    write(out, v)
                }
                out.append('}')
            }
            is Iterable<*> -> {
                out.append('[')
                var first = true
                for (v in value) {
                    if (!first) out.append(',')
                    first = false
                    write(out, v)
                }
                out.append(']')
            }
            is Array<*> -> write(out, value.asList())
            else -> quote(out, value.toString())
        }
    }

    private fun number(d: Double): String {
        val l = d.toLong()
        return if (l.toDouble() == d && kotlin.math.abs(d) < 1e15) l.toString() else d.toString()
    }

    private fun quote(out: StringBuilder, s: String) {
        out.append('"')
        for (c in s) {
            when (c) {
                '"' -> out.append("\\\"")
                '\\' -> out.append("\\\\")
                '\n' -> out.append("\\n")
                '\r' -> out.append("\\r")
                '\t' -> out.append("\\t")
                else -> if (c < ' ') {
                    out.append("\\u")
                    val hex = c.code.toString(16)
                    repeat(4 - hex.length) { out.append('0') }
                    out.append(hex)
                } else {
                    out.append(c)
                }
            }
        }
        out.append('"')
    }
}

private class Parser(val s: String) {
    var i = 0
    var error: String? = null
    private var depth = 0

    fun space() {
        while (i < s.length && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) i++
    }

    private fun fail(why: String): Any? {
        if (error == null) error = "$why at offset $i"
        i = s.length
        return null
    }

    fun value(): Any? {
        if (error != null) return null
        if (i >= s.length) return fail("unexpected end of input")
        return when (val c = s[i]) {
            '{' -> obj()
            '[' -> arr()
            '"' -> str()
            't' -> word("true", true)
            'f' -> word("false", false)
            'n' -> word("null", null)
            else -> if (c == '-' || c in '0'..'9') num() else fail("unexpected character '$c'")
        }
    }

    private fun word(w: String, v: Any?): Any? {
        if (!s.startsWith(w, i)) return fail("invalid literal")
        i += w.length
        return v
    }

    private fun obj(): Any? {
        if (++depth > 128) return fail("nested too deeply")
        i++
        val map = LinkedHashMap<String, Any?>()
        space()
        if (i < s.length && s[i] == '}') {
            i++
            depth--
            return map
        }
        while (error == null) {
            space()
            if (i >= s.length || s[i] != '"') return fail("expected a string key")
            val key = str() as? String ?: return null
            space()
            if (i >= s.length || s[i] != ':') return fail("expected ':'")
            i++
            space()
            map[key] = value()
            space()
            if (i < s.length && s[i] == ',') {
                i++
                continue
            }
            if (i < s.length && s[i] == '}') {
                i++
                depth--
                return map
            }
            return fail("expected ',' or '}'")
        }
        return null
    }

    private fun arr(): Any? {
        if (++depth > 128) return fail("nested too deeply")
        i++
        val list = ArrayList<Any?>()
        space()
        if (i < s.length && s[i] == ']') {
            i++
            depth--
            return list
        }
        while (error == null) {
            space()
            list.add(value())
            space()
            if (i < s.length && s[i] == ',') {
                i++
                continue
            }
            if (i < s.length && s[i] == ']') {
                i++
                depth--
                return list
            }
            return fail("expected ',' or ']'")
        }
        return null
    }

    private fun str(): Any? {
        i++
        val out = StringBuilder()
        while (i < s.length) {
            val c = s[i++]
            when {
                c == '"' -> return out.toString()
                c == '\\' -> {
                    if (i >= s.length) return fail("unterminated escape")
                    when (val e = s[i++]) {
                        '"' -> out.append('"')
                        '\\' -> out.append('\\')
                        '/' -> out.append('/')
                        'b' -> out.append('\b')
                        'f' -> out.append('\u000C')
                        'n' -> out.append('\n')
                        'r' -> out.append('\r')
                        't' -> out.append('\t')
                        'u' -> {
                            if (i + 4 > s.length) return fail("short \\u escape")
                            val code = s.substring(i, i + 4).toIntOrNull(16)
                                ?: return fail("bad \\u escape")
                            out.append(code.toChar())
                            i += 4
                        }
                        else -> return fail("bad escape '\\$e'")
                    }
                }
                c < ' ' -> return fail("control character in a string")
                else -> out.append(c)
            }
        }
        return fail("unterminated string")
    }

    private fun num(): Any? {
        val start = i
        if (s[i] == '-') i++
        while (i < s.length && (s[i] in '0'..'9' || s[i] in ".eE+-")) i++
        val text = s.substring(start, i)
        return text.toLongOrNull() ?: text.toDoubleOrNull() ?: fail("bad number '$text'")
    }
}
