//! Property tests: whatever entries we write, in either cpio format, the
//! reader `lookimage` uses finds each file's bytes again; and the writer
//! refuses duplicate names.

use bootimage::archive::find_member;
use bootimage_build::cpio::{write, Content, Entries, Format};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9_]{1,12}(/[a-z0-9_.]{1,12}){0,3}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn written_members_are_found_again(
        files in proptest::collection::btree_map(name(), proptest::collection::vec(any::<u8>(), 0..3000), 1..12),
        odc in any::<bool>(),
        mtime in any::<u32>(),
        pad in 0u64..20_000,
    ) {
        let mut e = Entries::new();
        for (n, data) in &files {
            // A name that is also another's directory is skipped: a file
            // cannot be both.
            if files.keys().any(|other| other.starts_with(&format!("{n}/"))) {
                continue;
            }
            e.add(n.as_bytes(), Content::Bytes(data.clone()), false).unwrap();
        }
        let names: Vec<Vec<u8>> = e.names().map(<[u8]>::to_vec).collect();
        for n in &names {
            e.add_parents(n);
        }
        let format = if odc { Format::Odc } else { Format::Newc };
        let mut out = Vec::new();
        let len = write(&e, format, mtime, pad, &mut out).unwrap();
        prop_assert_eq!(len, out.len() as u64);
        prop_assert!(len >= pad);
        for n in &names {
            let found = find_member(&mut &out[..], n).unwrap();
            prop_assert_eq!(found.as_ref(), files.get(std::str::from_utf8(n).unwrap()));
        }
        prop_assert_eq!(find_member(&mut &out[..], b"not/there").unwrap(), None);
    }
}
