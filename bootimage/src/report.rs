//! What `lookimage` prints: the previous tool's exact lines, and JSON.

use crate::header::Header;

/// The seven header lines the previous `lookimage` printed, each ending in a
/// newline; a version 1 header (which the previous tool did not read) gets
/// an eighth line saying so.
pub fn header_lines(h: &Header) -> String {
    let mut s = seven_lines(h);
    if h.version == crate::Version::V1 {
        s.push_str("header version = 1 (no flags, data size or image name)\n");
    }
    s
}

fn seven_lines(h: &Header) -> String {
    format!(
        "image name = {}\n\
         flags = {:#x} ({})\n\
         data size = {}\n\
         image size = {}\n\
         target size = {}\n\
         image sum = {}\n\
         dataset name = {}\n",
        h.image_name,
        h.flags.bits(),
        h.flags,
        h.data_size,
        h.image_size,
        h.target_size,
        h.sha256_hex(),
        h.dataset,
    )
}

/// The `ratio = N.NNx` line for compressed images, printed after the header
/// lines once the sizes are known to be sane.
pub fn ratio_line(h: &Header) -> Option<String> {
    (h.flags.compressed() && h.data_size > 0)
        .then(|| format!("ratio = {:.2}x\n", h.image_size as f64 / h.data_size as f64))
}

/// The header as one JSON object, for scripts.
pub fn header_json(h: &Header, verified: Option<bool>) -> serde_json::Value {
    serde_json::json!({
        "version": h.version.number(),
        "image_name": h.image_name.as_str(),
        "flags": h.flags.bits(),
        "compressed": h.flags.compressed(),
        "data_size": h.data_size,
        "image_size": h.image_size,
        "target_size": h.target_size,
        "sha256": h.sha256_hex(),
        "dataset": h.dataset.as_str(),
        "ratio": (h.flags.compressed() && h.data_size > 0)
            .then(|| h.image_size as f64 / h.data_size as f64),
        "verified": verified,
        "netboot": h.netboot_problem().is_none(),
        "netboot_problem": h.netboot_problem(),
    })
}

/// What `mkimage --json` prints: where the image (and checksum file) went,
/// then the header's fields as `lookimage --json` names them.
pub fn made_json(
    path: &std::path::Path,
    checksum_file: Option<&std::path::Path>,
    h: &Header,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "path": path.display().to_string(),
        "checksum_file": checksum_file.map(|p| p.display().to_string()),
    });
    if let (Some(v), serde_json::Value::Object(header)) = (v.as_object_mut(), header_json(h, None))
    {
        v.extend(header.into_iter().filter(|(k, _)| k != "verified"));
    }
    v
}
