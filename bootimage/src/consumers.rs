//! What the software that really reads our archives requires, one place
//! for each reader, shared by the writers (`bootimage-build`) and the
//! inspector ([`crate::archive`]). Each rule cites the consumer's source.
//!
//! - phbl, the host boot loader, reads the boot archive `cpio.z`
//!   (oxidecomputer/phbl `src/main.rs`: `expand_ramdisk` inflates it with
//!   `miniz_oxide::inflate::core::decompress` and
//!   `TINFL_FLAG_PARSE_ZLIB_HEADER` into the ramdisk region, 128 MiB
//!   (`src/phbl.rs`: `ramdisk_addr`, `RAMDISK_LEN`); `find_kernel` then
//!   looks for [`KERNEL_PATH`] with the `cpio_reader` crate). The kernel
//!   reads [`BOOT_IMAGE_CSUM`] from the same archive.
//! - helios-build, the OS build, writes the image archive `os.tar.gz`
//!   (oxidecomputer/helios `tools/helios-build/src/main.rs`: `cmd_image`
//!   adds the `*.txt` metadata, `zfs.img`, `unix.z`, `cpio.z` and one ROM
//!   per board, `rom` again after gimlet's; `tools/helios-build/src/archive.rs`:
//!   `Archive::new` writes `oxide.json` and the `image` directory 0755,
//!   files 0444, owner root). Its `unix.z` and `cpio.z` come from pinprick
//!   (oxidecomputer/pinprick `src/main.rs`: `compress_to_vec_zlib`): one
//!   zlib stream each.
//! - tufaceous, the update system's packager, reads that archive
//!   (oxidecomputer/tufaceous `lib/src/edit/os_images.rs`:
//!   `read_os_tarball_metadata_blocking` keeps the regular `image/*.txt`
//!   members and stops at the first `image/` member with another
//!   extension; `os_images` takes `zfs.img`, `unix.z`, `cpio.z`,
//!   `gimlet.rom` and `cosmo.rom` by name).

/// The phbl ramdisk region the boot archive is inflated into: the inflated
/// archive may be at most this long (phbl `src/phbl.rs`, `ramdisk_addr`).
pub const PHBL_RAMDISK_LEN: u64 = 128 << 20;

/// The kernel phbl loads from the boot archive (phbl `src/main.rs`,
/// `find_kernel`).
pub const KERNEL_PATH: &str = "platform/oxide/kernel/amd64/unix";

/// The boot archive member holding the image's 32 raw checksum bytes.
pub const BOOT_IMAGE_CSUM: &str = "boot_image_csum";

/// How a boot archive (or any member) is stored, told apart by its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Stored as it is.
    None,
    /// One zlib stream (RFC 1950): what phbl reads, and what the OS build
    /// writes (`cpio.z`, `unix.z`).
    Zlib,
    /// gzip (RFC 1952): read for older archives; nothing we write.
    Gzip,
}

impl Compression {
    /// Tells zlib, gzip and anything else apart by the first bytes: gzip's
    /// magic `1f 8b` and method 8; zlib's method 8, a window of at most
    /// 32 KiB, no preset dictionary and the header check (a multiple of 31).
    pub fn sniff(head: &[u8]) -> Compression {
        match head {
            [0x1f, 0x8b, 8, ..] => Compression::Gzip,
            [cmf, flg, ..]
                if cmf & 0x0f == 8
                    && cmf >> 4 <= 7
                    && flg & 0x20 == 0
                    && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0 =>
            {
                Compression::Zlib
            }
            _ => Compression::None,
        }
    }

    /// `none`, `zlib` or `gzip`, as `lookimage` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zlib => "zlib",
            Compression::Gzip => "gzip",
        }
    }
}

/// The host boot ROMs, one per board, as `image/BOARD.rom` (helios
/// `image/templates/sled/targets.toml` names the boards).
pub const ROM_BOARDS: [&str; 2] = ["gimlet", "cosmo"];

/// `image/rom`: a copy of gimlet's ROM for tools older than per-board ROMs
/// (helios-build `cmd_image`).
pub const LEGACY_ROM: &str = "rom";

/// The board whose ROM [`LEGACY_ROM`] copies.
pub const LEGACY_ROM_BOARD: &str = "gimlet";

/// A host boot ROM's exact size: the OS build makes every board's ROM for a
/// 32 MiB flash (helios `image/amd/milan-gimlet-b-1.0.0.f.toml` and
/// `image/amd/turin-cosmo-1.0.0.a.toml`: `size = 32`, in MiB, for
/// amd-host-image-builder).
pub const ROM_SIZE: u64 = 32 << 20;

/// Mode of every file in the image archive (helios-build `Archive`).
pub const ARCHIVE_FILE_MODE: u32 = 0o444;
/// Mode of the `image/` directory in the image archive.
pub const ARCHIVE_DIR_MODE: u32 = 0o755;

/// Whether tufaceous takes an `image/` member (its name under `image/`) as
/// metadata: a name ending in `.txt`.
pub fn is_metadata(name: &str) -> bool {
    std::path::Path::new(name)
        .extension()
        .is_some_and(|e| e == "txt")
}

/// Where a member (its name under `image/`) goes in the image archive, in
/// the OS build's order: the `.txt` metadata first (tufaceous stops reading
/// metadata at the first member that is not `.txt`), then `zfs.img`,
/// `unix.z`, `cpio.z`, the board ROMs and `rom`, then anything else.
/// Members of one rank are sorted by name.
pub fn member_rank(name: &str) -> u8 {
    match name {
        _ if is_metadata(name) => 0,
        "zfs.img" => 1,
        "unix.z" => 2,
        "cpio.z" => 3,
        "gimlet.rom" => 4,
        "cosmo.rom" => 5,
        LEGACY_ROM => 6,
        _ => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_tells_zlib_gzip_and_plain_apart() {
        // zlib at every level zlib itself writes, and a 4 KiB window.
        for head in [
            [0x78, 0x01],
            [0x78, 0x5e],
            [0x78, 0x9c],
            [0x78, 0xda],
            [0x48, 0x0d],
        ] {
            assert_eq!(Compression::sniff(&head), Compression::Zlib, "{head:x?}");
        }
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        for plain in [&b"070707"[..], b"070701", b"\x75\x00\xeb\x1d", b"", b"x"] {
            assert_eq!(Compression::sniff(plain), Compression::None, "{plain:x?}");
        }
        // A bad check, a preset dictionary, another method, a huge window.
        for bad in [[0x78, 0x9d], [0x78, 0xbb], [0x77, 0x9c], [0x88, 0x1c]] {
            assert_eq!(Compression::sniff(&bad), Compression::None, "{bad:x?}");
        }
    }

    #[test]
    fn members_in_the_os_builds_order() {
        let mut names = vec![
            "zz.bin",
            "rom",
            "cosmo.rom",
            "gimlet.rom",
            "cpio.z",
            "unix.z",
            "zfs.img",
            "pkg-list.txt",
            "image-args.txt",
            "notes",
        ];
        names.sort_by_key(|n| (member_rank(n), *n));
        assert_eq!(
            names,
            [
                "image-args.txt",
                "pkg-list.txt",
                "zfs.img",
                "unix.z",
                "cpio.z",
                "gimlet.rom",
                "cosmo.rom",
                "rom",
                "notes",
                "zz.bin"
            ]
        );
    }
}
