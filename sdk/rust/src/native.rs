//! Natively (`cargo check`, `cargo doc`, a plain `cargo test`) there is no host: the host
//! functions keep their signatures so everything compiles, and a call panics saying how the
//! tests run. `omnicore test` runs them for wasm32-wasi on omnicore's test host, where these
//! are the real imports (see [`crate::testing`]).

fn absent() -> ! {
    panic!(
        "omnicore's host functions exist in wasm only: run the tests with `omnicore test` \
         (cargo test --target wasm32-wasi on omnicore's test host)"
    )
}

pub(crate) fn take_block(_packed: u64) -> Vec<u8> {
    absent()
}

macro_rules! absent {
    ($($module:ident { $(fn $name:ident($($arg:ty),*) $(-> $ret:ty)?;)* })*) => {
        $(pub(crate) mod $module {
            $(#[allow(clippy::too_many_arguments, dead_code)]
              pub(crate) unsafe fn $name($(_: $arg),*) $(-> $ret)? { super::absent() })*
        })*
    };
}

absent! {
    log {
        fn host_write(i32, *const u8, usize);
        fn host_enabled(i32) -> i32;
    }
    config { fn host_get(*const u8, usize, *mut u8, usize) -> i32; }
    kv {
        fn host_get(*const u8, usize, *mut u8, usize) -> i32;
        fn host_set(*const u8, usize, *const u8, usize) -> i32;
        fn host_delete(*const u8, usize) -> i32;
        fn host_incr(*const u8, usize, i64, *mut i64) -> i32;
        fn host_list(*const u8, usize, *mut u8, usize) -> i32;
    }
    secrets { fn host_get(*const u8, usize, *mut u8, usize) -> i32; }
    events { fn host_publish(*const u8, usize, *const u8, usize) -> i32; }
    tasks {
        fn host_enqueue(*const u8, usize, *const u8, usize, i64) -> i64;
        fn host_cancel(i64) -> i32;
    }
    memory {
        fn host_remember(i32, *const u8, usize) -> i64;
        fn host_recall(*const u8, usize, *mut u8, usize) -> i32;
        fn host_forget(i64) -> i32;
    }
    vectors {
        fn host_upsert(*const u8, usize, *const u8, usize, *const f32, i32, *const u8, usize)
            -> i32;
        fn host_search(*const u8, usize, *const f32, i32, i32) -> i64;
        fn host_delete(*const u8, usize, *const u8, usize) -> i32;
        fn host_query(*const u8, usize, *const f32, i32, i32, *const u8, usize) -> i64;
    }
    http { fn host_request(*const u8, usize, *const u8, usize) -> i64; }
    sql {
        fn host_query(*const u8, usize, *const u8, usize) -> i64;
        fn host_execute(*const u8, usize, *const u8, usize) -> i64;
        fn host_begin(*const u8, usize) -> i64;
        fn host_commit(i64) -> i32;
        fn host_rollback(i64) -> i32;
    }
    redis { fn host_command(*const u8, usize, *const u8, usize) -> i64; }
    mcp {
        fn host_progress(f64, f64, *const u8, usize) -> i32;
        fn host_ask(*const u8, usize) -> i64;
    }
    testing {
        fn host_reset();
        fn host_set_config(*const u8, usize) -> i32;
        fn host_set_log_level(i32);
        fn host_set_secret(*const u8, usize, *const u8, usize, i32);
        fn host_http_answer(*const u8, usize, *const u8, usize, i32);
        fn host_sql_answer(*const u8, usize, i32);
        fn host_set_redis_prefix(*const u8, usize);
        fn host_logs(*mut u8, usize) -> i32;
        fn host_kv(*mut u8, usize) -> i32;
        fn host_events(*mut u8, usize) -> i32;
        fn host_tasks(*mut u8, usize) -> i32;
        fn host_sql_statements(*mut u8, usize) -> i32;
        fn host_redis_keys(*mut u8, usize) -> i32;
        fn host_redis_published(*mut u8, usize) -> i32;
        fn host_redis_ttl(*const u8, usize) -> i64;
    }
}
