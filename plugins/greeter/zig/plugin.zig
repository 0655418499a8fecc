//! The greeter example: {"name": "Ada"} -> {"message": "Hello, Ada!"}.
const std = @import("std");
const omni = @import("omnicore");

comptime {
    omni.handler("greet", greet, .{
        .title = "Greet",
        .description = "Greets someone by name with the configured greeting.",
    });
}

const Input = struct {
    /// Who to greet (default "world").
    name: ?[]const u8 = null,
};

const Output = struct { message: []const u8 };

fn greet(call: *omni.Call, input: Input) !Output {
    const name = input.name orelse "world";
    if (name.len == 0) return call.fail("name must not be empty", .{});
    const word = try omni.config.get(call.arena, "greeting") orelse "Hello";
    omni.log.info("greeting {s}", .{name});
    return .{ .message = try call.print("{s}, {s}!", .{ word, name }) };
}

test "greets by name with the configured greeting" {
    var host = omni.testing.Host.init();
    defer host.deinit();
    try host.setConfig("greeting", "Ahoy");
    try std.testing.expectEqualStrings("{\"message\":\"Ahoy, Ada!\"}", try host.call(greet, "{\"name\":\"Ada\"}"));
    try std.testing.expectEqualStrings("greeting Ada", host.messages()[0].message);
}

test "an empty name is an error" {
    var host = omni.testing.Host.init();
    defer host.deinit();
    try std.testing.expectEqualStrings("name must not be empty", try host.callError(greet, "{\"name\":\"\"}"));
    try std.testing.expectEqualStrings("{\"message\":\"Hello, world!\"}", try host.call(greet, "{}"));
}
