//! The declarations in `src/lib.rs` cannot drift from the C library:
//!
//! 1. every `AIOL_EXPORT ... aiol_name(` in `aioloop.h` is declared in `src/lib.rs` with the
//!    same number of parameters, and nothing else is;
//! 2. the shared library exports exactly those `aiol_*` functions (`nm -D --defined-only`);
//! 3. every constant of the header has the value the C compiler gives it, and every struct
//!    has the size and field offsets the C compiler gives it (a small C program built with
//!    the system `cc`; skipped with a message if no `cc` is found).
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use aioloop_sys::*;

fn header_path() -> PathBuf {
    let h = env!("AIOLOOP_HEADER");
    assert!(
        !h.is_empty(),
        "build.rs did not find aioloop.h in the pkg-config include paths"
    );
    PathBuf::from(h)
}

fn header() -> String {
    std::fs::read_to_string(header_path()).expect("read aioloop.h")
}

fn rust_source() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs");
    std::fs::read_to_string(p).expect("read src/lib.rs")
}

/// Strips `/* */` and `//` comments.
fn strip_comments(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && i + 1 < b.len() && b[i + 1] == b'*' {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
            out.push(' ');
        } else if b[i] == b'/' && i + 1 < b.len() && b[i + 1] == b'/' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Counts the top-level parameters of the parenthesised list starting at `s[open]`.
fn count_params(s: &str, open: usize, angle_brackets: bool) -> usize {
    let b = s.as_bytes();
    assert_eq!(b[open], b'(');
    let mut depth = 0i32;
    let mut commas = 0;
    let mut any = false;
    let mut i = open;
    let mut content = String::new();
    loop {
        let c = b[i];
        match c {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b'<' if angle_brackets => depth += 1,
            b'>' if angle_brackets && !(i > 0 && b[i - 1] == b'-') => depth -= 1,
            b',' if depth == 1 => commas += 1,
            _ => {}
        }
        if depth >= 1 && i > open {
            content.push(c as char);
            if !c.is_ascii_whitespace() {
                any = true;
            }
        }
        i += 1;
    }
    let content = content.trim();
    if !any || content == "void" {
        0
    } else if content.ends_with(',') {
        commas // a trailing comma (Rust)
    } else {
        commas + 1
    }
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// `aiol_name -> parameter count` for every `AIOL_EXPORT` function of the header.
fn header_functions() -> BTreeMap<String, usize> {
    let src = strip_comments(&header());
    let mut out = BTreeMap::new();
    let mut rest = src.as_str();
    let mut base = 0;
    while let Some(pos) = rest.find("AIOL_EXPORT") {
        let at = base + pos;
        let line_start = src[..at].rfind('\n').map_or(0, |p| p + 1);
        let after = at + "AIOL_EXPORT".len();
        if !src[line_start..at].trim_start().starts_with("#") {
            let open = after + src[after..].find('(').expect("( after AIOL_EXPORT");
            let b = src.as_bytes();
            let mut end = open;
            while end > after && b[end - 1].is_ascii_whitespace() {
                end -= 1;
            }
            let mut start = end;
            while start > after && is_ident(b[start - 1]) {
                start -= 1;
            }
            let name = &src[start..end];
            assert!(
                name.starts_with("aiol_"),
                "odd export near {:?}",
                &src[at..open]
            );
            out.insert(name.to_string(), count_params(&src, open, false));
        }
        base = after;
        rest = &src[after..];
    }
    out
}

/// `aiol_name -> parameter count` for every `pub fn aiol_*` of src/lib.rs.
fn rust_functions() -> BTreeMap<String, usize> {
    let src = strip_comments(&rust_source());
    let mut out = BTreeMap::new();
    let mut from = 0;
    while let Some(pos) = src[from..].find("pub fn aiol_") {
        let start = from + pos + "pub fn ".len();
        let open = start + src[start..].find('(').unwrap();
        let name = src[start..open].trim().to_string();
        let n = count_params(&src, open, true);
        assert!(
            out.insert(name.clone(), n).is_none(),
            "{name} declared twice"
        );
        from = open;
    }
    out
}

fn exported_symbols() -> Option<BTreeSet<String>> {
    let dir = env!("AIOLOOP_LIBDIR");
    let lib = Path::new(dir).join("libaioloop.so");
    if dir.is_empty() || !lib.exists() {
        panic!("libaioloop.so not found in {dir:?} (from pkg-config)");
    }
    // Tools run without the sanitizer preload of an ASan run (README): their own leaks
    // are not ours.
    let out = match Command::new("nm")
        .env_remove("LD_PRELOAD")
        .args(["-D", "--defined-only"])
        .arg(&lib)
        .output()
    {
        Ok(o) if o.status.success() => o,
        Ok(o) => panic!("nm failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            eprintln!("SKIP symbol comparison: cannot run nm: {e}");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut set = BTreeSet::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 3 && f[1] == "T" && f[2].starts_with("aiol_") {
            set.insert(f[2].split('@').next().unwrap().to_string());
        }
    }
    Some(set)
}

#[test]
fn functions_match_header() {
    let h = header_functions();
    let r = rust_functions();
    assert!(
        h.len() >= 60,
        "parsed only {} functions from the header",
        h.len()
    );
    let hn: BTreeSet<_> = h.keys().cloned().collect();
    let rn: BTreeSet<_> = r.keys().cloned().collect();
    let missing: Vec<_> = hn.difference(&rn).collect();
    let extra: Vec<_> = rn.difference(&hn).collect();
    assert!(
        missing.is_empty(),
        "declared in aioloop.h but not in aioloop-sys: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "declared in aioloop-sys but not in aioloop.h: {extra:?}"
    );
    let mismatched: Vec<_> = h
        .iter()
        .filter(|(name, n)| r[*name] != **n)
        .map(|(name, n)| format!("{name}: C {n} parameters, Rust {}", r[name]))
        .collect();
    assert!(
        mismatched.is_empty(),
        "parameter counts differ: {mismatched:#?}"
    );
}

#[test]
fn functions_match_library_exports() {
    let Some(exported) = exported_symbols() else {
        return;
    };
    let h: BTreeSet<_> = header_functions().into_keys().collect();
    let missing: Vec<_> = h.difference(&exported).collect();
    let extra: Vec<_> = exported.difference(&h).collect();
    assert!(
        missing.is_empty(),
        "declared in aioloop.h but not exported by the library: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "exported by the library but not declared in aioloop.h: {extra:?}"
    );
}

/// Every constant the Rust crate mirrors, by C name.
fn rust_constants() -> Vec<(&'static str, i128)> {
    macro_rules! c {
        ($($n:ident),* $(,)?) => { vec![$((stringify!($n), $n as i128)),*] };
    }
    c![
        AIOL_VERSION_MAJOR,
        AIOL_VERSION_MINOR,
        AIOL_VERSION_PATCH,
        AIOL_VERSION_HEX,
        AIOL_EPERM,
        AIOL_EINTR,
        AIOL_EBADF,
        AIOL_EAGAIN,
        AIOL_ENOMEM,
        AIOL_EBUSY,
        AIOL_EINVAL,
        AIOL_EMFILE,
        AIOL_ENFILE,
        AIOL_EPIPE,
        AIOL_ERANGE,
        AIOL_ENOTSUP,
        AIOL_ENOTSOCK,
        AIOL_EADDRINUSE,
        AIOL_ENOBUFS,
        AIOL_ECONNRESET,
        AIOL_ECONNREFUSED,
        AIOL_ECONNABORTED,
        AIOL_ETIMEDOUT,
        AIOL_ECANCELED,
        AIOL_ECLOSED,
        AIOL_ESTATE,
        AIOL_ETHREAD,
        AIOL_ETLS,
        AIOL_EAI_NONAME,
        AIOL_EAI_AGAIN,
        AIOL_EAI_FAIL,
        AIOL_RUN_DEFAULT,
        AIOL_RUN_ONCE,
        AIOL_RUN_NOWAIT,
        AIOL_OBJ_NONE,
        AIOL_OBJ_SERVER,
        AIOL_OBJ_TRANSPORT,
        AIOL_OBJ_HANDLE,
        AIOL_OBJ_LOOP,
        AIOL_WBUF_DEFAULT,
    ]
}

/// Object-like macros, error-map entries and enumerators named in the header.
fn header_constants() -> BTreeSet<String> {
    let src = strip_comments(&header());
    let mut out = BTreeSet::new();
    for line in src.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("#define ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let after = &rest[name.len()..];
            if name.starts_with("AIOL_")
                && !name.starts_with("AIOL__")
                && !after.starts_with('(')
                && name != "AIOL_EXPORT"
            {
                out.insert(name);
            }
        } else if let Some(rest) = t.strip_prefix("XX(") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.insert(format!("AIOL_{name}"));
        } else if t.starts_with("AIOL_") && t.contains('=') {
            let name: String = t
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

#[test]
fn constants_cover_header() {
    let h = header_constants();
    let r: BTreeSet<String> = rust_constants()
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    let missing: Vec<_> = h.difference(&r).collect();
    let extra: Vec<_> = r.difference(&h).collect();
    assert!(
        missing.is_empty(),
        "constants of aioloop.h missing in aioloop-sys: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "constants in aioloop-sys not in aioloop.h: {extra:?}"
    );
}

macro_rules! layout {
    ($v:ident, $t:ident { $($f:ident $(= $cf:ident)?),* $(,)? }) => {{
        $v.push((format!("sizeof {}", stringify!($t)), std::mem::size_of::<$t>() as i128));
        $v.push((format!("alignof {}", stringify!($t)), std::mem::align_of::<$t>() as i128));
        $(
            let cname = layout!(@cname $f $($cf)?);
            $v.push((format!("offsetof {}.{}", stringify!($t), cname), std::mem::offset_of!($t, $f) as i128));
        )*
    }};
    (@cname $f:ident) => { stringify!($f) };
    (@cname $f:ident $cf:ident) => { stringify!($cf) };
}

fn rust_layouts() -> Vec<(String, i128)> {
    let mut v = Vec::new();
    layout!(v, aiol_error_context {
        size,
        code,
        message,
        detail,
        loop_ = loop,
        object_kind,
        object,
        protocol_data
    });
    layout!(
        v,
        aiol_protocol {
            size,
            connection_made,
            data_received,
            eof_received,
            connection_lost,
            pause_writing,
            resume_writing,
            get_buffer,
            buffer_updated,
            destroy
        }
    );
    layout!(
        v,
        aiol_server_config {
            size,
            host,
            port,
            unix_path,
            backlog,
            reuse_port,
            tls,
            tls_handshake_timeout_ns,
            tls_shutdown_timeout_ns
        }
    );
    layout!(v, aiol_buf { base, len });
    layout!(
        v,
        aiol_connect_config {
            size,
            host,
            port,
            unix_path,
            tls,
            server_hostname,
            timeout_ns,
            tls_handshake_timeout_ns,
            tls_shutdown_timeout_ns
        }
    );
    layout!(v, sockaddr_storage {});
    v.push((
        "sizeof socklen_t".into(),
        std::mem::size_of::<socklen_t>() as i128,
    ));
    v
}

/// Builds and runs a C program printing `key value` lines; None if there is no `cc`.
fn c_values(body: &str) -> Option<BTreeMap<String, i128>> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("aioloop-sys-decls");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("probe.c");
    let exe = dir.join("probe");
    let prog = format!(
        "#include <aioloop.h>\n#include <stdio.h>\n#include <stddef.h>\n\
         #define P(k, x) do {{ if ((x) < 0) printf(\"%s %lld\\n\", k, (long long)(x)); \
         else printf(\"%s %llu\\n\", k, (unsigned long long)(x)); }} while (0)\n\
         int main(void) {{\n{body}\nreturn 0;\n}}\n"
    );
    std::fs::write(&src, prog).unwrap();
    let mut cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cc.env_remove("LD_PRELOAD"); // as for nm
    cc.arg("-w").arg("-std=gnu11").arg("-o").arg(&exe).arg(&src);
    for inc in env!("AIOLOOP_INCLUDE_DIRS")
        .split(':')
        .filter(|s| !s.is_empty())
    {
        cc.arg(format!("-I{inc}"));
    }
    match cc.output() {
        Err(e) => {
            eprintln!("SKIP C layout/constant check: cannot run cc: {e}");
            return None;
        }
        Ok(o) if !o.status.success() => {
            panic!("cc failed:\n{}", String::from_utf8_lossy(&o.stderr))
        }
        Ok(_) => {}
    }
    let out = Command::new(&exe)
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run probe");
    assert!(out.status.success());
    let mut m = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (k, v) = line.rsplit_once(' ').unwrap();
        m.insert(k.to_string(), v.parse::<i128>().unwrap());
    }
    Some(m)
}

#[test]
fn constants_and_layouts_match_c() {
    let consts = rust_constants();
    let layouts = rust_layouts();
    let mut body = String::new();
    for (n, _) in &consts {
        body += &format!("P(\"{n}\", {n});\n");
    }
    for (k, _) in &layouts {
        let (what, arg) = k.split_once(' ').unwrap();
        let expr = match what {
            "offsetof" => {
                let (t, f) = arg.split_once('.').unwrap();
                format!("offsetof({}, {f})", c_type(t))
            }
            "alignof" => format!("_Alignof({})", c_type(arg)),
            _ => format!("{what}({})", c_type(arg)),
        };
        body += &format!("P(\"{k}\", {expr});\n");
    }
    let Some(c) = c_values(&body) else { return };
    let mut bad = Vec::new();
    for (k, v) in consts
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .chain(layouts)
    {
        match c.get(&k) {
            Some(cv) if *cv == v => {}
            other => bad.push(format!("{k}: C {other:?}, Rust {v}")),
        }
    }
    assert!(bad.is_empty(), "C and Rust disagree:\n{}", bad.join("\n"));
}

fn c_type(t: &str) -> String {
    match t {
        "sockaddr_storage" => "struct sockaddr_storage".into(),
        other => other.into(),
    }
}

#[test]
fn library_version_matches_header() {
    let v = unsafe { aiol_version() };
    assert_eq!(
        v >> 16,
        AIOL_VERSION_MAJOR,
        "major version differs from the header's"
    );
    assert!(v >= AIOL_VERSION_HEX, "library older than the header");
}
