//! Marks the service-backed tests as ignored (visible as such in the test summary) when their
//! service is not configured, outside CI. Under `CI=true` they always run, and fail without it.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(vapi_no_postgres)");
    println!("cargo::rustc-check-cfg=cfg(vapi_no_redis)");
    for var in ["DATABASE_URL", "REDIS_URL", "CI"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let set = |var: &str| std::env::var(var).is_ok_and(|v| !v.is_empty());
    if !ci && !set("DATABASE_URL") {
        println!("cargo::rustc-cfg=vapi_no_postgres");
    }
    if !ci && !set("REDIS_URL") {
        println!("cargo::rustc-cfg=vapi_no_redis");
    }
}
