//! Finds libaioloop with pkg-config (honours `PKG_CONFIG_PATH`), links it, and records
//! where it is: an rpath for this crate's own tests, `DEP_AIOLOOP_LIBDIR` /
//! `DEP_AIOLOOP_INCLUDE` for dependents (the `aioloop` crate adds the same rpath), and
//! `AIOLOOP_HEADER` / `AIOLOOP_LIBDIR` for the declaration check in `tests/`.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_LIBDIR");
    println!("cargo:rerun-if-changed=build.rs");

    let lib = match pkg_config::Config::new()
        .atleast_version("0.1.0")
        .cargo_metadata(true)
        .probe("aioloop")
    {
        Ok(lib) => lib,
        Err(e) => panic!(
            "\n\naioloop-sys: the pkg-config package `aioloop` (libaioloop >= 0.1.0) was not found.\n\
             Build the C library and point PKG_CONFIG_PATH at its .pc file, e.g. for an \
             uninstalled Meson build:\n\
             \n    PKG_CONFIG_PATH=/path/to/libaioloop/build/meson-uninstalled cargo build\n\
             \npkg-config said: {e}\n"
        ),
    };

    // The directory that really holds libaioloop.so (pkg-config may list several -L).
    let libdir: Option<PathBuf> = lib
        .link_paths
        .iter()
        .find(|p| p.join("libaioloop.so").exists())
        .or_else(|| lib.link_paths.first())
        .cloned();
    for p in &lib.link_paths {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", p.display());
    }
    if let Some(dir) = &libdir {
        println!("cargo:libdir={}", dir.display());
        println!("cargo:rustc-env=AIOLOOP_LIBDIR={}", dir.display());
        println!(
            "cargo:rerun-if-changed={}",
            dir.join("libaioloop.so").display()
        );
    } else {
        println!("cargo:rustc-env=AIOLOOP_LIBDIR=");
    }

    let header = lib
        .include_paths
        .iter()
        .map(|p| p.join("aioloop.h"))
        .find(|p| p.exists());
    match &header {
        Some(h) => {
            let dir = h.parent().unwrap();
            println!("cargo:include={}", dir.display());
            println!("cargo:rustc-env=AIOLOOP_HEADER={}", h.display());
            println!("cargo:rerun-if-changed={}", h.display());
        }
        None => println!("cargo:rustc-env=AIOLOOP_HEADER="),
    }
    let incs: Vec<String> = lib
        .include_paths
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    println!("cargo:rustc-env=AIOLOOP_INCLUDE_DIRS={}", incs.join(":"));
}
