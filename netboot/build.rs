// With the `dlpi-shim` feature on Linux, compile the test-only C
// implementation of libdlpi's five functions over AF_PACKET, so that the
// illumos backend's FFI wiring runs in the real-socket tests.
fn main() {
    println!("cargo:rerun-if-changed=shim/dlpi_shim.c");
    let shim = std::env::var_os("CARGO_FEATURE_DLPI_SHIM").is_some();
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if shim && linux {
        cc::Build::new()
            .file("shim/dlpi_shim.c")
            .warnings(true)
            .compile("dlpi_shim");
    }
}
