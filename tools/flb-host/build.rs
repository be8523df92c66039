// The host's log_print is C-variadic, which stable Rust cannot define; a few lines of C
// provide it, as Fluent Bit's own flb_log_print does.
fn main() {
    println!("cargo:rerun-if-changed=src/log_print.c");
    cc::Build::new()
        .file("src/log_print.c")
        .warnings(true)
        .compile("flbhostlog");
}
