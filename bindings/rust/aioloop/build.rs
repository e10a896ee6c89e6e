//! `aioloop-sys` links libaioloop; an rpath from a dependency's build script does not reach
//! this crate's tests and examples, so repeat it here from the `links` metadata.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_AIOLOOP_LIBDIR");
    if let Ok(dir) = std::env::var("DEP_AIOLOOP_LIBDIR") {
        if !dir.is_empty() {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
    }
}
